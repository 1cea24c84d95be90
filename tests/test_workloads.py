"""Workloads as people run them with iperf3: bulk transfer, and the sender's TCP_INFO.

Unit tests need no root; the integration tests run real TCP through the lab's testbed
and hold the lab's figures against iperf3's and against the kernel's own counters.
"""

from __future__ import annotations

import json
import math
import struct
import subprocess
import time
from pathlib import Path

import pytest

from lab.errors import ScenarioError
from lab.exchanges._endpoint import paced
from lab.exchanges._tcpinfo import parse_tcp_info, sample_row
from lab.scenario import MAX_MESSAGES, load_scenario
from tests.conftest import QUICK_DRAIN, iperf3_testbed, run_tables, write_scenario

# --- the scenario -----------------------------------------------------------------------------


def test_bulk_sends_for_a_duration_capped_by_count(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        'name = "b"\nprotocols = ["tcp"]\n[workload]\npattern = "bulk"\nduration_s = 2.5\n',
    )
    workload = load_scenario(path).workload
    assert workload.bulk and workload.count == MAX_MESSAGES
    assert workload.send_duration_s == 2.5 and math.isinf(workload.messages_per_second)


def test_udp_bulk_paced_at_rate_stops_at_whichever_comes_first(tmp_path: Path) -> None:
    text = 'name = "b"\n[workload]\npattern = "bulk"\nduration_s = 5\nrate = 100\ncount = 200\n'
    workload = load_scenario(write_scenario(tmp_path, text)).workload
    assert workload.send_duration_s == 2.0  # 200 messages at 100/s before 5 s are up


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'name = "b"\nprotocols = ["tcp", "udp"]\n[workload]\npattern = "bulk"\n',
            "workload.rate: bulk over udp needs a target rate",
        ),
        (
            'name = "b"\n[workload]\nduration_s = 2\n',
            'workload.duration_s: only for pattern = "bulk"',
        ),
        (
            'name = "b"\nprotocols = ["tcp"]\n[workload]\npattern = "bulk"\nduration_s = 0\n',
            "workload.duration_s:",
        ),
        ('name = "b"\n[analysis]\ninterval_ms = 1\n', "analysis.interval_ms:"),
        ('name = "p"\nprotocols = ["tcp"]\n[workload]\nparallel = 2\n', "workload.parallel:"),
        (
            'name = "p"\nprotocols = ["udp", "raw"]\n[workload]\npattern = "bulk"\n'
            "rate = 100\nparallel = 2\n",
            "workload.parallel: raw IP has no ports",
        ),
        (
            'name = "p"\nprotocols = ["tcp"]\n[ports]\nprobe = 50003\n[workload]\n'
            'pattern = "latency_under_load"\nparallel = 4\n',
            "ports.probe: 50003 is one of the tcp flows' ports",
        ),
        (  # bidirectional doubles the flows: UDP's 50001-50008 hold the probe's port
            'name = "p"\nprotocols = ["udp"]\n[ports]\nprobe = 50008\n[workload]\n'
            'pattern = "latency_under_load"\nrate = 100\nparallel = 4\n'
            'direction = "bidirectional"\n',
            "ports.probe: 50008 is one of the udp flows' ports",
        ),
        (
            'name = "p"\n[workload]\npattern = "echo"\ndirection = "reverse"\n',
            "workload.direction: 'reverse': echo already goes both ways",
        ),
        (
            'name = "p"\nprotocols = ["udp"]\n[workload]\ncount = 3\nparallel = 2\n'
            'pattern = "bulk"\nrate = 10\ndirection = "bidirectional"\n',
            "workload.count: 3 messages cannot be shared by 4 flows",
        ),
        ('name = "p"\n[workload]\ndirection = "sideways"\n', "workload.direction:"),
    ],
)
def test_bad_workload_settings_name_the_file_and_field(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write_scenario(tmp_path, text)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert str(error.value).startswith(f"{path}: {message}"), str(error.value)


def test_paced_stops_when_the_duration_is_up() -> None:
    started = time.perf_counter()
    sent = list(paced(10_000, 200.0, 0.1))
    elapsed = time.perf_counter() - started
    assert len(sent) == 20  # 200/s for 0.1 s: seq 0..19, not 21
    assert elapsed < 0.5
    assert len(list(paced(5, math.inf, 10.0))) == 5  # unpaced: count caps it


# --- TCP_INFO ------------------------------------------------------------------------------


def _tcp_info(**fields: int) -> bytes:
    raw = bytearray(232)
    offsets = {"ca_state": ("B", 1), "snd_mss": ("I", 16), "unacked": ("I", 24)}
    offsets |= {"sacked": ("I", 28), "lost": ("I", 32), "retrans": ("I", 36)}
    offsets |= {"rtt_us": ("I", 68), "snd_ssthresh": ("I", 76), "snd_cwnd": ("I", 80)}
    offsets |= {"delivery_rate": ("Q", 160)}
    for name, value in fields.items():
        fmt, offset = offsets[name]
        struct.pack_into("=" + fmt, raw, offset, value)
    return bytes(raw)


def test_tcp_info_fields_and_pipe() -> None:
    raw = _tcp_info(
        ca_state=3, snd_mss=1448, unacked=40, sacked=5, lost=3, retrans=2, rtt_us=20500,
        snd_ssthresh=0x7FFFFFFF, snd_cwnd=24, delivery_rate=1_250_000,
    )  # fmt: skip
    row = sample_row(7, parse_tcp_info(raw), "cubic")
    assert row["in_flight_segments"] == 40 - (5 + 3) + 2  # RFC 6675 pipe, as the kernel
    assert row["cwnd_bytes"] == 24 * 1448 and row["srtt_ms"] == 20.5
    assert row["ssthresh_segments"] is None  # "infinite" before the first loss
    assert row["ca_state"] == "recovery" and row["delivery_rate_bps"] == 10_000_000


def test_a_short_tcp_info_leaves_newer_fields_missing() -> None:
    info = parse_tcp_info(_tcp_info(snd_cwnd=10)[:104])  # a kernel older than 4.x
    assert info["snd_cwnd"] == 10 and info["delivery_rate"] == -1
    assert sample_row(0, info, "reno")["delivery_rate_bps"] is None


# --- real runs ------------------------------------------------------------------------------


@pytest.mark.requires_root
def test_tcp_bulk_goodput_matches_iperf3_on_the_same_testbed(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """A 20 Mbit/s lossless bottleneck: the lab's TCP goodput within 10 % of iperf3's."""
    scenario = write_scenario(
        tmp_path,
        'name = "bulk20"\nprotocols = ["tcp"]\n[workload]\npattern = "bulk"\nsize = 1400\n'
        f"duration_s = {BULK_S:.1f}\n[impairment]\ndelay_ms = 5\nrate_bps = 20000000\n",
    )
    run = run_tables(scenario, tmp_path / "results")
    ours = float(run.summary.set_index("protocol").loc["tcp", "goodput_bps"])
    theirs = _iperf3_goodput(scenario)
    assert abs(ours - theirs) <= 0.10 * theirs, (ours, theirs)
    # both are bounded by the link: 20 Mbit/s of IP packets, 1448 of 1500 bytes payload
    assert ours <= 20e6 * 1448 / 1500 * 1.02, ours

    # the kernel's own count of bytes the receiver acknowledged covers every message
    info = run.table("tcp_info")
    delivered = int(run.messages.query("protocol == 'tcp'")["size"].sum())
    # the SYN and the FIN take one sequence number each (RFC 9293 §3.4)
    assert int(info["bytes_acked"].max()) == delivered + 2
    assert (info["cwnd_segments"] > 0).all() and info["t_ns"].is_monotonic_increasing
    series = run.table("timeseries")
    assert int(series["bytes_delivered"].sum()) == delivered


#: How long the iperf3 comparisons send, the lab and iperf3 alike: the link's rate is
#: reached in ~0.1 s (a 10 ms RTT), and the two agreed within 0.3 % at 2 s and at 3 s.
BULK_S = 2


def _iperf3_goodput(scenario: Path, *flags: str) -> float:
    """iperf3 -c server -t BULK_S (plus ``flags``, e.g. -R) through `lab testbed up` of the
    same scenario: what the receiving end got, bit/s."""
    with iperf3_testbed(scenario) as testbed:
        client = subprocess.run(
            [*testbed.exec_prefix, "client", "--", "timeout", "25", "iperf3", "-c", "server",
             *flags, "-t", str(BULK_S), "-J"],
            capture_output=True,
            text=True,
            timeout=40,
            check=True,
        )  # fmt: skip
    report = json.loads(client.stdout)
    return float(report["end"]["sum_received"]["bits_per_second"])


@pytest.mark.requires_root
def test_reverse_tcp_bulk_matches_iperf3_reverse_on_an_asymmetric_link(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """The server sends through a 20 Mbit/s downlink (2 Mbit/s up, for the ACKs): the
    lab's goodput within 10 % of iperf3 -R's on the same scenario's testbed, and the
    sender's kernel (the server's TCP_INFO) acknowledges every byte the client read."""
    rate_bps = 20_000_000
    scenario = write_scenario(
        tmp_path,
        'name = "rev"\nprotocols = ["tcp"]\n[workload]\npattern = "bulk"\nsize = 1400\n'
        f'duration_s = {BULK_S:.1f}\ndirection = "reverse"\n[impairment]\ndelay_ms = 5\n'
        f"[impairment.server_to_client]\nrate_bps = {rate_bps}\n"
        "[impairment.client_to_server]\nrate_bps = 2000000\n",
    )
    run = run_tables(scenario, tmp_path / "results")
    ours = float(run.summary.set_index("protocol").loc["tcp", "goodput_bps"])
    theirs = _iperf3_goodput(scenario, "-R")
    assert abs(ours - theirs) <= 0.10 * theirs, (ours, theirs)
    assert ours <= rate_bps * 1448 / 1500 * 1.02, ours  # the downlink bounds it, not the up
    exchange = run.table("exchanges").iloc[0]
    assert exchange["direction"] == "server_to_client"
    assert int(exchange["server_port"]) == 50000 and int(exchange["client_port"]) >= 1024
    info = run.table("tcp_info")
    delivered = int(run.messages["size"].sum())
    # + the FIN; the passive opener's count starts after its SYN-ACK was acknowledged
    # (measured on Linux 6.x; the client's includes its SYN: +2 in the forward test)
    assert int(info["bytes_acked"].max()) == delivered + 1
    # the data segments went server -> client on the wire, the ACKs the other way
    segments = run.table("tcp_segments")
    data = segments.loc[segments["len"] > 0, "direction"].value_counts()
    assert data.index[0] == "server_to_client" and data.iloc[0] > 10 * data.get(
        "client_to_server", 0
    )


@pytest.mark.requires_root
def test_reverse_losses_are_the_engines_on_the_downlink(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """Reverse stream over TCP, UDP and RAW with loss on the downlink only: the kernels on
    both ends count what each end did, and every datagram lost is the engine's drop."""
    scenario = write_scenario(
        tmp_path,
        'name = "revloss"\nprotocols = ["tcp", "udp", "raw"]\nseed = 5\n[workload]\n'
        'count = 600\nrate = 600\nsize = 200\ndirection = "reverse"\n[impairment]\n'
        "delay_ms = 2\n[impairment.server_to_client]\nloss = 3\n" + QUICK_DRAIN,
    )
    run = run_tables(scenario, tmp_path / "results")
    summary = run.summary.set_index("protocol")
    exchanges = run.table("exchanges").set_index("protocol")
    assert set(exchanges["direction"]) == {"server_to_client"}
    udp = exchanges.loc["udp"]
    assert int(udp["server.Udp.OutDatagrams"]) == 600  # the server sent every message
    assert int(udp["client.Udp.InDatagrams"]) == int(summary.loc["udp", "delivered"])
    assert int(summary.loc["tcp", "lost"]) == 0  # TCP repairs the loss: retransmissions
    retransmitted = int(run.table("tcp_stats")["retransmissions"].iloc[0])
    assert retransmitted == int(exchanges.loc["tcp", "server.Tcp.RetransSegs"]) > 0
    explained = run.table("explained")
    for protocol in ("udp", "raw"):
        lost = int(summary.loc[protocol, "lost"])
        assert lost > 0, protocol  # 3 % of 600
        rows = explained.loc[explained["protocol"] == protocol]
        assert len(rows) == lost and set(rows["cause"]) == {"dropped-loss"}, rows
    engine = run.table("impairment")
    dropped = engine.loc[engine["fate"] == "dropped-loss", "direction"]
    assert set(dropped) == {"server_to_client"}  # the uplink had no loss
    late = explained.loc[explained["protocol"] == "tcp", "evidence"]
    assert late.str.contains("arrived at the client").any(), late.head()


@pytest.mark.requires_root
def test_bidirectional_parallel_flows_fill_each_direction_of_a_full_duplex_link(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """2 TCP flows each way through 20 Mbit/s each way: the link is full duplex, so the
    two directions together carry more than one direction's payload rate, and neither
    more than its own (the other way's ACKs share it); 2 UDP flows each way share the UDP
    rate evenly and lose nothing.

    How evenly the two directions split is left loose: on two shared cores, eight
    endpoints and the engine compete for the CPU (iperf3 --bidir -P 2 on the same testbed
    split 11 / 19 Mbit/s once).
    """
    rate_bps = 20_000_000
    scenario = write_scenario(
        tmp_path,
        'name = "bidir"\nprotocols = ["tcp", "udp"]\n[workload]\npattern = "bulk"\n'
        'size = 1400\nduration_s = 3.0\nparallel = 2\ndirection = "bidirectional"\n'
        f"rate = 1200\n[impairment]\ndelay_ms = 5\nrate_bps = {rate_bps}\n",
    )
    run = run_tables(scenario, tmp_path / "results")
    flows = run.table("flows")
    ways = ["client_to_server"] * 2 + ["server_to_client"] * 2
    for protocol in ("tcp", "udp"):
        mine = flows.loc[flows["protocol"] == protocol]
        assert mine["flow"].tolist() == [0, 1, 2, 3]
        assert mine["direction"].tolist() == ways
        assert mine.groupby("direction")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    # a full segment is 1500 IP bytes; each other one, the reverse data's ACK (52 bytes)
    payload_rate = rate_bps * 1448 / (1500 + 52 / 2)
    tcp = flows.loc[flows["protocol"] == "tcp"].groupby("direction")["goodput_bps"].sum()
    assert (tcp <= 1.02 * payload_rate).all() and (tcp >= 0.4 * payload_rate).all(), tcp
    assert tcp.sum() >= 1.3 * payload_rate, (tcp, payload_rate)
    udp = flows.loc[flows["protocol"] == "udp"]
    assert udp["sent"].tolist() == [900] * 4  # 1200/s shared by 4 flows for 3 s
    assert (udp["delivered"] == udp["sent"]).all()
    exchanges = run.table("exchanges").set_index(["protocol", "flow"])
    assert [int(exchanges.loc[("udp", f), "server_port"]) for f in range(4)] == [
        50001,
        50002,
        50003,
        50004,
    ]
    assert set(run.table("tcp_info")["flow"]) == {0, 1, 2, 3}  # sampled at each sender
    hol = run.table("hol")
    assert hol["t_last_byte_ns"].notna().all()  # each flow judged on its own direction


@pytest.mark.requires_root
def test_udp_bulk_sends_at_its_rate_for_its_duration(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    scenario = write_scenario(
        tmp_path,
        'name = "ubulk"\nprotocols = ["udp"]\n[workload]\npattern = "bulk"\nsize = 1000\n'
        "duration_s = 1.5\nrate = 2000\n[impairment]\ndelay_ms = 2\n",
    )
    run = run_tables(scenario, tmp_path / "results")
    udp = run.messages.query("protocol == 'udp'")
    assert len(udp) == 3000  # 2000/s for 1.5 s, not one more
    span_s = (int(udp["t_send_ns"].max()) - int(udp["t_send_ns"].min())) / 1e9
    assert 1.45 <= span_s <= 1.6, span_s
    assert not run.has_table("tcp_info")


@pytest.mark.requires_root
@pytest.mark.parametrize("queue_limit", [100, 10])
def test_probe_rtt_under_load_grows_by_the_queues_drain_time(
    tmp_path: Path, queue_limit: int, no_leftover_namespaces: None
) -> None:
    """bufferbloat: a UDP load at twice the bottleneck keeps its queue full; the probe's
    round trip under load reaches the idle one plus the queue's drain time (±20 %).

    The drain time is that of the packets ahead of an accepted probe: queue_limit counts
    every packet accepted and not yet gone, as netem's limit does, so the ~delay/serialization
    packets already serialized and only waiting out the delay take places too, and a probe
    gets in only when a place is free (queue_limit - 1 ahead of it at most). The full queue
    also drops most probes that arrive while it is full, so the survivors lean towards the
    filling and draining moments: the median shows the bloat, the 99th percentile (the
    longest wait, a full queue) is what the drain time predicts.
    """
    rate_bps, size = 2_000_000, 1400
    scenario = write_scenario(
        tmp_path,
        f'name = "bloat"\nprotocols = ["udp"]\n[workload]\npattern = "latency_under_load"\n'
        f"size = {size}\nduration_s = 5.0\nrate = 360\nprobe_hz = 20\nprobe_idle_s = 0.6\n"
        f"[impairment]\ndelay_ms = 10\nrate_bps = {rate_bps}\nqueue_limit = {queue_limit}\n"
        + QUICK_DRAIN,  # the full queue's drops: 1 s is past its 0.6 s of hold
    )
    run = run_tables(scenario, tmp_path / "results")
    row = run.summary.set_index("protocol").loc["udp"]
    serialization_ms = (size + 28) * 8 / rate_bps * 1e3  # IP + UDP headers
    in_delay = 10 / serialization_ms  # serialized, waiting out the 10 ms delay
    drain_ms = (queue_limit - 1 - in_delay) * serialization_ms
    idle_ms = float(row["probe_rtt_idle_ms"])
    longest_ms = float(row["probe_rtt_load_p99_ms"]) - idle_ms
    assert abs(longest_ms - drain_ms) <= 0.2 * drain_ms, (longest_ms, drain_ms)
    assert float(row["probe_rtt_load_ms"]) - idle_ms >= 0.25 * drain_ms  # the median bloats too
    assert float(row["probe_rtt_idle_ms"]) == pytest.approx(20.0, abs=5.0)  # 10 ms each way
    assert float(row["probe_rtt_after_ms"]) == pytest.approx(20.0, abs=5.0)  # the queue drained
    probes = run.table("probe")
    assert set(probes["phase"]) == {"idle", "load", "after"}
    assert set(probes["probe"]) == {"udp", "tcp"}


def test_flows_share_count_and_rate_and_bidirectional_reverses_the_second_half(
    tmp_path: Path,
) -> None:
    from types import SimpleNamespace
    from typing import cast

    from lab.exchanges import Site, flow_count, settings_for
    from lab.scenario import Protocol

    scenario = load_scenario(
        write_scenario(
            tmp_path,
            'name = "b"\nprotocols = ["tcp", "udp", "raw"]\n[workload]\npattern = "bulk"\n'
            'rate = 1200\ncount = 1200\ndirection = "bidirectional"\n',
        )
    )

    testbed = cast(Site, SimpleNamespace(client_address="198.18.0.1", server_address="198.18.0.2"))
    assert [flow_count(scenario, p) for p in Protocol] == [2, 2, 2]
    udp = [settings_for(scenario, Protocol.UDP, testbed, flow) for flow in (0, 1)]
    assert [(s.port, s.reverse, s.count, s.rate) for s in udp] == [
        (50001, False, 600, 600.0),
        (50002, True, 600, 600.0),
    ]
    raw = settings_for(scenario, Protocol.RAW, testbed, 1)
    assert (raw.port, raw.reverse) == (0, True)  # no ports: told apart by direction


def test_jain_index() -> None:
    from lab.analysis.summary import jain_index

    assert jain_index([5.0, 5.0, 5.0, 5.0]) == pytest.approx(1.0)
    assert jain_index([10.0, 0.0, 0.0, 0.0]) == pytest.approx(0.25)  # 1/n: one takes all
    assert jain_index([3.0, 1.0]) == pytest.approx(16 / 20)
    assert math.isnan(jain_index([]))


def _flow_messages(flow: int, count: int, gap_ns: int) -> list[dict[str, int | str]]:
    """``count`` delivered 1000-byte messages of one flow, one every ``gap_ns``."""
    return [
        {"protocol": "udp", "flow": flow, "seq": i, "size": 1000,
         "t_send_ns": i * gap_ns, "t_recv_ns": i * gap_ns + 1_000_000}
        for i in range(count)
    ]  # fmt: skip


def test_fairness_compares_flows_going_the_same_way() -> None:
    import pandas as pd

    from lab.analysis.summary import flow_table, jain_index, summarize

    rows = [  # forward: two equal flows; reverse: one twice as fast as the other
        *_flow_messages(0, 100, 1_000_000),
        *_flow_messages(1, 100, 1_000_000),
        *_flow_messages(2, 100, 1_000_000),
        *_flow_messages(3, 100, 2_000_000),
    ]
    messages = pd.DataFrame(rows)
    ways = {("udp", 2): "server_to_client", ("udp", 3): "server_to_client"}
    flows = flow_table(messages, ways)
    assert flows["direction"].tolist() == ["client_to_server"] * 2 + ["server_to_client"] * 2
    assert flows.groupby("direction")["share"].sum().tolist() == pytest.approx([1.0, 1.0])
    reverse = flows.loc[flows["direction"] == "server_to_client", "goodput_bps"].tolist()
    assert reverse[0] == pytest.approx(2 * reverse[1], rel=0.02)
    jain = float(summarize(messages, ways)["jain_index"].iloc[0])
    assert jain == pytest.approx(jain_index(reverse)) and jain < 1.0  # the less fair way
    assert float(summarize(messages)["jain_index"].iloc[0]) == pytest.approx(
        jain_index(flows["goodput_bps"].tolist())  # no directions: one way, all four
    )


def test_a_reverse_flows_evidence_names_the_ends_as_they_are() -> None:
    import pandas as pd

    from lab.analysis.join import _Way

    text = pd.Series(["captured leaving the client; server.Udp.RcvbufErrors: 3; clientele"])
    assert _Way(False).words(text).tolist() == text.tolist()
    assert _Way(True).words(text).tolist() == [
        "captured leaving the server; client.Udp.RcvbufErrors: 3; clientele"
    ]


@pytest.mark.requires_root
def test_parallel_flows_share_a_rate_limited_link(
    tmp_path: Path, no_leftover_namespaces: None
) -> None:
    """4 TCP flows through 20 Mbit/s: per-flow rows, Jain's index, shares add up to the link."""
    from lab.analysis.summary import jain_index

    rate_bps = 20_000_000
    scenario = write_scenario(
        tmp_path,
        'name = "par"\nprotocols = ["tcp"]\n[workload]\npattern = "bulk"\nsize = 1400\n'
        f"duration_s = 4.0\nparallel = 4\n[impairment]\ndelay_ms = 10\nrate_bps = {rate_bps}\n",
    )
    run = run_tables(scenario, tmp_path / "results", render=True)  # the page is read below
    flows = run.table("flows")
    assert flows["flow"].tolist() == [0, 1, 2, 3]
    assert flows["share"].sum() == pytest.approx(1.0)
    payload_rate = rate_bps * 1448 / 1500  # full segments: 52 header bytes per 1448
    total = float(flows["goodput_bps"].sum())
    assert abs(total - payload_rate) <= 0.05 * payload_rate, (total, payload_rate)
    summary = run.summary.set_index("protocol").loc["tcp"]
    assert int(summary["flows"]) == 4
    assert float(summary["jain_index"]) == pytest.approx(jain_index(list(flows["goodput_bps"])))
    assert (run.messages.groupby("flow")["seq"].min() == 0).all()  # each flow its own seqs
    exchanges = run.table("exchanges")
    assert sorted(exchanges["server_port"]) == [50000, 50001, 50002, 50003]
    assert exchanges["client_port"].nunique() == 4
    assert set(run.table("tcp_info")["flow"]) == {0, 1, 2, 3}
    assert set(run.table("tcp_stats")["flow"]) == {0, 1, 2, 3}
    per_flow = run.table("flow_timeseries").groupby("flow")["bytes_delivered"].sum()
    delivered = run.messages.groupby("flow")["size"].sum()  # every message was delivered
    assert per_flow.tolist() == delivered.tolist()
    page = run.report_path
    assert page is not None and "flow_timeseries.csv" in page.read_text()


@pytest.mark.parametrize("pattern", ["bulk", "latency_under_load"])
def test_a_bulk_runs_tables_are_bounded_by_the_largest_count(pattern: str) -> None:
    """A bulk scenario without count sends until its time is up: its folder's bound too."""
    from lab.results._checks import max_rows, workload_of

    workload = workload_of({"protocols": ["udp"], "workload": {"pattern": pattern}}, {})
    assert workload.count == MAX_MESSAGES
    assert max_rows("messages", workload) >= MAX_MESSAGES
    stream = workload_of({"protocols": ["udp"], "workload": {"pattern": "stream"}}, {})
    assert stream.count == 1000  # the scenario default
