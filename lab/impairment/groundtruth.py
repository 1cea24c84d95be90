"""The engine's ground truth as pandas: what happened to every packet, and the accounting.

The engine stores raw header bytes per packet; the fields are pulled out here, once,
vectorised over the whole table (fixed IPv4/TCP/UDP offsets), not in its hot loop.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lab._protocols import IPPROTO_LAB_RAW, IPPROTO_TCP, IPPROTO_UDP
from lab.impairment.forwarder import (
    FLAG_CORRUPTED,
    FLAG_DUPLICATED,
    FLAG_PENDING_AT_STOP,
    FLAG_REORDERED,
)
from lab.impairment.model import FATE_NAMES

GROUND_TRUTH_COLUMNS = (
    "direction",
    "t_in_ns",
    "t_out_ns",
    "scheduled_ns",
    "held_ns",
    "size",
    "fate",
    "duplicated",
    "dup_t_out_ns",
    "corrupted",
    "reordered",
    "pending_at_stop",
    "ip_proto",
    "ip_id",
    "src_port",
    "dst_port",
    "tcp_seq",
    "tcp_ack",
    "tcp_flags",
    "payload_len",
    "lab_seq",
    "frag_offset",
    "more_fragments",
)


def _be(headers: np.ndarray, offsets: np.ndarray, width: int) -> np.ndarray:
    """Big-endian unsigned integers of ``width`` bytes at per-row ``offsets``."""
    rows = np.arange(len(headers))
    value = np.zeros(len(headers), dtype=np.int64)
    for k in range(width):
        column = np.clip(offsets + k, 0, headers.shape[1] - 1)
        value = (value << 8) | headers[rows, column].astype(np.int64)
    return value


def _where(values: np.ndarray, valid: np.ndarray) -> pd.arrays.IntegerArray:
    """Nullable integers: ``values`` where ``valid``, <NA> elsewhere."""
    return pd.arrays.IntegerArray(values.astype(np.int64), ~valid.astype(bool))


def load_ground_truth(path: Path) -> tuple[pd.DataFrame, dict[str, object]]:
    """The per-packet table and the engine's metadata."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        headers = data["headers"]
        directions = {code: name for name, code in meta["directions"].items()}
        flags = data["flags"]
        fate = data["fate"]
        frame = pd.DataFrame(
            {
                "direction": pd.Categorical.from_codes(
                    data["direction"].astype(np.int8),
                    categories=pd.Index([directions[i] for i in sorted(directions)]),
                ),
                "t_in_ns": data["t_in_ns"],
                "t_out_ns": data["t_out_ns"],
                "scheduled_ns": data["scheduled_ns"],
                "size": data["size"],
                "fate": pd.Categorical.from_codes(
                    fate.astype(np.int8), categories=pd.Index(list(FATE_NAMES))
                ),
                "duplicated": (flags & FLAG_DUPLICATED) > 0,
                "dup_t_out_ns": data["dup_t_out_ns"],
                "corrupted": (flags & FLAG_CORRUPTED) > 0,
                "reordered": (flags & FLAG_REORDERED) > 0,
                "pending_at_stop": (flags & FLAG_PENDING_AT_STOP) > 0,
            }
        )
    ihl = (headers[:, 0] & 0x0F).astype(np.int64) * 4 if len(headers) else np.zeros(0, np.int64)
    proto = headers[:, 9].astype(np.int64) if len(headers) else np.zeros(0, np.int64)
    total = _be(headers, np.full(len(headers), 2), 2)
    fragment_field = _be(headers, np.full(len(headers), 6), 2)
    frag_offset = (fragment_field & 0x1FFF) * 8
    later_fragment = frag_offset > 0  # no transport header: ports and seq come from the first
    is_tcp = (proto == IPPROTO_TCP) & ~later_fragment
    is_udp = (proto == IPPROTO_UDP) & ~later_fragment
    is_raw = (proto == IPPROTO_LAB_RAW) & ~later_fragment
    has_ports = is_tcp | is_udp
    tcp_header = (_be(headers, ihl + 12, 1) >> 4) * 4
    l4_len = np.where(is_tcp, tcp_header, np.where(is_udp, 8, 0))
    payload_offset = ihl + l4_len
    payload_len = np.maximum(total - payload_offset, 0)
    frame["ip_proto"] = proto
    frame["ip_id"] = _be(headers, np.full(len(headers), 4), 2)
    frame["src_port"] = _where(_be(headers, ihl, 2), has_ports)
    frame["dst_port"] = _where(_be(headers, ihl + 2, 2), has_ports)
    frame["tcp_seq"] = _where(_be(headers, ihl + 4, 4), is_tcp)
    frame["tcp_ack"] = _where(_be(headers, ihl + 8, 4), is_tcp)
    frame["tcp_flags"] = _where(_be(headers, ihl + 13, 1), is_tcp)
    frame["payload_len"] = payload_len
    fits = payload_offset + 4 <= headers.shape[1]
    has_lab_seq = (is_udp | is_raw) & (payload_len >= 16) & fits
    frame["lab_seq"] = _where(_be(headers, payload_offset, 4), has_lab_seq)
    frame["frag_offset"] = frag_offset
    frame["more_fragments"] = (fragment_field & 0x2000) > 0
    _label_later_fragments(frame)
    t_in, t_out = frame["t_in_ns"].to_numpy(), frame["t_out_ns"].to_numpy()
    frame["held_ns"] = _where(t_out - t_in, t_out >= 0)
    return frame[list(GROUND_TRUTH_COLUMNS)], meta


def _label_later_fragments(frame: pd.DataFrame) -> None:
    """Give every fragment of a datagram the ports and lab seq of its first fragment.

    A UDP or RAW message larger than the link MTU crosses as IP fragments, and
    only the first carries the transport header; the engine may drop any of them,
    and losing one loses the message. Fragments of one datagram share direction,
    protocol and IP id, and arrive together, after their first fragment.
    """
    fragment = (frame["frag_offset"] > 0) | frame["more_fragments"]
    if not fragment.any():
        return
    columns = ["src_port", "dst_port", "lab_seq"]
    keys = ["direction", "ip_proto", "ip_id"]
    parts = frame.loc[fragment, keys + columns]
    filled = parts.groupby(keys, observed=True, sort=False)[columns].ffill()
    later = fragment & (frame["frag_offset"] > 0)
    for column in columns:
        frame.loc[later, column] = filled.loc[later[fragment].to_numpy(), column]


def accounting(ground_truth: pd.DataFrame) -> pd.DataFrame:
    """Per direction: packets in and their fates; ``closes`` says in == out + drops.

    Duplicates are extra copies out, counted apart; a packet still held when the
    engine stopped is ``pending_at_stop`` and keeps the accounting open.
    """
    rows = []
    for direction, group in ground_truth.groupby("direction", observed=False):
        fates = group["fate"].value_counts()
        forwarded = int(fates.get("forwarded", 0))
        dropped_loss = int(fates.get("dropped-loss", 0))
        dropped_queue = int(fates.get("dropped-queue", 0))
        pending = int(group["pending_at_stop"].sum())
        sent = int(((group["fate"] == "forwarded") & (group["t_out_ns"] >= 0)).sum())
        rows.append(
            {
                "direction": direction,
                "packets_in": len(group),
                "forwarded": forwarded,
                "dropped_loss": dropped_loss,
                "dropped_queue": dropped_queue,
                "duplicated": int(group["duplicated"].sum()),
                "corrupted": int(group["corrupted"].sum()),
                "reordered": int(group["reordered"].sum()),
                "pending_at_stop": pending,
                "held_mean_ms": float(group["held_ns"].astype("Float64").mean() / 1e6)
                if group["held_ns"].notna().any()
                else float("nan"),
                "closes": len(group) == sent + dropped_loss + dropped_queue and pending == 0,
            }
        )
    return pd.DataFrame(rows)
