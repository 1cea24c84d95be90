"""``sweep.html``: the metrics of a sweep against the swept parameter, one curve per protocol.

Each point is the mean over repetitions with a 95 % confidence interval from the
t-distribution. For a loss sweep, TCP goodput is set against the Mathis et al. (1997)
model, ``rate = (MSS / RTT) · C / √p`` with C = √(3/2) ≈ 1.22.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lab.errors import ResultsError
from lab.report import _html as h
from lab.report._data import (
    as_float,
    check_complete,
    distinct_values,
    format_value,
    read_table,
    sweep_values,
)
from lab.results import read_meta

SWEEP_PAGE = "sweep.html"
REQUIRED_COLUMNS = ("parameter", "value", "repetition", "protocol", "sent", "delivered")
#: Mathis et al. (1997), "The macroscopic behavior of the TCP congestion avoidance algorithm".
MATHIS_C = math.sqrt(3 / 2)

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
    if (folder / "meta.json").exists():
        check_complete(folder, read_meta(folder), allow_incomplete)
    path = folder / "sweep.csv"
    if not path.is_file():
        raise ResultsError(f"{folder}: no sweep.csv (not a sweep folder?)")
    tidy = read_table(path)
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
    for column in ("owd_p99_ms", "tcp_retransmissions", "base_rtt_ms", "mss_bytes"):
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


def mathis_bps(mss_bytes: float, rtt_ms: float, loss_fraction: float) -> float:
    """Mathis et al. (1997) steady-state TCP throughput in bit/s; NaN where undefined."""
    if loss_fraction <= 0 or rtt_ms <= 0 or mss_bytes <= 0:
        return math.nan
    return 8 * mss_bytes / (rtt_ms / 1000) * MATHIS_C / math.sqrt(loss_fraction)


def mathis_table(tidy: pd.DataFrame) -> pd.DataFrame:
    """Per loss value > 0: measured TCP goodput (mean), the model, and their ratio."""
    tcp = tidy.loc[(tidy["protocol"] == "tcp") & (tidy["value"] > 0)]
    if tcp.empty or not {"mss_bytes", "base_rtt_ms", "goodput_bps"} <= set(tcp.columns):
        return pd.DataFrame()
    rows = []
    for key, group in tcp.groupby("value", sort=True):
        value = float(str(key))
        model = mathis_bps(
            float(group["mss_bytes"].mean()), float(group["base_rtt_ms"].mean()), value / 100
        )
        measured = as_float(group["goodput_bps"])
        ratios = measured / model
        rows.append(
            {
                "loss %": value,
                "p": value / 100,
                "repetitions": int(measured.notna().sum()),
                "measured Mbit/s (mean)": measured.mean() / 1e6,
                "model Mbit/s": model / 1e6,
                "measured / model": measured.mean() / model,
                "ratio min": ratios.min(),
                "ratio max": ratios.max(),
            }
        )
    return pd.DataFrame(rows)


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
    if model is not None and not model.empty:
        grid = np.linspace(float(model["loss %"].min()), float(model["loss %"].max()), 80)
        scale = float((model["model Mbit/s"] * np.sqrt(model["p"])).mean())
        fig.add_trace(
            go.Scatter(
                x=grid.round(4),
                y=(scale / np.sqrt(grid / 100)).round(4),
                mode="lines",
                line={"color": h.protocol_color("tcp"), "dash": "dash", "width": 1.5},
                name="Mathis model (TCP)",
                hovertemplate="model: %{y:.3f} Mbit/s at %{x}%<extra></extra>",
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
    if "run" not in tidy:
        return ""
    rows = []
    for (value, repetition, run), group in tidy.groupby(
        ["value", "repetition", "run"], sort=True, dropna=False
    ):
        run_path = str(run)
        report = f"{run_path.rstrip('/')}/report.html"
        target = report if (folder / report).is_file() else f"{run_path.rstrip('/')}/"
        row: dict[str, object] = {
            "value": value,
            "repetition": repetition,
            "run": f'<a href="{h.href(target)}">{h.esc(run_path)}</a>',
        }
        for protocol, cells in group.groupby("protocol", sort=False):
            cell = cells.iloc[0]
            if "loss_pct" in cells:
                row[f"{str(protocol).upper()} loss %"] = as_float(cells["loss_pct"]).iloc[0]
            if "goodput_mbps" in cells:
                row[f"{str(protocol).upper()} Mbit/s"] = float(cell["goodput_mbps"])
        rows.append(row)
    return h.table(pd.DataFrame(rows), raw_html=["run"])


def _mathis_figure(tidy: pd.DataFrame, model: pd.DataFrame) -> go.Figure:
    """Log-log: the model is a straight line of slope -1/2, the measurement beside it."""
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
    low, high = float(model["loss %"].min()), float(model["loss %"].max())
    grid = np.geomspace(low, high, 60) if high > low else np.array([low])
    scale = float((model["model Mbit/s"] * np.sqrt(model["p"])).mean())
    fig.add_trace(
        go.Scatter(
            x=grid.round(5),
            y=(scale / np.sqrt(grid / 100)).round(5),
            mode="lines",
            line={"color": "#111827", "dash": "dash", "width": 1.5},
            name="Mathis model: (MSS/RTT)·1.22/√p",
            hovertemplate="model: %{y:.3f} Mbit/s at %{x}%<extra></extra>",
        )
    )
    fig.update_xaxes(type="log", title_text="loss % (log)")
    fig.update_yaxes(type="log", title_text="TCP goodput, Mbit/s (log)")
    return fig


def _mathis_section(tidy: pd.DataFrame, model: pd.DataFrame) -> str:
    if model.empty:
        return h.note(
            "Mathis model not drawn: no TCP cell with loss > 0, or sweep.csv lacks "
            "mss_bytes / base_rtt_ms / goodput_bps."
        )
    ratio = model["measured / model"].dropna()
    summary = (
        f"Measured TCP goodput is {ratio.min():.2f}–{ratio.max():.2f} × the model "
        f"(median {ratio.median():.2f} ×) over the {len(ratio)} loss values above 0."
        if len(ratio)
        else "No measured TCP goodput to compare."
    )
    return (
        "<h3>TCP goodput against the Mathis et al. (1997) model</h3>"
        + f"<p>{h.esc(summary)}</p>"
        + f'<div class="figgrid"><div>{h.figure(_mathis_figure(tidy, model), 360)}</div><div>'
        + h.table(
            model,
            formats={
                "p": h.fmt_number("{:.4f}"),
                "measured / model": h.fmt_number("{:.3f}"),
                "ratio min": h.fmt_number("{:.3f}"),
                "ratio max": h.fmt_number("{:.3f}"),
            },
        )
        + "</div></div>"
        + h.caption(
            "Model: throughput ≈ (MSS / RTT) · 1.22 / √p with MSS = mss_bytes, RTT = "
            "base_rtt_ms (the configured delay, no queueing) and p = the swept loss as a "
            "fraction; p = 0 is left out (the model has no limit there). The model describes "
            "a long-lived flow in congestion avoidance with loss on data segments only: "
            "short transfers (slow start), timeouts, ACK loss and the sender's pacing make "
            "the measurement depart from it; 'ratio min/max' span the repetitions."
        )
    )


def _parameter_section(tidy: pd.DataFrame, parameter: str, folder: Path) -> str:
    loss = is_loss_parameter(parameter)
    model = mathis_table(tidy) if loss else pd.DataFrame()
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
        body += _mathis_section(tidy, model)
    body += "<h3>Means and 95 % confidence intervals</h3>" + _means_table(tidy)
    body += "<h3>Runs</h3>" + _runs_table(tidy, folder)
    return body


def render_sweep(folder: Path, *, allow_incomplete: bool = False) -> Path:
    """Write ``folder/sweep.html`` from ``folder/sweep.csv`` and return its path."""
    folder = Path(folder)
    tidy = read_sweep(folder, allow_incomplete=allow_incomplete)
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
    target = folder / SWEEP_PAGE
    tmp = target.with_suffix(".html.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(target)
    return target
