"""The impairment engine on real TCP and UDP traffic between namespaces (root only).

Each test runs a small scenario through ``run_scenario`` and checks what the sockets saw
against what the engine says it did.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lab.results import load_run
from lab.runner import RunOutcome
from tests.conftest import QUICK_DRAIN, run_body, summary_row

pytestmark = [pytest.mark.requires_root, pytest.mark.slow]


def _accounting_closes(outcome: RunOutcome) -> None:
    books = load_run(outcome.path).table("accounting")
    assert books["closes"].all(), books.to_string()
    assert (
        books["packets_in"] == books["forwarded"] + books["dropped_loss"] + books["dropped_queue"]
    ).all()


def test_random_loss_is_binomial_over_20k_datagrams(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    n, p = 20_000, 0.05
    outcome = run_body(
        tmp_path,
        f'protocols = ["udp"]\nseed = 99\n[workload]\ncount = {n}\nsize = 64\nrate = 20000\n'
        "[impairment]\nloss = 5\n[impairment.server_to_client]\nloss = 0\n" + QUICK_DRAIN,
    )
    lost = int(summary_row(outcome, "udp")["lost"])
    half_width = 2.576 * math.sqrt(n * p * (1 - p))  # 99 % normal approximation of the binomial
    assert n * p - half_width <= lost <= n * p + half_width, f"lost {lost} of {n}"
    truth = load_run(outcome.path).table("impairment")
    dropped = truth[(truth["direction"] == "client_to_server") & (truth["fate"] == "dropped-loss")]
    assert set(dropped["lab_seq"].astype(int)) == set(
        outcome.messages.loc[outcome.messages["copies"] == 0, "seq"]
    ), "every UDP loss is an engine drop, and nothing else was lost"
    assert int(summary_row(outcome, "udp")["losses_explained"]) == lost
    _accounting_closes(outcome)


def test_delay_20ms_gives_udp_one_way_p50_between_20_and_21ms(tmp_path: Path) -> None:
    # Up to 3 tries, the first within 1 ms passes: on this 2-CPU VM the hypervisor can
    # stop the whole guest for milliseconds (steal time), which shifted one full-suite
    # try's median to 21.44 ms while the engine itself ran 0.28 ms late at the median.
    # A bias of the lab's own moves every try and still fails.
    medians = []
    for attempt in range(3):
        outcome = run_body(
            tmp_path / str(attempt),
            'protocols = ["udp"]\n[workload]\ncount = 2000\nrate = 2000\n'
            "[impairment]\ndelay_ms = 20\n",
        )
        row = summary_row(outcome, "udp")
        assert row["delivered"] == 2000
        assert 0 <= row["engine_late_p99_ms"] < math.inf, "the engine never writes early"
        _accounting_closes(outcome)
        medians.append(float(row["owd_p50_ms"]))
        if 20.0 <= medians[-1] <= 21.0:
            return
    pytest.fail(f"one-way delay p50 outside 20-21 ms in every try: {medians}")


def test_reordering_shows_in_udp_and_is_hidden_but_paid_for_by_tcp(tmp_path: Path) -> None:
    outcome = run_body(
        tmp_path,
        "[workload]\ncount = 2000\nrate = 2000\n"
        "[impairment]\ndelay_ms = 5\nreorder = 10\n[impairment.server_to_client]\nreorder = 0\n",
    )
    udp, tcp = summary_row(outcome, "udp"), summary_row(outcome, "tcp")
    assert udp["out_of_order"] > 0
    assert udp["owd_min_ms"] < 2.0, "reordered datagrams skip the 5 ms delay"
    assert tcp["out_of_order"] == 0, "TCP hands the application an ordered stream"
    assert tcp["delivered"] == 2000
    owd = outcome.messages.assign(fast=outcome.messages["owd_ns"] < 2_000_000)
    fast = owd.groupby("protocol")["fast"].mean()
    assert fast["udp"] > 0.05, "about 10 % of datagrams skip the delay"
    assert fast["tcp"] < fast["udp"] / 3, (
        "early TCP segments wait for the missing one (head-of-line)"
    )
    mean_owd = outcome.messages.groupby("protocol")["owd_ns"].mean()
    assert mean_owd["tcp"] > mean_owd["udp"], "TCP pays for reordering in delay"
    truth = (
        load_run(outcome.path).table("impairment_by_protocol").set_index(["protocol", "direction"])
    )
    assert truth.loc[("tcp", "client_to_server"), "reordered"] > 0
    _accounting_closes(outcome)


def test_tcp_completes_under_5pct_loss_with_every_byte_intact(tmp_path: Path) -> None:
    outcome = run_body(
        tmp_path,
        'protocols = ["tcp"]\n[workload]\ncount = 2000\nsize = 512\nrate = 2000\n'
        "[impairment]\ndelay_ms = 2\nloss = 5\n",
    )
    tcp = summary_row(outcome, "tcp")
    assert tcp["delivered"] == 2000 and tcp["lost"] == 0
    tcp_messages = outcome.messages[outcome.messages["protocol"] == "tcp"]
    assert tcp_messages["intact"].all()
    assert list(tcp_messages.sort_values("arrival_index")["seq"]) == list(range(2000))
    exchanges = load_run(outcome.path).table("exchanges").set_index("protocol")
    assert exchanges.loc["tcp", "client.Tcp.RetransSegs"] > 0, "the kernel retransmitted"
    _accounting_closes(outcome)


def test_duplicates_and_corruption_reach_udp_and_are_absorbed_by_tcp(tmp_path: Path) -> None:
    outcome = run_body(
        tmp_path,
        "seed = 4\n[workload]\ncount = 3000\nsize = 256\nrate = 3000\n"
        "[impairment]\nduplicate = 3\ncorrupt = 3\n" + QUICK_DRAIN,
    )
    udp, tcp = summary_row(outcome, "udp"), summary_row(outcome, "tcp")
    assert udp["duplicates"] > 0
    assert udp["lost"] > 0, "corrupted datagrams fail the UDP checksum and vanish"
    exchanges = load_run(outcome.path).table("exchanges").set_index("protocol")
    # every lost datagram failed the checksum (a corrupted duplicate fails it twice)
    assert exchanges.loc["udp", "server.Udp.InCsumErrors"] >= udp["lost"]
    assert int(udp["losses_explained"]) == int(udp["lost"])
    assert tcp["duplicates"] == 0 and tcp["lost"] == 0
    assert outcome.messages.loc[outcome.messages["protocol"] == "tcp", "intact"].all()
    _accounting_closes(outcome)


def test_same_seed_same_drops_other_seed_other_drops(tmp_path: Path) -> None:
    body = "[workload]\ncount = 3000\nrate = 5000\n[impairment]\nloss = 10\n" + QUICK_DRAIN
    lost = []
    for index, seed in enumerate((5, 5, 6)):
        outcome = run_body(tmp_path / str(index), f'protocols = ["udp"]\nseed = {seed}\n{body}')
        messages = outcome.messages
        lost.append(frozenset(messages.loc[messages["copies"] == 0, "seq"]))
    assert lost[0] == lost[1], "same seed, same packet sequence: same drops"
    assert lost[0] != lost[2]
    assert len(lost[0]) > 0


def test_rate_limit_queue_overflow_is_not_loss(tmp_path: Path) -> None:
    outcome = run_body(
        tmp_path,
        'protocols = ["udp"]\n[workload]\ncount = 1000\nsize = 1000\nrate = 500\n'
        "[impairment]\nrate_bps = 2000000\nqueue_limit = 50\n" + QUICK_DRAIN,
    )
    books = load_run(outcome.path).table("accounting").set_index("direction")
    c2s = books.loc["client_to_server"]
    assert c2s["dropped_queue"] > 300 and c2s["dropped_loss"] == 0
    udp = summary_row(outcome, "udp")
    assert udp["lost"] == c2s["dropped_queue"]
    assert udp["goodput_bps"] < 2.1e6
    _accounting_closes(outcome)


def test_same_seed_same_udp_losses_whatever_tcp_did(tmp_path: Path) -> None:
    """Random decisions are per flow: TCP's packets never shift UDP's fate."""
    body = (
        "seed = 7\n[workload]\ncount = 600\nsize = 256\nrate = 1000\n"
        "[impairment]\ndelay_ms = 5\nloss = 8\n" + QUICK_DRAIN
    )

    def udp_lost(name: str, protocols: str) -> set[int]:
        outcome = run_body(tmp_path / name, f"protocols = {protocols}\n{body}")
        udp = outcome.messages.loc[outcome.messages["protocol"] == "udp"]
        return set(udp.loc[udp["copies"] == 0, "seq"].astype(int))

    first = udp_lost("a", '["tcp", "udp"]')
    again = udp_lost("b", '["tcp", "udp"]')
    alone = udp_lost("c", '["udp"]')
    assert 20 <= len(first) <= 80, f"8 % of 600 expected, lost {len(first)}"
    assert first == again, f"same seed, different losses: {sorted(first ^ again)}"
    assert first == alone, f"TCP before UDP changed UDP's losses: {sorted(first ^ alone)}"


def test_echo_rtt_without_and_with_nagle(tmp_path: Path) -> None:
    """TCP_NODELAY on both ends: TCP's echo RTT is UDP's on a clean 10 ms link; with
    Nagle (and the peer's delayed ACKs) coalesced replies wait, and TCP's RTT grows."""
    body = (
        '[workload]\npattern = "echo"\ncount = 300\nsize = 64\nrate = 200\n'
        "[impairment]\ndelay_ms = 10\n"
    )
    ratios = {}
    for nagle in ("false", "true"):
        outcome = run_body(tmp_path / nagle, f"nagle = {nagle}\n{body}")
        tcp, udp = summary_row(outcome, "tcp"), summary_row(outcome, "udp")
        assert 20.0 <= udp["rtt_p50_ms"] <= 23.0, udp["rtt_p50_ms"]
        ratios[nagle] = tcp["rtt_p50_ms"] / udp["rtt_p50_ms"]
    assert ratios["false"] <= 1.3, f"TCP RTT p50 is {ratios['false']:.2f}x UDP's without Nagle"
    assert ratios["true"] > 1.3, f"Nagle made no difference: {ratios}"


def test_summary_shows_offered_load_sender_backlog_and_the_engines_own_figures(
    tmp_path: Path,
) -> None:
    """At 5 % loss and a 20 ms RTT, TCP cannot carry 4.1 Mbit/s (Mathis: ~3.2): its
    sender falls behind the offered load and messages wait before the wire; UDP's do not."""
    outcome = run_body(
        tmp_path,
        "seed = 5\n[workload]\ncount = 1000\nsize = 512\nrate = 1000\n"
        "[impairment]\ndelay_ms = 10\nloss = 5\n" + QUICK_DRAIN,
    )
    tcp, udp = summary_row(outcome, "tcp"), summary_row(outcome, "udp")
    offered = 1000 * 512 * 8
    assert tcp["offered_bps"] == udp["offered_bps"] == offered
    assert udp["send_rate_bps"] == pytest.approx(offered, rel=0.03)
    assert tcp["send_rate_bps"] < 0.9 * offered, tcp["send_rate_bps"]
    assert udp["backlog_p99_ms"] < 5.0, "a datagram leaves as soon as the stack runs"
    assert tcp["backlog_p99_ms"] > 10 * udp["backlog_p99_ms"], (tcp, udp)
    # a UDP stream's packets all go client -> server: every one the engine drops is lost
    assert udp["engine_loss_pct"] == pytest.approx(udp["loss_pct"])
    assert 0 < tcp["engine_loss_pct"] < 10


def test_large_fragmented_datagrams_lose_what_the_link_drops_in_either_order(
    tmp_path: Path,
) -> None:
    """65000-byte datagrams are 45 fragments: 1 % fragment loss loses 1 - 0.99**45 of them.

    Incomplete datagrams wait 30 s for reassembly; past the kernel's default 4 MiB of
    them every new fragment was dropped, so losses grew and the next exchange lost all.
    """
    n, fragments = 150, 45
    p = 1 - 0.99**fragments
    for order in ('["udp", "raw"]', '["raw", "udp"]'):
        outcome = run_body(
            tmp_path / order.strip('[]"').replace('", "', "-"),
            f"protocols = {order}\n[workload]\ncount = {n}\nsize = 65000\nrate = 100\n"
            "[impairment]\nloss = 1\ndelay_ms = 2\n" + QUICK_DRAIN,
        )
        for protocol in ("udp", "raw"):
            row = summary_row(outcome, protocol)
            half_width = 3.29 * math.sqrt(n * p * (1 - p))  # 99.9 % normal approximation
            assert abs(row["lost"] - n * p) <= half_width, f"{order} {protocol}: {row['lost']}"
            assert row["unexplained"] == 0, f"{order} {protocol}"


def test_delay_longer_than_the_default_drain_delivers_everything(tmp_path: Path) -> None:
    """5 s of delay, drain left out: derived (6 s), so nothing delivered is called lost,
    and the run is complete with the engine's record of every packet."""
    outcome = run_body(
        tmp_path,
        'protocols = ["udp"]\n[workload]\ncount = 10\nrate = 100\n[impairment]\ndelay_ms = 5000\n',
    )
    row = summary_row(outcome, "udp")
    assert row["delivered"] == 10, row
    assert 5000 <= row["owd_p50_ms"] < 5100
    meta = load_run(outcome.path).meta
    assert meta["complete"] is True and meta["drain_s"] == 6.0
    assert meta["ground_truth"]["packets"] == 10
