"""Flows of any pcap file and what can be inferred about them (see :mod:`lab.analysis.offline`).

A flow is a bidirectional 5-tuple (protocol, two address:port endpoints); its
initiator ("a") is the sender of the TCP SYN, else of its first packet. All flows
are analysed at once with grouped numpy/pandas operations keyed by a flow number,
so a capture with many small flows costs no more per packet than one large flow:
no step loops over flows in Python, addresses become text once per distinct
address, and the TCP analysis sees only the columns it reads.

The flow table leaves as text the same way: :func:`json_lines` and
:func:`table_lines` format a column at a time for a chunk of rows, so printing
200,000 flows costs a few C-level passes, not a Python call per cell, and memory
holds one chunk of text at a time.
"""

from __future__ import annotations

import ipaddress
import json
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from lab._protocols import IPPROTO_TCP, IPPROTO_UDP
from lab.analysis import _tcp
from lab.pcap import LAB_RAW_PROTO, PcapFrame, PcapStats, read_pcap

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
#: The packet columns the TCP analysis reads (:mod:`lab.analysis._tcp`), besides flow/dir.
_TCP_FIELDS = (
    "frame",
    "ts_ns",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "tcp_window",
    "payload_len",
    "ip_id",
)

#: Rows formatted at a time by :func:`json_lines` and :func:`table_lines`.
CHUNK_ROWS = 20_000

I64 = npt.NDArray[np.int64]
Mask = npt.NDArray[np.bool_]
Objects = npt.NDArray[np.object_]


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
        names = [str(c) for c in flows.columns]
        columns = [_plain_column(flows[c]) for c in flows.columns]
        return list(map(dict, map(zip, repeat(names), zip(*columns, strict=True))))


def _plain_column(column: pd.Series) -> list[Any]:
    """A column as plain Python values (int, float, str, bool), None where missing:
    what ``_plain`` makes of each value, a column at a time (see :func:`_distinct`)."""
    codes, values = _distinct(column)
    plain: list[Any] = _texts(values, None)[codes].tolist()
    return plain


def _plain(value: Any) -> Any:
    if value is None or value is pd.NA:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def analyze_capture(path: Path) -> CaptureReport:
    """Read ``path`` (classic pcap or pcapng; see :func:`lab.pcap.read_pcap`) and
    analyse every flow in it. Raises only AnalysisError (unreadable, not a capture)."""
    frame = read_pcap(path)
    flows, rtt = analyze_frame(frame)
    return CaptureReport(Path(path), frame.linktype, frame.stats, flows, rtt)


@dataclass(frozen=True)
class _Keys:
    """Per packet: its flow number (bidirectional 5-tuple, numbered in order of first
    appearance), direction (0: from the initiator), whether it is a TCP segment, and
    the integer identities of its addresses (see :func:`_address_ids`); ``v6`` holds
    the distinct IPv6 addresses those identities rank."""

    flow: I64
    direction: I64
    is_tcp: Mask
    src: I64
    dst: I64
    v6: npt.NDArray[np.uint8]


def _address_ids(frame: PcapFrame) -> tuple[I64, I64, npt.NDArray[np.uint8]]:
    """Integer identity of each packet's source and destination address: the IPv4
    value, or 2^32 + a rank of the IPv6 address among the file's IPv6 addresses
    (sources and destinations), -1 if neither; and those IPv6 addresses, (k, 16)."""
    p = frame.packets
    src = p["src"].to_numpy(dtype=np.int64, na_value=-1)
    dst = p["dst"].to_numpy(dtype=np.int64, na_value=-1)
    v6 = np.zeros((0, 16), dtype=np.uint8)
    if frame.ipv6_rows.size:
        both = np.ascontiguousarray(np.concatenate((frame.src6, frame.dst6)).reshape(-1, 16))
        v6, inverse = np.unique(both, axis=0, return_inverse=True)
        ranks = (1 << 32) + inverse.reshape(-1).astype(np.int64)
        half = frame.ipv6_rows.size
        src[frame.ipv6_rows] = ranks[:half]
        dst[frame.ipv6_rows] = ranks[half:]
    return src, dst, v6


def _first_rows(flow: I64) -> I64:
    """Position of each flow's first packet, in flow order. Flows are numbered in
    order of appearance, so a flow's first packet is the first to pass the highest
    number so far."""
    new = np.ones(flow.size, dtype=np.bool_)
    new[1:] = flow[1:] > np.maximum.accumulate(flow)[:-1]
    return np.flatnonzero(new).astype(np.int64)


_OCTETS: Objects = np.array([str(k) for k in range(256)], dtype=object)


def _address_text(ids: I64, v6: npt.NDArray[np.uint8]) -> Objects:
    """Text of address identities (:func:`_address_ids`): dotted quads built from a
    table of the 256 octets, IPv6 (RFC 5952) once per distinct address, "?" for -1."""
    distinct, inverse = np.unique(ids, return_inverse=True)
    text = np.full(distinct.size, "?", dtype=object)
    is4 = (distinct >= 0) & (distinct < (1 << 32))
    if is4.any():
        v4 = distinct[is4]
        dotted = _OCTETS[(v4 >> 24) & 0xFF]
        for shift in (16, 8, 0):
            dotted = dotted + "." + _OCTETS[(v4 >> shift) & 0xFF]
        text[is4] = dotted
    is6 = distinct >= (1 << 32)
    if is6.any():
        ranks = (distinct[is6] - (1 << 32)).tolist()
        text[is6] = [str(ipaddress.IPv6Address(v6[r].tobytes())) for r in ranks]
    result: Objects = text[inverse.reshape(-1)]
    return result


def _flow_keys(frame: PcapFrame) -> _Keys:
    """Flow number, direction and TCP-ness of every packet (see :class:`_Keys`)."""
    p = frame.packets
    proto = p["proto"].to_numpy(dtype=np.int64)
    sport = p["sport"].to_numpy(dtype=np.int64, na_value=-1)
    dport = p["dport"].to_numpy(dtype=np.int64, na_value=-1)
    src, dst, v6 = _address_ids(frame)
    src_ep = src * (1 << 17) + (sport + 1)
    dst_ep = dst * (1 << 17) + (dport + 1)
    lo, hi = np.minimum(src_ep, dst_ep), np.maximum(src_ep, dst_ep)
    keys = pd.DataFrame({"proto": proto, "lo": lo, "hi": hi})
    flow: I64 = np.asarray(keys.groupby(["proto", "lo", "hi"], sort=False).ngroup(), np.int64)

    flags = p["tcp_flags"].to_numpy(dtype=np.int64, na_value=0)
    is_tcp = (proto == IPPROTO_TCP) & p["tcp_seq"].notna().to_numpy(dtype=np.bool_)
    syn = is_tcp & ((flags & (_tcp.SYN | _tcp.ACK)) == _tcp.SYN)
    # the initiator: the sender of the flow's first SYN, else of its first packet
    count = int(flow.max()) + 1 if flow.size else 0
    initiator = np.full(count, -1, dtype=np.int64)
    syn_rows = np.flatnonzero(syn)
    first_syn = np.unique(flow[syn_rows], return_index=True)
    initiator[first_syn[0]] = src_ep[syn_rows[first_syn[1]]]
    first = _first_rows(flow)
    none = initiator < 0
    initiator[none] = src_ep[first[none]]
    direction = (src_ep != initiator[flow]).astype(np.int64)
    return _Keys(flow, direction, is_tcp, src, dst, v6)


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
    keys = _flow_keys(frame)
    if not keys.is_tcp.any():
        return pd.DataFrame(columns=list(SEGMENT_FLAG_COLUMNS))
    _, flagged, at_sender, _ = _flag_tcp(frame, keys)
    table = flagged.assign(sent_here=at_sender)
    return table[list(SEGMENT_FLAG_COLUMNS)].reset_index(drop=True)


def _tcp_segments(frame: PcapFrame, keys: _Keys) -> pd.DataFrame:
    """The TCP rows of the capture, only the columns the TCP analysis reads, with
    their flow, direction and ``g`` (one copy of those columns, nothing more)."""
    packets, is_tcp = frame.packets, keys.is_tcp
    seg = packets.loc[is_tcp, [c for c in _TCP_FIELDS if c in packets.columns]]
    seg = seg.reset_index(drop=True)
    seg["flow"] = keys.flow[is_tcp]
    seg["dir"] = keys.direction[is_tcp]
    seg["g"] = 2 * seg["flow"] + seg["dir"]
    return seg


def analyze_frame(frame: PcapFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-flow table (:data:`FLOW_COLUMNS`, largest flows first) and TCP RTT samples
    (:data:`RTT_SAMPLE_COLUMNS`) of an already-read capture."""
    p = frame.packets
    if len(p) == 0:
        return pd.DataFrame(columns=list(FLOW_COLUMNS)), pd.DataFrame(
            columns=list(RTT_SAMPLE_COLUMNS)
        )
    keys = _flow_keys(frame)
    # TCP first: its working tables are gone before the flow table is built
    tcp_table, rtt = _tcp_flows(frame, keys)
    flow, direction = keys.flow, keys.direction
    count = int(flow.max()) + 1
    proto = p["proto"].to_numpy(dtype=np.int64)
    sport = p["sport"].to_numpy(dtype=np.int64, na_value=-1)
    dport = p["dport"].to_numpy(dtype=np.int64, na_value=-1)
    ts = p["ts_ns"].to_numpy(dtype=np.int64)
    size = p["ip_len"].to_numpy(dtype=np.int64, na_value=0)

    index = pd.RangeIndex(count, name="flow")
    by_ts = pd.Series(ts).groupby(flow)
    start, end = by_ts.min().to_numpy(np.int64), by_ts.max().to_numpy(np.int64)
    packets = np.bincount(flow, minlength=count).astype(np.int64)
    packets_ab = np.bincount(flow[direction == 0], minlength=count).astype(np.int64)
    flows = pd.DataFrame(
        {
            "packets": packets,
            "bytes": pd.Series(size).groupby(flow).sum().to_numpy(np.int64),
            "packets_ab": packets_ab,
            "start_ns": start,
            "end_ns": end,
            "packets_ba": packets - packets_ab,
            "duration_s": (end - start) / 1e9,
        },
        index=index,
    )
    first_row = _first_rows(flow)
    a_is_src = direction[first_row] == 0
    src, dst = keys.src[first_row], keys.dst[first_row]
    text = _address_text(np.concatenate((src, dst)), keys.v6)
    src_text, dst_text = text[:count], text[count:]
    names, which = np.unique(proto[first_row], return_inverse=True)
    flows["proto"] = np.array([PROTO_NAMES.get(int(x), str(int(x))) for x in names], object)[
        which.reshape(-1)
    ]
    flows["a"] = np.where(a_is_src, src_text, dst_text)
    flows["b"] = np.where(a_is_src, dst_text, src_text)
    a_port = np.where(a_is_src, sport[first_row], dport[first_row])
    b_port = np.where(a_is_src, dport[first_row], sport[first_row])
    flows["a_port"] = pd.arrays.IntegerArray(np.maximum(a_port, 0), a_port < 0)
    flows["b_port"] = pd.arrays.IntegerArray(np.maximum(b_port, 0), b_port < 0)

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


def _tcp_flows(frame: PcapFrame, keys: _Keys) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per TCP flow: retransmissions, duplicate ACKs, out-of-order, spurious, handshake
    RTT, Karn and ack RTT samples, judged as :mod:`lab.analysis._tcp` does for a
    single capture, over all flows at once (keyed by flow number).

    Where the handshake shows which end the capture sat at (``capture_at``), the
    direction that end sends is judged as at a sender (exact) and the other as at a
    receiver; elsewhere tshark's timing heuristic separates reordering from
    retransmission. The RTT figures count the samples of segments sent from the
    capture point (both directions when it is unknown): at a receiver a "sample"
    would time that host's own ACK delay.
    """
    if not keys.is_tcp.any():
        empty = pd.DataFrame(columns=list(RTT_SAMPLE_COLUMNS))
        return pd.DataFrame(index=pd.Index([], name="flow")), empty
    seg, flagged, at_sender, shakes = _flag_tcp(frame, keys)
    del seg  # flagged holds every column of seg
    flow = keys.flow[keys.is_tcp]
    known = shakes["at_client"].reindex(flow).notna().to_numpy(dtype=np.bool_)
    counted = at_sender | ~known
    samples = _sample_table(
        flagged,
        _tcp.karn_rtt_samples(flagged, counted),
        _tcp.ack_rtt_samples(flagged),
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
    frame: PcapFrame, keys: _Keys
) -> tuple[pd.DataFrame, pd.DataFrame, Mask, pd.DataFrame]:
    """The TCP segments made relative, their flags, which rows were captured at their
    sender, and the handshakes (indexed by flow), all flows at once."""
    flow, direction = keys.flow[keys.is_tcp], keys.direction[keys.is_tcp]
    seg = _tcp.relative(_tcp_segments(frame, keys))
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


# --------------------------------------------------------------------------- text out
#
# Output goes a chunk of CHUNK_ROWS flows at a time. In a chunk, a column becomes
# (codes, texts): pd.factorize numbers its distinct values, each distinct value
# becomes text once (with its JSON key, or padded to the table's width), and the
# rows are a gather texts[codes] per column and one C-level str.join per row.
# Counts, ports and protocols have few distinct values; a column of all-distinct
# values costs one C-level map. Memory holds one chunk of text.

Encoded = tuple[I64, Objects]  # codes (-1: missing), texts (the last one: missing)


def _distinct(column: pd.Series) -> tuple[I64, list[Any]]:
    """Codes of the values of ``column`` (-1 where missing) and its distinct values
    as plain Python values (see ``_plain``), in code order. Floats are not merged
    (-0.0 stays apart from 0.0): every float row is its own value."""
    if column.dtype.kind == "f" and not isinstance(column.dtype, pd.api.extensions.ExtensionDtype):
        floats = column.to_numpy(dtype=np.float64)
        index = np.arange(floats.size, dtype=np.int64)
        return np.where(np.isnan(floats), -1, index), floats.tolist()
    codes, uniques = pd.factorize(column, use_na_sentinel=True)
    values = uniques.to_numpy()
    if values.dtype.kind in "iufb":
        plain: list[Any] = values.tolist()
    elif isinstance(column.dtype, pd.api.extensions.ExtensionDtype) and column.dtype.kind in "iu":
        plain = uniques.to_numpy(dtype=np.int64).tolist()
    else:
        plain = values.tolist()
        if not set(map(type, plain)) <= {str, int, bool}:
            plain = [_plain(v) for v in plain]
    return np.asarray(codes, dtype=np.int64), plain


def _texts(items: list[Any], missing: Any) -> Objects:
    out = np.empty(len(items) + 1, dtype=object)
    out[: len(items)] = items
    out[-1] = missing
    return out


def _json_encoded(column: pd.Series) -> Encoded:
    """``json.dumps`` of each value as :meth:`CaptureReport.rows` gives it (missing:
    null), for each distinct value once."""
    codes, values = _distinct(column)
    kind = column.dtype.kind
    if kind in "iu":
        items = list(map(int.__repr__, values))
    elif kind == "f":
        items = list(map(float.__repr__, values))
        for k in np.flatnonzero(np.isinf(np.asarray(values, dtype=np.float64))):
            items[k] = "Infinity" if values[k] > 0 else "-Infinity"
    elif set(map(type, values)) <= {str}:
        items = list(map(json.encoder.encode_basestring_ascii, values))
    else:
        items = list(map(json.dumps, values))
    return codes, _texts(items, "null")


def _rows_text(columns: list[Encoded], sep: str) -> list[str]:
    """The rows of encoded columns, each row's texts joined by ``sep``."""
    parts = [texts[codes] for codes, texts in columns]
    return list(map(sep.join, zip(*parts, strict=True)))


def json_lines(flows: pd.DataFrame) -> Iterator[list[str]]:
    """The flows as JSON objects, one text per flow, in chunks of :data:`CHUNK_ROWS`
    (each chunk encoded on its own: memory holds one chunk of text).

    Each object is ``json.dumps`` of the matching :meth:`CaptureReport.rows` entry
    (same keys in the same order, same values), built a column at a time.
    """
    names = [str(c) for c in flows.columns]
    keys = [("{" if k == 0 else ", ") + json.dumps(name) + ": " for k, name in enumerate(names)]
    for chunk in _chunks(flows):
        if not names:
            yield ["{}"] * len(chunk)
            continue
        columns = []
        for k, name in enumerate(names):
            codes, texts = _json_encoded(chunk[name])
            texts = keys[k] + texts  # object arrays: str + each element
            columns.append((codes, texts + "}" if k == len(names) - 1 else texts))
        yield _rows_text(columns, "")


def _chunks(frame: pd.DataFrame, rows: int = CHUNK_ROWS) -> Iterator[pd.DataFrame]:
    for at in range(0, len(frame), rows):
        yield frame.iloc[at : at + rows]


#: How :func:`table_lines` shows a column: (header, flow column or
#: (address, port) columns, format of a number, right-justified).
TableColumn = tuple[str, "str | tuple[str, str]", "str | None", bool]


def _cell_encoded(column: pd.Series, fmt: str | None) -> Encoded:
    """Cells of one column as the rich table writes them ("–" when missing)."""
    codes, values = _distinct(column)
    return codes, _texts(list(map((fmt or "{}").format, values)), "–")


def _endpoint_encoded(host: pd.Series, port: pd.Series) -> Encoded:
    """``addr:port`` cells, IPv6 in brackets, no port for port-less protocols."""
    text = host.to_numpy(dtype=object, na_value="?")
    six = np.fromiter(map(str.__contains__, text, repeat(":")), np.bool_, text.size)
    if six.any():
        text = text.copy()
        text[six] = "[" + text[six] + "]"
    port_codes, ports = _distinct(port)
    suffix = _texts([f":{p}" for p in ports], "")
    cells: Objects = text + suffix[port_codes]
    return np.arange(cells.size, dtype=np.int64), _texts(list(cells), "")


_FIXED_POINT = re.compile(r"\{:\.\d+f\}")


def _cell_width(column: pd.Series, fmt: str | None) -> int:
    """The widest cell of :func:`_cell_encoded`, without formatting every value:
    integers and fixed-point numbers are widest at their extremes."""
    width = 1 if column.isna().any() else 0  # "–"
    present = column.dropna()
    if present.empty:
        return width
    kind = present.dtype.kind
    if kind in "iu" and fmt is None:
        values = present.to_numpy(dtype=np.int64)
        return max(width, len(str(int(values.min()))), len(str(int(values.max()))))
    if kind == "f" and fmt is not None and _FIXED_POINT.fullmatch(fmt):
        floats = present.to_numpy(dtype=np.float64)
        finite = floats[np.isfinite(floats)]
        extremes = set(floats[np.isinf(floats)].tolist())
        if finite.size:
            extremes |= {float(finite.min()), float(finite.max())}
        return max([width, *(len(fmt.format(v)) for v in extremes)])
    _, texts = _cell_encoded(present, fmt)
    return max([width, *map(len, texts[:-1])])


def _endpoint_width(host: pd.Series, port: pd.Series) -> int:
    """The widest cell of :func:`_endpoint_encoded`, from lengths only."""
    if host.empty:
        return 0
    text = host.to_numpy(dtype=object, na_value="?")
    length = np.fromiter(map(len, text), np.int64, text.size)
    length += 2 * np.fromiter(map(str.__contains__, text, repeat(":")), np.bool_, text.size)
    has_port = port.notna().to_numpy(dtype=np.bool_)
    digits = np.char.str_len(port.to_numpy(dtype=np.int64, na_value=0).astype(str))
    return int((length + np.where(has_port, 1 + digits, 0)).max())


def table_lines(
    flows: pd.DataFrame, columns: tuple[TableColumn, ...], sep: str = "  "
) -> Iterator[str]:
    """The flows as a plain table: a header line, a rule, one line per flow, columns
    aligned over all rows. Yields text blocks (lines ending in a newline) of up to
    :data:`CHUNK_ROWS` flows; the widths come from the whole columns (their
    extremes), the text from one chunk at a time."""
    widths = []
    for header, source, fmt, _right in columns:
        if isinstance(source, tuple):
            cell = _endpoint_width(flows[source[0]], flows[source[1]])
        else:
            cell = _cell_width(flows[source], fmt)
        widths.append(max(len(header), cell))
    rule = sep.join("-" * w for w in widths) + "\n"
    if not columns[-1][3]:
        widths[-1] = 0  # a left-justified last column: no trailing blanks

    def pad(texts: Objects, k: int) -> Objects:
        justify = str.rjust if columns[k][3] else str.ljust
        out = np.empty(texts.size, dtype=object)
        out[:] = list(map(justify, texts.tolist(), repeat(widths[k])))
        return out

    titles = [str(pad(np.array([c[0]], dtype=object), k)[0]) for k, c in enumerate(columns)]
    yield sep.join(titles) + "\n" + rule
    for chunk in _chunks(flows):
        cells = []
        for k, (_, source, fmt, _right) in enumerate(columns):
            if isinstance(source, tuple):
                codes, texts = _endpoint_encoded(chunk[source[0]], chunk[source[1]])
            else:
                codes, texts = _cell_encoded(chunk[source], fmt)
            cells.append((codes, pad(texts, k)))
        yield "\n".join(_rows_text(cells, sep)) + "\n"
