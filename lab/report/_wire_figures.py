"""Figures of the wire-analysis tables (tcp_segments.csv, hol.csv): TCP on a timeline.

The time-sequence graph is Stevens' and tcptrace's: sequence number against time at the
data's sender, each segment a bar over the bytes it carried, with the ACKs, the receive
window and the SACK blocks that came back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.report._data import as_bool, as_float
from lab.report._html import esc
from lab.report._run_figures import Thinned, thin, thinning_note

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


def _source(direction: object) -> str:
    """The end that sends a direction's segments: "client" for client_to_server."""
    return str(direction).split("_to_")[0]


def segment_frame(segments: pd.DataFrame, t0_ns: float | None) -> pd.DataFrame:
    """tcp_segments.csv for plotting: time since t0 (``ms``, ``s``), bool flags, capture side.

    Each segment appears once per capture (``side``); ``at_sender`` marks the copy taken
    on the host that sent it (client for client→server). Without a ``side`` column
    every row counts as both. ``seq``, ``ack`` and ``window_bytes`` are the table's
    (relative to the ISN: the first data byte is 1; ACK + window is the right edge of
    the receive window); ``flow`` is the connection (``client_port``).
    """
    ts = as_float(segments["ts_ns"])
    origin = t0_ns if t0_ns is not None and math.isfinite(t0_ns) else float(ts.min())
    frame = pd.DataFrame({"ms": ((ts - origin) / _NS_PER_MS).to_numpy()})
    frame["s"] = frame["ms"] / 1000
    frame["direction"] = (
        segments["direction"].astype(str).to_numpy() if "direction" in segments else "?"
    )
    frame["flow"] = (
        segments["client_port"].astype(str).to_numpy() if "client_port" in segments else ""
    )
    frame["len"] = as_float(segments["len"]).fillna(0).to_numpy() if "len" in segments else 0.0
    for column in ("seq", "ack", "window_bytes"):
        frame[column] = as_float(segments[column]).to_numpy() if column in segments else np.nan
    frame["sack"] = (
        segments["sack"].astype("string").fillna("").to_numpy() if "sack" in segments else ""
    )
    for flag in _EVENT_STYLE:
        frame[flag] = as_bool(segments[flag]).to_numpy() if flag in segments else False
    if "side" in segments:
        frame["side"] = segments["side"].astype(str).to_numpy()
        frame["at_sender"] = frame["side"] == frame["direction"].map(_source)
        frame["at_receiver"] = ~frame["at_sender"]
    else:
        frame["side"] = ""
        frame["at_sender"] = True
        frame["at_receiver"] = True
    return frame


def _flagged(frame: pd.DataFrame, flag: str) -> pd.Series:
    """Rows carrying ``flag`` on the capture where the analysis judges it."""
    at_sender = _EVENT_STYLE[flag][3]
    return frame[flag] & frame["at_sender" if at_sender else "at_receiver"]


def _bars(rows: pd.DataFrame, low: str, high: str) -> tuple[list[float | None], list[float | None]]:
    """x, y of vertical bars from ``low`` to ``high`` at each row's time, None between."""
    n = len(rows)
    x = np.full(3 * n, np.nan)
    y = np.full(3 * n, np.nan)
    x[0::3] = x[1::3] = rows["s"].round(6).to_numpy()
    y[0::3] = rows[low].to_numpy(dtype=float)
    y[1::3] = rows[high].to_numpy(dtype=float)
    return [None if np.isnan(v) else float(v) for v in x], [
        None if np.isnan(v) else float(v) for v in y
    ]


def sack_blocks(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per SACK block of ``rows`` ("left-right" pairs in ``sack``): s, left, right."""
    text = rows["sack"].astype(str)
    mine = rows.loc[text.str.len() > 0]
    if mine.empty:
        return pd.DataFrame({"s": [], "left": [], "right": []})
    blocks = mine["sack"].astype(str).str.split().explode()
    edges = blocks.str.split("-", n=1, expand=True)
    out = pd.DataFrame(
        {
            "s": mine.loc[blocks.index, "s"].to_numpy(),
            "left": pd.to_numeric(edges[0], errors="coerce").to_numpy(),
            "right": pd.to_numeric(edges[1], errors="coerce").to_numpy(),
        }
    )
    return out.dropna(ignore_index=True)


def _changes(acks: pd.DataFrame) -> pd.DataFrame:
    """The ACKs that move the ACK or the window line (the step lines look the same)."""
    keys = acks[["ack", "window_bytes"]].fillna(-1)
    moved = (keys != keys.shift()).any(axis=1)
    if len(moved):
        moved.iloc[-1] = True  # the line runs to the last ACK
    return acks.loc[moved]


@dataclass(frozen=True)
class TimeSequence:
    """The time-sequence graph of one TCP connection, with what its caption needs."""

    flow: str
    #: "flow 1 (client port 49200)", or "client port 49200" in a table without flows.
    title: str
    figure: go.Figure
    height: int
    thinned: str
    #: Data segments drawn (False: the connection carried no data at its sender's capture).
    has_data: bool
    #: A receive-window line / SACK blocks were drawn, and whether the table had the column.
    has_window: bool
    has_sack: bool
    window_column: bool
    sack_column: bool


def time_sequence_figures(segments: pd.DataFrame, t0_ns: float | None) -> list[TimeSequence]:
    """One time-sequence (Stevens / tcptrace) graph per TCP connection in tcp_segments.csv."""
    frame = segment_frame(segments, t0_ns)
    columns = ("window_bytes" in segments, "sack" in segments)
    titles: dict[str, str] = {}
    for port in pd.unique(frame["flow"]):
        title = f"client port {port}" if port else "the TCP connection"
        if "flow" in segments:
            numbers = segments.loc[frame["flow"].to_numpy() == port, "flow"].dropna()
            title = f"flow {numbers.iloc[0]} ({title})" if len(numbers) else title
        titles[str(port)] = title
    return [
        _time_sequence(frame.loc[frame["flow"] == flow], flow, titles[str(flow)], columns)
        for flow in pd.unique(frame["flow"])
    ]


def _time_sequence(
    frame: pd.DataFrame, flow: str, title: str, columns: tuple[bool, bool]
) -> TimeSequence:
    """A panel per direction that carries data, drawn at its sender's capture (the data
    as sent, the peer's ACKs as they came back), above a strip of the connection's events
    (left out when there was none)."""
    directions = [
        d
        for d in pd.unique(frame["direction"])
        if (frame["at_sender"] & (frame["direction"] == d) & (frame["len"] > 0)).any()
    ]
    panels = len(directions)
    flags = {flag: _flagged(frame, flag) for flag in _EVENT_STYLE}
    strip = any(bool(flagged.any()) for flagged in flags.values())
    rows = max(panels + strip, 1)
    heights = [1.0] * rows if not strip else [0.8 / max(panels, 1)] * panels + [0.2]
    fig = make_subplots(
        rows=rows,
        cols=1,
        shared_xaxes=True,
        row_heights=heights[-rows:],
        vertical_spacing=0.06 / max(panels, 1),
    )
    parts: list[Thinned] = []
    has_window = has_sack = False
    for row, direction in enumerate(directions, start=1):
        source = _source(direction)
        capture = frame.loc[frame["side"] == source] if (frame["side"] != "").any() else frame
        data = capture.loc[(capture["direction"] == direction) & (capture["len"] > 0)]
        data = data.assign(end=data["seq"] + data["len"])
        marked = data["retransmission"] | data["fast_retransmission"] | data["spurious"]
        part = thin(data, keep=marked)
        parts.append(part)
        label = esc(_direction_label(direction))
        _data_traces(fig, part.frame, label, row)
        acks = capture.loc[(capture["direction"] != direction) & capture["ack"].notna()]
        drawn = _ack_traces(fig, acks, label, source, row)
        has_window |= drawn[0]
        has_sack |= drawn[1]
        fig.update_yaxes(
            title_text=f"relative seq, {label} (bytes)", rangemode="tozero", row=row, col=1
        )
    if strip:
        _event_strip(fig, frame, flags, rows)
    fig.update_xaxes(title_text="s since TCP's first send", row=rows, col=1)
    note = thinning_note(parts, "data segments", "every retransmitted or spurious one")
    height = 100 + 420 * max(panels, 1) + (80 if strip else 0)
    return TimeSequence(
        flow, title, fig, height, note, panels > 0, has_window, has_sack, columns[0], columns[1]
    )


def _data_traces(fig: go.Figure, data: pd.DataFrame, label: str, row: int) -> None:
    """Data segments as vertical bars (first byte to one past the last), their tops
    marked; retransmissions and spurious copies drawn again, in their colours."""
    fast = data["fast_retransmission"]
    slow = data["retransmission"] & ~fast
    kinds: list[tuple[str, pd.DataFrame, str, str, int, str, bool]] = [
        ("data", data.loc[~(slow | fast)], "#64748b", "line-ew-open", 5, f"data {label}", True)
    ]
    for flag, rows in (("retransmission", data.loc[slow]), ("fast_retransmission", data.loc[fast])):
        color, symbol, size, _ = _EVENT_STYLE[flag]
        name = f"{flag.replace('_', ' ')} {label}"
        kinds.append((flag, rows, color, symbol, size, name, False))
    for group, rows, color, symbol, size, name, legend in kinds:
        x, y = _bars(rows, "seq", "end")
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines",
                line={"color": color, "width": 1.5 if group == "data" else 2.5},
                name=name,
                legendgroup=f"{group}{label}" if group == "data" else group,
                showlegend=False,
                hoverinfo="skip",
            ),
            row=row,
            col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=rows["s"].round(6),
                y=rows["end"],
                customdata=rows["seq"],
                mode="markers",
                marker={
                    "color": color,
                    "size": size,
                    "symbol": symbol,
                    "line": {"width": 1.5, "color": color},
                },
                name=name,
                legendgroup=f"{group}{label}" if group == "data" else group,
                showlegend=legend,
                hovertemplate=f"{name}<br>bytes %{{customdata}}-%{{y}}<br>"
                "%{x:.6f} s<extra></extra>",
            ),
            row=row,
            col=1,
        )
    spurious = data.loc[data["spurious"]]
    if len(spurious):
        color, symbol, size, _ = _EVENT_STYLE["spurious"]
        fig.add_trace(
            go.Scatter(
                x=spurious["s"].round(6),
                y=spurious["end"],
                mode="markers",
                marker={"color": color, "size": size, "symbol": symbol, "line": {"width": 2}},
                name=f"spurious {label}",
                legendgroup="spurious",
                showlegend=False,
                hovertemplate="spurious (the receiver had it)<br>up to %{y}<br>"
                "%{x:.6f} s<extra></extra>",
            ),
            row=row,
            col=1,
        )


def _ack_traces(
    fig: go.Figure, acks: pd.DataFrame, label: str, where: str, row: int
) -> tuple[bool, bool]:
    """The ACK line, the receive window's right edge and the SACK blocks, as the data's
    sender received them; returns whether a window line and SACK blocks were drawn."""
    if acks.empty:
        return False, False
    steps = thin(_changes(acks)).frame
    fig.add_trace(
        go.Scatter(
            x=steps["s"].round(6),
            y=steps["ack"],
            mode="lines",
            line={"color": "#16a34a", "width": 2, "shape": "hv"},
            name=f"ACK, {label} data",
            hovertemplate=f"ACK %{{y}}<br>at the {esc(where)}, %{{x:.6f}} s<extra></extra>",
        ),
        row=row,
        col=1,
    )
    windowed = steps.loc[steps["window_bytes"].notna()]
    has_window = not windowed.empty
    if has_window:
        fig.add_trace(
            go.Scatter(
                x=windowed["s"].round(6),
                y=windowed["ack"] + windowed["window_bytes"],
                customdata=windowed["window_bytes"],
                mode="lines",
                line={"color": "#a3a3a3", "width": 1.5, "shape": "hv"},
                name=f"receive window, {label} data (ACK + window)",
                hovertemplate="window edge %{y}<br>(%{customdata} bytes)<br>"
                "%{x:.6f} s<extra></extra>",
            ),
            row=row,
            col=1,
        )
    blocks = sack_blocks(acks)
    if len(blocks):
        shown = thin(blocks).frame
        x, y = _bars(shown, "left", "right")
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                line={"color": "#9333ea", "width": 3},
                marker={"color": "#9333ea", "size": 3},
                name=f"SACK blocks, {label} data ({len(blocks)})",
                hovertemplate="SACKed %{y}<br>%{x:.6f} s<extra></extra>",
            ),
            row=row,
            col=1,
        )
    return has_window, len(blocks) > 0


def _event_strip(
    fig: go.Figure, frame: pd.DataFrame, flags: dict[str, pd.Series], row: int
) -> None:
    """When each kind of event happened, at the capture where the analysis judges it."""
    for flag, (color, _, _, _) in _EVENT_STYLE.items():
        label = flag.replace("_", " ")
        events = frame.loc[flags[flag]]
        fig.add_trace(
            go.Scatter(
                x=events["s"].round(6),
                y=[label] * len(events),
                mode="markers",
                marker={
                    "color": color,
                    "size": 10,
                    "symbol": "line-ns-open",
                    "line": {"width": 2, "color": color},
                },
                name=f"{label} ({len(events)})",
                legendgroup=flag,
                hovertemplate=f"{label} at %{{x:.6f}} s<extra></extra>",
            ),
            row=row,
            col=1,
        )
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=[f.replace("_", " ") for f in _EVENT_STYLE],
        row=row,
        col=1,
    )


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
