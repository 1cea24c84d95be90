"""A run between two real hosts: the exchanges' :class:`~lab.exchanges.Site` over SSH.

:func:`open_hosts` logs in to both hosts (key only, the far protolab's version checked,
capture rights checked when capturing), finds the interface that holds each exchange
address, and measures the clock offset between them before the run; closing it measures
the offset again (the drift between the two) and ends everything still running there.
Each end runs the same endpoint code as in the namespaces (:mod:`lab.hosts.agent`), and
each host captures with the lab's own sniffer into a pcap that is copied back.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from lab.capture.sniffer import CaptureStats
from lab.errors import HostError
from lab.exchanges._endpoint import ControlChannel, EndpointProcess, EndpointSettings
from lab.hosts.clock import ClockModel, OffsetEstimate
from lab.hosts.remote import RemoteCapture, RemoteNetem, spawn_remote
from lab.hosts.ssh import RemoteHost, SSHOptions, connect, offset_between
from lab.impairment.netem import netem_args
from lab.impairment.spec import Direction, ImpairmentSpec
from lab.results import pcap_path
from lab.scenario import Hosts

__all__ = ["HostsSite", "open_hosts"]

#: Clock exchanges per estimate (before and after the run); the fastest ones bound it.
CLOCK_SAMPLES = 16
#: The longest a far capture may run: a run's own bounds end it far sooner.
CAPTURE_BUDGET_S = 6 * 3600.0


@dataclass
class HostsSite:
    """Two logged-in hosts and what the run needs of them (see the module doc)."""

    client: RemoteHost
    server: RemoteHost
    hosts: Hosts
    interfaces: dict[str, str]
    before: OffsetEstimate
    setup_s: float
    after: OffsetEstimate | None = None
    teardown_s: float = 0.0
    backend: str = "none"
    """"none": the real path is what is measured; "netem": tc netem on the hosts."""
    _captures: list[RemoteCapture] = field(default_factory=list)

    @property
    def client_address(self) -> str:
        return self.hosts.client_address

    @property
    def server_address(self) -> str:
        return self.hosts.server_address

    def spawn(
        self, side: str, role: str, protocol: str, settings: EndpointSettings
    ) -> tuple[EndpointProcess, ControlChannel]:
        host = self.client if side == "client" else self.server
        return spawn_remote(host, role, protocol, settings)

    @contextlib.contextmanager
    def capture(self, folder: Path, protocol: str) -> Iterator[list[CaptureStats]]:
        """Capture on both hosts' exchange interfaces for the body; the pcaps come back
        into ``folder`` as the namespaces' would (``capture/<protocol>-<side>.pcap``)."""
        stats: list[CaptureStats] = []
        if not self.hosts.capture:
            yield stats
            return
        (folder / "capture").mkdir(exist_ok=True)
        started: list[tuple[str, RemoteCapture]] = []
        try:
            for side, host in (("client", self.client), ("server", self.server)):
                capture = RemoteCapture(host, self.interfaces[side], CAPTURE_BUDGET_S)
                started.append((side, capture))
            yield stats
            for side, capture in started:
                stats.append(capture.stop(pcap_path(folder, protocol, side)))
        finally:
            for _, capture in started:
                capture.close()

    def clock(self) -> ClockModel:
        """The server's clock minus the client's, before and after the run."""
        if self.after is None:
            self.after = offset_between(self.client, self.server, CLOCK_SAMPLES)
        return ClockModel(self.before, self.after)

    def meta(self) -> dict[str, object]:
        """Where the run took place, for meta.json and the report."""
        described: dict[str, object] = {"impairment_backend": self.backend}
        for side, host in (("client", self.client), ("server", self.server)):
            info = host.info
            interface = self.interfaces[side]
            described[side] = {
                "host": str(host),
                "hostname": info.hostname,
                "address": getattr(self.hosts, f"{side}_address"),
                "interface": interface,
                "mtu": info.mtu.get(interface),
                "kernel": info.kernel,
                "python": info.python,
                "protolab": info.version,
            }
        return described

    def link_stats(self) -> dict[str, dict[str, int]]:
        """No lab link between real hosts: nothing of the engine's to count."""
        return {}


def ssh_options(hosts: Hosts, scenario_dir: Path) -> SSHOptions:
    """The scenario's SSH files (relative to its folder) over ``~/.ssh``'s defaults."""

    def path(value: str | None) -> Path | None:
        if value is None:
            return None
        given = Path(value).expanduser()
        return given if given.is_absolute() else scenario_dir / given

    identity = path(hosts.identity)
    return SSHOptions(
        known_hosts=path(hosts.known_hosts),
        client_keys=(identity,) if identity is not None else None,
        config=path(hosts.ssh_config),
        python=hosts.python,
    )


def _interface(host: RemoteHost, address: str, side: str) -> str:
    """The far interface that holds ``address``: the workload's, where it captures."""
    for name, addresses in host.info.addresses.items():
        if address in addresses:
            return name
    raise HostError(
        f"{host}: no interface holds {address} (hosts.{side}_address); it has "
        + (", ".join(f"{n} {' '.join(a)}" for n, a in host.info.addresses.items()) or "none")
    )


#: Which host's egress carries each direction: netem shapes what leaves an interface.
_EGRESS = {Direction.CLIENT_TO_SERVER: "client", Direction.SERVER_TO_CLIENT: "server"}


@contextlib.contextmanager
def open_hosts(
    hosts: Hosts, scenario_dir: Path, impairment: ImpairmentSpec | None = None
) -> Iterator[HostsSite]:
    """Both hosts logged in and checked, the clocks measured; everything there ended on exit.

    An ``impairment`` that is not clean (``backend = "netem"``) becomes a netem qdisc on
    each host's exchange interface for its outgoing direction, deleted on exit.
    """
    started = time.perf_counter()
    options = ssh_options(hosts, scenario_dir)
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(connect(hosts.client, options, require_capture=hosts.capture))
        server = stack.enter_context(connect(hosts.server, options, require_capture=hosts.capture))
        interfaces = {
            "client": _interface(client, hosts.client_address, "client"),
            "server": _interface(server, hosts.server_address, "server"),
        }
        backend = "none"
        if impairment is not None and not impairment.is_clean:
            logins = {"client": client, "server": server}
            for direction, side in _EGRESS.items():
                params = impairment.for_direction(direction)
                if not params.is_clean:
                    netem = RemoteNetem(logins[side], interfaces[side], netem_args(params))
                    stack.callback(netem.close)
            backend = "netem"
        before = offset_between(client, server, CLOCK_SAMPLES)
        site = HostsSite(client, server, hosts, interfaces, before, time.perf_counter() - started)
        site.backend = backend
        try:
            yield site
            site.clock()  # the after estimate, while both are still logged in
        finally:
            ended = time.perf_counter()
            stack.close()
            site.teardown_s = time.perf_counter() - ended
