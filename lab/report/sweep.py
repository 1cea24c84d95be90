"""``sweep.html``: the metrics of a sweep against the swept parameter, one curve per protocol.

Each point is the mean over repetitions with a 95 % confidence interval from the
t-distribution. For a loss sweep, TCP goodput is set against three steady-state models
(:mod:`lab.analysis.tcp_models`): Mathis et al. (1997), CUBIC's response function (RFC
9438 §5 with its Reno-friendly region, §4.3) and Padhye et al. (1998, "PFTK", with
timeouts): per loss value the measured mean, each model and the ratio measured / model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.analysis.tcp_models import (
    LINUX_RTO_MIN_MS,
    PFTK_B,
    cubic_bps,
    cubic_region,
    linux_rto_ms,
    mathis_bps,
    pftk_bps,
)
from lab.errors import ResultsError
from lab.report import _html as h
from lab.report._data import (
    as_float,
    check_complete,
    distinct_values,
    format_value,
    is_file_safely,
    present,
    read_meta,
    read_table,
    run_workload,
    sweep_values,
)
from lab.results import write_file

SWEEP_PAGE = "sweep.html"
REQUIRED_COLUMNS = ("parameter", "value", "repetition", "protocol", "sent", "delivered")
#: A measured retransmission timeout per cell (ms); PFTK's T0 when sweep.csv has it.
RTO_COLUMN = "rto_ms"

#: Two-sided 95 % quantiles of Student's t by degrees of freedom (scipy is not a dependency).
_T_975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
    9: 2.262, 10: 2.228, 11: 2.201, 12: 2.179, 13: 2.160, 14: 2.145, 15: 2.131, 16: 2.120,
    17: 2.110, 18: 2.101, 19: 2.093, 20: 2.086, 21: 2.080, 22: 2.074, 23: 2.069, 24: 2.064,
    25: 2.060, 26: 2.056, 27: 2.052, 28: 2.048, 29: 2.045, 30: 2.042, 40: 2.021, 60: 2.000,
    120: 1.980,
}  # fmt: skip


def t_quantile(dof: int) -> float:
    """t(0.975, dof); between tabulated values the smaller dof (a slightly wider interval)."""
    if dof < 1:
        return math.nan
    return _T_975[max(k for k in _T_975 if k <= dof)] if dof <= 120 else 1.96


@dataclass(frozen=True)
class Metric:
    column: str
    title: str
    tick_format: str = ""


METRICS = (
    Metric("delivery_ratio", "Delivery ratio (delivered / sent)", ".0%"),
    Metric("owd_p99_ms", "One-way delay p99 (ms)"),
    Metric("goodput_mbps", "Goodput (Mbit/s)"),
    Metric("reorder_ratio", "Reordering ratio (out of order / delivered)", ".2%"),
    Metric("tcp_retransmissions", "TCP retransmitted segments"),
)


def read_sweep(folder: Path, *, allow_incomplete: bool = False) -> pd.DataFrame:
    """sweep.csv with the display columns added; checks meta.json when there is one."""
    meta: dict[str, Any] = {}
    if present(folder / "meta.json"):
        meta = read_meta(folder)
        check_complete(folder, meta, allow_incomplete)
    path = folder / "sweep.csv"
    if not present(path):
        raise ResultsError(f"{folder}: no sweep.csv (not a sweep folder?)")
    tidy = read_table(path, run_workload(folder, meta)[2])
    missing = [c for c in REQUIRED_COLUMNS if c not in tidy]
    if missing:
        raise ResultsError(f"{path}: missing column(s): {', '.join(missing)}")
    if tidy.empty:
        raise ResultsError(f"{path}: no rows")
    tidy["protocol"] = tidy["protocol"].astype(str)
    tidy["parameter"] = tidy["parameter"].astype(str)
    tidy["value"] = sweep_values(tidy["value"])
    sent, delivered = as_float(tidy["sent"]), as_float(tidy["delivered"])
    tidy["delivery_ratio"] = delivered / sent.where(sent > 0)
    if "out_of_order" in tidy:
        tidy["reorder_ratio"] = as_float(tidy["out_of_order"]) / delivered.where(delivered > 0)
    if "goodput_bps" in tidy:
        tidy["goodput_mbps"] = as_float(tidy["goodput_bps"]) / 1e6
    for column in (
        "owd_p95_ms",
        "owd_p99_ms",
        "tcp_retransmissions",
        "base_rtt_ms",
        "mss_bytes",
        RTO_COLUMN,
    ):
        if column in tidy:
            tidy[column] = as_float(tidy[column])
    return tidy


def mean_ci(tidy: pd.DataFrame, column: str) -> pd.DataFrame:
    """Per (protocol, value): n, mean and the half-width of the 95 % CI (NaN for n = 1)."""
    rows = []
    numeric = pd.api.types.is_float_dtype(tidy["value"])  # text values keep their run order
    for (protocol, value), group in tidy.groupby(["protocol", "value"], sort=numeric):
        values = group[column].dropna()
        n = len(values)
        mean = float(values.mean()) if n else math.nan
        half = t_quantile(n - 1) * float(values.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
        rows.append({"protocol": protocol, "value": value, "n": n, "mean": mean, "half": half})
    return pd.DataFrame(rows, columns=["protocol", "value", "n", "mean", "half"])


def is_loss_parameter(parameter: str) -> bool:
    """impairment.loss, impairment.client_to_server.loss, ...: a random-loss percentage."""
    return parameter.rsplit(".", 1)[-1] == "loss"


@dataclass(frozen=True)
class TcpModel:
    """A throughput model as the sweep page shows it."""

    name: str
    legend: str
    dash: str
    #: One sentence for the page: what the model assumes, so a gap can be explained.
    assumes: str


MODELS = (
    TcpModel(
        "Mathis",
        "Mathis et al. (1997): (MSS/RTT)·1.22/√p",
        "dash",
        "Mathis et al. (1997) assume a Reno flow that never leaves congestion avoidance: one "
        "loss every 1/p packets, each repaired by fast retransmit with the window halved, an "
        "ACK per segment, no timeout and no receiver-window limit.",
    ),
    TcpModel(
        "CUBIC",
        "CUBIC, RFC 9438 §5: max(cubic, Reno-friendly)",
        "dot",
        "The CUBIC model (RFC 9438 §5 and §4.3) assumes the same periodic losses but CUBIC's "
        "window rules (growth along C·(t−K)³ + W_max with C = 0.4, reduction to 0.7 × the "
        "window) and takes the larger of that average window and the Reno-friendly one; at "
        "short RTTs and percent-level loss the Reno-friendly term wins ('CUBIC region') and "
        "the model equals Mathis, so CUBIC's cubic growth cannot explain a gap there.",
    ),
    TcpModel(
        "PFTK",
        "PFTK, Padhye et al. (1998): with timeouts",
        "dashdot",
        "PFTK (Padhye et al. 1998) assumes Reno whose losses come in bursts within a round and "
        "are repaired by fast retransmit or, when too few duplicate ACKs come back, by a "
        "retransmission timeout of T0 doubling on each repeat, with the window capped at "
        "Wmax; the idle timeouts put it below Mathis, more and more as p grows.",
    ),
)


def model_bps(
    name: str, mss_bytes: float, rtt_ms: float, loss_fraction: float, t0_ms: float
) -> float:
    """One of :data:`MODELS` in bit/s (NaN where undefined)."""
    if name == "Mathis":
        return mathis_bps(mss_bytes, rtt_ms, loss_fraction)
    if name == "CUBIC":
        return cubic_bps(mss_bytes, rtt_ms, loss_fraction)
    if name == "PFTK":
        return pftk_bps(mss_bytes, rtt_ms, loss_fraction, rto_ms=t0_ms)
    raise ValueError(f"unknown TCP model {name!r}")


def _column_mean(frame: pd.DataFrame, column: str) -> float:
    return float(as_float(frame[column]).mean()) if column in frame else math.nan


def model_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per loss value: measured TCP goodput (mean over repetitions), each model and the ratio.

    Inputs per value: MSS = mss_bytes, RTT = base_rtt_ms, p = value / 100, T0 = rto_ms if
    sweep.csv has it, else RTT + 200 ms. A model is NaN where it is undefined (loss 0, no
    RTT or MSS, RTT 0); empty without TCP rows or goodput_bps.
    """
    if "goodput_bps" not in tidy:
        return pd.DataFrame()
    tcp = tidy.loc[tidy["protocol"] == "tcp"]
    rows = []
    for key, group in tcp.groupby("value", sort=True):
        value = float(str(key))
        p = value / 100
        mss = _column_mean(group, "mss_bytes")
        rtt = _column_mean(group, "base_rtt_ms")
        rto = _column_mean(group, RTO_COLUMN)
        t0 = linux_rto_ms(rtt) if math.isnan(rto) else rto
        measured = as_float(group["goodput_bps"])
        mean = float(measured.mean())
        row: dict[str, object] = {
            "loss %": value,
            "p": p,
            "repetitions": int(measured.notna().sum()),
            "measured Mbit/s (mean)": mean / 1e6,
        }
        for model in MODELS:
            bps = model_bps(model.name, mss, rtt, p, t0)
            row[f"{model.name} Mbit/s"] = bps / 1e6
            row[f"measured / {model.name}"] = mean / bps
            if model.name == "CUBIC":
                row["CUBIC region"] = cubic_region(rtt, p) or None
        row.update({"MSS bytes": mss, "RTT ms": rtt, "T0 ms": t0})
        rows.append(row)
    return pd.DataFrame(rows)


def _model_curves(model: pd.DataFrame, grid: np.ndarray) -> list[tuple[TcpModel, np.ndarray]]:
    """Each model in Mbit/s over ``grid`` (loss %) from the mean inputs of the points above 0."""
    points = model.loc[model["p"] > 0]
    if points.empty:
        return []
    mss, rtt, t0 = (float(points[c].mean()) for c in ("MSS bytes", "RTT ms", "T0 ms"))
    curves = []
    for spec in MODELS:
        values = np.array([model_bps(spec.name, mss, rtt, x / 100, t0) / 1e6 for x in grid])
        if np.isfinite(values).any():
            curves.append((spec, values))
    return curves


def _metric_figure(
    tidy: pd.DataFrame, metric: Metric, parameter: str, model: pd.DataFrame | None
) -> go.Figure:
    fig = go.Figure()
    stats = mean_ci(tidy, metric.column)
    for index, protocol in enumerate(pd.unique(tidy["protocol"])):
        rows = stats.loc[stats["protocol"] == protocol]
        if rows["mean"].isna().all():
            continue
        color = h.protocol_color(str(protocol), index)
        fig.add_trace(
            go.Scatter(
                x=rows["value"],
                y=rows["mean"],
                error_y={"type": "data", "array": rows["half"].fillna(0), "visible": True},
                customdata=np.column_stack([rows["n"], rows["half"]]),
                mode="lines+markers",
                line={"color": color, "width": 2.2},
                marker={"size": 7},
                name=h.esc(str(protocol).upper()),
                hovertemplate=f"{h.esc(parameter)} = %{{x}}<br>mean %{{y:.4g}} "
                "± %{customdata[1]:.3g} (n = %{customdata[0]})<extra>%{fullData.name}</extra>",
            )
        )
    if model is not None and len(model) and (model["p"] > 0).any():
        losses = model["loss %"].loc[model["p"] > 0]
        grid = np.linspace(float(losses.min()), float(losses.max()), 80)
        for spec, values in _model_curves(model, grid):
            fig.add_trace(
                go.Scatter(
                    x=grid.round(4),
                    y=values.round(4),
                    mode="lines",
                    line={"color": h.protocol_color("tcp"), "dash": spec.dash, "width": 1.5},
                    name=f"{spec.name} model (TCP)",
                    hovertemplate=f"{spec.name}: %{{y:.3f}} Mbit/s at %{{x}}%<extra></extra>",
                )
            )
    fig.update_xaxes(title_text=h.esc(parameter))
    fig.update_yaxes(title_text=metric.title, tickformat=metric.tick_format, rangemode="tozero")
    return fig


def _ci_text(mean: float, half: float, pattern: str) -> str:
    if h.is_missing(mean):
        return h.MISSING
    text = pattern.format(mean)
    return text if h.is_missing(half) else f"{text} ± {pattern.format(half)}"


def _means_table(tidy: pd.DataFrame) -> str:
    columns = [
        (m, pattern)
        for m, pattern in (
            (METRICS[0], "{:.4f}"),
            (METRICS[1], "{:.3f}"),
            (METRICS[2], "{:.3f}"),
            (METRICS[3], "{:.4f}"),
            (METRICS[4], "{:.1f}"),
        )
        if m.column in tidy
    ]
    merged: pd.DataFrame | None = None
    for metric, pattern in columns:
        stats = mean_ci(tidy, metric.column)
        stats[metric.title] = [
            _ci_text(m, s, pattern) for m, s in zip(stats["mean"], stats["half"], strict=True)
        ]
        stats = stats.drop(columns=["mean", "half"])
        merged = (
            stats
            if merged is None
            else merged.merge(stats.drop(columns=["n"]), on=["protocol", "value"])
        )
    assert merged is not None  # delivery_ratio always exists
    merged = merged.sort_values(["value", "protocol"], kind="stable")
    merged["protocol"] = merged["protocol"].str.upper()
    return h.table(merged.rename(columns={"value": "value", "n": "repetitions"}))


def _runs_table(tidy: pd.DataFrame, folder: Path) -> str:
    """One row per run (value x repetition): its link, then loss and goodput per protocol.

    Built column by column, not run by run: a sweep may have 10,000 runs.
    """
    if "run" not in tidy:
        return ""
    keys = ["value", "repetition", "run"]
    ordered = tidy.sort_values(keys, kind="stable", na_position="last")
    table = ordered[keys].drop_duplicates(ignore_index=True)
    firsts = ordered.drop_duplicates([*keys, "protocol"])  # a protocol's first row per run
    for protocol in pd.unique(firsts["protocol"]):
        mine = firsts.loc[firsts["protocol"] == protocol]
        columns = mine[keys].copy()
        name = str(protocol).upper()
        if "loss_pct" in mine:
            columns[f"{name} loss %"] = as_float(mine["loss_pct"])
        if "goodput_mbps" in mine:
            columns[f"{name} Mbit/s"] = as_float(mine["goodput_mbps"])
        table = table.merge(columns, on=keys, how="left")
    links = []
    for run in table["run"]:
        run_path = str(run)
        report = f"{run_path.rstrip('/')}/report.html"
        target = report if is_file_safely(folder / report) else f"{run_path.rstrip('/')}/"
        links.append(f'<a href="{h.href(target)}">{h.esc(run_path)}</a>')
    table["run"] = links
    return h.table(table, raw_html=["run"])


_MODEL_COLORS = {"Mathis": "#111827", "CUBIC": "#9333ea", "PFTK": "#be123c"}


def _model_figure(tidy: pd.DataFrame, model: pd.DataFrame) -> go.Figure:
    """Log-log: Mathis is a line of slope -1/2; the measurement and the other models beside it."""
    tcp = tidy.loc[(tidy["protocol"] == "tcp") & (tidy["value"] > 0)]
    stats = mean_ci(tcp, "goodput_mbps")
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=stats["value"],
            y=stats["mean"],
            error_y={"type": "data", "array": stats["half"].fillna(0), "visible": True},
            mode="markers+lines",
            marker={"size": 8, "color": h.protocol_color("tcp")},
            line={"color": h.protocol_color("tcp"), "width": 2},
            name="TCP measured (mean, 95 % CI)",
            hovertemplate="%{x}%: %{y:.3f} Mbit/s<extra></extra>",
        )
    )
    losses = model["loss %"].loc[model["p"] > 0]
    if not losses.empty:
        low, high = float(losses.min()), float(losses.max())
        grid = np.geomspace(low, high, 60) if high > low else np.array([low])
        for spec, values in _model_curves(model, grid):
            fig.add_trace(
                go.Scatter(
                    x=grid.round(5),
                    y=values.round(5),
                    mode="lines",
                    line={"color": _MODEL_COLORS[spec.name], "dash": spec.dash, "width": 1.6},
                    name=spec.legend,
                    hovertemplate=f"{spec.name}: %{{y:.3f}} Mbit/s at %{{x}}%<extra></extra>",
                )
            )
    fig.update_xaxes(type="log", title_text="loss % (log)")
    fig.update_yaxes(type="log", title_text="TCP goodput, Mbit/s (log)")
    return fig


def _ratio_summary(model: pd.DataFrame) -> str:
    parts = []
    for spec in MODELS:
        ratio = model[f"measured / {spec.name}"].dropna()
        if len(ratio):
            parts.append(
                f"{ratio.min():.2f}–{ratio.max():.2f} × the {spec.name} model "
                f"(median {ratio.median():.2f} ×, {len(ratio)} loss value(s))"
            )
        else:
            parts.append(f"not comparable with the {spec.name} model (no defined value)")
    return "Measured TCP goodput is " + "; ".join(parts) + "."


def _model_notes(model: pd.DataFrame) -> list[str]:
    """Why a model cell is '–': said on the page, never a crash."""
    notes = []
    if (model["p"] <= 0).any():
        notes.append(
            "At loss 0 no model is defined (each predicts unbounded throughput as p → 0; the "
            "link and the sender set the rate there): that row has the measurement only."
        )
    points = model.loc[model["p"] > 0]
    undefined = points.loc[points[[f"{m.name} Mbit/s" for m in MODELS]].isna().all(axis=1)]
    if len(undefined):
        values = ", ".join(format_value(v) for v in undefined["loss %"])
        notes.append(
            f"No model at loss {values} %: sweep.csv has no usable base_rtt_ms / mss_bytes "
            "there (missing, or 0 as on a link without delay), and the models need both."
        )
    return notes


def _model_section(tidy: pd.DataFrame, model: pd.DataFrame) -> str:
    if model.empty:
        return h.note(
            "TCP models (Mathis, CUBIC, PFTK) not drawn: no TCP cell, or sweep.csv lacks "
            "goodput_bps."
        )
    measured_rto = RTO_COLUMN in tidy and tidy[RTO_COLUMN].notna().any()
    t0_text = (
        "T0 = the measured retransmission timeout (rto_ms in sweep.csv)"
        if measured_rto
        else f"T0 = RTT + {LINUX_RTO_MIN_MS:.0f} ms (Linux's minimum RTO; sweep.csv records no "
        "measured RTO)"
    )
    ratio_formats = {f"measured / {m.name}": h.fmt_number("{:.3f}") for m in MODELS}
    rate_formats = {f"{m.name} Mbit/s": h.fmt_number("{:.3f}") for m in MODELS}
    table = h.table(
        model,
        formats={
            "p": h.fmt_number("{:.4f}"),
            "measured Mbit/s (mean)": h.fmt_number("{:.3f}"),
            "RTT ms": h.fmt_number("{:.1f}"),
            "T0 ms": h.fmt_number("{:.0f}"),
            **ratio_formats,
            **rate_formats,
        },
    )
    assumptions = "".join(f"<li>{h.esc(spec.assumes)}</li>" for spec in MODELS)
    return (
        "<h3>TCP goodput against three models: Mathis (1997), CUBIC (RFC 9438), PFTK (1998)"
        "</h3>"
        + f"<p>{h.esc(_ratio_summary(model))}</p>"
        + "".join(h.note(text) for text in _model_notes(model))
        + f'<div class="figgrid"><div>{h.figure(_model_figure(tidy, model), 380)}</div>'
        + f"<div><p>What each model assumes:</p><ul>{assumptions}</ul></div></div>"
        + table
        + h.caption(
            "Models, in bit/s of payload: Mathis = (MSS / RTT) · √(3/2) / √p; CUBIC = "
            "max(AVG_W_cubic, √(3 / 2p)) · MSS / RTT with AVG_W_cubic = (C·(3 + β) / (4·(1 − "
            "β)))^¼ · RTT^¾ / p^¾ (RFC 9438 §5, RTT in s, C = 0.4, β = 0.7) and √(3 / 2p) the "
            "average of the Reno-friendly AIMD window of §4.3; PFTK = MSS · min(Wmax / RTT, 1 / "
            "(RTT·√(2bp/3) + T0 · min(1, 3·√(3bp/8)) · p · (1 + 32p²))) with "
            f"b = {PFTK_B:g} (Linux grows cwnd per segment acknowledged, not per ACK, so delayed "
            f"ACKs do not slow it), Wmax unlimited (not recorded) and {t0_text}. Inputs: MSS = "
            "mss_bytes, RTT = base_rtt_ms (the configured delay, no queueing), p = the swept "
            "loss as a fraction; '–' where a model is undefined. All three describe a long-lived "
            "flow in steady state with p the rate of loss events: slow start of a short "
            "transfer, several losses in one window (Linux reduces the window once for them), "
            "ACK loss and the sender's pacing make the measurement depart from them."
        )
    )


def _throughput_delay_figure(tidy: pd.DataFrame) -> go.Figure | None:
    """Pantheon's summary plot: goodput against 95th-percentile one-way delay.

    One small point per run (cell and repetition) and one large point per value (the
    mean over repetitions), TCP rows only (the swept algorithm is TCP's); the delay axis
    runs from high to low, so better (more throughput, less delay) is up and right.
    """
    tcp = tidy.loc[tidy["protocol"] == "tcp"]
    if tcp.empty or "owd_p95_ms" not in tcp or "goodput_mbps" not in tcp:
        return None
    tcp = tcp.dropna(subset=["owd_p95_ms", "goodput_mbps"])
    if tcp.empty:
        return None
    fig = go.Figure()
    for index, (value, runs) in enumerate(tcp.groupby("value", sort=False)):
        color = h.protocol_color("", index)  # one colour per value, none a protocol's
        label = h.esc(format_value(value))
        fig.add_trace(
            go.Scatter(
                x=runs["owd_p95_ms"],
                y=runs["goodput_mbps"],
                mode="markers",
                marker={"color": color, "size": 7, "opacity": 0.55},
                name=f"{label} (runs)",
                legendgroup=label,
                showlegend=False,
                customdata=runs["repetition"],
                hovertemplate=f"{label}, repetition %{{customdata}}<br>p95 OWD %{{x:.1f}} ms"
                "<br>goodput %{y:.3f} Mbit/s<extra></extra>",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[float(runs["owd_p95_ms"].mean())],
                y=[float(runs["goodput_mbps"].mean())],
                mode="markers+text",
                marker={"color": color, "size": 15, "symbol": "diamond"},
                text=[label],
                textposition="top center",
                name=label,
                legendgroup=label,
                hovertemplate=f"{label}: mean of {len(runs)} run(s)<br>p95 OWD %{{x:.1f}} ms"
                "<br>goodput %{y:.3f} Mbit/s<extra></extra>",
            )
        )
    fig.update_xaxes(
        title_text="95th-percentile one-way delay (ms) — lower is right", autorange="reversed"
    )
    fig.update_yaxes(title_text="Goodput (Mbit/s)", rangemode="tozero")
    return fig


def _parameter_section(tidy: pd.DataFrame, parameter: str, folder: Path) -> str:
    # the models need loss as a number: a text value (a corrupted sweep.csv) gets no model
    loss = is_loss_parameter(parameter) and pd.api.types.is_float_dtype(tidy["value"])
    model = model_table(tidy) if loss else pd.DataFrame()
    figures = []
    for metric in METRICS:
        if metric.column not in tidy or tidy[metric.column].isna().all():
            continue
        overlay = model if metric.column == "goodput_mbps" and loss else None
        fig = _metric_figure(tidy, metric, parameter, overlay)
        figures.append(f"<div><h3>{h.esc(metric.title)}</h3>{h.figure(fig, 360)}</div>")
    body = f'<div class="figgrid">{"".join(figures)}</div>' + h.caption(
        "Mean over repetitions; error bars are 95 % confidence intervals, mean ± t(0.975, n−1)"
        " · s / √n with Student's t quantiles tabulated for n − 1 ≤ 120 (1.96 beyond); no bar "
        "with a single repetition."
    )
    if loss:
        body += _model_section(tidy, model)
    pantheon = _throughput_delay_figure(tidy) if parameter == "congestion_control" else None
    if pantheon is not None:
        body += (
            "<h3>Throughput against delay (TCP)</h3>"
            + h.figure(pantheon, 420)
            + h.caption(
                "Pantheon's summary plot: each small point is one run, each diamond the mean "
                "of a value's runs. Goodput is the application's bytes delivered per second; "
                "the delay is the 95th percentile of the messages' one-way delay, socket to "
                "socket, so it includes the sender's buffer. The delay axis is reversed: "
                "up and right is better."
            )
        )
    body += "<h3>Means and 95 % confidence intervals</h3>" + _means_table(tidy)
    body += "<h3>Runs</h3>" + _runs_table(tidy, folder)
    return body


def render_sweep(
    folder: Path, *, allow_incomplete: bool = False, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/sweep.html`` from ``folder/sweep.csv`` and return its path.

    ``meta`` stands in for meta.json: the runner renders the page with the meta it is
    about to write, so a sweep is marked complete only once its page exists.
    """
    folder = Path(folder)
    tidy = read_sweep(folder, allow_incomplete=allow_incomplete or meta is not None)
    if meta is None:
        meta = read_meta(folder) if (folder / "meta.json").exists() else {}
    parameters = [str(p) for p in pd.unique(tidy["parameter"])]
    sections = [
        h.section(
            f"p{index}",
            f"Against {parameter}",
            _parameter_section(tidy.loc[tidy["parameter"] == parameter], parameter, folder),
        )
        for index, parameter in enumerate(parameters)
    ]
    name = str(meta.get("scenario") or folder.name)
    values = distinct_values(tidy["value"])
    repeats = int(tidy.groupby(["parameter", "value"])["repetition"].nunique().max())
    protocols = " vs ".join(str(p).upper() for p in pd.unique(tidy["protocol"]))
    subtitle = (
        f"{protocols} · {', '.join(parameters)} = {', '.join(format_value(v) for v in values)} · "
        f"up to {repeats} repetition(s) · {folder.name}"
    )
    banner = ""
    if meta and meta.get("complete") is not True:
        reason = meta.get("incomplete_reason") or "the sweep did not finish"
        banner = f"INCOMPLETE SWEEP: {h.esc(reason)}. Some cells are missing."
    html = h.page(f"protolab sweep: {name}", subtitle, "".join(sections), banner=banner)
    return write_file(folder, SWEEP_PAGE, html)
