"""``lab run``: scenario -> testbed -> impairment -> exchanges -> analysis -> results.

The runner only sequences the stages; each stage lives in its own module. It never
prints: progress goes to an optional callback, so the CLI (rich) and tests share it.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lab._signals import held_signals
from lab.analysis.context import (
    FIRST_TX_COLUMNS,
    datagram_first_transmissions,
    engine_figures,
    sending_figures,
)
from lab.analysis.impairment import (
    DATAGRAM_PROTOCOLS,
    datagram_losses_explained,
    impairment_by_protocol,
)
from lab.analysis.summary import summarize
from lab.analysis.wire import analyze_run as analyze_wire
from lab.capture.during_run import capture_link, captures_table, pcap_path
from lab.capture.sniffer import CaptureStats
from lab.errors import ExchangeError, Interrupted, TestbedError
from lab.exchanges import ExchangeResult, run_exchange
from lab.impairment.groundtruth import accounting, load_ground_truth
from lab.impairment.spec import Direction
from lab.pcap import read_pcap
from lab.report import render_report, render_sweep
from lab.results import RunFolder, now_iso
from lab.scenario import Scenario, SweepCell, sweep_cells
from lab.testbed import (
    choose_backend,
    ground_truth_path,
    new_run_id,
    open_testbed,
    require_root,
)

Progress = Callable[[str], None]


@dataclass
class RunOutcome:
    """A finished run: where its results are and the summary table."""

    path: Path
    summary: pd.DataFrame
    messages: pd.DataFrame
    exchanges: list[ExchangeResult]
    setup_s: float
    teardown_s: float
    failed: dict[str, str] = field(default_factory=dict)
    """Protocols whose exchange failed, with why; the others' results are kept."""
    report_path: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.failed


def _quiet(_: str) -> None:
    return None


def exchanges_table(exchanges: list[ExchangeResult]) -> pd.DataFrame:
    """One row per exchange: ports, times and the kernel's counters on both ends."""
    rows = []
    for exchange in exchanges:
        row: dict[str, object] = {
            "protocol": exchange.protocol.value,
            "client_port": exchange.client.local_port,
            "server_port": exchange.server.local_port,
            "congestion_control": exchange.client.congestion_control or None,
            "started_ns": exchange.started_ns,
            "ended_ns": exchange.ended_ns,
        }
        row.update({f"client.{k}": v for k, v in sorted(exchange.client.counters.items())})
        row.update({f"server.{k}": v for k, v in sorted(exchange.server.counters.items())})
        rows.append(row)
    return pd.DataFrame(rows)


def _write_ground_truth(
    folder: RunFolder,
    npz: Path,
    messages: pd.DataFrame,
    exchange_rows: pd.DataFrame,
    summary: pd.DataFrame,
) -> dict[str, object]:
    """impairment.csv, accounting.csv and the per-protocol join; adds columns to ``summary``.

    ``npz`` is the engine's record, kept in the lab's own state folder (root's), never
    in the results folder, and removed once its tables are written.
    """
    if not npz.exists():
        return {"ground_truth": None}
    ground_truth, engine_meta = load_ground_truth(npz)
    folder.write_table("impairment", ground_truth)
    books = accounting(ground_truth)
    folder.write_table("accounting", books)
    by_protocol = impairment_by_protocol(ground_truth, exchange_rows)
    folder.write_table("impairment_by_protocol", by_protocol)
    engine = engine_figures(by_protocol).set_index("protocol")
    for column in engine.columns:
        summary[column] = summary["protocol"].map(engine[column])
    npz.unlink()
    summary["accounting_closes"] = bool(books["closes"].all()) if len(books) else True
    explained: dict[str, int] = {}
    for _, row in exchange_rows.iterrows():
        if row["protocol"] in DATAGRAM_PROTOCOLS:  # udp and raw: one packet per message
            losses = datagram_losses_explained(
                messages, ground_truth, int(row["server_port"]), str(row["protocol"])
            )
            explained[str(row["protocol"])] = int(losses["explained"].sum())
    if explained:
        summary["losses_explained"] = summary["protocol"].map(explained).astype("Int64")
    return {
        "ground_truth": {
            "packets": len(ground_truth),
            "accounting_closes": bool(books["closes"].all()) if len(books) else True,
            "write_errors": engine_meta.get("write_errors", 0),
        }
    }


def _add_sending_columns(
    summary: pd.DataFrame,
    messages: pd.DataFrame,
    wire: dict[str, pd.DataFrame],
    folder: Path,
    *,
    client_address: str,
    offered_bps: float,
) -> None:
    """Offered vs achieved send rate and the sender's backlog, next to the RFC metrics."""
    parts = []
    hol = wire.get("hol")
    if hol is not None and len(hol):  # TCP: first transmission of each message's last byte
        parts.append(hol[["seq", "t_first_tx_ns"]].assign(protocol="tcp"))
    address = int(ipaddress.IPv4Address(client_address))
    for protocol in DATAGRAM_PROTOCOLS:
        path = pcap_path(folder, protocol, "client")
        if (summary["protocol"] == protocol).any() and path.exists():
            packets = read_pcap(path).packets
            parts.append(datagram_first_transmissions(packets, protocol, address))
    first_tx = (
        pd.concat([p[list(FIRST_TX_COLUMNS)] for p in parts], ignore_index=True)
        if parts
        else pd.DataFrame(columns=list(FIRST_TX_COLUMNS))
    )
    figures = sending_figures(messages, first_tx, offered_bps).set_index("protocol")
    for column in figures.columns:
        summary[column] = summary["protocol"].map(figures[column])


def _add_wire_columns(summary: pd.DataFrame, wire: dict[str, pd.DataFrame]) -> None:
    """Put the wire view next to the application's: retransmissions, HOL, explained."""
    stats = wire.get("tcp_stats")
    if stats is not None and len(stats):
        tcp = summary["protocol"] == "tcp"
        summary.loc[tcp, "tcp_retransmissions"] = int(stats["retransmissions"].sum())
        hol = wire.get("hol")
        if hol is not None and len(hol):
            summary.loc[tcp, "hol_blocked"] = int(hol["blocked"].sum())
            summary.loc[tcp, "hol_wait_p99_ms"] = float(hol["hol_wait_ns"].quantile(0.99)) / 1e6
    explained = wire.get("explained_summary")
    if explained is not None and len(explained):
        per_protocol = explained.groupby("protocol")[["explained", "unexplained"]].sum()
        for column in ("explained", "unexplained"):
            summary[column] = summary["protocol"].map(per_protocol[column]).astype("Int64")


def run_scenario(
    scenario: Scenario,
    scenario_file: Path,
    results_root: Path,
    progress: Progress = _quiet,
    *,
    folder_name: str | None = None,
    scenario_text: str | None = None,
    meta: dict[str, object] | None = None,
    render: bool = True,
) -> RunOutcome:
    """Run every protocol of ``scenario``; the results folder is complete only on success.

    With ``render`` the run's report.html is written before the run is marked complete.
    """
    # no root or an unusable backend: fail before anything is written
    require_root()
    choose_backend(scenario.impairment)
    run_id = new_run_id()
    ground_truth_npz = ground_truth_path(run_id)
    exchanges: list[ExchangeResult] = []
    captures: list[tuple[str, str, CaptureStats]] = []
    failed: dict[str, str] = {}
    folder: RunFolder | None = None
    try:
        with held_signals():  # the folder is either not made, or made and in hand
            folder = RunFolder.create(
                results_root,
                folder_name or scenario.name,
                scenario_file,
                scenario.seed,
                scenario_text=scenario_text,
            )
        folder.meta["scenario"] = scenario.name
        folder.meta.update(meta or {})
        progress(f"results: {folder.path}")
        with open_testbed(
            scenario.impairment,
            scenario.seed,
            scenario.congestion_control,
            ground_truth_npz,
            run_id=run_id,
        ) as testbed:
            progress(f"testbed {testbed.run_id} up in {testbed.setup_s * 1000:.0f} ms")
            folder.meta.update(
                run_id=testbed.run_id,
                congestion_control=testbed.congestion_control,
                tcp_nodelay=not scenario.nagle,
                impairment_backend=testbed.backend,
                client={"netns": testbed.client.netns, "address": testbed.client.address},
                server={"netns": testbed.server.netns, "address": testbed.server.address},
            )
            folder.save_meta()
            for protocol in scenario.protocols:
                progress(f"{protocol.value}: {scenario.workload.count} messages")
                started = time.perf_counter()
                hosts = (testbed.client, testbed.server)
                try:
                    with capture_link(folder.io_path, protocol.value, hosts) as stats:
                        exchanges.append(run_exchange(scenario, protocol, testbed))
                except ExchangeError as error:  # the other protocols still run and count
                    failed[protocol.value] = str(error)
                    progress(f"{protocol.value}: failed: {error}")
                    continue
                captures += [
                    (protocol.value, role, s)
                    for role, s in zip(("client", "server"), stats, strict=True)
                ]
                progress(f"{protocol.value}: done in {time.perf_counter() - started:.2f} s")
            folder.meta["protocol_status"] = {
                p.value: failed.get(p.value, "complete") for p in scenario.protocols
            }
            if not exchanges:
                raise ExchangeError(
                    "every exchange failed: "
                    + "; ".join(f"{name}: {why}" for name, why in failed.items())
                )
            link_stats = testbed.link_stats()
        progress(f"testbed down in {testbed.teardown_s * 1000:.0f} ms")
        messages = pd.concat([e.messages for e in exchanges], ignore_index=True)
        summary = summarize(messages)
        exchange_rows = exchanges_table(exchanges)
        folder.write_table("messages", messages)
        folder.write_table("exchanges", exchange_rows)
        engine = _write_ground_truth(folder, ground_truth_npz, messages, exchange_rows, summary)
        capture_rows = captures_table(captures)
        folder.write_table("captures", capture_rows)
        drops = capture_rows.groupby("protocol")["kernel_drops"].sum()
        summary["capture_drops"] = summary["protocol"].map(drops).fillna(0).astype("int64")
        progress("wire analysis")
        wire = analyze_wire(folder.io_path)
        for name, table in wire.items():
            folder.write_table(name, table)
        _add_wire_columns(summary, wire)
        workload = scenario.workload
        _add_sending_columns(
            summary,
            messages,
            wire,
            folder.io_path,
            client_address=testbed.client.address,
            offered_bps=workload.messages_per_second * workload.size * 8,
        )
        folder.write_table("summary", summary)
        overload = sum(s.get("tx_dropped", 0) for s in link_stats.values())
        if testbed.backend == "userspace" and engine["ground_truth"] is None:
            # every table but the engine's is written; without its record of every
            # packet, losses cannot be explained: the run is not complete
            raise TestbedError(
                f"{folder.path}: the impairment engine did not write its ground truth "
                "(killed before it could): run incomplete"
            )
        folder.meta["drain_s"] = scenario.timeouts.drain_s  # derived when the file gives none
        run_fields: dict[str, Any] = {
            "testbed_setup_s": round(testbed.setup_s, 4),
            "testbed_teardown_s": round(testbed.teardown_s, 4),
            "link_stats": link_stats,
            "engine_overload_drops": overload,
            **engine,
        }
        report_path: Path | None = None
        if failed:  # every file of what ran is written; the run as a whole is not complete
            reason = "; ".join(f"{name} failed: {why}" for name, why in failed.items())
            folder.meta.update(run_fields, complete=False, incomplete_reason=reason)
            if render:
                report_path = render_report(folder.path, meta=folder.meta)
            folder.abandon(reason)
        else:
            # the report first, drawn with the meta about to be written: a run is
            # complete only when every file, the report included, is there
            folder.meta.update(run_fields, ended=now_iso())
            if render:
                progress("report")
                report_path = render_report(folder.path, meta={**folder.meta, "complete": True})
            folder.finish()
    except KeyboardInterrupt as error:
        # open_testbed has torn down whatever it built before this runs
        if folder is None:
            raise Interrupted("nothing was written") from error
        folder.abandon("interrupted")
        raise Interrupted(f"no testbed is left; {folder.path} is marked incomplete") from error
    except BaseException as error:
        if folder is not None:
            folder.abandon(f"{type(error).__name__}: {error}")
        raise
    finally:
        ground_truth_npz.unlink(missing_ok=True)  # its tables are written, or the run failed
    return RunOutcome(
        folder.path,
        summary,
        messages,
        exchanges,
        testbed.setup_s,
        testbed.teardown_s,
        failed,
        report_path,
    )


#: TCP payload per segment on the 1500-byte TUN link: 1500 - 20 (IP) - 20 (TCP) - 12 (timestamps).
LINK_MSS_BYTES = 1448


@dataclass
class SweepOutcome:
    """A finished sweep: its aggregate folder and the tidy table."""

    path: Path
    table: pd.DataFrame
    failed: dict[str, str] = field(default_factory=dict)
    """Cells where a protocol's exchange failed (label -> why); their other rows are kept."""

    @property
    def report_path(self) -> Path:
        return self.path / "sweep.html"


def _base_rtt_ms(scenario: Scenario) -> float:
    spec = scenario.impairment
    return sum(spec.for_direction(d).delay_ms for d in Direction)


def run_sweep(
    scenario: Scenario,
    scenario_file: Path,
    results_root: Path,
    on_cell: Callable[[int, int, SweepCell], None] = lambda *_: None,
    progress: Progress = _quiet,
) -> SweepOutcome:
    """Run every cell of the sweep; ``sweep.csv`` has one row per cell x protocol x repetition."""
    cells = sweep_cells(scenario, scenario_file)
    require_root()
    for cell in cells:
        choose_backend(cell.scenario.impairment)
    aggregate = RunFolder.create(
        results_root, f"{scenario.name}-sweep", scenario_file, scenario.seed
    )
    assert scenario.sweep is not None
    aggregate.meta.update(
        scenario=scenario.name,
        kind="sweep",
        parameter=scenario.sweep.parameter,
        values=scenario.sweep.values,
        repeat=scenario.sweep.repeat,
    )
    aggregate.save_meta()
    rows: list[pd.DataFrame] = []
    failed_cells: dict[str, str] = {}
    try:
        for index, cell in enumerate(cells):
            on_cell(index, len(cells), cell)
            outcome = run_scenario(
                cell.scenario,
                scenario_file,
                aggregate.path / "runs",
                progress,
                folder_name=f"{scenario.name}-{cell.label}",
                scenario_text=cell.to_toml(scenario_file),
                meta={
                    "sweep_cell": {
                        "parameter": cell.parameter,
                        "value": cell.value,
                        "repetition": cell.repetition,
                    }
                },
                render=False,  # the sweep's page covers its cells
            )
            exchanges = exchanges_table(outcome.exchanges).set_index("protocol")
            retransmissions = exchanges.get("client.Tcp.RetransSegs")
            table = outcome.summary.copy()
            table.insert(0, "parameter", cell.parameter)
            table.insert(1, "value", cell.value)
            table.insert(2, "repetition", cell.repetition)
            table["run"] = str(outcome.path.relative_to(aggregate.path))
            table["base_rtt_ms"] = _base_rtt_ms(cell.scenario)
            table["mss_bytes"] = LINK_MSS_BYTES
            if retransmissions is not None:
                table["tcp_retransmissions"] = (
                    table["protocol"].map(retransmissions).where(table["protocol"] == "tcp")
                )
            rows.append(table)
            if outcome.failed:
                failed_cells[cell.label] = "; ".join(
                    f"{name} failed: {why}" for name, why in outcome.failed.items()
                )
        on_cell(len(cells), len(cells), cells[-1])
        tidy = pd.concat(rows, ignore_index=True)
        aggregate.write_table("sweep", tidy)
        aggregate.meta.update(cells=len(cells), ended=now_iso())
        if failed_cells:
            reason = "; ".join(f"cell {label}: {why}" for label, why in failed_cells.items())
            aggregate.meta.update(complete=False, incomplete_reason=reason)
            render_sweep(aggregate.path, meta=aggregate.meta)
            aggregate.abandon(reason)
        else:  # the page first: a sweep is complete only when every file is there
            render_sweep(aggregate.path, meta={**aggregate.meta, "complete": True})
            aggregate.finish()
    except BaseException as error:
        interrupted = isinstance(error, KeyboardInterrupt)
        reason = "interrupted" if interrupted else f"{type(error).__name__}: {error}"
        if rows:
            aggregate.write_table("sweep", pd.concat(rows, ignore_index=True))
        aggregate.abandon(reason)
        if interrupted:
            done = f"{error.what}; " if isinstance(error, Interrupted) else ""
            raise Interrupted(f"{done}the sweep {aggregate.path} is marked incomplete") from error
        raise
    return SweepOutcome(aggregate.path, tidy, failed_cells)
