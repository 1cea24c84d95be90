"""``report.html`` of one run: the CSVs of results/<run>/ side by side per protocol."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from lab.analysis.context import late_message, late_protocols
from lab.report import _html as h
from lab.report import _run_figures as figs
from lab.report import _time_figures as series
from lab.report import _wire_figures as wire
from lab.report._data import RunData, as_float, is_file_safely, load_run
from lab.results import write_file

REPORT_NAME = "report.html"

#: summary.csv columns as rows of the side-by-side table: label and format.
_SUMMARY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("sent", "sent (messages)", "{:.0f}"),
    ("delivered", "delivered", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("loss_pct", "loss %", "{:.2f}"),
    ("engine_loss_pct", "engine: packets dropped %", "{:.2f}"),
    ("out_of_order", "out of order (RFC 4737)", "{:.0f}"),
    ("engine_reorder_pct", "engine: packets sent ahead %", "{:.2f}"),
    ("duplicates", "duplicate copies", "{:.0f}"),
    ("engine_duplicate_pct", "engine: packets duplicated %", "{:.2f}"),
    ("engine_corrupt_pct", "engine: packets corrupted %", "{:.2f}"),
    ("engine_late_p99_ms", "engine: sent late p99, worse direction (ms)", "{:.3f}"),
    ("owd_min_ms", "one-way delay min (ms)", "{:.3f}"),
    ("owd_p50_ms", "one-way delay p50 (ms)", "{:.3f}"),
    ("owd_p95_ms", "one-way delay p95 (ms)", "{:.3f}"),
    ("owd_p99_ms", "one-way delay p99 (ms)", "{:.3f}"),
    ("owd_max_ms", "one-way delay max (ms)", "{:.3f}"),
    ("owd_bound_ms", "one-way delays good to ± (ms, the two hosts' clocks)", "{:.3f}"),
    ("owd_available", "one-way delay available (clock bound under the median delay)", ""),
    ("jitter_ms", "jitter, RFC 3550 (ms)", "{:.3f}"),
    ("rtt_p50_ms", "round trip p50 (ms)", "{:.3f}"),
    ("rtt_p99_ms", "round trip p99 (ms)", "{:.3f}"),
    ("offered_bps", "offered load (Mbit/s)", "{:.3f}"),
    ("send_rate_bps", "sender's achieved rate (Mbit/s)", "{:.3f}"),
    ("backlog_p50_ms", "sender backlog p50 (ms)", "{:.3f}"),
    ("backlog_p99_ms", "sender backlog p99 (ms)", "{:.3f}"),
    ("goodput_bps", "goodput (Mbit/s)", "{:.3f}"),
    ("duration_s", "duration (s)", "{:.3f}"),
    ("accounting_closes", "engine's books close", ""),
    ("losses_explained", "losses explained by the engine", "{:.0f}"),
    ("capture_drops", "capture drops", "{:.0f}"),
)
_NOT_AVAILABLE = "Not available for this run"
#: For the tables newer runs write: an older run simply predates them.
_NOT_WRITTEN = "Not available: this run has no {table} (runs made before it existed do not)"


def render_report(
    folder: Path, *, allow_incomplete: bool = False, meta: dict[str, Any] | None = None
) -> Path:
    """Write ``folder/report.html`` from the run's CSVs and return its path.

    Raises ResultsError for a folder of a newer format, a sweep folder, or an incomplete
    run (unless ``allow_incomplete``: then the page carries an INCOMPLETE banner).
    ``meta`` stands in for meta.json: the runner renders the page with the meta it is
    about to write, so a run is marked complete only once its report exists.
    """
    run = load_run(Path(folder), allow_incomplete=allow_incomplete or meta is not None)
    if meta is not None:
        run = dataclasses.replace(run, meta=meta)
    return write_file(run.folder, REPORT_NAME, build_page(run))


def build_page(run: RunData, *, only: Collection[str] | None = None) -> str:
    """The report's HTML (no file written): used by render_report and the tests.

    ``only`` keeps the sections with these anchors (``"over-time"``, ``"sender"``,
    ``"tcp"``, ...): a page of a few views, for screenshots.
    """
    scenario_name = str(run.meta.get("scenario") or run.scenario.get("name") or run.folder.name)
    description = str(run.scenario.get("description") or "")
    messages = run.table("messages")
    prepared = figs.prepare_messages(messages) if messages is not None else {}
    builders: list[tuple[str, str, Callable[[], str]]] = [
        ("overview", "Scenario and environment", lambda: _overview(run)),
        ("summary", "Summary", lambda: _summary(run)),
        ("over-time", "Over time", lambda: _over_time(run)),
        ("probe", "Latency under load", lambda: _probe(run)),
        ("flows", "Flows: parallel and both directions", lambda: _flows(run)),
        ("delay", "One-way delay", lambda: _delay(prepared)),
        ("sequence", "Sequence numbers vs arrival", lambda: _sequence(prepared)),
        ("loss", "Loss over time", lambda: _loss(prepared)),
        ("sender", "TCP sender state", lambda: _sender_state(run, prepared)),
        ("tcp", "TCP time-sequence and retransmissions", lambda: _tcp_segments(run, prepared)),
        ("hol", "TCP head-of-line blocking", lambda: _hol(run, prepared)),
        ("impairment", "Impairment accounting", lambda: _impairment(run)),
        ("kernel", "Sockets and kernel counters", lambda: _kernel(run)),
        ("captures", "Packet captures", lambda: _captures(run)),
    ]
    optional = {"probe": "probe", "flows": "flows"}  # shown when the run has the table
    sections = [
        (anchor, title, build())
        for anchor, title, build in builders
        if (only is None or anchor in only)
        and (anchor not in optional or _has(run, optional[anchor], anchor))
    ]
    body = "".join(h.section(anchor, title, html) for anchor, title, html in sections)
    banner = "" if run.complete else _incomplete_banner(run)
    protocols = " vs ".join(p.upper() for p in run.protocols) or "no protocol"
    return h.page(
        f"protolab report: {scenario_name}",
        f"{protocols} · {run.folder.name}" + (f" · {description}" if description else ""),
        body,
        banner=banner,
        nav=h.nav_links([(anchor, title) for anchor, title, _ in sections]),
    )


def _incomplete_banner(run: RunData) -> str:
    reason = run.meta.get("incomplete_reason") or "the run did not finish"
    return (
        f"INCOMPLETE RUN: {h.esc(reason)}. Tables may be missing or partial; "
        "do not compare these numbers with finished runs."
    )


def _flatten(prefix: str, data: dict[str, Any]) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            rows += _flatten(f"{name}.", value)
        elif isinstance(value, list):
            rows.append((name, ", ".join(str(v) for v in value)))
        else:
            rows.append((name, value))
    return rows


def _ms(ns: object) -> str:
    """A meta.json nanosecond count in milliseconds ("?" when it is not a number)."""
    number = ns if isinstance(ns, int | float) and not isinstance(ns, bool) else None
    return "?" if number is None else f"{number / 1e6:.3f}"


def _overview(run: RunData) -> str:
    meta = run.meta
    status: object = "yes" if run.complete else f"NO ({meta.get('incomplete_reason', '?')})"
    environment: list[tuple[str, object]] = [
        ("results folder", run.folder.name),
        ("complete", status),
        ("started", meta.get("started")),
        ("ended", meta.get("ended")),
        ("seed", meta.get("seed")),
        ("congestion control", meta.get("congestion_control")),
        ("TCP_NODELAY (Nagle off)", meta.get("tcp_nodelay")),
        ("impairment backend", meta.get("impairment_backend")),
        ("kernel", meta.get("kernel")),
        ("machine", meta.get("machine")),
        ("python", meta.get("python")),
        ("format version", meta.get("format_version")),
        ("run id", meta.get("run_id")),
    ]
    for role in ("client", "server"):
        host = meta.get(role)
        if isinstance(host, dict) and "host" in host:  # a real host, over SSH
            environment.append(
                (
                    role,
                    f"{host.get('address')} on {host.get('interface')} (MTU {host.get('mtu')}) "
                    f"of {host.get('host')} ({host.get('hostname')}: {host.get('kernel')}, "
                    f"protolab {host.get('protolab')})",
                )
            )
        elif isinstance(host, dict):
            environment.append((role, f"{host.get('address')} in {host.get('netns')}"))
    stats = run.table("tcp_stats")
    if isinstance(meta.get("clock"), dict) and stats is not None and "handshake_rtt_ms" in stats:
        rtt = as_float(stats["handshake_rtt_ms"]).dropna()
        if len(rtt):  # between real hosts: the path's own round trip, as TCP met it
            environment.append(("path RTT (TCP handshake)", f"{float(rtt.min()):.3f} ms"))
    clock = meta.get("clock")
    if isinstance(clock, dict):
        environment.append(
            (
                "clocks (server minus client)",
                f"{_ms(clock.get('offset_before_ns'))} ± {_ms(clock.get('bound_before_ns'))} ms "
                f"before, {_ms(clock.get('offset_after_ns'))} ± "
                f"{_ms(clock.get('bound_after_ns'))} ms after, drift "
                f"{clock.get('drift_ppm')} ppm: one-way delays are corrected by it and good to "
                "± the bound (summary owd_bound_ms); round trips need one clock only",
            )
        )
    for key in ("testbed_setup_s", "testbed_teardown_s", "engine_overload_drops"):
        if key in meta:
            environment.append((key.replace("_", " "), meta[key]))
    truth = meta.get("ground_truth")
    if isinstance(truth, dict):
        environment += [(f"ground truth {k}", v) for k, v in truth.items()]
    packages = meta.get("packages")
    if isinstance(packages, dict):
        environment.append(
            ("versions", ", ".join(f"{k} {v}" for k, v in packages.items() if v is not None))
        )
    scenario = run.scenario
    settings: list[tuple[str, object]] = [
        (key, scenario[key])
        for key in ("name", "description", "seed", "protocols", "congestion_control", "nagle")
        if key in scenario
    ]
    settings = [(k, ", ".join(map(str, v)) if isinstance(v, list) else v) for k, v in settings]
    for table in ("workload", "ports", "timeouts", "sweep"):
        if isinstance(scenario.get(table), dict):
            settings += _flatten(f"{table}.", scenario[table])
    impairment = scenario.get("impairment")
    if isinstance(impairment, dict) and impairment:
        settings += _flatten("impairment.", impairment)
    elif scenario:
        settings.append(("impairment", "none: a clean link"))
    body = (
        '<div class="grid"><div><h3>Scenario</h3>'
        + (h.key_value_table(settings) if settings else h.note("scenario.toml not available"))
        + "</div><div><h3>Environment (meta.json)</h3>"
        + h.key_value_table(environment)
        + "</div></div>"
    )
    if run.scenario_text is not None:
        body += (
            "<details><summary>scenario.toml as run</summary>"
            f"<pre>{h.esc(run.scenario_text)}</pre></details>"
        )
    return body


def _summary(run: RunData) -> str:
    summary = run.table("summary")
    if summary is None or "protocol" not in summary or summary.empty:
        return h.note(f"{_NOT_AVAILABLE}: no summary.csv.")
    protocols = [str(p) for p in summary["protocol"]]
    head = '<th class="key">metric</th>' + "".join(
        f"<th>{h.protocol_tag(p, i)}</th>" for i, p in enumerate(protocols)
    )
    known = {column for column, _, _ in _SUMMARY_ROWS}
    extra = [(c, c, "") for c in summary.columns if c != "protocol" and c not in known]
    alarm = late_message(late_protocols(summary))
    rows = []
    for column, label, pattern in (*_SUMMARY_ROWS, *extra):
        if column not in summary:
            continue
        values = summary[column]
        if values.isna().all():
            continue
        if column.endswith("_bps"):
            values = as_float(values) / 1e6
        formatter = h.fmt_number(pattern) if pattern else h.fmt_value
        cells = "".join(f"<td>{h.esc(formatter(v))}</td>" for v in values)
        rows.append(f'<tr><td class="key">{h.esc(label)}</td>{cells}</tr>')
    return (
        (h.note(alarm) if alarm else "")
        + f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        + h.caption(
            "From summary.csv (see results/README.md for the definitions). Delays are over "
            "delivered messages; goodput is delivered bytes × 8 over the time from first send "
            "to last delivery."
        )
        + h.caption(
            "Loss % and out of order are what the receiving application saw; the engine's "
            "rows are what the link itself did to the exchange's packets (both directions, "
            "ACKs included). RFC 4737 counts a message out of order when it arrives after a "
            "higher sequence number, so one packet sent ahead by the engine can make every "
            "packet it overtook count: the two figures differ by definition, not by error."
        )
        + h.caption(
            "Engine: sent late is how long after the time its model scheduled each packet "
            "the engine's write of it ended (p99 of the worse direction): the host's own "
            "share of every delay above, which the scenario did not ask for. Tens of "
            "microseconds on a quiet host; milliseconds mean the host did not keep the "
            "schedule (other work, or the virtual machine stopped), and the delays and "
            "jitter measured include it."
        )
        + h.caption(
            "Offered load is the workload's rate × message size; the sender's achieved rate "
            "is what the application managed to hand to send() (lower when TCP's window was "
            "full and send() blocked). Sender backlog is the time from send() to the "
            "message's first appearance on the client's capture: microseconds for UDP and "
            "RAW, and for TCP also the wait in the socket buffer for the window, a delay "
            "the link did not add."
        )
    )


def _delay(prepared: dict[str, pd.DataFrame]) -> str:
    if not prepared:
        return h.note(f"{_NOT_AVAILABLE}: no messages.csv.")
    parts = []
    cdf = figs.cdf_figure(prepared, "owd_ms", "one-way delay (ms)")
    if cdf is not None:
        parts.append("<h3>Distribution (CDF)</h3>" + h.figure(cdf, 380))
        parts.append(
            h.caption(
                "Fraction of the messages sent that arrived within a given one-way delay; a "
                "curve that stops below 100 % lost the rest. Buttons switch the x axis to log."
            )
        )
    rtt = figs.cdf_figure(prepared, "rtt_ms", "round-trip time (ms)")
    if rtt is not None:
        parts.append("<h3>Round-trip time (echo), CDF</h3>" + h.figure(rtt, 340))
        parts.append(h.caption("Send to echo back at the client, over messages sent."))
    fig, thinned = figs.delay_figure(prepared)
    parts.append("<h3>Over time</h3>" + h.figure(fig, 380))
    parts.append(
        h.caption(
            "One-way delay of every delivered message against its send time. TCP's spikes are "
            "retransmissions and the messages queued behind them." + thinned
        )
    )
    return "".join(parts)


def _sequence(prepared: dict[str, pd.DataFrame]) -> str:
    if not prepared:
        return h.note(f"{_NOT_AVAILABLE}: no messages.csv.")
    fig, thinned = figs.sequence_figure(prepared)
    return h.figure(fig, 460) + h.caption(
        "Each dot is a message at the time it reached the server application; the grey line "
        "is when it was sent, so the horizontal gap is its delay. Red crosses are messages "
        "that never arrived (drawn at their send time); open diamonds arrived after a higher "
        "sequence number. TCP never shows either: it delivers late instead." + thinned
    )


def _loss(prepared: dict[str, pd.DataFrame]) -> str:
    if not prepared:
        return h.note(f"{_NOT_AVAILABLE}: no messages.csv.")
    fig, width = figs.loss_figure(prepared)
    return h.figure(fig, 320) + h.caption(
        f"Messages that never reached the server application, per {width:g} ms of send time. "
        "Hover for the number sent in the bin and the percentage."
    )


def _tcp_t0(prepared: dict[str, pd.DataFrame]) -> float | None:
    tcp = prepared.get("tcp")
    return float(tcp.attrs["t0_ns"]) if tcp is not None and "t0_ns" in tcp.attrs else None


def _over_time(run: RunData) -> str:
    table = run.table("timeseries")
    if table is None:
        return h.note(_NOT_WRITTEN.format(table="timeseries.csv") + ".")
    frames = series.interval_frames(table)
    if not frames:
        return h.note("timeseries.csv has no intervals.")
    width = _interval_ms(frames)
    throughput, thinned = series.throughput_figure(frames)
    delay, delay_thinned = series.delay_figure(frames)
    return (
        "<h3>Throughput and loss</h3>"
        + h.figure(throughput, 460)
        + h.caption(
            f"timeseries.csv, per {width} interval and protocol, each protocol's clock starting "
            "at its own first send (the protocols run one after the other). Top: throughput "
            "as the receiving application saw it, message bytes (headers excluded) that "
            "arrived in the interval × 8 / the interval's length. Bottom: messages lost, "
            "charged to the interval they were sent in (as iperf3 and flent count), whereas "
            "throughput counts at arrival: a loss shows where it left, its effect on TCP "
            "(a stall while it is resent) where the data arrived. Every interval is as wide "
            "as the others, the last one too (the protocol's last event falls inside it)." + thinned
        )
        + "<h3>One-way delay</h3>"
        + h.figure(delay, 380)
        + h.caption(
            "Median (solid) and 99th percentile (dotted) one-way delay of the messages that "
            "arrived in each interval: delay is charged to the arrival interval; a gap is an "
            "interval in which nothing arrived. The delay runs from the application's send() "
            "to its receipt, so TCP's includes the time a message waited in the sender's "
            "socket buffer for the window, and its retransmissions. A p50 that climbs is a "
            "queue filling; p99 far above p50 is a few messages held back (a resent segment "
            "and the messages queued behind it). The buttons switch the y axis to log."
            + delay_thinned
        )
    )


def _has(run: RunData, table: str, anchor: str) -> bool:
    """Whether a section that only some workloads produce belongs on this page."""
    frame = run.table(table)
    if frame is None:
        return False
    if anchor == "flows":  # one flow per protocol: the summary already says it all
        return "flow" in frame and bool((frame.groupby("protocol")["flow"].nunique() > 1).any())
    return True


def _probe(run: RunData) -> str:
    table = run.table("probe")
    assert table is not None
    fig = go.Figure()
    for index, ((load, kind), probes) in enumerate(
        table.groupby(["load_protocol", "probe"], sort=False)
    ):
        t0 = as_float(probes["t_send_ns"]).min()
        fig.add_trace(
            go.Scatter(
                x=(as_float(probes["t_send_ns"]) - t0) / 1e9,
                y=as_float(probes["rtt_ns"]) / 1e6,
                mode="markers",
                marker={"size": 4, "color": h.protocol_color(str(kind), index)},
                name=h.esc(f"{str(kind).upper()} probe beside the {str(load).upper()} load"),
                customdata=probes["phase"].astype(str) if "phase" in probes else None,
                hovertemplate="%{y:.1f} ms at %{x:.2f} s (%{customdata})<extra></extra>",
            )
        )
    fig.update_xaxes(title_text="seconds from the probe's first send (one probe run per load)")
    fig.update_yaxes(title_text="probe round trip (ms)", rangemode="tozero")
    summary = run.table("summary")
    rows: list[dict[str, object]] = []
    if summary is not None and "probe_rtt_load_ms" in summary:
        for record in summary.to_dict(orient="records"):
            rows.append(
                {
                    "load": str(record["protocol"]).upper(),
                    "idle p50 ms": record.get("probe_rtt_idle_ms"),
                    "under load p50 ms": record.get("probe_rtt_load_ms"),
                    "under load p99 ms": record.get("probe_rtt_load_p99_ms"),
                    "after p50 ms": record.get("probe_rtt_after_ms"),
                    "probes lost": record.get("probe_lost"),
                }
            )
    table_html: str = h.table(pd.DataFrame(rows), key_column="load") if rows else ""
    return (
        h.figure(fig, 380)
        + h.caption(
            "probe.csv: a small UDP and a TCP request/response (latency_under_load), from "
            "before each protocol's bulk load starts until after it ends. The round trip "
            "idle is the link's; under load it adds the time the probe waits in the "
            "bottleneck queue the load keeps full (bufferbloat). A missing point is a probe "
            "that got no answer (dropped at a full queue). The table gives the UDP probe's "
            "figures by phase (the TCP probe adds its own retransmissions)."
        )
        + table_html
    )


def _flows(run: RunData) -> str:
    table = run.table("flows")
    assert table is not None
    shown = table.assign(goodput_mbps=as_float(table["goodput_bps"]) / 1e6).drop(
        columns=["goodput_bps"]
    )
    summary = run.table("summary")
    jain = ""
    if summary is not None and "jain_index" in summary:
        for record in summary.to_dict(orient="records"):
            index = record.get("jain_index")
            if isinstance(index, float | int) and not pd.isna(index):
                jain += (
                    f"{str(record['protocol']).upper()}: Jain's fairness index "
                    f"{float(index):.3f} over {int(record['flows'])} flows. "
                )
    html = h.table(shown, key_column="flow") + h.caption(
        jain + "flows.csv: each flow's goodput (its delivered message bytes from its first "
        "send to its last delivery) and its share of its protocol's flows going the same way "
        "(direction: client_to_server, or server_to_client when the server sent, as with "
        "iperf3 -R). Jain's index is (Σx)² / (n Σx²) over the goodputs of the flows going "
        "one way (bidirectional: the less fair way): 1 when all get the same, 1/n when one "
        "gets everything."
    )
    ways = {
        (str(r["protocol"]), str(r["flow"])): " (server → client)"
        for r in table.to_dict(orient="records")
        if r.get("direction") == "server_to_client"
    }
    per_flow = run.table("flow_timeseries")
    if per_flow is None or per_flow.empty:
        return html
    fig = go.Figure()
    for index, ((protocol, flow), rows) in enumerate(
        per_flow.groupby(["protocol", "flow"], sort=True)
    ):
        fig.add_trace(
            go.Scatter(
                x=as_float(rows["t_start_s"]),
                y=as_float(rows["throughput_bps"]) / 1e6,
                mode="lines",
                line={"shape": "hv", "color": h.protocol_color("", index)},
                name=h.esc(
                    f"{str(protocol).upper()} flow {flow}{ways.get((str(protocol), str(flow)), '')}"
                ),
                hovertemplate="%{y:.3f} Mbit/s at %{x:.2f} s<extra>%{fullData.name}</extra>",
            )
        )
    fig.update_xaxes(title_text="seconds from the protocol's first send")
    fig.update_yaxes(title_text="throughput (Mbit/s)", rangemode="tozero")
    return (
        html
        + h.figure(fig, 380)
        + h.caption(
            "flow_timeseries.csv: each flow's throughput per interval (message bytes that "
            "reached the application in it), every flow on its protocol's clock, so the "
            "curves show how the flows converge to their shares, or do not."
        )
    )


def _interval_ms(frames: dict[str, pd.DataFrame]) -> str:
    """The intervals' width as the table says it (the first full interval), for captions."""
    for frame in frames.values():
        widths = (frame["t_end_s"] - frame["t_start_s"]).iloc[:-1]
        if len(widths) and widths.notna().any():
            return f"{float(widths.dropna().iloc[0]) * 1000:g} ms"
    return "time"


def _sender_state(run: RunData, prepared: dict[str, pd.DataFrame]) -> str:
    table = run.table("tcp_info")
    if table is None:
        return h.note(_NOT_WRITTEN.format(table="tcp_info.csv") + ", or it had no TCP exchange.")
    if table.empty or "t_ns" not in table:
        return h.note("tcp_info.csv has no samples.")
    t0 = _tcp_t0(prepared)
    state = series.sender_frame(table, t0)
    origin = "TCP's first send" if t0 is not None else "the first sample (messages.csv missing)"
    cwnd, thinned = series.cwnd_figure(state)
    rtt, rtt_thinned = series.rtt_figure(state)
    first = state.loc[state["flow"] == state["flow"].iloc[0]] if len(state) else state
    step = first["s"].diff().median()
    spacing = f"every ~{step * 1000:.0f} ms" if pd.notna(step) else "(one sample)"
    count = len(series.flows(state))
    several = (
        f" The run had {count} TCP flows: one colour per flow (flow numbers as in "
        "tcp_info.csv); the strip has a row per flow, coloured by state."
        if count > 1
        else ""
    )
    algorithm = ""
    if "congestion_control" in table:
        names = [str(n) for n in pd.unique(table["congestion_control"].dropna())]
        algorithm = f" Congestion control: {', '.join(names)}." if names else ""
    return (
        "<h3>Congestion window and bytes in flight</h3>"
        + h.figure(cwnd, 440)
        + h.caption(
            "tcp_info.csv: the TCP sender's own state, getsockopt(TCP_INFO) on the client "
            f"{spacing}, against seconds since {origin} (the x axis of the time series "
            "above). cwnd is the congestion window × MSS; in flight is what the kernel "
            "counts as in the network (RFC 6675's pipe: unacknowledged − SACKed − lost + "
            "retransmitted segments, × MSS); ssthresh (× MSS) appears with the first loss. "
            "In flight pinned at cwnd: the sender was limited by its congestion window; "
            "below it: by the application or the receiver's window (the peer's receive "
            "window, snd_wnd, is in the legend, hidden). The strip shows the kernel's "
            "congestion state at each sample (recovery, loss: after a drop). Each sample is "
            "an instant: a change that came and went between two samples does not show."
            + several
            + algorithm
            + thinned
        )
        + "<h3>Round-trip time as the sender estimates it</h3>"
        + h.figure(rtt, 360)
        + h.caption(
            "The kernel's smoothed RTT (srtt, RFC 6298) with a band of ± rttvar, and the "
            "lowest RTT it has measured (min_rtt, dashed); the retransmission timeout (RTO) "
            "is in the legend, hidden. srtt above min_rtt is time spent in queues (the "
            "engine's, on a rate-limited link) or waiting for the receiver's delayed ACKs."
            + (" Several flows: srtt and min_rtt of each, in its colour." if count > 1 else "")
            + rtt_thinned
        )
    )


def _tcp_segments(run: RunData, prepared: dict[str, pd.DataFrame]) -> str:
    segments = run.table("tcp_segments")
    if segments is None:
        return h.note(f"{_NOT_AVAILABLE}: no tcp_segments.csv (wire analysis of the captures).")
    if segments.empty or "ts_ns" not in segments:
        return h.note("tcp_segments.csv has no segments.")
    graphs = wire.time_sequence_figures(segments, _tcp_t0(prepared))
    parts = []
    for graph in graphs:
        if len(graphs) > 1:
            parts.append(f"<h3>{h.esc(graph.title)}</h3>")
        if not graph.has_data:
            parts.append(h.note("No data segment was captured at its sender."))
            continue
        parts.append(h.figure(graph.figure, graph.height))
        parts.append(h.caption(_time_sequence_caption(graph)))
    stats = run.table("tcp_stats")
    counts = (
        h.table(stats) + h.caption("tcp_stats.csv: the wire analysis's counts per connection.")
        if stats is not None and not stats.empty
        else h.table(wire.tcp_event_counts(segments), key_column="direction")
    )
    return "".join(parts) + counts


def _time_sequence_caption(graph: wire.TimeSequence) -> str:
    missing = []
    if not graph.window_column:
        missing.append("the receive window (this tcp_segments.csv has no window_bytes column)")
    elif not graph.has_window:
        missing.append("the receive window (its scale is unknown: the handshake was not captured)")
    if not graph.sack_column:
        missing.append("SACK blocks (this tcp_segments.csv has no sack column)")
    elif not graph.has_sack:
        missing.append("SACK blocks (the receiver sent none)")
    return (
        "Time-sequence graph (Stevens, tcptrace) from tcp_segments.csv, one panel per "
        "direction that carried data, drawn at that direction's sender capture "
        "(client→server: the client's, before the impairment): each data segment is a "
        "bar from its first to one past its last byte (sequence numbers relative to the "
        "ISN, first data byte 1) at the time it left, retransmissions red, fast "
        "retransmissions orange, spurious ones (the receiver already had the bytes) "
        "diamonds. The green step line is the cumulative ACK as it came back, the grey "
        "one above it the right edge of the receiver's advertised window (ACK + window "
        "in bytes, window scaling applied), purple bars the SACK blocks (RFC 2018) "
        "carried by the ACKs. The slope of the bars is the sending rate; their distance "
        "above the ACK line the data in flight; bars reaching the window edge were held "
        "back by the receiver. The strip below, when anything happened, shows when each "
        "kind of event did, at the capture where the analysis judges it (retransmissions "
        "and duplicate ACKs where sent, out-of-order and spurious arrivals where "
        "received). Drag to zoom: a loss and its recovery span a few round trips."
        + (f" Not drawn: {'; '.join(missing)}." if missing else "")
        + graph.thinned
    )


def _hol(run: RunData, prepared: dict[str, pd.DataFrame]) -> str:
    hol = run.table("hol")
    if hol is None:
        return h.note(f"{_NOT_AVAILABLE}: no hol.csv.")
    if hol.empty or "seq" not in hol or "hol_wait_ns" not in hol:
        return h.note("hol.csv has no messages.")
    fig, stats = wire.hol_figure(hol, prepared.get("tcp"))
    return (
        h.figure(fig, 360)
        + h.caption(
            "hol.csv: how long each TCP message waited in the receiver after its own bytes had "
            "arrived, behind earlier data that was still missing (head-of-line blocking), "
            "against when the application got it."
        )
        + h.table(stats)
    )


def _impairment(run: RunData) -> str:
    accounting = run.table("accounting")
    by_protocol = run.table("impairment_by_protocol")
    if accounting is None and by_protocol is None:
        return h.note(f"{_NOT_AVAILABLE}: the engine's ground truth was not written.")
    parts = []
    if by_protocol is not None and not by_protocol.empty:
        fig = figs.impairment_figure(by_protocol)
        if fig is not None:
            parts.append(h.figure(fig, 320))
        else:
            parts.append(h.note("The engine dropped, duplicated, corrupted or reordered nothing."))
        parts.append("<h3>Per protocol and direction (impairment_by_protocol.csv)</h3>")
        parts.append(h.table(by_protocol, key_column="protocol"))
    if accounting is not None and not accounting.empty:
        parts.append("<h3>Per direction (accounting.csv)</h3>")
        parts.append(h.table(accounting, key_column="direction"))
        parts.append(
            h.caption(
                "The engine's books: every packet in was forwarded or dropped; held_mean_ms is "
                "the mean time a packet was delayed; closes says the books balance."
            )
        )
    return "".join(parts)


def _kernel(run: RunData) -> str:
    exchanges = run.table("exchanges")
    if exchanges is None or exchanges.empty or "protocol" not in exchanges:
        return h.note(f"{_NOT_AVAILABLE}: no exchanges.csv.")
    frame = exchanges.set_index("protocol")
    rows: dict[str, pd.Series] = {}
    for column in ("client_port", "server_port", "congestion_control"):
        if column in frame:
            rows[column.replace("_", " ")] = frame[column]
    if "started_ns" in frame and "ended_ns" in frame:
        rows["exchange duration (s)"] = (
            as_float(frame["ended_ns"]) - as_float(frame["started_ns"])
        ) / 1e9
    counters = [c for c in frame.columns if c.startswith(("client.", "server."))]
    for column in counters:
        values = as_float(frame[column])
        if values.fillna(0).ne(0).any():
            rows[column] = values
    if not rows:
        return h.note("exchanges.csv has neither ports nor kernel counters.")
    table = pd.DataFrame(rows).T.reset_index()
    table.columns = ["", *[str(p).upper() for p in frame.index]]
    return h.table(table, key_column="") + h.caption(
        "Ports of each exchange and the increase of the kernel's SNMP counters in the client "
        "and server namespaces during it (exchanges.csv); counters that stayed 0 are hidden."
    )


def _captures(run: RunData) -> str:
    captures = run.table("captures")
    if captures is None or captures.empty:
        return h.note(f"{_NOT_AVAILABLE}: no captures.csv.")
    frame = captures.copy()
    if "path" in frame:
        links = []
        for value in frame["path"]:
            path = str(value)
            exists = not h.is_missing(value) and is_file_safely(run.folder / path)
            links.append(
                f'<a href="{h.href(path)}">{h.esc(path)}</a>'
                if exists
                else f"{h.esc(path)} (missing)"
            )
        frame["path"] = links
    drop = [c for c in ("started_ns", "stopped_ns") if c in frame]
    if len(drop) == 2:
        frame["duration_s"] = (as_float(frame["stopped_ns"]) - as_float(frame["started_ns"])) / 1e9
        frame = frame.drop(columns=drop)
    return h.table(frame, raw_html=["path"], key_column="protocol") + h.caption(
        "captures.csv: what the capture on each end of the link saw. Links open the pcap "
        "files next to this report (Wireshark: tshark -r capture/...). kernel_drops > 0 means "
        "the capture missed packets."
    )
