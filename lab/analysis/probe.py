"""Latency under load: the probe's round trips before, during and after the load.

A probe (:mod:`lab.exchanges.probe`) sends a small UDP and TCP request a few times a
second around each protocol's bulk exchange. Each probe is put in a phase by when it
was sent: ``idle`` before the load's first send, ``load`` from then until the load's
last delivery, ``after`` once it is over. The difference between the idle and the
loaded round trip is the queueing delay the load added (bufferbloat); for a full
bottleneck queue it approaches the queue's drain time, queue_limit x packet size / rate.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["PHASES", "PROBE_SUMMARY_COLUMNS", "probe_phases", "probe_summary"]

PHASES = ("idle", "load", "after")

#: Summary columns per load protocol, from the UDP probe (no retransmission or
#: head-of-line wait of its own to add to the queue's delay).
PROBE_SUMMARY_COLUMNS = (
    "probe_rtt_idle_ms",
    "probe_rtt_load_ms",
    "probe_rtt_load_p99_ms",
    "probe_rtt_after_ms",
    "probe_lost",
)


def probe_phases(probes: pd.DataFrame, messages: pd.DataFrame) -> pd.DataFrame:
    """``probes`` with a ``phase`` column, from the load's own messages."""
    frame = probes.copy()
    phase = pd.Series("after", index=frame.index, dtype="string")
    for load, rows in frame.groupby("load_protocol"):
        sent = messages.loc[messages["protocol"] == load]
        if sent.empty:
            continue
        start = int(sent["t_send_ns"].min())
        received = sent["t_recv_ns"].dropna()
        end = int(received.max()) if len(received) else int(sent["t_send_ns"].max())
        t = rows["t_send_ns"].to_numpy(dtype=np.int64)
        phase.loc[rows.index] = np.where(t < start, "idle", np.where(t <= end, "load", "after"))
    frame["phase"] = phase
    return frame


def probe_summary(phased: pd.DataFrame) -> pd.DataFrame:
    """Per load protocol: the UDP probe's median RTT idle, under load (and p99), after."""
    rows = []
    udp = phased.loc[phased["probe"] == "udp"]
    for load, probes in udp.groupby("load_protocol", sort=False):
        rtt_ms = probes["rtt_ns"].astype("Float64") / 1e6
        by_phase = {p: rtt_ms[probes["phase"] == p].dropna() for p in PHASES}
        rows.append(
            {
                "protocol": load,
                "probe_rtt_idle_ms": _quantile(by_phase["idle"], 0.5),
                "probe_rtt_load_ms": _quantile(by_phase["load"], 0.5),
                "probe_rtt_load_p99_ms": _quantile(by_phase["load"], 0.99),
                "probe_rtt_after_ms": _quantile(by_phase["after"], 0.5),
                "probe_lost": int(probes["rtt_ns"].isna().sum()),
            }
        )
    return pd.DataFrame(rows, columns=["protocol", *PROBE_SUMMARY_COLUMNS])


def _quantile(values: pd.Series, q: float) -> float:
    return float(values.quantile(q)) if len(values) else float("nan")
