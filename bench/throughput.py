"""TCP bulk throughput: iperf3 through the lab's testbed vs a plain veth link (run as root).

The same sender, iperf3 (``iperf3 -c 198.18.0.2 -t 5 -C cubic -J`` against a one-off
``iperf3 -s -1``), over five links kept up side by side for the whole run:

* ``engine``: ``lab testbed up`` of a clean scenario (no impairment, the compiled engine,
  the default), both iperf3 ends started with ``lab exec``;
* ``engine-python``: the same with ``[impairment] engine = "python"`` (the reference);
* ``tun-floor``: the engine's link, the same two TUN devices, forwarded instead by
  ``bench/tun_floor.c`` (``bench/_floor.py``): one thread per direction, a blocking read
  and a write per packet, nothing decided or recorded: what a forwarder that passes every
  segment through TUN devices, a packet per read and per write, reaches on this machine
  with nothing else to do;
* ``veth``: the same two namespaces joined by a plain veth pair, no engine
  (``lab.testbed.open_veth_testbed``: ``lab-`` names, 198.18.0.1 / 198.18.0.2, removed
  on exit, error and SIGTERM), iperf3 through ``ip netns exec`` as ``lab exec`` does;
* ``veth-segments``: another plain veth pair with TCP segmentation offload turned off on
  both ends (``ethtool -K <veth> tso off`` through pyroute2's ethtool), as the testbed's
  TUN devices have it: the sending kernel then cuts its data into MTU-sized segments
  before the link, and each crosses as its own packet, as every packet crosses the
  engine. A plain veth pair passes the sender's super-packets (up to 64 KiB) whole.

Each round measures every link once, seconds apart (the order alternates between
rounds), so each round gives its own engine / veth ratio. Per try: iperf3's receiver
Gbit/s, its retransmissions and its own CPU (sender and receiver); the engine process's
CPU (utime + stime from /proc/<pid>/stat; the pid from the testbed's state file) and the
whole machine's busy time (/proc/stat), both over the transfer (from the first
established connection to the client's exit), as CPU seconds per Gbit delivered, which
is also CPUs kept busy per Gbit/s. The machine's figure includes whatever else the
machine ran; the CPUs it kept busy during the second before each try are given beside it.

Then the lab's own bulk: ``lab run`` of a TCP bulk scenario (``pattern = "bulk"``, 5 s,
1400-byte messages) on a clean link of its own (the compiled engine), its summary.csv's
``goodput_bps`` against iperf3 through the engine in the try just before it, and how often
its send queue was empty (TCP_INFO ``notsent_bytes``: the sender was behind).
``--json PATH`` writes every figure; ``--testbeds-file PATH`` keeps the ids of the
testbeds it has up, for whoever has to stop it.

``--links engine,veth`` leaves out the Python engine, the TUN floor and veth-segments
(veth is always measured).

    sudo .venv/bin/python bench/throughput.py [--seconds 5] [--rounds 2] [--json PATH]
        [--links engine,engine-python,tun-floor,veth,veth-segments]
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from _floor import LINK as FLOOR
from _floor import compile_floor, running_floor
from pyroute2.ethtool import Ethtool

from lab.exchanges._kernel import read_counters
from lab.testbed import (
    SERVER_ADDRESS,
    Testbed,
    _netns,
    destroy,
    namespace_names,
    open_veth_testbed,
    read_states,
)

LAB = str(Path(sys.executable).parent / "lab")
PORT = 5201
LINKS = ("engine", "engine-python", FLOOR, "veth", "veth-segments")
#: the TCP segmentation offloads a TUN device has off unless told otherwise (TUNSETOFFLOAD)
TSO_FEATURES = (
    "tx-tcp-segmentation",
    "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation",
    "tx-tcp6-segmentation",
)
ENGINE_OF = {"engine": "compiled", "engine-python": "python"}
CONGESTION = "cubic"
_CLK_TCK = os.sysconf("SC_CLK_TCK")
#: a process at or above this share of one CPU is taken as the limit of the transfer
SATURATED = 0.9


def _scenario(name: str, engine: str) -> str:
    text = f'name = "{name}"\ncongestion_control = "{CONGESTION}"\n'
    return text + ('[impairment]\nengine = "python"\n' if engine == "python" else "")


def _bulk_scenario(seconds: float, size: int) -> str:
    return (
        f'name = "bench-bulk"\nprotocols = ["tcp"]\ncongestion_control = "{CONGESTION}"\n'
        f'[workload]\npattern = "bulk"\nsize = {size}\nduration_s = {seconds:g}\n'
    )


# --- CPU ------------------------------------------------------------------------------


def _machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, steal included), /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / _CLK_TCK


def _process_cpu_s(pid: int | None) -> float:
    """utime + stime of ``pid`` (all its threads); 0 without a process."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


@dataclass(frozen=True)
class Sample:
    t: float
    machine_s: float
    engine_s: float

    @classmethod
    def now(cls, engine_pid: int | None) -> Sample:
        return cls(time.perf_counter(), _machine_busy_s(), _process_cpu_s(engine_pid))


# --- child processes ------------------------------------------------------------------


def _stop_child(proc: subprocess.Popen[Any], grace: float = 20.0) -> None:
    """SIGTERM (lab commands tear down what they built), then SIGKILL."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a child to its end; on a timeout or an interruption, stop it first, cleanly."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except BaseException:
        _stop_child(proc)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(list(argv), proc.returncode, out, err)


class Owned:
    """Testbeds this script brought up with ``lab testbed up``, written down in a file
    (``--testbeds-file``) so that whoever kills this script can remove them."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.ids: list[str] = []

    def _write(self) -> None:
        if self.path is not None:
            tmp = self.path.with_name(f".{self.path.name}.tmp")
            tmp.write_text("".join(f"{i}\n" for i in self.ids))
            os.replace(tmp, self.path)

    def add(self, run_id: str) -> None:
        self.ids.append(run_id)
        self._write()

    def remove(self, run_id: str) -> None:
        self.ids.remove(run_id)
        self._write()


def _testbed_down(run_id: str, owned: Owned) -> None:
    done = _run([LAB, "testbed", "down", run_id], timeout=120)
    if done.returncode != 0:  # the lab's own removal, as `lab testbed down` would do it
        print(f"lab testbed down {run_id}: {done.stderr.strip()}", file=sys.stderr)
        destroy(run_id)
    owned.remove(run_id)


@contextlib.contextmanager
def testbed_up(scenario: Path, owned: Owned) -> Iterator[str]:
    """``lab testbed up SCENARIO`` for the body, then ``lab testbed down``: the run id."""
    proc = subprocess.Popen(
        [LAB, "testbed", "up", str(scenario)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except BaseException:
        _stop_child(proc)  # the lab then says whether it kept the testbed, and which
        out, err = proc.communicate()
        if found := re.search(r"testbed ([0-9a-f]+) is up", out + err):
            owned.add(found[1])
            _testbed_down(found[1], owned)
        raise
    found = re.search(r"testbed ([0-9a-f]+) is up", out)
    if proc.returncode != 0 or found is None:
        raise RuntimeError(f"lab testbed up {scenario.name}: {err.strip() or out.strip()}")
    run_id = found[1]
    owned.add(run_id)
    try:
        yield run_id
    finally:
        _testbed_down(run_id, owned)


@contextlib.contextmanager
def tun_floor(folder: Path) -> Iterator[Target]:
    """The engine's TUN link with ``tun_floor.c`` forwarding instead of the engine: one
    thread per direction, a read and a write per packet, nothing decided or recorded."""
    with running_floor(compile_floor(folder), CONGESTION) as (testbed, pid):
        yield _netns_target(FLOOR, testbed, pid)


def _netns_target(link: str, testbed: Testbed, forwarder_pid: int | None) -> Target:
    """A testbed the script built itself: iperf3 runs through ``ip netns exec``."""
    return Target(
        link,
        client=("ip", "netns", "exec", testbed.client.netns),
        server=("ip", "netns", "exec", testbed.server.netns),
        engine_pid=forwarder_pid,
        testbed=testbed.run_id,
        server_ns=testbed.server.netns,
    )


def _engine_pid(run_id: str) -> int:
    for state in read_states():
        if state.get("run_id") == run_id and isinstance(state.get("engine_pid"), int):
            return int(str(state["engine_pid"]))
    raise RuntimeError(f"testbed {run_id}: no engine_pid in its state file")


# --- one iperf3 try -------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """Where iperf3 runs: the argv prefixes that put a program on each host."""

    link: str
    client: tuple[str, ...]
    server: tuple[str, ...]
    engine_pid: int | None
    testbed: str
    server_ns: str


def _ip_in_receives(netns: str) -> int:
    """Ip.InReceives of a namespace: IP packets its stack took in (a GSO/GRO super-packet
    counts once, however many MTU-sized segments it carries)."""
    with _netns.inside(netns):
        return read_counters()["Ip.InReceives"]


def _server_sockets(pid: int) -> list[tuple[str, str]]:
    """(local address:port, state) of the TCP sockets in ``pid``'s network namespace."""
    try:
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return []
    return [(line.split()[1], line.split()[3]) for line in lines if line.strip()]


_LOCAL = f"{socket.inet_aton(SERVER_ADDRESS)[::-1].hex().upper()}:{PORT:04X}"


def _listening(pid: int) -> bool:
    return (_LOCAL, "0A") in _server_sockets(pid)


def _connected(pid: int) -> bool:
    return (_LOCAL, "01") in _server_sockets(pid)


@dataclass
class Try:
    link: str
    round: int
    testbed: str
    gbit_s: float
    sent_gbit_s: float
    bytes_received: int
    retransmits: int | None
    congestion_sender: str
    congestion_receiver: str
    #: iperf3's own CPU, percent of one CPU over its test: client (sender), server
    sender_cpu_pct: float
    receiver_cpu_pct: float
    #: the transfer window: first established connection to the client's exit
    window_s: float
    engine_cpu_s: float | None
    machine_cpu_s: float
    #: CPUs the machine kept busy in the second before the try (others, mostly)
    background_cpus: float
    engine_cpu_s_per_gbit: float | None
    machine_cpu_s_per_gbit: float
    #: what held the transfer back, by the rule in _limit()
    limit: str
    #: IP packets the server took in over the try, and bytes delivered per packet
    server_ip_packets: int = 0
    bytes_per_server_packet: float | None = None


def tso_off(netns: str, interface: str) -> dict[str, bool]:
    """Turn TCP segmentation offload off on ``interface``; its offloads as they end up."""
    with _netns.inside(netns), contextlib.closing(Ethtool()) as ethtool:
        features = ethtool.get_features(interface)
        for name in TSO_FEATURES:
            if name in features.features:
                features.features[name].enable = False
        ethtool.set_features(interface, features)
        now = ethtool.get_features(interface).features
    if on := [name for name in TSO_FEATURES if name in now and now[name].enable]:
        raise RuntimeError(f"{netns} {interface}: could not turn off {on}")
    watched = (*TSO_FEATURES, "tx-generic-segmentation", "rx-gro")  # GSO, GRO: left as they are
    return {name: bool(now[name].enable) for name in watched if name in now}


def _limit(
    engine_cores: float | None,
    sender: float,
    receiver: float,
    machine: float,
    forwarder: str = "engine",
) -> str:
    """The first saturated party: the forwarder (the engine or the TUN floor's), iperf3's
    sender, its receiver, the CPUs."""
    if engine_cores is not None and engine_cores >= SATURATED:
        return forwarder
    if sender >= SATURATED:
        return "sender"
    if receiver >= SATURATED:
        return "receiver"
    if machine >= SATURATED * (os.cpu_count() or 1):
        return "machine"
    return "none saturated"


def measure(target: Target, round_: int, seconds: int) -> Try:
    """One iperf3 TCP test of ``seconds`` over ``target``, with its CPU figures."""
    server = subprocess.Popen(
        [*target.server, "timeout", str(seconds + 90), "iperf3", "-s", "-1",
         "-B", SERVER_ADDRESS, "-p", str(PORT)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    client: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 20.0
        while not _listening(server.pid):
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{target.link}: iperf3 server did not start listening")
            time.sleep(0.02)
        quiet = Sample.now(None)
        time.sleep(1.0)  # what the machine does without us: others' load, idle engines
        background = (_machine_busy_s() - quiet.machine_s) / (time.perf_counter() - quiet.t)
        with tempfile.TemporaryFile("w+") as output:
            packets_before = _ip_in_receives(target.server_ns)
            before = Sample.now(target.engine_pid)
            client = subprocess.Popen(
                [*target.client, "timeout", str(seconds + 60), "iperf3", "-c", SERVER_ADDRESS,
                 "-p", str(PORT), "-t", str(seconds), "-C", CONGESTION, "-J",
                 "--connect-timeout", "3000"],
                stdout=output,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            limit = time.monotonic() + seconds + 70
            connected: Sample | None = None  # the transfer starts: `lab exec` is done
            while client.poll() is None:
                if connected is None and _connected(server.pid):
                    connected = Sample.now(target.engine_pid)
                if time.monotonic() > limit:
                    raise RuntimeError(f"{target.link}: iperf3 client ran over its time")
                time.sleep(0.005)
            after = Sample.now(target.engine_pid)
            packets = _ip_in_receives(target.server_ns) - packets_before
            before = connected or before
            report = _iperf3_report(client, output, target.link)
        server.wait(timeout=20)
    finally:
        for proc in (client, server):
            if proc is not None:
                _stop_child(proc, grace=5.0)
                if proc.stderr is not None:
                    proc.stderr.close()
    done = _try(target, round_, report, before=before, after=after, background=background)
    done.server_ip_packets = packets
    done.bytes_per_server_packet = done.bytes_received / packets if packets else None
    return done


def _iperf3_report(client: subprocess.Popen[str], output: IO[str], link: str) -> dict[str, Any]:
    output.seek(0)
    text = output.read()
    report: dict[str, Any] = json.loads(text) if text.strip() else {}
    if client.returncode != 0 or "error" in report or "end" not in report:
        stderr = client.stderr.read() if client.stderr is not None else ""
        message = report.get("error") or stderr.strip() or f"exit {client.returncode}"
        raise RuntimeError(f"{link}: iperf3 client: {message}")
    return report


def _try(
    target: Target,
    round_: int,
    report: dict[str, Any],
    *,
    before: Sample,
    after: Sample,
    background: float,
) -> Try:
    end = report["end"]
    received, sent = end["sum_received"], end["sum_sent"]
    gbit = int(received["bytes"]) * 8 / 1e9
    window = after.t - before.t
    engine_cpu = after.engine_s - before.engine_s if target.engine_pid is not None else None
    machine_cpu = after.machine_s - before.machine_s
    cpu = end.get("cpu_utilization_percent", {})
    sender_pct, receiver_pct = (
        float(cpu.get("host_total", 0.0)),
        float(cpu.get("remote_total", 0.0)),
    )
    congestion = (str(end.get("sender_tcp_congestion")), str(end.get("receiver_tcp_congestion")))
    if congestion[0] != CONGESTION:
        raise RuntimeError(f"{target.link}: iperf3's sender used {congestion[0]}, not cubic")
    return Try(
        link=target.link,
        round=round_,
        testbed=target.testbed,
        gbit_s=float(received["bits_per_second"]) / 1e9,
        sent_gbit_s=float(sent["bits_per_second"]) / 1e9,
        bytes_received=int(received["bytes"]),
        retransmits=int(sent["retransmits"]) if "retransmits" in sent else None,
        congestion_sender=congestion[0],
        congestion_receiver=congestion[1],
        sender_cpu_pct=sender_pct,
        receiver_cpu_pct=receiver_pct,
        window_s=window,
        engine_cpu_s=engine_cpu,
        machine_cpu_s=machine_cpu,
        background_cpus=background,
        engine_cpu_s_per_gbit=engine_cpu / gbit if engine_cpu is not None and gbit else None,
        machine_cpu_s_per_gbit=machine_cpu / gbit if gbit else float("nan"),
        limit=_limit(
            engine_cpu / window if engine_cpu is not None and window else None,
            sender_pct / 100,
            receiver_pct / 100,
            machine_cpu / window if window else 0.0,
            forwarder="forwarder" if target.link == FLOOR else "engine",
        ),
    )


# --- the lab's own bulk -----------------------------------------------------------------


def _app_limited_share(tcp_info: Path) -> float | None:
    """Share of TCP_INFO samples, the first and last left out, with nothing waiting in the
    send queue (``notsent_bytes == 0``): the application, not the window, was behind."""
    with tcp_info.open(newline="") as file:
        rows = [r for r in csv.DictReader(file) if r.get("protocol") == "tcp"]
    inner = rows[1:-1]
    if not inner:
        return None
    return sum(1 for r in inner if int(float(r["notsent_bytes"] or 0)) == 0) / len(inner)


def lab_bulk(folder: Path, seconds: float, size: int) -> dict[str, Any]:
    """``lab run`` of a TCP bulk scenario on a clean link: its summary.csv's goodput."""
    scenario = folder / "bulk.toml"
    scenario.write_text(_bulk_scenario(seconds, size))
    results = folder / "results"
    argv = [LAB, "run", str(scenario), "--json", "--results", str(results)]
    started = time.perf_counter()
    done = _run(argv, timeout=seconds + 600)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"lab run (bulk): exit {done.returncode}: {done.stderr.strip()[-500:]}")
    run = Path(json.loads(done.stdout)["results"])
    meta = json.loads((run / "meta.json").read_text())
    with (run / "summary.csv").open(newline="") as file:
        tcp = next(r for r in csv.DictReader(file) if r["protocol"] == "tcp")
    share = _app_limited_share(run / "tcp_info.csv")
    return {
        "scenario": scenario.read_text(),
        "complete": bool(meta.get("complete")),
        "wall_s": wall,
        "goodput_bps": float(tcp["goodput_bps"]),
        "sent": int(tcp["sent"]),
        "delivered": int(tcp["delivered"]),
        "duration_s": float(tcp["duration_s"]),
        "tcp_retransmissions": float(tcp["tcp_retransmissions"] or 0),
        "app_limited_share": share,
        "backend": meta.get("impairment_backend"),
    }


# --- summary ----------------------------------------------------------------------------


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(
    tries: list[Try], measured: Sequence[str] = LINKS
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Per link: medians over the rounds; per round: engine / veth, side by side."""
    links: dict[str, Any] = {}
    for link in measured:
        mine = [t for t in tries if t.link == link]
        links[link] = {
            "gbit_s": _median([t.gbit_s for t in mine]),
            "gbit_s_each": [t.gbit_s for t in mine],
            "engine_cpu_s_per_gbit": _median([t.engine_cpu_s_per_gbit for t in mine]),
            "machine_cpu_s_per_gbit": _median([t.machine_cpu_s_per_gbit for t in mine]),
            "sender_cpu_pct": _median([t.sender_cpu_pct for t in mine]),
            "receiver_cpu_pct": _median([t.receiver_cpu_pct for t in mine]),
            "background_cpus": _median([t.background_cpus for t in mine]),
            "bytes_per_server_packet": _median([t.bytes_per_server_packet for t in mine]),
            "limits": [t.limit for t in mine],
        }
    ratios: dict[str, Any] = {}
    pairs = [(link, "veth") for link in measured if link != "veth"]
    if "veth-segments" in measured:
        pairs += [
            (link, "veth-segments")
            for link in measured
            if link.startswith("engine") or link == FLOOR
        ]
    if FLOOR in measured:
        pairs += [(link, FLOOR) for link in measured if link.startswith("engine")]
    for link, reference in pairs:
        each = []
        for round_ in sorted({t.round for t in tries}):
            ours = [t for t in tries if t.round == round_ and t.link == link]
            theirs = [t for t in tries if t.round == round_ and t.link == reference]
            if ours and theirs and theirs[0].gbit_s:
                each.append(ours[0].gbit_s / theirs[0].gbit_s)
        ratios[f"{link}_over_{reference}"] = {"median": _median(each), "each": each}
    return links, ratios


def _print_try(t: Try) -> None:
    engine = "" if t.engine_cpu_s_per_gbit is None else f"{t.engine_cpu_s_per_gbit:.3f}"
    print(
        f"  round {t.round + 1} {t.link:<14} {t.gbit_s:7.3f} Gbit/s  retr {t.retransmits}"
        f"  forwarder {engine or '-':>6} CPU s/Gbit  machine {t.machine_cpu_s_per_gbit:.3f}"
        f" CPU s/Gbit  iperf3 CPU {t.sender_cpu_pct:.0f} % / {t.receiver_cpu_pct:.0f} %"
        f"  {t.bytes_per_server_packet or 0:,.0f} B/packet"
        f"  background {t.background_cpus:.2f} CPUs  limit: {t.limit}",
        flush=True,
    )


def _iperf3_version() -> str:
    done = subprocess.run(
        ["iperf3", "--version"], capture_output=True, text=True, timeout=20, check=False
    )
    return (done.stdout.strip().splitlines() or ["unknown"])[0]


def _raise_exit(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)  # unwinds: testbeds down, children stopped


def _write_json(path: Path, document: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=5, help="iperf3 -t (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="tries per link (default 2)")
    parser.add_argument("--lab-bulk-size", type=int, default=1400, help="message size, bytes")
    parser.add_argument("--no-lab-bulk", action="store_true", help="skip the lab's own bulk")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the figures here")
    parser.add_argument(
        "--testbeds-file",
        type=Path,
        metavar="PATH",
        help="keep the ids of the testbeds this script has up in this file",
    )
    parser.add_argument(
        "--links",
        default=",".join(LINKS),
        help=f"comma-separated links to measure (default: {','.join(LINKS)}; veth is always in)",
    )
    args = parser.parse_args(argv)
    measured = tuple(link for link in LINKS if link in args.links.split(",") or link == "veth")
    if unknown := set(args.links.split(",")) - set(LINKS) - {""}:
        parser.error(f"--links: unknown {sorted(unknown)}, expected some of {LINKS}")
    if os.geteuid() != 0:
        print("bench/throughput.py needs root (namespaces)", file=sys.stderr)
        return 2
    if not 1 <= args.seconds <= 60 or not 1 <= args.rounds <= 10:
        parser.error("--seconds 1-60, --rounds 1-10")
    signal.signal(signal.SIGTERM, _raise_exit)
    owned = Owned(args.testbeds_file)
    tries: list[Try] = []
    bulk: dict[str, Any] | None = None
    bulk_reference: Try | None = None
    with (
        tempfile.TemporaryDirectory(prefix="protolab-throughput-") as tmp,
        contextlib.ExitStack() as stack,
    ):
        folder = Path(tmp)
        targets: dict[str, Target] = {}
        offloads: dict[str, dict[str, bool]] = {}
        for link in [m for m in measured if m.startswith("engine")]:
            scenario = folder / f"{link}.toml"
            scenario.write_text(_scenario(f"bench-{link}", ENGINE_OF[link]))
            run_id = stack.enter_context(testbed_up(scenario, owned))
            targets[link] = Target(
                link,
                client=(LAB, "exec", "--id", run_id, "client", "--"),
                server=(LAB, "exec", "--id", run_id, "server", "--"),
                engine_pid=_engine_pid(run_id),
                testbed=run_id,
                server_ns=namespace_names(run_id)[1],
            )
        if FLOOR in measured:
            targets[FLOOR] = stack.enter_context(tun_floor(folder))
        for link in [m for m in measured if m.startswith("veth")]:
            veth = stack.enter_context(open_veth_testbed(CONGESTION))
            if link == "veth-segments":
                for host in (veth.client, veth.server):
                    offloads[host.role] = tso_off(host.netns, host.interface)
            targets[link] = _netns_target(link, veth, None)
        print(f"TCP bulk, iperf3 -t {args.seconds} -C {CONGESTION}, {args.rounds} round(s)")
        for round_ in range(args.rounds):
            # alternating, the last round ending with the engine (the lab's bulk follows it)
            for link in measured[::-1] if (args.rounds - 1 - round_) % 2 == 0 else measured:
                tries.append(measure(targets[link], round_, args.seconds))
                _print_try(tries[-1])
        if not args.no_lab_bulk and "engine" in measured:
            # right after the last engine try, the last try of all
            bulk_reference = next(t for t in reversed(tries) if t.link == "engine")
            print(f"lab run: TCP bulk, {args.seconds} s, {args.lab_bulk_size}-byte messages")
            bulk = lab_bulk(folder, float(args.seconds), args.lab_bulk_size)
            print(
                f"  goodput {bulk['goodput_bps'] / 1e9:.3f} Gbit/s (iperf3 through the engine,"
                f" just before: {bulk_reference.gbit_s:.3f} Gbit/s); the send queue was empty"
                f" in {bulk['app_limited_share']:.0%} of TCP_INFO samples",
                flush=True,
            )
    links, ratios = summarize(tries, measured)
    print("\nmedian over the rounds (ratios: per round, then their median)")
    for link in measured:
        row = links[link]
        print(f"  {link:<14} {row['gbit_s']:.3f} Gbit/s  limits {row['limits']}")
    for name, ratio in ratios.items():
        print(f"  {name:<22} {ratio['median']:.3f}  each {[round(r, 3) for r in ratio['each']]}")
    if args.json:
        _write_json(
            args.json,
            {
                "benchmark": "throughput",
                "settings": {
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "congestion_control": CONGESTION,
                    "port": PORT,
                    "server_address": SERVER_ADDRESS,
                    "client_command": f"iperf3 -c {SERVER_ADDRESS} -p {PORT} -t {args.seconds}"
                    f" -C {CONGESTION} -J --connect-timeout 3000",
                    "server_command": f"iperf3 -s -1 -B {SERVER_ADDRESS} -p {PORT}",
                    "scenario_engine": _scenario("bench-engine", "compiled"),
                    "scenario_engine_python": _scenario("bench-engine-python", "python"),
                    "saturated": SATURATED,
                    "lab_bulk_size": args.lab_bulk_size,
                    "cpus": os.cpu_count(),
                    "veth_segments_offloads": offloads or None,
                },
                "iperf3": _iperf3_version(),
                "tries": [asdict(t) for t in tries],
                "links": links,
                "ratios": ratios,
                "lab_bulk": bulk,
                "lab_bulk_reference": asdict(bulk_reference) if bulk_reference else None,
                "lab_bulk_over_iperf3_engine": (
                    bulk["goodput_bps"] / 1e9 / bulk_reference.gbit_s
                    if bulk and bulk_reference and bulk_reference.gbit_s
                    else None
                ),
            },
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
