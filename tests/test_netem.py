"""The netem backend: exact tc argv for parameter sets, and the sch_netem probe."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator

import pytest

from lab.impairment import netem
from lab.impairment.netem import (
    netem_args,
    netem_available,
    netem_caveats,
    netem_commands,
    netem_delete_command,
)
from lab.impairment.spec import LinkImpairment


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (LinkImpairment(), ["netem", "limit", "1000"]),
        (LinkImpairment(delay_ms=20), ["netem", "limit", "1000", "delay", "20ms"]),
        (
            LinkImpairment(delay_ms=20, jitter_ms=2, delay_correlation=25),
            ["netem", "limit", "1000", "delay", "20ms", "2ms", "25%", "distribution", "normal"],
        ),
        (
            LinkImpairment(delay_ms=0.5, jitter_ms=1.25, distribution="uniform"),
            ["netem", "limit", "1000", "delay", "500us", "1250us"],
        ),
        (
            LinkImpairment(delay_ms=100, jitter_ms=10, distribution="paretonormal"),
            ["netem", "limit", "1000", "delay", "100ms", "10ms", "distribution", "paretonormal"],
        ),
        (
            LinkImpairment(delay_ms=5, delay_correlation=50),  # no jitter: nothing to correlate
            ["netem", "limit", "1000", "delay", "5ms"],
        ),
        (LinkImpairment(loss=0.5), ["netem", "limit", "1000", "loss", "random", "0.5%"]),
        (
            LinkImpairment(loss=5, loss_correlation=25),
            ["netem", "limit", "1000", "loss", "random", "5%", "25%"],
        ),
        (
            LinkImpairment(gemodel={"p": 1, "r": 20, "one_minus_h": 80, "one_minus_k": 0.5}),
            ["netem", "limit", "1000", "loss", "gemodel", "1%", "20%", "80%", "0.5%"],
        ),
        (  # r defaults to 100 - p; written out so tc's own defaults do not matter
            LinkImpairment(gemodel={"p": 10}),
            ["netem", "limit", "1000", "loss", "gemodel", "10%", "90%", "100%", "0%"],
        ),
        (
            LinkImpairment(duplicate=1, duplicate_correlation=10, corrupt=0.1),
            ["netem", "limit", "1000", "duplicate", "1%", "10%", "corrupt", "0.1%"],
        ),
        (
            LinkImpairment(corrupt=2, corrupt_correlation=5),
            ["netem", "limit", "1000", "corrupt", "2%", "5%"],
        ),
        (
            LinkImpairment(delay_ms=10, reorder=25, reorder_correlation=50),
            ["netem", "limit", "1000", "delay", "10ms", "reorder", "25%", "50%"],
        ),
        (
            LinkImpairment(delay_ms=10, reorder=100, reorder_gap=5),
            ["netem", "limit", "1000", "delay", "10ms", "reorder", "100%", "gap", "5"],
        ),
        (
            LinkImpairment(rate_bps=1_000_000, queue_limit=50),
            ["netem", "limit", "50", "rate", "1000000bit"],
        ),
    ],
)
def test_netem_args(params: LinkImpairment, expected: list[str]) -> None:
    assert netem_args(params) == expected


def test_netem_args_everything_in_tc_order() -> None:
    params = LinkImpairment(
        delay_ms=40,
        jitter_ms=4,
        delay_correlation=10,
        distribution="pareto",
        loss=2,
        loss_correlation=30,
        duplicate=1,
        corrupt=0.5,
        corrupt_correlation=1,
        reorder=10,
        reorder_gap=3,
        rate_bps=10_000_000,
        queue_limit=2000,
    )
    assert netem_args(params) == [
        "netem",
        "limit", "2000",
        "delay", "40ms", "4ms", "10%", "distribution", "pareto",
        "loss", "random", "2%", "30%",
        "duplicate", "1%",
        "corrupt", "0.5%", "1%",
        "reorder", "10%", "gap", "3",
        "rate", "10000000bit",
    ]  # fmt: skip


def test_netem_commands_replace_the_root_qdisc() -> None:
    params = LinkImpairment(delay_ms=20, loss=5)
    tc_prefix = ["tc", "qdisc", "replace", "dev", "veth-c", "root"]
    assert netem_commands("veth-c", params) == [
        [*tc_prefix, "netem", "limit", "1000", "delay", "20ms", "loss", "random", "5%"]
    ]
    assert netem_delete_command("veth-c") == ["tc", "qdisc", "del", "dev", "veth-c", "root"]


def test_clean_direction_needs_no_command() -> None:
    assert netem_commands("veth-c", LinkImpairment()) == []
    assert netem_commands("veth-c", LinkImpairment(keep_order=True, queue_limit=10)) == []


def test_caveats_name_what_netem_does_differently() -> None:
    assert netem_caveats(LinkImpairment(delay_ms=20, loss=5)) == []
    jittered = netem_caveats(LinkImpairment(delay_ms=20, jitter_ms=5, keep_order=True))
    assert len(jittered) == 1 and jittered[0].startswith("keep_order")
    # With a rate netem keeps order by itself.
    rated = netem_caveats(
        LinkImpairment(delay_ms=20, jitter_ms=5, keep_order=True, rate_bps=1_000_000)
    )
    assert [c.split(":")[0] for c in rated] == ["rate_bps"]
    busy = netem_caveats(
        LinkImpairment(delay_ms=20, jitter_ms=5, delay_correlation=20, loss=1, duplicate=1)
    )
    assert [c.split(":")[0] for c in busy] == ["delay_correlation", "duplicate"]


# --- the probe, with a fake `ip`/`tc` ------------------------------------------------


class FakeTools:
    """Records argv lists and answers like ip/tc on a kernel with or without netem."""

    def __init__(self, *, netem: bool, netns_add_ok: bool = True, links_ok: bool = True) -> None:
        self.netem = netem
        self.netns_add_ok = netns_add_ok
        self.links_ok = links_ok  # can dummy/veth interfaces be created?
        self.calls: list[list[str]] = []

    def __call__(self, argv: list[str]) -> subprocess.CompletedProcess[str]:
        self.calls.append(argv)
        ok, err = True, ""
        if argv[:3] == ["ip", "netns", "add"]:
            ok = self.netns_add_ok
            err = "" if ok else "mount --make-shared /run/netns failed: Operation not permitted"
        elif "dummy" in argv or "veth" in argv:
            ok = self.links_ok
        elif "netem" in argv:
            ok, err = self.netem, "" if self.netem else "Error: Specified qdisc kind is unknown."
        return subprocess.CompletedProcess(argv, 0 if ok else 2, "", err)


@pytest.fixture
def fresh_cache() -> Iterator[None]:
    netem._probe_cache.clear()
    yield
    netem._probe_cache.clear()


@pytest.mark.usefixtures("fresh_cache")
@pytest.mark.parametrize("has_netem", [True, False])
def test_probe_uses_a_throwaway_namespace_and_removes_it(
    monkeypatch: pytest.MonkeyPatch, has_netem: bool
) -> None:
    tools = FakeTools(netem=has_netem)
    monkeypatch.setattr(netem, "_run", tools)
    assert netem_available() is has_netem
    name = f"lab-probe-{os.getpid()}"
    assert tools.calls[0] == ["ip", "netns", "add", name]
    assert tools.calls[-1] == ["ip", "netns", "del", name]
    tc = [c for c in tools.calls if "tc" in c]
    assert len(tc) == 1 and tc[0][:4] == ["ip", "netns", "exec", name]
    dev = f"lprobe{os.getpid() % 100_000}"
    assert tc[0][4:] == ["tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"]
    # Cached: a second call runs nothing.
    count = len(tools.calls)
    assert netem_available() is has_netem
    assert len(tools.calls) == count


@pytest.mark.usefixtures("fresh_cache")
def test_probe_falls_back_to_the_throwaway_namespaces_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tools = FakeTools(netem=True, links_ok=False)
    monkeypatch.setattr(netem, "_run", tools)
    assert netem_available() is True
    assert any(c[4:9] == ["tc", "qdisc", "add", "dev", "lo"] for c in tools.calls)
    assert not any(c[-3:-1] == ["link", "del"] for c in tools.calls)  # nothing was created
    assert tools.calls[-1][:3] == ["ip", "netns", "del"]


@pytest.mark.usefixtures("fresh_cache")
def test_probe_in_a_given_namespace_deletes_its_interface(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tools = FakeTools(netem=False)
    monkeypatch.setattr(netem, "_run", tools)
    assert netem_available("lab-c-1234") is False
    assert not any(c[:3] == ["ip", "netns", "add"] for c in tools.calls)
    dev = f"lprobe{os.getpid() % 100_000}"
    assert tools.calls[-1] == ["ip", "netns", "exec", "lab-c-1234", "ip", "link", "del", dev]


@pytest.mark.usefixtures("fresh_cache")
def test_inconclusive_probe_answers_false_and_is_not_cached(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(netem, "_run", FakeTools(netem=True, netns_add_ok=False))
    assert netem_available() is False
    monkeypatch.setattr(netem, "_run", FakeTools(netem=True))
    assert netem_available() is True


@pytest.mark.usefixtures("fresh_cache")
def test_probe_survives_a_hanging_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    def hang(argv: list[str]) -> subprocess.CompletedProcess[str]:
        raise subprocess.TimeoutExpired(argv, netem.PROBE_TIMEOUT_S)

    monkeypatch.setattr(netem, "_run", hang)
    assert netem_available() is False
    assert netem._probe_cache == {}


# --- the real probe ----------------------------------------------------------------


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
@pytest.mark.usefixtures("fresh_cache")
def test_real_probe_returns_a_bool_and_leaves_no_namespace() -> None:
    # Other tests may create lab namespaces concurrently: look for the probe's own.
    name = f"lab-probe-{os.getpid()}"
    assert name not in _namespaces()
    result = netem_available()
    assert isinstance(result, bool)
    assert name not in _namespaces()
    assert netem._probe_cache == {"netem": result}  # a root probe is conclusive


@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
@pytest.mark.usefixtures("fresh_cache")
def test_real_probe_in_an_existing_namespace_leaves_its_links_alone() -> None:
    name = f"lab-netemtest-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        links = ["ip", "netns", "exec", name, "ip", "-o", "link", "show"]
        before = subprocess.run(links, capture_output=True, text=True, check=True).stdout
        assert isinstance(netem_available(name), bool)
        after = subprocess.run(links, capture_output=True, text=True, check=True).stdout
        assert after == before
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert name not in _namespaces()


TC_CASES = [
    LinkImpairment(delay_ms=20, jitter_ms=2, delay_correlation=25, distribution="normal"),
    LinkImpairment(delay_ms=0.5, jitter_ms=1.25, distribution="uniform"),
    LinkImpairment(loss=5, loss_correlation=25, duplicate=1, duplicate_correlation=10),
    LinkImpairment(gemodel={"p": 1, "r": 20, "one_minus_h": 80, "one_minus_k": 0.5}),
    LinkImpairment(corrupt=0.1, corrupt_correlation=3, rate_bps=1_000_000, queue_limit=50),
    LinkImpairment(delay_ms=10, reorder=25, reorder_correlation=50, reorder_gap=5),
]


@pytest.mark.requires_root
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)")
def test_real_tc_parses_every_argument_list() -> None:
    # tc parses netem options itself before asking the kernel, so even without sch_netem
    # a parse error ("What is ...", "Illegal ...") is told apart from "kind is unknown".
    name = f"lab-netemargs-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for params in TC_CASES:
            argv = ["ip", "netns", "exec", name, "tc", "qdisc", "replace", "dev", "lo", "root"]
            result = subprocess.run(
                [*argv, *netem_args(params)], capture_output=True, text=True, check=False
            )
            assert result.returncode == 0 or "kind is unknown" in result.stderr, (
                netem_args(params),
                result.stderr,
            )
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)
