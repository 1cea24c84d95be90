"""Join the engine's ground truth with the exchanges: what the link did to each protocol."""

from __future__ import annotations

import pandas as pd

from lab.impairment.groundtruth import IPPROTO_TCP, IPPROTO_UDP

_PROTOCOL_NUMBERS = {"tcp": IPPROTO_TCP, "udp": IPPROTO_UDP}


def packets_of_exchange(
    ground_truth: pd.DataFrame, protocol: str, server_port: int
) -> pd.DataFrame:
    """The packets of one exchange: its IP protocol and the server's port, both directions."""
    number = _PROTOCOL_NUMBERS[protocol]
    same_proto = ground_truth["ip_proto"] == number
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


def udp_losses_explained(
    messages: pd.DataFrame, ground_truth: pd.DataFrame, server_port: int
) -> pd.DataFrame:
    """Every UDP message lost, with the engine decision that explains it (if any).

    A message is explained when the engine dropped its datagram (loss or queue) or
    corrupted it (the receiver's checksum then discards it).
    """
    lost = messages.loc[(messages["protocol"] == "udp") & (messages["copies"] == 0), ["seq"]]
    udp = packets_of_exchange(ground_truth, "udp", server_port)
    to_server = udp.loc[(udp["direction"] == "client_to_server") & udp["lab_seq"].notna()]
    fates = to_server.assign(
        cause=to_server["fate"].astype(str).where(to_server["fate"] != "forwarded", "corrupted")
    )
    fates = fates.loc[(fates["fate"] != "forwarded") | fates["corrupted"], ["lab_seq", "cause"]]
    fates = fates.drop_duplicates("lab_seq").astype({"lab_seq": "int64"})
    joined = lost.merge(fates, left_on="seq", right_on="lab_seq", how="left")
    joined["explained"] = joined["cause"].notna()
    return joined[["seq", "cause", "explained"]]
