"""Clock offset between two hosts, with a hard error bound, from four-timestamp exchanges.

One exchange (RFC 5905 §8, NTP's on-wire protocol): A sends at ``t1`` (A's clock), B
receives at ``t2`` and answers at ``t3`` (B's clock), A receives at ``t4``. With B's clock
ahead of A's by θ and one-way delays d1 (A to B) and d2 (B to A):

    offset  θ̂ = ((t2 - t1) + (t3 - t4)) / 2 = θ + (d1 - d2) / 2
    delay   δ  = (t4 - t1) - (t3 - t2)      = d1 + d2

Delays are never negative, so |θ̂ - θ| <= δ / 2: each exchange confines θ to the interval
[θ̂ - δ/2, θ̂ + δ/2], whatever the asymmetry. Every interval holds θ, so their
intersection does too; it is as narrow as the fastest exchanges allow (NTP's clock
filter keeps the minimum-delay sample for the same reason). Two estimates, before and
after a run, give the drift between the clocks and, by interpolation, a bound at any
instant between them.

RFC 4656 (OWAMP) leaves the clocks to the hosts (NTP, GPS) and reports each one-way delay
with the sender's and receiver's error estimates; irtt does the same and reports one-way
delays that are only as good as the clocks' synchronisation. Here the bound is measured
instead of assumed: a one-way delay corrected by θ̂ is good to ± the bound, and when the
bound is wider than the delays themselves, one-way delay is unavailable (round trips,
which need one clock only, stay exact).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "ClockModel",
    "Exchange",
    "OffsetEstimate",
    "estimate_offset",
    "measure",
    "owd_available",
]

#: (t1, t2, t3, t4) in ns: A's send, B's receive, B's send, A's receive.
Exchange = tuple[int, int, int, int]


@dataclass(frozen=True)
class OffsetEstimate:
    """B's clock minus A's, in ns, within ± ``bound_ns``; ``at_ns`` on A's clock."""

    offset_ns: float
    bound_ns: float
    at_ns: int
    min_delay_ns: int
    samples: int
    consistent: bool
    """False when the exchanges' intervals did not overlap (a clock stepped or drifted
    fast during them): the estimate then rests on the fastest exchange alone."""


def estimate_offset(exchanges: Sequence[Exchange]) -> OffsetEstimate:
    """The offset interval every exchange allows (their intersection), as midpoint ± half-width."""
    if not exchanges:
        raise ValueError("no exchange to estimate the clock offset from")
    lows, highs, delays = [], [], []
    for t1, t2, t3, t4 in exchanges:
        delay = (t4 - t1) - (t3 - t2)
        if delay < 0 or t4 < t1 or t3 < t2:
            raise ValueError(f"exchange {t1, t2, t3, t4}: time runs backwards on one host")
        offset = ((t2 - t1) + (t3 - t4)) / 2
        lows.append(offset - delay / 2)
        highs.append(offset + delay / 2)
        delays.append(delay)
    low, high = max(lows), min(highs)
    consistent = low <= high
    if not consistent:
        fastest = delays.index(min(delays))
        low, high = lows[fastest], highs[fastest]
    at = round(sum((t1 + t4) / 2 for t1, _, _, t4 in exchanges) / len(exchanges))
    return OffsetEstimate(
        offset_ns=(low + high) / 2,
        bound_ns=(high - low) / 2,
        at_ns=at,
        min_delay_ns=min(delays),
        samples=len(exchanges),
        consistent=consistent,
    )


@dataclass(frozen=True)
class ClockModel:
    """The offset before and after a run: drift between them, offset and bound at any time.

    Between the two, the true offset (a clock that drifts at a steady rate) lies between
    the lines joining the two intervals' ends, so the bound interpolates linearly.
    """

    before: OffsetEstimate
    after: OffsetEstimate

    @property
    def drift_ppm(self) -> float:
        """How fast B's clock gains on A's, parts per million (0 with one estimate)."""
        span = self.after.at_ns - self.before.at_ns
        if span <= 0:
            return 0.0
        return (self.after.offset_ns - self.before.offset_ns) / span * 1e6

    def _fraction(self, at_ns: int) -> float:
        span = self.after.at_ns - self.before.at_ns
        return 0.0 if span <= 0 else min(max((at_ns - self.before.at_ns) / span, 0.0), 1.0)

    def offset_at(self, at_ns: int) -> float:
        """B minus A at ``at_ns`` (A's clock), interpolated (held outside the run)."""
        f = self._fraction(at_ns)
        return self.before.offset_ns + f * (self.after.offset_ns - self.before.offset_ns)

    def bound_at(self, at_ns: int) -> float:
        """The half-width of the offset's interval at ``at_ns``."""
        f = self._fraction(at_ns)
        return self.before.bound_ns + f * (self.after.bound_ns - self.before.bound_ns)

    def offsets_at(self, at_ns: npt.NDArray[np.int64]) -> npt.NDArray[np.float64]:
        """:meth:`offset_at` for many times at once."""
        span = self.after.at_ns - self.before.at_ns
        if span <= 0:
            return np.full(at_ns.shape, self.before.offset_ns, dtype=np.float64)
        f = np.clip((at_ns - self.before.at_ns) / span, 0.0, 1.0)
        return self.before.offset_ns + f * (self.after.offset_ns - self.before.offset_ns)

    @property
    def widest_bound_ns(self) -> float:
        """The larger of the two bounds: how far any corrected time may be off."""
        return max(self.before.bound_ns, self.after.bound_ns)

    def one_way_delay(self, t_send_ns: int, t_recv_ns: int) -> tuple[float, float]:
        """A packet sent at ``t_send_ns`` (A's clock), received at ``t_recv_ns`` (B's):
        its one-way delay in ns and the bound on it."""
        return t_recv_ns - t_send_ns - self.offset_at(t_send_ns), self.bound_at(t_send_ns)

    def as_meta(self) -> dict[str, object]:
        """What meta.json records of the clocks."""
        return {
            "offset_before_ns": round(self.before.offset_ns),
            "bound_before_ns": round(self.before.bound_ns),
            "at_before_ns": self.before.at_ns,
            "offset_after_ns": round(self.after.offset_ns),
            "bound_after_ns": round(self.after.bound_ns),
            "at_after_ns": self.after.at_ns,
            "drift_ppm": round(self.drift_ppm, 3),
            "samples": self.before.samples + self.after.samples,
            "consistent": self.before.consistent and self.after.consistent,
        }

    @classmethod
    def from_meta(cls, meta: object) -> ClockModel | None:
        """The model :meth:`as_meta` wrote (None: absent or not well-formed)."""
        if not isinstance(meta, dict):
            return None
        names = [f"{a}_{b}_ns" for b in ("before", "after") for a in ("offset", "bound", "at")]
        values = [meta.get(name) for name in names]
        numbers = [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
        if len(numbers) != len(names):
            return None
        offset_b, bound_b, at_b, offset_a, bound_a, at_a = numbers
        if bound_b < 0 or bound_a < 0:
            return None
        samples = meta.get("samples")
        half = samples // 2 if isinstance(samples, int) else 0
        consistent = meta.get("consistent") is not False
        return cls(
            OffsetEstimate(offset_b, bound_b, at_b, 0, half, consistent),
            OffsetEstimate(offset_a, bound_a, at_a, 0, half, consistent),
        )


def owd_available(delays_ns: Sequence[float], bound_ns: float) -> bool:
    """One-way delays mean something only when the clock bound is narrower than them.

    The rule: the bound must be under the median delay measured. Otherwise a reader could
    not tell the link's delay from the clocks' disagreement.
    """
    finite = sorted(d for d in delays_ns if math.isfinite(d))
    if not finite:
        return False
    median = finite[len(finite) // 2]
    return bound_ns < median


def measure(ask: Callable[[], Exchange], count: int) -> OffsetEstimate:
    """``count`` exchanges through ``ask`` (one round trip to the other host each)."""
    return estimate_offset([ask() for _ in range(count)])
