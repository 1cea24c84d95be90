"""Figures of the wire-analysis tables (tcp_segments.csv, hol.csv): TCP on a timeline."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.report._data import as_bool, as_float
from lab.report._html import esc
from lab.report._run_figures import thin, thinning_note

_NS_PER_MS = 1e6


#: flag -> (colour, marker, size, judged at the sender's capture?) as the wire analysis
#: sets them: retransmissions and dup ACKs where they are sent, the rest where received.
_EVENT_STYLE = {
    "retransmission": ("#dc2626", "circle-open", 9, True),
    "fast_retransmission": ("#f59e0b", "x-thin", 9, True),
    "spurious": ("#9333ea", "diamond-open", 10, False),
    "out_of_order": ("#0d9488", "triangle-up-open", 9, False),
    "dup_ack": ("#64748b", "line-ns-open", 10, True),
}


def _direction_label(direction: object) -> str:
    return str(direction).replace("_to_", "→")


def segment_frame(segments: pd.DataFrame, t0_ns: float | None) -> pd.DataFrame:
    """tcp_segments.csv for plotting: ms since t0, relative seq, bool flags, capture side.

    Each segment appears once per capture (``side``); ``at_sender`` marks the copy taken
    on the host that sent it (client for client→server). Without a ``side`` column
    every row counts as both.
    """
    ts = as_float(segments["ts_ns"])
    origin = t0_ns if t0_ns is not None and math.isfinite(t0_ns) else float(ts.min())
    frame = pd.DataFrame({"ms": ((ts - origin) / _NS_PER_MS).to_numpy()})
    frame["direction"] = (
        segments["direction"].astype(str).to_numpy() if "direction" in segments else "?"
    )
    frame["len"] = as_float(segments["len"]).fillna(0).to_numpy() if "len" in segments else 0.0
    frame["seq"] = as_float(segments["seq"]).to_numpy() if "seq" in segments else 0.0
    for flag in _EVENT_STYLE:
        frame[flag] = as_bool(segments[flag]).to_numpy() if flag in segments else False
    if "side" in segments:
        side = segments["side"].astype(str).to_numpy()
        source = frame["direction"].str.split("_to_").str[0].to_numpy()
        frame["at_sender"] = side == source
        frame["at_receiver"] = ~frame["at_sender"]
    else:
        frame["at_sender"] = True
        frame["at_receiver"] = True
    frame["rel_seq"] = np.nan
    for direction in pd.unique(frame["direction"]):
        data = (frame["direction"] == direction) & (frame["len"] > 0)
        if data.any():
            first = frame.loc[data, "seq"].min()
            frame.loc[data, "rel_seq"] = np.mod(frame.loc[data, "seq"] - first, 2.0**32)
    return frame


def _flagged(frame: pd.DataFrame, flag: str) -> pd.Series:
    """Rows carrying ``flag`` on the capture where the analysis judges it."""
    at_sender = _EVENT_STYLE[flag][3]
    return frame[flag] & frame["at_sender" if at_sender else "at_receiver"]


def tcp_segments_figure(segments: pd.DataFrame, t0_ns: float | None) -> tuple[go.Figure, str]:
    """Data segments as sent (relative seq) over time, events marked; an event strip below."""
    frame = segment_frame(segments, t0_ns)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.75, 0.25], vertical_spacing=0.06
    )
    flags = {flag: _flagged(frame, flag) for flag in _EVENT_STYLE}
    data_rows = frame.loc[frame["len"] > 0]
    marked = pd.concat([flags[f].loc[data_rows.index] for f in flags], axis=1).any(axis=1)
    part = thin(data_rows, keep=marked)
    shown = part.frame
    shades = ("#94a3b8", "#cbd5e1", "#64748b")
    sent = shown.loc[shown["at_sender"]]
    for index, direction in enumerate(pd.unique(sent["direction"])):
        rows = sent.loc[sent["direction"] == direction]
        fig.add_trace(
            go.Scatter(
                x=rows["ms"].round(3),
                y=rows["rel_seq"],
                mode="markers",
                marker={"color": shades[index % len(shades)], "size": 3.5},
                name=f"data {esc(_direction_label(direction))}, as sent",
                hovertemplate="rel. seq %{y}<br>%{x:.3f} ms<extra></extra>",
            ),
            row=1,
            col=1,
        )
    for flag, (color, symbol, size, _) in _EVENT_STYLE.items():
        label = flag.replace("_", " ")
        line = {"width": 2, "color": color}
        events = frame.loc[flags[flag]]
        if flag != "dup_ack":
            hits = shown.loc[flags[flag].loc[shown.index]]
            fig.add_trace(
                go.Scatter(
                    x=hits["ms"].round(3),
                    y=hits["rel_seq"],
                    mode="markers",
                    marker={"color": color, "size": size, "symbol": symbol, "line": line},
                    name=f"{label} ({len(events)})",
                    legendgroup=flag,
                    hovertemplate=f"{label}<br>rel. seq %{{y}}<br>%{{x:.3f}} ms<extra></extra>",
                ),
                row=1,
                col=1,
            )
        fig.add_trace(
            go.Scatter(
                x=events["ms"].round(3),
                y=[label] * len(events),
                mode="markers",
                marker={"color": color, "size": 10, "symbol": "line-ns-open", "line": line},
                name=f"{label} ({len(events)})",
                legendgroup=flag,
                showlegend=flag == "dup_ack",
                hovertemplate=f"{label} at %{{x:.3f}} ms<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="relative seq (bytes)", row=1, col=1)
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=[f.replace("_", " ") for f in _EVENT_STYLE],
        row=2,
        col=1,
    )
    fig.update_xaxes(title_text="ms since TCP's first send", row=2, col=1)
    return fig, thinning_note([part], "data segments", "every marked one")


def tcp_event_counts(segments: pd.DataFrame) -> pd.DataFrame:
    """Per direction: segments and data segments as sent, and each flag where judged."""
    frame = segment_frame(segments, None)
    rows = []
    for direction in pd.unique(frame["direction"]):
        mine = frame["direction"] == direction
        sent = mine & frame["at_sender"]
        row: dict[str, object] = {
            "direction": _direction_label(direction),
            "segments sent": int(sent.sum()),
            "with data": int((sent & (frame["len"] > 0)).sum()),
        }
        for flag in _EVENT_STYLE:
            row[flag.replace("_", " ")] = int((_flagged(frame, flag) & mine).sum())
        rows.append(row)
    return pd.DataFrame(rows)


def hol_figure(hol: pd.DataFrame, tcp: pd.DataFrame | None) -> tuple[go.Figure, pd.DataFrame]:
    """HOL wait per TCP message against its delivery time (or its seq without times).

    ``blocked`` (when hol.csv has it) is the wire analysis's verdict; otherwise any
    wait above zero counts.
    """
    waits = pd.DataFrame(
        {"seq": as_float(hol["seq"]), "wait_ms": as_float(hol["hol_wait_ns"]) / _NS_PER_MS}
    )
    x_column, x_title = "seq", "message seq"
    if tcp is not None and "t0_ns" in tcp.attrs and "t_recv_ns" in hol:
        waits["recv_ms"] = (as_float(hol["t_recv_ns"]) - float(tcp.attrs["t0_ns"])) / _NS_PER_MS
        x_column, x_title = "recv_ms", "delivered at (ms since TCP's first send)"
    elif tcp is not None:
        waits = waits.merge(tcp[["seq", "recv_ms"]], on="seq", how="left")
        x_column, x_title = "recv_ms", "delivered at (ms since TCP's first send)"
    held = (
        pd.Series(as_bool(hol["blocked"]).to_numpy(), index=waits.index)
        if "blocked" in hol
        else waits["wait_ms"] > 0
    )
    fig = go.Figure()
    for mask, name, color, size in (
        (~held, "not blocked", "#cbd5e1", 3),
        (held, "blocked behind a gap", "#7c3aed", 5),
    ):
        rows = thin(waits.loc[mask]).frame
        fig.add_trace(
            go.Scatter(
                x=rows[x_column].round(3),
                y=rows["wait_ms"].round(4),
                mode="markers",
                marker={"color": color, "size": size},
                name=f"{name} ({int(mask.sum())})",
                customdata=rows["seq"],
                hovertemplate="seq %{customdata}<br>waited %{y:.3f} ms<extra></extra>",
            )
        )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text="head-of-line wait (ms)", rangemode="tozero")
    nonzero = waits.loc[held, "wait_ms"]
    stats = pd.DataFrame(
        [
            {
                "messages": len(waits),
                "blocked": int(held.sum()),
                "wait p50 ms (blocked)": nonzero.median() if len(nonzero) else None,
                "wait p99 ms (blocked)": nonzero.quantile(0.99) if len(nonzero) else None,
                "wait max ms": nonzero.max() if len(nonzero) else None,
                "total wait s": float(nonzero.sum()) / 1000,
            }
        ]
    )
    return fig, stats
