"""Join the engine's ground truth with the exchanges: what the link did to each protocol."""

from __future__ import annotations

import pandas as pd

from lab._protocols import IPPROTO_LAB_RAW, IPPROTO_TCP, IPPROTO_UDP

_PROTOCOL_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP, "raw": IPPROTO_LAB_RAW}
#: Protocols with one packet per message and no retransmission: a lost packet is a lost message.
DATAGRAM_PROTOCOLS = ("udp", "raw")


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
    port): their packets count together.
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
                }
            )
    return pd.DataFrame(rows)
