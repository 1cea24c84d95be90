"""Two hosts, two clocks: a run's timestamps moved onto the client's clock.

Each end stamps with its own CLOCK_REALTIME. Between two real hosts the server's clock
is off the client's by the offset :mod:`lab.hosts.clock` measured before and after the
run (within its bound). The runner moves every server-side time of ``messages.csv``
onto the client's clock once, when the run ends; the server's pcap stays as captured,
and :func:`shift_server_capture` moves its times when it is read.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lab.hosts.clock import ClockModel, owd_available

__all__ = ["on_client_clock", "owd_figures", "shift_server_capture", "to_client_clock"]


def to_client_clock(server_times: pd.Series, clock: ClockModel) -> pd.Series:
    """Server-clock ns (nullable) as client-clock ns: minus the offset at that time.

    The model interpolates on the client's clock; the server's time stands in for it,
    which is off by offset x drift (nanoseconds for any offset under a second).
    """
    times = server_times.astype("Int64")
    known = times.notna().to_numpy()
    values = np.asarray(times.to_numpy(dtype=np.int64, na_value=0), dtype=np.int64)
    shifted = values - np.rint(clock.offsets_at(values)).astype(np.int64)
    return pd.Series(pd.arrays.IntegerArray(shifted, ~known), index=server_times.index)


def on_client_clock(messages: pd.DataFrame, clock: ClockModel, reverse: bool) -> pd.DataFrame:
    """One flow's messages with the server's times on the client's clock, delays redone.

    The server reads a forward flow's messages (``t_recv_ns``) and sends a reverse
    flow's (``t_send_ns``); echoes come back to the sender, on its own clock.
    """
    out = messages.copy()
    column = "t_send_ns" if reverse else "t_recv_ns"
    out[column] = to_client_clock(out[column], clock)
    out["owd_ns"] = out["t_recv_ns"].astype("Int64") - out["t_send_ns"].astype("Int64")
    return out


def shift_server_capture(packets: pd.DataFrame, clock: ClockModel) -> pd.DataFrame:
    """A server-side capture's packet table with ``ts_ns`` on the client's clock."""
    out = packets.copy()
    ts = out["ts_ns"].to_numpy(dtype=np.int64)
    out["ts_ns"] = ts - np.rint(clock.offsets_at(ts)).astype(np.int64)
    return out


def owd_figures(summary: pd.DataFrame, messages: pd.DataFrame, clock: ClockModel) -> None:
    """``owd_bound_ms`` beside the one-way delays, and OWD blanked where the bound is too wide.

    A corrected one-way delay is good to ± the clocks' bound; where the bound is not
    under the median delay (:func:`lab.hosts.clock.owd_available`) a reader could not
    tell the path from the clocks, so the OWD figures are left empty and
    ``owd_available`` says why; round trips (echo, TCP RTT) need one clock and stay.
    """
    bound_ns = clock.widest_bound_ns
    summary["owd_bound_ms"] = bound_ns / 1e6
    available = []
    for protocol in summary["protocol"]:
        owd = messages.loc[messages["protocol"] == protocol, "owd_ns"].astype("Float64")
        available.append(owd_available(owd.dropna().tolist(), bound_ns))
    summary["owd_available"] = available
    owd_columns = [c for c in summary.columns if c.startswith("owd_") and c.endswith("_ms")]
    owd_columns.remove("owd_bound_ms")
    summary.loc[~summary["owd_available"], owd_columns] = np.nan
