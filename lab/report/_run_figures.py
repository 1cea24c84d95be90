"""Plotly figures of one run. Display only: sorting, binning and thinning, no new metrics."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.report._data import as_float
from lab.report._html import esc, protocol_color

#: Above this many points per protocol, per-message scatter plots are thinned.
MAX_POINTS = 20_000
#: Points kept on a CDF curve (evenly spaced ranks; the curve looks the same).
CDF_POINTS = 2_000
LOST_COLOR = "#dc2626"
REORDERED_COLOR = "#111827"
_NS_PER_MS = 1e6


@dataclass(frozen=True)
class Thinned:
    """A frame cut down for plotting, and the stride used (1: every row kept)."""

    frame: pd.DataFrame
    step: int
    total: int


def thin(frame: pd.DataFrame, keep: pd.Series | None = None, limit: int | None = None) -> Thinned:
    """Every k-th row above ``limit`` (default MAX_POINTS) rows, plus every row in ``keep``."""
    limit = MAX_POINTS if limit is None else limit
    total = len(frame)
    if total <= limit:
        return Thinned(frame, 1, total)
    step = math.ceil(total / limit)
    mask = np.arange(total) % step == 0
    if keep is not None:
        mask |= keep.to_numpy(dtype=bool)
    return Thinned(frame.loc[mask], step, total)


def thinning_note(
    parts: list[Thinned], what: str, kept: str = "every lost or out-of-order one"
) -> str:
    """Caption sentence saying a plot was thinned, or '' when every point is shown."""
    steps = [p for p in parts if p.step > 1]
    if not steps:
        return ""
    shown = ", ".join(f"one in {p.step}: {len(p.frame):,} of {p.total:,}" for p in steps)
    return (
        f" Thinned for display (more than {MAX_POINTS:,} {what} per protocol): "
        f"{shown} are drawn, including {kept}."
    )


def prepare_messages(messages: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per protocol: times in ms since the protocol's first send, lost and reordered flags.

    "Out of order" here only colours points: an arrival with a lower seq than one that
    arrived before it (the summary's RFC 4737 count is the reference figure).
    """
    prepared: dict[str, pd.DataFrame] = {}
    if "protocol" not in messages or "seq" not in messages or "t_send_ns" not in messages:
        return prepared
    for protocol in pd.unique(messages["protocol"].dropna()):
        rows = messages.loc[messages["protocol"] == protocol]
        send = as_float(rows["t_send_ns"])
        recv = as_float(rows["t_recv_ns"]) if "t_recv_ns" in rows else send * np.nan
        t0 = float(send.min())
        frame = pd.DataFrame(
            {
                "seq": as_float(rows["seq"]).to_numpy(),
                "send_ms": ((send - t0) / _NS_PER_MS).to_numpy(),
                "recv_ms": ((recv - t0) / _NS_PER_MS).to_numpy(),
            }
        )
        frame["owd_ms"] = (
            as_float(rows["owd_ns"]).to_numpy() / _NS_PER_MS
            if "owd_ns" in rows
            else frame["recv_ms"] - frame["send_ms"]
        )
        frame["rtt_ms"] = (
            as_float(rows["rtt_ns"]).to_numpy() / _NS_PER_MS if "rtt_ns" in rows else np.nan
        )
        frame["lost"] = frame["recv_ms"].isna()
        order = (
            as_float(rows["arrival_index"]).to_numpy()
            if "arrival_index" in rows
            else frame["recv_ms"].to_numpy()
        )
        frame["order"] = order
        arrived = frame.loc[~frame["lost"]].sort_values("order", kind="stable")
        highest_before = arrived["seq"].cummax().shift(1)
        frame["reordered"] = False
        frame.loc[arrived.index, "reordered"] = (arrived["seq"] < highest_before).to_numpy()
        frame.attrs["t0_ns"] = t0
        prepared[str(protocol)] = frame
    return prepared


def _legend_name(protocol: str) -> str:
    return esc(protocol.upper())


def cdf_figure(prepared: dict[str, pd.DataFrame], column: str, axis_title: str) -> go.Figure | None:
    """Empirical CDF over messages *sent*: a curve ends at the delivered fraction."""
    fig = go.Figure()
    for index, (protocol, frame) in enumerate(prepared.items()):
        values = np.sort(frame[column].dropna().to_numpy(dtype=float))
        if len(values) == 0 or len(frame) == 0:
            continue
        ranks = np.arange(1, len(values) + 1) / len(frame)
        if len(values) > CDF_POINTS:
            pick = np.unique(np.linspace(0, len(values) - 1, CDF_POINTS).round().astype(int))
            values, ranks = values[pick], ranks[pick]
        fig.add_trace(
            go.Scatter(
                x=np.round(values, 4),
                y=np.round(ranks, 5),
                mode="lines",
                line={"color": protocol_color(protocol, index), "width": 2.2, "shape": "hv"},
                name=_legend_name(protocol),
                hovertemplate="%{x:.3f} ms: %{y:.2%} of sent<extra>%{fullData.name}</extra>",
            )
        )
    if not fig.data:
        return None
    fig.update_xaxes(title_text=axis_title)
    fig.update_yaxes(title_text="fraction of messages sent", range=[0, 1.03], tickformat=".0%")
    fig.update_layout(
        updatemenus=[
            {
                "type": "buttons",
                "direction": "left",
                "x": 0.99,
                "xanchor": "right",
                "y": 0.04,
                "yanchor": "bottom",
                "showactive": True,
                "buttons": [
                    {"label": "linear", "method": "relayout", "args": [{"xaxis.type": "linear"}]},
                    {"label": "log", "method": "relayout", "args": [{"xaxis.type": "log"}]},
                ],
            }
        ]
    )
    return fig


def sequence_figure(prepared: dict[str, pd.DataFrame]) -> tuple[go.Figure, str]:
    """Seq vs arrival time per protocol, lost messages at their send time."""
    protocols = list(prepared)
    fig = make_subplots(
        rows=1,
        cols=len(protocols),
        subplot_titles=[_legend_name(p) for p in protocols],
        horizontal_spacing=0.06,
    )
    parts: list[Thinned] = []
    in_legend: set[str] = set()

    def legend_once(group: str, points: int) -> bool:
        """Show a legend entry once, on the first subplot that has such points."""
        if points == 0 or group in in_legend:
            return False
        in_legend.add(group)
        return True

    for index, protocol in enumerate(protocols):
        frame = prepared[protocol]
        col = index + 1
        sent = thin(frame, limit=CDF_POINTS)
        fig.add_trace(
            go.Scatter(
                x=sent.frame["send_ms"].round(3),
                y=sent.frame["seq"],
                mode="lines",
                line={"color": "#cbd5e1", "width": 1.5},
                name="sent",
                legendgroup="sent",
                showlegend=legend_once("sent", len(sent.frame)),
                hoverinfo="skip",
            ),
            row=1,
            col=col,
        )
        part = thin(frame, keep=frame["lost"] | frame["reordered"])
        parts.append(part)
        shown = part.frame
        arrived = shown.loc[~shown["lost"] & ~shown["reordered"]]
        fig.add_trace(
            go.Scatter(
                x=arrived["recv_ms"].round(3),
                y=arrived["seq"],
                mode="markers",
                marker={"color": protocol_color(protocol, index), "size": 3.5},
                name=f"{_legend_name(protocol)} arrived",
                hovertemplate="seq %{y}<br>arrived %{x:.3f} ms<extra></extra>",
            ),
            row=1,
            col=col,
        )
        late = shown.loc[shown["reordered"]]
        fig.add_trace(
            go.Scatter(
                x=late["recv_ms"].round(3),
                y=late["seq"],
                mode="markers",
                marker={"color": REORDERED_COLOR, "size": 5, "symbol": "diamond-open"},
                name="arrived out of order",
                legendgroup="reordered",
                showlegend=legend_once("reordered", len(late)),
                hovertemplate="seq %{y} out of order<br>arrived %{x:.3f} ms<extra></extra>",
            ),
            row=1,
            col=col,
        )
        lost = shown.loc[shown["lost"]]
        fig.add_trace(
            go.Scatter(
                x=lost["send_ms"].round(3),
                y=lost["seq"],
                mode="markers",
                marker={
                    "color": LOST_COLOR,
                    "size": 8,
                    "symbol": "x-thin",
                    "line": {"width": 2, "color": LOST_COLOR},
                },
                name="lost (at send time)",
                legendgroup="lost",
                showlegend=legend_once("lost", len(lost)),
                hovertemplate="seq %{y} lost<br>sent %{x:.3f} ms<extra></extra>",
            ),
            row=1,
            col=col,
        )
        fig.update_xaxes(title_text="ms since first send", row=1, col=col)
    fig.update_yaxes(title_text="sequence number", row=1, col=1)
    fig.update_layout(margin={"t": 80}, legend={"y": 1.1})
    return fig, thinning_note(parts, "messages")


def _bin_width_ms(duration_ms: float, preferred: float = 100.0, max_bins: int = 600) -> float:
    """100 ms unless that makes more than ``max_bins`` bins; then a 1-2-5 multiple."""
    if duration_ms / preferred <= max_bins:
        return preferred
    raw = duration_ms / max_bins
    magnitude = 10 ** math.floor(math.log10(raw))
    return float(next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw))


def loss_figure(prepared: dict[str, pd.DataFrame]) -> tuple[go.Figure, float]:
    """Lost messages per send-time bin, one line per protocol; returns the bin width."""
    duration = max((float(f["send_ms"].max()) for f in prepared.values() if len(f)), default=0.0)
    width = _bin_width_ms(max(duration, 1.0))
    fig = go.Figure()
    for index, (protocol, frame) in enumerate(prepared.items()):
        if not len(frame):
            continue
        bins = (frame["send_ms"] // width).astype(int)
        grouped = frame.groupby(bins)["lost"].agg(["size", "sum"])
        grouped = grouped.reindex(range(int(bins.max()) + 1), fill_value=0)
        percent = np.where(grouped["size"] > 0, 100 * grouped["sum"] / grouped["size"], 0.0)
        fig.add_trace(
            go.Scatter(
                x=(grouped.index.to_numpy() * width / 1000).round(4),
                y=grouped["sum"],
                customdata=np.column_stack([grouped["size"], percent.round(2)]),
                mode="lines",
                line={"color": protocol_color(protocol, index), "width": 2, "shape": "hv"},
                name=f"{_legend_name(protocol)} ({int(frame['lost'].sum())} lost)",
                hovertemplate="%{x:.2f} s: %{y} lost of %{customdata[0]} sent "
                "(%{customdata[1]}%)<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="s since the protocol's first send (bin start)")
    fig.update_yaxes(title_text=f"lost messages per {width:g} ms", rangemode="tozero")
    return fig, width


def delay_figure(prepared: dict[str, pd.DataFrame]) -> tuple[go.Figure, str]:
    """One-way delay of each delivered message against its send time."""
    fig = go.Figure()
    parts: list[Thinned] = []
    for index, (protocol, frame) in enumerate(prepared.items()):
        delivered = frame.loc[~frame["lost"]]
        part = thin(delivered, keep=delivered["reordered"])
        parts.append(part)
        fig.add_trace(
            go.Scatter(
                x=part.frame["send_ms"].round(3),
                y=part.frame["owd_ms"].round(4),
                mode="markers",
                marker={"color": protocol_color(protocol, index), "size": 3.5, "opacity": 0.7},
                name=_legend_name(protocol),
                customdata=part.frame["seq"],
                hovertemplate="seq %{customdata}<br>sent %{x:.1f} ms<br>"
                "delay %{y:.3f} ms<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="ms since the protocol's first send")
    fig.update_yaxes(title_text="one-way delay (ms)", rangemode="tozero")
    return fig, thinning_note(parts, "messages")


_IMPAIRMENT_EVENTS = ("dropped_loss", "dropped_queue", "duplicated", "corrupted", "reordered")
_EVENT_COLORS = ("#dc2626", "#f97316", "#0891b2", "#9333ea", "#16a34a")


def _direction_label(direction: object) -> str:
    return str(direction).replace("_to_", "→")


def impairment_figure(by_protocol: pd.DataFrame) -> go.Figure | None:
    """What the engine did to each protocol's packets, per direction (grouped bars)."""
    if "protocol" not in by_protocol or "direction" not in by_protocol:
        return None
    labels = [
        f"{str(p).upper()} {_direction_label(d)}"
        for p, d in zip(by_protocol["protocol"], by_protocol["direction"], strict=True)
    ]
    fig = go.Figure()
    for event, color in zip(_IMPAIRMENT_EVENTS, _EVENT_COLORS, strict=True):
        if event not in by_protocol:
            continue
        counts = as_float(by_protocol[event]).fillna(0)
        if not counts.any():
            continue
        fig.add_trace(
            go.Bar(
                x=[esc(label) for label in labels],
                y=counts,
                name=event.replace("_", " "),
                marker_color=color,
                hovertemplate="%{x}: %{y} " + event.replace("_", " ") + "<extra></extra>",
            )
        )
    if not fig.data:
        return None
    fig.update_layout(barmode="group")
    fig.update_yaxes(title_text="packets")
    return fig
