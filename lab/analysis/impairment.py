"""Join the engine's ground truth with the exchanges: what the link did to each protocol."""

from __future__ import annotations

import pandas as pd

from lab import metrics
from lab._protocols import IPPROTO_LAB_RAW, IPPROTO_TCP, IPPROTO_UDP

_PROTOCOL_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "raw": IPPROTO_LAB_RAW}
#: Protocols with one packet per message and no retransmission: a lost packet is a lost message.
DATAGRAM_PROTOCOLS = ("udp", "raw")
_NS_PER_MS = 1e6


def _lateness_ns(packets: pd.DataFrame) -> pd.Series:
    """Forwarded packets: end of the engine's write minus the model's scheduled time."""
    sent = packets.loc[(packets["fate"] == "forwarded") & (packets["t_out_ns"] >= 0)]
    return (sent["t_out_ns"] - sent["scheduled_ns"]).astype("float64")


def packets_of_exchange(
    ground_truth: pd.DataFrame, protocol: str, server_port: int
) -> pd.DataFrame:
    """The packets of one exchange, both directions: its IP protocol and the server's port.

    RAW has no ports (``server_port`` is ignored): exchanges run one after the other, so
    every protocol-253 packet on the link belongs to the RAW exchange.
    """
    number = _PROTOCOL_NUMBERS[protocol]
    same_proto = ground_truth["ip_proto"] == number
    if protocol == "raw":
        return ground_truth.loc[same_proto]
    port = (ground_truth["dst_port"] == server_port) | (ground_truth["src_port"] == server_port)
    return ground_truth.loc[same_proto & port.fillna(False)]


def impairment_by_protocol(ground_truth: pd.DataFrame, exchanges: pd.DataFrame) -> pd.DataFrame:
    """Per protocol and direction: packets the engine saw and what it did to them.

    A protocol with parallel flows has one exchanges row per flow (each its own server
    port): their packets count together. ``late_p50_ms`` / ``late_p99_ms``: how long
    after its scheduled time each forwarded packet's write ended (``t_out_ns -
    scheduled_ns``, RFC 2330 percentiles): the host's share of every delay the receiver
    measured, which the scenario did not ask for (tens of microseconds on a quiet host).
    """
    rows = []
    for protocol, flows in exchanges.groupby("protocol", sort=False):
        parts = [
            packets_of_exchange(ground_truth, str(protocol), int(port))
            for port in flows["server_port"]
        ]
        packets = pd.concat(parts)
        packets = packets.loc[~packets.index.duplicated()]
        for direction, group in packets.groupby("direction", observed=False):
            late = _lateness_ns(group)
            rows.append(
                {
                    "protocol": protocol,
                    "direction": direction,
                    "packets": len(group),
                    "dropped_loss": int((group["fate"] == "dropped-loss").sum()),
                    "dropped_queue": int((group["fate"] == "dropped-queue").sum()),
                    "duplicated": int(group["duplicated"].sum()),
                    "corrupted": int(group["corrupted"].sum()),
                    "reordered": int(group["reordered"].sum()),
                    "late_p50_ms": metrics.delay_median(late) / _NS_PER_MS,
                    "late_p99_ms": metrics.delay_percentile(late, 99) / _NS_PER_MS,
                }
            )
    return pd.DataFrame(rows)
