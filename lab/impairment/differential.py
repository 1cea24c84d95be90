"""Differential check of the compiled core against the Python reference model.

Both models get the same seed, the same impairment (every knob, per-direction
overrides) and the same synthetic packet sequence (arrival times with bursts and
pauses, sizes, flows, directions); their verdicts must be identical, field by field.
``tests/test_core_differential.py`` runs it on 100k packets per scenario;
``bench/impairment.py`` runs it on 1M and times both models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from lab.impairment.core import CompiledModel
from lab.impairment.model import DirectionModel
from lab.impairment.spec import Direction, ImpairmentSpec

#: Realistic CLOCK_REALTIME nanoseconds (2023-11), as the forwarder's time.time_ns().
T0 = 1_700_000_000_000_000_000

#: Flows as model.flow_key names them: TCP 50000, UDP 50001, RAW (253), ICMP, flow 0.
FLOWS = (6 << 16 | 50000, 17 << 16 | 50001, 253 << 16, 1 << 16, 0)
_FLOW_WEIGHTS = (0.55, 0.3, 0.08, 0.04, 0.03)


def _spec(**fields: object) -> ImpairmentSpec:
    return ImpairmentSpec.model_validate(fields)


#: Every knob at least once, with overrides that change one direction only.
SCENARIOS: dict[str, ImpairmentSpec] = {
    "loss-jitter-dup-corrupt": _spec(
        loss=5,
        loss_correlation=25,
        delay_ms=10,
        jitter_ms=3,
        delay_correlation=30,
        duplicate=2,
        duplicate_correlation=10,
        corrupt=1,
        corrupt_correlation=5,
        queue_limit=200,
        server_to_client={"loss": 0, "gemodel": {"p": 3, "r": 30}, "distribution": "pareto"},
    ),
    "gemodel-reorder-gap": _spec(
        gemodel={"p": 2, "r": 20, "one_minus_h": 90, "one_minus_k": 1},
        reorder=10,
        reorder_gap=5,
        reorder_correlation=20,
        delay_ms=5,
        duplicate=3,
        corrupt=2,
        server_to_client={"jitter_ms": 2, "distribution": "paretonormal", "reorder_gap": 0},
    ),
    "rate-queue-keep-order": _spec(
        rate_bps=20_000_000,
        delay_ms=2,
        jitter_ms=1,
        distribution="paretonormal",
        duplicate=5,
        queue_limit=50,
        keep_order=True,
        server_to_client={"rate_bps": 5_000_000, "keep_order": False, "loss": 1},
    ),
    "uniform-jitter-reorder": _spec(
        delay_ms=1,
        jitter_ms=4,
        distribution="uniform",
        reorder=25,
        corrupt=10,
        queue_limit=100,
        server_to_client={"loss": 100},
    ),
    "keep-order-jitter-dup": _spec(
        delay_ms=3,
        jitter_ms=5,
        keep_order=True,
        duplicate=20,
        duplicate_correlation=50,
        queue_limit=300,
        server_to_client={"keep_order": False, "queue_limit": 30},
    ),
    "loss-only": _spec(loss=10, client_to_server={"loss": 30, "loss_correlation": 60}),
    "full-correlation": _spec(
        loss=20,
        loss_correlation=100,
        delay_ms=4,
        jitter_ms=2,
        delay_correlation=99.9,
        duplicate=10,
        duplicate_correlation=100,
        server_to_client={"delay_correlation": 95, "distribution": "normal"},
    ),
    "rate-only": _spec(rate_bps=100_000_000, queue_limit=20),
}


@dataclass
class Packets:
    """A synthetic packet sequence: arrival time, size, flow, direction (0 = c2s)."""

    t_in_ns: NDArray[np.int64]
    size: NDArray[np.int64]
    flow: NDArray[np.int64]
    direction: NDArray[np.int64]


def synthetic_packets(n: int, seed: int = 1) -> Packets:
    """Bursts (equal times), steady streams and pauses long enough to drain queues."""
    rng = np.random.default_rng(seed)
    # the rate changes every 1000 packets: ~500k, ~20k or ~5k packets/s on average
    segment_mean = rng.choice(np.array([2_000.0, 50_000.0, 200_000.0]), n // 1000 + 1)
    gaps = rng.exponential(np.repeat(segment_mean, 1000)[:n]).astype(np.int64)
    gaps[rng.random(n) < 0.2] = 0  # bursts: packets arriving in the same nanosecond
    gaps[rng.random(n) < 0.001] = 60_000_000  # pauses
    sizes = rng.integers(20, 1501, n, dtype=np.int64)
    sizes[rng.random(n) < 0.01] = 65535
    flows = rng.choice(np.asarray(FLOWS, dtype=np.int64), n, p=_FLOW_WEIGHTS)
    directions = (rng.random(n) < 0.35).astype(np.int64)
    return Packets(T0 + np.cumsum(gaps), sizes, flows, directions)


@dataclass
class Outcome:
    """What one scenario gave: packets, mismatching rows and each model's time."""

    name: str
    packets: int = 0
    mismatches: int = 0
    first_mismatch: str = ""
    python_s: float = 0.0
    compiled_s: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)


def compare(name: str, spec: ImpairmentSpec, packets: Packets, seed: int) -> Outcome:
    """Run both models per direction over ``packets``; count rows that differ."""
    outcome = Outcome(name, packets=len(packets.t_in_ns))
    for index, direction in enumerate(Direction):
        rows = np.flatnonzero(packets.direction == index)
        params = spec.for_direction(direction)
        t, sizes, flows = packets.t_in_ns[rows], packets.size[rows], packets.flow[rows]

        started = time.perf_counter()
        python = DirectionModel(params, seed, direction)
        decide = python.decide
        rows_in = zip(t.tolist(), sizes.tolist(), flows.tolist(), strict=True)
        expected = [decide(a, b, c) for a, b, c in rows_in]
        outcome.python_s += time.perf_counter() - started

        started = time.perf_counter()
        got = CompiledModel(params, seed, direction).decide_many(t, sizes, flows)
        outcome.compiled_s += time.perf_counter() - started

        want = np.array([tuple(v) for v in expected], dtype=np.int64).reshape(-1, 5)
        have = np.column_stack(
            [got.fate, got.send_at_ns, got.duplicate_at_ns, got.corrupt_bit, got.reordered]
        ).astype(np.int64)
        bad = np.flatnonzero((want != have).any(axis=1))
        outcome.mismatches += len(bad)
        if len(bad) and not outcome.first_mismatch:
            i = int(bad[0])
            outcome.first_mismatch = (
                f"{direction.value} packet {i}: python {tuple(want[i])} compiled {tuple(have[i])}"
            )
        prefix = direction.value
        outcome.counts[f"{prefix}.lost"] = int((want[:, 0] == 1).sum())
        outcome.counts[f"{prefix}.queue"] = int((want[:, 0] == 2).sum())
        outcome.counts[f"{prefix}.duplicated"] = int((want[:, 2] >= 0).sum())
        outcome.counts[f"{prefix}.corrupted"] = int((want[:, 3] >= 0).sum())
        outcome.counts[f"{prefix}.reordered"] = int(want[:, 4].sum())
    return outcome


def run_all(n: int, seed: int = 7) -> list[Outcome]:
    """Every scenario over the same ``n`` synthetic packets."""
    packets = synthetic_packets(n, seed)
    return [compare(name, spec, packets, seed) for name, spec in SCENARIOS.items()]
