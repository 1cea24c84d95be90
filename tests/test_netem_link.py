"""The netem backend's testbed: a veth pair instead of the TUN engine (root only).

This machine has no sch_netem, so the tc step is exercised with a clean impairment
(netem_commands issues nothing) and the refusal is tested for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import lab.testbed
import lab.testbed._build
from lab.errors import TestbedError
from lab.impairment.netem import netem_available
from lab.results import load_run
from lab.runner import run_scenario
from lab.scenario import load_scenario
from lab.testbed import _netns
from tests.conftest import write_scenario

pytestmark = pytest.mark.requires_root


def test_veth_link_carries_both_protocols(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leftover_namespaces: None
) -> None:
    monkeypatch.setattr(lab.testbed._build, "netem_available", lambda netns=None: True)
    path = write_scenario(
        tmp_path,
        'name = "v"\ndescription = "veth"\n[workload]\ncount = 300\nrate = 3000\n'
        '[impairment]\nbackend = "netem"\n',
    )
    outcome = run_scenario(load_scenario(path), path, tmp_path / "results", render=False)
    assert (outcome.summary["delivered"] == 300).all()
    run = load_run(outcome.path)
    captures = run.table("captures")
    assert (captures["linktype"] == 1).all(), "veth carries Ethernet frames"
    assert "impairment" not in run.table_names, "netem keeps no per-packet record"


@pytest.mark.skipif(netem_available(), reason="this kernel has sch_netem")
def test_netem_backend_without_sch_netem_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    path = write_scenario(
        tmp_path, 'name = "n"\ndescription = "x"\n[impairment]\nbackend = "netem"\nloss = 1\n'
    )
    with pytest.raises(TestbedError, match="this kernel has no sch_netem"):
        run_scenario(load_scenario(path), path, tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_plain_veth_testbed_is_removed_even_when_the_body_fails(
    no_leftover_namespaces: None,
) -> None:
    with (
        pytest.raises(RuntimeError, match="body failed"),
        lab.testbed.open_veth_testbed() as testbed,
    ):
        names = {testbed.client.netns, testbed.server.netns}
        assert names <= set(_netns.list_all())
        assert testbed.backend == "veth"
        with _netns.netlink(testbed.server.netns) as ipr:
            assert ipr.link_lookup(ifname=lab.testbed.LINK_INTERFACE)
        raise RuntimeError("body failed")
    assert not names & set(_netns.list_all())
