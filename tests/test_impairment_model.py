"""The per-packet decision model: netem semantics, statistics, determinism. Pure, no root."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lab.impairment import model
from lab.impairment.model import (
    DROPPED_LOSS,
    DROPPED_QUEUE,
    FATE_NAMES,
    FORWARDED,
    NETEM_DIST_SCALE,
    NETEM_TABLE_SIZE,
    DirectionModel,
    Verdict,
    correlate,
    flow_key,
    netem_table,
)
from lab.impairment.spec import Direction, Distribution, GilbertElliott, LinkImpairment

C2S = Direction.CLIENT_TO_SERVER
S2C = Direction.SERVER_TO_CLIENT
T0 = 10**12  # a realistic time.monotonic_ns() value
MS = 1_000_000
Z99 = 2.5758  # two-sided 99% normal quantile


def run(
    params: LinkImpairment,
    n: int,
    *,
    seed: int = 1,
    step_ns: int = 100_000,
    size: int = 1000,
    direction: Direction = C2S,
) -> list[Verdict]:
    """n decisions for packets arriving every step_ns."""
    m = DirectionModel(params, seed, direction)
    return [m.decide(T0 + i * step_ns, size) for i in range(n)]


def loss_bursts(verdicts: Sequence[Verdict]) -> list[int]:
    """Lengths of runs of consecutive DROPPED_LOSS verdicts."""
    bursts: list[int] = []
    current = 0
    for v in verdicts:
        if v.fate == DROPPED_LOSS:
            current += 1
        elif current:
            bursts.append(current)
            current = 0
    if current:
        bursts.append(current)
    return bursts


def assert_binomial_99(successes: int, n: int, p: float) -> None:
    """successes lies inside the 99% (normal-approximation) interval of Binomial(n, p)."""
    half_width = Z99 * math.sqrt(n * p * (1 - p))
    assert abs(successes - n * p) <= half_width, (successes, n * p, half_width)


def delays_ms(verdicts: Sequence[Verdict], step_ns: int = 100_000) -> list[float]:
    return [(v.send_at_ns - (T0 + i * step_ns)) / MS for i, v in enumerate(verdicts)]


# --- basics ------------------------------------------------------------------------


def test_fate_names_index_by_fate() -> None:
    assert FATE_NAMES[FORWARDED] == "forwarded"
    assert FATE_NAMES[DROPPED_LOSS] == "dropped-loss"
    assert FATE_NAMES[DROPPED_QUEUE] == "dropped-queue"


def test_verdict_is_a_real_namedtuple() -> None:
    v = DirectionModel(LinkImpairment(), 1, C2S).decide(T0, 100)
    assert type(v) is Verdict
    assert v.fate == FORWARDED and v._fields[0] == "fate"


def test_clean_params_take_the_fast_path_without_random_streams(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_streams(*_: object) -> None:
        raise AssertionError("a clean model must not create random streams")

    monkeypatch.setattr(model, "_generator", no_streams)
    m = DirectionModel(LinkImpairment(keep_order=True, queue_limit=5), 7, C2S)
    assert m.is_clean
    for i in range(20):  # more than queue_limit: nothing is ever held
        assert m.decide(T0 + i, 1500) == (FORWARDED, T0 + i, -1, -1, False)
    assert m.backlog(T0) == 0


# --- loss --------------------------------------------------------------------------


@pytest.mark.parametrize("loss", [1.0, 5.0, 30.0])
def test_random_loss_rate_inside_binomial_99_interval(loss: float) -> None:
    n = 100_000
    verdicts = run(LinkImpairment(loss=loss), n)
    lost = sum(v.fate == DROPPED_LOSS for v in verdicts)
    assert_binomial_99(lost, n, loss / 100)
    assert all(v.fate in (FORWARDED, DROPPED_LOSS) for v in verdicts)


def test_loss_extremes() -> None:
    assert all(v.fate == DROPPED_LOSS for v in run(LinkImpairment(loss=100), 1000))
    kept = run(LinkImpairment(loss=0, delay_ms=1), 1000)
    assert all(v.fate == FORWARDED for v in kept)


def test_forwarded_packets_without_other_impairments_leave_at_once() -> None:
    verdicts = run(LinkImpairment(loss=50), 1000)
    for i, v in enumerate(verdicts):
        if v.fate == FORWARDED:
            assert v == (FORWARDED, T0 + i * 100_000, -1, -1, False)


def test_correlated_loss_gives_longer_bursts_than_uncorrelated_at_the_same_rate() -> None:
    n = 100_000
    correlated = run(LinkImpairment(loss=20, loss_correlation=50), n)
    bursts = loss_bursts(correlated)
    rate = sum(bursts) / n
    # Same measured rate without correlation.
    independent = loss_bursts(run(LinkImpairment(loss=rate * 100), n, seed=2))
    assert abs(sum(independent) / n - rate) < 0.005
    mean_correlated = sum(bursts) / len(bursts)
    mean_independent = sum(independent) / len(independent)
    assert mean_independent == pytest.approx(1 / (1 - rate), rel=0.05)  # geometric
    assert mean_correlated > 1.15 * mean_independent


def test_loss_correlation_lowers_the_effective_rate_as_netem_does() -> None:
    # netem's next = (1-rho)U + rho*last concentrates values around 0.5, so a correlated
    # 20% loss drops far fewer packets; the model mirrors the kernel, warts included.
    n = 100_000
    rates = []
    for correlation in (0, 25, 50):
        verdicts = run(LinkImpairment(loss=20, loss_correlation=correlation), n)
        rates.append(sum(v.fate == DROPPED_LOSS for v in verdicts) / n)
    assert rates[0] == pytest.approx(0.20, abs=0.01)
    assert rates[0] > rates[1] > rates[2] > 0


GE_CASES = [
    GilbertElliott(p=5, r=30, one_minus_h=80, one_minus_k=1),
    GilbertElliott(p=1, r=20, one_minus_h=100, one_minus_k=0),
    GilbertElliott(p=10),  # Bernoulli: r = 100 - p, 1-h = 100, 1-k = 0 -> loss == p
]


@pytest.mark.parametrize("ge", GE_CASES, ids=["gilbert-elliott", "simple-gilbert", "bernoulli"])
def test_gilbert_elliott_mean_loss_matches_stationary_value(ge: GilbertElliott) -> None:
    n = 200_000
    p, r = ge.p / 100, ge.r_effective / 100
    loss_bad, loss_good = ge.one_minus_h / 100, ge.one_minus_k / 100
    expected = p / (p + r) * loss_bad + r / (p + r) * loss_good
    lost = sum(v.fate == DROPPED_LOSS for v in run(LinkImpairment(gemodel=ge), n))
    assert lost / n == pytest.approx(expected, abs=0.01)


def test_gilbert_elliott_bernoulli_case_is_plain_random_loss() -> None:
    n = 100_000
    lost = sum(v.fate == DROPPED_LOSS for v in run(LinkImpairment(gemodel={"p": 10}), n))
    assert_binomial_99(lost, n, 0.10)


def test_gilbert_elliott_produces_bursts() -> None:
    n = 200_000
    bursts = loss_bursts(run(LinkImpairment(gemodel=GE_CASES[0]), n))
    rate = sum(bursts) / n
    # Independent losses at this rate would average 1 / (1 - rate) ~ 1.14 per burst.
    assert sum(bursts) / len(bursts) > 1.5 * (1 / (1 - rate))
    assert max(bursts) >= 10


# --- delay and jitter --------------------------------------------------------------


def test_constant_delay_is_exact() -> None:
    verdicts = run(LinkImpairment(delay_ms=20), 100)
    assert {d for d in delays_ms(verdicts)} == {20.0}
    assert all(v.fate == FORWARDED and not v.reordered for v in verdicts)


@pytest.mark.parametrize(
    ("distribution", "expected_std_ms"),
    [(Distribution.UNIFORM, 4 / math.sqrt(3)), (Distribution.NORMAL, 4.0)],
)
def test_jitter_mean_and_std(distribution: Distribution, expected_std_ms: float) -> None:
    # Arrivals 1 ms apart, so the default queue limit never bites.
    params = LinkImpairment(delay_ms=50, jitter_ms=4, distribution=distribution)
    delays = delays_ms(run(params, 50_000, step_ns=MS), step_ns=MS)
    assert statistics.fmean(delays) == pytest.approx(50, abs=0.1)
    assert statistics.pstdev(delays) == pytest.approx(expected_std_ms, rel=0.03)
    if distribution is Distribution.UNIFORM:
        assert 46 <= min(delays) < 46.1 and 53.9 < max(delays) < 54


def test_pareto_jitter_is_right_skewed_like_netems_table() -> None:
    params = LinkImpairment(delay_ms=50, jitter_ms=4, distribution=Distribution.PARETO)
    delays = delays_ms(run(params, 50_000, step_ns=MS), step_ns=MS)
    table = [t / NETEM_DIST_SCALE for t in netem_table(Distribution.PARETO)]
    assert statistics.fmean(delays) == pytest.approx(50 + 4 * statistics.fmean(table), abs=0.1)
    # The alpha = 3 table reaches 2/3 of a jitter below the delay and 4 jitters above.
    assert min(delays) == pytest.approx(50 - 4 * 2 / 3, abs=0.01)
    assert max(delays) > 50 + 4 * 3.5
    assert statistics.median(delays) < statistics.fmean(delays)


def test_delay_is_never_negative() -> None:
    params = LinkImpairment(delay_ms=1, jitter_ms=5)
    verdicts = run(params, 10_000, step_ns=MS)
    offsets = [v.send_at_ns - (T0 + i * MS) for i, v in enumerate(verdicts)]
    assert min(offsets) == 0  # clamped, not negative
    assert sum(o == 0 for o in offsets) > 1000  # P(N(1, 5) < 0) ~ 42%


def test_delay_correlation_correlates_successive_delays() -> None:
    def lag1(correlation: float) -> float:
        params = LinkImpairment(
            delay_ms=50, jitter_ms=4, delay_correlation=correlation, distribution="uniform"
        )
        delays = np.array(delays_ms(run(params, 20_000, step_ns=MS), step_ns=MS))
        return float(np.corrcoef(delays[:-1], delays[1:])[0, 1])

    assert abs(lag1(0)) < 0.05
    assert lag1(75) > 0.6


def test_without_keep_order_jitter_reorders_and_with_it_never() -> None:
    base = {"delay_ms": 20, "jitter_ms": 5, "distribution": Distribution.NORMAL}
    free = [v.send_at_ns for v in run(LinkImpairment(**base), 5000)]
    assert any(b < a for a, b in itertools.pairwise(free))
    ordered = [v.send_at_ns for v in run(LinkImpairment(**base, keep_order=True), 5000)]
    assert all(b >= a for a, b in itertools.pairwise(ordered))
    # keep_order only holds packets back: never earlier than their own delay.
    assert all(o >= f for o, f in zip(ordered, free, strict=True))


# --- reorder -----------------------------------------------------------------------


def test_reorder_fraction_and_reordered_packets_leave_at_once() -> None:
    n = 50_000
    verdicts = run(LinkImpairment(delay_ms=10, reorder=25), n)
    reordered = 0
    for i, v in enumerate(verdicts):
        now = T0 + i * 100_000
        if v.reordered:
            reordered += 1
            assert v.send_at_ns == now
        else:
            assert v.send_at_ns == now + 10 * MS
    assert_binomial_99(reordered, n, 0.25)


def test_reorder_gap_sends_every_nth_packet_at_once() -> None:
    verdicts = run(LinkImpairment(delay_ms=10, reorder=100, reorder_gap=5), 50)
    assert [i for i, v in enumerate(verdicts) if v.reordered] == list(range(4, 50, 5))


def test_reorder_gap_keeps_gap_minus_one_packets_delayed_after_each_jump() -> None:
    gap = 4
    params = LinkImpairment(delay_ms=10, reorder=50, reorder_gap=gap)
    flags = [v.reordered for v in run(params, 20_000)]
    jumps = [i for i, f in enumerate(flags) if f]
    assert jumps[0] >= gap - 1
    spacings = [b - a for a, b in itertools.pairwise(jumps)]
    assert min(spacings) == gap  # never closer than the gap, and often exactly it
    # A candidate jumps with probability 1/2: spacing gap + k has weight 2^-(k+1).
    assert sum(s == gap for s in spacings) / len(spacings) == pytest.approx(0.5, abs=0.03)


# --- rate and queue ----------------------------------------------------------------


def test_rate_serializes_packets_back_to_back() -> None:
    m = DirectionModel(LinkImpairment(rate_bps=1_000_000), 1, C2S)
    # 1250 bytes at 1 Mbit/s take 10 ms; a burst of 5 leaves 10 ms apart.
    sends = [m.decide(T0, 1250).send_at_ns for _ in range(5)]
    assert sends == [T0 + k * 10 * MS for k in range(1, 6)]
    # Once the link is idle again a packet only pays its own serialization time.
    later = T0 + 100 * MS
    assert m.decide(later, 125).send_at_ns == later + 1 * MS


def test_rate_applies_after_delay() -> None:
    m = DirectionModel(LinkImpairment(rate_bps=1_000_000, delay_ms=5), 1, C2S)
    first = m.decide(T0, 1250).send_at_ns
    second = m.decide(T0 + MS, 1250).send_at_ns
    assert first == T0 + 15 * MS
    assert second == first + 10 * MS  # waits for the link, not for its own delay


def test_queue_overflow_is_dropped_queue_not_loss() -> None:
    m = DirectionModel(LinkImpairment(rate_bps=1_000_000, queue_limit=10), 1, C2S)
    fates = [m.decide(T0, 1250).fate for _ in range(15)]
    assert fates == [FORWARDED] * 10 + [DROPPED_QUEUE] * 5
    assert m.backlog(T0) == 10
    # After three packets have left, three more fit.
    now = T0 + 30 * MS
    assert m.backlog(now) == 7
    fates = [m.decide(now, 1250).fate for _ in range(4)]
    assert fates == [FORWARDED] * 3 + [DROPPED_QUEUE]


def test_queue_limit_applies_to_packets_held_for_delay() -> None:
    # 20k pps for 20 ms holds ~400 packets: the default limit (1000) never drops...
    fates = [v.fate for v in run(LinkImpairment(delay_ms=20), 20_000, step_ns=50_000)]
    assert fates.count(DROPPED_QUEUE) == 0
    # ...a limit of 100 accepts 100 packets per 20 ms and drops the rest.
    fates = [
        v.fate for v in run(LinkImpairment(delay_ms=20, queue_limit=100), 20_000, step_ns=50_000)
    ]
    assert fates.count(FORWARDED) == pytest.approx(20_000 * 100 / 400, rel=0.02)
    assert set(fates) == {FORWARDED, DROPPED_QUEUE}


def test_queue_limit_with_jitter_counts_departed_packets_exactly() -> None:
    params = LinkImpairment(delay_ms=20, jitter_ms=10, queue_limit=300)
    m = DirectionModel(params, 3, C2S)
    departures: list[int] = []
    for i in range(20_000):
        now = T0 + i * 50_000
        held = sum(1 for t in departures if t > now)
        v = m.decide(now, 100)
        assert v.fate == (DROPPED_QUEUE if held >= 300 else FORWARDED)
        if v.fate == FORWARDED:
            departures.append(v.send_at_ns)
        departures = [t for t in departures if t > now]


# --- duplicate and corrupt ---------------------------------------------------------


def test_duplicate_rate_and_timing() -> None:
    n = 50_000
    verdicts = run(LinkImpairment(duplicate=10, delay_ms=5), n)
    dups = [v for v in verdicts if v.duplicate_at_ns >= 0]
    assert_binomial_99(len(dups), n, 0.10)
    assert all(v.duplicate_at_ns == v.send_at_ns for v in dups)


def test_duplicate_under_rate_occupies_the_link() -> None:
    m = DirectionModel(LinkImpairment(duplicate=100, rate_bps=1_000_000), 1, C2S)
    first = m.decide(T0, 1250)
    second = m.decide(T0, 1250)
    assert (first.send_at_ns, first.duplicate_at_ns) == (T0 + 10 * MS, T0 + 20 * MS)
    assert (second.send_at_ns, second.duplicate_at_ns) == (T0 + 30 * MS, T0 + 40 * MS)


def test_enabling_duplicate_and_corrupt_does_not_change_loss_decisions() -> None:
    n = 20_000
    plain = run(LinkImpairment(loss=10, delay_ms=5), n)
    busy = run(LinkImpairment(loss=10, delay_ms=5, duplicate=30, corrupt=20, jitter_ms=1), n)
    assert [v.fate == DROPPED_LOSS for v in plain] == [v.fate == DROPPED_LOSS for v in busy]
    assert any(v.duplicate_at_ns >= 0 for v in busy)


def test_corrupt_rate_and_bit_range() -> None:
    n = 50_000
    verdicts = run(LinkImpairment(corrupt=5), n)
    bits = [v.corrupt_bit for v in verdicts if v.corrupt_bit >= 0]
    assert_binomial_99(len(bits), n, 0.05)
    assert all(0 <= b < 2**32 for b in bits)
    assert len(set(bits)) > 0.99 * len(bits)  # random positions, not a constant
    assert all(v.corrupt_bit == -1 for v in verdicts if v.corrupt_bit < 0)


# --- determinism -------------------------------------------------------------------

BUSY = LinkImpairment(
    delay_ms=10,
    jitter_ms=3,
    delay_correlation=20,
    loss=3,
    loss_correlation=10,
    duplicate=2,
    corrupt=2,
    reorder=5,
    reorder_gap=2,
    rate_bps=50_000_000,
)


def test_same_seed_same_verdicts() -> None:
    assert run(BUSY, 30_000, seed=42) == run(BUSY, 30_000, seed=42)


def test_different_seed_or_direction_gives_different_verdicts() -> None:
    reference = run(BUSY, 5000, seed=42)
    assert run(BUSY, 5000, seed=43) != reference
    assert run(BUSY, 5000, seed=42, direction=S2C) != reference


def test_streams_refill_beyond_one_block() -> None:
    n = model.BLOCK_SIZE + 5000
    verdicts = run(LinkImpairment(loss=50), n)
    tail = verdicts[model.BLOCK_SIZE :]
    lost = sum(v.fate == DROPPED_LOSS for v in tail)
    assert_binomial_99(lost, len(tail), 0.5)


# --- building blocks ---------------------------------------------------------------


@pytest.mark.parametrize("rho", [0.01, 0.25, 0.9, 0.999])
def test_block_correlation_matches_netems_recurrence(rho: float) -> None:
    u = np.random.default_rng(5).random(5000)
    expected = []
    last = 0.3
    for x in u:
        last = (1 - rho) * x + rho * last
        expected.append(last)
    assert np.allclose(correlate(u, rho, 0.3), expected, rtol=0, atol=1e-12)


def test_full_correlation_repeats_the_last_value() -> None:
    assert np.all(correlate(np.random.default_rng(0).random(10), 1.0, 0.4) == 0.4)


def test_netem_tables_match_iproute2() -> None:
    normal = netem_table(Distribution.NORMAL)
    # First entries of iproute2's normal.dist.
    assert normal[:8] == (-32768, -28307, -26871, -25967, -25298, -24765, -24320, -23937)
    pareto = netem_table(Distribution.PARETO)
    assert pareto[0] == round(-0.5 * 4 / 3 * NETEM_DIST_SCALE)  # alpha=3 minimum, shifted
    assert pareto[-1] == 32767  # clipped tail
    mixed = netem_table(Distribution.PARETONORMAL)
    for table in (normal, pareto, mixed):
        assert len(table) == NETEM_TABLE_SIZE
        assert list(table) == sorted(table)  # inverse CDFs
    assert statistics.fmean(normal) / NETEM_DIST_SCALE == pytest.approx(0, abs=0.01)
    assert statistics.pstdev(normal) / NETEM_DIST_SCALE == pytest.approx(1, abs=0.01)
    with pytest.raises(ValueError, match="uniform"):
        netem_table(Distribution.UNIFORM)


# --- invariants --------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    params=st.builds(
        LinkImpairment,
        delay_ms=st.floats(0.1, 50),
        jitter_ms=st.floats(0, 20),
        keep_order=st.booleans(),
        rate_bps=st.sampled_from([0, 1_000_000, 100_000_000]),
        loss=st.just(5.0),
    ),
    seed=st.integers(0, 2**32),
    gaps=st.lists(st.integers(0, 2 * MS), min_size=1, max_size=300),
)
def test_invariants_hold_for_any_parameters(
    params: LinkImpairment, seed: int, gaps: list[int]
) -> None:
    m = DirectionModel(params, seed, C2S)
    now = T0
    last_send = 0
    for gap in gaps:
        now += gap
        v = m.decide(now, 1200)
        if v.fate != FORWARDED:
            continue
        assert v.send_at_ns >= now
        if params.keep_order or params.rate_bps:
            assert v.send_at_ns >= last_send
        last_send = max(last_send, v.send_at_ns)


# --------------------------------------------------------------------------- flows


def _udp_packet(src_port: int, dst_port: int, *, fragment_offset: int = 0) -> bytes:
    """A minimal IPv4/UDP packet (only what flow_key reads is meaningful)."""
    header = bytearray(20)
    header[0] = 0x45
    header[6], header[7] = (fragment_offset >> 8) & 0x1F, fragment_offset & 0xFF
    header[9] = 17
    return bytes(header) + src_port.to_bytes(2, "big") + dst_port.to_bytes(2, "big") + bytes(4)


def test_flow_key_names_the_server_port_in_both_directions() -> None:
    to_server = flow_key(_udp_packet(50123, 50001), to_server=True)
    from_server = flow_key(_udp_packet(50001, 50123), to_server=False)
    assert to_server == from_server == (17 << 16 | 50001)
    other_client_port = flow_key(_udp_packet(61000, 50001), to_server=True)
    assert other_client_port == to_server, "the client's ephemeral port does not name the flow"


def test_flow_key_of_portless_packets() -> None:
    raw = bytearray(_udp_packet(1, 2))
    raw[9] = 253
    assert flow_key(bytes(raw), to_server=True) == 253 << 16
    later_fragment = _udp_packet(50123, 50001, fragment_offset=185)
    assert flow_key(later_fragment, to_server=True) == 17 << 16
    assert flow_key(b"\x60" + bytes(39), to_server=True) == 0, "IPv6 is flow 0"
    assert flow_key(b"\x45", to_server=True) == 0


@pytest.mark.parametrize(
    "params",
    [
        LinkImpairment(loss=20),
        LinkImpairment(loss=20, loss_correlation=50),
        LinkImpairment(gemodel=GilbertElliott(p=5, r=30)),
        LinkImpairment(delay_ms=5, jitter_ms=2, duplicate=10, corrupt=10),
        LinkImpairment(delay_ms=5, reorder=25, reorder_gap=3),
    ],
    ids=["loss", "correlated", "gemodel", "jitter-dup-corrupt", "reorder-gap"],
)
def test_a_flows_decisions_do_not_depend_on_other_flows(params: LinkImpairment) -> None:
    """UDP alone vs UDP after and interleaved with TCP: the same verdicts for UDP."""
    udp, tcp = 17 << 16 | 50001, 6 << 16 | 50000

    def signature(verdicts: list[model.Verdict], times: list[int]) -> list[tuple[int, ...]]:
        return [
            (v.fate, v.send_at_ns - t, v.duplicate_at_ns >= 0, v.corrupt_bit, v.reordered)
            for v, t in zip(verdicts, times, strict=True)
        ]

    times = [T0 + i * MS for i in range(3000)]
    alone = DirectionModel(params, 7, C2S)
    udp_alone = signature([alone.decide(t, 200, udp) for t in times], times)

    mixed = DirectionModel(params, 7, C2S)
    for i in range(1234):  # TCP first uses up draws of its own streams only
        mixed.decide(T0 - 10_000 * MS + i * MS, 200, tcp)
    udp_mixed = []
    for i, t in enumerate(times):
        udp_mixed.append(mixed.decide(t, 200, udp))
        if i % 3 == 0:
            mixed.decide(t, 200, tcp)
    assert signature(udp_mixed, times) == udp_alone

    tcp_model = DirectionModel(params, 7, C2S)
    tcp_alone = signature([tcp_model.decide(t, 200, tcp) for t in times], times)
    assert tcp_alone != udp_alone, "different flows draw from different streams"
