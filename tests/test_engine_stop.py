"""The engine process stops within its grace and keeps its record, whatever it holds.

Unix seqpacket socket pairs stand in for the two TUN devices (one packet per read and
write, as on a TUN fd), so this runs without root; the engine is the real process.
"""

from __future__ import annotations

import os
import socket
import struct
import time
from pathlib import Path

from lab.impairment.engine import start_engine
from lab.impairment.forwarder import STOP_GRACE_NS
from lab.impairment.groundtruth import load_ground_truth
from lab.impairment.spec import ImpairmentSpec


def _ipv4_udp(payload: bytes) -> bytes:
    total = 20 + 8 + len(payload)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        total,
        1,
        0,
        64,
        17,
        0,
        bytes([198, 18, 0, 1]),
        bytes([198, 18, 0, 2]),
    )
    return header + struct.pack("!HHHH", 50123, 50001, 8 + len(payload), 0) + payload


def test_engine_holding_a_long_delay_stops_within_its_grace_and_writes_its_record(
    tmp_path: Path,
) -> None:
    client_engine, client_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    server_engine, server_side = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    for end in (client_engine, server_engine):
        end.setblocking(False)
    truth = tmp_path / "ground_truth.npz"
    handle = start_engine(
        client_engine.fileno(),
        server_engine.fileno(),
        ImpairmentSpec(delay_ms=60_000),
        1,
        truth,
        run_id="enginestop",
        die_with_parent=True,
    )
    try:
        for seq in range(3):
            client_side.send(_ipv4_udp(seq.to_bytes(4, "big") + bytes(60)))
        time.sleep(0.3)  # read and held for 60 s
        started = time.monotonic()
        assert handle.stop() == truth
        took = time.monotonic() - started
    finally:
        for end in (client_engine, client_side, server_engine, server_side):
            end.close()
    assert took < STOP_GRACE_NS / 1e9 + 3.0, f"the engine took {took:.1f} s to stop"
    assert handle.process.returncode == 0, "stopped by itself, not killed"
    frame, _ = load_ground_truth(truth)
    assert len(frame) == 3 and frame["pending_at_stop"].all()
    assert os.path.getsize(truth) > 0
