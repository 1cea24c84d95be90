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
    """Per protocol and direction: packets the engine saw and what it did to them."""
    rows = []
    for _, exchange in exchanges.iterrows():
        packets = packets_of_exchange(
            ground_truth, exchange["protocol"], int(exchange["server_port"])
        )
        for direction, group in packets.groupby("direction", observed=False):
            rows.append(
                {
                    "protocol": exchange["protocol"],
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


def datagram_losses_explained(
    messages: pd.DataFrame, ground_truth: pd.DataFrame, server_port: int, protocol: str = "udp"
) -> pd.DataFrame:
    """Every message of ``protocol`` (udp or raw) lost, with the engine decision behind it.

    A message is explained when the engine dropped its packet (loss or queue) or
    corrupted it: the receiver's checksum then discards it (the kernel's for UDP, the
    lab's own CRC for RAW, whose payload the kernel does not check).
    """
    if protocol not in DATAGRAM_PROTOCOLS:
        raise ValueError(f"{protocol!r} is not a datagram protocol {DATAGRAM_PROTOCOLS}")
    lost = messages.loc[(messages["protocol"] == protocol) & (messages["copies"] == 0), ["seq"]]
    packets = packets_of_exchange(ground_truth, protocol, server_port)
    to_server = packets.loc[
        (packets["direction"] == "client_to_server") & packets["lab_seq"].notna()
    ]
    fates = to_server.assign(
        cause=to_server["fate"].astype(str).where(to_server["fate"] != "forwarded", "corrupted")
    )
    fates = fates.loc[(fates["fate"] != "forwarded") | fates["corrupted"], ["lab_seq", "cause"]]
    fates = fates.drop_duplicates("lab_seq").astype({"lab_seq": "int64"})
    joined = lost.merge(fates, left_on="seq", right_on="lab_seq", how="left")
    joined["explained"] = joined["cause"].notna()
    return joined[["seq", "cause", "explained"]]


def udp_losses_explained(
    messages: pd.DataFrame, ground_truth: pd.DataFrame, server_port: int, protocol: str = "udp"
) -> pd.DataFrame:
    """:func:`datagram_losses_explained`, under the name it had when UDP was the only one."""
    return datagram_losses_explained(messages, ground_truth, server_port, protocol)
