"""Two SSH "hosts" for tests: OpenSSH's sshd inside a testbed's two namespaces.

This machine has one kernel, so the far hosts are the testbed's namespaces, each with
its own sshd (the Debian package, installed by ``make``; the Makefile's apt step
starts no service, so no sshd listens on the machine itself). Everything is generated
in a temporary folder: one host key per "host", a client key pair, a known_hosts that
lists both host keys, an empty ssh client config (so the user's ``~/.ssh`` plays no
part), and each sshd's config: root login by key only, listening only on its
namespace's management address.

The root namespace cannot reach a testbed's namespaces (their only link is the
engine's TUN pair, and every testbed uses the same 198.18.0.1/.2), so each namespace
gets a management veth pair ``lab-<run id>-mc|ms`` with a /30 from 198.19.R.0/24
(R picked free at random, inside the lab's 198.18.0.0/15). The exchanges still run over
the impaired link between 198.18.0.1 and .2; only SSH uses the management pair.

Teardown stops each sshd, then whatever sshd or agent is still in the namespaces, and
removes the veth pairs; it runs on error and on Ctrl-C too.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import pytest

from lab.hosts.ssh import SSHOptions
from lab.testbed import Testbed, _netns

__all__ = ["SSHD", "SshdHost", "SshdHosts", "agent_pids", "require_sshd", "sshd_hosts"]

SSHD = Path("/usr/sbin/sshd")
#: Where sshd wants its privilege separation directory (the Debian service makes it).
PRIVSEP_DIR = Path("/run/sshd")
_MANAGEMENT_INTERFACE = "mgmt0"
_START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SshdHost:
    """One "host": a testbed namespace with sshd listening on its management address."""

    role: str
    netns: str
    address: str
    """Where its sshd listens (SSH goes here)."""
    link_address: str
    """Its address on the testbed's impaired link (the exchanges go here)."""
    sshd_pid: int
    host_key: Path

    @property
    def spec(self) -> str:
        return f"root@{self.address}"


@dataclass(frozen=True)
class SshdHosts:
    """Both "hosts", and the SSH options that trust exactly their keys."""

    client: SshdHost
    server: SshdHost
    options: SSHOptions
    directory: Path
    client_key: Path

    def logs(self) -> str:
        """Both sshd logs, for a failing test's message."""
        return "\n".join(
            f"--- {role} sshd ---\n{(self.directory / f'sshd-{role}.log').read_text()}"
            for role in ("client", "server")
            if (self.directory / f"sshd-{role}.log").exists()
        )


def require_sshd() -> None:
    """Skip when OpenSSH's server is missing (``make`` installs openssh-server)."""
    if not SSHD.exists():
        pytest.skip("sshd not installed (apt package openssh-server; run `make apt`)")


def agent_pids(host: SshdHost) -> list[int]:
    """Processes in the host's namespace other than its sshd listener: sessions, agents."""
    return [pid for pid in _netns.pids_in(host.netns) if pid != host.sshd_pid]


def _generate_key(path: Path) -> str:
    """An ed25519 key pair at ``path`` (and .pub); returns the public key line."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key.export_public_key().decode().strip()


def _free_subnet() -> int:
    """R such that nothing here uses 198.19.R.0/24 yet (other fixtures run concurrently)."""
    used = subprocess.run(
        ["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, check=True
    ).stdout
    taken = {
        int(ipaddress.ip_interface(word).ip.packed[2])
        for word in used.split()
        if word.startswith("198.19.")
    }
    choices = [r for r in range(1, 255) if r not in taken]
    if not choices:
        raise RuntimeError("no free 198.19.R.0/24 for a management link")
    return random.choice(choices)


def _ip(*argv: str) -> None:
    done = subprocess.run(["ip", *argv], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(argv)}: {done.stderr.strip()}")


def _add_management_link(netns: str, root_side: str, root_address: str, address: str) -> None:
    """A veth pair root namespace <-> ``netns``, a /30 on it; no other route anywhere."""
    # the peer is born inside the namespace: no clash with a concurrent fixture's mgmt0
    _ip(
        "link",
        "add",
        root_side,
        "type",
        "veth",
        "peer",
        "name",
        _MANAGEMENT_INTERFACE,
        "netns",
        netns,
    )
    with contextlib.suppress(OSError):  # no router solicitations from our side either
        Path(f"/proc/sys/net/ipv6/conf/{root_side}/disable_ipv6").write_text("1")
    _ip("addr", "add", f"{root_address}/30", "dev", root_side)
    _ip("link", "set", root_side, "up")
    _ip("-n", netns, "addr", "add", f"{address}/30", "dev", _MANAGEMENT_INTERFACE)
    _ip("-n", netns, "link", "set", _MANAGEMENT_INTERFACE, "up")


def _sshd_config(directory: Path, role: str, address: str, host_key: Path) -> Path:
    path = directory / f"sshd-{role}.conf"
    path.write_text(
        "\n".join(
            [
                f"ListenAddress {address}:22",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                "PidFile none",
                "PermitRootLogin prohibit-password",
                "AllowUsers root",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "HostbasedAuthentication no",
                "UsePAM no",
                "StrictModes no",  # the keys live in a temporary folder
                "AllowTcpForwarding no",
                "X11Forwarding no",
                "PermitTTY no",
                "PrintMotd no",
                "LoginGraceTime 10",
                "ClientAliveInterval 5",
                "ClientAliveCountMax 3",
                "MaxSessions 32",
                "MaxStartups 32",
                "LogLevel INFO",
                "Subsystem sftp internal-sftp",
                "",
            ]
        )
    )
    return path


def _start_sshd(netns: str, config: Path, log: Path) -> subprocess.Popen[bytes]:
    """``sshd -D -e`` inside ``netns``, returned once it listens."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["ip", "netns", "exec", netns, str(SSHD), "-D", "-e", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )
    deadline = time.monotonic() + _START_TIMEOUT_S
    while "Server listening on" not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            _stop(process)
            raise RuntimeError(f"sshd did not start in {netns}: {log.read_text()[-500:]}")
        time.sleep(0.02)
    return process


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _kill_leftovers(netns: str) -> None:
    """Whatever sshd started in ``netns`` and is still there (sessions, agents)."""
    for pid in _netns.pids_in(netns):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


@contextlib.contextmanager
def sshd_hosts(testbed: Testbed, directory: Path) -> Iterator[SshdHosts]:
    """sshd in both of ``testbed``'s namespaces, reachable from here; all gone afterwards."""
    require_sshd()
    directory.mkdir(parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    client_key = directory / "id_ed25519"
    (directory / "authorized_keys").write_text(_generate_key(client_key) + "\n")
    (directory / "ssh_config").write_text("")  # the user's ~/.ssh/config stays out of it
    subnet = _free_subnet()
    links: list[str] = []
    processes: list[subprocess.Popen[bytes]] = []
    namespaces = [testbed.client.netns, testbed.server.netns]
    try:
        hosts = []
        known_hosts = []
        for role, host, offset in (("client", testbed.client, 4), ("server", testbed.server, 8)):
            root_side = f"lab-{testbed.run_id}-m{role[0]}"
            root_address = f"198.19.{subnet}.{offset + 1}"
            address = f"198.19.{subnet}.{offset + 2}"
            links.append(root_side)
            _add_management_link(host.netns, root_side, root_address, address)
            host_key = directory / f"host-{role}"
            known_hosts.append(f"{address} {_generate_key(host_key)}")
            config = _sshd_config(directory, role, address, host_key)
            process = _start_sshd(host.netns, config, directory / f"sshd-{role}.log")
            processes.append(process)
            hosts.append(SshdHost(role, host.netns, address, host.address, process.pid, host_key))
        (directory / "known_hosts").write_text("\n".join(known_hosts) + "\n")
        options = SSHOptions(
            known_hosts=directory / "known_hosts",
            client_keys=(client_key,),
            config=directory / "ssh_config",
            use_agent=False,
            python=sys.executable,  # the far end is this machine: the same venv
            connect_timeout_s=10.0,
        )
        yield SshdHosts(hosts[0], hosts[1], options, directory, client_key)
    finally:
        for process in processes:
            _stop(process)
        for netns in namespaces:
            _kill_leftovers(netns)
        for link in links:
            subprocess.run(["ip", "link", "del", link], capture_output=True, check=False)
