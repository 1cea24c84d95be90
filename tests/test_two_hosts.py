"""`lab run` with `[hosts]`: the exchanges between two real SSH hosts, compared with the
namespace run of the same scenario.

The two "hosts" are sshd in a lab testbed's two namespaces (tests/sshd_hosts.py), joined
through the lab's impairment engine: the path between them loses and delays packets as
the same scenario's own testbed does, with the same seed, so both runs must lose the
same UDP messages. The controller reaches them over a management link, as a lab PC
would over its LAN.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from lab.errors import ScenarioError
from lab.scenario import load_scenario
from tests.conftest import PROJECT_ROOT, QUICK_DRAIN, lab_run_json, run_tables, write_scenario
from tests.sshd_hosts import SshdHosts, agent_pids, require_sshd, sshd_hosts

LAB = [sys.executable, "-m", "lab"]
SEED = 41
WORKLOAD = (
    'protocols = ["udp", "tcp"]\n[workload]\ncount = 400\nrate = 400\nsize = 200\n' + QUICK_DRAIN
)
IMPAIRMENT = "[impairment]\ndelay_ms = 4\nloss = 3\n"


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdHosts]:
    """sshd in both namespaces of a testbed impaired as the scenario says (same seed)."""
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import open_testbed

    require_sshd()
    folder = tmp_path_factory.mktemp("two-hosts")
    spec = ImpairmentSpec(delay_ms=4, loss=3)
    with (
        open_testbed(spec, SEED, "cubic", folder / "gt.npz") as testbed,
        sshd_hosts(testbed, folder / "ssh") as made,
    ):
        yield made


def _hosts_table(hosts: SshdHosts) -> str:
    options = hosts.options
    assert options.known_hosts is not None and options.config is not None
    return (
        f'[hosts]\nclient = "{hosts.client.spec}"\nserver = "{hosts.server.spec}"\n'
        f'client_address = "{hosts.client.link_address}"\n'
        f'server_address = "{hosts.server.link_address}"\n'
        f'python = "{sys.executable}"\nknown_hosts = "{options.known_hosts}"\n'
        f'identity = "{hosts.client_key}"\nssh_config = "{options.config}"\n'
    )


@pytest.mark.requires_root
def test_a_two_host_run_gives_the_namespace_runs_tables(
    tmp_path: Path, two_hosts: SshdHosts
) -> None:
    from lab import load_run

    name = f'name = "pair"\nseed = {SEED}\n'
    for sub in ("hosts", "local"):
        (tmp_path / sub).mkdir()
    remote = write_scenario(tmp_path / "hosts", name + WORKLOAD + _hosts_table(two_hosts))
    local = write_scenario(tmp_path / "local", name + WORKLOAD + IMPAIRMENT)
    far = load_run(str(lab_run_json(remote, tmp_path / "r1")["results"]))
    near = run_tables(local, tmp_path / "r2")  # only its tables are read: no CLI, no page

    # the same engine, seed and packets: the same UDP messages lost, TCP loses none
    lost = {
        run: set(r.messages.query("protocol == 'udp' and t_recv_ns.isna()")["seq"])
        for run, r in (("far", far), ("near", near))
    }
    assert lost["far"] == lost["near"] and 0 < len(lost["far"]) < 40, lost
    for run in (far, near):
        summary = run.summary.set_index("protocol")
        assert int(summary.loc["udp", "sent"]) == 400 and int(summary.loc["tcp", "lost"]) == 0
    assert all(far.has_table(t) for t in ("exchanges", "tcp_stats", "hol", "timeseries"))

    # the clocks: measured before and after, true offset 0 inside each bound
    clock = far.meta["clock"]
    assert isinstance(clock, dict)
    for when in ("before", "after"):
        assert abs(clock[f"offset_{when}_ns"]) <= clock[f"bound_{when}_ns"] < 2_000_000
    summary = far.summary.set_index("protocol")
    assert summary["owd_available"].all()  # a bound well under the 4 ms delay
    owd_far = float(summary.loc["udp", "owd_p50_ms"])
    owd_near = float(near.summary.set_index("protocol").loc["udp", "owd_p50_ms"])
    bound_ms = float(summary.loc["udp", "owd_bound_ms"])
    # the same path, so the same delay: within the bound plus the hosts' own jitter
    assert abs(owd_far - owd_near) <= bound_ms + 0.5, (owd_far, owd_near, bound_ms)
    assert owd_far >= 4.0  # never below the configured delay: the correction did not overshoot

    # both hosts captured; the wire analysis counts what the server's kernel counted
    captures = far.table("captures")
    assert len(captures) == 4 and (captures["packets"] > 0).all()
    assert (captures["kernel_drops"] == 0).all()
    retransmissions = int(far.table("tcp_stats")["retransmissions"].iloc[0])
    exchanges = far.table("exchanges").set_index("protocol")
    assert retransmissions == int(exchanges.loc["tcp", "client.Tcp.RetransSegs"]) > 0
    assert far.meta["impairment_backend"] == "none"
    client = far.meta["client"]
    assert isinstance(client, dict) and client["address"] == "198.18.0.1"
    page = far.report_path
    html = page.read_text() if page is not None else ""
    assert "clocks (server minus client)" in html and "path RTT (TCP handshake)" in html


@pytest.mark.requires_root
def test_ctrl_c_during_a_two_host_run_leaves_nothing_on_either_host(
    tmp_path: Path, two_hosts: SshdHosts
) -> None:
    before = {host.role: set(agent_pids(host)) for host in (two_hosts.client, two_hosts.server)}
    slow = 'protocols = ["udp"]\n[workload]\ncount = 4000\nrate = 400\nsize = 200\n'
    scenario = write_scenario(tmp_path, 'name = "cut"\n' + slow + _hosts_table(two_hosts))
    run = subprocess.Popen(
        [*LAB, "run", str(scenario), "--results", str(tmp_path / "results")],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until both ends run there
            running = [
                set(agent_pids(h)) - before[h.role] for h in (two_hosts.client, two_hosts.server)
            ]
            if all(len(pids) >= 2 for pids in running):  # each: a session and its agent
                break
            time.sleep(0.2)
        else:
            pytest.fail("the endpoints never started on both hosts")
        time.sleep(1.0)
        os.kill(run.pid, signal.SIGINT)
        _, stderr = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    assert run.returncode == 130, stderr
    assert "interrupted" in stderr.lower(), stderr
    for host in (two_hosts.client, two_hosts.server):
        deadline = time.monotonic() + 10
        left = set(agent_pids(host)) - before[host.role]
        while left and time.monotonic() < deadline:
            time.sleep(0.2)
            left = set(agent_pids(host)) - before[host.role]
        assert not left, (host.role, left)
    folder = next((tmp_path / "results").iterdir())
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["complete"] is False


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('client = "a b"\nserver = "s"\nclient_address = "198.18.0.1"\n'
         'server_address = "198.18.0.2"\n', "hosts.client:"),
        ('client = "c"\nserver = "s"\nclient_address = "host-a"\n'
         'server_address = "198.18.0.2"\n', "hosts.client_address: 'host-a' is not an IPv4"),
        ('client = "c"\nserver = "s"\nclient_address = "198.18.0.1"\n'
         'server_address = "198.18.0.1"\n', "hosts.server_address: the two hosts need"),
    ],
)  # fmt: skip
def test_bad_hosts_name_the_file_and_field(tmp_path: Path, table: str, message: str) -> None:
    path = write_scenario(tmp_path, 'name = "h"\n[hosts]\n' + table)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert str(error.value).startswith(f"{path}: {message}"), str(error.value)


def test_hosts_measure_the_real_path_without_impairment(tmp_path: Path) -> None:
    table = (
        '[hosts]\nclient = "c"\nserver = "s"\nclient_address = "198.18.0.1"\n'
        'server_address = "198.18.0.2"\n'
    )
    path = write_scenario(tmp_path, 'name = "h"\n' + table + IMPAIRMENT)
    with pytest.raises(ScenarioError) as error:
        load_scenario(path)
    assert "impairment: with [hosts] the lab measures the real path" in str(error.value)
    plain = load_scenario(write_scenario(tmp_path, 'name = "h"\n' + table, "ok.toml"))
    assert plain.hosts is not None and plain.hosts.python == "python3"


@pytest.fixture(scope="module")
def second_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshdHosts]:
    """A second pair of "hosts" on a clean testbed of its own."""
    from lab.impairment.spec import ImpairmentSpec
    from lab.testbed import open_testbed

    require_sshd()
    folder = tmp_path_factory.mktemp("second-pair")
    with (
        open_testbed(ImpairmentSpec(), SEED, "cubic", folder / "gt.npz") as testbed,
        sshd_hosts(testbed, folder / "ssh") as made,
    ):
        yield made


@pytest.mark.requires_root
def test_a_sweep_spreads_its_cells_over_host_pairs(
    tmp_path: Path, two_hosts: SshdHosts, second_pair: SshdHosts
) -> None:
    """Three cells over two pairs: each pair runs one cell at a time, both pairs at once,
    and the cells come back in order in one sweep folder."""
    pairs = "".join(
        "[[pair]]\n" + _hosts_table(pair).removeprefix("[hosts]\n")
        for pair in (two_hosts, second_pair)
    )
    hosts_file = write_scenario(tmp_path, pairs, "pairs.toml")
    scenario = write_scenario(
        tmp_path,
        'name = "spread"\nprotocols = ["udp"]\n[workload]\ncount = 600\nrate = 400\n'
        "[sweep]\nworkload.size = [100, 200, 300]\n" + QUICK_DRAIN,
    )
    done = subprocess.run(
        [*LAB, "run", str(scenario), "--results", str(tmp_path / "results"), "--json",
         "--hosts-file", str(hosts_file)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    document = json.loads(done.stdout)
    table = document["table"]
    assert [row["value"] for row in table] == [100, 200, 300]
    runs = [Path(document["results"]) / row["run"] for row in table]
    metas = [json.loads((run / "meta.json").read_text()) for run in runs]
    used = [meta["client"]["host"] for meta in metas]
    assert set(used) == {two_hosts.client.spec, second_pair.client.spec}, used
    assert all(meta["complete"] and meta["impairment_backend"] == "none" for meta in metas)
    spans = [
        (pd.Timestamp(meta["started"]), pd.Timestamp(meta["ended"]), host)
        for meta, host in zip(metas, used, strict=True)
    ]
    overlapping = any(a[2] != b[2] and a[0] < b[1] and b[0] < a[1] for a in spans for b in spans)
    assert overlapping, spans  # the two pairs worked at the same time
    for host in set(used):  # one cell at a time on a pair
        own = sorted(s for s in spans if s[2] == host)
        assert all(x[1] <= y[0] for x, y in itertools.pairwise(own)), own
    # each cell met its own pair's path: the first loses 3 %, the second nothing
    for row, host in zip(table, used, strict=True):
        lossy = host == two_hosts.client.spec
        assert (row["loss_pct"] > 0) is lossy, (row["loss_pct"], host)


def test_a_hosts_file_is_checked_pair_by_pair(tmp_path: Path) -> None:
    from lab.scenario import load_hosts_file, on_hosts

    good = 'client = "c"\nserver = "s"\nclient_address = "198.18.0.1"\n'
    bad = good + 'server_address = "not-an-address"\n'
    path = write_scenario(
        tmp_path, f'[[pair]]\n{good}server_address = "198.18.0.2"\n[[pair]]\n{bad}', "h.toml"
    )
    with pytest.raises(ScenarioError) as error:
        load_hosts_file(path)
    assert str(error.value).startswith(f"{path}: pair.1.server_address: "), str(error.value)
    ok = write_scenario(
        tmp_path,
        f'[[pair]]\n{good}server_address = "198.18.0.2"\nknown_hosts = "keys/known"\n',
        "ok.toml",
    )
    (pair,) = load_hosts_file(ok)
    assert pair.known_hosts == str(tmp_path.resolve() / "keys" / "known")  # beside the file
    sweep = write_scenario(
        tmp_path, 'name = "s"\n[sweep]\nimpairment.loss = [0, 1]\n', "sweep.toml"
    )
    from lab.scenario import sweep_cells

    lossy = sweep_cells(load_scenario(sweep), sweep)[1].scenario  # loss = 1
    with pytest.raises(ScenarioError) as error:  # a sweep over impairment: not on real hosts
        on_hosts(lossy, pair, sweep)
    assert str(error.value).startswith(f"{sweep}: impairment: with [hosts]"), str(error.value)


@pytest.mark.requires_root
def test_netem_on_hosts_without_sch_netem_is_refused_and_leaves_nothing(
    tmp_path: Path, two_hosts: SshdHosts
) -> None:
    """backend = "netem" puts tc netem on each host's egress; this kernel has no
    sch_netem, so the run stops in one line, before any exchange, with nothing left."""
    from lab.impairment.netem import netem_available

    if netem_available():
        pytest.skip("this kernel has sch_netem: the refusal cannot be shown here")
    before = {host.role: set(agent_pids(host)) for host in (two_hosts.client, two_hosts.server)}
    scenario = write_scenario(
        tmp_path,
        'name = "shaped"\nprotocols = ["udp"]\n[workload]\ncount = 50\n'
        '[impairment]\nbackend = "netem"\nloss = 1\n' + _hosts_table(two_hosts),
    )
    done = subprocess.run(
        [*LAB, "run", str(scenario), "--results", str(tmp_path / "results")],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert "tc netem on lab0: this kernel has no sch_netem" in lines[0], lines
    for host in (two_hosts.client, two_hosts.server):
        deadline = time.monotonic() + 10
        while set(agent_pids(host)) - before[host.role] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not set(agent_pids(host)) - before[host.role], host.role
        qdisc = subprocess.run(
            ["ip", "netns", "exec", host.netns, "tc", "qdisc", "show", "dev", "lab0"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert "netem" not in qdisc.stdout
    folder = next((tmp_path / "results").iterdir())
    assert json.loads((folder / "meta.json").read_text())["complete"] is False
