"""Join the three views of a run: the applications (messages.csv), the wire (both
captures) and the engine (impairment.csv, its decision for every packet).

Every UDP message lost and every TCP message late gets a row in an ``explained``
table: what happened to it and the evidence, so that a loss or a delay the engine
did not cause (a "self-induced" one: the host, the capture, the lab itself) stands
out as ``unexplained`` instead of being blamed on the impairment.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab.analysis import _tcp
from lab.analysis._wire_tcp import CLIENT_TO_SERVER, TcpWireAnalysis
from lab.analysis.pcap import read_pcap
from lab.errors import AnalysisError

EXPLAINED_COLUMNS = ("protocol", "seq", "kind", "cause", "explained", "delay_ms", "evidence")
SUMMARY_COLUMNS = (
    "protocol",
    "kind",
    "messages",
    "explained",
    "unexplained",
    "explained_pct",
    "causes",
)
#: Causes that put the blame on the engine (or, for TCP, on the path it shapes).
ENGINE_CAUSES = ("dropped-loss", "dropped-queue", "corrupted")
#: A TCP message is late when its one-way delay exceeds max(LATE_FACTOR x median,
#: median + LATE_MARGIN_NS), or when it was head-of-line blocked.
LATE_FACTOR = 2.0
LATE_MARGIN_NS = 1_000_000
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_LAB_RAW = 6, 17, 253

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]


def read_table(path: Path) -> pd.DataFrame:
    """A results CSV with exact nullable integers (ns timestamps do not fit a float)."""
    try:
        return pd.read_csv(path, dtype_backend="numpy_nullable")
    except (OSError, ValueError) as exc:
        raise AnalysisError(f"{path}: cannot read table: {exc}") from exc


def _ms(values: pd.Series) -> pd.Series:
    """Nanosecond durations as text in ms with one decimal ("?" when missing)."""
    ms = values.astype("Float64") / 1e6
    text = ms.map(lambda v: f"{round(v, 1) + 0.0:.1f}", na_action="ignore").astype("string")
    return text.fillna("?")


def _signed_ms(values: pd.Series) -> pd.Series:
    """Like :func:`_ms` with an explicit sign: "+12.5", "-0.3"."""
    ms = values.astype("Float64") / 1e6
    text = ms.map(lambda v: f"{v:+.1f}", na_action="ignore").astype("string")
    return text.fillna("?")


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=list(EXPLAINED_COLUMNS))


# --------------------------------------------------------------------------- UDP


def explain_udp_losses(
    messages: pd.DataFrame,
    ground_truth: pd.DataFrame,
    client_port: int,
    server_port: int,
    *,
    client_packets: pd.DataFrame | None = None,
    server_packets: pd.DataFrame | None = None,
    protocol: str = "udp",
    client_address: str | None = None,
) -> pd.DataFrame:
    """Every UDP (or, with ``protocol="raw"``, RAW) message that never reached the
    server application, with its cause.

    RAW has no ports: its datagrams are told apart by IP protocol 253, direction
    (engine) and source address (captures, when ``client_address`` is given).

    The engine's row for the datagram (matched by the message seq the payload
    carries) gives the cause: ``dropped-loss`` / ``dropped-queue``, or ``corrupted``
    (forwarded with a flipped bit: the receiver's UDP checksum discards it, RFC 768).
    Otherwise the captures say where it vanished, and the loss is ``unexplained``:
    never on the client's interface, sent but never seen by the engine, or forwarded
    and captured at the server but not delivered (its socket buffer: see the
    ``server.Udp.RcvbufErrors`` counter in exchanges.csv).
    """
    datagrams = messages.loc[messages["protocol"] == protocol]
    lost = datagrams.loc[datagrams["copies"].astype("Int64").fillna(0) == 0, ["seq", "t_send_ns"]]
    if lost.empty:
        return _empty()
    lost = lost.astype({"seq": "int64", "t_send_ns": "Int64"}).reset_index(drop=True)
    gt = ground_truth
    if protocol == "raw":
        mine = (gt["ip_proto"] == IPPROTO_LAB_RAW) & (gt["direction"] == "client_to_server")
    else:
        mine = (
            (gt["ip_proto"] == IPPROTO_UDP)
            & (gt["src_port"] == client_port).fillna(False)
            & (gt["dst_port"] == server_port).fillna(False)
        )
    to_server = gt.loc[mine & gt["lab_seq"].notna()]
    # a message sent as IP fragments shares its fate with the worst-treated fragment
    harmed = (to_server["fate"].astype("string") != "forwarded") | to_server["corrupted"].astype(
        bool
    )
    engine = (
        to_server.assign(_harmed=harmed)
        .sort_values(["_harmed", "t_in_ns"], ascending=[False, True], kind="stable")
        .drop_duplicates("lab_seq")
        .astype({"lab_seq": "int64"})
        .set_index("lab_seq")
    )
    seqs = lost["seq"]
    fate = engine["fate"].astype("string").reindex(seqs).to_numpy()
    corrupted = engine["corrupted"].astype("boolean").reindex(seqs).fillna(False).to_numpy()
    t_in = pd.Series(engine["t_in_ns"].astype("Int64").reindex(seqs).to_numpy(), dtype="Int64")
    flow = (protocol, client_port, server_port, client_address)
    seen_client = _seen_in_capture(client_packets, flow, seqs)
    seen_server = _seen_in_capture(server_packets, flow, seqs)

    cause = pd.Series(fate, dtype="string")
    cause = cause.where(~((cause == "forwarded") & corrupted), "corrupted")
    at_engine = cause.notna()
    forwarded = cause == "forwarded"
    cause = cause.where(~forwarded.fillna(False), "receiver-kernel")
    cause = cause.fillna("unexplained")
    explained = cause.isin(ENGINE_CAUSES).to_numpy(dtype=np.bool_)

    after = _ms(t_in - lost["t_send_ns"])
    evidence = pd.Series("", index=lost.index, dtype="string")
    engine_text = "engine " + cause + " it " + after + " ms after the send (ip_id "
    ids = engine["ip_id"].astype("Int64").reindex(seqs).astype("string").fillna("?")
    engine_text = engine_text + ids.to_numpy() + ")"
    evidence = evidence.where(~at_engine.to_numpy(), engine_text)
    rcv_text = pd.Series("engine forwarded it intact", index=lost.index, dtype="string")
    if server_packets is not None:
        seen = np.where(seen_server, "; captured at the server", "; not captured at the server")
        rcv_text = rcv_text + seen
    rcv_text = rcv_text + ": not delivered by the receiver's kernel (socket buffer?)"
    evidence = evidence.where(~forwarded.fillna(False).to_numpy(), rcv_text)
    never = "never seen by the engine: "
    where = np.where(
        seen_client,
        "captured leaving the client, lost before the engine",
        "not captured on the client's interface",
    )
    if client_packets is None:
        where = np.full(len(lost), "no client capture to tell where")
    evidence = evidence.where(at_engine.to_numpy(), never + pd.Series(where, dtype="string"))
    return pd.DataFrame(
        {
            "protocol": protocol,
            "seq": seqs.to_numpy(),
            "kind": "lost",
            "cause": cause.to_numpy(),
            "explained": explained,
            "delay_ms": np.nan,
            "evidence": evidence.to_numpy(),
        },
        columns=list(EXPLAINED_COLUMNS),
    )


def _seen_in_capture(
    packets: pd.DataFrame | None,
    flow: tuple[str, int, int, str | None],
    seqs: pd.Series,
) -> Mask:
    """Whether a capture holds a client -> server datagram carrying each seq."""
    if packets is None:
        return np.zeros(len(seqs), dtype=np.bool_)
    protocol, client_port, server_port, client_address = flow
    if protocol == "raw":
        mine = packets["proto"] == IPPROTO_LAB_RAW
        if client_address is not None:
            mine &= (packets["src"] == int(ipaddress.IPv4Address(client_address))).fillna(False)
    else:
        mine = (
            (packets["proto"] == IPPROTO_UDP)
            & (packets["sport"] == client_port).fillna(False)
            & (packets["dport"] == server_port).fillna(False)
        )
    carried = packets.loc[mine, "lab_seq"].dropna().astype("int64")
    return seqs.isin(carried).to_numpy(dtype=np.bool_)


# --------------------------------------------------------------------------- TCP


def late_threshold_ns(messages: pd.DataFrame) -> float:
    """One-way delay above which a TCP message counts as late (NaN: nothing delivered)."""
    owd = messages.loc[messages["protocol"] == "tcp", "owd_ns"].astype("Float64").dropna()
    if owd.empty:
        return float("nan")
    median = float(owd.median())
    return max(LATE_FACTOR * median, median + LATE_MARGIN_NS)


def _engine_tcp(
    ground_truth: pd.DataFrame, analysis: TcpWireAnalysis, ports: tuple[int, int]
) -> pd.DataFrame:
    """The engine's client -> server data segments with 0-based stream offsets."""
    client_port, server_port = ports
    gt = ground_truth
    rows = gt.loc[
        (gt["ip_proto"] == IPPROTO_TCP)
        & (gt["src_port"] == client_port).fillna(False)
        & (gt["dst_port"] == server_port).fillna(False)
        & (gt["payload_len"] > 0)
    ].sort_values("t_in_ns", kind="stable")
    rows = rows.reset_index(drop=True)
    if rows.empty or 0 not in analysis.isn:
        return rows.assign(start=np.zeros(len(rows), np.int64), stop=np.zeros(len(rows), np.int64))
    seq = rows["tcp_seq"].to_numpy(dtype=np.int64)
    base = np.full(seq.size, analysis.isn[0], dtype=np.int64)
    start = _tcp._unwrap(seq, np.zeros(seq.size, np.int64), base) - 1
    length = rows["payload_len"].to_numpy(dtype=np.int64)
    return rows.assign(start=start, stop=start + length)


def _carriers(segments: pd.DataFrame, side: str) -> pd.DataFrame:
    """Client -> server data segments of one capture, in capture order, with offsets."""
    rows = segments.loc[
        (segments["side"] == side)
        & (segments["direction"] == CLIENT_TO_SERVER)
        & (segments["len"] > 0)
    ].reset_index(drop=True)
    syn = (rows["flags"].to_numpy(dtype=np.int64) & _tcp.SYN) > 0
    start = rows["seq"].to_numpy(dtype=np.int64) - 1 + syn
    return rows.assign(start=start, stop=start + rows["len"].to_numpy(dtype=np.int64))


def _first_carrier(rows: pd.DataFrame, points: I64) -> I64:
    """Position in ``rows`` of the first row carrying each stream byte (-1: none)."""
    return _tcp.first_cover(
        rows["start"].to_numpy(dtype=np.int64),
        rows["stop"].to_numpy(dtype=np.int64),
        np.arange(len(rows), dtype=np.int64),
        points,
    )


def _take(frame: pd.DataFrame, column: str, at: I64, dtype: str = "Int64") -> pd.Series:
    """``frame[column]`` at positions ``at`` (<NA> where at < 0)."""
    values = pd.Series(pd.NA, index=range(at.size), dtype=dtype)
    ok = at >= 0
    if ok.any():
        values[ok] = frame[column].iloc[at[ok]].to_numpy()
    return values


def explain_tcp_delays(
    messages: pd.DataFrame,
    ground_truth: pd.DataFrame,
    analysis: TcpWireAnalysis,
    client_port: int,
    server_port: int,
    *,
    late_ns: float | None = None,
) -> pd.DataFrame:
    """Every late TCP message (:func:`late_threshold_ns`, or head-of-line blocked),
    with where its delay came from and the evidence.

    A message's one-way delay splits, by the captures, into: waiting in the client's
    socket buffer (application send -> first transmission of its last byte: the
    congestion or receive window was full), the path (-> first arrival at the server;
    beyond the usual one-way delay this means its own data was lost and resent),
    head-of-line blocking (-> every earlier byte arrived: TCP delivers in order,
    RFC 9293 §3.10.7.4) and the receiving application (-> read). The largest excess
    names the cause:

    * ``dropped-loss`` / ``dropped-queue`` / ``corrupted``: the engine dropped (or
      damaged) the segment carrying its own last byte, or the earlier byte it waited
      for; the evidence names that engine decision and the retransmission that
      brought the byte (as the client-side capture saw it leave).
    * ``reordering``: it waited for earlier bytes the engine took in first but let
      out later (delay, jitter, a reordered segment overtaking); nothing was lost.
    * ``engine-delay``: its own bytes were held by the engine longer than usual
      (jitter); nothing was lost.
    * ``sender-backlog``: its bytes left the client late (window-limited sender).
    * ``receiver-app``: the bytes were all there; the server application read late.
    * ``unexplained``: bytes were missing or slow but the engine did nothing to
      them: lost or held between the client and the engine (self-induced).

    Whatever the cause, a message that was blocked also gets the engine drop it
    waited for in its evidence.
    """
    tcp = messages.loc[messages["protocol"] == "tcp"].sort_values("seq", kind="stable")
    hol = analysis.hol.reset_index(drop=True)
    if tcp.empty or hol.empty:
        return _empty()
    threshold = late_threshold_ns(messages) if late_ns is None else late_ns
    owd = tcp["owd_ns"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    late = (owd > threshold) | hol["blocked"].to_numpy(dtype=np.bool_)
    if not late.any():
        return _empty()
    h = hol.loc[late].reset_index(drop=True)
    t_send = pd.Series(tcp["t_send_ns"].astype("Int64").to_numpy()[late], dtype="Int64")

    def ns(name: str) -> pd.Series:
        values: pd.Series = h[name].astype("Int64").astype("Float64")
        return values

    all_path = (analysis.hol["t_last_byte_ns"] - analysis.hol["t_first_tx_ns"]).astype("Float64")
    usual = float(all_path.median()) if all_path.notna().any() else 0.0
    parts = pd.DataFrame(
        {
            "sender-backlog": ns("t_first_tx_ns") - t_send.astype("Float64"),
            "path": ns("t_last_byte_ns") - ns("t_first_tx_ns") - usual,
            "head-of-line": ns("t_complete_ns") - ns("t_last_byte_ns"),
            "receiver-app": ns("t_recv_ns") - ns("t_complete_ns"),
        }
    ).fillna(-np.inf)
    dominant = parts.idxmax(axis=1).to_numpy()

    engine = _engine_tcp(ground_truth, analysis, (client_port, server_port))
    own = _loss_evidence(
        engine,
        analysis.segments,
        h["last_byte"].to_numpy(dtype=np.int64),
        h["t_last_byte_ns"].to_numpy(dtype=np.int64, na_value=-1),
    )
    waited = h["t_complete_ns"].astype("Int64") > h["t_last_byte_ns"].astype("Int64")
    waited_np = waited.fillna(False).to_numpy(dtype=np.bool_)
    wait = _loss_evidence(
        engine,
        analysis.segments,
        h["wait_offset"].to_numpy(dtype=np.int64, na_value=-1),
        np.where(waited_np, h["t_complete_ns"].to_numpy(dtype=np.int64, na_value=-1), -1),
    )
    timing = _engine_timing(engine, h, h["wait_offset"].to_numpy(np.int64, na_value=-1))
    overtaken = np.asarray(timing["overtaken"], dtype=np.bool_)
    held_long = np.asarray(timing["held_long"], dtype=np.bool_)

    cause = pd.Series(dominant, dtype="string")
    is_path, is_hol = dominant == "path", dominant == "head-of-line"
    cause[is_path | is_hol] = "unexplained"
    cause[is_path & held_long] = "engine-delay"
    cause[is_path & own["found"]] = own["cause"][is_path & own["found"]]
    cause[is_hol & overtaken] = "reordering"
    cause[is_hol & wait["found"]] = wait["cause"][is_hol & wait["found"]]
    # no last byte in the server's capture (it stopped early, or dropped packets):
    # the delay cannot be split into its legs, so nothing is claimed
    uncaptured = h["t_last_byte_ns"].isna().to_numpy(dtype=np.bool_)
    cause[uncaptured] = "unexplained"
    explained = (cause != "unexplained").to_numpy(dtype=np.bool_)

    evidence = pd.Series("", index=h.index, dtype="string")
    evidence[is_path & own["found"]] = own["text"][is_path & own["found"]]
    hol_text = wait["text"] + "; the message waited " + _ms(parts["head-of-line"])
    evidence[is_hol & wait["found"]] = (hol_text + " ms in the receiver")[is_hol & wait["found"]]
    fixed = {
        "sender-backlog": "first sent "
        + _ms(parts["sender-backlog"])
        + " ms after the application's send (window-limited sender"
        + _last_resend(analysis.segments, h["t_first_tx_ns"])
        + ")",
        "receiver-app": "all bytes in "
        + _ms(ns("t_complete_ns") - t_send.astype("Float64"))
        + " ms, read by the application "
        + _ms(parts["receiver-app"])
        + " ms later",
        "reordering": "waited "
        + _ms(parts["head-of-line"])
        + " ms for earlier bytes (offset "
        + h["wait_offset"].astype("string").fillna("?")
        + ") the engine took in first but let out later (delay/jitter/reordering);"
        " nothing dropped",
        "engine-delay": "its last byte took "
        + _ms(parts["path"] + usual)
        + " ms to reach the server (usual "
        + f"{usual / 1e6:.1f}"
        + " ms): held longer by the engine (delay/jitter); nothing dropped",
        "unexplained": "bytes from offset "
        + pd.Series(np.where(is_path, h["last_byte"], h["wait_offset"]), dtype="Int64").astype(
            "string"
        )
        + " were missing or slow but the engine dropped and held nothing covering them"
        + _legs(h, timing),
    }
    for name, text in fixed.items():
        evidence = evidence.where(cause != name, text)
    evidence[uncaptured] = (
        "its last byte is not in the server's capture (capture stopped early or dropped "
        "packets): the delay cannot be split into sender, path and receiver"
    )
    also = wait["found"] & waited_np & ~is_hol
    evidence[also] = evidence[also] + "; also waited for earlier bytes: " + wait["text"][also]
    delay = pd.Series(owd[late], dtype="Float64")
    return pd.DataFrame(
        {
            "protocol": "tcp",
            "seq": h["seq"].to_numpy(dtype=np.int64),
            "kind": "late",
            "cause": cause.to_numpy(),
            "explained": explained,
            "delay_ms": (delay / 1e6).to_numpy(dtype=np.float64, na_value=np.nan),
            "evidence": evidence.to_numpy(),
        },
        columns=list(EXPLAINED_COLUMNS),
    )


def _last_resend(segments: pd.DataFrame, t_first_tx: pd.Series) -> pd.Series:
    """Context for a backlog: how long before the bytes left the client its latest
    retransmission went out (a loss recovery shrinks the congestion window,
    RFC 5681 §3.2). "" when there was none."""
    client = _carriers(segments, "client")
    resends = np.sort(client.loc[client["retransmission"], "ts_ns"].to_numpy(dtype=np.int64))
    when = t_first_tx.astype("Int64").to_numpy(dtype=np.int64, na_value=-1)
    at = np.searchsorted(resends, when, side="right") - 1
    found = (at >= 0) & (when >= 0)
    before = pd.Series(when - resends[np.maximum(at, 0)] if resends.size else when, dtype="Int64")
    text = "; latest retransmission " + _ms(before) + " ms before"
    return text.where(pd.Series(found), "")


def _legs(h: pd.DataFrame, timing: dict[str, npt.NDArray[np.float64] | Mask]) -> pd.Series:
    """Where the time of a message's last byte went between the two captures."""
    first_tx = h["t_first_tx_ns"].astype("Int64").astype("Float64")
    last = h["t_last_byte_ns"].astype("Int64").astype("Float64")
    t_in = pd.Series(np.asarray(timing["t_in"], dtype=np.float64), dtype="Float64")
    t_out = pd.Series(np.asarray(timing["t_out"], dtype=np.float64), dtype="Float64")
    legs = (
        ": client -> engine "
        + _ms(t_in - first_tx)
        + " ms, held "
        + _ms(t_out - t_in)
        + " ms, engine -> server "
        + _ms(last - t_out)
        + " ms"
    )
    return legs.where(t_in.notna(), ": the engine never saw its last byte").fillna("")


def _loss_evidence(
    engine: pd.DataFrame, segments: pd.DataFrame, byte: I64, arrival: I64
) -> dict[str, pd.Series]:
    """For each stream byte that first reached the server at ``arrival`` (-1: skip):
    the earliest engine drop (or corruption) of a segment carrying it before then,
    and the copy that finally brought it, traced back to the client's capture.

    Returns ``found`` (bool), ``cause`` (the engine's fate, or "corrupted") and
    ``text`` (one sentence; times relative to the engine drop).
    """
    n = byte.size
    harmed = (engine["fate"].astype("string") != "forwarded").fillna(True) | engine[
        "corrupted"
    ].astype("boolean").fillna(False)
    drops = engine.loc[harmed.to_numpy(dtype=np.bool_)].reset_index(drop=True)
    points = np.where(arrival >= 0, byte, -1)
    at = _first_carrier(drops, points) if not drops.empty else np.full(n, -1, np.int64)
    t_drop = _take(drops, "t_in_ns", at).to_numpy(dtype=np.int64, na_value=0)
    at = np.where((at >= 0) & (arrival >= 0) & (t_drop < arrival), at, -1)
    found = at >= 0
    fate = _take(drops, "fate", at, "string")
    fate = fate.where(~_take(drops, "corrupted", at, "boolean").fillna(False), "corrupted")

    server = _carriers(segments, "server")
    client = _carriers(segments, "client")
    carrier = _first_carrier(server, points)
    key = ["ip_id", "seq", "len"]
    sent = client[[*key, "ts_ns", "retransmission", "fast_retransmission"]].drop_duplicates(key)
    if server.empty:  # the server capture holds no data segment (stopped early, ring full)
        brought = pd.DataFrame({k: pd.array([pd.NA] * n, dtype="Int64") for k in key})
    else:
        brought = server[key].iloc[np.maximum(carrier, 0)].reset_index(drop=True)
    origin = brought.merge(sent, on=key, how="left")
    resent = origin["retransmission"].astype("boolean").fillna(False).to_numpy() & (carrier >= 0)
    kind = np.where(
        origin["fast_retransmission"].astype("boolean").fillna(False).to_numpy(),
        "fast retransmission",
        "retransmission",
    )
    t0 = pd.Series(np.where(found, t_drop, 0), dtype="Int64").where(found)
    resend = (
        "; "
        + pd.Series(kind, dtype="string")
        + " sent "
        + _ms(pd.Series(origin["ts_ns"].to_numpy(), dtype="Int64") - t0)
        + " ms after the drop"
    )
    resend = resend.where(pd.Series(resent), "; resent (not in the client capture)")
    text = (
        "engine "
        + fate.fillna("?")
        + " seq "
        + (_take(drops, "start", at) + 1).astype("string").fillna("?")
        + " ("
        + _take(drops, "payload_len", at).astype("string").fillna("?")
        + " B)"
        + resend
        + ", arrived at the server "
        + _ms(pd.Series(arrival, dtype="Int64").where(arrival >= 0) - t0)
        + " ms after it"
    )
    return {"found": pd.Series(found), "cause": fate, "text": text}


def _engine_timing(
    engine: pd.DataFrame, hol: pd.DataFrame, missing: I64
) -> dict[str, npt.NDArray[np.float64] | Mask]:
    """From the engine's forwarded segments, per message: ``overtaken`` (the byte it
    waited for went into the engine no later than its own last byte but came out
    after it: held longer, or overtaken by a reordered segment), ``held_long`` (its
    own last byte was held more than the usual hold + ``LATE_MARGIN_NS``), and
    ``t_in`` / ``t_out`` of the engine's first forwarded copy of its last byte."""
    nan = np.full(missing.size, np.nan)
    out = engine["t_out_ns"].astype("Int64").fillna(-1) if not engine.empty else None
    if out is None:
        none = np.zeros(missing.size, dtype=np.bool_)
        return {"overtaken": none, "held_long": none, "t_in": nan, "t_out": nan}
    forwarded = engine.loc[out.to_numpy(dtype=np.int64) >= 0].reset_index(drop=True)
    at_wait = _first_carrier(forwarded, missing)
    at_own = _first_carrier(forwarded, hol["last_byte"].to_numpy(dtype=np.int64))

    def field(name: str, at: I64) -> npt.NDArray[np.float64]:
        return _take(forwarded, name, at).to_numpy(dtype=np.float64, na_value=np.nan)

    overtaken = (field("t_in_ns", at_wait) <= field("t_in_ns", at_own)) & (
        field("t_out_ns", at_wait) > field("t_out_ns", at_own)
    )
    held = forwarded["t_out_ns"].astype("Float64") - forwarded["t_in_ns"].astype("Float64")
    usual = float(held.median()) if held.notna().any() else 0.0
    t_in, t_out = field("t_in_ns", at_own), field("t_out_ns", at_own)
    return {
        "overtaken": np.asarray(overtaken, dtype=np.bool_),
        "held_long": np.asarray(t_out - t_in > usual + LATE_MARGIN_NS, dtype=np.bool_),
        "t_in": t_in,
        "t_out": t_out,
    }


# --------------------------------------------------------------------------- run


def explain_summary(explained: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and kind: how many messages, how many explained, and by what."""
    rows = []
    for (protocol, kind), group in explained.groupby(["protocol", "kind"], sort=True):
        counts = group["cause"].value_counts()
        done = int(group["explained"].astype(bool).sum())
        rows.append(
            {
                "protocol": protocol,
                "kind": kind,
                "messages": len(group),
                "explained": done,
                "unexplained": len(group) - done,
                "explained_pct": 100.0 * done / len(group),
                "causes": ", ".join(f"{c}: {n}" for c, n in counts.items()),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _port(value: object) -> int:
    """A port from exchanges.csv; RAW has none (empty cell): 0."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return 0 if pd.isna(number) else int(number)


def _client_address(folder: Path) -> str | None:
    """The client's IPv4 address from meta.json, if it is there and readable."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        address = meta["client"]["address"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(address) if isinstance(address, str) else None


def explain_run(
    folder: Path,
    *,
    messages: pd.DataFrame | None = None,
    tcp: TcpWireAnalysis | None = None,
    late_ns: float | None = None,
) -> pd.DataFrame:
    """The ``explained`` table of a results folder: UDP and RAW losses, late TCP messages.

    Reads messages.csv, exchanges.csv, impairment.csv and the UDP/RAW captures (when
    present); ``tcp`` is the run's :func:`~lab.analysis.wire.analyze_tcp` result
    (late TCP messages are skipped without it). A run without impairment.csv (no
    ground truth) raises AnalysisError.
    """
    messages = read_table(folder / "messages.csv") if messages is None else messages
    exchanges = read_table(folder / "exchanges.csv")
    truth_path = folder / "impairment.csv"
    if not truth_path.exists():
        raise AnalysisError(f"{truth_path}: no ground truth in this results folder")
    ground_truth = read_table(truth_path)
    client_address = _client_address(folder)
    parts = [_empty()]
    for _, row in exchanges.iterrows():
        protocol = str(row["protocol"])
        ports = _port(row.get("client_port")), _port(row.get("server_port"))
        if protocol in ("udp", "raw"):
            captured = [
                read_pcap(p).packets if p.exists() else None
                for p in (
                    folder / "capture" / f"{protocol}-{side}.pcap" for side in ("client", "server")
                )
            ]
            parts.append(
                explain_udp_losses(
                    messages,
                    ground_truth,
                    *ports,
                    client_packets=captured[0],
                    server_packets=captured[1],
                    protocol=protocol,
                    client_address=client_address,
                )
            )
        elif protocol == "tcp" and tcp is not None:
            parts.append(explain_tcp_delays(messages, ground_truth, tcp, *ports, late_ns=late_ns))
    frames = [p for p in parts if not p.empty]
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)[list(EXPLAINED_COLUMNS)]
