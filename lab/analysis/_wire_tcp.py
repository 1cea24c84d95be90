"""One TCP exchange seen from both ends of the link: what the client sent, what the
server received, and what each application message went through in between.

The client-side capture shows client -> server segments as sent (before the
impairment) and server -> client segments as received; the server-side capture the
reverse. Each direction is therefore judged where it is exact: retransmissions, fast
retransmissions, duplicate ACKs and RTT samples at the sender; out-of-order arrival,
spurious retransmissions and head-of-line blocking at the receiver (the RTT
definitions, Karn and ack RTT, are in :mod:`lab.analysis._tcp`). A segment is
recognised on both captures by (IP ID, seq, ack, length), since the engine rewrites
none of them and Linux gives every segment of a connection a new IP ID.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab._protocols import IPPROTO_TCP
from lab.analysis import _tcp
from lab.errors import AnalysisError
from lab.pcap import read_pcap

CLIENT_TO_SERVER = "client_to_server"
SERVER_TO_CLIENT = "server_to_client"
#: A message is "blocked" when it waited longer than this after its last byte arrived
#: (and an earlier byte was still missing then): above the receiver's wake-up noise.
BLOCKED_THRESHOLD_NS = 500_000

TCP_SEGMENT_COLUMNS = (
    "client_port",
    "side",
    "frame",
    "ts_ns",
    "direction",
    "seq",
    "ack",
    "len",
    "flags",
    "window",
    "ip_id",
    "ip_len",
    "retransmission",
    "fast_retransmission",
    "spurious",
    "dup_ack",
    "out_of_order",
    "window_bytes",
    "sack",
)
TCP_STATS_COLUMNS = (
    "client_port",
    "server_port",
    "segments",
    "data_segments",
    "retransmissions",
    "fast_retransmissions",
    "dup_acks",
    "out_of_order",
    "spurious",
    "handshake_rtt_ms",
    "karn_rtt_samples",
    "karn_rtt_p50_ms",
    "karn_rtt_p99_ms",
    "ack_rtt_samples",
    "ack_rtt_p50_ms",
    "ack_rtt_p99_ms",
    "wire_bytes",
    "payload_bytes",
    "retransmitted_bytes",
    "overhead_ratio",
)
#: One row per RTT sample taken at the sender's capture of its direction: ``kind``
#: "karn" or "ack" (definitions in :mod:`lab.analysis._tcp`), ``frame`` and
#: ``ack_frame`` in that capture (client_to_server: the client's, else the server's).
RTT_COLUMNS = ("client_port", "direction", "kind", "ts_ns", "rtt_ns", "frame", "ack_frame")
HOL_COLUMNS = (
    "seq",
    "first_byte",
    "last_byte",
    "t_first_tx_ns",
    "t_last_byte_ns",
    "t_complete_ns",
    "t_recv_ns",
    "hol_wait_ns",
    "blocked",
    "wait_offset",
)

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

#: RFC 7323 §2.3: a window-scale shift above 14 is used as 14.
MAX_WINDOW_SHIFT = 14


@dataclass(frozen=True)
class TcpWireAnalysis:
    """The tables of one TCP exchange (see :func:`analyze_tcp`).

    ``isn`` maps 0 (client -> server) and 1 (server -> client) to the initial
    sequence numbers used to make sequence numbers relative.
    """

    segments: pd.DataFrame
    stats: pd.DataFrame
    rtt_samples: pd.DataFrame
    hol: pd.DataFrame
    isn: dict[int, int]


def empty_tables() -> dict[str, pd.DataFrame]:
    """The four tables with their columns and no row (a run without TCP)."""
    return {
        "tcp_segments": pd.DataFrame(columns=list(TCP_SEGMENT_COLUMNS)),
        "tcp_stats": pd.DataFrame(columns=list(TCP_STATS_COLUMNS)),
        "rtt_samples": pd.DataFrame(columns=list(RTT_COLUMNS)),
        "hol": pd.DataFrame(columns=list(HOL_COLUMNS)),
    }


def flow_segments(packets: pd.DataFrame, client_port: int, server_port: int) -> pd.DataFrame:
    """The TCP segments between the two ports, in capture order, with ``flow`` = 0,
    ``dir`` (0: client -> server) and ``g`` as :mod:`lab.analysis._tcp` expects."""
    tcp = packets["proto"].to_numpy() == IPPROTO_TCP
    sport = packets["sport"].to_numpy(dtype=np.int64, na_value=-1)
    dport = packets["dport"].to_numpy(dtype=np.int64, na_value=-1)
    c2s = tcp & (sport == client_port) & (dport == server_port)
    s2c = tcp & (sport == server_port) & (dport == client_port)
    seg: pd.DataFrame = packets.loc[c2s | s2c].reset_index(drop=True)
    seg["flow"] = 0
    seg["dir"] = s2c[c2s | s2c].astype(np.int64)
    seg["g"] = seg["dir"]
    return seg


def _syn_isn(seg: pd.DataFrame) -> pd.Series:
    flags = seg["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    syn = seg.loc[(flags & _tcp.SYN) > 0]
    return syn.groupby("g")["tcp_seq"].first().astype(np.int64)


def _match(receiver: pd.DataFrame, sender: pd.DataFrame) -> I64:
    """Row of ``sender`` each row of ``receiver`` is a copy of (-1: none or ambiguous).

    Keys that occur more than once at the sender (a stack reusing IP IDs) are
    ambiguous and left unmatched rather than guessed.
    """
    keys = ["dir", "ip_id", "tcp_seq", "tcp_ack", "payload_len"]
    left = receiver[keys].astype("Int64").assign(_row=np.arange(len(receiver)))
    right = sender[keys].astype("Int64").assign(_peer=np.arange(len(sender)))
    right = right.loc[~right.duplicated(keys, keep=False) & right["ip_id"].notna()]
    merged = left.merge(right, on=keys, how="left").sort_values("_row")
    return merged["_peer"].to_numpy(dtype=np.int64, na_value=-1)


def _truth(matched: I64, flags: pd.Series, own_rows: npt.NDArray[np.bool_]) -> F64:
    """The sender's flag for each receiver row it matched (NaN elsewhere)."""
    values = flags.to_numpy(dtype=np.float64)
    out = np.full(matched.size, np.nan)
    ok = (matched >= 0) & own_rows
    out[ok] = values[matched[ok]]
    return out


def _union_bytes(starts: I64, ends: I64) -> int:
    """Bytes covered by the union of [start, end) intervals."""
    bounds, first = _tcp.elementary_first_cover(starts, ends, np.zeros(starts.size, np.int64))
    if first.size == 0:
        return 0
    return int((np.diff(bounds) * (first == 0)).sum())


def _stream_ranges(seg: pd.DataFrame) -> tuple[I64, I64]:
    """Payload byte ranges as 0-based stream offsets (relative seq 1 is offset 0)."""
    flags = seg["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    start = seg["seq"].to_numpy(dtype=np.int64) - 1 + ((flags & _tcp.SYN) > 0)
    return start, start + seg["len"].to_numpy(dtype=np.int64)


def _thresholds(handshake: pd.DataFrame) -> tuple[int, int]:
    """Out-of-order window and fast-retransmit window from the handshake RTT."""
    if handshake.empty:
        return _tcp.DEFAULT_OOO_THRESHOLD_NS, _tcp.FAST_WINDOW_FLOOR_NS
    rtt = int(handshake["rtt_ns"].iloc[0])
    return max(rtt, 1), max(rtt, _tcp.FAST_WINDOW_FLOOR_NS)


def analyze_tcp_frames(
    client: pd.DataFrame,
    server: pd.DataFrame,
    messages: pd.DataFrame,
    client_port: int,
    server_port: int,
    *,
    blocked_threshold_ns: int = BLOCKED_THRESHOLD_NS,
    reverse: bool = False,
) -> TcpWireAnalysis:
    """:func:`analyze_tcp` on already-read packet tables (``PcapFrame.packets``).

    ``reverse``: the messages went server -> client (a reverse flow), so head-of-line
    blocking is judged on that direction."""
    cl = flow_segments(client, client_port, server_port)
    sv = flow_segments(server, client_port, server_port)
    if cl.empty and sv.empty:
        raise AnalysisError(f"no TCP segment between ports {client_port} and {server_port}")
    # ISNs from the SYNs, preferring the sender's own capture of each direction
    c_syn, s_syn = _syn_isn(cl), _syn_isn(sv)
    isn = pd.concat([c_syn.reindex([0]), s_syn.reindex([1])]).dropna()
    isn = isn.combine_first(s_syn).combine_first(c_syn).astype(np.int64)
    cl, sv = _tcp.relative(cl, isn), _tcp.relative(sv, isn)
    handshake = _tcp.handshakes(cl if not cl.empty else sv)
    ooo_ns, fast_ns = _thresholds(handshake)

    cl_send = cl["dir"].to_numpy() == 0
    sv_send = sv["dir"].to_numpy() == 1
    cl1 = _tcp.flag_segments(cl, at_sender=cl_send, ooo_threshold_ns=ooo_ns, fast_window_ns=fast_ns)
    sv1 = _tcp.flag_segments(sv, at_sender=sv_send, ooo_threshold_ns=ooo_ns, fast_window_ns=fast_ns)
    sv_from = _match(sv, cl)  # server-capture row -> client-capture row
    cl_from = _match(cl, sv)
    cl2 = _tcp.flag_segments(
        cl,
        at_sender=cl_send,
        truth_retx=_truth(cl_from, sv1["retransmission"], ~cl_send),
        truth_fast=_truth(cl_from, sv1["fast_retransmission"], ~cl_send),
        ooo_threshold_ns=ooo_ns,
        fast_window_ns=fast_ns,
    )
    sv2 = _tcp.flag_segments(
        sv,
        at_sender=sv_send,
        truth_retx=_truth(sv_from, cl1["retransmission"], ~sv_send),
        truth_fast=_truth(sv_from, cl1["fast_retransmission"], ~sv_send),
        ooo_threshold_ns=ooo_ns,
        fast_window_ns=fast_ns,
    )
    # "spurious" is the receiver's judgement; a sender row carries its copy's verdict
    cl2["spurious"] = _receiver_verdict(cl_send, sv_from, ~sv_send, sv2["spurious"], cl2)
    sv2["spurious"] = _receiver_verdict(sv_send, cl_from, ~cl_send, cl2["spurious"], sv2)

    shifts = window_shifts(pd.concat([cl, sv], ignore_index=True))
    segments = pd.concat(
        [
            _segment_table(cl2, "client", client_port, shifts),
            _segment_table(sv2, "server", client_port, shifts),
        ],
        ignore_index=True,
    )
    rtt = pd.concat(
        [_rtt_table(cl2, cl_send, client_port), _rtt_table(sv2, sv_send, client_port)],
        ignore_index=True,
    ).sort_values(["ts_ns", "kind"], kind="stable", ignore_index=True)
    stats = _stats(cl2, sv2, rtt, handshake, ports=(client_port, server_port))
    hol = head_of_line(
        cl2, sv2, messages, blocked_threshold_ns=blocked_threshold_ns, reverse=reverse
    )
    return TcpWireAnalysis(segments, stats, rtt, hol, {int(k): int(v) for k, v in isn.items()})


def _rtt_table(seg: pd.DataFrame, sent_here: npt.NDArray[np.bool_], port: int) -> pd.DataFrame:
    """Karn and ack RTT samples of the segments one capture saw leave (``sent_here``)."""
    frames = seg["frame"].to_numpy(dtype=np.int64)
    ack = _tcp.ack_rtt_samples(seg)
    ack = ack.loc[sent_here[ack["row"].to_numpy(dtype=np.int64)]]
    parts = []
    for kind, part in (("karn", _tcp.karn_rtt_samples(seg, sent_here)), ("ack", ack)):
        parts.append(
            pd.DataFrame(
                {
                    "client_port": np.full(len(part), port, dtype=np.int64),
                    "direction": np.where(part["dir"] == 0, CLIENT_TO_SERVER, SERVER_TO_CLIENT),
                    "kind": kind,
                    "ts_ns": part["ts_ns"].to_numpy(dtype=np.int64),
                    "rtt_ns": part["rtt_ns"].to_numpy(dtype=np.int64),
                    "frame": frames[part["row"].to_numpy(dtype=np.int64)],
                    "ack_frame": frames[part["ack_row"].to_numpy(dtype=np.int64)],
                },
                columns=list(RTT_COLUMNS),
            )
        )
    return pd.concat(parts, ignore_index=True)


def _receiver_verdict(
    own_send: npt.NDArray[np.bool_],
    other_from: I64,
    other_recv: npt.NDArray[np.bool_],
    other_flag: pd.Series,
    own: pd.DataFrame,
) -> npt.NDArray[np.bool_]:
    """For rows of ``own`` taken at their sender: whether a copy the other capture
    received was flagged; other rows keep their own flag."""
    verdict = own["spurious"].to_numpy(dtype=np.bool_).copy()
    verdict[own_send] = False
    hits = other_recv & (other_from >= 0) & other_flag.to_numpy(dtype=np.bool_)
    verdict[other_from[hits]] = True
    return verdict


def window_shifts(seg: pd.DataFrame) -> dict[int, int] | None:
    """The window-scale shift of each direction (0: client -> server), or None if unknown.

    RFC 7323 §2.2: scaling is in effect only when both SYNs carried the option; each
    side then shifts the windows it advertises by the count it announced in its own
    SYN (at most 14, §2.3). Unknown when a SYN is missing from the captures or they
    were read without TCP options (``read_pcap(tcp_options=False)``).
    """
    if "tcp_wscale" not in seg or seg.empty:
        return None
    flags = seg["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    syn = seg.loc[(flags & _tcp.SYN) > 0]
    announced: dict[int, int | None] = {}
    for direction in (0, 1):
        mine = syn.loc[syn["dir"] == direction, "tcp_wscale"]
        if mine.empty:
            return None
        first = mine.iloc[0]
        announced[direction] = None if pd.isna(first) else min(int(first), MAX_WINDOW_SHIFT)
    if announced[0] is None or announced[1] is None:
        return {0: 0, 1: 0}
    return {0: announced[0], 1: announced[1]}


def _window_bytes(seg: pd.DataFrame, shifts: dict[int, int] | None) -> pd.arrays.IntegerArray:
    """The advertised receive window in bytes: the field scaled by its sender's shift;
    a SYN's window is never scaled (RFC 7323 §2.2). <NA> where the scale is unknown."""
    window = seg["tcp_window"].to_numpy(dtype=np.int64, na_value=0)
    flags = seg["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    syn = (flags & _tcp.SYN) > 0
    known = syn.copy()
    shift = np.zeros(len(seg), dtype=np.int64)
    if shifts is not None:
        known[:] = True
        direction = seg["dir"].to_numpy(dtype=np.int64)
        shift = np.where(syn, 0, np.where(direction == 0, shifts[0], shifts[1]))
    return pd.arrays.IntegerArray(window << shift, ~known)


def _sack_text(seg: pd.DataFrame) -> npt.NDArray[np.object_]:
    """SACK blocks (RFC 2018) as "left-right" pairs of relative sequence numbers, the
    ACK's numbering (right edge exclusive), separated by spaces; <NA> where none."""
    out = np.full(len(seg), pd.NA, dtype=object)
    if "tcp_sack_blocks" not in seg:
        return out
    count = seg["tcp_sack_blocks"].to_numpy(dtype=np.int64, na_value=0)
    ack = seg["ack"].to_numpy(dtype=np.float64)
    rows = np.flatnonzero((count > 0) & ~np.isnan(ack))
    if rows.size == 0:
        return out
    raw_ack = seg["tcp_ack"].to_numpy(dtype=np.int64, na_value=0)[rows]
    base = ack[rows].astype(np.int64)
    pairs: list[list[str]] = [[] for _ in rows]
    for i in range(1, 5):
        has = count[rows] >= i
        left = seg[f"tcp_sack{i}_left"].to_numpy(dtype=np.int64, na_value=0)[rows]
        right = seg[f"tcp_sack{i}_right"].to_numpy(dtype=np.int64, na_value=0)[rows]
        rel_left = base + _tcp.signed32(left - raw_ack)
        rel_right = base + _tcp.signed32(right - raw_ack)
        for k in np.flatnonzero(has):
            pairs[k].append(f"{rel_left[k]}-{rel_right[k]}")
    out[rows] = [" ".join(p) for p in pairs]
    return out


def _segment_table(
    seg: pd.DataFrame, side: str, client_port: int, shifts: dict[int, int] | None = None
) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "client_port": np.full(len(seg), client_port, dtype=np.int64),
            "side": side,
            "frame": seg["frame"].to_numpy(dtype=np.int64),
            "ts_ns": seg["ts_ns"].to_numpy(dtype=np.int64),
            "direction": np.where(seg["dir"] == 0, CLIENT_TO_SERVER, SERVER_TO_CLIENT),
            "seq": seg["seq"].to_numpy(dtype=np.int64),
            "ack": pd.array(seg["ack"].to_numpy(), dtype="Int64"),
            "len": seg["len"].to_numpy(dtype=np.int64),
            "flags": seg["tcp_flags"].to_numpy(dtype=np.int64, na_value=0),
            "window": seg["tcp_window"].to_numpy(dtype=np.int64, na_value=0),
            "ip_id": seg["ip_id"].astype("Int64").to_numpy(),
            "ip_len": seg["ip_len"].to_numpy(dtype=np.int64),
            **{
                name: seg[name].to_numpy(dtype=np.bool_)
                for name in (
                    "retransmission",
                    "fast_retransmission",
                    "spurious",
                    "dup_ack",
                    "out_of_order",
                )
            },
            "window_bytes": _window_bytes(seg, shifts),
            "sack": pd.array(_sack_text(seg), dtype="string"),
        },
        columns=list(TCP_SEGMENT_COLUMNS),
    )


def _stats(
    cl: pd.DataFrame,
    sv: pd.DataFrame,
    rtt: pd.DataFrame,
    handshake: pd.DataFrame,
    *,
    ports: tuple[int, int],
) -> pd.DataFrame:
    """Sender-side counts from each direction's sender capture, receiver-side counts
    (out of order, spurious) from its receiver capture; bytes as sent."""
    sent = pd.concat([cl.loc[cl["dir"] == 0], sv.loc[sv["dir"] == 1]])
    received = pd.concat([sv.loc[sv["dir"] == 0], cl.loc[cl["dir"] == 1]])
    payload = 0
    for d in (0, 1):
        rows = received.loc[(received["dir"] == d) & (received["len"] > 0)]
        payload += _union_bytes(*_stream_ranges(rows))
    wire = int(sent["ip_len"].sum())
    karn_ms = rtt.loc[rtt["kind"] == "karn", "rtt_ns"].to_numpy(dtype=np.float64) / 1e6
    ack_ms = rtt.loc[rtt["kind"] == "ack", "rtt_ns"].to_numpy(dtype=np.float64) / 1e6

    def pct(values: F64, q: int) -> float:
        return float(np.percentile(values, q)) if values.size else float("nan")

    row = {
        "client_port": ports[0],
        "server_port": ports[1],
        "segments": len(sent),
        "data_segments": int((sent["len"] > 0).sum()),
        "retransmissions": int(sent["retransmission"].sum()),
        "fast_retransmissions": int(sent["fast_retransmission"].sum()),
        "dup_acks": int(sent["dup_ack"].sum()),
        "out_of_order": int(received["out_of_order"].sum()),
        "spurious": int(received["spurious"].sum()),
        "handshake_rtt_ms": float(handshake["rtt_ns"].iloc[0]) / 1e6
        if not handshake.empty
        else float("nan"),
        "karn_rtt_samples": int(karn_ms.size),
        "karn_rtt_p50_ms": pct(karn_ms, 50),
        "karn_rtt_p99_ms": pct(karn_ms, 99),
        "ack_rtt_samples": int(ack_ms.size),
        "ack_rtt_p50_ms": pct(ack_ms, 50),
        "ack_rtt_p99_ms": pct(ack_ms, 99),
        "wire_bytes": wire,
        "payload_bytes": payload,
        "retransmitted_bytes": int(sent.loc[sent["retransmission"], "len"].sum()),
        "overhead_ratio": wire / payload if payload else float("nan"),
    }
    return pd.DataFrame([row], columns=list(TCP_STATS_COLUMNS))


def _first_times(seg: pd.DataFrame, points: I64) -> tuple[I64, I64, I64, I64]:
    """For stream byte offsets ``points`` (sorted): when a segment first carried the
    byte, when every byte up to it had been carried (the earliest in-order delivery),
    and the offset of the byte that arrived last among them; -1 where never.

    Also returns the row (capture position) of the segment that first carried it.
    """
    none = np.full(points.size, -1, dtype=np.int64)
    data = seg.loc[seg["len"] > 0]
    if data.empty or points.size == 0:
        return none, none.copy(), none.copy(), none.copy()
    start, stop = _stream_ranges(data)
    pos = data.index.to_numpy(dtype=np.int64)  # position in the capture-order table
    ts_all = seg["ts_ns"].to_numpy(dtype=np.int64)
    bounds, first = _tcp.elementary_first_cover(start, stop, pos)
    big = np.iinfo(np.int64).max
    t_first = np.where(first == big, big, ts_all[np.minimum(first, len(seg) - 1)])
    if bounds.size and bounds[0] > 0:  # the start of the stream was never captured
        t_first[:] = big
    prefix = np.maximum.accumulate(t_first)
    index = np.arange(t_first.size)
    last_at = np.maximum.accumulate(np.where(t_first == prefix, index, 0))
    j = np.searchsorted(bounds, points, side="right") - 1
    inside = (j >= 0) & (j < t_first.size)
    jj = np.where(inside, j, 0)
    first_t = np.where(inside & (t_first[jj] != big), t_first[jj], -1)
    complete = np.where(inside & (prefix[jj] != big), prefix[jj], -1)
    wait = np.where(complete >= 0, bounds[last_at[jj]], -1)
    row = np.where(first_t >= 0, first[jj], -1)
    return first_t, complete, wait, row


def head_of_line(
    client: pd.DataFrame,
    server: pd.DataFrame,
    messages: pd.DataFrame,
    *,
    blocked_threshold_ns: int = BLOCKED_THRESHOLD_NS,
    reverse: bool = False,
) -> pd.DataFrame:
    """Per TCP message: when its last byte first reached the receiver's interface and how
    long it then waited in the receiver's kernel before the application had it.

    Messages go back to back in the stream, so message k holds the bytes after the
    sizes of messages 0..k-1. TCP hands bytes to the application only in order
    (RFC 9293 §3.10.7.4): a message whose bytes are all there still waits while an
    earlier byte is missing. ``t_complete_ns`` is when every byte up to its last had
    arrived, ``wait_offset`` the stream offset of the byte that arrived last among
    them; ``blocked`` = waited > ``blocked_threshold_ns`` with such a byte missing at
    its arrival. ``t_first_tx_ns`` is when the sender first sent its last byte. The
    sender is the client, or with ``reverse`` the server (``client`` and ``server`` are
    the two ends' captures either way).
    """
    tcp = messages.loc[messages["protocol"] == "tcp"].sort_values("seq", kind="stable")
    size = tcp["size"].to_numpy(dtype=np.int64)
    end = np.cumsum(size)
    first_byte, last_byte = end - size, end - 1
    way, sender, receiver = (1, server, client) if reverse else (0, client, server)
    arriving = receiver.loc[receiver["dir"] == way]
    leaving = sender.loc[sender["dir"] == way]
    t_last, t_complete, wait, _ = _first_times(arriving.reset_index(drop=True), last_byte)
    t_tx, _, _, _ = _first_times(leaving.reset_index(drop=True), last_byte)
    t_recv = tcp["t_recv_ns"].astype("Int64").to_numpy(dtype=np.int64, na_value=-1)
    arrived = (t_last >= 0) & (t_recv >= 0)
    hol_wait = np.where(arrived, t_recv - t_last, 0)
    blocked = arrived & (hol_wait > blocked_threshold_ns) & (t_complete > t_last)

    def nullable(values: npt.ArrayLike, valid: npt.NDArray[np.bool_]) -> pd.arrays.IntegerArray:
        return pd.arrays.IntegerArray(np.asarray(values, dtype=np.int64), ~valid)

    return pd.DataFrame(
        {
            "seq": tcp["seq"].to_numpy(dtype=np.int64),
            "first_byte": first_byte,
            "last_byte": last_byte,
            "t_first_tx_ns": nullable(t_tx, t_tx >= 0),
            "t_last_byte_ns": nullable(t_last, t_last >= 0),
            "t_complete_ns": nullable(t_complete, t_complete >= 0),
            "t_recv_ns": nullable(t_recv, t_recv >= 0),
            "hol_wait_ns": nullable(hol_wait, arrived),
            "blocked": blocked,
            "wait_offset": nullable(wait, wait >= 0),
        },
        columns=list(HOL_COLUMNS),
    )


def analyze_tcp(
    client_pcap: Path,
    server_pcap: Path,
    messages: pd.DataFrame,
    client_port: int,
    server_port: int,
    *,
    blocked_threshold_ns: int = BLOCKED_THRESHOLD_NS,
) -> TcpWireAnalysis:
    """Wire analysis of one TCP exchange from its two captures (see the module doc).

    ``messages`` is the run's messages table (its ``tcp`` rows are used for
    head-of-line blocking). Raises AnalysisError when a capture cannot be read or
    holds no segment of the connection.
    """
    client = read_pcap(client_pcap, tcp_options=True).packets
    server = read_pcap(server_pcap, tcp_options=True).packets
    return analyze_tcp_frames(
        client,
        server,
        messages,
        client_port,
        server_port,
        blocked_threshold_ns=blocked_threshold_ns,
    )
