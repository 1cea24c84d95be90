"""Per-packet impairment decisions for the userspace forwarder, mirroring Linux netem.

The forwarder calls :meth:`DirectionModel.decide` once per IP packet of one direction
and acts on the :class:`Verdict`. The model is pure (no I/O, no clock): time is passed
in, so tests can drive it with synthetic timestamps and runs replay exactly from a seed.

Order of decisions follows ``netem_enqueue`` in ``net/sched/sch_netem.c``: loss,
duplication, corruption, queue limit, reorder, then delay/jitter and rate. Deliberate
differences from the kernel, kept because they make measurements easier to read:

* A packet chosen for both loss and duplication is dropped (netem forwards one copy),
  so the measured loss rate equals ``loss`` and loss decisions never depend on
  ``duplicate``. The duplicate copy is not impaired again (netem re-enqueues it at the
  root qdisc, where it meets loss and delay a second time); it leaves with the original
  (or one serialization time later under ``rate_bps``).
* Correlated values use netem's formula ``next = (1 - rho) * U + rho * last``, which
  like netem narrows the spread and changes the effective rate. For delay the kernel
  then takes the value modulo the table size (or ``2 * jitter``), which throws most of
  the correlation away; here the correlated value is mapped through the inverse CDF,
  so ``delay_correlation`` really correlates successive delays.
* ``keep_order`` has no netem equivalent (netem sorts by departure time, so jitter
  reorders packets unless a rate is set).
* ``rate_bps`` counts ``wire_size`` bytes as the caller gives them (the IP packet on a
  TUN device); netem on a veth also counts the 14-byte Ethernet header.

``queue_limit`` (default 1000, netem's default ``limit``) bounds packets accepted but
not yet departed; beyond it packets are ``DROPPED_QUEUE``. With 20 ms of delay that
allows up to 50k packets/s before the limit bites (20k pps holds about 400).

Random streams are per flow: every random decision (loss, Gilbert-Elliott state,
duplication, corruption, reordering and its gap counter, jitter) comes from streams
keyed by (seed, direction, flow, decision kind), where the forwarder names the flow
(:func:`flow_key`: IP protocol and the server's port). The same seed therefore gives a
protocol's packets the same decisions whatever other protocols sent before or beside
it: a run of TCP then UDP loses the same UDP messages as a UDP-only run. What the
flows really share stays shared: the queue, the rate limiter and ``keep_order``.

Speed: every random outcome (lost?, duplicated?, bit to flip, delay in ns, ...) is
computed with numpy in blocks of :data:`BLOCK_SIZE` and handed out one list item at a
time, so a decision costs one C-level ``next()`` instead of arithmetic in Python.

This model is the reference of the compiled core (``_core.c``, :mod:`lab.impairment.core`),
which the forwarder runs by default: the core replays the same PCG64 streams, the same
block and chunk arithmetic and the same decisions, and ``tests/test_core_differential.py``
requires identical verdicts. A change here must be made there too.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Iterator
from functools import cache, partial
from itertools import chain
from statistics import NormalDist
from typing import Final, NamedTuple, TypeVar

import numpy as np
from numpy.random import PCG64, Generator, SeedSequence
from numpy.typing import NDArray

from lab._protocols import IPPROTO_TCP, IPPROTO_UDP
from lab.impairment.spec import Direction, Distribution, LinkImpairment

FORWARDED: Final = 0
DROPPED_LOSS: Final = 1
DROPPED_QUEUE: Final = 2
FATE_NAMES: Final = ("forwarded", "dropped-loss", "dropped-queue")

BLOCK_SIZE: Final = 65536
"""Outcomes computed per numpy call; handing one out is then a list step."""

NETEM_DIST_SCALE: Final = 8192
"""netem's fixed-point scale: a table entry of 8192 means one jitter unit."""

NETEM_TABLE_SIZE: Final = 4096
"""Entries in iproute2's normal/pareto/paretonormal .dist tables."""

_PARETO_ALPHA: Final = 3.0
_NORMAL_GRID: Final = 5e-5
_SHRT_MIN: Final = -32768
_SHRT_MAX: Final = 32767

# Independent random streams: one per decision kind, so enabling one impairment never
# shifts the numbers another one sees.
_KIND_LOSS: Final = 0
_KIND_DUPLICATE: Final = 1
_KIND_CORRUPT: Final = 2
_KIND_CORRUPT_BIT: Final = 3
_KIND_DELAY: Final = 4
_KIND_REORDER: Final = 5

_DIRECTION_INDEX: Final = {direction: index for index, direction in enumerate(Direction)}

_LOSS_NONE: Final = 0
_LOSS_RANDOM: Final = 1
_LOSS_GEMODEL: Final = 2

# rho ** -k must stay finite inside one AR(1) chunk: keep it below 1e280.
_AR1_MAX_EXPONENT: Final = 280 * math.log(10)

T = TypeVar("T")


class Verdict(NamedTuple):
    """What the forwarder does with one packet."""

    fate: int
    """FORWARDED, DROPPED_LOSS or DROPPED_QUEUE."""
    send_at_ns: int
    """Absolute departure time (== now_ns when it goes at once); meaningless if dropped."""
    duplicate_at_ns: int
    """-1 when not duplicated, else when the extra copy leaves."""
    corrupt_bit: int
    """-1 when not corrupted, else a random int; flip bit (corrupt_bit % payload_bits)."""
    reordered: bool
    """True when the reorder rule sent this packet ahead, skipping the delay."""


# tuple.__new__ builds a Verdict in C: twice as fast as the NamedTuple constructor.
_new_tuple = tuple.__new__


def _generator(seed: int, direction_index: int, kind: int, flow: int = 0) -> Generator:
    """One independent PCG64 stream per (seed, direction, decision kind, flow).

    Flow 0 (packets no flow is named for) keeps the two-part key, so its streams are
    the ones a single-flow model has always drawn from.
    """
    key = (direction_index, kind) if flow == 0 else (direction_index, kind, flow)
    return Generator(PCG64(SeedSequence(seed, spawn_key=key)))


def flow_key(packet: bytes, to_server: bool) -> int:
    """The flow an IPv4 packet belongs to, for its random streams: ``proto << 16 | port``.

    ``port`` is the server's port (the destination towards the server, the source on
    the way back) for TCP and UDP, so both directions and every run of a scenario name
    the flow alike, whatever ephemeral port the client got; 0 for other protocols
    (RAW's protocol 253, ICMP) and for fragments after the first, which carry no ports.
    Anything that is not IPv4 is flow 0.
    """
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return 0
    proto = packet[9]
    if proto in (IPPROTO_TCP, IPPROTO_UDP):
        ihl = (packet[0] & 0x0F) * 4
        first_fragment = not ((packet[6] & 0x1F) or packet[7])
        if first_fragment and len(packet) >= ihl + 4:
            at = ihl + 2 if to_server else ihl
            return proto << 16 | packet[at] << 8 | packet[at + 1]
    return proto << 16


def correlation_chunk(rho: float) -> int:
    """Draws per chunk of :func:`correlate`: short enough that rho**-k stays finite."""
    return max(1, int(_AR1_MAX_EXPONENT / -math.log(rho)))


@cache
def _growth(rho: float, n: int) -> NDArray[np.float64]:
    """rho**-k for k = 1..n, from libm's pow (math.pow), not numpy's power.

    numpy may compute power with its own SIMD code, which need not round like libm;
    the compiled core (``_core.c``) calls libm's pow, so both give the same bits.
    """
    grow = np.array([math.pow(rho, -k) for k in range(1, n + 1)], dtype=np.float64)
    grow.flags.writeable = False
    return grow


def correlate(u: NDArray[np.float64], rho: float, last: float) -> NDArray[np.float64]:
    """netem's get_crandom over a block: y[k] = (1 - rho) * u[k] + rho * y[k-1].

    Vectorised as y[k] = rho**k * (last + (1 - rho) * sum_i rho**-i * u[i]), in chunks
    short enough that rho**-k stays finite. ``last`` is y[-1] of the previous block.
    The compiled core repeats these exact steps (chunking restarts at every block of
    :data:`BLOCK_SIZE`), so its correlated draws are bit-identical.
    """
    if rho <= 0.0:
        return u
    if rho >= 1.0:
        return np.full_like(u, last)
    out = np.empty_like(u)
    chunk = correlation_chunk(rho)
    growth = _growth(rho, min(chunk, len(u)))
    for start in range(0, len(u), chunk):
        part = u[start : start + chunk]
        grow = growth[: len(part)]
        y = (last + (1.0 - rho) * np.cumsum(grow * part)) / grow
        out[start : start + len(part)] = y
        last = float(y[-1])
    return out


class _Uniforms:
    """Blocks of U[0, 1) from one stream, correlated as netem's get_crandom if asked."""

    def __init__(self, generator: Generator, correlation_percent: float) -> None:
        self._generator = generator
        self._rho = correlation_percent / 100.0
        # netem seeds `last` with one random draw.
        self._last = float(generator.random()) if self._rho > 0 else 0.0

    def block(self) -> NDArray[np.float64]:
        u = self._generator.random(BLOCK_SIZE)
        if self._rho > 0:
            u = correlate(u, self._rho, self._last)
            self._last = float(u[-1])
        return u


def _outcomes(make_block: Callable[[], list[T]]) -> Callable[[], T]:
    """A C-speed callable handing out block items one by one, refilling as needed."""

    def blocks() -> Iterator[list[T]]:
        while True:
            yield make_block()

    return chain.from_iterable(blocks()).__next__


def _bools(uniforms: _Uniforms, probability: float) -> Callable[[], bool]:
    """Bernoulli outcomes, as netem's `probability >= get_crandom()`."""

    def block() -> list[bool]:
        out: list[bool] = (uniforms.block() < probability).tolist()
        return out

    return _outcomes(block)


def _c_div(numerator: int, denominator: int) -> int:
    """C integer division (truncates toward zero), as the table generators use."""
    quotient = abs(numerator) // denominator
    return quotient if numerator >= 0 else -quotient


def _clamp_short(value: int) -> int:
    return max(_SHRT_MIN, min(_SHRT_MAX, value))


def _normal_quantile(j: int) -> float:
    # normal.c sweeps x from -10 in steps of 5e-5 and keeps, for each i, the last x with
    # rint(16384 * Phi(x)) == i (the grid point just below Phi^-1((i + 0.5) / 16384));
    # it emits every 4th entry. Snapping to the same grid reproduces normal.dist.
    quantile = NormalDist().inv_cdf((4 * j + 0.5) / (4 * NETEM_TABLE_SIZE))
    step = math.ceil((quantile + 10.0) / _NORMAL_GRID) - 1
    return -10.0 + step * _NORMAL_GRID


def _pareto_value(j: int) -> int:
    # pareto.c: alpha = 3 quantiles, shifted by the mean (1.5) and scaled by 4/3.
    fraction = (65536 - 16 * j) / 65536
    quantile = float(fraction ** (-1.0 / _PARETO_ALPHA))
    value = (quantile - 1.5) * (4.0 / 3.0) * NETEM_DIST_SCALE
    return round(min(value, float(_SHRT_MAX)))


@cache
def netem_table(distribution: Distribution) -> tuple[int, ...]:
    """The s16 inverse-CDF table iproute2 ships as ``<name>.dist`` (4096 entries).

    Entries are in units of 1/8192 jitter. Uniform has no table (the kernel computes it).
    """
    if distribution is Distribution.UNIFORM:
        raise ValueError("the uniform distribution has no netem table")
    if distribution is Distribution.NORMAL:
        return tuple(
            _clamp_short(round(_normal_quantile(j) * NETEM_DIST_SCALE))
            for j in range(NETEM_TABLE_SIZE)
        )
    if distribution is Distribution.PARETO:
        return tuple(_pareto_value(j) for j in range(NETEM_TABLE_SIZE))
    # paretonormal.c: quantile-wise (normvalue + 3 * parvalue) / 4 in C integer maths.
    return tuple(
        _clamp_short(
            _c_div(round(_normal_quantile(j) * NETEM_DIST_SCALE) + 3 * _pareto_value(j), 4)
        )
        for j in range(NETEM_TABLE_SIZE)
    )


def _floats(uniforms: _Uniforms) -> Callable[[], float]:
    def block() -> list[float]:
        out: list[float] = uniforms.block().tolist()
        return out

    return _outcomes(block)


def _corrupt_bits(uniforms: _Uniforms, bits: Generator, probability: float) -> Callable[[], int]:
    """-1 (intact) or a random 32-bit bit index, per packet."""

    def block() -> list[int]:
        hit = uniforms.block() < probability
        index = bits.integers(0, 1 << 32, BLOCK_SIZE, dtype=np.int64)
        out: list[int] = np.where(hit, index, -1).tolist()
        return out

    return _outcomes(block)


def _delays(uniforms: _Uniforms, params: LinkImpairment) -> Callable[[], int]:
    """Per-packet delay in ns: delay + jitter drawn as netem's tabledist, never negative."""
    delay_ns = round(params.delay_ms * 1_000_000)
    jitter_ns = round(params.jitter_ms * 1_000_000)
    if params.distribution is Distribution.UNIFORM:
        table_ns = None
    else:
        table_ns = np.array(
            [round(jitter_ns * t / NETEM_DIST_SCALE) for t in netem_table(params.distribution)],
            dtype=np.int64,
        )

    def block() -> list[int]:
        u = uniforms.block()
        if table_ns is None:  # U[-jitter, +jitter), as (rnd % 2 sigma) - sigma
            steps = np.minimum((u * (2 * jitter_ns)).astype(np.int64), 2 * jitter_ns - 1)
            offsets = steps - jitter_ns
        else:
            index = np.minimum((u * NETEM_TABLE_SIZE).astype(np.intp), NETEM_TABLE_SIZE - 1)
            offsets = table_ns[index]
        out: list[int] = np.maximum(delay_ns + offsets, 0).tolist()
        return out

    return _outcomes(block)


class _FlowDraws:
    """The random streams of one flow in one direction, and the state they carry."""

    __slots__ = (
        "corrupt",
        "counter",
        "delays",
        "duplicate",
        "ge_bad",
        "ge_draw",
        "lost",
        "reorder",
    )

    def __init__(self, params: LinkImpairment, seed: int, direction_index: int, flow: int) -> None:
        def uniforms(kind: int, correlation: float = 0.0) -> _Uniforms:
            return _Uniforms(_generator(seed, direction_index, kind, flow), correlation)

        # stand-ins for disabled streams: never called
        self.lost: Callable[[], bool] = bool
        self.ge_draw: Callable[[], float] = float
        self.ge_bad = False
        if params.gemodel is not None:
            self.ge_draw = _floats(uniforms(_KIND_LOSS))
        elif params.loss > 0:
            self.lost = _bools(uniforms(_KIND_LOSS, params.loss_correlation), params.loss / 100)

        self.duplicate: Callable[[], bool] | None = None
        if params.duplicate > 0:
            self.duplicate = _bools(
                uniforms(_KIND_DUPLICATE, params.duplicate_correlation), params.duplicate / 100
            )
        self.corrupt: Callable[[], int] | None = None
        if params.corrupt > 0:
            self.corrupt = _corrupt_bits(
                uniforms(_KIND_CORRUPT, params.corrupt_correlation),
                _generator(seed, direction_index, _KIND_CORRUPT_BIT, flow),
                params.corrupt / 100,
            )
        self.counter = 0  # netem's reorder gap counter, per flow like the draws it gates
        self.reorder: Callable[[], bool] = bool
        if params.reorder > 0:
            self.reorder = _bools(
                uniforms(_KIND_REORDER, params.reorder_correlation), params.reorder / 100
            )
        self.delays: Callable[[], int] = int
        if round(params.jitter_ms * 1_000_000) > 0:
            self.delays = _delays(uniforms(_KIND_DELAY, params.delay_correlation), params)


class DirectionModel:
    """netem-like decisions for one direction; one instance per direction, not shared.

    ``seed`` is any non-negative int; the same (params, seed, direction) and the same
    decide() calls (flows included) give the same verdicts, and a flow's random
    decisions depend only on its own packets (see the module docstring).
    """

    __slots__ = (
        "_delay_ns",
        "_direction_index",
        "_flows",
        "_gap",
        "_ge_loss_bad",
        "_ge_loss_good",
        "_ge_p",
        "_ge_r",
        "_jittered",
        "_keep_order",
        "_last_send",
        "_limit",
        "_link_free",
        "_loss_mode",
        "_loss_only",
        "_marks",
        "_pending",
        "_pop",
        "_push",
        "_rate_bps",
        "_seed",
        "_tail",
        "direction",
        "is_clean",
        "params",
    )

    def __init__(self, params: LinkImpairment, seed: int, direction: Direction) -> None:
        self.params = params
        self.direction = direction
        self.is_clean = params.is_clean
        self._seed = seed
        self._direction_index = _DIRECTION_INDEX[direction]
        self._flows: dict[int, _FlowDraws] = {}

        self._loss_mode = _LOSS_NONE
        self._ge_p = self._ge_r = self._ge_loss_good = self._ge_loss_bad = 0.0
        if params.gemodel is not None:
            ge = params.gemodel
            self._loss_mode = _LOSS_GEMODEL
            self._ge_p = ge.p / 100.0
            self._ge_r = ge.r_effective / 100.0
            self._ge_loss_bad = ge.one_minus_h / 100.0
            self._ge_loss_good = ge.one_minus_k / 100.0
        elif params.loss > 0:
            self._loss_mode = _LOSS_RANDOM

        self._marks = params.duplicate > 0 or params.corrupt > 0
        # tc turns `reorder P` without a gap into gap 1: every packet is a candidate.
        self._gap = max(1, params.reorder_gap) if params.reorder > 0 else 0

        self._delay_ns = round(params.delay_ms * 1_000_000)
        self._jittered = round(params.jitter_ms * 1_000_000) > 0
        self._rate_bps = params.rate_bps
        self._keep_order = params.keep_order
        self._last_send = 0
        self._link_free = 0
        self._limit = params.queue_limit
        holds = self._delay_ns > 0 or self._jittered or self._rate_bps > 0
        self._loss_only = not (self._marks or self._gap or holds)
        self._tail = self._rate_bps > 0 or self._keep_order or params.duplicate > 0

        # Departure times of accepted packets, purged lazily when the limit is reached.
        # They arrive in order unless jitter (without rate or keep_order) reorders them:
        # then a heap, else a deque (much cheaper per packet).
        pending: deque[int] | list[int]
        self._push: Callable[[int], None]
        self._pop: Callable[[], int]
        if self._jittered and self._rate_bps == 0 and not self._keep_order:
            heap: list[int] = []
            pending = heap
            self._push = partial(heapq.heappush, heap)
            self._pop = partial(heapq.heappop, heap)
        else:
            queue: deque[int] = deque()
            pending = queue
            self._push = queue.append
            self._pop = queue.popleft
        self._pending = pending

    def _new_flow(self, flow: int) -> _FlowDraws:
        draws = _FlowDraws(self.params, self._seed, self._direction_index, flow)
        self._flows[flow] = draws
        return draws

    def backlog(self, now_ns: int) -> int:
        """Packets accepted but not yet departed at now_ns (what queue_limit bounds)."""
        return sum(1 for t in self._pending if t > now_ns)

    def decide(self, now_ns: int, wire_size: int, flow: int = 0) -> Verdict:
        """Fate and timing of one packet of ``flow`` arriving at now_ns; wire_size in bytes.

        ``flow`` names the random streams the decisions come from (:func:`flow_key`).
        """
        if self.is_clean:
            return _new_tuple(Verdict, (FORWARDED, now_ns, -1, -1, False))
        draws = self._flows.get(flow) or self._new_flow(flow)

        # 1. Loss (random with correlation, or Gilbert-Elliott as netem's loss_gilb_ell:
        # the current state decides both the transition and this packet's loss).
        mode = self._loss_mode
        if mode:
            if mode == _LOSS_RANDOM:
                if draws.lost():
                    return _new_tuple(Verdict, (DROPPED_LOSS, now_ns, -1, -1, False))
            else:
                draw = draws.ge_draw
                if draws.ge_bad:
                    if draw() < self._ge_r:
                        draws.ge_bad = False
                    if draw() < self._ge_loss_bad:
                        return _new_tuple(Verdict, (DROPPED_LOSS, now_ns, -1, -1, False))
                else:
                    if draw() < self._ge_p:
                        draws.ge_bad = True
                    if draw() < self._ge_loss_good:
                        return _new_tuple(Verdict, (DROPPED_LOSS, now_ns, -1, -1, False))
            if self._loss_only:
                return _new_tuple(Verdict, (FORWARDED, now_ns, -1, -1, False))

        # 2. Duplication and 3. corruption.
        duplicate = False
        bit = -1
        if self._marks:
            if draws.duplicate is not None:
                duplicate = draws.duplicate()
            if draws.corrupt is not None:
                bit = draws.corrupt()

        # 4. Queue limit (the queue stays empty when nothing holds packets).
        pending = self._pending
        if len(pending) >= self._limit:
            pop = self._pop
            while pending and pending[0] <= now_ns:
                pop()
            if len(pending) >= self._limit:
                return _new_tuple(Verdict, (DROPPED_QUEUE, now_ns, -1, -1, False))

        # 5. Reorder: after gap-1 delayed packets, each one may jump the queue.
        gap = self._gap
        if gap:
            if draws.counter >= gap - 1 and draws.reorder():
                draws.counter = 0
                duplicate_now = now_ns if duplicate else -1
                return _new_tuple(Verdict, (FORWARDED, now_ns, duplicate_now, bit, True))
            draws.counter += 1

        # 6. Delay and jitter.
        send = now_ns + (draws.delays() if self._jittered else self._delay_ns)
        if not self._tail:
            if send > now_ns:
                self._push(send)
            return _new_tuple(Verdict, (FORWARDED, send, -1, bit, False))

        # 7. Rate: the link serializes one packet at a time after its delay.
        duplicate_at = -1
        rate = self._rate_bps
        if rate:
            tx_ns = wire_size * 8_000_000_000 // rate
            if send < self._link_free:  # noqa: PLR1730 (hot path: a branch beats max())
                send = self._link_free
            send += tx_ns
            if duplicate:
                duplicate_at = send + tx_ns
                self._link_free = duplicate_at
            else:
                self._link_free = send
        elif duplicate:
            duplicate_at = send

        # 8. keep_order: never leave before the previously scheduled packet.
        if self._keep_order:
            if send < self._last_send:
                send = self._last_send
                if 0 <= duplicate_at < send:
                    duplicate_at = send
            self._last_send = duplicate_at if duplicate_at > send else send

        if send > now_ns:
            self._push(send)
            if duplicate_at >= 0:
                if len(pending) >= self._limit:  # purge what already left, as in step 4
                    pop = self._pop
                    while pending and pending[0] <= now_ns:
                        pop()
                if len(pending) < self._limit:
                    self._push(duplicate_at)
                else:  # no room left for the copy: the queue drops it
                    duplicate_at = -1
        return _new_tuple(Verdict, (FORWARDED, send, duplicate_at, bit, False))
