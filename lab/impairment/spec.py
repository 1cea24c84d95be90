"""Typed, validated description of what the impairment engine does to each direction.

A scenario's ``[impairment]`` table holds parameters for both directions; the optional
``client_to_server`` / ``server_to_client`` tables override single fields for one
direction. :meth:`ImpairmentSpec.for_direction` resolves them into a complete
:class:`LinkImpairment`, the only thing the engines read. Units follow netem:
milliseconds, percent, bit/s.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StrictBool, model_validator

# Strict: a scenario's `loss = true` or `delay_ms = "10"` is an error, not 1 % or 10 ms
# (a TOML integer still counts as a number).
Percent = Annotated[float, Strict(), Field(ge=0.0, le=100.0)]
NonNegativeMs = Annotated[float, Strict(), Field(ge=0.0, le=60_000.0)]
Count = Annotated[int, Strict(), Field(ge=0)]


class Direction(StrEnum):
    """The two directions of the testbed link."""

    CLIENT_TO_SERVER = "client_to_server"
    SERVER_TO_CLIENT = "server_to_client"


class Distribution(StrEnum):
    """Jitter distributions, named as netem names its tables."""

    UNIFORM = "uniform"
    NORMAL = "normal"
    PARETO = "pareto"
    PARETONORMAL = "paretonormal"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class GilbertElliott(_Frozen):
    """Bursty loss as netem's ``gemodel p r 1-h 1-k`` (all in percent).

    p: good -> bad transition, r: bad -> good transition, one_minus_h: loss in the bad
    state, one_minus_k: loss in the good state.
    """

    p: Percent
    r: Percent | None = None
    one_minus_h: Percent = 100.0
    one_minus_k: Percent = 0.0

    @property
    def r_effective(self) -> float:
        """netem's default: r = 100 - p when not given."""
        return 100.0 - self.p if self.r is None else self.r


class _LinkFields(_Frozen):
    """Fields shared by the whole-link table and the per-direction overrides."""

    delay_ms: NonNegativeMs | None = None
    jitter_ms: NonNegativeMs | None = None
    distribution: Distribution | None = None
    delay_correlation: Percent | None = None
    keep_order: StrictBool | None = None
    loss: Percent | None = None
    loss_correlation: Percent | None = None
    gemodel: GilbertElliott | None = None
    reorder: Percent | None = None
    reorder_correlation: Percent | None = None
    reorder_gap: Count | None = None
    duplicate: Percent | None = None
    duplicate_correlation: Percent | None = None
    corrupt: Percent | None = None
    corrupt_correlation: Percent | None = None
    rate_bps: Count | None = None
    queue_limit: Annotated[int, Strict(), Field(ge=1, le=1_000_000)] | None = None


class DirectionOverride(_LinkFields):
    """Fields given for one direction only; unset fields fall back to the link's."""


#: The largest IP packet on the testbed link (TUN and veth MTU): a bound for queue time.
LINK_MTU_BYTES = 1500
#: netem's delay tables span +-32767 / 8192 jitter units: about 4 x jitter at the extremes.
JITTER_TABLE_REACH = 32767 / 8192


class LinkImpairment(_Frozen):
    """Everything one direction of the link does to packets: fully resolved."""

    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    distribution: Distribution = Distribution.NORMAL
    delay_correlation: float = 0.0
    keep_order: bool = False
    loss: float = 0.0
    loss_correlation: float = 0.0
    gemodel: GilbertElliott | None = None
    reorder: float = 0.0
    reorder_correlation: float = 0.0
    reorder_gap: int = 0
    duplicate: float = 0.0
    duplicate_correlation: float = 0.0
    corrupt: float = 0.0
    corrupt_correlation: float = 0.0
    rate_bps: int = 0
    queue_limit: int = 1000

    @property
    def is_clean(self) -> bool:
        """True when this direction forwards every packet untouched and at once."""
        return (
            self.delay_ms == 0
            and self.jitter_ms == 0
            and self.loss == 0
            and self.gemodel is None
            and self.reorder == 0
            and self.duplicate == 0
            and self.corrupt == 0
            and self.rate_bps == 0
        )

    def longest_hold_s(self, packet_bytes: int = LINK_MTU_BYTES) -> float:
        """The longest this direction can hold a packet, in seconds: an upper bound.

        Delay, plus jitter at its extreme (netem's distribution tables reach 4 x jitter:
        s16 entries of at most 32767 in units of jitter / 8192; uniform reaches 1 x),
        plus a full queue of ``packet_bytes`` packets serialized at ``rate_bps``.
        """
        spread = 1.0 if self.distribution is Distribution.UNIFORM else JITTER_TABLE_REACH
        hold_ms = self.delay_ms + spread * self.jitter_ms
        queue_s = self.queue_limit * packet_bytes * 8 / self.rate_bps if self.rate_bps else 0.0
        return hold_ms / 1000 + queue_s

    def problems(self) -> list[tuple[str, str]]:
        """Invalid combinations as (field, message), checked after overrides resolve."""
        found: list[tuple[str, str]] = []
        if self.reorder > 0 and self.delay_ms <= 0:
            found.append(
                ("reorder", "reordering needs delay_ms > 0 (reordered packets skip the delay)")
            )
        if self.reorder_gap > 0 and self.reorder <= 0:
            found.append(("reorder_gap", "reorder_gap needs reorder > 0"))
        if self.jitter_ms > 0 and self.delay_ms <= 0:
            found.append(("jitter_ms", "jitter needs delay_ms > 0"))
        if self.loss > 0 and self.gemodel is not None:
            found.append(("gemodel", "give either loss (random) or gemodel (bursty), not both"))
        if self.keep_order and self.reorder > 0:
            found.append(("keep_order", "keep_order contradicts reorder > 0"))
        return found


class ImpairmentSpec(_LinkFields):
    """The scenario's ``[impairment]`` table."""

    backend: Literal["auto", "userspace", "netem"] = "auto"
    #: which userspace engine forwards: the C core, or the Python reference (debugging);
    #: both make the same decisions for the same seed (tests/test_core_differential.py)
    engine: Literal["compiled", "python"] = "compiled"
    client_to_server: DirectionOverride | None = None
    server_to_client: DirectionOverride | None = None

    def for_direction(self, direction: Direction) -> LinkImpairment:
        """Resolve link-wide fields and this direction's overrides into one object."""
        merged = {k: v for k, v in self._link_values().items() if v is not None}
        override = getattr(self, direction.value)
        if override is not None:
            merged.update({k: v for k, v in override.model_dump().items() if v is not None})
            if override.gemodel is not None:
                merged["gemodel"] = override.gemodel
        if self.gemodel is not None and "gemodel" not in merged:
            merged["gemodel"] = self.gemodel
        return LinkImpairment(**merged)

    def _link_values(self) -> dict[str, object]:
        values = {name: getattr(self, name) for name in _LinkFields.model_fields}
        return values

    @model_validator(mode="after")
    def _check_combinations(self) -> ImpairmentSpec:
        for direction in Direction:
            resolved = self.for_direction(direction)
            for field, message in resolved.problems():
                override = getattr(self, direction.value)
                in_override = override is not None and getattr(override, field) is not None
                path = f"{direction.value}.{field}" if in_override else field
                raise ValueError(f"@{path}@ {message}")
        return self

    @property
    def is_clean(self) -> bool:
        """True when neither direction changes anything."""
        return all(self.for_direction(d).is_clean for d in Direction)
