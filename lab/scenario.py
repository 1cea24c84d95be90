"""Scenario files: TOML in, a frozen, validated :class:`Scenario` out.

A scenario is the whole experiment: the workload every protocol runs, the ports its
servers listen on, the timeouts that bound it and the impairment on the link. Unknown
keys are errors, so a typo never passes silently. Every problem is reported as one
:class:`~lab.errors.ScenarioError` naming the file and the dotted field.
"""

from __future__ import annotations

import copy
import ipaddress
import math
import re
import tomllib
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, Literal

import tomli_w
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StrictBool,
    ValidationError,
    model_validator,
)

from lab.errors import ScenarioError
from lab.impairment.spec import Direction, ImpairmentSpec

#: Bytes of the lab's message header (seq u32, length u32, send time u64 ns).
MESSAGE_HEADER_SIZE = 16
#: RAW messages carry their own CRC-32 after the header: the kernel checks none for them.
RAW_MIN_SIZE = MESSAGE_HEADER_SIZE + 4
#: Largest message: a UDP datagram must fit in one IPv4 packet (65,507 bytes of payload).
MAX_MESSAGE_SIZE = 65_000
#: Ports below this are "well-known" (IANA): binding them is refused unless asked for.
WELL_KNOWN_PORT_LIMIT = 1024
#: Start of the IANA dynamic / ephemeral range (RFC 6335), where the defaults live.
EPHEMERAL_PORT_START = 49152


class Protocol(StrEnum):
    """Transport the workload runs over."""

    TCP = "tcp"  # reliable, ordered byte stream
    UDP = "udp"  # datagrams: light, may be lost, duplicated or reordered
    RAW = "raw"  # raw IP (protocol 253): below both, no ports


class Pattern(StrEnum):
    """How messages flow."""

    STREAM = "stream"  # one-way, client -> server
    ECHO = "echo"  # request / response: the server sends every message back
    BULK = "bulk"  # one-way, as fast as TCP allows (UDP/RAW at ``rate``), for duration_s
    LATENCY_UNDER_LOAD = "latency_under_load"  # bulk, plus a light RTT probe around it


class DataDirection(StrEnum):
    """Which end sends the workload's messages (the client always connects)."""

    FORWARD = "forward"  # client -> server (iperf3's default)
    REVERSE = "reverse"  # server -> client (iperf3 -R)
    BIDIRECTIONAL = "bidirectional"  # both at once, each way its own flows (iperf3 --bidir)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


Port = Annotated[int, Strict(), Field(ge=0, le=65535)]


#: Messages one run may hold per protocol (the ``count`` limit; bulk's default cap).
MAX_MESSAGES = 1_000_000
#: Most parallel flows of one protocol (iperf3 allows 128; two cores do not).
MAX_PARALLEL = 16
#: How long a bulk workload sends when the file gives no duration_s.
DEFAULT_BULK_DURATION_S = 3.0


class Workload(_Frozen):
    """What each protocol sends: the same for all, so the runs pair up."""

    pattern: Pattern = Pattern.STREAM
    count: Annotated[int, Strict(), Field(ge=1, le=MAX_MESSAGES)] = 1000
    size: Annotated[int, Strict(), Field(ge=MESSAGE_HEADER_SIZE, le=MAX_MESSAGE_SIZE)] = 256
    rate: Annotated[float, Strict(), Field(gt=0, le=1_000_000)] | None = None
    interval_ms: Annotated[float, Strict(), Field(gt=0, le=60_000)] | None = None
    duration_s: Annotated[float, Strict(), Field(gt=0, le=600)] | None = None
    """``bulk`` only: how long to send (default :data:`DEFAULT_BULK_DURATION_S`); ``count``
    then caps the messages (default the most a run may hold, 1,000,000)."""
    parallel: Annotated[int, Strict(), Field(ge=1, le=MAX_PARALLEL)] = 1
    """Flows at once per direction (iperf3 -P), each its own connection or socket to its
    own server port (``ports.tcp`` / ``ports.udp`` + flow): bulk workloads, TCP and UDP
    (RAW has no ports to tell flows apart). A protocol's flows share ``count`` and
    ``rate``."""
    direction: DataDirection = DataDirection.FORWARD
    """Who sends: ``forward`` (client -> server), ``reverse`` (the server sends, iperf3
    -R) or ``bidirectional`` (both at once, iperf3 --bidir: flows 0..parallel-1 forward,
    the next ``parallel`` reverse). Stream and bulk patterns only."""
    probe_hz: Annotated[float, Strict(), Field(ge=1, le=100)] = 20.0
    """``latency_under_load``: UDP and TCP probes per second (flent's RRUL uses 5-100)."""
    probe_idle_s: Annotated[float, Strict(), Field(ge=0.2, le=30)] = 1.0
    """``latency_under_load``: probing alone before the load starts and after it ends."""

    @model_validator(mode="after")
    def _one_pace(self) -> Workload:
        if self.rate is not None and self.interval_ms is not None:
            raise ValueError("@rate@ give either rate (messages/s) or interval_ms, not both")
        if self.duration_s is not None and not self.bulk:
            raise ValueError(
                '@duration_s@ only for pattern = "bulk" or "latency_under_load" (stream and '
                "echo send count messages)"
            )
        # compared with the defaults, not "was it given": a sweep cell re-states every field
        defaults = type(self).model_fields
        probing = [
            name
            for name in ("probe_hz", "probe_idle_s")
            if getattr(self, name) != defaults[name].default
        ]
        if probing and not self.probing:
            raise ValueError(
                f'@{probing[0]}@ only for pattern = "latency_under_load" (the probe runs '
                "beside a bulk load)"
            )
        if self.direction is not DataDirection.FORWARD and self.pattern is Pattern.ECHO:
            raise ValueError(
                f"@direction@ {self.direction.value!r}: echo already goes both ways; reverse "
                'and bidirectional are for pattern = "stream", "bulk" or "latency_under_load"'
            )
        if self.count < self.flows:
            raise ValueError(
                f"@count@ {self.count} messages cannot be shared by {self.flows} flows"
            )
        if self.parallel > 1 and not self.bulk:
            raise ValueError(
                '@parallel@ parallel flows are a bulk test (iperf3 -P): pattern = "bulk" or '
                '"latency_under_load"'
            )
        if self.bulk and "count" not in self.model_fields_set:
            return self.model_copy(update={"count": MAX_MESSAGES})
        return self

    @property
    def bulk(self) -> bool:
        """Send as fast as the protocol allows (TCP) for a duration, as iperf3 does."""
        return self.pattern in (Pattern.BULK, Pattern.LATENCY_UNDER_LOAD)

    @property
    def flows(self) -> int:
        """Flows of one protocol with ports (TCP, UDP): ``parallel`` in each direction."""
        both = self.direction is DataDirection.BIDIRECTIONAL
        return self.parallel * (2 if both else 1)

    def reverse(self, flow: int) -> bool:
        """Whether ``flow`` sends server -> client (reverse, or bidirectional's second half)."""
        if self.direction is DataDirection.BIDIRECTIONAL:
            return flow >= self.parallel
        return self.direction is DataDirection.REVERSE

    @property
    def probing(self) -> bool:
        """A latency probe runs before, during and after the load (flent's RRUL idea)."""
        return self.pattern is Pattern.LATENCY_UNDER_LOAD

    @property
    def messages_per_second(self) -> float:
        """Send rate; default 1000 messages/s. Unbounded (inf) for bulk without ``rate``."""
        if self.rate is not None:
            return self.rate
        if self.interval_ms is not None:
            return 1000.0 / self.interval_ms
        return math.inf if self.bulk else 1000.0

    @property
    def send_duration_s(self) -> float:
        """How long the sender sends: bulk's duration, else count at the configured rate."""
        if self.bulk:  # count at rate may end it first (unpaced TCP: only the duration)
            paced_s = self.count / self.messages_per_second
            return min(self.duration_s or DEFAULT_BULK_DURATION_S, paced_s or math.inf)
        return self.count / self.messages_per_second


class Ports(_Frozen):
    """Server ports inside the server namespace (clients use ephemeral ports)."""

    tcp: Port = 50000
    udp: Port = 50001
    probe: Port = 50100
    """latency_under_load: the probe's UDP and TCP port."""
    allow_privileged: StrictBool = False

    @model_validator(mode="after")
    def _check(self) -> Ports:
        if self.probe in (self.tcp, self.udp):
            raise ValueError(
                f"@probe@ port {self.probe} is the workload's own: the probe needs its own port"
            )
        for name in ("tcp", "udp", "probe"):
            port = getattr(self, name)
            if port == 0:
                raise ValueError(f"@{name}@ port 0 means 'any port'; a server needs a fixed port")
            if port < WELL_KNOWN_PORT_LIMIT and not self.allow_privileged:
                raise ValueError(
                    f"@{name}@ port {port} is well-known (< {WELL_KNOWN_PORT_LIMIT}); "
                    "set ports.allow_privileged = true to use it"
                )
        return self


#: drain_s when the file gives none and the link holds packets briefly.
DEFAULT_DRAIN_S = 3.0
#: What a derived drain_s adds to the longest time the link may hold a packet.
DRAIN_MARGIN_S = 1.0
MAX_DRAIN_S = 600.0


class Timeouts(_Frozen):
    """Bounds that keep every run finite."""

    connect_s: Annotated[float, Strict(), Field(gt=0, le=60)] = 5.0
    drain_s: Annotated[float, Strict(), Field(gt=0, le=MAX_DRAIN_S)] = DEFAULT_DRAIN_S
    """After the last send, how long the receiver waits for stragglers. Absent from the
    file, it is derived from the link (see :meth:`Scenario.link_hold_s`)."""
    run_s: Annotated[float, Strict(), Field(gt=0, le=3600)] = 120.0


class Hosts(_Frozen):
    """Two real hosts the exchanges run between, driven over SSH (``lab.hosts``).

    Without ``[hosts]`` both ends live in the lab's namespaces on this machine. With it,
    each end runs on its host (protolab installed there, same version), captures there,
    and everything comes back into the local results folder. The path between them is
    measured as it is: no impairment is applied.
    """

    client: Annotated[str, Field(min_length=1, max_length=255)]
    """The client's SSH login, ``[user@]host[:port]``; ``~/.ssh/config`` fills the rest."""
    server: Annotated[str, Field(min_length=1, max_length=255)]
    client_address: str
    """The client's IPv4 address the workload uses (it may differ from the SSH one)."""
    server_address: str
    python: Annotated[str, Field(min_length=1, max_length=255)] = "python3"
    """The far ends' Python with protolab installed (a path, or a name on their PATH)."""
    known_hosts: str | None = None
    """SSH files, when not ``~/.ssh``'s: relative paths are to the scenario file."""
    identity: str | None = None
    ssh_config: str | None = None
    capture: StrictBool = True
    """Capture on both hosts (needs root or CAP_NET_RAW there)."""

    @model_validator(mode="after")
    def _check(self) -> Hosts:
        from lab.errors import HostError  # noqa: PLC0415
        from lab.hosts.ssh import HostSpec  # noqa: PLC0415  # asyncssh: only when used

        for side in ("client", "server"):
            try:
                HostSpec.parse(getattr(self, side))
            except HostError as error:
                raise ValueError(f"@{side}@ {error}") from None
            address = getattr(self, f"{side}_address")
            try:
                ipaddress.IPv4Address(address)
            except ValueError:
                raise ValueError(
                    f"@{side}_address@ {address!r} is not an IPv4 address (the workload's "
                    "address on that host)"
                ) from None
        if self.client_address == self.server_address:
            raise ValueError("@server_address@ the two hosts need different addresses")
        return self


class Analysis(_Frozen):
    """How a run's records are cut up for the views over time."""

    interval_ms: Annotated[float, Strict(), Field(ge=10, le=60_000)] = 100.0
    """Width of one time-series interval (timeseries.csv), as flent's step size."""


SweepValue = float | int | str | bool


class Sweep(_Frozen):
    """``[sweep]``: run the scenario once per value of one parameter, ``repeat`` times each.

    Written as a dotted key, e.g. ``impairment.loss = [0, 1, 2, 5, 10]``; repetition r
    of a cell runs with seed ``seed + r`` so repetitions are independent samples.
    """

    parameter: str
    values: Annotated[list[SweepValue], Field(min_length=1, max_length=100)]
    repeat: Annotated[int, Strict(), Field(ge=1, le=100)] = 1

    @model_validator(mode="before")
    @classmethod
    def _from_dotted_key(cls, data: Any) -> Any:
        if not isinstance(data, dict) or "parameter" in data:
            return data
        rest = {k: v for k, v in data.items() if k != "repeat"}
        found = list(_leaves(rest))
        if len(found) != 1:
            names = ", ".join(name for name, _ in found) or "none"
            raise ValueError(
                "give exactly one parameter to sweep, e.g. impairment.loss = [0, 1, 5] "
                f"(got {names})"
            )
        ((name, values),) = found
        if not isinstance(values, list):
            raise ValueError(f"@{name}@ must be a list of values")
        for index, value in enumerate(values):
            if not isinstance(value, int | float | str):  # bool is an int
                raise ValueError(f"@{name}[{index}]@ must be a number, a string or a boolean")
            if any(_same_value(value, earlier) for earlier in values[:index]):
                raise ValueError(
                    f"@{name}[{index}]@ {value!r} is already in the list "
                    "(use sweep.repeat for repetitions)"
                )
        out: dict[str, Any] = {"parameter": name, "values": values}
        if "repeat" in data:
            out["repeat"] = data["repeat"]
        return out


def _same_value(a: object, b: object) -> bool:
    """Equal and of the same kind: 1 and 1.0 are the same value, 1 and true are not."""
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _leaves(table: dict[str, Any], prefix: str = "") -> Any:
    for key, value in table.items():
        if isinstance(value, dict):
            yield from _leaves(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


class Scenario(_Frozen):
    """One experiment, as read from a scenario file."""

    name: Annotated[
        str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    ]
    description: str = ""
    seed: Annotated[int, Strict(), Field(ge=0, le=2**63 - 1)] = 1
    protocols: Annotated[list[Protocol], Field(min_length=1)] = [Protocol.TCP, Protocol.UDP]
    congestion_control: Literal["cubic", "reno", "bbr"] = "cubic"
    nagle: Annotated[bool, Strict()] = False
    """TCP: let Nagle's algorithm coalesce small writes (TCP_NODELAY off on both ends).

    Off by default: each message then leaves when written, so its delay is the link's,
    not Nagle's wait for the previous segment's ACK (RFC 896) stacked on the peer's
    delayed ACK (RFC 1122 §4.2.3.2). ``scenarios/nagle.toml`` shows the difference."""
    workload: Workload = Workload()
    ports: Ports = Ports()
    timeouts: Timeouts = Timeouts()
    impairment: ImpairmentSpec = ImpairmentSpec()
    analysis: Analysis = Analysis()
    sweep: Sweep | None = None
    hosts: Hosts | None = None

    def link_hold_s(self) -> float:
        """The longest the link may hold a message on its way (both ways for echo)."""
        hold = {d: self.impairment.for_direction(d).longest_hold_s() for d in Direction}
        one_way = hold[Direction.CLIENT_TO_SERVER]
        if self.workload.pattern is Pattern.ECHO:
            return one_way + hold[Direction.SERVER_TO_CLIENT]
        return one_way

    @model_validator(mode="after")
    def _bounded_in_time(self) -> Scenario:
        """Every run ends, and waits long enough that a delivered message is never called lost.

        A drain shorter than the link's longest hold would end the receiver while the
        engine still holds delivered packets (reported lost), so it is derived from the
        link when the file gives none, and refused when the file gives too little.
        """
        workload, timeouts = self.workload, self.timeouts
        sending = workload.send_duration_s
        if sending > timeouts.run_s:
            raise ValueError(
                f"@workload.count@ {workload.count} messages at {workload.messages_per_second:g}"
                f"/s take {_duration(sending)} to send, longer than timeouts.run_s = "
                f"{timeouts.run_s:g} s; lower count, raise the rate, or raise timeouts.run_s "
                "(at most 3600)"
            )
        round_trip = sum(self.impairment.for_direction(d).delay_ms / 1000 for d in Direction)
        if Protocol.TCP in self.protocols and round_trip >= timeouts.connect_s:
            raise ValueError(
                f"@timeouts.connect_s@ {timeouts.connect_s:g} s is not longer than a round "
                f"trip over this link ({round_trip:g} s of delay): TCP could never connect"
            )
        needed = self.link_hold_s()
        if "drain_s" in timeouts.model_fields_set:
            if timeouts.drain_s < needed:
                raise ValueError(
                    f"@timeouts.drain_s@ {timeouts.drain_s:g} s is shorter than the longest "
                    f"the link may hold a message ({needed:.3g} s: delay, jitter at its "
                    f"extreme, a full queue at rate_bps); give at least {needed:.3g} or leave "
                    "it out to have it derived"
                )
            return self
        derived = max(DEFAULT_DRAIN_S, needed + DRAIN_MARGIN_S)
        if derived > MAX_DRAIN_S:
            raise ValueError(
                f"@impairment@ the link may hold a message {needed:.3g} s (delay, jitter at "
                f"its extreme, a full queue at rate_bps): more than the longest drain "
                f"({MAX_DRAIN_S:g} s); shorten the delay or the queue, or raise rate_bps"
            )
        if derived == timeouts.drain_s:
            return self
        drained = timeouts.model_copy(update={"drain_s": derived})
        return self.model_copy(update={"timeouts": drained})

    @model_validator(mode="after")
    def _real_path(self) -> Scenario:
        hosts_netem = self.impairment.backend == "netem"
        if self.hosts is not None and not self.impairment.is_clean and not hosts_netem:
            raise ValueError(
                "@impairment@ with [hosts] the lab measures the real path between them and "
                'impairs nothing: remove [impairment], or set impairment.backend = "netem" '
                "to impair each host's egress with tc netem (where its kernel has it)"
            )
        return self

    @model_validator(mode="after")
    def _unique_protocols(self) -> Scenario:
        if len(set(self.protocols)) != len(self.protocols):
            raise ValueError("@protocols@ each protocol may appear once")
        datagrams = [p.value for p in self.protocols if p is not Protocol.TCP]
        if self.workload.parallel > 1 and Protocol.RAW in self.protocols:
            raise ValueError(
                "@workload.parallel@ raw IP has no ports, so parallel raw flows could not be "
                "told apart; drop raw from protocols or set parallel = 1"
            )
        for protocol in (Protocol.TCP, Protocol.UDP):
            if protocol not in self.protocols:
                continue
            first = getattr(self.ports, protocol.value)
            flows = range(first, first + self.workload.flows)
            if flows[-1] > 65535:
                raise ValueError(
                    f"@workload.parallel@ {self.workload.flows} {protocol.value} flows need "
                    f"ports {flows[0]}-{flows[-1]}: past 65535"
                )
            if self.workload.probing and self.ports.probe in flows:
                raise ValueError(
                    f"@ports.probe@ {self.ports.probe} is one of the {protocol.value} flows' "
                    f"ports ({flows[0]}-{flows[-1]}): the probe needs its own"
                )
        if (
            self.workload.bulk
            and self.workload.rate is None
            and self.workload.interval_ms is None
            and datagrams
        ):
            raise ValueError(
                f"@workload.rate@ bulk over {' and '.join(datagrams)} needs a target rate in "
                "messages/s (as iperf3 -b): nothing slows a datagram sender down"
            )
        if Protocol.RAW in self.protocols and self.workload.size < RAW_MIN_SIZE:
            raise ValueError(
                f"@workload.size@ raw needs at least {RAW_MIN_SIZE} bytes "
                "(16-byte header + 4-byte CRC-32)"
            )
        return self


def _duration(seconds: float) -> str:
    """A duration a reader takes in at a glance: 90 s, 2.5 h, 23.1 days."""
    if seconds < 120:
        return f"{seconds:.3g} s"
    if seconds < 7200:
        return f"{seconds / 60:.3g} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.3g} h"
    return f"{seconds / 86_400:.3g} days"


_FIELD_IN_MESSAGE = re.compile(r"^@(?P<field>[^@]+)@ (?P<message>.*)$", re.S)


def _error_from_validation(path: Path, error: ValidationError) -> ScenarioError:
    """Turn pydantic's first error into 'file: dotted.field: message'."""
    first = error.errors(include_url=False)[0]
    location = [str(part) for part in first["loc"]]
    message = str(first["msg"])
    message = message.removeprefix("Value error, ")
    match = _FIELD_IN_MESSAGE.match(message)
    if match:
        location.append(match["field"])
        message = match["message"]
    if first["type"] == "extra_forbidden":
        message = "unknown key (check the spelling; see the scenario schema in README)"
    elif first["type"] == "missing":
        message = "required"
    return ScenarioError(path, ".".join(location), _plain(message, first))


_BOUND_ERRORS = {"greater_than_equal", "less_than_equal", "greater_than", "less_than"}
_TYPE_ERRORS = {
    "float_type": "a number",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "string_type": "a string",
}


def _plain(message: str, error: Any) -> str:
    """Reword pydantic's messages the way the README documents them."""
    context = error.get("ctx") or {}
    if error["type"] in _BOUND_ERRORS:
        (low, low_inclusive), (high, high_inclusive) = _field_bounds(error["loc"])
        if low is not None and high is not None:
            if low_inclusive and high_inclusive:
                return f"must be between {low} and {high} (got {error['input']!r})"
            above = f">= {low}" if low_inclusive else f"> {low}"
            below = f"<= {high}" if high_inclusive else f"< {high}"
            return f"must be {above} and {below} (got {error['input']!r})"
    if error["type"] in _TYPE_ERRORS:
        return f"must be {_TYPE_ERRORS[error['type']]} (got {error['input']!r})"
    if error["type"] == "literal_error" and "expected" in context:
        return f"must be one of {context['expected']}"
    return message


Bound = tuple[Any, bool]  # (limit, inclusive)


def _field_bounds(location: tuple[Any, ...]) -> tuple[Bound, Bound]:
    """The (lower, upper) bounds declared on the field at ``location``, if any."""
    model: Any = Scenario
    info = None
    unknown: tuple[Bound, Bound] = ((None, True), (None, True))
    for part in location:
        fields = getattr(model, "model_fields", None)
        if not isinstance(part, str) or fields is None or part not in fields:
            return unknown
        info = fields[part]
        model = _model_in(info.annotation)
    if info is None:
        return unknown
    constraints = list(info.metadata)
    for member in getattr(info.annotation, "__args__", ()):
        for extra in getattr(member, "__metadata__", ()):
            constraints.extend(getattr(extra, "metadata", [extra]))
    low: Bound = (None, True)
    high: Bound = (None, True)
    for constraint in constraints:
        for name, inclusive in (("ge", True), ("gt", False)):
            if getattr(constraint, name, None) is not None:
                low = (getattr(constraint, name), inclusive)
        for name, inclusive in (("le", True), ("lt", False)):
            if getattr(constraint, name, None) is not None:
                high = (getattr(constraint, name), inclusive)
    return low, high


def _model_in(annotation: Any) -> Any:
    """The pydantic model class inside ``annotation`` (``X | None`` included)."""
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def parse_scenario(data: dict[str, Any], path: Path | str = "<scenario>") -> Scenario:
    """Validate already-parsed TOML data."""
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise _error_from_validation(Path(path), error) from None


@dataclass(frozen=True)
class SweepCell:
    """One run of a sweep: the parameter's value, the repetition, the scenario to run."""

    parameter: str
    value: SweepValue
    repetition: int
    scenario: Scenario

    @property
    def label(self) -> str:
        """Folder-safe name, e.g. ``loss=5-r2``."""
        short = self.parameter.rsplit(".", 1)[-1]
        return f"{short}={self.value}-r{self.repetition}"

    def to_toml(self, sweep_file: Path | str) -> str:
        """This cell as a scenario file of its own: ``lab run`` on it repeats the cell."""
        data = self.scenario.model_dump(mode="json", exclude={"sweep"}, exclude_none=True)
        return (
            f"# Cell {self.label} of the sweep in {sweep_file}:\n"
            f"# {self.parameter} = {self.value!r}, repetition {self.repetition}, "
            f"seed {self.scenario.seed}.\n\n{tomli_w.dumps(data)}"
        )


def _with_value(base: dict[str, Any], dotted: str, value: SweepValue) -> dict[str, Any]:
    data = copy.deepcopy(base)
    target = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        target = target.setdefault(key, {})
        if not isinstance(target, dict):
            raise ValueError(f"{dotted}: {key} is not a table")
    target[leaf] = value
    return data


def sweep_cells(scenario: Scenario, path: Path | str = "<scenario>") -> list[SweepCell]:
    """Every (value, repetition) of the scenario's sweep, each a validated scenario."""
    if scenario.sweep is None:
        return [SweepCell("", "", 0, scenario)]
    sweep = scenario.sweep
    base = scenario.model_dump(mode="json", exclude={"sweep"}, exclude_none=True)
    cells = []
    for index, value in enumerate(sweep.values):
        try:
            cell = parse_scenario(_with_value(base, sweep.parameter, value), path)
        except (ScenarioError, ValueError) as error:
            message = getattr(error, "message", str(error))
            raise ScenarioError(path, f"sweep.{sweep.parameter}[{index}]", message) from None
        for repetition in range(sweep.repeat):
            # a swept seed is the cell's own; repetitions count up from it
            seeded = cell.model_copy(update={"seed": cell.seed + repetition})
            cells.append(SweepCell(sweep.parameter, value, repetition, seeded))
    return cells


class _HostPairs(_Frozen):
    """A hosts file: the host pairs a sweep's cells are spread over."""

    pair: Annotated[list[Hosts], Field(min_length=1, max_length=64)]


def load_hosts_file(path: Path | str) -> list[Hosts]:
    """Read ``--hosts-file``: ``[[pair]]`` tables, each a ``[hosts]`` table of its own.

    SSH file paths in it are relative to the hosts file (made absolute here).
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(path, "", f"cannot read: {error}") from None
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(path, "", f"not valid TOML: {error}") from None
    try:
        pairs = _HostPairs.model_validate(data).pair
    except ValidationError as error:
        raise _error_from_validation(path, error) from None
    folder = path.resolve().parent

    def absolute(value: str | None) -> str | None:
        if value is None or Path(value).expanduser().is_absolute():
            return value
        return str(folder / value)

    return [
        pair.model_copy(
            update={
                name: absolute(getattr(pair, name))
                for name in ("known_hosts", "identity", "ssh_config")
            }
        )
        for pair in pairs
    ]


def on_hosts(scenario: Scenario, hosts: Hosts, path: Path) -> Scenario:
    """``scenario`` (from file ``path``) run between ``hosts``, validated again: a real
    path takes no impairment, so a sweep over impairment cannot be spread over hosts."""
    data = scenario.model_dump(mode="json", exclude_none=True)
    data["hosts"] = hosts.model_dump(mode="json", exclude_none=True)
    try:
        return Scenario.model_validate(data)
    except ValidationError as error:
        raise _error_from_validation(path, error) from None


def load_scenario(path: Path | str) -> Scenario:
    """Read and validate one scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError(path, "", "no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ScenarioError(path, "", f"cannot read: {error}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ScenarioError(path, "", f"not valid TOML: {error}") from None
    scenario = parse_scenario(data, path)
    sweep_cells(scenario, path)  # every cell of a sweep must be valid before anything runs
    return scenario
