"""``lab run``: scenario -> testbed -> impairment -> exchanges -> analysis -> results.

The runner only sequences the stages; each stage lives in its own module. It never
prints: progress goes to an optional callback, so the CLI (rich) and tests share it.
The two ends live in the lab's namespaces, or on two real hosts over SSH when the
scenario has ``[hosts]`` (:mod:`lab.hosts.site`): the same stages either way.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from typing import Protocol as Protocol_

import pandas as pd

from lab._signals import held_signals
from lab.analysis.clocks import on_client_clock
from lab.analysis.run import RunRecord, analyze_run
from lab.capture.during_run import capture_link, captures_table, pcap_path
from lab.capture.sniffer import CaptureStats
from lab.errors import ExchangeError, Interrupted, TestbedError
from lab.exchanges import (
    ExchangeResult,
    NamespaceSite,
    Site,
    run_exchange,
    start_probe,
    tcp_info_table,
)
from lab.impairment.groundtruth import accounting, load_ground_truth
from lab.impairment.spec import Direction
from lab.report import render_report, render_sweep
from lab.results import RunFolder, now_iso
from lab.scenario import Hosts, Protocol, Scenario, SweepCell, on_hosts, sweep_cells
from lab.testbed import (
    choose_backend,
    ground_truth_path,
    new_run_id,
    open_testbed,
    require_root,
)

if TYPE_CHECKING:
    from lab.hosts.clock import ClockModel

Progress = Callable[[str], None]


class _RunSite(Site, Protocol_):
    """What the runner needs of where it runs, beyond the exchanges' :class:`Site`."""

    @property
    def setup_s(self) -> float: ...
    @property
    def teardown_s(self) -> float: ...
    @property
    def backend(self) -> str: ...

    def capture(
        self, folder: Path, protocol: str
    ) -> AbstractContextManager[list[CaptureStats]]: ...
    def meta(self) -> dict[str, object]: ...
    def link_stats(self) -> dict[str, dict[str, int]]: ...
    def clock(self) -> ClockModel | None: ...


@dataclass(frozen=True)
class _TestbedSite(NamespaceSite):
    """The testbed's namespaces, as the runner uses them."""

    @property
    def setup_s(self) -> float:
        return self.testbed.setup_s

    @property
    def teardown_s(self) -> float:
        return self.testbed.teardown_s

    @property
    def backend(self) -> str:
        return self.testbed.backend

    def capture(self, folder: Path, protocol: str) -> AbstractContextManager[list[CaptureStats]]:
        return capture_link(folder, protocol, (self.testbed.client, self.testbed.server))

    def meta(self) -> dict[str, object]:
        testbed = self.testbed
        return {
            "run_id": testbed.run_id,
            "congestion_control": testbed.congestion_control,
            "impairment_backend": testbed.backend,
            "client": {"netns": testbed.client.netns, "address": testbed.client.address},
            "server": {"netns": testbed.server.netns, "address": testbed.server.address},
        }

    def link_stats(self) -> dict[str, dict[str, int]]:
        return self.testbed.link_stats()

    def clock(self) -> ClockModel | None:
        return None  # one machine, one clock


@contextlib.contextmanager
def _open_site(scenario: Scenario, scenario_file: Path, run_id: str) -> Iterator[_RunSite]:
    """The testbed (namespaces, link, impairment), or the two hosts of ``[hosts]``."""
    if scenario.hosts is not None:
        from lab.hosts.site import open_hosts  # noqa: PLC0415  # asyncssh: only when used

        with open_hosts(scenario.hosts, scenario_file.parent, scenario.impairment) as hosts:
            yield hosts
        return
    with open_testbed(
        scenario.impairment,
        scenario.seed,
        scenario.congestion_control,
        ground_truth_path(run_id),
        run_id=run_id,
    ) as testbed:
        yield _TestbedSite(testbed)


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
    """One row per exchange (per flow): ports, times and the kernel's counters on both ends.

    The counters are the namespace's: with parallel flows, each row's cover every flow
    while that one ran (they overlap; do not add them up).
    """
    rows = []
    for exchange in exchanges:
        row: dict[str, object] = {
            "protocol": exchange.protocol.value,
            "flow": exchange.flow,
            "direction": "server_to_client" if exchange.reverse else "client_to_server",
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


def _take_ground_truth(npz: Path) -> tuple[pd.DataFrame | None, dict[str, object]]:
    """The engine's per-packet record and what meta.json says of it; the file is removed.

    ``npz`` is kept in the lab's own state folder (root's), never in the results folder.
    """
    if not npz.exists():
        return None, {"ground_truth": None}
    ground_truth, engine_meta = load_ground_truth(npz)
    npz.unlink()
    books = accounting(ground_truth)
    return ground_truth, {
        "ground_truth": {
            "packets": len(ground_truth),
            "accounting_closes": bool(books["closes"].all()) if len(books) else True,
            "write_errors": engine_meta.get("write_errors", 0),
        }
    }


def _exchange(
    scenario: Scenario, protocol: Protocol, site: Site
) -> tuple[list[ExchangeResult], pd.DataFrame | None]:
    """One protocol's exchange; under latency_under_load with the probe around it.

    The probe runs ``probe_idle_s`` alone before the load starts and after it ends, so
    its idle round trip is measured on the same link, just before and just after.
    """
    if not scenario.workload.probing:
        return run_exchange(scenario, protocol, site), None
    probe = start_probe(scenario, site)
    try:
        time.sleep(scenario.workload.probe_idle_s)
        flows = run_exchange(scenario, protocol, site)
        time.sleep(scenario.workload.probe_idle_s)
    except BaseException:
        probe.close()
        raise
    return flows, probe.stop(protocol)


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
    if scenario.hosts is None:  # namespaces need root; far hosts need only SSH
        require_root()
        choose_backend(scenario.impairment)
    run_id = new_run_id()
    ground_truth_npz = ground_truth_path(run_id)
    exchanges: list[ExchangeResult] = []
    captures: list[tuple[str, str, CaptureStats]] = []
    probes: list[pd.DataFrame] = []
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
        with _open_site(scenario, scenario_file, run_id) as site:
            took = f"{site.setup_s * 1000:.0f} ms"
            if scenario.hosts is None:
                progress(f"testbed {run_id} up in {took}")
            else:
                hosts = scenario.hosts
                progress(f"logged in to {hosts.client} and {hosts.server}, clocks read: {took}")
            folder.meta.update(
                {
                    "run_id": run_id,
                    "congestion_control": scenario.congestion_control,
                    "tcp_nodelay": not scenario.nagle,
                }
                | site.meta()
            )
            folder.save_meta()
            for protocol in scenario.protocols:
                progress(f"{protocol.value}: {scenario.workload.count} messages")
                started = time.perf_counter()
                try:
                    with site.capture(folder.io_path, protocol.value) as stats:
                        flows, probe_rows = _exchange(scenario, protocol, site)
                        exchanges += flows
                        if probe_rows is not None:
                            probes.append(probe_rows)
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
            link_stats = site.link_stats()
        progress(f"{'testbed' if scenario.hosts is None else 'hosts'} down in "
                 f"{site.teardown_s * 1000:.0f} ms")  # fmt: skip
        clock = site.clock()
        if clock is not None:  # two hosts, two clocks: every time onto the client's
            folder.meta["clock"] = clock.as_meta()
            for exchange in exchanges:
                exchange.messages = on_client_clock(exchange.messages, clock, exchange.reverse)
        messages = pd.concat([e.messages for e in exchanges], ignore_index=True)
        exchange_rows = exchanges_table(exchanges)
        capture_rows = captures_table(captures)
        folder.write_table("messages", messages)
        folder.write_table("exchanges", exchange_rows)
        folder.write_table("captures", capture_rows)
        ground_truth, engine = _take_ground_truth(ground_truth_npz)
        if ground_truth is not None:
            folder.write_table("impairment", ground_truth)
        progress("analysis")
        workload = scenario.workload
        # what the sender was asked for; bulk asks for as much as it can get
        offered_bps = None if workload.bulk else workload.messages_per_second * workload.size * 8
        analysis = analyze_run(
            RunRecord(
                messages=messages,
                exchanges=exchange_rows,
                captures=capture_rows,
                pcap=partial(pcap_path, folder.io_path),
                ground_truth=ground_truth,
                client_address=site.client_address,
                server_address=site.server_address,
                engine_overload=link_stats.get("client", {}).get("tx_dropped"),
                offered_bps=offered_bps,
                interval_ms=scenario.analysis.interval_ms,
                probes=pd.concat(probes, ignore_index=True) if probes else None,
                clock=clock,
            )
        )
        tcp_info = tcp_info_table(exchanges, clock)
        if len(tcp_info):
            folder.write_table("tcp_info", tcp_info)
        for name, table in analysis.tables.items():
            folder.write_table(name, table)
        summary = analysis.summary
        folder.write_table("summary", summary)
        overload = sum(s.get("tx_dropped", 0) for s in link_stats.values())
        if site.backend == "userspace" and engine["ground_truth"] is None:
            # every table but the engine's is written; without its record of every
            # packet, losses cannot be explained: the run is not complete
            raise TestbedError(
                f"{folder.path}: the impairment engine did not write its ground truth "
                "(killed before it could): run incomplete"
            )
        folder.meta["drain_s"] = scenario.timeouts.drain_s  # derived when the file gives none
        run_fields: dict[str, Any] = {
            "testbed_setup_s": round(site.setup_s, 4),
            "testbed_teardown_s": round(site.teardown_s, 4),
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
        # _open_site has torn down whatever it built before this runs (the testbed), or
        # logged out of both hosts, which ends everything the run started there
        if folder is None:
            raise Interrupted("nothing was written") from error
        folder.abandon("interrupted")
        left = "no testbed is left" if scenario.hosts is None else "logged out of both hosts"
        raise Interrupted(f"{left}; {folder.path} is marked incomplete") from error
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
        site.setup_s,
        site.teardown_s,
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
    *,
    pairs: Sequence[Hosts] = (),
) -> SweepOutcome:
    """Run every cell of the sweep; ``sweep.csv`` has one row per cell x protocol x repetition.

    With ``pairs`` (``--hosts-file``) the cells are spread over those host pairs, each
    pair running one cell at a time, all pairs at once; the rows come back in cell order.
    """
    cells = sweep_cells(scenario, scenario_file)
    if pairs:  # every cell must be valid on real hosts before anything runs
        placed = [on_hosts(cell.scenario, pairs[0], scenario_file) for cell in cells]
        cells = [dataclasses.replace(c, scenario=s) for c, s in zip(cells, placed, strict=True)]
    else:
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
    if pairs:
        aggregate.meta["host_pairs"] = [f"{p.client} -> {p.server}" for p in pairs]
    aggregate.save_meta()
    rows: dict[int, pd.DataFrame] = {}
    failed_cells: dict[str, str] = {}

    def run_cell(index: int, cell: SweepCell) -> None:
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
        rows[index] = _cell_rows(cell, outcome, aggregate.path)
        if outcome.failed:
            failed_cells[cell.label] = "; ".join(
                f"{name} failed: {why}" for name, why in outcome.failed.items()
            )

    try:
        if pairs:
            _spread_over_pairs(cells, pairs, scenario_file, run_cell, on_cell)
        else:
            for index, cell in enumerate(cells):
                on_cell(index, len(cells), cell)
                run_cell(index, cell)
        on_cell(len(cells), len(cells), cells[-1])
        tidy = pd.concat([rows[i] for i in sorted(rows)], ignore_index=True)
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
            aggregate.write_table("sweep", pd.concat([rows[i] for i in sorted(rows)]))
        aggregate.abandon(reason)
        if interrupted:
            done = f"{error.what}; " if isinstance(error, Interrupted) else ""
            raise Interrupted(f"{done}the sweep {aggregate.path} is marked incomplete") from error
        raise
    return SweepOutcome(aggregate.path, tidy, failed_cells)


def _cell_rows(cell: SweepCell, outcome: RunOutcome, sweep_folder: Path) -> pd.DataFrame:
    """One sweep.csv row per protocol of a finished cell."""
    exchanges = exchanges_table(outcome.exchanges).set_index("protocol")
    retransmissions = exchanges.get("client.Tcp.RetransSegs")
    table = outcome.summary.copy()
    table.insert(0, "parameter", cell.parameter)
    table.insert(1, "value", cell.value)
    table.insert(2, "repetition", cell.repetition)
    table["run"] = str(outcome.path.relative_to(sweep_folder))
    table["base_rtt_ms"] = _base_rtt_ms(cell.scenario)
    table["mss_bytes"] = LINK_MSS_BYTES
    if retransmissions is not None:
        table["tcp_retransmissions"] = (
            table["protocol"].map(retransmissions).where(table["protocol"] == "tcp")
        )
    return table


def _spread_over_pairs(
    cells: list[SweepCell],
    pairs: Sequence[Hosts],
    scenario_file: Path,
    run_cell: Callable[[int, SweepCell], None],
    on_cell: Callable[[int, int, SweepCell], None],
) -> None:
    """Each pair takes the next cell when it is free; the first failure stops the rest.

    The main thread only waits, so Ctrl-C reaches it: it then logs out of every host,
    which ends whatever runs there, and waits for the pairs' runs to wind down.
    """
    from lab.hosts.ssh import close_all  # noqa: PLC0415  # asyncssh: only when used

    queue = collections.deque(enumerate(cells))
    lock = threading.Lock()
    done: list[int] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def work(pair: Hosts) -> None:
        while not stop.is_set():
            with lock:
                if not queue:
                    return
                index, cell = queue.popleft()
            on_pair = on_hosts(cell.scenario, pair, scenario_file)
            try:
                run_cell(index, dataclasses.replace(cell, scenario=on_pair))
            except BaseException as error:  # handed to the main thread
                errors.append(error)
                stop.set()
                return
            with lock:
                done.append(index)
                on_cell(len(done), len(cells), cell)

    workers = [
        threading.Thread(target=work, args=(pair,), name=f"lab-pair-{n}", daemon=True)
        for n, pair in enumerate(pairs[: len(cells)])
    ]
    on_cell(0, len(cells), cells[0])
    for worker in workers:
        worker.start()
    try:
        for worker in workers:
            while worker.is_alive():
                worker.join(0.2)
    except BaseException:
        stop.set()
        close_all()  # every far agent ends; the pairs' runs fail and mark themselves
        for worker in workers:
            worker.join(30)
        raise
    if errors:
        raise errors[0]
