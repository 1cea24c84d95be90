"""Figures over time: the per-interval time series (timeseries.csv) and the TCP sender's
own state (tcp_info.csv). Display only: units, step shapes and thinning, no new metrics.

Both share the x axis of the time series: seconds since the protocol's first send (for
tcp_info.csv, TCP's first send in messages.csv), so the views line up.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from lab.report import _run_figures
from lab.report._data import as_float
from lab.report._html import esc, protocol_color
from lab.report._run_figures import Thinned, thin

#: Numeric columns of timeseries.csv the figures read.
_SERIES_COLUMNS = (
    "interval",
    "t_start_s",
    "t_end_s",
    "sent",
    "lost",
    "delivered",
    "throughput_bps",
    "owd_p50_ms",
    "owd_p99_ms",
)
#: tcp_info.csv columns the figures read (numbers), beside ``t_ns`` and ``ca_state``.
_STATE_COLUMNS = (
    "cwnd_segments",
    "cwnd_bytes",
    "ssthresh_segments",
    "in_flight_bytes",
    "snd_wnd_bytes",
    "srtt_ms",
    "rttvar_ms",
    "min_rtt_ms",
    "rto_ms",
)
#: Linux's congestion-avoidance states (``tcp_ca_state``), in the order they escalate.
CA_STATES = ("open", "disorder", "cwr", "recovery", "loss")
_CA_COLORS = {
    "open": "#16a34a",
    "disorder": "#f59e0b",
    "cwr": "#0891b2",
    "recovery": "#ea580c",
    "loss": "#dc2626",
}
_MBIT = 1e6
#: One colour per parallel flow.
FLOW_COLORS = ("#2563eb", "#ea580c", "#16a34a", "#9333ea", "#0891b2", "#be123c", "#4d7c0f")


def _name(protocol: str) -> str:
    return esc(protocol.upper())


def interval_frames(series: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """timeseries.csv per protocol, in run order, sorted by interval, numbers as floats."""
    out: dict[str, pd.DataFrame] = {}
    if "protocol" not in series or "t_start_s" not in series:
        return out
    for protocol in pd.unique(series["protocol"].dropna()):
        rows = series.loc[series["protocol"] == protocol]
        frame = pd.DataFrame(
            {
                column: (
                    as_float(rows[column]).to_numpy()
                    if column in rows
                    else np.full(len(rows), np.nan)
                )
                for column in _SERIES_COLUMNS
            }
        )
        frame = frame.sort_values(["interval", "t_start_s"], kind="stable", ignore_index=True)
        if frame["t_end_s"].isna().all():  # no ends: each interval ends where the next starts
            width = frame["t_start_s"].diff().median()
            frame["t_end_s"] = frame["t_start_s"].shift(-1)
            frame.loc[frame.index[-1], "t_end_s"] = frame["t_start_s"].iloc[-1] + (
                width if pd.notna(width) else 0.0
            )
        frame["t_end_s"] = frame["t_end_s"].fillna(frame["t_start_s"])
        out[str(protocol)] = frame
    return out


def steps(frame: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """x and y of a step line (``shape="hv"``): each interval's value over its whole span.

    The last value is repeated at the last interval's end, so that interval is drawn too.
    """
    if frame.empty:
        return np.zeros(0), np.zeros(0)
    x = np.append(frame["t_start_s"].to_numpy(dtype=float), frame["t_end_s"].iloc[-1])
    values = frame[column].to_numpy(dtype=float)
    y = np.append(values, values[-1])
    return np.round(x, 6), y


def stride_note(parts: list[Thinned], what: str, kept: str = "") -> str:
    """Caption sentence saying a line was thinned, or '' when every point is drawn."""
    steps_taken = [p for p in parts if p.step > 1]
    if not steps_taken:
        return ""
    shown = ", ".join(f"one in {p.step}: {len(p.frame):,} of {p.total:,}" for p in steps_taken)
    return (
        f" Thinned for display (more than {_run_figures.MAX_POINTS:,} {what}): {shown} are drawn"
        + (f", including {kept}." if kept else ".")
    )


def _thin_series(frames: dict[str, pd.DataFrame]) -> tuple[dict[str, pd.DataFrame], list[Thinned]]:
    """Every k-th interval above MAX_POINTS, and every interval with a loss."""
    parts = {p: thin(frame, keep=frame["lost"].fillna(0) > 0) for p, frame in frames.items()}
    return {p: part.frame for p, part in parts.items()}, list(parts.values())


def throughput_figure(frames: dict[str, pd.DataFrame]) -> tuple[go.Figure, str]:
    """Throughput per interval (step lines, Mbit/s) above the messages lost per interval."""
    shown, parts = _thin_series(frames)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.72, 0.28], vertical_spacing=0.05
    )
    for index, (protocol, frame) in enumerate(shown.items()):
        color = protocol_color(protocol, index)
        x, y = steps(frame, "throughput_bps")
        delivered = np.append(frame["delivered"].to_numpy(), frame["delivered"].iloc[-1:])
        ends = np.append(frame["t_end_s"].to_numpy(), frame["t_end_s"].iloc[-1:])
        fig.add_trace(
            go.Scatter(
                x=x,
                y=np.round(y / _MBIT, 4),
                customdata=np.column_stack([np.round(ends, 6), delivered]),
                mode="lines",
                line={"color": color, "width": 2, "shape": "hv"},
                name=f"{_name(protocol)} throughput",
                legendgroup=protocol,
                hovertemplate="%{x:.2f}-%{customdata[0]:.2f} s: %{y:.3f} Mbit/s "
                "(%{customdata[1]} messages arrived)<extra>%{fullData.name}</extra>",
            ),
            row=1,
            col=1,
        )
        lost = frame["lost"].fillna(0)
        fig.add_trace(
            go.Bar(
                x=np.round((frame["t_start_s"] + frame["t_end_s"]) / 2, 6),
                y=lost,
                width=(frame["t_end_s"] - frame["t_start_s"]).round(6),
                customdata=np.column_stack(
                    [frame["t_start_s"].round(6), frame["t_end_s"].round(6), frame["sent"]]
                ),
                marker={"color": color, "line": {"width": 0}},
                opacity=0.75,
                name=f"{_name(protocol)} lost ({int(frames[protocol]['lost'].fillna(0).sum())})",
                legendgroup=protocol,
                hovertemplate="sent %{customdata[0]:.2f}-%{customdata[1]:.2f} s: %{y} lost of "
                "%{customdata[2]}<extra>%{fullData.name}</extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_layout(barmode="overlay", bargap=0)
    fig.update_yaxes(title_text="throughput (Mbit/s)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="lost (by send)", rangemode="tozero", row=2, col=1)
    fig.update_xaxes(title_text="s since the protocol's first send", row=2, col=1)
    return fig, stride_note(parts, "intervals per protocol", "every interval with a loss")


def delay_figure(frames: dict[str, pd.DataFrame]) -> tuple[go.Figure, str]:
    """One-way delay p50 (solid) and p99 (dotted) per interval, per protocol."""
    shown, parts = _thin_series(frames)
    fig = go.Figure()
    for index, (protocol, frame) in enumerate(shown.items()):
        color = protocol_color(protocol, index)
        for column, label, dash in (("owd_p50_ms", "p50", "solid"), ("owd_p99_ms", "p99", "dot")):
            x, y = steps(frame, column)
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=np.round(y, 4),
                    mode="lines",
                    line={"color": color, "width": 2, "shape": "hv", "dash": dash},
                    connectgaps=False,
                    name=f"{_name(protocol)} {label}",
                    legendgroup=protocol,
                    hovertemplate="from %{x:.2f} s: %{y:.3f} ms<extra>%{fullData.name}</extra>",
                )
            )
    fig.update_xaxes(title_text="s since the protocol's first send (arrival interval)")
    fig.update_yaxes(title_text="one-way delay (ms)", rangemode="tozero")
    fig.update_layout(updatemenus=[_log_buttons("yaxis")])
    return fig, stride_note(parts, "intervals per protocol", "every interval with a loss")


def _log_buttons(axis: str) -> dict[str, object]:
    return {
        "type": "buttons",
        "direction": "left",
        "x": 0.99,
        "xanchor": "right",
        "y": 0.98,
        "yanchor": "top",
        "showactive": True,
        "buttons": [
            {"label": "linear", "method": "relayout", "args": [{f"{axis}.type": "linear"}]},
            {"label": "log", "method": "relayout", "args": [{f"{axis}.type": "log"}]},
        ],
    }


def sender_frame(tcp_info: pd.DataFrame, t0_ns: float | int | None) -> pd.DataFrame:
    """tcp_info.csv sorted by time, ``s`` = seconds since ``t0_ns`` (TCP's first send;
    the first sample when unknown), numbers as floats, ssthresh also in bytes, ``flow``
    as text ("" when the table has no flow column: one TCP connection).

    ssthresh_bytes = ssthresh_segments x the sample's MSS (cwnd_bytes / cwnd_segments,
    as the sampler computed cwnd_bytes), so the three windows share one axis.
    """
    frame = tcp_info.copy()
    if "protocol" in frame:
        frame = frame.loc[frame["protocol"].astype("string").fillna("tcp") == "tcp"]
    # integers: a float64 nanosecond time is only exact to 256 ns
    t_ns = pd.to_numeric(frame["t_ns"], errors="coerce").astype("Int64")
    if t0_ns is not None and math.isfinite(t0_ns):
        origin = round(t0_ns)
    else:
        origin = int(t_ns.min()) if t_ns.notna().any() else 0
    out = pd.DataFrame({"s": ((t_ns - origin) / 1e9).astype(float).to_numpy()})
    for column in _STATE_COLUMNS:
        out[column] = as_float(frame[column]).to_numpy() if column in frame else np.nan
    out["ca_state"] = (
        frame["ca_state"].astype("string").fillna("?").to_numpy() if "ca_state" in frame else "?"
    )
    out["flow"] = frame["flow"].astype("string").fillna("").to_numpy() if "flow" in frame else ""
    mss = out["cwnd_bytes"] / out["cwnd_segments"].where(out["cwnd_segments"] > 0)
    out["ssthresh_bytes"] = out["ssthresh_segments"] * mss
    return out.sort_values("s", kind="stable", ignore_index=True)


def _state_line(
    frame: pd.DataFrame, column: str, name: str, color: str, **style: object
) -> go.Scatter:
    line = {"color": color, "width": 2, "shape": "hv", **style}
    return go.Scatter(
        x=frame["s"].round(6),
        y=frame[column],
        customdata=frame["ca_state"],
        mode="lines",
        line=line,
        name=name,
        hovertemplate="%{x:.3f} s: %{y:,.0f} bytes (%{customdata})<extra>" + name + "</extra>",
    )


def flows(state: pd.DataFrame) -> list[str]:
    """The flows of :func:`sender_frame`'s output, in order of appearance."""
    return [str(f) for f in pd.unique(state["flow"])]


def _flow_color(index: int) -> str:
    return FLOW_COLORS[index % len(FLOW_COLORS)]


def _per_flow(state: pd.DataFrame) -> tuple[list[tuple[str, pd.DataFrame]], list[Thinned]]:
    parts = [(flow, thin(state.loc[state["flow"] == flow])) for flow in flows(state)]
    return [(flow, part.frame) for flow, part in parts], [part for _, part in parts]


def _cwnd_flows(state: pd.DataFrame) -> tuple[go.Figure, str]:
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.78, 0.22], vertical_spacing=0.05
    )
    shown, parts = _per_flow(state)
    for index, (flow, rows) in enumerate(shown):
        color, label = _flow_color(index), f"flow {esc(flow)}"
        for column, what, style in (
            ("cwnd_bytes", "cwnd", {}),
            ("in_flight_bytes", "in flight", {"width": 1.2, "dash": "dot"}),
            ("ssthresh_bytes", "ssthresh", {"width": 1.2, "dash": "dash"}),
        ):
            if rows[column].notna().any():
                line = _state_line(rows, column, f"{label} {what}", color, **style)
                line.legendgroup = label
                fig.add_trace(line, row=1, col=1)
    everything = pd.concat([rows for _, rows in shown])
    states = [s for s in CA_STATES if (everything["ca_state"] == s).any()]
    states += [s for s in pd.unique(everything["ca_state"]) if s not in CA_STATES]
    for ca_state in states:
        rows = everything.loc[everything["ca_state"] == ca_state]
        fig.add_trace(
            go.Scatter(
                x=rows["s"].round(6),
                y=["flow " + esc(f) for f in rows["flow"]],
                mode="markers",
                marker={
                    "color": _CA_COLORS.get(ca_state, "#9333ea"),
                    "size": 6,
                    "symbol": "square",
                },
                name=f"state {esc(ca_state)}",
                legendgroup="ca_state",
                hovertemplate="%{x:.3f} s: %{y} " + esc(ca_state) + "<extra></extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="bytes", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(
        categoryorder="array",
        categoryarray=["flow " + esc(f) for f in flows(state)],
        row=2,
        col=1,
    )
    fig.update_xaxes(title_text="s since TCP's first send", row=2, col=1)
    return fig, stride_note(parts, "samples per flow")


def _rtt_flows(state: pd.DataFrame) -> tuple[go.Figure, str]:
    fig = go.Figure()
    shown, parts = _per_flow(state)
    for index, (flow, rows) in enumerate(shown):
        color, label = _flow_color(index), f"flow {esc(flow)}"
        for column, what, style in (
            ("srtt_ms", "srtt", {"width": 2}),
            ("min_rtt_ms", "min_rtt", {"width": 1.2, "dash": "dash"}),
        ):
            if rows[column].notna().any():
                fig.add_trace(
                    go.Scatter(
                        x=rows["s"].round(6),
                        y=rows[column].round(4),
                        mode="lines",
                        line={"color": color, "shape": "hv", **style},
                        name=f"{label} {what}",
                        legendgroup=label,
                        hovertemplate="%{x:.3f} s: %{y:.3f} ms<extra>%{fullData.name}</extra>",
                    )
                )
    fig.update_xaxes(title_text="s since TCP's first send")
    fig.update_yaxes(title_text="round-trip time (ms)", rangemode="tozero")
    return fig, stride_note(parts, "samples per flow")


def cwnd_figure(state: pd.DataFrame) -> tuple[go.Figure, str]:
    """cwnd, bytes in flight and ssthresh (bytes) over time; the CA state in a strip below.

    Several flows (parallel connections): one colour per flow, the strip a row per flow.
    """
    if len(flows(state)) > 1:
        return _cwnd_flows(state)
    part = thin(state)
    shown = part.frame
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.82, 0.18], vertical_spacing=0.05
    )
    fig.add_trace(_state_line(shown, "cwnd_bytes", "cwnd", "#2563eb"), row=1, col=1)
    fig.add_trace(
        _state_line(shown, "in_flight_bytes", "in flight", "#f59e0b", width=1.5), row=1, col=1
    )
    if shown["ssthresh_bytes"].notna().any():
        fig.add_trace(
            _state_line(shown, "ssthresh_bytes", "ssthresh", "#dc2626", dash="dash"), row=1, col=1
        )
    if shown["snd_wnd_bytes"].notna().any():
        receive = _state_line(
            shown, "snd_wnd_bytes", "peer's receive window (snd_wnd)", "#64748b", dash="dot"
        )
        receive.visible = "legendonly"  # often far above cwnd: it would flatten the rest
        fig.add_trace(receive, row=1, col=1)
    states = [s for s in CA_STATES if (shown["ca_state"] == s).any()]
    states += [s for s in pd.unique(shown["ca_state"]) if s not in CA_STATES]
    for ca_state in states:
        rows = shown.loc[shown["ca_state"] == ca_state]
        fig.add_trace(
            go.Scatter(
                x=rows["s"].round(6),
                y=[esc(ca_state)] * len(rows),
                mode="markers",
                marker={
                    "color": _CA_COLORS.get(ca_state, "#9333ea"),
                    "size": 7,
                    "symbol": "square",
                },
                name=f"state {esc(ca_state)}",
                legendgroup="ca_state",
                showlegend=False,
                hovertemplate="%{x:.3f} s: %{y}<extra>congestion state</extra>",
            ),
            row=2,
            col=1,
        )
    fig.update_yaxes(title_text="bytes", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(categoryorder="array", categoryarray=[esc(s) for s in states], row=2, col=1)
    fig.update_xaxes(title_text="s since TCP's first send", row=2, col=1)
    return fig, stride_note([part], "samples")


def rtt_figure(state: pd.DataFrame) -> tuple[go.Figure, str]:
    """srtt with a ± rttvar band, min_rtt dashed, the RTO hidden in the legend (several
    flows: srtt and min_rtt, one colour per flow)."""
    if len(flows(state)) > 1:
        return _rtt_flows(state)
    part = thin(state)
    shown = part.frame
    x = shown["s"].round(6)
    fig = go.Figure()
    if shown["rttvar_ms"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=(shown["srtt_ms"] - shown["rttvar_ms"]).clip(lower=0).round(4),
                mode="lines",
                line={"width": 0, "shape": "hv"},
                showlegend=False,
                legendgroup="rttvar",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=(shown["srtt_ms"] + shown["rttvar_ms"]).round(4),
                mode="lines",
                line={"width": 0, "shape": "hv"},
                fill="tonexty",
                fillcolor="rgba(37, 99, 235, 0.18)",
                name="srtt ± rttvar",
                legendgroup="rttvar",
                customdata=shown["rttvar_ms"].round(4),
                hovertemplate="%{x:.3f} s: rttvar %{customdata:.3f} ms<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=shown["srtt_ms"].round(4),
            mode="lines",
            line={"color": "#2563eb", "width": 2, "shape": "hv"},
            name="srtt",
            hovertemplate="%{x:.3f} s: srtt %{y:.3f} ms<extra></extra>",
        )
    )
    if shown["min_rtt_ms"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=shown["min_rtt_ms"].round(4),
                mode="lines",
                line={"color": "#16a34a", "width": 1.5, "shape": "hv", "dash": "dash"},
                name="min_rtt",
                hovertemplate="%{x:.3f} s: min_rtt %{y:.3f} ms<extra></extra>",
            )
        )
    if shown["rto_ms"].notna().any():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=shown["rto_ms"].round(4),
                mode="lines",
                line={"color": "#dc2626", "width": 1.5, "shape": "hv", "dash": "dot"},
                name="RTO",
                visible="legendonly",
                hovertemplate="%{x:.3f} s: RTO %{y:.1f} ms<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="s since TCP's first send")
    fig.update_yaxes(title_text="round-trip time (ms)", rangemode="tozero")
    return fig, stride_note([part], "samples")
