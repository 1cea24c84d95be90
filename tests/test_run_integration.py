"""``lab run`` for real: namespaces, TUN link, engine, kernel sockets (root only)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from lab.results import load_run
from lab.runner import run_scenario
from lab.scenario import load_scenario
from tests.conftest import (
    PROJECT_ROOT,
    QUICK_DRAIN,
    SCENARIOS,
    iperf3_testbed,
    lab_namespaces,
    write_scenario,
)

pytestmark = pytest.mark.requires_root
LAB = [sys.executable, "-m", "lab"]


def test_quickstart_delivers_everything_in_order(
    results_root: Path, no_leftover_namespaces: None
) -> None:
    path = SCENARIOS / "quickstart.toml"
    scenario = load_scenario(path)
    outcome = run_scenario(scenario, path, results_root)

    summary = outcome.summary.set_index("protocol")
    for protocol in ("tcp", "udp"):
        row = summary.loc[protocol]
        assert row["sent"] == scenario.workload.count
        assert row["delivered"] == scenario.workload.count, (
            f"{protocol} lost messages on a clean link"
        )
        assert row["out_of_order"] == 0
        assert row["duplicates"] == 0
        assert row["owd_p50_ms"] < 1.0, f"{protocol} p50 one-way delay {row['owd_p50_ms']} ms"
    messages = outcome.messages
    assert messages["intact"].all()
    for _, group in messages.groupby("protocol"):
        assert list(group.sort_values("arrival_index")["seq"]) == list(
            range(scenario.workload.count)
        )

    run = load_run(outcome.path)
    meta = run.meta
    assert meta["complete"] is True
    assert meta["congestion_control"] == "cubic"
    assert meta["format_version"] == 3  # results/README.md: format_version 3
    assert meta["seed"] == scenario.seed
    # durations are measured, not bounded here: docs/benchmarks.md reports them
    assert meta["testbed_setup_s"] > 0 and meta["testbed_teardown_s"] > 0
    for name in ("messages.csv", "summary.csv", "exchanges.csv", "scenario.toml", "report.html"):
        assert (outcome.path / name).exists(), name
    on_disk = run.messages
    assert len(on_disk) == 2 * scenario.workload.count
    exchanges = run.table("exchanges").set_index("protocol")
    assert exchanges.loc["tcp", "congestion_control"] == "cubic"
    assert (exchanges["client_port"] >= 49152).all(), (
        "client ports come from the IANA ephemeral range"
    )


def _run_json(path: Path, results: Path, *, timeout_s: float) -> subprocess.CompletedProcess[str]:
    """``lab run PATH --json``, bounded in time."""
    return subprocess.run(
        [*LAB, "run", str(path), "--results", str(results), "--json"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )


def _start_long_run(tmp_path: Path) -> tuple[subprocess.Popen[str], set[str], Path]:
    """A 20-second ``lab run`` in the background, returned once its testbed is up."""
    scenario = write_scenario(
        tmp_path, 'name = "long"\ndescription = "stopped on purpose"\n[workload]\ncount = 20000\n'
    )
    results = tmp_path / "results"
    before = lab_namespaces()
    process = subprocess.Popen(
        [*LAB, "run", str(scenario), "--results", str(results)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(lambda: len(lab_namespaces() - before) == 2, timeout_s=10)
    return process, before, results


def test_sigint_midway_tears_down_and_marks_incomplete(tmp_path: Path) -> None:
    process, before, results = _start_long_run(tmp_path)
    time.sleep(1.0)  # midway through the TCP exchange
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert lab_namespaces() - before == set(), "namespaces left after SIGINT"
    (run_folder,) = results.iterdir()
    run = load_run(run_folder)
    assert run.meta["complete"] is False
    assert run.meta["incomplete_reason"] == "interrupted"
    assert "summary" not in run.table_names


def test_sigterm_tears_down(tmp_path: Path) -> None:
    process, before, _ = _start_long_run(tmp_path)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=30)
    assert process.returncode == 130
    assert lab_namespaces() - before == set()


def test_cleanup_removes_what_sigkill_left(tmp_path: Path) -> None:
    process, before, _ = _start_long_run(tmp_path)
    process.kill()
    process.communicate()
    left = lab_namespaces() - before
    assert len(left) == 2, "SIGKILL cannot be caught: the namespaces stay"
    cleanup = subprocess.run(
        [*LAB, "cleanup"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
    )
    assert cleanup.returncode == 0, cleanup.stderr
    assert lab_namespaces() & left == set()
    for name in left:
        assert name in cleanup.stdout
    # the engine died with its parent (PR_SET_PDEATHSIG)
    run_ids = {name[len("lab-") : -2] for name in left}
    engines = subprocess.run(
        ["pgrep", "-af", "lab.impairment.forwarder"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    assert not [e for e in engines if any(f"--run-id {r}" in e for r in run_ids)], engines


def test_bad_scenario_exits_2_with_one_line_and_writes_nothing(tmp_path: Path) -> None:
    scenario = write_scenario(tmp_path, 'name = "x"\n[workload]\nsize = 5\n', "x.toml")
    results = tmp_path / "results"
    done = subprocess.run(
        [*LAB, "run", str(scenario), "--results", str(results)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == f"{scenario}: workload.size: must be between 16 and 65000 (got 5)"
    assert "Traceback" not in done.stderr
    assert not results.exists()


def _wait_for(condition: object, timeout_s: float) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_concurrent_runs_do_not_touch_each_other(tmp_path: Path) -> None:
    """Regression: a forked helper once unwound into teardown and removed another run's namespaces."""
    scenario = write_scenario(
        tmp_path, 'name = "q"\ndescription = "concurrent"\n[workload]\ncount = 300\nrate = 3000\n'
    )
    runs = [
        subprocess.Popen(
            [*LAB, "run", str(scenario), "--results", str(tmp_path / f"r{i}")],
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    for process in runs:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    run_ids = {load_run(meta.parent).meta["run_id"] for meta in tmp_path.glob("r*/*/meta.json")}
    assert len(run_ids) == 3
    ours = {f"lab-{run_id}-{end}" for run_id in run_ids for end in "cs"}
    assert ours & lab_namespaces() == set()


def test_sweep_writes_one_row_per_cell_protocol_and_repetition(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        'name = "sw"\ndescription = "tiny sweep"\n[workload]\ncount = 200\nrate = 4000\n'
        "[impairment]\ndelay_ms = 2\n[sweep]\nimpairment.loss = [0, 20]\nrepeat = 2\n"
        + QUICK_DRAIN,
    )
    done = _run_json(path, tmp_path / "results", timeout_s=300)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)  # --json: nothing but the document on stdout
    folder = Path(document["results"])
    assert document["report"] == str(folder / "sweep.html")
    table = pd.DataFrame(document["table"])
    assert len(table) == 2 * 2 * 2  # values x repetitions x protocols
    assert set(table["value"]) == {0, 20}
    udp = table[table["protocol"] == "udp"].groupby("value")["loss_pct"].mean()
    assert udp[0] == 0 and 10 < udp[20] < 30
    tcp = table[table["protocol"] == "tcp"]
    assert (tcp["loss_pct"] == 0).all()
    assert (tcp.loc[tcp["value"] == 20, "tcp_retransmissions"] > 0).all()
    assert (table["base_rtt_ms"] == 4.0).all()
    sweep = load_run(folder)
    assert sweep.meta["complete"] is True and sweep.meta["kind"] == "sweep"
    for run in table["run"].unique():
        cell_meta = load_run(folder / run).meta
        assert cell_meta["complete"] is True
        # each cell keeps the scenario it ran: the swept value and its own seed
        cell = load_scenario(folder / run / "scenario.toml")
        assert cell.sweep is None and cell.impairment.loss == cell_meta["sweep_cell"]["value"]
        assert cell.seed == 1 + cell_meta["sweep_cell"]["repetition"] == cell_meta["seed"]


def test_testbed_up_exec_down(tmp_path: Path) -> None:
    """The interactive testbed: names resolve, traffic flows through the engine, down cleans up."""
    up = subprocess.run(
        [*LAB, "testbed", "up", str(SCENARIOS / "quickstart.toml")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    try:
        ping = subprocess.run(
            [
                *LAB,
                "exec",
                "--id",
                run_id,
                "client",
                "--",
                "ping",
                "-c",
                "5",
                "-i",
                "0.05",
                "server",
            ],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
        assert ping.returncode == 0, ping.stdout + ping.stderr
        assert "5 received" in ping.stdout and "198.18.0.2" in ping.stdout
    finally:
        down = subprocess.run(
            [*LAB, "testbed", "down", run_id],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            check=False,
        )
    assert down.returncode == 0, down.stderr
    assert "client_to_server" in down.stdout, "down reports what the engine did"
    assert {f"lab-{run_id}-c", f"lab-{run_id}-s"} & lab_namespaces() == set()
    assert not Path(f"/etc/netns/lab-{run_id}-c").exists()


def test_run_json_prints_only_machine_readable_output(tmp_path: Path) -> None:
    scenario = write_scenario(
        tmp_path, 'name = "j"\ndescription = "json"\n[workload]\ncount = 100\nrate = 2000\n'
    )
    done = subprocess.run(
        [*LAB, "run", str(scenario), "--json", "--results", str(tmp_path / "r")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert Path(document["report"]).is_file()
    assert {row["protocol"]: row["delivered"] for row in document["summary"]} == {
        "tcp": 100,
        "udp": 100,
    }


@pytest.mark.parametrize("algorithm", ["cubic", "reno"])
def test_programs_under_exec_use_the_scenarios_congestion_control(
    tmp_path: Path, algorithm: str
) -> None:
    """iperf3 with default options through `lab testbed up`: ss -ti and iperf3 itself
    report the scenario's algorithm, whatever the host's default is."""
    scenario = write_scenario(
        tmp_path,
        f'name = "cc"\ncongestion_control = "{algorithm}"\n[impairment]\ndelay_ms = 2\n',
    )
    with iperf3_testbed(scenario, server_timeout_s=20) as testbed:
        assert f"TCP over the link uses {algorithm}" in testbed.up_output
        client = subprocess.Popen(
            [*testbed.exec_prefix, "client", "--", "timeout", "15", "iperf3", "-c", "server",
             "-t", "1", "-J"],  # what is checked is named, not measured: 1 s is plenty
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        ss = ""
        deadline = time.monotonic() + 10
        client_netns = f"lab-{testbed.run_id}-c"
        while " 198.18.0.2:5201" not in ss and time.monotonic() < deadline:
            time.sleep(0.2)
            ss = subprocess.run(
                ["ip", "netns", "exec", client_netns, "ss", "-tin", "dst", "198.18.0.2"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        report = json.loads(client.communicate(timeout=20)[0])
    assert f" {algorithm} " in ss, ss
    assert report["end"]["sender_tcp_congestion"] == algorithm, report["end"]
    assert report["end"]["receiver_tcp_congestion"] == algorithm, report["end"]


def test_a_failed_exchange_keeps_the_other_protocols_results(tmp_path: Path) -> None:
    """TCP cannot connect through a link that drops everything; UDP's results still count."""
    path = write_scenario(
        tmp_path,
        'name = "dead"\nprotocols = ["tcp", "udp"]\n[workload]\ncount = 20\nrate = 100\n'
        "[timeouts]\nconnect_s = 1.0\ndrain_s = 1.0\n[impairment]\nloss = 100\n",
    )
    done = _run_json(path, tmp_path / "results", timeout_s=120)
    assert done.returncode == 1, done.stderr
    document = json.loads(done.stdout)
    assert document["complete"] is False and list(document["failed"]) == ["tcp"]
    udp = [row for row in document["summary"] if row["protocol"] == "udp"]
    assert len(udp) == 1 and udp[0]["sent"] == 20 and udp[0]["lost"] == 20
    folder = Path(document["results"])
    meta = load_run(folder).meta
    assert meta["complete"] is False and meta["incomplete_reason"].startswith("tcp failed: ")
    assert meta["protocol_status"]["udp"] == "complete"
    assert (folder / "summary.csv").exists() and (folder / "report.html").exists()


def test_cleanup_keeps_live_testbeds_unless_named_and_removes_strays(tmp_path: Path) -> None:
    """`lab cleanup` removes only what dead processes left; a live testbed goes by id."""
    from lab.testbed import STATE_DIR

    up = subprocess.run(
        [*LAB, "testbed", "up", str(SCENARIOS / "quickstart.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    stray = STATE_DIR / "0badcafe-999999999-ground-truth.npz"  # a reader that cannot exist
    stray.write_bytes(b"")
    try:
        first = subprocess.run([*LAB, "cleanup"], capture_output=True, text=True, check=False)
        assert first.returncode == 0, first.stderr
        assert f"lab-{run_id}-c" in lab_namespaces(), "a live testbed stays"
        assert not stray.exists() and str(stray) in first.stdout
    finally:
        named = subprocess.run(
            [*LAB, "cleanup", run_id], capture_output=True, text=True, check=False
        )
    assert named.returncode == 0, named.stderr
    assert {f"lab-{run_id}-c", f"lab-{run_id}-s"} & lab_namespaces() == set()
    assert not list(STATE_DIR.glob(f"{run_id}*")), "its state and record are gone"
