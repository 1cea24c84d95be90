"""``lab compare A B``'s page: the two runs' time series overlaid, and B - A per metric.

Overlaid per protocol: goodput and one-way delay p50 over time (timeseries.csv) and, when
both runs probed latency under load, the probe's round trip (probe.csv). Each run's time
axis starts at its own protocol's first send, so the curves line up by "seconds into the
exchange", not by wall clock. A run of an older format without these tables is drawn
from what it has, and the page says which run lacks what.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from lab.report import _html as h
from lab.results import Run, load_run, write_file

__all__ = ["render_compare"]

#: Dash of each run's curves: A solid, B dashed (colours stay the protocol's).
_DASH = {"A": "solid", "B": "dash"}


def render_compare(run_a: Path, run_b: Path, diff: pd.DataFrame, output: Path) -> Path:
    """Write the comparison page to ``output`` (an .html path) and return it."""
    runs = {"A": load_run(run_a), "B": load_run(run_b)}
    protocols = [p for p in pd.unique(diff["protocol"]) if isinstance(p, str)]
    sections = [
        h.section(
            "over-time",
            "Over time, A and B overlaid",
            _over_time(runs, protocols),
        ),
    ]
    probe = _probe(runs)
    if probe:
        sections.append(h.section("probe", "Latency under load (probe round trip)", probe))
    sections.append(h.section("diff", "B - A per protocol and metric", _diff_table(diff)))
    subtitle = f"A = {run_a.resolve().name} · B = {run_b.resolve().name}"
    html = h.page("protolab compare", subtitle, "".join(sections))
    return write_file(output.parent, output.name, html)


def _over_time(runs: dict[str, Run], protocols: list[str]) -> str:
    series = {label: _table(run, "timeseries") for label, run in runs.items()}
    missing = [label for label, frame in series.items() if frame is None]
    notes = "".join(
        h.note(f"Run {label} has no timeseries.csv (written by protolab before format 2).")
        for label in missing
    )
    if len(missing) == len(runs):
        return notes
    figures = []
    for column, title, scale in (
        ("throughput_bps", "Goodput (Mbit/s)", 1e-6),
        ("owd_p50_ms", "One-way delay p50 (ms)", 1.0),
    ):
        fig = go.Figure()
        for label, frame in series.items():
            if frame is None:
                continue
            for index, protocol in enumerate(protocols):
                rows = frame.loc[frame["protocol"] == protocol]
                if rows.empty or column not in rows:
                    continue
                fig.add_trace(
                    go.Scatter(
                        x=rows["t_start_s"],
                        y=rows[column].astype("Float64").astype(float) * scale,
                        mode="lines",
                        line={"color": h.protocol_color(protocol, index), "dash": _DASH[label]},
                        name=f"{protocol.upper()} {label}",
                        hovertemplate=f"{protocol.upper()} {label}: %{{y:.3f}} at %{{x:.2f}} s"
                        "<extra></extra>",
                    )
                )
        fig.update_xaxes(title_text="seconds from the protocol's first send")
        fig.update_yaxes(title_text=title, rangemode="tozero")
        figures.append(f"<div><h3>{h.esc(title)}</h3>{h.figure(fig, 340)}</div>")
    caption = h.caption(
        "Per interval of each run's [analysis] interval_ms (timeseries.csv): goodput counts "
        "the message bytes whose first copy reached the application in the interval; the "
        "delay is over those messages. TCP hands over at once everything held behind a "
        "retransmitted hole, so one interval may show more than the link's rate and the one "
        "before it less. A is solid, B dashed."
    )
    return notes + f'<div class="figgrid">{"".join(figures)}</div>' + caption


def _probe(runs: dict[str, Run]) -> str:
    probes = {label: _table(run, "probe") for label, run in runs.items()}
    if all(frame is None for frame in probes.values()):
        return ""
    fig = go.Figure()
    for label, frame in probes.items():
        if frame is None:
            continue
        udp = frame.loc[frame["probe"] == "udp"]
        for index, (load, rows) in enumerate(udp.groupby("load_protocol", sort=False)):
            t0 = int(rows["t_send_ns"].min())
            fig.add_trace(
                go.Scatter(
                    x=(rows["t_send_ns"].astype("Int64") - t0).astype(float) / 1e9,
                    y=rows["rtt_ns"].astype("Float64").astype(float) / 1e6,
                    mode="lines+markers",
                    marker={"size": 4},
                    line={"color": h.protocol_color(str(load), index), "dash": _DASH[label]},
                    name=f"probe beside {str(load).upper()} load, {label}",
                )
            )
    fig.update_xaxes(title_text="seconds from the first probe")
    fig.update_yaxes(title_text="UDP probe round trip (ms)", rangemode="tozero")
    return h.figure(fig, 360) + h.caption(
        "The UDP probe of latency_under_load: idle before the load, under it, and after it; "
        "a lost probe leaves a gap. A is solid, B dashed."
    )


def _diff_table(diff: pd.DataFrame) -> str:
    shown = diff.rename(columns={"a": "A", "b": "B", "diff": "B - A", "rel_pct": "rel %"})
    return h.table(shown, key_column="protocol")


def _table(run: Run, name: str) -> pd.DataFrame | None:
    return run.table(name) if run.has_table(name) else None
