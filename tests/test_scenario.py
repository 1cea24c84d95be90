"""Scenario schema: what is accepted, what is refused, and the exact one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.errors import ScenarioError
from lab.impairment.spec import Direction
from lab.scenario import Pattern, Protocol, load_scenario, parse_scenario
from tests.conftest import SCENARIOS, write_scenario


def test_minimal_scenario_gets_documented_defaults() -> None:
    scenario = parse_scenario({"name": "x"})
    assert scenario.protocols == [Protocol.TCP, Protocol.UDP]
    assert scenario.workload.pattern is Pattern.STREAM
    assert scenario.workload.messages_per_second == 1000.0
    assert scenario.congestion_control == "cubic"
    assert scenario.impairment.is_clean
    assert scenario.ports.tcp >= 49152 and scenario.ports.udp >= 49152


def test_interval_sets_the_rate() -> None:
    scenario = parse_scenario({"name": "x", "workload": {"interval_ms": 4, "count": 100}})
    assert scenario.workload.messages_per_second == 250.0
    assert scenario.workload.send_duration_s == pytest.approx(0.4)


def test_models_are_frozen() -> None:
    scenario = parse_scenario({"name": "x"})
    with pytest.raises(ValueError):
        scenario.seed = 5  # type: ignore[misc]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "x", "workload": {"size": 5}},
            "s.toml: workload.size: must be between 16 and 65000 (got 5)",
        ),
        (
            {"name": "x", "workload": {"size": 70000}},
            "s.toml: workload.size: must be between 16 and 65000 (got 70000)",
        ),
        ({"name": "x", "workload": {"szie": 5}}, "s.toml: workload.szie: unknown key"),
        ({"name": "x", "colour": "red"}, "s.toml: colour: unknown key"),
        (
            {"name": "x", "ports": {"tcp": 80}},
            "s.toml: ports.tcp: port 80 is well-known (< 1024); set ports.allow_privileged = true",
        ),
        (
            {"name": "x", "ports": {"udp": 70000}},
            "s.toml: ports.udp: must be between 0 and 65535 (got 70000)",
        ),
        ({"name": "x", "ports": {"udp": 0}}, "s.toml: ports.udp: port 0 means 'any port'"),
        (
            {"name": "x", "protocols": ["tcp", "sctp"]},
            "s.toml: protocols.1: Input should be 'tcp', 'udp' or 'raw'",
        ),
        (
            {"name": "x", "protocols": ["tcp", "tcp"]},
            "s.toml: protocols: each protocol may appear once",
        ),
        ({"name": "x", "protocols": []}, "s.toml: protocols:"),
        (
            {"name": "x", "congestion_control": "vegas"},
            "s.toml: congestion_control: must be one of 'cubic', 'reno' or 'bbr'",
        ),
        (
            {"name": "x", "workload": {"rate": 10, "interval_ms": 5}},
            "s.toml: workload.rate: give either rate",
        ),
        (
            {"name": "x", "workload": {"rate": 0}},
            "s.toml: workload.rate: must be > 0 and <= 1000000 (got 0)",
        ),
        ({"workload": {}}, "s.toml: name: required"),
        ({"name": "bad name!"}, "s.toml: name: String should match pattern"),
        (
            {"name": "x", "impairment": {"loss": 101}},
            "s.toml: impairment.loss: must be between 0.0 and 100.0 (got 101)",
        ),
        (
            {"name": "x", "impairment": {"delay_ms": -1}},
            "s.toml: impairment.delay_ms: must be between 0.0 and 60000.0 (got -1)",
        ),
        (
            {"name": "x", "impairment": {"reorder": 5}},
            "s.toml: impairment.reorder: reordering needs delay_ms > 0",
        ),
        (
            {
                "name": "x",
                "impairment": {"delay_ms": 5, "client_to_server": {"reorder": 5, "delay_ms": 0}},
            },
            "s.toml: impairment.client_to_server.reorder: reordering needs delay_ms > 0",
        ),
        (
            {"name": "x", "impairment": {"jitter_ms": 5}},
            "s.toml: impairment.jitter_ms: jitter needs delay_ms > 0",
        ),
        (
            {"name": "x", "impairment": {"loss": 1, "gemodel": {"p": 1}}},
            "s.toml: impairment.gemodel: give either loss (random) or gemodel (bursty), not both",
        ),
        (
            {"name": "x", "impairment": {"gemodel": {"p": 200}}},
            "s.toml: impairment.gemodel.p: must be between 0.0 and 100.0 (got 200)",
        ),
        (
            {"name": "x", "impairment": {"backend": "tc"}},
            "s.toml: impairment.backend: must be one of 'auto', 'userspace' or 'netem'",
        ),
        (
            {"name": "x", "impairment": {"server_to_client": {"lost": 3}}},
            "s.toml: impairment.server_to_client.lost: unknown key",
        ),
        # wrong types are errors, not silently converted (a TOML integer is a number)
        ({"name": "x", "impairment": {"loss": True}}, "s.toml: impairment.loss: must be a number"),
        (
            {"name": "x", "impairment": {"delay_ms": "10"}},
            "s.toml: impairment.delay_ms: must be a number (got '10')",
        ),
        (
            {"name": "x", "ports": {"allow_privileged": "yes"}},
            "s.toml: ports.allow_privileged: must be true or false (got 'yes')",
        ),
        ({"name": "x", "ports": {"tcp": True}}, "s.toml: ports.tcp: must be a whole number"),
        (
            {"name": "x", "workload": {"count": 10.5}},
            "s.toml: workload.count: must be a whole number (got 10.5)",
        ),
        (
            {"name": "x", "timeouts": {"connect_s": 0}},
            "s.toml: timeouts.connect_s: must be > 0 and <= 60 (got 0)",
        ),
    ],
)
def test_rejections_name_file_and_field(data: dict[str, object], expected: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(data, "s.toml")
    message = str(caught.value)
    assert message.startswith(expected), message
    assert "\n" not in message


def test_privileged_port_allowed_when_asked() -> None:
    scenario = parse_scenario({"name": "x", "ports": {"tcp": 80, "allow_privileged": True}})
    assert scenario.ports.tcp == 80


def test_direction_override_resolves_field_by_field() -> None:
    scenario = parse_scenario(
        {
            "name": "x",
            "impairment": {"delay_ms": 10, "loss": 2, "server_to_client": {"loss": 0}},
        }
    )
    c2s = scenario.impairment.for_direction(Direction.CLIENT_TO_SERVER)
    s2c = scenario.impairment.for_direction(Direction.SERVER_TO_CLIENT)
    assert (c2s.delay_ms, c2s.loss) == (10, 2)
    assert (s2c.delay_ms, s2c.loss) == (10, 0)


def test_file_errors_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match=r"missing\.toml: no such file"):
        load_scenario(tmp_path / "missing.toml")
    broken = write_scenario(tmp_path, "name = \n", "broken.toml")
    with pytest.raises(ScenarioError, match=r"broken\.toml: not valid TOML"):
        load_scenario(broken)


@pytest.mark.parametrize("path", sorted(SCENARIOS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_scenario_validates(path: Path) -> None:
    scenario = load_scenario(path)
    assert scenario.name
    assert scenario.description, "shipped scenarios explain themselves"


def test_scenarios_folder_is_not_empty() -> None:
    assert (SCENARIOS / "quickstart.toml").exists()
    assert len(list(SCENARIOS.glob("*.toml"))) >= 3


def test_sweep_expands_one_parameter_times_repetitions() -> None:
    from lab.scenario import sweep_cells

    scenario = parse_scenario(
        {"name": "x", "seed": 10, "sweep": {"impairment": {"loss": [0, 1, 5]}, "repeat": 2}}
    )
    cells = sweep_cells(scenario)
    assert [(c.value, c.repetition) for c in cells] == [
        (0, 0),
        (0, 1),
        (1, 0),
        (1, 1),
        (5, 0),
        (5, 1),
    ]
    assert [c.scenario.impairment.loss for c in cells] == [0, 0, 1, 1, 5, 5]
    assert [c.scenario.seed for c in cells] == [10, 11, 10, 11, 10, 11]
    assert all(c.scenario.sweep is None for c in cells)
    assert cells[3].label == "loss=1-r1"


def test_a_swept_seed_is_the_cells_own() -> None:
    from lab.scenario import sweep_cells

    scenario = parse_scenario({"name": "x", "seed": 1, "sweep": {"seed": [10, 20], "repeat": 2}})
    assert [c.scenario.seed for c in sweep_cells(scenario)] == [10, 11, 20, 21]


def test_a_sweep_cell_is_a_scenario_file_of_its_own(tmp_path: Path) -> None:
    from lab.scenario import load_scenario, sweep_cells

    sweep = load_scenario(SCENARIOS / "loss-sweep.toml")
    cell = sweep_cells(sweep)[-1]
    path = tmp_path / "cell.toml"
    path.write_text(cell.to_toml("scenarios/loss-sweep.toml"))
    assert load_scenario(path) == cell.scenario  # lab run on it repeats the cell
    assert path.read_text().startswith(f"# Cell {cell.label} of the sweep in scenarios/")


@pytest.mark.parametrize(
    ("sweep", "expected"),
    [
        (
            {"impairment": {"loss": [0, 1, 200]}},
            "s.toml: sweep.impairment.loss[2]: must be between 0.0 and 100.0 (got 200)",
        ),
        ({"impairment": {"lss": [1]}}, "s.toml: sweep.impairment.lss[0]: unknown key"),
        (
            {"impairment": {"loss": [1]}, "workload": {"count": [5]}},
            "s.toml: sweep: give exactly one parameter to sweep",
        ),
        ({"repeat": 3}, "s.toml: sweep: give exactly one parameter to sweep"),
        ({"impairment": {"loss": 5}}, "s.toml: sweep.impairment.loss: must be a list of values"),
        (
            {"impairment": {"loss": [1]}, "repeat": 0},
            "s.toml: sweep.repeat: must be between 1 and 100 (got 0)",
        ),
        (
            {"protocols": [["tcp"], ["udp"]]},
            "s.toml: sweep.protocols[0]: must be a number, a string or a boolean",
        ),
        (
            {"impairment": {"loss": [1, 2, 1.0]}},
            "s.toml: sweep.impairment.loss[2]: 1.0 is already in the list (use sweep.repeat",
        ),
        (
            {"impairment": {"keep_order": [True, 1]}},
            "s.toml: sweep.impairment.keep_order[1]: must be true or false (got 1)",
        ),
    ],
)
def test_sweep_rejections(sweep: dict[str, object], expected: str) -> None:
    from lab.scenario import sweep_cells

    with pytest.raises(ScenarioError) as caught:
        scenario = parse_scenario({"name": "x", "sweep": sweep}, "s.toml")
        sweep_cells(scenario, "s.toml")
    assert str(caught.value).startswith(expected), str(caught.value)


# ------------------------------------------------------------------ bounded in time


def test_drain_is_derived_from_the_longest_hold_of_the_link() -> None:
    long = parse_scenario({"name": "x", "protocols": ["udp"], "impairment": {"delay_ms": 60_000}})
    assert long.timeouts.drain_s == pytest.approx(61.0)
    # normal jitter reaches 4 x jitter (netem's s16 tables): 20 + 4 x 5 ms, both ways for echo
    echo = parse_scenario(
        {
            "name": "x",
            "workload": {"pattern": "echo"},
            "impairment": {"delay_ms": 2000, "jitter_ms": 500},
        }
    )
    assert echo.link_hold_s() == pytest.approx(2 * (2.0 + 0.5 * 32767 / 8192))
    # a full queue of 1500-byte packets at the bottleneck: 50 x 12000 bit / 100 kbit/s = 6 s
    queued = parse_scenario({"name": "x", "impairment": {"rate_bps": 100_000, "queue_limit": 50}})
    assert queued.timeouts.drain_s == pytest.approx(7.0)
    assert parse_scenario({"name": "x"}).timeouts.drain_s == 3.0, "a short hold keeps 3 s"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            {"name": "x", "workload": {"count": 1_000_000, "rate": 1}},
            "s.toml: workload.count: 1000000 messages at 1/s take 11.6 days to send, longer than "
            "timeouts.run_s = 120 s; lower count, raise the rate, or raise timeouts.run_s (at most 3600)",
        ),
        (
            {
                "name": "x",
                "protocols": ["udp"],
                "timeouts": {"drain_s": 3.0},
                "impairment": {"delay_ms": 60_000},
            },
            "s.toml: timeouts.drain_s: 3 s is shorter than the longest the link may hold a message "
            "(60 s: delay, jitter at its extreme, a full queue at rate_bps); give at least 60 or "
            "leave it out to have it derived",
        ),
        (
            {"name": "x", "impairment": {"delay_ms": 3000}},
            "s.toml: timeouts.connect_s: 5 s is not longer than a round trip over this link "
            "(6 s of delay): TCP could never connect",
        ),
        (
            {"name": "x", "protocols": ["udp"], "impairment": {"rate_bps": 1000}},
            "s.toml: impairment: the link may hold a message 1.2e+04 s (delay, jitter at its "
            "extreme, a full queue at rate_bps): more than the longest drain (600 s); shorten "
            "the delay or the queue, or raise rate_bps",
        ),
    ],
)
def test_runs_that_could_not_end_or_would_misreport_are_refused(
    tmp_path: Path, data: dict[str, object], expected: str
) -> None:
    import tomli_w

    path = tmp_path / "s.toml"
    path.write_text(tomli_w.dumps(data))
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value) == expected.replace("s.toml", str(path), 1)
