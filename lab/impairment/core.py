"""The compiled impairment core (``_core.c``) seen from Python.

:class:`CompiledModel` is :class:`~lab.impairment.model.DirectionModel` in C: same
constructor, same verdicts, bit for bit (``tests/test_core_differential.py``). Every
number the C side cannot cheaply reproduce itself (the netem table in ns, probabilities,
correlation chunk lengths, the seed's words) is computed here, by the same Python
expressions the reference model uses, and handed over once.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
from numpy.typing import NDArray

from lab.impairment import model as reference
from lab.impairment.model import Verdict
from lab.impairment.spec import Direction, Distribution, LinkImpairment

try:
    from lab.impairment import _core  # type: ignore[attr-defined]
except ImportError:  # not built (e.g. a checkout without `pip install -e .`)
    _core = None

_MASK32: Final = 0xFFFFFFFF

#: How long before a departure the compiled engine's writer stops sleeping and spins
#: (``PROTOLAB_ENGINE_SPIN_NS`` overrides it, 0 turns spinning off). Waking from a
#: sleep costs this VM 20-40 us typically (the lateness probe's p50); waking 50 us
#: early and spinning the rest took the engine's median lateness at 1000 pps from
#: about 30 us to about 10 us (bench/impairment.py --only delay, spin 0 vs 50 us).
#: The writer spins at most a tenth of its time (_core.c, SPIN_BUDGET_NS).
DEFAULT_SPIN_NS: Final = 50_000
#: SCHED_FIFO priority of the compiled engine's writer threads (``PROTOLAB_ENGINE_RT_PRIORITY``
#: overrides it, 0: ordinary threads). On a busy machine a fair-share writer waits for
#: a CPU behind everything else; a real-time one does not. Each writer is real-time
#: only while it uses under 60 % of a CPU (_core.c, RT_BUDGET_NS), and stays ordinary
#: where the process may not use SCHED_FIFO.
DEFAULT_RT_PRIORITY: Final = 1


def available() -> bool:
    """True when the C extension was built and imports."""
    return _core is not None


def core() -> Any:
    """The ``_core`` extension module, or a clear error saying how to build it."""
    if _core is None:
        raise RuntimeError(
            "the compiled impairment core is not built: run `make venv` "
            "(pip install -e .), or set impairment.engine = 'python'"
        )
    return _core


def seed_words(seed: int) -> tuple[int, ...]:
    """The seed as numpy's SeedSequence sees it: little-endian uint32 words ([0] for 0)."""
    if seed < 0:
        raise ValueError("seed must be non-negative")
    words: list[int] = []
    while seed:
        words.append(seed & _MASK32)
        seed >>= 32
    return tuple(words) or (0,)


def _rho(correlation_percent: float) -> tuple[float, int]:
    """(rho, chunk) as _Uniforms and correlate compute them."""
    rho = correlation_percent / 100.0
    chunk = reference.correlation_chunk(rho) if 0.0 < rho < 1.0 else 1
    return rho, chunk


def _table_ns(params: LinkImpairment) -> tuple[int, ...]:
    if params.distribution is Distribution.UNIFORM or round(params.jitter_ms * 1_000_000) <= 0:
        return (0,) * reference.NETEM_TABLE_SIZE
    jitter_ns = round(params.jitter_ms * 1_000_000)
    table = reference.netem_table(params.distribution)
    return tuple(round(jitter_ns * t / reference.NETEM_DIST_SCALE) for t in table)


def core_config(params: LinkImpairment, seed: int, direction: Direction) -> dict[str, Any]:
    """What ``_core.Model`` needs, derived exactly as DirectionModel derives it."""
    ge = params.gemodel
    if ge is not None:
        loss_mode = 2
    elif params.loss > 0:
        loss_mode = 1
    else:
        loss_mode = 0
    rho_loss, chunk_loss = _rho(params.loss_correlation if loss_mode == 1 else 0.0)
    rho_dup, chunk_dup = _rho(params.duplicate_correlation)
    rho_corrupt, chunk_corrupt = _rho(params.corrupt_correlation)
    rho_reorder, chunk_reorder = _rho(params.reorder_correlation)
    rho_delay, chunk_delay = _rho(params.delay_correlation)
    marks = params.duplicate > 0 or params.corrupt > 0
    gap = max(1, params.reorder_gap) if params.reorder > 0 else 0
    delay_ns = round(params.delay_ms * 1_000_000)
    jitter_ns = round(params.jitter_ms * 1_000_000)
    jittered = jitter_ns > 0
    holds = delay_ns > 0 or jittered or params.rate_bps > 0
    if params.rate_bps >= 2**62:
        raise ValueError("rate_bps is beyond what the compiled core counts")
    return {
        "clean": int(params.is_clean),
        "direction_index": list(Direction).index(direction),
        "seed_words": seed_words(seed),
        "loss_mode": loss_mode,
        "p_loss": params.loss / 100,
        "ge_p": ge.p / 100.0 if ge else 0.0,
        "ge_r": ge.r_effective / 100.0 if ge else 0.0,
        "ge_loss_bad": ge.one_minus_h / 100.0 if ge else 0.0,
        "ge_loss_good": ge.one_minus_k / 100.0 if ge else 0.0,
        "rho_loss": rho_loss,
        "chunk_loss": chunk_loss,
        "rho_dup": rho_dup,
        "chunk_dup": chunk_dup,
        "rho_corrupt": rho_corrupt,
        "chunk_corrupt": chunk_corrupt,
        "rho_reorder": rho_reorder,
        "chunk_reorder": chunk_reorder,
        "rho_delay": rho_delay,
        "chunk_delay": chunk_delay,
        "has_dup": int(params.duplicate > 0),
        "has_corrupt": int(params.corrupt > 0),
        "marks": int(marks),
        "p_dup": params.duplicate / 100,
        "p_corrupt": params.corrupt / 100,
        "p_reorder": params.reorder / 100,
        "gap": gap,
        "delay_ns": delay_ns,
        "jitter_ns": jitter_ns,
        "jittered": int(jittered),
        "uniform": int(params.distribution is Distribution.UNIFORM),
        "table_ns": _table_ns(params),
        "rate_bps": params.rate_bps,
        "keep_order": int(params.keep_order),
        "loss_only": int(not (marks or gap or holds)),
        "tail": int(params.rate_bps > 0 or params.keep_order or params.duplicate > 0),
        "heap_mode": int(jittered and params.rate_bps == 0 and not params.keep_order),
        "limit": params.queue_limit,
    }


class Decisions:
    """Verdicts of a packet sequence as columns (what :meth:`CompiledModel.decide_many` gives)."""

    def __init__(self, n: int) -> None:
        self.fate: NDArray[np.uint8] = np.zeros(n, dtype=np.uint8)
        self.send_at_ns: NDArray[np.int64] = np.zeros(n, dtype=np.int64)
        self.duplicate_at_ns: NDArray[np.int64] = np.zeros(n, dtype=np.int64)
        self.corrupt_bit: NDArray[np.int64] = np.zeros(n, dtype=np.int64)
        self.reordered: NDArray[np.uint8] = np.zeros(n, dtype=np.uint8)


class CompiledModel:
    """DirectionModel's decisions from the C core; one instance per direction."""

    def __init__(self, params: LinkImpairment, seed: int, direction: Direction) -> None:
        self.params = params
        self.direction = direction
        self.is_clean = params.is_clean
        self.c_model = core().Model(core_config(params, seed, direction))

    def decide(self, now_ns: int, wire_size: int, flow: int = 0) -> Verdict:
        """One packet, as DirectionModel.decide (a Python call per packet: for tests)."""
        fate, send, duplicate_at, bit, reordered = self.c_model.decide(now_ns, wire_size, flow)
        return Verdict(fate, send, duplicate_at, bit, reordered)

    def decide_many(
        self, t_in_ns: NDArray[np.int64], sizes: NDArray[np.int64], flows: NDArray[np.int64]
    ) -> Decisions:
        """A whole packet sequence in one C call (no Python object per packet)."""
        t = np.ascontiguousarray(t_in_ns, dtype=np.int64)
        s = np.ascontiguousarray(sizes, dtype=np.int64)
        f = np.ascontiguousarray(flows, dtype=np.int64)
        out = Decisions(len(t))
        self.c_model.decide_many(
            t, s, f, out.fate, out.send_at_ns, out.duplicate_at_ns, out.corrupt_bit, out.reordered
        )
        return out

    def backlog(self, now_ns: int) -> int:
        """Packets accepted but not yet departed at now_ns."""
        count: int = self.c_model.backlog(now_ns)
        return count
