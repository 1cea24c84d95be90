"""The TUN floor of the TCP bulk benchmark: the engine's link with a bare C forwarder.

``lab.testbed.open_tun_testbed`` builds the engine's two TUN devices with nothing behind
them; ``bench/tun_floor.c`` is the forwarder ``bench/throughput.py`` puts there to measure
what the TUN design allows before the engine decides anything. Checked with ping, an
independent tool: nothing crosses until the floor forwards, then everything does, and the
testbed leaves nothing behind.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from lab.testbed import SERVER_ADDRESS, open_tun_testbed
from tests.conftest import PROJECT_ROOT, lab_namespaces

SOURCE = PROJECT_ROOT / "bench" / "tun_floor.c"


def _ping(netns: str, count: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", netns, "ping", "-n", "-c", str(count), "-i", "0.05",
         "-W", "1", SERVER_ADDRESS],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )  # fmt: skip


@pytest.mark.requires_root
@pytest.mark.usefixtures("no_leftover_namespaces")
def test_the_floor_forwards_every_packet_and_the_bare_link_none(tmp_path: Path) -> None:
    binary = tmp_path / "tun_floor"
    subprocess.run(
        ["cc", "-O2", "-Wall", "-Werror", "-pthread", "-o", str(binary), str(SOURCE)],
        check=True,
        timeout=120,
    )
    with open_tun_testbed() as (testbed, client_fd, server_fd):
        namespaces = {testbed.client.netns, testbed.server.netns}
        assert namespaces <= lab_namespaces()
        bare = _ping(testbed.client.netns, 1)
        assert bare.returncode != 0, f"crossed a link nobody forwards: {bare.stdout}"
        floor = subprocess.Popen(
            [str(binary), str(client_fd), str(server_fd)], pass_fds=(client_fd, server_fd)
        )
        try:
            forwarded = _ping(testbed.client.netns, 20)
        finally:
            floor.terminate()
            floor.wait(10)
        assert "20 packets transmitted, 20 received" in forwarded.stdout, forwarded.stdout
    assert not namespaces & lab_namespaces()
