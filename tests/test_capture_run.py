"""Captures taken during ``lab run``: complete, readable, and consistent with the engine (root)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.capture import LINKTYPE_RAW
from lab.pcap import read_pcap
from lab.results import load_run, pcap_path
from lab.runner import RunOutcome, run_scenario
from lab.scenario import load_scenario
from tests.conftest import QUICK_DRAIN, SCENARIOS, write_scenario

pytestmark = pytest.mark.requires_root

SYN, ACK = 0x02, 0x10


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory: pytest.TempPathFactory) -> RunOutcome:
    path = SCENARIOS / "quickstart.toml"
    # these tests read the captures and tables, not report.html: no page to draw
    return run_scenario(load_scenario(path), path, tmp_path_factory.mktemp("results"), render=False)


def test_every_udp_datagram_the_client_sent_is_in_the_client_pcap(quickstart: RunOutcome) -> None:
    frame = read_pcap(pcap_path(quickstart.path, "udp", "client"))
    assert frame.linktype == LINKTYPE_RAW, "TUN devices carry raw IP"
    packets = frame.packets
    to_server = packets[(packets["proto"] == 17) & (packets["dport"] == 50001)]
    sent = quickstart.summary.set_index("protocol").loc["udp", "sent"]
    assert len(to_server) == sent
    assert sorted(to_server["lab_seq"].astype(int)) == list(range(sent))
    assert int(to_server.iloc[0]["lab_seq"]) == 0, "capture was running before the first send"


def test_tcp_handshake_and_first_message_are_captured(quickstart: RunOutcome) -> None:
    packets = read_pcap(pcap_path(quickstart.path, "tcp", "client")).packets
    tcp = packets[packets["proto"] == 6].reset_index(drop=True)
    flags = tcp["tcp_flags"].astype(int)
    assert flags.iloc[0] & (SYN | ACK) == SYN, "the SYN is the first packet"
    assert flags.iloc[1] & (SYN | ACK) == SYN | ACK
    first_data = tcp[tcp["payload_len"] > 0].iloc[0]
    assert int(first_data["dport"]) == 50000
    assert int(first_data["payload_len"]) >= 16


def test_captures_report_no_kernel_drops(quickstart: RunOutcome) -> None:
    captures = load_run(quickstart.path).table("captures")
    assert len(captures) == 4  # tcp/udp x client/server
    assert (captures["kernel_drops"] == 0).all()
    assert captures["complete"].all()
    assert (quickstart.summary["capture_drops"] == 0).all()


def test_server_pcap_matches_what_the_engine_forwarded(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        'name = "t"\ndescription = "t"\nprotocols = ["udp"]\nseed = 8\n'
        "[workload]\ncount = 3000\nrate = 3000\n"
        "[impairment]\nloss = 10\nduplicate = 2\n" + QUICK_DRAIN,
    )
    outcome = run_scenario(load_scenario(path), path, tmp_path / "results", render=False)
    run = load_run(outcome.path)
    truth = run.table("impairment")
    c2s = truth[(truth["direction"] == "client_to_server") & (truth["ip_proto"] == 17)]
    forwarded = c2s[c2s["fate"] == "forwarded"]
    expected = len(forwarded) + int(forwarded["duplicated"].sum())

    server = read_pcap(run.pcap("udp", "server")).packets
    arrived = server[(server["proto"] == 17) & (server["dport"] == 50001)]
    assert len(arrived) == expected
    assert set(arrived["lab_seq"].astype(int)) == set(forwarded["lab_seq"].astype(int))
    client = read_pcap(run.pcap("udp", "client")).packets
    assert len(client[(client["proto"] == 17) & (client["dport"] == 50001)]) == len(c2s) == 3000
