"""Clock offset between hosts: the bound must contain the true offset, whatever the path does.

Unit tests inject offsets, drift and asymmetric delays into synthetic exchanges; the
integration test measures across two lab namespaces (one kernel, one clock: the true
offset is 0) over a real UDP path through the impairment engine.
"""

from __future__ import annotations

import random
import socket
import struct
import threading
import time
from pathlib import Path

import pytest

from lab._netns import inside
from lab.hosts.clock import ClockModel, Exchange, estimate_offset, owd_available

MS = 1_000_000


def exchanges(
    offset_ns: float,
    *,
    count: int,
    seed: int,
    out_ms: tuple[float, float],
    back_ms: tuple[float, float],
    start_ns: int = 10**18,
    drift_ppm: float = 0.0,
) -> list[Exchange]:
    """Synthetic exchanges: B's clock = A's + offset (+ drift), random one-way delays."""
    rng = random.Random(seed)
    rows = []
    t = start_ns
    for _ in range(count):
        d1 = rng.uniform(*out_ms) * MS
        d2 = rng.uniform(*back_ms) * MS
        think = rng.uniform(0.01, 0.2) * MS

        def b_clock(a_time: float) -> int:
            return round(a_time + offset_ns + (a_time - start_ns) * drift_ppm * 1e-6)

        t1 = t
        t2 = b_clock(t1 + d1)
        t3 = b_clock(t1 + d1 + think)
        t4 = round(t1 + d1 + think + d2)
        rows.append((t1, t2, t3, t4))
        t += 20 * MS
    return rows


@pytest.mark.parametrize("offset_ms", [0.0, 3.7, -250.0, 12_345.6])
@pytest.mark.parametrize("seed", range(5))
def test_the_bound_contains_the_true_offset_under_asymmetric_delays(
    offset_ms: float, seed: int
) -> None:
    # the way back is slow and variable (a loaded queue), the way out fast
    estimate = estimate_offset(
        exchanges(offset_ms * MS, count=50, seed=seed, out_ms=(1, 3), back_ms=(5, 40))
    )
    assert abs(estimate.offset_ns - offset_ms * MS) <= estimate.bound_ns + 1
    assert estimate.consistent
    # the naive mean of the samples is off by half the mean asymmetry; the bound says so
    assert estimate.bound_ns <= estimate.min_delay_ns / 2 + 1


def test_more_exchanges_narrow_the_bound() -> None:
    few = estimate_offset(exchanges(5 * MS, count=3, seed=1, out_ms=(1, 20), back_ms=(1, 20)))
    many = estimate_offset(exchanges(5 * MS, count=300, seed=1, out_ms=(1, 20), back_ms=(1, 20)))
    assert many.bound_ns < few.bound_ns
    assert abs(many.offset_ns - 5 * MS) <= many.bound_ns + 1


def test_drift_before_and_after_interpolates_a_bound_that_holds() -> None:
    drift = 80.0  # ppm: 0.08 ms per second, a cheap oscillator
    start = 10**18
    before = estimate_offset(
        exchanges(2 * MS, count=40, seed=3, out_ms=(1, 4), back_ms=(1, 9), start_ns=start,
                  drift_ppm=drift)
    )  # fmt: skip
    later = start + 60 * 10**9  # a one-minute run
    after_rows = exchanges(
        2 * MS + 60 * 10**9 * drift * 1e-6, count=40, seed=4, out_ms=(1, 4), back_ms=(1, 9),
        start_ns=later, drift_ppm=drift,
    )  # fmt: skip
    model = ClockModel(before, estimate_offset(after_rows))
    assert model.drift_ppm == pytest.approx(drift, rel=0.05)
    for seconds in (0, 15, 30, 45, 60):
        at = start + seconds * 10**9
        truth = 2 * MS + seconds * 10**9 * drift * 1e-6
        assert abs(model.offset_at(at) - truth) <= model.bound_at(at) + 1, seconds
    # a packet sent at 30 s, 7 ms on the wire, read on B's clock
    send = start + 30 * 10**9
    owd, bound = model.one_way_delay(
        send, round(send + 7 * MS + 2 * MS + 30 * 10**9 * drift * 1e-6)
    )
    assert abs(owd - 7 * MS) <= bound + 1
    meta = model.as_meta()
    assert meta["samples"] == 80 and meta["consistent"] is True


def test_a_clock_step_during_the_exchanges_is_flagged() -> None:
    rows = exchanges(0, count=10, seed=2, out_ms=(1, 2), back_ms=(1, 2))
    rows += exchanges(50 * MS, count=10, seed=2, out_ms=(1, 2), back_ms=(1, 2), start_ns=2 * 10**18)
    estimate = estimate_offset(rows)
    assert not estimate.consistent  # no offset fits every exchange


def test_owd_is_unavailable_when_the_bound_is_wider_than_the_delays() -> None:
    assert owd_available([5 * MS, 6 * MS, 7 * MS], bound_ns=1 * MS)
    assert not owd_available([5 * MS, 6 * MS, 7 * MS], bound_ns=8 * MS)
    assert not owd_available([], bound_ns=0)


def test_backwards_time_is_refused() -> None:
    with pytest.raises(ValueError, match="backwards"):
        estimate_offset([(10, 5, 4, 20)])
    with pytest.raises(ValueError, match="no exchange"):
        estimate_offset([])


_STAMPS = struct.Struct("!QQQ")


@pytest.mark.requires_root
def test_across_two_namespaces_the_offset_is_zero_within_the_bound(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """One kernel, one clock: the true offset is 0. Over a 5 ms (each way) lab link with
    jitter, 100 exchanges must bound it, and the bound must be about the fastest RTT / 2."""
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import open_testbed

    spec = ImpairmentSpec.model_validate({"delay_ms": 5, "jitter_ms": 2})
    with open_testbed(spec, 3, "cubic", tmp_path / "gt.npz") as testbed:
        with inside(testbed.server.netns):
            server = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        server.bind((testbed.server.address, 50123))
        with inside(testbed.client.netns):
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        client.settimeout(2.0)
        stop = threading.Event()

        def answer() -> None:
            server.settimeout(0.2)
            while not stop.is_set():
                try:
                    data, peer = server.recvfrom(64)
                except TimeoutError:
                    continue
                t2 = time.time_ns()
                (t1, _, _) = _STAMPS.unpack(data)
                server.sendto(_STAMPS.pack(t1, t2, time.time_ns()), peer)

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        rows = []
        try:
            for _ in range(100):
                t1 = time.time_ns()
                client.sendto(_STAMPS.pack(t1, 0, 0), (testbed.server.address, 50123))
                data = client.recv(64)
                t4 = time.time_ns()
                _, t2, t3 = _STAMPS.unpack(data)
                rows.append((t1, t2, t3, t4))
        finally:
            stop.set()
            thread.join(2)
            client.close()
            server.close()
    estimate = estimate_offset(rows)
    assert abs(estimate.offset_ns) <= estimate.bound_ns
    assert estimate.consistent
    assert estimate.min_delay_ns > 0  # jitter (normal, 2 ms) lets some through faster than 10 ms
    assert estimate.bound_ns <= estimate.min_delay_ns / 2


def _model(offset_ns: float, bound_ns: float, drift_ns: float = 0.0) -> ClockModel:
    """The server's clock minus the client's: ``offset_ns`` at t=1e18, plus ``drift_ns``
    10 s later; each estimate good to ± ``bound_ns``."""
    from lab.hosts.clock import OffsetEstimate

    at = 10**18
    return ClockModel(
        OffsetEstimate(offset_ns, bound_ns, at, 0, 8, True),
        OffsetEstimate(offset_ns + drift_ns, bound_ns, at + 10**10, 0, 8, True),
    )


def test_server_times_move_onto_the_client_clock_both_ways() -> None:
    """A server 7 ms ahead (and 1 ppm fast), a 3 ms path: corrected delays are 3 ms, to
    within the 7 ns the model's stand-in costs (the server's time for the client's, off
    by offset x drift)."""
    import pandas as pd

    from lab.analysis.clocks import on_client_clock, shift_server_capture

    clock = _model(7e6, 50_000, drift_ns=10_000)  # 10 µs over 10 s: 1 ppm
    t0 = 10**18 + 5 * 10**9
    sent = pd.Series([t0, t0 + 1000, pd.NA], dtype="Int64")  # client clock
    true_recv = sent + 3_000_000

    def on_server(times: pd.Series) -> pd.Series:  # what the server's clock read then
        return times + round(clock.offset_at(t0 + 3_000_000))

    forward = pd.DataFrame({"t_send_ns": sent, "t_recv_ns": on_server(true_recv)})
    fixed = on_client_clock(forward, clock, reverse=False)
    assert fixed["owd_ns"].tolist()[:2] == pytest.approx([3_000_000] * 2, abs=10)
    assert fixed["owd_ns"].isna().tolist() == [False, False, True]  # lost stays lost
    reverse = pd.DataFrame({"t_send_ns": on_server(sent), "t_recv_ns": true_recv})
    owd = on_client_clock(reverse, clock, reverse=True)["owd_ns"].tolist()[:2]
    assert owd == pytest.approx([3_000_000] * 2, abs=10)
    packets = pd.DataFrame({"ts_ns": [t0 + round(clock.offset_at(t0))]})
    assert shift_server_capture(packets, clock)["ts_ns"].tolist() == pytest.approx([t0], abs=10)


def test_owd_is_blanked_when_the_clocks_bound_is_wider_than_the_delays() -> None:
    import pandas as pd

    from lab.analysis.clocks import owd_figures

    messages = pd.DataFrame({"protocol": ["udp"] * 3, "owd_ns": [2_000_000, 2_100_000, 1_900_000]})
    for bound_ns, available in ((500_000, True), (3_000_000, False)):
        summary = pd.DataFrame({"protocol": ["udp"], "owd_p50_ms": [2.0], "rtt_p50_ms": [4.0]})
        owd_figures(summary, messages, _model(0.0, bound_ns))
        row = summary.iloc[0]
        assert bool(row["owd_available"]) is available
        assert row["owd_bound_ms"] == bound_ns / 1e6
        assert bool(row["owd_p50_ms"] == 2.0) is available  # blanked (NaN) when not
        assert row["rtt_p50_ms"] == 4.0  # a round trip needs one clock: kept


def test_the_clock_model_survives_meta_json() -> None:
    import json

    model = _model(-1234.0, 5678.0, drift_ns=99.0)
    back = ClockModel.from_meta(json.loads(json.dumps(model.as_meta())))
    assert back is not None
    for at in (10**18, 10**18 + 5 * 10**9, 10**18 + 10**10):
        assert back.offset_at(at) == pytest.approx(model.offset_at(at), abs=1)
        assert back.bound_at(at) == pytest.approx(model.bound_at(at), abs=1)
    assert ClockModel.from_meta({"offset_before_ns": "x"}) is None
    assert ClockModel.from_meta(None) is None
