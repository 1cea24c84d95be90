"""Paired exchanges: the same workload over each protocol, on the same testbed.

:func:`run_exchange` starts the server in the server namespace, waits until it
listens, runs the paced client in the client namespace, tells the server when the last
message left, and turns what both ends saw into one row per message.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from multiprocessing.connection import Connection
from typing import Protocol as Protocol_

import numpy as np
import pandas as pd

from lab.errors import ExchangeError
from lab.exchanges import probe, raw, tcp, udp
from lab.exchanges._endpoint import (
    ControlChannel,
    EndpointProcess,
    EndpointResult,
    EndpointSettings,
    spawn,
)
from lab.exchanges._tcpinfo import TCP_INFO_COLUMNS, parse_tcp_info, sample_row
from lab.hosts.clock import ClockModel
from lab.scenario import Pattern, Protocol, Scenario
from lab.testbed import Testbed

__all__ = [
    "MESSAGE_COLUMNS",
    "PROBE_COLUMNS",
    "TCP_INFO_COLUMNS",
    "ExchangeResult",
    "NamespaceSite",
    "ProbeHandle",
    "Site",
    "endpoint_body",
    "flow_count",
    "run_exchange",
    "settings_for",
    "start_probe",
    "tcp_info_table",
]

#: Columns of ``messages.csv`` (see results/README.md for units).
MESSAGE_COLUMNS = (
    "protocol",
    "flow",
    "seq",
    "size",
    "t_send_ns",
    "t_recv_ns",
    "arrival_index",
    "copies",
    "duplicate",
    "intact",
    "owd_ns",
    "t_echo_ns",
    "rtt_ns",
)

#: How often the TCP sender samples its socket's TCP_INFO (cwnd, srtt, in flight, ...).
TCP_INFO_INTERVAL_S = 0.02

_Body = Callable[[EndpointSettings, Connection, EndpointResult], None]
_ENDPOINTS: dict[Protocol, tuple[_Body, _Body]] = {
    Protocol.TCP: (tcp.serve, tcp.run_client),
    Protocol.UDP: (udp.serve, udp.run_client),
    Protocol.RAW: (raw.serve, raw.run_client),
}


def endpoint_body(protocol: str, side: str) -> _Body:
    """The body an end runs: ``protocol`` is "tcp", "udp", "raw" or "probe", ``side``
    "client" or "server" (here in a forked process, or on a far host's agent)."""
    if protocol == "probe":
        return probe.serve if side == "server" else probe.run_client
    serve, run_client = _ENDPOINTS[Protocol(protocol)]
    return serve if side == "server" else run_client


class Site(Protocol_):
    """Where a run's two ends live: the testbed's namespaces here, or two hosts over SSH
    (:class:`lab.hosts.site.HostsSite`). The exchanges only need the addresses the
    workload uses and a way to start an end."""

    @property
    def client_address(self) -> str: ...
    @property
    def server_address(self) -> str: ...
    def spawn(
        self, side: str, role: str, protocol: str, settings: EndpointSettings
    ) -> tuple[EndpointProcess, ControlChannel]: ...


@dataclass(frozen=True)
class NamespaceSite:
    """Both ends in the testbed's namespaces, each a process forked from ``lab``."""

    testbed: Testbed

    @property
    def client_address(self) -> str:
        return self.testbed.client.address

    @property
    def server_address(self) -> str:
        return self.testbed.server.address

    def spawn(
        self, side: str, role: str, protocol: str, settings: EndpointSettings
    ) -> tuple[EndpointProcess, ControlChannel]:
        host = self.testbed.server if side == "server" else self.testbed.client
        return spawn(host.netns, role, partial(endpoint_body(protocol, side), settings))


@dataclass
class ExchangeResult:
    """One protocol's run of the workload."""

    protocol: Protocol
    messages: pd.DataFrame
    client: EndpointResult
    server: EndpointResult
    started_ns: int
    ended_ns: int
    flow: int = 0
    """Which of the protocol's flows (0 when there is one)."""
    reverse: bool = False
    """The server sent the messages (reverse, or bidirectional's second half)."""

    @property
    def sender(self) -> EndpointResult:
        """The end that sent the workload's messages."""
        return self.server if self.reverse else self.client


def settings_for(
    scenario: Scenario, protocol: Protocol, site: Site, flow: int = 0
) -> EndpointSettings:
    """The endpoint settings of ``protocol``'s flow ``flow`` under ``scenario`` at ``site``.

    Flows differ only in their server port (``ports.tcp`` / ``ports.udp`` + flow), so each
    has its own connection or socket and, in the engine, its own random streams (keyed by
    the port), and in their direction (bidirectional: the second half sends server ->
    client). A protocol's flows share ``count`` and ``rate`` evenly.
    """
    workload = scenario.workload
    flows = flow_count(scenario, protocol)
    # raw IP has no ports: the server gets every protocol-253 packet
    port = 0 if protocol is Protocol.RAW else getattr(scenario.ports, protocol.value) + flow
    rate = workload.messages_per_second / flows
    if workload.bulk and protocol is Protocol.TCP:
        rate = math.inf  # as fast as TCP allows: its window and the socket buffer set the pace
    return EndpointSettings(
        server_address=site.server_address,
        client_address=site.client_address,
        port=port,
        count=workload.count // flows,  # a cap, in bulk
        size=scenario.workload.size,
        rate=rate,
        echo=scenario.workload.pattern is Pattern.ECHO,
        seed=scenario.seed,
        connect_timeout_s=scenario.timeouts.connect_s,
        run_timeout_s=scenario.timeouts.run_s,
        drain_timeout_s=scenario.timeouts.drain_s,
        congestion_control=scenario.congestion_control,
        nagle=scenario.nagle,
        duration_s=workload.send_duration_s if workload.bulk else None,
        sample_tcp_info_s=TCP_INFO_INTERVAL_S if protocol is Protocol.TCP else None,
        reverse=workload.reverse(flow),
    )


def flow_count(scenario: Scenario, protocol: Protocol) -> int:
    """How many flows ``protocol`` runs: ``parallel`` per direction (RAW: one per direction)."""
    workload = scenario.workload
    if protocol is Protocol.RAW:
        return workload.flows // workload.parallel
    return workload.flows


def run_exchange(scenario: Scenario, protocol: Protocol, site: Site) -> list[ExchangeResult]:
    """Run the workload over ``protocol``, one result per flow.

    Every flow's server starts and listens first; then every client. A forward flow's
    client sends at once; a reverse flow's client says it is ready (its port) and the
    server is told to send to it (the parent is the lab's control channel, as iperf3's
    control connection). The flows run at once, each a client and a server process of its
    own. Raises :class:`ExchangeError` if an end of any flow fails.
    """
    if protocol not in _ENDPOINTS:
        raise ExchangeError(f"protocol {protocol.value!r} has no exchange yet")
    flows = range(flow_count(scenario, protocol))
    settings = [settings_for(scenario, protocol, site, flow) for flow in flows]
    budget_s = scenario.workload.send_duration_s + settings[0].run_timeout_s
    drain_s = settings[0].drain_timeout_s
    started = time.time_ns()
    processes: list[EndpointProcess] = []
    servers: list[ControlChannel] = []
    clients: list[ControlChannel] = []
    try:
        for flow, flow_settings in zip(flows, settings, strict=True):
            process, control = site.spawn(
                "server", _role("server", flow), protocol.value, flow_settings
            )
            processes.append(process)
            servers.append(control)
            _expect(control, "ready", flow_settings.connect_timeout_s, protocol, "server")
        for flow, flow_settings in zip(flows, settings, strict=True):
            process, control = site.spawn(
                "client", _role("client", flow), protocol.value, flow_settings
            )
            processes.append(process)
            clients.append(control)
        for flow_settings, to_server, to_client in zip(settings, servers, clients, strict=True):
            if flow_settings.reverse:  # the server sends once the client can receive
                timeout_s = flow_settings.connect_timeout_s
                port = _expect(to_client, "ready", timeout_s, protocol, "client")
                to_server.send(("go", port))
        ends = [
            (s, c) if flow_settings.reverse else (c, s)
            for flow_settings, s, c in zip(settings, servers, clients, strict=True)
        ]
        sent = [_result(to_sender, budget_s, protocol, "sender") for to_sender, _ in ends]
        for _, to_receiver in ends:
            with contextlib.suppress(BrokenPipeError):  # a TCP receiver may be done already
                to_receiver.send(("sender_done", time.time_ns() + int(drain_s * 1e9)))
        received = [_result(r, drain_s + budget_s, protocol, "receiver") for _, r in ends]
    finally:
        for process in processes:
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()
    ended = time.time_ns()
    results = []
    for flow, flow_settings, sender, receiver in zip(flows, settings, sent, received, strict=True):
        reverse = flow_settings.reverse
        client_end, server_end = (receiver, sender) if reverse else (sender, receiver)
        messages = build_messages(protocol, flow_settings, sender, receiver, flow)
        results.append(
            ExchangeResult(
                protocol, messages, client_end, server_end, started, ended, flow, reverse=reverse
            )
        )
    return results


def _role(role: str, flow: int) -> str:
    return role if flow == 0 else f"{role}-{flow}"


#: Columns of ``probe.csv`` (latency_under_load): one row per probe sent.
PROBE_COLUMNS = ("load_protocol", "probe", "seq", "t_send_ns", "t_echo_ns", "rtt_ns")


class ProbeHandle:
    """A running latency probe (:mod:`lab.exchanges.probe`): stop it to get its rows."""

    def __init__(self, scenario: Scenario, site: Site) -> None:
        self._settings = EndpointSettings(
            server_address=site.server_address,
            client_address=site.client_address,
            port=scenario.ports.probe,
            count=10**9,  # until stopped
            size=probe.PROBE_BYTES,
            rate=scenario.workload.probe_hz,
            echo=True,
            seed=scenario.seed,
            connect_timeout_s=scenario.timeouts.connect_s,
            run_timeout_s=scenario.timeouts.run_s,
            # the last probe's echo may wait behind a full queue: as long as the link holds
            drain_timeout_s=scenario.link_hold_s() * 2 + 0.2,
        )
        self._processes: list[EndpointProcess] = []
        try:
            server, self._server = site.spawn("server", "probe-server", "probe", self._settings)
            self._processes.append(server)
            _expect(self._server, "ready", self._settings.connect_timeout_s, Protocol.UDP, "probe")
            client, self._client = site.spawn("client", "probe-client", "probe", self._settings)
            self._processes.append(client)
        except BaseException:
            self._end()
            raise

    def stop(self, load_protocol: Protocol) -> pd.DataFrame:
        """Stop probing; ``probe.csv`` rows, tagged with the load they ran beside."""
        try:
            with contextlib.suppress(BrokenPipeError):
                self._client.send(("stop",))
            budget = self._settings.drain_timeout_s + self._settings.connect_timeout_s
            result = _result(self._client, budget, Protocol.UDP, "probe client")
        finally:
            with contextlib.suppress(BrokenPipeError):
                self._server.send(("stop",))
            self._end()
        frame = pd.DataFrame(result.probes, columns=["probe", "seq", "t_send_ns", "t_echo_ns"])
        frame.insert(0, "load_protocol", load_protocol.value)
        echo = frame["t_echo_ns"].astype("Int64")
        frame["t_echo_ns"] = echo.mask(echo < 0)  # no echo before the stop: lost
        frame["rtt_ns"] = frame["t_echo_ns"] - frame["t_send_ns"]
        return frame[list(PROBE_COLUMNS)]

    def close(self) -> None:
        """Stop probing without its rows (the exchange beside it failed)."""
        for control in (self._client, self._server):
            with contextlib.suppress(OSError, AttributeError):
                control.send(("stop",))
        self._end()

    def _end(self) -> None:
        for process in self._processes:
            process.join(2.0)
            if process.is_alive():
                process.kill()
                process.join()


def start_probe(scenario: Scenario, site: Site) -> ProbeHandle:
    """Start the UDP and TCP latency probe between the site's two ends (until stopped)."""
    return ProbeHandle(scenario, site)


def tcp_info_table(
    exchanges: list[ExchangeResult], clock: ClockModel | None = None
) -> pd.DataFrame:
    """``tcp_info.csv``: the TCP sender's TCP_INFO samples, oldest first.

    Between two hosts (``clock``: the server's minus the client's), a reverse flow's
    samples, taken by the server, are moved onto the client's clock as its messages are.
    """
    rows = []
    for exchange in exchanges:
        shift = 0.0
        for t_ns, info in exchange.sender.tcp_info:
            if clock is not None and exchange.reverse:
                shift = clock.offset_at(t_ns)
            at = t_ns - round(shift)
            congestion_control = exchange.sender.congestion_control
            sample = sample_row(at, parse_tcp_info(info), congestion_control)
            rows.append({"flow": exchange.flow} | sample)
    columns = ["protocol", "flow", *TCP_INFO_COLUMNS[1:]]
    return pd.DataFrame(rows, columns=columns)


def _expect(
    control: ControlChannel, what: str, timeout_s: float, protocol: Protocol, role: str
) -> object:
    if not control.poll(timeout_s):
        raise ExchangeError(f"{protocol.value} {role}: no '{what}' within {timeout_s:g} s")
    try:
        message = control.recv()
    except EOFError:
        raise ExchangeError(f"{protocol.value} {role}: the endpoint process died") from None
    if message[0] == "result" and message[1].error:
        raise ExchangeError(f"{protocol.value} {role} failed: {message[1].error.splitlines()[0]}")
    if message[0] != what:
        raise ExchangeError(f"{protocol.value} {role}: expected '{what}', got {message[0]!r}")
    return message[1] if len(message) > 1 else None


def _result(
    control: ControlChannel, timeout_s: float, protocol: Protocol, role: str
) -> EndpointResult:
    result = _expect(control, "result", timeout_s, protocol, role)
    assert isinstance(result, EndpointResult)
    return result


def build_messages(
    protocol: Protocol,
    settings: EndpointSettings,
    sender: EndpointResult,
    receiver: EndpointResult,
    flow: int = 0,
) -> pd.DataFrame:
    """One row per message: what was sent, when (and how often) it arrived.

    ``sender`` is the client of a forward flow and the server of a reverse one; in echo
    mode (forward only) the echoes are the sender's arrivals.
    """
    count = settings.count
    if settings.duration_s is not None:  # bulk: the messages sent before the time was up
        count = int((np.asarray(sender.t_send_ns, dtype=np.int64) >= 0).sum())
    received = _first_arrivals(receiver.arrivals, count)
    frame = pd.DataFrame(
        {
            "protocol": protocol.value,
            "flow": np.full(count, flow, dtype=np.int64),
            "seq": np.arange(count, dtype=np.int64),
            "size": np.full(count, settings.size, dtype=np.int64),
            "t_send_ns": np.asarray(sender.t_send_ns[:count], dtype=np.int64),
            "t_recv_ns": received.t,
            "arrival_index": received.index,
            "copies": received.copies,
            "duplicate": received.copies > 1,
            "intact": received.intact,
        }
    )
    frame["owd_ns"] = frame["t_recv_ns"] - frame["t_send_ns"]
    if settings.echo:
        echoed = _first_arrivals(sender.arrivals, count)
        frame["t_echo_ns"] = echoed.t
        frame["rtt_ns"] = frame["t_echo_ns"] - frame["t_send_ns"]
    else:
        frame["t_echo_ns"] = pd.array([pd.NA] * count, dtype="Int64")
        frame["rtt_ns"] = pd.array([pd.NA] * count, dtype="Int64")
    return frame[list(MESSAGE_COLUMNS)]


@dataclass
class _FirstArrivals:
    t: pd.arrays.IntegerArray
    index: pd.arrays.IntegerArray
    copies: np.ndarray
    intact: pd.arrays.BooleanArray


def _first_arrivals(arrivals: list[tuple[int, int, bool]], count: int) -> _FirstArrivals:
    """Per seq: first arrival time, order among first arrivals, copies, all copies intact."""
    t = pd.array([pd.NA] * count, dtype="Int64")
    index = pd.array([pd.NA] * count, dtype="Int64")
    copies = np.zeros(count, dtype=np.int64)
    intact = np.ones(count, dtype=bool)
    if arrivals:
        seqs = np.fromiter((a[0] for a in arrivals), dtype=np.int64, count=len(arrivals))
        times = np.fromiter((a[1] for a in arrivals), dtype=np.int64, count=len(arrivals))
        good = np.fromiter((a[2] for a in arrivals), dtype=bool, count=len(arrivals))
        valid = (seqs >= 0) & (seqs < count)
        seqs, times, good = seqs[valid], times[valid], good[valid]
        np.add.at(copies, seqs, 1)
        np.logical_and.at(intact, seqs, good)
        unique_seqs, first = np.unique(seqs, return_index=True)
        order = np.argsort(first, kind="stable")
        t[unique_seqs] = times[first]
        index[unique_seqs[order]] = np.arange(len(order))
    intact_or_na = pd.array(intact, dtype="boolean")
    intact_or_na[copies == 0] = pd.NA
    return _FirstArrivals(t, index, copies, intact_or_na)
