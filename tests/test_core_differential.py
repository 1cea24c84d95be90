"""The compiled core (lab/impairment/_core.c) against the Python reference model.

Same seed, same synthetic packets (every impairment knob, per-direction overrides,
several flows, bursts and pauses): the verdicts must be identical, field by field.
No root needed; ``bench/impairment.py --differential`` runs the same on 1M packets.
"""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from numpy.random import PCG64, SeedSequence

from lab.impairment import core
from lab.impairment.differential import SCENARIOS, Packets, compare, synthetic_packets
from lab.impairment.forwarder import RT_PRIORITY_ENV, SPIN_ENV
from lab.impairment.groundtruth import load_ground_truth
from lab.impairment.model import BLOCK_SIZE, DirectionModel
from lab.impairment.spec import Direction, LinkImpairment

pytestmark = pytest.mark.skipif(
    not core.available(), reason="compiled core not built (pip install -e .)"
)

PACKETS = 100_000


@pytest.fixture(scope="module")
def packets() -> Packets:
    return synthetic_packets(PACKETS, seed=7)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_compiled_core_gives_the_reference_verdicts(name: str, packets: Packets) -> None:
    outcome = compare(name, SCENARIOS[name], packets, seed=7)
    assert outcome.mismatches == 0, outcome.first_mismatch


@pytest.mark.parametrize("seed", [0, 1, 2**32 + 3, 12345678901234567890])
@pytest.mark.parametrize("key", [(0, 0), (1, 4), (0, 3, 17 << 16 | 50001)])
def test_seeding_matches_numpys_seed_sequence(seed: int, key: tuple[int, ...]) -> None:
    state = PCG64(SeedSequence(seed, spawn_key=key)).state["state"]
    assert core.core().seed_state(core.seed_words(seed), key) == (state["state"], state["inc"])


def test_correlated_streams_stay_identical_across_blocks() -> None:
    # one flow, one direction: each stream draws well past BLOCK_SIZE (chunking restarts)
    params = LinkImpairment(
        loss=30,
        loss_correlation=60,
        delay_ms=5,
        jitter_ms=2,
        delay_correlation=97,
        duplicate=10,
        duplicate_correlation=40,
        corrupt=5,
        corrupt_correlation=20,
        queue_limit=1_000_000,
    )
    n = BLOCK_SIZE * 2 + 1000
    t = 10**18 + np.arange(n, dtype=np.int64) * 1000
    sizes = np.full(n, 1200, dtype=np.int64)
    flows = np.full(n, 17 << 16 | 50001, dtype=np.int64)
    reference = DirectionModel(params, 3, Direction.SERVER_TO_CLIENT)
    want = [tuple(reference.decide(int(a), 1200, int(flows[0]))) for a in t]
    got = core.CompiledModel(params, 3, Direction.SERVER_TO_CLIENT).decide_many(t, sizes, flows)
    have = list(
        zip(
            got.fate.tolist(),
            got.send_at_ns.tolist(),
            got.duplicate_at_ns.tolist(),
            got.corrupt_bit.tolist(),
            [bool(r) for r in got.reordered.tolist()],
            strict=True,
        )
    )
    assert have == want


def test_single_decisions_and_backlog_match() -> None:
    params = LinkImpairment(delay_ms=10, jitter_ms=5, loss=10, duplicate=5, queue_limit=50)
    reference = DirectionModel(params, 9, Direction.CLIENT_TO_SERVER)
    compiled = core.CompiledModel(params, 9, Direction.CLIENT_TO_SERVER)
    for i in range(5000):
        now = 10**18 + i * 50_000
        assert compiled.decide(now, 100 + i % 1400, i % 3) == reference.decide(
            now, 100 + i % 1400, i % 3
        )
        if i % 97 == 0:
            assert compiled.backlog(now) == reference.backlog(now)


def _ipv4_udp(seq: int, size: int = 200, port: int = 50001) -> bytes:
    payload = seq.to_bytes(4, "big") + bytes(size - 4)
    udp = (49152).to_bytes(2, "big") + port.to_bytes(2, "big")
    udp += (8 + len(payload)).to_bytes(2, "big") + bytes(2) + payload
    header = (
        bytes([0x45, 0]) + (20 + len(udp)).to_bytes(2, "big") + (seq & 0xFFFF).to_bytes(2, "big")
    )
    header += bytes([0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2])
    return header + udp


@contextlib.contextmanager
def _forwarder(
    impairment: dict[str, object], out: Path
) -> Iterator[tuple[socket.socket, socket.socket]]:
    """The forwarder process between two socketpairs (datagram fds, like TUN's): yields
    the client's and the server's application ends; SIGTERM stops it on exit (status 0)."""
    app_c, eng_c = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    eng_s, app_s = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with app_c, eng_c, eng_s, app_s:
        for s in (eng_c, eng_s):
            s.setblocking(False)
        for s in (app_c, app_s, eng_c, eng_s):
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        config = {
            "client_fd": eng_c.fileno(),
            "server_fd": eng_s.fileno(),
            "seed": 5,
            "impairment": impairment,
            "output": str(out),
            "die_with_parent": True,
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "lab.impairment.forwarder", "--run-id", "t", "--config",
             json.dumps(config)],
            pass_fds=(eng_c.fileno(), eng_s.fileno()),
            stdout=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert process.stdout is not None
            assert process.stdout.readline().startswith(b"ready")
            yield app_c, app_s
            process.send_signal(signal.SIGTERM)
            assert process.wait(20) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


def _forward(engine: str, impairment: dict[str, object], out: Path, count: int) -> list[bytes]:
    """``count`` datagrams client -> server through the forwarder; what reached the server."""
    received: list[bytes] = []
    with _forwarder({**impairment, "engine": engine}, out) as (app_c, app_s):
        for seq in range(count):
            app_c.send(_ipv4_udp(seq))
        app_s.settimeout(1.0)
        with contextlib.suppress(TimeoutError):
            while True:
                received.append(app_s.recv(70000))
    return received


def test_compiled_and_python_forwarders_write_the_same_ground_truth(tmp_path: Path) -> None:
    # loss, duplication and corruption only: every decision is independent of timing
    impairment: dict[str, object] = {"loss": 10, "duplicate": 5, "corrupt": 5}
    runs = {}
    for engine in ("python", "compiled"):
        out = tmp_path / f"{engine}.npz"
        received = _forward(engine, impairment, out, 1500)
        truth, meta = load_ground_truth(out)
        assert meta["engine"] == engine
        runs[engine] = (sorted(received), truth)
    (python_bytes, python_truth), (compiled_bytes, compiled_truth) = runs.values()
    assert compiled_bytes == python_bytes  # corrupted bits included
    columns = ["direction", "size", "fate", "duplicated", "corrupted", "reordered", "lab_seq"]
    assert compiled_truth[columns].equals(python_truth[columns])
    assert list(compiled_truth.columns) == list(python_truth.columns)
    forwarded = compiled_truth[compiled_truth["fate"] == "forwarded"]
    assert (forwarded["t_out_ns"] >= forwarded["t_in_ns"]).all()
    duplicated = forwarded[forwarded["duplicated"]]
    assert (duplicated["dup_t_out_ns"] >= duplicated["t_in_ns"]).all()


@pytest.mark.parametrize("engine", ["python", "compiled"])
def test_a_forwarder_stopped_before_any_packet_writes_an_empty_record(
    tmp_path: Path, engine: str
) -> None:
    """A stop before the first packet (chaos: Ctrl-C right after set-up) is a clean record."""
    out = tmp_path / f"{engine}.npz"
    assert _forward(engine, {"delay_ms": 1}, out, 0) == []
    truth, meta = load_ground_truth(out)
    assert len(truth) == 0 and meta["engine"] == engine


# a delay: a reader and a writer thread per direction, the writers ordinary threads that
# sleep to the deadline, then with the defaults (spin, real-time writers); a clean link:
# one reader thread for both directions, writing every packet itself
@pytest.mark.parametrize("delay_ms,spin_ns,rt_priority", [(3, "0", "0"), (3, "", ""), (0, "", "")])
def test_compiled_forwarder_keeps_each_directions_order_and_merges_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, delay_ms: int, spin_ns: str, rt_priority: str
) -> None:
    """Both directions at once: every packet arrives, in the order it was sent; the
    record has both directions, rows in arrival order, and no packet left before its
    scheduled time."""
    monkeypatch.setenv(SPIN_ENV, spin_ns)
    monkeypatch.setenv(RT_PRIORITY_ENV, rt_priority)
    out = tmp_path / "both.npz"
    count = 400
    received: dict[str, list[int]] = {"to_server": [], "to_client": []}
    with _forwarder({"delay_ms": delay_ms, "engine": "compiled"}, out) as (app_c, app_s):
        for seq in range(count):
            app_c.send(_ipv4_udp(seq))
            app_s.send(_ipv4_udp(seq, port=50002))
        for name, end in (("to_server", app_s), ("to_client", app_c)):
            end.settimeout(1.0)
            with contextlib.suppress(TimeoutError):
                while len(received[name]) < count:
                    packet = end.recv(70000)
                    received[name].append(int.from_bytes(packet[28:32], "big"))
    assert received["to_server"] == list(range(count))
    assert received["to_client"] == list(range(count))
    truth, _ = load_ground_truth(out)
    assert len(truth) == 2 * count
    assert truth["direction"].value_counts().to_dict() == {
        "client_to_server": count,
        "server_to_client": count,
    }
    assert truth["t_in_ns"].is_monotonic_increasing
    assert (truth["t_out_ns"] >= truth["scheduled_ns"]).all()
    assert (truth["scheduled_ns"] - truth["t_in_ns"] == delay_ms * 1_000_000).all()
