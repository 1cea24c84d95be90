"""Flows of any pcap file and what can be inferred about them (see :mod:`lab.analysis.offline`).

A flow is a bidirectional 5-tuple (protocol, two address:port endpoints); its
initiator ("a") is the sender of the TCP SYN, else of its first packet. All flows
are analysed at once with grouped numpy/pandas operations, so a capture with many
small flows costs no more per packet than one large flow.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab.analysis import _tcp
from lab.analysis.pcap import LAB_RAW_PROTO, PcapFrame, PcapStats, read_pcap

IPPROTO_TCP, IPPROTO_UDP = 6, 17
PROTO_NAMES = {1: "icmp", 2: "igmp", 6: "tcp", 17: "udp", 47: "gre", 58: "icmpv6", 132: "sctp"}
PROTO_NAMES[LAB_RAW_PROTO] = "lab-raw"

FLOW_COLUMNS = (
    "proto",
    "a",
    "a_port",
    "b",
    "b_port",
    "packets",
    "bytes",
    "packets_ab",
    "packets_ba",
    "start_ns",
    "duration_s",
    "capture_at",
    "retransmissions",
    "fast_retransmissions",
    "dup_acks",
    "out_of_order",
    "spurious",
    "handshake_rtt_ms",
    "karn_rtt_samples",
    "karn_rtt_p50_ms",
    "ack_rtt_samples",
    "ack_rtt_p50_ms",
    "lab_seq_packets",
    "lab_lost",
    "lab_reordered",
    "lab_duplicates",
)
_TCP_COUNTS = ("retransmissions", "fast_retransmissions", "dup_acks", "out_of_order", "spurious")
_LAB_COUNTS = ("lab_seq_packets", "lab_lost", "lab_reordered", "lab_duplicates")

#: Columns of ``CaptureReport.rtt_samples``: one row per sample of either kind.
RTT_SAMPLE_COLUMNS = ("flow", "dir", "kind", "ts_ns", "rtt_ns", "frame", "ack_frame", "counted")
_COUNT_COLUMNS = (*_TCP_COUNTS, "karn_rtt_samples", "ack_rtt_samples")

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CaptureReport:
    """What ``lab analyze`` found in one file: its flows (largest first) and the
    reader's counts (records, packets, skipped records and why).

    ``rtt_samples`` (:data:`RTT_SAMPLE_COLUMNS`) holds every TCP RTT sample: ``kind``
    "karn" or "ack" (see :mod:`lab.analysis._tcp`), ``dir`` of the data segment,
    ``frame`` / ``ack_frame`` its and its ACK's frame numbers (1-based, as Wireshark
    counts) and ``counted`` whether the flow's figures include it (the segment was
    sent by the host the capture sat at, or that is unknown). "ack" rows are exactly
    tshark's ``tcp.analysis.ack_rtt`` values, in both directions.
    """

    path: Path
    linktype: int
    stats: PcapStats
    flows: pd.DataFrame
    rtt_samples: pd.DataFrame

    def rows(self, top: int | None = None) -> list[dict[str, Any]]:
        """The ``top`` largest flows (all: None) as plain Python values, None = missing."""
        flows = self.flows if top is None else self.flows.head(top)
        return [
            {str(k): _plain(v) for k, v in row.items()} for row in flows.to_dict(orient="records")
        ]


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def analyze_capture(path: Path) -> CaptureReport:
    """Read ``path`` (classic pcap; see :func:`~lab.analysis.pcap.read_pcap`) and
    analyse every flow in it. Raises only AnalysisError (unreadable, not a pcap)."""
    frame = read_pcap(path)
    flows, rtt = analyze_frame(frame)
    return CaptureReport(Path(path), frame.linktype, frame.stats, flows, rtt)


def _address_ids(frame: PcapFrame, column: str) -> I64:
    """Integer identity of each packet's address: the IPv4 value, or 2^32 + a rank
    of the IPv6 address among the file's IPv6 addresses (sources and destinations)."""
    ids = frame.packets[column].to_numpy(dtype=np.int64, na_value=-1)
    if frame.ipv6_rows.size:
        both = np.concatenate((frame.src6, frame.dst6)).reshape(-1, 16)
        _, inverse = np.unique(both, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        half = frame.ipv6_rows.size
        ranks = inverse[:half] if column == "src" else inverse[half:]
        ids[frame.ipv6_rows] = (1 << 32) + ranks.astype(np.int64)
    return ids


def _address_text(frame: PcapFrame, column: str, rows: I64) -> list[str]:
    """Addresses of ``column`` at packet positions ``rows`` as text."""
    values = frame.packets[column].to_numpy(dtype=np.int64, na_value=-1)[rows]
    v6_index = {int(r): k for k, r in enumerate(frame.ipv6_rows)}
    raw = frame.src6 if column == "src" else frame.dst6
    out = []
    for row, value in zip(rows.tolist(), values.tolist(), strict=True):
        if value >= 0:
            out.append(str(ipaddress.IPv4Address(value)))
        elif row in v6_index:
            out.append(str(ipaddress.IPv6Address(bytes(raw[v6_index[row]]))))
        else:
            out.append("?")
    return out


def _flows(frame: PcapFrame) -> tuple[I64, I64, npt.NDArray[np.bool_]]:
    """Per packet: its flow number (bidirectional 5-tuple, in order of appearance),
    its direction (0: from the initiator) and whether it is a TCP segment."""
    p = frame.packets
    proto = p["proto"].to_numpy(dtype=np.int64)
    sport = p["sport"].to_numpy(dtype=np.int64, na_value=-1)
    dport = p["dport"].to_numpy(dtype=np.int64, na_value=-1)
    src_ep = _address_ids(frame, "src") * (1 << 17) + (sport + 1)
    dst_ep = _address_ids(frame, "dst") * (1 << 17) + (dport + 1)
    lo, hi = np.minimum(src_ep, dst_ep), np.maximum(src_ep, dst_ep)
    keys = pd.DataFrame({"proto": proto, "lo": lo, "hi": hi})
    flow = keys.groupby(["proto", "lo", "hi"], sort=False).ngroup().to_numpy(dtype=np.int64)

    flags = p["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    is_tcp = (proto == IPPROTO_TCP) & p["tcp_seq"].notna().to_numpy(dtype=np.bool_)
    syn = is_tcp & ((flags & (_tcp.SYN | _tcp.ACK)) == _tcp.SYN)
    rows = pd.DataFrame({"flow": flow, "src": src_ep, "syn": syn})
    first_src = rows.groupby("flow")["src"].first()
    syn_src = rows.loc[syn].groupby("flow")["src"].first()
    initiator = syn_src.combine_first(first_src)
    direction = (src_ep != initiator.reindex(flow).to_numpy()).astype(np.int64)
    return flow.astype(np.int64), direction, is_tcp


#: Columns of :func:`tcp_segment_flags`.
SEGMENT_FLAG_COLUMNS = (
    "frame",
    "flow",
    "dir",
    "seq",
    "seq_end",
    "len",
    "ack",
    "sent_here",
    "retransmission",
    "fast_retransmission",
    "spurious",
    "out_of_order",
    "dup_ack",
)


def tcp_segment_flags(frame: PcapFrame) -> pd.DataFrame:
    """Per TCP segment of a capture: what ``lab analyze`` counts it as
    (:data:`SEGMENT_FLAG_COLUMNS`: ``seq`` and ``seq_end`` relative to the ISN,
    ``len`` payload bytes, ``ack`` relative to the peer's ISN (NaN without the ACK
    flag), ``sent_here`` its direction leaves the host the capture sat at, known from
    the handshake)."""
    flow, direction, is_tcp = _flows(frame)
    if not is_tcp.any():
        return pd.DataFrame(columns=list(SEGMENT_FLAG_COLUMNS))
    _, flagged, at_sender, _ = _flag_tcp(frame.packets.loc[is_tcp], flow[is_tcp], direction[is_tcp])
    table = flagged.assign(sent_here=at_sender)
    return table[list(SEGMENT_FLAG_COLUMNS)].reset_index(drop=True)


def analyze_frame(frame: PcapFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-flow table (:data:`FLOW_COLUMNS`, largest flows first) and TCP RTT samples
    (:data:`RTT_SAMPLE_COLUMNS`) of an already-read capture."""
    p = frame.packets
    n = len(p)
    if n == 0:
        return pd.DataFrame(columns=list(FLOW_COLUMNS)), pd.DataFrame(
            columns=list(RTT_SAMPLE_COLUMNS)
        )
    proto = p["proto"].to_numpy(dtype=np.int64)
    sport = p["sport"].to_numpy(dtype=np.int64, na_value=-1)
    dport = p["dport"].to_numpy(dtype=np.int64, na_value=-1)
    flow, direction, is_tcp = _flows(frame)
    rows = pd.DataFrame({"flow": flow, "pos": np.arange(n)})

    ts = p["ts_ns"].to_numpy(dtype=np.int64)
    size = p["ip_len"].to_numpy(dtype=np.int64)
    per = pd.DataFrame({"flow": flow, "ts": ts, "size": size, "dir": direction})
    grouped = per.groupby("flow")
    flows = pd.DataFrame(
        {
            "packets": grouped.size(),
            "bytes": grouped["size"].sum(),
            "packets_ab": (per["dir"] == 0).groupby(per["flow"]).sum(),
            "start_ns": grouped["ts"].min(),
            "end_ns": grouped["ts"].max(),
        }
    )
    flows["packets_ba"] = flows["packets"] - flows["packets_ab"]
    flows["duration_s"] = (flows["end_ns"] - flows["start_ns"]) / 1e9
    first_row = rows.groupby("flow")["pos"].first().to_numpy(dtype=np.int64)
    a_is_src = direction[first_row] == 0
    src_text = _address_text(frame, "src", first_row)
    dst_text = _address_text(frame, "dst", first_row)
    flows["proto"] = [PROTO_NAMES.get(int(x), str(int(x))) for x in proto[first_row]]
    flows["a"] = np.where(a_is_src, src_text, dst_text)
    flows["b"] = np.where(a_is_src, dst_text, src_text)
    a_port = np.where(a_is_src, sport[first_row], dport[first_row])
    b_port = np.where(a_is_src, dport[first_row], sport[first_row])
    flows["a_port"] = pd.array(np.where(a_port >= 0, a_port, 0), dtype="Int64")
    flows["b_port"] = pd.array(np.where(b_port >= 0, b_port, 0), dtype="Int64")
    flows.loc[a_port < 0, "a_port"] = pd.NA
    flows.loc[b_port < 0, "b_port"] = pd.NA

    tcp_table, rtt = _tcp_flows(p.loc[is_tcp], flow[is_tcp], direction[is_tcp])
    flows = flows.join(tcp_table)
    lab = (proto == IPPROTO_UDP) | (proto == LAB_RAW_PROTO)
    lab &= p["lab_seq"].notna().to_numpy()
    flows = flows.join(_lab_seq_flows(p.loc[lab, "lab_seq"], flow[lab], direction[lab]))
    for name in _COUNT_COLUMNS:
        flows[name] = flows[name].astype("Int64") if name in flows else pd.NA
    for name in _LAB_COUNTS:
        flows[name] = flows[name].astype("Int64") if name in flows else pd.NA
    flows = flows.sort_values(["bytes", "packets"], ascending=False, kind="stable")
    return flows.reindex(columns=list(FLOW_COLUMNS)).reset_index(drop=True), rtt


def _tcp_flows(
    packets: pd.DataFrame, flow: I64, direction: I64
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per TCP flow: retransmissions, duplicate ACKs, out-of-order, spurious, handshake
    RTT, Karn and ack RTT samples, judged as :mod:`lab.analysis._tcp` does for a
    single capture.

    Where the handshake shows which end the capture sat at (``capture_at``), the
    direction that end sends is judged as at a sender (exact) and the other as at a
    receiver; elsewhere tshark's timing heuristic separates reordering from
    retransmission. The RTT figures count the samples of segments sent from the
    capture point (both directions when it is unknown): at a receiver a "sample"
    would time that host's own ACK delay.
    """
    if packets.empty:
        empty = pd.DataFrame(columns=list(RTT_SAMPLE_COLUMNS))
        return pd.DataFrame(index=pd.Index([], name="flow")), empty
    seg, flagged, at_sender, shakes = _flag_tcp(packets, flow, direction)
    known = shakes["at_client"].reindex(flow).notna().to_numpy(dtype=np.bool_)
    counted = at_sender | ~known
    samples = _sample_table(
        seg,
        _tcp.karn_rtt_samples(flagged, counted),
        _tcp.ack_rtt_samples(seg),
        counted,
    )
    by = flagged.groupby("flow")
    table = pd.DataFrame(
        {
            "retransmissions": by["retransmission"].sum(),
            "fast_retransmissions": by["fast_retransmission"].sum(),
            "dup_acks": by["dup_ack"].sum(),
            "out_of_order": by["out_of_order"].sum(),
            "spurious": by["spurious"].sum(),
        }
    )
    table["capture_at"] = (
        shakes["at_client"].map({True: "client", False: "server"}).reindex(table.index)
    )
    table["handshake_rtt_ms"] = shakes["rtt_ns"].reindex(table.index) / 1e6
    for kind in ("karn", "ack"):
        mine = samples.loc[(samples["kind"] == kind) & samples["counted"]]
        rtt_by = mine.groupby("flow")["rtt_ns"]
        table[f"{kind}_rtt_samples"] = rtt_by.size().reindex(table.index).fillna(0)
        table[f"{kind}_rtt_p50_ms"] = rtt_by.median().reindex(table.index) / 1e6
    return table, samples


def _flag_tcp(
    packets: pd.DataFrame, flow: I64, direction: I64
) -> tuple[pd.DataFrame, pd.DataFrame, npt.NDArray[np.bool_], pd.DataFrame]:
    """The TCP segments made relative, their flags, which rows were captured at their
    sender, and the handshakes (indexed by flow)."""
    seg = packets.reset_index(drop=True).assign(flow=flow, dir=direction)
    seg["g"] = 2 * seg["flow"] + seg["dir"]
    seg = _tcp.relative(seg)
    shakes = _tcp.handshakes(seg).set_index("flow")
    at_client = shakes["at_client"].reindex(flow).to_numpy(dtype=np.float64, na_value=np.nan)
    known = ~np.isnan(at_client)
    at_sender = known & (
        ((direction == 0) & (at_client == 1)) | ((direction == 1) & (at_client == 0))
    )
    hs_rtt = shakes["rtt_ns"].reindex(flow).to_numpy(dtype=np.float64, na_value=np.nan)
    ooo = np.where(np.isnan(hs_rtt), _tcp.DEFAULT_OOO_THRESHOLD_NS, np.maximum(hs_rtt, 1))
    fast = np.where(
        np.isnan(hs_rtt), _tcp.FAST_WINDOW_FLOOR_NS, np.maximum(hs_rtt, _tcp.FAST_WINDOW_FLOOR_NS)
    )
    flagged = _tcp.flag_segments(
        seg,
        at_sender=at_sender,
        ooo_threshold_ns=ooo.astype(np.int64),
        fast_window_ns=fast.astype(np.int64),
    )
    return seg, flagged, at_sender, shakes


def _sample_table(
    seg: pd.DataFrame, karn: pd.DataFrame, ack: pd.DataFrame, counted: npt.NDArray[np.bool_]
) -> pd.DataFrame:
    """Both kinds of RTT samples in one table (:data:`RTT_SAMPLE_COLUMNS`), frames
    instead of row positions, in order of the ACK."""
    frames = seg["frame"].to_numpy(dtype=np.int64)
    parts = []
    for kind, part in (("karn", karn), ("ack", ack)):
        rows = part["row"].to_numpy(dtype=np.int64)
        ack_rows = part["ack_row"].to_numpy(dtype=np.int64)
        parts.append(
            pd.DataFrame(
                {
                    "flow": part["flow"].to_numpy(dtype=np.int64),
                    "dir": part["dir"].to_numpy(dtype=np.int64),
                    "kind": kind,
                    "ts_ns": part["ts_ns"].to_numpy(dtype=np.int64),
                    "rtt_ns": part["rtt_ns"].to_numpy(dtype=np.int64),
                    "frame": frames[rows],
                    "ack_frame": frames[ack_rows],
                    "counted": counted[rows],
                },
                columns=list(RTT_SAMPLE_COLUMNS),
            )
        )
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(["ack_frame", "kind"], kind="stable", ignore_index=True)


def _lab_seq_flows(lab_seq: pd.Series, flow: I64, direction: I64) -> pd.DataFrame:
    """Per flow: loss, reordering (RFC 4737 §3.3) and duplicates by the lab's message
    seq, over the directions whose first payload word looks like a counter.

    Any UDP payload yields a "lab_seq" (its first 4 bytes); a direction counts only
    when its values span no more than twice their distinct count (plus slack), which
    a counter does and random bytes do not.
    """
    if lab_seq.empty:
        return pd.DataFrame(index=pd.Index([], name="flow"))
    seqs = lab_seq.to_numpy(dtype=np.int64)
    g = 2 * flow + direction
    frame = pd.DataFrame({"flow": flow, "g": g, "seq": seqs})
    by = frame.groupby("g")
    span = by["seq"].max() - by["seq"].min() + 1
    unique = by["seq"].nunique()
    counter = (span <= 2 * unique + 16) & (unique >= 2)
    frame = frame.loc[frame["g"].map(counter).to_numpy(dtype=np.bool_)]
    if frame.empty:
        return pd.DataFrame(index=pd.Index([], name="flow"))
    first = frame.drop_duplicates(["g", "seq"])
    highest = first.groupby("g")["seq"].cummax().groupby(first["g"]).shift()
    reordered = (first["seq"] < highest).groupby(first["flow"]).sum()
    per_g = frame.groupby("g").agg(
        flow=("flow", "first"),
        n=("seq", "size"),
        u=("seq", "nunique"),
        lo=("seq", "min"),
        hi=("seq", "max"),
    )
    per_g["lost"] = per_g["hi"] - per_g["lo"] + 1 - per_g["u"]
    per_g["dup"] = per_g["n"] - per_g["u"]
    per_flow = per_g.groupby("flow")[["n", "lost", "dup"]].sum()
    return pd.DataFrame(
        {
            "lab_seq_packets": per_flow["n"],
            "lab_lost": per_flow["lost"],
            "lab_reordered": reordered.reindex(per_flow.index).fillna(0),
            "lab_duplicates": per_flow["dup"],
        }
    )
