"""The analysis of one run, on the frames it recorded: every derived table and the summary.

One entry point, :func:`analyze_run`, for a run that has just ended (the runner passes
what it holds in memory) and for a finished run read back from its folder
(:func:`record_of`, through :mod:`lab.results`). It is a pure function of its inputs
and of the capture files, each read once: the same run analysed twice gives the
same tables.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lab.analysis import join
from lab.analysis._wire_tcp import (
    SERVER_TO_CLIENT,
    TcpWireAnalysis,
    analyze_tcp_frames,
    empty_tables,
)
from lab.analysis.clocks import owd_figures, shift_server_capture
from lab.analysis.context import (
    FIRST_TX_COLUMNS,
    datagram_first_transmissions,
    engine_figures,
    sending_figures,
)
from lab.analysis.impairment import DATAGRAM_PROTOCOLS, impairment_by_protocol
from lab.analysis.probe import probe_phases, probe_summary
from lab.analysis.summary import flow_table, summarize
from lab.analysis.timeseries import DEFAULT_INTERVAL_MS, flow_timeseries, timeseries
from lab.hosts.clock import ClockModel
from lab.impairment.groundtruth import accounting
from lab.pcap import read_pcap

if TYPE_CHECKING:
    from lab.results import Run

__all__ = [
    "RunAnalysis",
    "RunRecord",
    "analyze_run",
    "explain_record",
    "record_of",
    "wire_tables",
]


@dataclass(frozen=True)
class RunRecord:
    """What a run recorded: the analysis needs nothing else.

    ``pcap(protocol, side)`` names a capture file (side ``client`` or ``server``);
    ``ground_truth`` is the engine's per-packet record (None: no userspace engine);
    ``engine_overload`` the packets the client's TUN device dropped unread;
    ``offered_bps`` what the workload asked the sender for (None: as fast as it can);
    ``interval_ms`` the width of one time-series interval; ``probes`` the latency
    probe's round trips (latency_under_load only).
    """

    messages: pd.DataFrame
    exchanges: pd.DataFrame
    captures: pd.DataFrame
    pcap: Callable[[str, str], Path]
    ground_truth: pd.DataFrame | None = None
    client_address: str | None = None
    server_address: str | None = None
    engine_overload: int | None = None
    offered_bps: float | None = None
    interval_ms: float = DEFAULT_INTERVAL_MS
    probes: pd.DataFrame | None = None
    clock: ClockModel | None = None
    """Two hosts: the server's clock minus the client's. The server's capture is read
    onto the client's clock, as messages.csv already is (:mod:`lab.analysis.clocks`)."""
    _packets: dict[tuple[str, str], pd.DataFrame | None] = field(
        default_factory=dict, repr=False, compare=False
    )

    def packets(self, protocol: str, side: str) -> pd.DataFrame | None:
        """The packets of one capture (read once), or None when it is not there."""
        key = (protocol, side)
        if key not in self._packets:
            path = self.pcap(protocol, side)
            packets = read_pcap(path).packets if path.exists() else None
            self._packets[key] = None if packets is None else self.on_client_clock(packets, side)
        return self._packets[key]

    def on_client_clock(self, packets: pd.DataFrame, side: str) -> pd.DataFrame:
        """A capture's packets with times on the client's clock (only the server's move)."""
        if self.clock is None or side != "server":
            return packets
        return shift_server_capture(packets, self.clock)


@dataclass(frozen=True)
class RunAnalysis:
    """Every derived table of a run (names as in :data:`lab.results.RUN_TABLES`) and its
    one-row-per-protocol summary."""

    tables: dict[str, pd.DataFrame]
    summary: pd.DataFrame


def analyze_run(record: RunRecord) -> RunAnalysis:
    """Summary and derived tables of one run: engine books, wire view, joins, sending."""
    directions = flow_directions(record.exchanges)
    summary = summarize(record.messages, directions)
    tables: dict[str, pd.DataFrame] = {}
    if record.ground_truth is not None:
        books = accounting(record.ground_truth)
        by_protocol = impairment_by_protocol(record.ground_truth, record.exchanges)
        tables["accounting"] = books
        tables["impairment_by_protocol"] = by_protocol
        engine = engine_figures(by_protocol).set_index("protocol")
        for column in engine.columns:
            summary[column] = summary["protocol"].map(engine[column])
        summary["accounting_closes"] = bool(books["closes"].all()) if len(books) else True
    if len(record.captures):
        drops = record.captures.groupby("protocol")["kernel_drops"].sum()
        summary["capture_drops"] = summary["protocol"].map(drops).fillna(0).astype("int64")
    tables.update(wire_tables(record))
    tables["timeseries"] = timeseries(record.messages, record.interval_ms)
    tables["flows"] = flow_table(record.messages, directions)
    per_flow = flow_timeseries(record.messages, record.interval_ms)
    if len(per_flow):  # parallel flows only
        tables["flow_timeseries"] = per_flow
    if record.probes is not None:
        tables["probe"] = probe_phases(record.probes, record.messages)
        figures = probe_summary(tables["probe"]).set_index("protocol")
        for column in figures.columns:
            summary[column] = summary["protocol"].map(figures[column])
    _add_wire_columns(summary, tables, engine_losses=record.ground_truth is not None)
    if record.clock is not None:
        owd_figures(summary, record.messages, record.clock)
    if record.offered_bps is not None and record.client_address is not None:
        _add_sending_columns(summary, record, tables.get("hol"))
    return RunAnalysis(tables, summary)


def wire_tables(record: RunRecord) -> dict[str, pd.DataFrame]:
    """The wire view alone: ``tcp_*``, ``rtt_samples``, ``hol``, ``explained*``."""
    tcp, tables = _tcp_tables(record)
    tables["explained"] = (
        explain_record(record, tcp)
        if record.ground_truth is not None
        else pd.DataFrame(columns=list(join.EXPLAINED_COLUMNS))
    )
    tables["explained_summary"] = join.explain_summary(tables["explained"])
    return tables


def _tcp_tables(
    record: RunRecord,
) -> tuple[dict[int, TcpWireAnalysis], dict[str, pd.DataFrame]]:
    """The TCP wire view of every TCP flow (one capture pair holds them all), by flow."""
    tcp_rows = record.exchanges.loc[record.exchanges["protocol"] == "tcp"]
    if tcp_rows.empty:
        return {}, empty_tables()
    client, server = (
        record.on_client_clock(read_pcap(record.pcap("tcp", side), tcp_options=True).packets, side)
        for side in ("client", "server")
    )
    analyses: dict[int, TcpWireAnalysis] = {}
    for _, row in tcp_rows.iterrows():
        flow = _flow_of(row)
        analyses[flow] = analyze_tcp_frames(
            client,
            server,
            _flow_messages(record.messages, "tcp", flow),
            int(row["client_port"]),
            int(row["server_port"]),
            reverse=is_reverse(row),
        )
    tag = "flow" in record.exchanges  # format 2: every wire table says which flow

    def tagged(name: str) -> pd.DataFrame:
        frames: list[pd.DataFrame] = [getattr(a, name) for a in analyses.values()]
        if not tag:
            return frames[0]
        flows = [f.assign(flow=flow) for flow, f in zip(analyses, frames, strict=True)]
        frame = pd.concat(flows, ignore_index=True)
        return frame[["flow", *[c for c in frame.columns if c != "flow"]]]

    return analyses, {
        "tcp_segments": tagged("segments"),
        "tcp_stats": tagged("stats"),
        "rtt_samples": tagged("rtt_samples"),
        "hol": tagged("hol"),
    }


def flow_directions(exchanges: pd.DataFrame) -> dict[tuple[str, int], str]:
    """Which way each flow sent, by (protocol, flow), from exchanges.csv (format 2 runs
    before reverse flows have no ``direction``: every flow went client -> server)."""
    if "direction" not in exchanges:
        return {}
    return {
        (str(row["protocol"]), _flow_of(row)): str(row["direction"])
        for _, row in exchanges.iterrows()
        if isinstance(row["direction"], str)
    }


def is_reverse(row: pd.Series) -> bool:
    """Whether an exchanges.csv row is a flow the server sent (reverse)."""
    return row.get("direction") == SERVER_TO_CLIENT


def _flow_of(row: pd.Series) -> int:
    """The flow of an exchanges.csv row (0 in a run of format 1, before parallel flows)."""
    value = row.get("flow")
    return 0 if value is None or pd.isna(value) else int(value)


def _flow_messages(messages: pd.DataFrame, protocol: str, flow: int) -> pd.DataFrame:
    """One flow's messages (all of the protocol's when the table has no flow column)."""
    mine = messages["protocol"] == protocol
    if "flow" in messages:
        mine &= messages["flow"] == flow
    return messages.loc[mine]


def explain_record(record: RunRecord, tcp: Mapping[int, TcpWireAnalysis]) -> pd.DataFrame:
    """``explained.csv`` of a run with ground truth (:func:`lab.analysis.join.explain`)."""
    assert record.ground_truth is not None
    return join.explain(
        record.messages,
        record.exchanges,
        record.ground_truth,
        packets=record.packets,
        tcp=tcp,
        client_address=record.client_address,
        server_address=record.server_address,
        engine_overload=record.engine_overload,
    )


def _add_wire_columns(
    summary: pd.DataFrame, tables: dict[str, pd.DataFrame], *, engine_losses: bool
) -> None:
    """The wire view next to the application's: retransmissions, HOL, explained."""
    stats = tables.get("tcp_stats")
    if stats is not None and len(stats):
        tcp = summary["protocol"] == "tcp"
        summary.loc[tcp, "tcp_retransmissions"] = int(stats["retransmissions"].sum())
        hol = tables.get("hol")
        if hol is not None and len(hol):
            summary.loc[tcp, "hol_blocked"] = int(hol["blocked"].sum())
            summary.loc[tcp, "hol_wait_p99_ms"] = float(hol["hol_wait_ns"].quantile(0.99)) / 1e6
    explained = tables["explained_summary"]
    if not len(explained):
        return
    per_protocol = explained.groupby("protocol")[["explained", "unexplained"]].sum()
    for column in ("explained", "unexplained"):
        summary[column] = summary["protocol"].map(per_protocol[column]).astype("Int64")
    datagram = summary["protocol"].isin(DATAGRAM_PROTOCOLS)
    if engine_losses and datagram.any():  # datagram losses the engine's decisions account for
        lost = explained.loc[
            (explained["kind"] == "lost") & explained["protocol"].isin(DATAGRAM_PROTOCOLS)
        ]
        by_engine = lost.groupby("protocol")["impairment"].sum()
        summary["losses_explained"] = (
            summary["protocol"].map(by_engine).where(datagram).astype("Int64")
        )
        summary.loc[datagram, "losses_explained"] = summary.loc[
            datagram, "losses_explained"
        ].fillna(0)


def _add_sending_columns(
    summary: pd.DataFrame, record: RunRecord, hol: pd.DataFrame | None
) -> None:
    """Offered vs achieved send rate and the sender's backlog, next to the RFC metrics."""
    assert record.client_address is not None and record.offered_bps is not None
    parts = []
    if hol is not None and len(hol):  # TCP: first transmission of each message's last byte
        parts.append(hol[["seq", "t_first_tx_ns"]].assign(protocol="tcp", flow=hol.get("flow", 0)))
    senders = {"client": record.client_address, "server": record.server_address}
    for _, row in record.exchanges.iterrows():
        protocol = str(row["protocol"])
        side = "server" if is_reverse(row) else "client"  # the capture where it was sent
        packets, address = record.packets(protocol, side), senders[side]
        if protocol in DATAGRAM_PROTOCOLS and packets is not None and address is not None:
            first = datagram_first_transmissions(
                packets, protocol, int(ipaddress.IPv4Address(address))
            )
            parts.append(first.assign(flow=_flow_of(row)))
    first_tx = (
        pd.concat([p[[*FIRST_TX_COLUMNS, "flow"]] for p in parts], ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*FIRST_TX_COLUMNS, "flow"])
    )
    figures = sending_figures(record.messages, first_tx, record.offered_bps).set_index("protocol")
    for column in figures.columns:
        summary[column] = summary["protocol"].map(figures[column])


def record_of(run: Run) -> RunRecord:
    """A finished run's record, read back from its folder through :mod:`lab.results`."""
    meta = run.meta
    address, server_address = (_address(meta, role) for role in ("client", "server"))
    return RunRecord(
        messages=run.table("messages"),
        exchanges=run.table("exchanges"),
        captures=run.table("captures") if run.has_table("captures") else pd.DataFrame(),
        pcap=run.pcap,
        ground_truth=run.table("impairment") if run.has_table("impairment") else None,
        client_address=address,
        server_address=server_address,
        engine_overload=_client_tx_dropped(meta),
        interval_ms=_interval_ms(run.scenario),
        clock=ClockModel.from_meta(meta.get("clock")),
        probes=run.table("probe").drop(columns="phase", errors="ignore")
        if run.has_table("probe")
        else None,
    )


def _address(meta: dict[str, object], role: str) -> str | None:
    """meta.json's ``<role>.address`` (the testbed host's), if recorded."""
    host = meta.get(role)
    address = host.get("address") if isinstance(host, dict) else None
    return address if isinstance(address, str) else None


def _interval_ms(scenario: dict[str, object]) -> float:
    """The run's ``[analysis] interval_ms`` as its scenario copy says, else the default."""
    analysis = scenario.get("analysis")
    value = analysis.get("interval_ms") if isinstance(analysis, dict) else None
    ok = isinstance(value, int | float) and not isinstance(value, bool) and 10 <= value <= 60_000
    return float(value) if ok else DEFAULT_INTERVAL_MS  # type: ignore[arg-type]


def _client_tx_dropped(meta: dict[str, object]) -> int | None:
    """meta.json link_stats.client.tx_dropped: packets the engine did not read, if recorded."""
    stats = meta.get("link_stats")
    client = stats.get("client") if isinstance(stats, dict) else None
    dropped = client.get("tx_dropped") if isinstance(client, dict) else None
    return dropped if isinstance(dropped, int) and not isinstance(dropped, bool) else None
