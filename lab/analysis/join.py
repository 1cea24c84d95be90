"""Join the three views of a run: the applications (messages.csv), the wire (both
captures) and the engine (impairment.csv, its decision for every packet).

Every UDP message lost and every TCP message late gets a row in an ``explained``
table: what happened to it, who is to blame (the impairment the scenario asked for,
the host the lab runs on, or the sender's own TCP window) and the evidence. A delay
the host caused (the engine or an endpoint not scheduled in time) is measured and
named as such, not blamed on the impairment; only what no measurement accounts for
(bytes or datagrams lost where nothing counted them, legs that were not measured)
stands out as ``unexplained``: a self-induced loss or a bug.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab._protocols import IPPROTO_LAB_RAW, IPPROTO_TCP, IPPROTO_UDP
from lab.analysis import _tcp
from lab.analysis._wire_tcp import (
    BLOCKED_THRESHOLD_NS,
    CLIENT_TO_SERVER,
    SERVER_TO_CLIENT,
    TcpWireAnalysis,
)
from lab.errors import AnalysisError

EXPLAINED_COLUMNS = (
    "protocol",
    "flow",
    "seq",
    "kind",
    "cause",
    "blame",
    "explained",
    "delay_ms",
    "evidence",
)
SUMMARY_COLUMNS = (
    "protocol",
    "kind",
    "messages",
    "explained",
    "unexplained",
    "impairment",
    "host",
    "sender",
    "explained_pct",
    "causes",
)
#: Causes that put the blame on the engine (or, for TCP, on the path it shapes).
ENGINE_CAUSES = ("dropped-loss", "dropped-queue", "corrupted")
#: Who each cause blames (explained.csv ``blame``): the impairment the scenario asked
#: for, the host the lab runs on (scheduling of the engine and the endpoints, socket
#: buffers), the sending TCP's own window (a knock-on effect of earlier drops or
#: delays), or nobody known.
BLAME = {
    "dropped-loss": "impairment",
    "dropped-queue": "impairment",
    "corrupted": "impairment",
    "reordering": "impairment",
    "engine-delay": "impairment",
    "host-scheduling": "host",
    "receiver-app": "host",
    "receiver-buffer": "host",
    "engine-overload": "host",
    "sender-backlog": "sender",
    "receiver-kernel": "unknown",
    "unexplained": "unknown",
}
#: The legs of a TCP message's one-way delay, in time order, as the evidence names them.
LEGS = {
    "send": "send -> client",
    "resend": "resend",
    "to_engine": "client -> engine",
    "hold": "engine hold",
    "engine_late": "engine late",
    "to_server": "engine -> server",
    "head_of_line": "head-of-line",
    "read": "-> read",
}
#: A TCP message is late when its one-way delay exceeds max(LATE_FACTOR x median,
#: median + LATE_MARGIN_NS), or when it was head-of-line blocked.
LATE_FACTOR = 2.0
LATE_MARGIN_NS = 1_000_000

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]
StrArray = npt.NDArray[Any]


@dataclass(frozen=True)
class _Way:
    """Which way a flow's messages went, in the names the captures and the engine use.

    The join's tables and texts are written for the usual way (the client sends); a
    reverse flow (the server sends) reads the other capture and direction, and its texts
    swap the two ends' names (:meth:`words`).
    """

    reverse: bool = False

    @property
    def sender(self) -> str:
        return "server" if self.reverse else "client"

    @property
    def receiver(self) -> str:
        return "client" if self.reverse else "server"

    @property
    def direction(self) -> str:
        return SERVER_TO_CLIENT if self.reverse else CLIENT_TO_SERVER

    @property
    def isn_key(self) -> int:
        """``TcpWireAnalysis.isn``'s key of the data direction."""
        return 1 if self.reverse else 0

    def words(self, text: pd.Series) -> pd.Series:
        """``text`` with "client" and "server" meaning the sender and the receiver."""
        if not self.reverse:
            return text
        return text.str.replace(_END_NAMES, lambda m: _OTHER_END[m.group(1)], regex=True)


_END_NAMES = re.compile(r"\b(client|server)\b")
_OTHER_END = {"client": "server", "server": "client"}


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
    receive_drops: int | None = None,
    engine_overload: int | None = None,
    reverse: bool = False,
) -> pd.DataFrame:
    """Every UDP (or, with ``protocol="raw"``, RAW) message that never reached the
    server application, with its cause.

    The names follow a forward flow. For a ``reverse`` one (the server sends) pass the
    server's port, capture and address as the ``client_*`` ones and the client's as the
    ``server_*`` ones (the sender's first): the evidence then names the ends as they are.

    RAW has no ports: its datagrams are told apart by IP protocol 253, direction
    (engine) and source address (captures, when ``client_address`` is given).

    The engine's row for the datagram (matched by the message seq the payload
    carries) gives the cause: ``dropped-loss`` / ``dropped-queue``, or ``corrupted``
    (forwarded with a flipped bit: the receiver's UDP checksum discards it, RFC 768).
    Otherwise the captures say where it vanished. Two places are the host's, when a
    kernel counter accounts for every such loss: ``receiver-buffer``, forwarded intact
    but not delivered while the server socket overflowed (``receive_drops``: the
    exchange's ``server.Udp.RcvbufErrors``, or ``server.Raw.Drops``, in exchanges.csv:
    the application did not read in time), and ``engine-overload``, captured leaving
    the client but never read by the engine while the client's TUN device dropped
    packets (``engine_overload``: its ``tx_dropped`` in meta.json's link_stats: the
    engine did not read in time). Without such a count the loss stays unexplained:
    ``receiver-kernel`` (forwarded, not delivered) or ``unexplained`` (never on the
    client's interface, or sent but never seen by the engine).
    """
    datagrams = messages.loc[messages["protocol"] == protocol]
    lost = datagrams.loc[datagrams["copies"].astype("Int64").fillna(0) == 0, ["seq", "t_send_ns"]]
    if lost.empty:
        return _empty()
    lost = lost.astype({"seq": "int64", "t_send_ns": "Int64"}).reset_index(drop=True)
    gt = ground_truth
    if protocol == "raw":
        mine = (gt["ip_proto"] == IPPROTO_LAB_RAW) & (gt["direction"] == _Way(reverse).direction)
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
    # forwarded intact and (as far as a capture tells) handed to the server's kernel
    not_read = forwarded.fillna(False).to_numpy(dtype=np.bool_)
    if server_packets is not None:
        not_read &= seen_server
    receive = _counted(receive_drops, int(not_read.sum()))
    cause = cause.where(~forwarded.fillna(False), "receiver-kernel")
    cause = cause.where(~(pd.Series(not_read) & receive), "receiver-buffer")
    before_engine = ~at_engine.to_numpy(dtype=np.bool_) & seen_client
    overload = _counted(engine_overload, int(before_engine.sum()))
    cause = cause.where(~(pd.Series(before_engine) & overload), "engine-overload")
    cause = cause.fillna("unexplained")
    causes_known = [*ENGINE_CAUSES, "receiver-buffer", "engine-overload"]
    explained = cause.isin(causes_known).to_numpy(dtype=np.bool_)

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
    counter = "server.Raw.Drops" if protocol == "raw" else "server.Udp.RcvbufErrors"
    if receive:
        rcv_text = rcv_text.where(
            ~pd.Series(not_read),
            rcv_text
            + f": not delivered; the server socket dropped {receive_drops} datagrams on a full"
            f" receive buffer ({counter}): the application did not read in time",
        )
        rcv_text = rcv_text.where(
            pd.Series(not_read), rcv_text + ": lost between the engine and the server"
        )
    if not receive:
        known = "not counted" if receive_drops is None else f"{receive_drops}"
        rcv_text = (
            rcv_text
            + f": not delivered by the receiver's kernel (socket buffer? {counter}: {known})"
        )
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
    if overload:
        evidence[before_engine] = (
            evidence[before_engine]
            + f"; the client's TUN device dropped {engine_overload} packets the engine did not"
            " read in time (link_stats tx_dropped: engine overloaded or descheduled)"
        )
    return pd.DataFrame(
        {
            "protocol": protocol,
            "flow": 0,  # the caller says which flow (explain does)
            "seq": seqs.to_numpy(),
            "kind": "lost",
            "cause": cause.to_numpy(),
            "blame": cause.map(BLAME).fillna("unknown").to_numpy(),
            "explained": explained,
            "delay_ms": np.nan,
            "evidence": _Way(reverse).words(evidence).to_numpy(),
        },
        columns=list(EXPLAINED_COLUMNS),
    )


def _counted(counter: int | None, losses: int) -> bool:
    """Whether a kernel drop counter accounts for every one of ``losses`` (> 0)."""
    return counter is not None and losses > 0 and counter >= losses


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
    """One-way delay above which a TCP message counts as late (NaN: nothing delivered).

    On a clean link (median ~0.1 ms) a millisecond of host scheduling is enough: such
    a message is late, and :func:`explain_tcp_delays` blames the host for it, which
    :func:`explain_summary` counts apart from the impairment.
    """
    owd = messages.loc[messages["protocol"] == "tcp", "owd_ns"].astype("Float64").dropna()
    if owd.empty:
        return float("nan")
    median = float(owd.median())
    return max(LATE_FACTOR * median, median + LATE_MARGIN_NS)


def _engine_tcp(
    ground_truth: pd.DataFrame, analysis: TcpWireAnalysis, ports: tuple[int, int], way: _Way
) -> pd.DataFrame:
    """The engine's data segments (sender -> receiver) with 0-based stream offsets."""
    source, destination = ports[::-1] if way.reverse else ports
    gt = ground_truth
    rows = gt.loc[
        (gt["ip_proto"] == IPPROTO_TCP)
        & (gt["src_port"] == source).fillna(False)
        & (gt["dst_port"] == destination).fillna(False)
        & (gt["payload_len"] > 0)
    ].sort_values("t_in_ns", kind="stable")
    rows = rows.reset_index(drop=True)
    if rows.empty or way.isn_key not in analysis.isn:
        return rows.assign(start=np.zeros(len(rows), np.int64), stop=np.zeros(len(rows), np.int64))
    seq = rows["tcp_seq"].to_numpy(dtype=np.int64)
    base = np.full(seq.size, analysis.isn[way.isn_key], dtype=np.int64)
    start = _tcp._unwrap(seq, np.zeros(seq.size, np.int64), base) - 1
    length = rows["payload_len"].to_numpy(dtype=np.int64)
    return rows.assign(start=start, stop=start + length)


def _carriers(segments: pd.DataFrame, side: str, way: _Way) -> pd.DataFrame:
    """Data segments (sender -> receiver) of one capture, in capture order, with offsets."""
    rows = segments.loc[
        (segments["side"] == side)
        & (segments["direction"] == way.direction)
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
    reverse: bool = False,
) -> pd.DataFrame:
    """Every late TCP message (:func:`late_threshold_ns`, or head-of-line blocked),
    with where its delay came from and the evidence.

    A message's one-way delay splits into measured legs (:data:`LEGS`) that follow the
    copy of its last byte that reached the server: the application's send -> first on
    the client's capture (``send``); -> the copy that made it, when the first was lost
    (``resend``); -> the engine read it (``t_in``: ``client -> engine``); -> the time
    the engine's model gave it (``scheduled_ns``: ``engine hold``); -> the engine wrote
    it (``t_out``: ``engine late``); -> the server's capture (``engine -> server``);
    -> every earlier byte had arrived (``head-of-line``, TCP delivers in order,
    RFC 9293 §3.10.7.4); -> the application read it (``read``). Copies are matched
    across the captures and the engine by IP ID, offset and length; a copy the engine
    corrupted is no arrival (the receiver's checksum discards it). Consecutive legs
    share their end points, so they add up to the delay; a point that was not measured
    leaves that part of the delay ``unmeasured``.

    Each leg's excess over its usual value (median over all the exchange's messages;
    0 for ``resend`` and ``head-of-line``) goes to a cause, and the cause with the
    largest total names the message. A message late only because it was blocked (its
    delay under the threshold, its head-of-line wait above ``BLOCKED_THRESHOLD_NS``) is
    named by what blocked it. The head-of-line wait goes to the earlier byte it waited
    for, by that byte's own trip (see :func:`_head_of_line_kind`). The causes:

    * ``dropped-loss`` / ``dropped-queue`` / ``corrupted``: the engine dropped (or
      damaged) the segment carrying its own last byte, or the earlier byte it waited
      for, and the copy that arrived is a retransmission. Such a drop on the path
      always beats the host causes and ``unexplained``.
    * ``reordering``: it waited for earlier bytes the engine took in first but
      scheduled out later (delay, jitter, a reordered segment overtaking).
    * ``engine-delay``: the engine's model held its last byte longer than usual
      (``scheduled_ns - t_in``: delay, jitter, rate), or held its first copy so long
      that a retransmission overtook it.
    * ``sender-backlog``: its bytes left the client late while earlier data was in
      flight (the congestion or receive window was full).
    * ``host-scheduling``: the host, not the impairment: the engine read it late
      (client -> engine), wrote it after its own schedule (engine late), the server's
      side saw it late (engine -> server), an earlier byte it waited for was late in
      those same ways, or it left the client late with nothing in flight. (``t_out``
      is taken after the write returns: an engine descheduled right after writing
      shows as engine late, with a slightly negative engine -> server.)
    * ``receiver-app``: all its bytes were there; the server application woke late.
    * ``unexplained``: no measured leg accounts for it: the copy that reached the
      server is not in the engine's record, it was resent though the engine had
      already forwarded the first copy intact (lost outside the engine), or legs are
      missing (``unmeasured``: the delay minus the measured legs).

    :data:`BLAME` maps each cause to ``impairment``, ``host``, ``sender`` or
    ``unknown``. Whatever the cause, a message that waited for an engine drop also
    gets it in its evidence.

    The legs above follow a forward flow. In a ``reverse`` flow the server sends: the
    same legs run from the server's capture to the client's, and the evidence says so.
    """
    way = _Way(reverse)
    tcp = messages.loc[messages["protocol"] == "tcp"].sort_values("seq", kind="stable")
    hol = analysis.hol.reset_index(drop=True)
    if tcp.empty or hol.empty:
        return _empty()
    threshold = late_threshold_ns(messages) if late_ns is None else late_ns
    owd = tcp["owd_ns"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    late = (owd > threshold) | hol["blocked"].to_numpy(dtype=np.bool_)
    if not late.any():
        return _empty()
    path = _path(ground_truth, analysis, (client_port, server_port), way)
    t_send = _int64(tcp["t_send_ns"])
    t_recv = _int64(tcp["t_recv_ns"])
    last_byte = hol["last_byte"].to_numpy(dtype=np.int64)
    arrival = _arrivals(path.server, last_byte)
    own = _journey(path, last_byte, arrival["row"])
    legs = _legs(own, arrival["complete"], t_send, t_recv)
    usual = {name: _usual(legs[name]) for name in LEGS}
    usual["resend"] = usual["head_of_line"] = 0.0

    # from here on, the late messages only
    sel = np.flatnonzero(late)
    legs = legs.iloc[sel].reset_index(drop=True)
    own = {k: v[sel] for k, v in own.items()}
    arr, complete = arrival["arrival"][sel], arrival["complete"][sel]
    wait_at = np.where(legs["head_of_line"].to_numpy(np.float64) > 0, arrival["wait"][sel], -1)
    waited = _journey(path, wait_at, _arrivals(path.server, wait_at)["row"])
    own_harm = _loss_evidence(path, last_byte[sel], arr)
    wait_harm = _loss_evidence(path, wait_at, np.where(wait_at >= 0, complete, -1))
    own_drop = own_harm["found"].to_numpy(dtype=np.bool_) & (own["recovered"] > 0)
    wait_found = wait_harm["found"].to_numpy(dtype=np.bool_)
    hol_kind = _head_of_line_kind(own, waited, wait_found)
    flight = _in_flight(analysis.segments, path.client, t_send[sel], way)

    excess = {
        name: np.nan_to_num(np.maximum(legs[name].to_numpy(np.float64) - usual[name], 0.0))
        for name in LEGS
    }
    hol_ns = excess["head_of_line"]
    # its own last byte resent while the engine still held the first copy: that copy's
    # hold (the impairment) or its lateness on the host made the resend arrive first
    slow_first = (own["recovered"] > 0) & (own["held_first"] > 0) & ~own_drop
    first_hold = np.nan_to_num(_gap(own["first_sched"], own["first_in"]) - usual["hold"])
    first_host = np.nan_to_num(_gap(own["first_in"], own["tx0"]) - usual["to_engine"])
    first_host += np.nan_to_num(_gap(own["first_out"], own["first_sched"]) - usual["engine_late"])
    first_held = slow_first & (first_hold >= first_host)
    resend_ns = excess["resend"]
    # late only because it was blocked (its delay is under the threshold): named by
    # what it waited for, not by legs that did not make it late
    blocked = (hol_kind != "") & (legs["head_of_line"].to_numpy(np.float64) > BLOCKED_THRESHOLD_NS)
    other = np.where((owd[sel] <= threshold) & blocked, 0.0, 1.0)
    host_parts = {
        "send": np.where(flight == 0, excess["send"], 0.0) * other,
        "to_engine": excess["to_engine"] * other,
        "engine_late": excess["engine_late"] * other,
        "to_server": excess["to_server"] * other,
        "head_of_line": np.where(hol_kind == "host", hol_ns, 0.0),
        "first_copy": np.where(slow_first & ~first_held, resend_ns, 0.0) * other,
    }
    scores = pd.DataFrame(
        {
            "own-drop": np.where(own_drop, excess["resend"], 0.0),
            "wait-drop": np.where(hol_kind == "drop", hol_ns, 0.0),
            "reordering": np.where(hol_kind == "reordering", hol_ns, 0.0),
            "engine-delay": (excess["hold"] + np.where(first_held, resend_ns, 0.0)) * other,
            "sender-backlog": np.where(flight != 0, excess["send"], 0.0) * other,
            "host-scheduling": np.sum(list(host_parts.values()), axis=0),
            "receiver-app": excess["read"] * other,
            "unexplained": (
                np.nan_to_num(legs["unmeasured"].to_numpy(np.float64))
                + np.where((own["recovered"] > 0) & ~own_drop & ~slow_first, resend_ns, 0.0)
            )
            * other
            + np.where(hol_kind == "unexplained", hol_ns, 0.0),
        }
    )
    # an engine drop on the message's path wins over the host and over "unexplained"
    on_path = own_drop | (hol_kind == "drop")
    for name in ("host-scheduling", "receiver-app", "unexplained"):
        scores.loc[on_path, name] = 0.0
    quiet = scores.max(axis=1).to_numpy() <= 0
    scores.loc[quiet & own_drop, "own-drop"] = 1.0
    scores.loc[quiet & ~own_drop & (hol_kind == "drop"), "wait-drop"] = 1.0
    # nothing above its usual value (a blocked message on a fast link): the raw legs
    quiet &= ~on_path
    if quiet.any():
        raw = legs.fillna(0.0).clip(lower=0.0)
        scores.loc[quiet, "sender-backlog"] = raw["send"][quiet]
        scores.loc[quiet, "host-scheduling"] = (
            raw["to_engine"] + raw["engine_late"] + raw["to_server"]
        )[quiet]
        scores.loc[quiet, "engine-delay"] = raw["hold"][quiet]
        scores.loc[quiet, "receiver-app"] = raw["read"][quiet]
    # nothing measured at all points nowhere
    winner = np.where(scores.max(axis=1) > 0, scores.idxmax(axis=1), "unexplained")
    cause = pd.Series(winner, dtype="string")
    cause[winner == "own-drop"] = own_harm["cause"][winner == "own-drop"]
    cause[winner == "wait-drop"] = wait_harm["cause"][winner == "wait-drop"]
    # no intact copy of its last byte in the server's capture (it stopped early, or
    # dropped packets): the delay cannot be split into its legs, so nothing is claimed
    uncaptured = arr < 0
    cause[uncaptured] = "unexplained"

    legs_text = _legs_text(legs, own["recovered"])
    evidence = _evidence(
        winner,
        legs=legs,
        usual=usual,
        host_parts=host_parts,
        texts={
            "own-drop": own_harm["text"],
            "wait-drop": wait_harm["text"],
            "sender-backlog": _last_resend(path.client, own["tx0"]),
            "ready": _ms(pd.Series(_gap(complete, t_send[sel]), dtype="Float64")),
            "unexplained": _unexplained_text(own, waited, hol_kind, last_byte[sel], wait_at),
        },
        offsets=pd.Series(wait_at, dtype="Int64").where(wait_at >= 0),
        flight=flight,
        first_held=first_held,
    )
    evidence = evidence + "; legs (ms): " + legs_text
    evidence[uncaptured] = (
        "its last byte is not in the server's capture (capture stopped early or dropped "
        "packets): the delay cannot be split into sender, path and receiver"
    )
    also = wait_found & (wait_at >= 0) & (winner != "wait-drop")
    evidence[also] = evidence[also] + "; also waited for earlier bytes: " + wait_harm["text"][also]
    delay = pd.Series(owd[sel], dtype="Float64")
    return pd.DataFrame(
        {
            "protocol": "tcp",
            "flow": 0,  # the caller says which flow (explain does)
            "seq": hol["seq"].to_numpy(dtype=np.int64)[sel],
            "kind": "late",
            "cause": cause.to_numpy(),
            "blame": cause.map(BLAME).fillna("unknown").to_numpy(),
            "explained": (cause != "unexplained").to_numpy(dtype=np.bool_),
            "delay_ms": (delay / 1e6).to_numpy(dtype=np.float64, na_value=np.nan),
            "evidence": way.words(evidence).to_numpy(),
        },
        columns=list(EXPLAINED_COLUMNS),
    )


@dataclass(frozen=True)
class _Path:
    """The data segments of one exchange, as each view saw them (``client``: the sender's
    capture, ``server``: the receiver's; the other way round in a reverse flow)."""

    client: pd.DataFrame  #: sender's capture, capture order, with stream offsets
    server: pd.DataFrame  #: receiver's capture minus the copies the engine corrupted
    engine: pd.DataFrame  #: every engine row (:func:`_engine_tcp`)
    forwarded: pd.DataFrame  #: engine rows written intact, with ``sched`` (ns)


def _path(
    ground_truth: pd.DataFrame, analysis: TcpWireAnalysis, ports: tuple[int, int], way: _Way
) -> _Path:
    engine = _engine_tcp(ground_truth, analysis, ports, way)
    client = _carriers(analysis.segments, way.sender, way)
    server = _carriers(analysis.segments, way.receiver, way)
    corrupted = engine["corrupted"].astype("boolean").fillna(False).to_numpy(dtype=np.bool_)
    bad = _lookup(_keys(engine.loc[corrupted], "payload_len"), _keys(server, "len")) >= 0
    server = server.loc[~bad].reset_index(drop=True)
    t_in = engine["t_in_ns"].to_numpy(dtype=np.int64, na_value=-1)
    t_out = engine["t_out_ns"].to_numpy(dtype=np.int64, na_value=-1)
    if "scheduled_ns" in engine:  # the model's departure, within [t_in, t_out]
        scheduled = engine["scheduled_ns"].to_numpy(dtype=np.int64, na_value=-1)
        sched = np.minimum(np.maximum(scheduled, t_in), t_out)
        sched = np.where(scheduled >= 0, sched, t_out)
    else:  # an older record: the whole stay counts as the engine's hold
        sched = t_out
    keep = (t_out >= 0) & ~corrupted
    forwarded = engine.assign(sched=sched).loc[keep].reset_index(drop=True)
    return _Path(client, server, engine, forwarded)


def _keys(frame: pd.DataFrame, length: str) -> pd.MultiIndex:
    """(IP ID, stream offset, payload length): one copy of a segment on every view."""
    return pd.MultiIndex.from_arrays(
        [frame[name].to_numpy(dtype=np.int64, na_value=-1) for name in ("ip_id", "start", length)]
    )


def _lookup(table: pd.MultiIndex, keys: pd.MultiIndex) -> I64:
    """Position in ``table`` of the first row with each of ``keys`` (-1: none)."""
    if len(table) == 0 or len(keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    first = ~table.duplicated()
    at = table[first].get_indexer(keys)
    rows = np.flatnonzero(first)
    return np.where(at >= 0, rows[np.maximum(at, 0)], -1).astype(np.int64)


def _column(frame: pd.DataFrame, name: str, at: I64) -> I64:
    """``frame[name]`` as int64 at positions ``at`` (-1 where at < 0 or missing)."""
    if frame.empty:
        return np.full(at.size, -1, dtype=np.int64)
    values = frame[name].to_numpy(dtype=np.int64, na_value=-1)
    return np.where(at >= 0, values[np.maximum(at, 0)], -1)


def _arrivals(server: pd.DataFrame, points: I64) -> dict[str, I64]:
    """For stream offsets ``points`` (-1: skip), from the server's capture: the ``row``
    that first brought each byte intact and its ``arrival`` time, when every byte up to
    it had arrived (``complete``: the earliest in-order delivery) and the offset of the
    byte that arrived last among those (``wait``); -1 where never."""
    none = np.full(points.size, -1, dtype=np.int64)
    out = {"row": none, "arrival": none.copy(), "complete": none.copy(), "wait": none.copy()}
    if server.empty or points.size == 0:
        return out
    ts = server["ts_ns"].to_numpy(dtype=np.int64)
    bounds, first = _tcp.elementary_first_cover(
        server["start"].to_numpy(dtype=np.int64),
        server["stop"].to_numpy(dtype=np.int64),
        np.arange(len(server), dtype=np.int64),
    )
    if first.size == 0:
        return out
    big = np.iinfo(np.int64).max
    t_first = np.where(first == big, big, ts[np.minimum(first, len(server) - 1)])
    prefix = np.maximum.accumulate(t_first)
    if bounds[0] > 0:  # the start of the stream was never captured: nothing completes
        prefix[:] = big
    last_at = np.maximum.accumulate(np.where(t_first == prefix, np.arange(t_first.size), 0))
    j = np.searchsorted(bounds, points, side="right") - 1
    inside = (points >= 0) & (j >= 0) & (j < t_first.size)
    jj = np.where(inside, j, 0)
    arrived = inside & (t_first[jj] != big)
    done = inside & (prefix[jj] != big)
    out["row"] = np.where(arrived, first[jj], -1)
    out["arrival"] = np.where(arrived, t_first[jj], -1)
    out["complete"] = np.where(done, prefix[jj], -1)
    out["wait"] = np.where(done, bounds[last_at[jj]], -1)
    return out


def _journey(path: _Path, points: I64, rows: I64) -> dict[str, I64]:
    """Where each stream byte was when (ns; -1: not measured).

    ``tx0``: its first transmission on the client's capture. For the copy that first
    reached the server intact (server-capture row ``rows``): ``tx`` when that copy left
    the client, the engine's ``t_in``, ``sched`` (its model's departure, between t_in
    and t_out), ``t_out``, and ``arr`` on the server's capture. ``recovered`` (0/1):
    that copy is not the first transmission; ``first_seen`` (0/1): the engine recorded
    the first transmission (in any fate); ``first_in`` / ``first_sched`` /
    ``first_out``: the engine's times for the first transmission when it forwarded it
    intact, and ``held_first`` (0/1): it was still in the engine when the copy that
    arrived left the client (a retransmission overtook a slow original).
    """
    client, server, forwarded = path.client, path.server, path.forwarded
    first = _first_carrier(client, np.where(points >= 0, points, -1))
    copy = pd.MultiIndex.from_arrays(
        [_column(server, name, rows) for name in ("ip_id", "start", "len")]
    )
    original = pd.MultiIndex.from_arrays(
        [_column(client, name, first) for name in ("ip_id", "start", "len")]
    )
    at_client = _lookup(_keys(client, "len"), copy)
    at_engine = _lookup(_keys(forwarded, "payload_len"), copy)
    recovered = (first >= 0) & (rows >= 0) & ~np.asarray(copy == original, dtype=np.bool_)
    first_seen = _lookup(_keys(path.engine, "payload_len"), original) >= 0
    at_first = _lookup(_keys(forwarded, "payload_len"), original)
    tx = _column(client, "ts_ns", at_client)
    arr = _column(server, "ts_ns", rows)
    first_out = _column(forwarded, "t_out_ns", at_first)
    held_first = recovered & (first_out >= 0) & (first_out > np.where(tx >= 0, tx, arr))
    return {
        "tx0": _column(client, "ts_ns", first),
        "tx": tx,
        "t_in": _column(forwarded, "t_in_ns", at_engine),
        "sched": _column(forwarded, "sched", at_engine),
        "t_out": _column(forwarded, "t_out_ns", at_engine),
        "arr": arr,
        "recovered": recovered.astype(np.int64),
        "first_seen": (first_seen & (first >= 0)).astype(np.int64),
        "first_in": _column(forwarded, "t_in_ns", at_first),
        "first_sched": _column(forwarded, "sched", at_first),
        "first_out": first_out,
        "held_first": held_first.astype(np.int64),
    }


def _int64(values: pd.Series) -> I64:
    """Nullable ns timestamps as int64 (-1: missing)."""
    return np.asarray(values.astype("Int64").to_numpy(dtype=np.int64, na_value=-1), np.int64)


def _gap(later: I64, earlier: I64) -> F64:
    """later - earlier in ns as float (NaN where either is not measured)."""
    ok = (later >= 0) & (earlier >= 0)
    return np.where(ok, (later - earlier).astype(np.float64), np.nan)


def _legs(own: dict[str, I64], complete: I64, t_send: I64, t_recv: I64) -> pd.DataFrame:
    """The legs (:data:`LEGS`, ns) of each message's one-way delay, and ``unmeasured``:
    the part of the delay no measured leg covers (a missing point)."""
    resend = np.where(own["recovered"] > 0, _gap(own["tx"], own["tx0"]), 0.0)
    legs = pd.DataFrame(
        {
            "send": _gap(own["tx0"], t_send),
            "resend": np.where(own["tx0"] >= 0, resend, np.nan),
            "to_engine": _gap(own["t_in"], own["tx"]),
            "hold": _gap(own["sched"], own["t_in"]),
            "engine_late": _gap(own["t_out"], own["sched"]),
            "to_server": _gap(own["arr"], own["t_out"]),
            "head_of_line": _gap(complete, own["arr"]),
            "read": _gap(t_recv, complete),
        }
    )
    total = _gap(t_recv, t_send)
    covered = legs.sum(axis=1, skipna=True).to_numpy(dtype=np.float64)
    legs["unmeasured"] = np.where(np.isnan(total), np.nan, np.maximum(total - covered, 0.0))
    return legs


def _usual(values: pd.Series) -> float:
    """The median of a leg over the exchange's messages (0 when never measured)."""
    measured = values.dropna()
    return float(measured.median()) if not measured.empty else 0.0


def _head_of_line_kind(own: dict[str, I64], waited: dict[str, I64], found: Mask) -> StrArray:
    """Why the earlier byte a message waited for came after its own last byte: ``drop``
    (the engine dropped or corrupted it, and a resent copy brought it), ``unexplained``
    (resent though the engine harmed no copy and no longer held it, or the copy is not
    in the engine's record), ``reordering`` (it went into the engine first and the
    engine's model scheduled it out later), ``host`` (the engine scheduled it first: it
    was late on the host); "" when the message did not wait. When a retransmission
    overtook a first copy the engine still held, the first copy's times decide."""
    resent = waited["recovered"] > 0
    held = resent & (waited["held_first"] > 0)
    at_engine = (waited["t_in"] >= 0) & (own["t_in"] >= 0)
    later = (waited["t_in"] <= own["t_in"]) & (waited["sched"] > own["sched"])
    first_later = (waited["first_in"] <= own["t_in"]) & (waited["first_sched"] > own["sched"])
    kind: StrArray = np.select(
        [
            waited["arr"] < 0,
            resent & found,
            held & first_later & (own["t_in"] >= 0),
            held,
            resent,
            ~at_engine,
            later,
        ],
        ["", "drop", "reordering", "host", "unexplained", "unexplained", "reordering"],
        "host",
    )
    return kind


def _in_flight(segments: pd.DataFrame, client: pd.DataFrame, when: I64, way: _Way) -> I64:
    """Bytes the client had sent and not yet seen acknowledged at each time ``when``,
    by its own capture (-1: not known)."""
    if client.empty:
        return np.full(when.size, -1, dtype=np.int64)
    sent_ts = np.maximum.accumulate(client["ts_ns"].to_numpy(dtype=np.int64))
    sent_top = np.maximum.accumulate(client["stop"].to_numpy(dtype=np.int64))
    at = np.searchsorted(sent_ts, when, side="right") - 1
    sent = np.where(at >= 0, sent_top[np.maximum(at, 0)], 0)
    acks = segments.loc[
        (segments["side"] == way.sender)
        & (segments["direction"] != way.direction)
        & segments["ack"].notna()
    ]
    acked = np.zeros(when.size, dtype=np.int64)
    if not acks.empty:  # an ACK of relative seq a covers the offsets below a - 1
        ack_ts = np.maximum.accumulate(acks["ts_ns"].to_numpy(dtype=np.int64))
        ack_top = np.maximum.accumulate(acks["ack"].to_numpy(dtype=np.int64) - 1)
        at = np.searchsorted(ack_ts, when, side="right") - 1
        acked = np.where(at >= 0, ack_top[np.maximum(at, 0)], 0)
    return np.where(when >= 0, np.maximum(sent - acked, 0), -1)


def _last_resend(client: pd.DataFrame, t_first_tx: I64) -> pd.Series:
    """Context for a backlog: how long before the bytes left the client its latest
    retransmission went out (a loss recovery shrinks the congestion window,
    RFC 5681 §3.2). "" when there was none."""
    resends = np.sort(client.loc[client["retransmission"], "ts_ns"].to_numpy(dtype=np.int64))
    when = t_first_tx
    at = np.searchsorted(resends, when, side="right") - 1
    found = (at >= 0) & (when >= 0)
    before = pd.Series(when - resends[np.maximum(at, 0)] if resends.size else when, dtype="Int64")
    text = "; latest retransmission " + _ms(before) + " ms before"
    return text.where(pd.Series(found), "")


def _legs_text(legs: pd.DataFrame, recovered: I64) -> pd.Series:
    """ "send -> client 0.0, client -> engine 10.6, ..." (ms); resend and unmeasured
    only when there is one."""
    text = pd.Series("", index=legs.index, dtype="string")
    for name, label in LEGS.items():
        part = label + " " + _ms(legs[name])
        if name == "resend":
            part = part.where(pd.Series(recovered > 0), "")
        text = text + part.where(part == "", part + ", ")
    rest = legs["unmeasured"].fillna(0.0) > 50_000
    unmeasured = (", unmeasured " + _ms(legs["unmeasured"])).where(rest, "")
    return text.str.removesuffix(", ") + unmeasured


def _evidence(
    winner: StrArray,
    *,
    legs: pd.DataFrame,
    usual: dict[str, float],
    host_parts: dict[str, F64],
    texts: dict[str, pd.Series],
    offsets: pd.Series,
    flight: I64,
    first_held: Mask,
) -> pd.Series:
    """The first sentence of each message's evidence: what the winning cause did."""

    def leg(name: str) -> pd.Series:
        return _ms(legs[name])

    def was(name: str) -> str:
        return f" (usual {usual[name] / 1e6:.1f} ms)"

    offset = offsets.astype("string").fillna("?")
    backlog = "first sent " + leg("send") + " ms after the application's send"
    host_lead = pd.DataFrame(host_parts).idxmax(axis=1).to_numpy()
    host = {
        "send": backlog + " with nothing in flight for TCP to wait for: the sending host was slow",
        "to_engine": "the engine read its last byte "
        + leg("to_engine")
        + " ms after the client sent it"
        + was("to_engine")
        + ": the engine process was not scheduled in time",
        "engine_late": "the engine wrote its last byte "
        + leg("engine_late")
        + " ms after its own schedule: the engine process woke late",
        "to_server": "its last byte reached the server's capture "
        + leg("to_server")
        + " ms after the engine wrote it"
        + was("to_server")
        + ": the server side was not scheduled in time",
        "head_of_line": "waited "
        + leg("head_of_line")
        + " ms for earlier bytes (offset "
        + offset
        + ") the engine scheduled out before its own: they were late on the host",
        "first_copy": "resent "
        + leg("resend")
        + " ms after its first copy, which was late on the host (reached or left the"
        " engine late) and still in the engine: the resend arrived first; nothing dropped",
    }
    host_text = pd.Series("", index=legs.index, dtype="string")
    for name, text in host.items():
        host_text = host_text.where(host_lead != name, text)
    lead = {
        "own-drop": texts["own-drop"],
        "wait-drop": texts["wait-drop"]
        + "; the message waited "
        + leg("head_of_line")
        + " ms in the receiver",
        "reordering": "waited "
        + leg("head_of_line")
        + " ms for earlier bytes (offset "
        + offset
        + ") the engine took in first but let out later (delay/jitter/reordering);"
        " nothing dropped",
        "engine-delay": ("the engine held its last byte " + leg("hold") + " ms").where(
            ~pd.Series(first_held),
            "resent " + leg("resend") + " ms after its first copy, which the engine held longer",
        )
        + " as its model scheduled"
        + was("hold")
        + ": delay/jitter; nothing dropped",
        "sender-backlog": backlog
        + " ("
        + pd.Series(flight, dtype="Int64").astype("string").fillna("?")
        + " B in flight: window-limited sender"
        + texts["sender-backlog"]
        + ")",
        "host-scheduling": host_text,
        "receiver-app": "all bytes in "
        + texts["ready"]
        + " ms, read by the application "
        + leg("read")
        + " ms later"
        + was("read")
        + ": the server application woke late",
        "unexplained": texts["unexplained"],
    }
    evidence = pd.Series("", index=legs.index, dtype="string")
    for name, text in lead.items():
        evidence = evidence.where(winner != name, text)
    return evidence


def _unexplained_text(
    own: dict[str, I64],
    waited: dict[str, I64],
    hol_kind: StrArray,
    last_byte: I64,
    wait_at: I64,
) -> pd.Series:
    """Why no measured leg covers a delay: the copy is not in the engine's record, or it
    was resent though the engine harmed none of its copies, or legs are missing."""
    on_wait = hol_kind == "unexplained"
    trip = {k: np.where(on_wait, waited[k], own[k]) for k in own}
    offset = pd.Series(np.where(on_wait, wait_at, last_byte), dtype="Int64").astype("string")
    lost_where = np.where(
        trip["first_seen"] > 0,
        "which the engine forwarded intact (lost between the engine and the server)",
        "which the engine never saw (lost between the client and the engine)",
    )
    resent = (
        ": resent "
        + _ms(pd.Series(_gap(trip["tx"], trip["tx0"]), dtype="Float64"))
        + " ms after its first copy, "
        + pd.Series(lost_where, dtype="string")
    )
    reason = pd.Series(
        [": some legs of the delay were not measured"] * last_byte.size, dtype="string"
    )
    reason = reason.where(~(trip["recovered"] > 0), resent)
    missing = (trip["t_in"] < 0) & (trip["arr"] >= 0) & ~(trip["recovered"] > 0)
    reason = reason.where(
        ~missing, ": the copy that reached the server is not in the engine's record"
    )
    return (
        "bytes from offset "
        + offset
        + " were missing or slow but the engine dropped and held nothing covering them"
        + reason
    )


def _loss_evidence(path: _Path, byte: I64, arrival: I64) -> dict[str, pd.Series]:
    """For each stream byte that first reached the server intact at ``arrival`` (-1:
    skip): the earliest engine drop (or corruption) of a segment carrying it before
    then, and the copy that finally brought it, traced back to the client's capture.

    Returns ``found`` (bool), ``cause`` (the engine's fate, or "corrupted") and
    ``text`` (one sentence; times relative to the engine drop).
    """
    n = byte.size
    engine = path.engine
    harmed = (engine["fate"].astype("string") != "forwarded").fillna(True) | engine[
        "corrupted"
    ].astype("boolean").fillna(False)
    drops = engine.loc[harmed.to_numpy(dtype=np.bool_)].reset_index(drop=True)
    points = np.where((arrival >= 0) & (byte >= 0), byte, -1)
    at = _first_carrier(drops, points) if not drops.empty else np.full(n, -1, np.int64)
    t_drop = _take(drops, "t_in_ns", at).to_numpy(dtype=np.int64, na_value=0)
    at = np.where((at >= 0) & (arrival >= 0) & (t_drop < arrival), at, -1)
    found = at >= 0
    fate = _take(drops, "fate", at, "string")
    fate = fate.where(~_take(drops, "corrupted", at, "boolean").fillna(False), "corrupted")

    server, client = path.server, path.client
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


# --------------------------------------------------------------------------- run


def explain_summary(explained: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and kind: how many messages, how many explained, how many the
    impairment, the host and the sender's window account for (:data:`BLAME`), and by
    which causes."""
    rows = []
    for (protocol, kind), group in explained.groupby(["protocol", "kind"], sort=True):
        counts = group["cause"].value_counts()
        done = int(group["explained"].astype(bool).sum())
        if "blame" in group:
            blame = group["blame"].astype("string")
        else:
            blame = group["cause"].astype("string").map(BLAME)
        rows.append(
            {
                "protocol": protocol,
                "kind": kind,
                "messages": len(group),
                "explained": done,
                "unexplained": len(group) - done,
                **{side: int((blame == side).sum()) for side in ("impairment", "host", "sender")},
                "explained_pct": 100.0 * done / len(group),
                "causes": ", ".join(f"{c}: {n}" for c, n in counts.items()),
            }
        )
    return pd.DataFrame(rows, columns=list(SUMMARY_COLUMNS))


def _port(value: object) -> int:
    """A port from exchanges.csv; RAW has none (empty cell): 0."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return 0 if pd.isna(number) else int(number)


def _count(value: object) -> int | None:
    """A counter from exchanges.csv (None: not recorded)."""
    number = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
    return None if pd.isna(number) else int(number)


def explain(
    messages: pd.DataFrame,
    exchanges: pd.DataFrame,
    ground_truth: pd.DataFrame,
    *,
    packets: Callable[[str, str], pd.DataFrame | None],
    tcp: Mapping[int, TcpWireAnalysis] | None = None,
    client_address: str | None = None,
    server_address: str | None = None,
    engine_overload: int | None = None,
    late_ns: float | None = None,
) -> pd.DataFrame:
    """The ``explained`` table of a run: UDP and RAW losses, late TCP messages.

    ``packets(protocol, side)`` gives a capture's packets (None: not captured);
    ``tcp`` maps each TCP flow to its :func:`~lab.analysis.wire.analyze_tcp` result (late
    TCP messages are skipped without it); each exchanges row is one flow, and its rows
    say which (``flow``); ``engine_overload`` the packets the client's TUN
    device dropped because the engine did not read them.
    """
    parts = [_empty()]
    for _, row in exchanges.iterrows():
        protocol = str(row["protocol"])
        ports = _port(row.get("client_port")), _port(row.get("server_port"))
        flow = _port(row.get("flow"))  # 0 in a run of format 1
        mine = messages
        if "flow" in messages:
            mine = messages.loc[(messages["protocol"] != protocol) | (messages["flow"] == flow)]
        way = _Way(row.get("direction") == SERVER_TO_CLIENT)
        if protocol in ("udp", "raw"):
            counter = "Raw.Drops" if protocol == "raw" else "Udp.RcvbufErrors"
            part = explain_udp_losses(
                mine,
                ground_truth,
                *(ports[::-1] if way.reverse else ports),
                client_packets=packets(protocol, way.sender),
                server_packets=packets(protocol, way.receiver),
                protocol=protocol,
                client_address=server_address if way.reverse else client_address,
                receive_drops=_count(row.get(f"{way.receiver}.{counter}")),
                # the client's TUN device: only a forward flow's sender writes into it
                engine_overload=None if way.reverse else engine_overload,
                reverse=way.reverse,
            )
        elif protocol == "tcp" and tcp is not None and flow in tcp:
            part = explain_tcp_delays(
                mine, ground_truth, tcp[flow], *ports, late_ns=late_ns, reverse=way.reverse
            )
        else:
            continue
        parts.append(part.assign(flow=flow))
    frames = [p for p in parts if not p.empty]
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)[list(EXPLAINED_COLUMNS)]


def explain_run(folder: Path, *, tcp: Mapping[int, TcpWireAnalysis] | None = None) -> pd.DataFrame:
    """:func:`explain` for a finished run's folder (read through :mod:`lab.results`).

    A run without impairment.csv (no ground truth) raises AnalysisError.
    """
    from lab.analysis.run import explain_record, record_of  # noqa: PLC0415 - builds on this
    from lab.results import load_run  # noqa: PLC0415

    run = load_run(folder)
    if not run.has_table("impairment"):
        raise AnalysisError(
            f"{run.path / 'impairment.csv'}: no ground truth in this results folder"
        )
    return explain_record(record_of(run), tcp or {})
