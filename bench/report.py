"""Run every benchmark and write ``docs/benchmarks.md`` (``make bench``; run as root).

    sudo .venv/bin/python bench/report.py [--output docs/benchmarks.md] [--quickstart-runs 3]

Runs, one after the other and each as its own process with a time limit:

* ``bench/impairment.py --iperf3``: the engine's forwarding rate against a plain veth link
  (a Python sender and iperf3), and its delay error;
* ``bench/capture.py``: the lab's sniffer against tcpdump on the same traffic;
* ``bench/analysis.py``: ``read_pcap`` against ``tshark -T fields`` on the same file;
* ``lab run scenarios/quickstart.toml --json`` a few times: wall time, and the testbed
  set-up and tear-down times its ``meta.json`` records.

Each benchmark writes its figures as JSON (``--json``); this script collects them, adds
the machine (CPU, cores, kernel, RAM, Python, peer tool versions), the date and the load
average, and replaces the markdown file in one step (a reader never sees half of it). If
a benchmark fails or overruns its limit the file is left as it was and the exit status
is 1. A benchmark that overruns gets SIGTERM (its testbeds are torn down), then SIGKILL,
then any testbed it still owns is removed, and only those.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
#: bench/analysis.py's default is 1,000,000 packets; tshark alone needs minutes for that here.
ANALYSIS_PACKETS = 200_000
QUICKSTART = "scenarios/quickstart.toml"
GRACE_S = 20.0  # after SIGTERM, before SIGKILL

JSON = dict[str, Any]


@dataclass
class Outcome:
    """One benchmark process: its command, how long it took, the load around it."""

    name: str
    command: list[str]
    seconds: float = 0.0
    load_before: str = ""
    load_after: str = ""
    returncode: int | None = None
    stdout: str = ""
    error: str | None = None
    data: JSON = field(default_factory=dict)
    shown: str = ""
    #: CPUs (out of os.cpu_count()) busy on average with anything but this benchmark.
    others_cpus: float = 0.0


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _busy_s() -> float:
    """CPU seconds the whole machine spent busy (all CPUs, steal included), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _children_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _shown(argv: Sequence[str], out: Path) -> str:
    """The command as typed from the repository root, ``$OUT`` for the scratch folder."""
    words = []
    for word in argv:
        text = str(word)
        if text.startswith(str(out)):
            words.append("$OUT" + text[len(str(out)) :])  # no quoting: $OUT must expand
            continue
        if text.startswith("/"):
            with contextlib.suppress(ValueError):
                text = str(Path(text).relative_to(ROOT))
        words.append(shlex.quote(text))
    return " ".join(words)


def _owned_testbeds(pid: int) -> list[str]:
    """Run ids of testbeds whose state file names ``pid`` as their owner."""
    from lab.testbed import read_states  # noqa: PLC0415 - only on the error path

    return [str(s["run_id"]) for s in read_states() if s.get("owner_pid") == pid]


def _stop(proc: subprocess.Popen[str], reason: str) -> None:
    """SIGTERM (the benchmarks tear their testbeds down), SIGKILL, remove what is left."""
    print(f"bench: {reason}: stopping pid {proc.pid}", file=sys.stderr, flush=True)
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(GRACE_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only its processes
        proc.wait()
    from lab.testbed import destroy  # noqa: PLC0415 - only on the error path

    for run_id in _owned_testbeds(proc.pid):
        with contextlib.suppress(Exception):
            destroy(run_id)


def run(name: str, argv: list[str], out: Path, timeout: float, *, capture: bool) -> Outcome:
    """Run one benchmark process, bounded by ``timeout`` seconds."""
    outcome = Outcome(name, argv, load_before=_load(), shown=_shown(argv, out))
    print(f"\n=== {name}: {outcome.shown} (limit {timeout:.0f} s)", flush=True)
    started, busy, own = time.perf_counter(), _busy_s(), _children_s()
    proc = subprocess.Popen(
        argv,
        cwd=ROOT,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        start_new_session=True,  # a group of its own, to kill on overrun and nothing else
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout)
        outcome.stdout = stdout or ""
    except subprocess.TimeoutExpired:
        _stop(proc, f"{name} ran over {timeout:.0f} s")
        outcome.error = f"ran over its limit of {timeout:.0f} s and was stopped"
    except BaseException:  # Ctrl-C or SIGTERM of make: take the benchmark down cleanly
        _stop(proc, "interrupted")
        raise
    outcome.seconds = time.perf_counter() - started
    # what the machine did minus what this benchmark's process tree did (reaped children)
    others = (_busy_s() - busy) - (_children_s() - own)
    outcome.others_cpus = max(0.0, others / outcome.seconds)
    outcome.returncode = proc.returncode
    outcome.load_after = _load()
    if outcome.error is None and proc.returncode != 0:
        outcome.error = f"exit status {proc.returncode}"
    return outcome


def run_json(name: str, argv: list[str], out: Path, timeout: float) -> Outcome:
    """A benchmark script that writes ``$OUT/<name>.json``."""
    path = out / f"{name}.json"
    outcome = run(name, [*argv, "--json", str(path)], out, timeout, capture=False)
    if outcome.error is None:
        try:
            outcome.data = json.loads(path.read_text())
        except (OSError, ValueError) as error:
            outcome.error = f"no JSON result: {error}"
    return outcome


def run_quickstart(lab: Path, out: Path, runs: int, timeout: float) -> list[Outcome]:
    outcomes = []
    for index in range(runs):
        folder = out / "quickstart"
        argv = [str(lab), "run", QUICKSTART, "--json", "--results", str(folder)]
        outcome = run(f"quickstart {index + 1}/{runs}", argv, out, timeout, capture=True)
        if outcome.error is None:
            try:
                document = json.loads(outcome.stdout)
                meta = json.loads((Path(document["results"]) / "meta.json").read_text())
                if not meta.get("complete"):
                    raise ValueError("meta.json says the run is incomplete")
                run_s = datetime.fromisoformat(meta["ended"]) - datetime.fromisoformat(
                    meta["started"]
                )
                outcome.data = {
                    "setup_s": float(meta["testbed_setup_s"]),
                    "teardown_s": float(meta["testbed_teardown_s"]),
                    "run_s": run_s.total_seconds(),
                    "backend": meta.get("impairment_backend"),
                }
            except (OSError, ValueError, KeyError, TypeError) as error:
                outcome.error = f"unreadable result: {type(error).__name__}: {error}"
        outcomes.append(outcome)
        if outcome.error is not None:
            break
    return outcomes


# --- the machine ------------------------------------------------------------------------


def _first_line(argv: list[str], contains: str = "") -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError) as error:
        return f"unknown ({error})"
    for line in (done.stdout + "\n" + done.stderr).splitlines():
        if line.strip() and contains in line:
            return line.strip()
    return "unknown"


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return platform.processor() or "unknown"


def _ram() -> str:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return "unknown"


def _os_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.partition("=")[2].strip('"')
    return platform.system()


def _git() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=20, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else ""

    if shutil.which("git") is None:
        return "unknown"
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return f"{commit} (with uncommitted changes)" if dirty else commit


def machine() -> JSON:
    from lab._version import __version__  # noqa: PLC0415 - the lab, as installed

    tcpdump = _first_line(["tcpdump", "--version"], "tcpdump version")
    libpcap = _first_line(["tcpdump", "--version"], "libpcap version")
    return {
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "kernel": f"{platform.release()} {platform.version()} ({platform.machine()})",
        "os": _os_name(),
        "ram": _ram(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "protolab": f"{__version__}, commit {_git()}",
        "tcpdump": f"{tcpdump}; {libpcap}",
        "tshark": _first_line(["tshark", "--version"], "TShark"),
        "iperf3": _first_line(["iperf3", "--version"], "iperf"),
        "iproute2": _first_line(["ip", "-V"], "iproute2"),
    }


# --- the markdown -----------------------------------------------------------------------


def _pps(value: float) -> str:
    return f"{value:,.0f}"


def _bound(stopped_by: str) -> str:
    """A rate the search stopped at for a reason other than loss is a lower bound."""
    return "" if stopped_by == "loss" else ">= "


def _ratio_text(row: JSON) -> str:
    engine_exact = row["engine_stopped_by"] == "loss"
    veth_exact = row["veth_stopped_by"] == "loss"
    ratio = f"{row['ratio']:.2f}"
    if engine_exact and not veth_exact:
        return f"<= {ratio}"
    if veth_exact and not engine_exact:
        return f">= {ratio}"
    if not engine_exact and not veth_exact:
        return f"~{ratio} (both lower bounds)"
    return ratio


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms"


class Markdown:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, *lines: str) -> None:
        self.lines.extend(lines)

    def para(self, text: str, *, first: str = "", rest: str = "", blank: bool = True) -> None:
        """A paragraph, wrapped to 100 columns (never inside a word or a `code span`)."""
        line, fresh = first, True
        for word in text.split(" "):
            if not fresh and len(line) + 1 + len(word) > 100 and line.count("`") % 2 == 0:
                self.lines.append(line)
                line = rest + word
            else:
                line = line + word if fresh else f"{line} {word}"
            fresh = False
        self.lines.append(line)
        if blank:
            self.lines.append("")

    def bullets(self, *items: str) -> None:
        for item in items:
            self.para(item, first="* ", rest="  ", blank=False)
        self.add("")

    def table(self, head: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
        self.add("| " + " | ".join(head) + " |", "|" + "---|" * len(head))
        self.add(*("| " + " | ".join(row) + " |" for row in rows))
        self.add("")

    def command(self, outcome: Outcome) -> None:
        self.para(
            f"Command ({outcome.seconds:.0f} s; load average {outcome.load_before} before,"
            f" {outcome.load_after} after; other processes kept {outcome.others_cpus:.1f}"
            f" of {os.cpu_count()} CPUs busy on average):"
        )
        self.add("```sh", outcome.shown, "```", "")

    def text(self) -> str:
        return "\n".join(self.lines).rstrip() + "\n"


@dataclass
class Report:
    started: datetime
    ended: datetime
    seconds: float
    load_start: str
    load_end: str
    others_cpus: float
    machine: JSON
    impairment: Outcome
    capture: Outcome
    analysis: Outcome
    quickstart: list[Outcome]


def _sender_name(row: JSON) -> str:
    return "Python" if row["sender"] == "python" else "iperf3 -u -l 64"


def _render_machine(md: Markdown, report: Report) -> None:
    m = report.machine
    md.add("## Machine and run", "")
    md.table(
        ["", ""],
        [
            ["date (UTC)", f"{report.started:%Y-%m-%d %H:%M:%S} – {report.ended:%H:%M:%S}"],
            ["duration", f"{report.seconds:.0f} s for all benchmarks"],
            ["CPU", f"{m['cpu']}, {m['cpus']} logical CPUs ({m['cpus_usable']} usable)"],
            ["kernel", m["kernel"]],
            ["OS", m["os"]],
            ["RAM", m["ram"]],
            ["Python", m["python"]],
            ["protolab", m["protolab"]],
            ["tcpdump", m["tcpdump"]],
            ["tshark", m["tshark"]],
            ["iperf3", m["iperf3"]],
            ["iproute2", m["iproute2"]],
            ["load average (1, 5, 15 min) at start", report.load_start],
            ["load average (1, 5, 15 min) at end", report.load_end],
            [
                "CPUs kept busy by other processes",
                f"{report.others_cpus:.1f} of {m['cpus']} on average over the run",
            ],
        ],
    )
    md.para(
        f"The machine has {m['cpus']} CPUs. A load average above that, or other processes"
        " keeping CPUs busy (the machine's busy time in /proc/stat minus the CPU time of the"
        " benchmarks' own processes), means other work competed with the benchmarks: every"
        " figure below is then worse than on an idle machine, the ratios less so since both"
        " sides of each suffered it. Each benchmark's own load is given with its command."
    )


def _render_summary(md: Markdown, report: Report) -> None:
    imp, cap, ana = report.impairment.data, report.capture.data, report.analysis.data
    walls = [o.seconds for o in report.quickstart]
    rows: list[list[str]] = []
    for row in imp["forwarding"]:
        rows.append(
            [
                f"impairment engine vs plain veth ({_sender_name(row)} sender,"
                f" {row['size']} B packets), max pps at <= 0.1 % self-loss",
                f"**{_ratio_text(row)}** ({_pps(row['engine_pps'])} vs"
                f" {_bound(row['veth_stopped_by'])}{_pps(row['veth_pps'])} pps)",
            ]
        )
    if imp.get("iperf3_error"):
        rows.append(["impairment engine vs plain veth, iperf3 sender", imp["iperf3_error"]])
    for r in cap["rows"]:
        cpu = f"; CPU {r['lab_cpu']:.1f} % vs {r['tcpdump_cpu']:.1f} %"
        if r["cpu_ratio"] is not None:
            cpu += f" (**{r['cpu_ratio']:.1f}x**)"
        rows.append(
            [
                f"lab sniffer vs tcpdump, {_pps(r['rate'])} pps offered",
                f"captured ratio **{r['captured_ratio']:.3f}** ({_pps(r['lab'])} vs"
                f" {_pps(r['tcpdump'])} of {_pps(r['sent'])} sent){cpu}",
            ]
        )
    if ana.get("tshark"):
        rows.append(
            [
                f"lab `read_pcap` vs `tshark -T fields`, {ana['packets']:,} packets",
                f"**{ana['speed_ratio']:.1f}x faster** ({ana['lab']['wall']:.2f} s vs"
                f" {ana['tshark']['wall']:.1f} s); peak RSS **{ana['rss_ratio']:.2f}x less**"
                f" ({ana['lab']['rss_kb'] / 1024:.0f} vs {ana['tshark']['rss_kb'] / 1024:.0f}"
                " MiB)",
            ]
        )
    delay = imp["delay"]
    rows += [
        [
            f"engine delay error at delay_ms = {imp['settings']['delay_ms']}",
            f"{delay['engine_late_mean_ms']:.3f} ms late on average, p99"
            f" {delay['engine_late_p99_ms']:.3f} ms (vs its schedule); socket: +"
            f" {delay['socket_error_mean_ms']:.3f} ms, p99 + {delay['socket_error_p99_ms']:.3f} ms",
        ],
        [
            f"`lab run {QUICKSTART}`, wall time",
            f"median **{_median(walls):.2f} s** (min {min(walls):.2f}, max {max(walls):.2f};"
            f" {len(walls)} runs)",
        ],
        [
            "testbed up / down (`meta.json`)",
            f"median **{_ms(_median([o.data['setup_s'] for o in report.quickstart]))}** /"
            f" **{_ms(_median([o.data['teardown_s'] for o in report.quickstart]))}**",
        ],
    ]
    md.add("## Summary: the lab against its peers, same run", "")
    md.table(["comparison", "this run"], rows)


def _render_impairment(md: Markdown, outcome: Outcome) -> None:
    imp = outcome.data
    s = imp["settings"]
    delay = imp["delay"]
    md.add("## Impairment engine vs a plain veth link", "")
    md.command(outcome)
    md.para(
        "The engine forwards between two TUN devices; the reference is the same two namespaces"
        " joined by a veth pair, no engine. One sender process in the client namespace sends"
        " UDP at each rate of a ladder for a bounded step, counted by the kernels' own"
        " counters; a rate passes at"
        f" <= {s['self_loss_limit'] * 100:g} % self-loss. After the first failing rate,"
        f" {s['refine']} bisection step(s) narrow the figure down. Python sender"
        f" (`bench/impairment.py` itself): rates {', '.join(_pps(r) for r in s['python_rates'])}"
        f" pps, {s['step_s']:g} s each, to a socket nobody reads; Udp.OutDatagrams at the"
        " client against Ip.InReceives at the server."
    )
    if s.get("iperf3_rates"):
        md.para(
            f"iperf3 sender: `ip netns exec <client> iperf3 -c 198.18.0.2 -u -l"
            f" {s['iperf3_length']} -b <rate x {s['iperf3_length'] * 8}> -t"
            f" {s['iperf3_step_s']}` against `ip netns exec <server> iperf3 -s -1 -B 198.18.0.2"
            " --rcv-timeout 3000` (a one-off server per step, which exits by itself), rates"
            f" {', '.join(_pps(r) for r in s['iperf3_rates'])} pps. The server reads every"
            " datagram on the same CPUs, so iperf3 is not necessarily the faster sender here."
            " Loss: Udp.OutDatagrams at the client against Ip.InReceives minus Tcp.InSegs (the"
            " control connection) at the server."
        )
    md.para(
        "Highest rate at <= 0.1 % self-loss, in packets/s. *Stopped by*: `loss`, the next rate"
        " lost more; `sender`, the sender fell short of its target, so the link may carry more"
        " and the figure is a lower bound (`>=`); `ladder`, the top rate passed (also a lower"
        " bound). A ratio against a lower bound is an upper bound (`<=`)."
    )
    md.table(
        [
            "sender",
            "IP packet",
            "engine",
            "stopped by",
            "plain veth",
            "stopped by",
            "engine / veth",
        ],
        [
            [
                _sender_name(row),
                f"{row['size']} B",
                _bound(row["engine_stopped_by"]) + _pps(row["engine_pps"]),
                row["engine_stopped_by"],
                _bound(row["veth_stopped_by"]) + _pps(row["veth_pps"]),
                row["veth_stopped_by"],
                f"**{_ratio_text(row)}**",
            ]
            for row in imp["forwarding"]
        ],
    )
    if imp.get("iperf3_error"):
        md.para(f"iperf3 was not measured: {imp['iperf3_error']}.")
    md.para(
        f"Delay error at `delay_ms = {s['delay_ms']}` ({s['delay_rate_pps']:,} packets/s,"
        f" {s['delay_samples']:,} packets): the engine sends"
        f" {delay['engine_late_mean_ms']:.3f} ms late on average (p99"
        f" {delay['engine_late_p99_ms']:.3f} ms) against its schedule (its ground truth), and"
        f" the receiving socket sees {s['delay_ms']} ms + {delay['socket_error_mean_ms']:.3f}"
        f" ms (p99 + {delay['socket_error_p99_ms']:.3f} ms), from kernel receive timestamps."
    )
    md.add("<details><summary>Every step</summary>", "")
    md.table(
        ["sender", "link", "IP packet", "target pps", "sent pps", "self-loss", "passed"],
        [
            [
                st["sender"],
                st["link"],
                f"{st['size']} B",
                _pps(st["target_pps"]),
                _pps(st["achieved_pps"]),
                f"{st['self_loss'] * 100:.3f} %",
                "yes" if st["ok"] else "no",
            ]
            for st in imp["steps"]
        ],
    )
    md.add("</details>", "")


def _render_capture(md: Markdown, outcome: Outcome) -> None:
    cap = outcome.data
    cs = cap["settings"]
    md.add("## The lab's sniffer vs tcpdump", "")
    md.command(outcome)
    md.para(
        f"{cs['payload_bytes']}-byte UDP payloads over a plain veth link,"
        f" {cs['seconds_per_rate']:g} s per rate, {cs['senders']} sender process; the lab's"
        f" `Sniffer` and `tcpdump` capture the client's `{cs['interface']}` at the same time"
        f" with the filter `{cs['filter']}`. CPU is each capturer's own (utime + stime) over"
        " the step; *sent pps* below the target means the sender could not keep up (the load"
        " is rate x seconds at most, so *sent* can fall short of it)."
    )
    rows = []
    for r in cap["rows"]:
        cpu_ratio = r["cpu_ratio"]
        rows.append(
            [
                _pps(r["rate"]),
                _pps(r["sent"]),
                _pps(r["achieved"]),
                _pps(r["lab"]),
                _pps(r["tcpdump"]),
                f"{r['captured_ratio']:.3f}" if r["captured_ratio"] is not None else "n/a",
                f"{r['lab_drops']:,} / {r['tcpdump_drops']:,}",
                f"{r['lab_cpu']:.1f}",
                f"{r['tcpdump_cpu']:.1f}",
                f"{cpu_ratio:.1f}x" if cpu_ratio is not None else "n/a (tcpdump 0 %)",
            ]
        )
    md.table(
        [
            "target pps",
            "sent",
            "sent pps",
            "lab captured",
            "tcpdump captured",
            "lab / tcpdump",
            "kernel drops (lab / tcpdump)",
            "lab CPU %",
            "tcpdump CPU %",
            "CPU lab / tcpdump",
        ],
        rows,
    )


def _render_analysis(md: Markdown, outcome: Outcome) -> None:
    ana = outcome.data
    lab = ana["lab"]
    md.add("## pcap to pandas: `read_pcap` vs tshark", "")
    md.command(outcome)
    md.para(
        f"A generated LINKTYPE_RAW capture of {ana['packets']:,} UDP and TCP packets"
        f" ({ana['file_mb']:.0f} MB). The lab's `read_pcap` (fresh interpreter, fastest of"
        f" {lab['runs']} runs): {lab['wall']:.3f} s, peak RSS {lab['rss_kb'] / 1024:.0f} MiB"
        f" ({(lab['rss_kb'] - lab['base_kb']) / 1024:.0f} MiB above the imported interpreter),"
        f" tracemalloc peak {lab['traced'] / 2**20:.0f} MiB, {int(lab['rows']):,} rows."
    )
    if not ana.get("tshark"):
        md.para("tshark was not measured (not installed).")
        return
    ts = ana["tshark"]
    md.para(
        f"`tshark -n -r FILE -T fields` with {len(ts['fields'])} fields (`-e"
        f" {' -e '.join(ts['fields'][:3])} ...`; one run, output counted, not kept):"
        f" {ts['wall']:.2f} s, peak RSS {ts['rss_kb'] / 1024:.0f} MiB,"
        f" {int(ts['lines']):,} lines."
    )
    md.para(
        f"Ratio: the lab is **{ana['speed_ratio']:.1f}x faster** and needs"
        f" **{ana['rss_ratio']:.2f}x less** peak memory."
    )


def _render_quickstart(md: Markdown, outcomes: list[Outcome], cpus: int) -> None:
    first, last = outcomes[0], outcomes[-1]
    walls = [o.seconds for o in outcomes]
    inside = [o.data["run_s"] for o in outcomes]
    setups = [o.data["setup_s"] for o in outcomes]
    teardowns = [o.data["teardown_s"] for o in outcomes]
    md.add("## Quickstart wall time, testbed up and down", "")
    md.para(
        f"Command, run {len(outcomes)} times (load average {first.load_before} before"
        f" the first, {last.load_after} after the last; other processes kept"
        f" {_median([o.others_cpus for o in outcomes]):.1f} of {cpus} CPUs busy, median"
        " over the runs):"
    )
    md.add("```sh", first.shown, "```", "")
    md.para(
        "*Wall time* is the whole command as a user waits for it (interpreter start, imports,"
        " testbed, TCP and UDP exchanges of 1,000 messages each at 1,000/s, wire analysis,"
        " report); *in the run* is `started` to `ended` of the run's `meta.json` (the same"
        " without the interpreter start and the report); *testbed up* and *down* are its"
        " `testbed_setup_s` and `testbed_teardown_s`."
    )
    md.table(
        ["run", "wall time", "in the run", "testbed up", "testbed down"],
        [
            [
                str(i + 1),
                f"{o.seconds:.2f} s",
                f"{o.data['run_s']:.2f} s",
                _ms(o.data["setup_s"]),
                _ms(o.data["teardown_s"]),
            ]
            for i, o in enumerate(outcomes)
        ]
        + [
            [
                "**median**",
                f"**{_median(walls):.2f} s**",
                f"**{_median(inside):.2f} s**",
                f"**{_ms(_median(setups))}**",
                f"**{_ms(_median(teardowns))}**",
            ]
        ],
    )


def render(report: Report) -> str:
    md = Markdown()
    imp, cap, ana = report.impairment.data, report.capture.data, report.analysis.data
    md.add("# Benchmarks", "")
    md.para(
        "Generated by `make bench` (`bench/report.py`): do not edit by hand, run `sudo make"
        " bench` to measure again. One run on one machine: the figures move with the machine"
        " and with whatever else it runs (see the load), so compare the ratios, which pit the"
        " lab against its peers measured in the same run, seconds apart."
    )
    _render_machine(md, report)
    _render_summary(md, report)
    _render_impairment(md, report.impairment)
    _render_capture(md, report.capture)
    _render_analysis(md, report.analysis)
    _render_quickstart(md, report.quickstart, int(report.machine["cpus"] or 0))
    s, cs = imp["settings"], cap["settings"]
    md.add("## Reduced settings (to keep `make bench` to a few minutes)", "")
    md.bullets(
        f"`bench/analysis.py` reads {ana['packets']:,} packets instead of its default"
        " 1,000,000: tshark alone needs minutes for a million packets on 2 busy CPUs.",
        f"`bench/impairment.py`: {s['step_s']:g} s per Python step and {s['iperf3_step_s']} s"
        f" per iperf3 step, fixed ladders and {s['refine']} bisection step(s); the delay test"
        f" sends {s['delay_samples']:,} packets.",
        f"`bench/capture.py`: its defaults ({cs['seconds_per_rate']:g} s per rate).",
        f"The quickstart runs {len(report.quickstart)} times.",
        "Every load stops by itself (fixed rates x fixed durations), and `bench/report.py`"
        " gives each benchmark a time limit, after which it is stopped and its testbeds removed.",
    )
    return md.text()


# --- main -------------------------------------------------------------------------------


def _raise_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if uid and gid:  # under sudo: the file belongs to whoever asked for it
        with contextlib.suppress(OSError):
            os.chown(tmp, int(uid), int(gid))
    os.replace(tmp, path)


@contextlib.contextmanager
def _scratch() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="protolab-bench-") as folder:
        yield Path(folder)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--quickstart-runs", type=int, default=3)
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("bench/report.py needs root (namespaces, packet sockets)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _raise_interrupt)
    python = sys.executable
    lab = Path(python).parent / "lab"
    started, load_start, clock = datetime.now(UTC), _load(), time.perf_counter()
    busy, own = _busy_s(), _children_s()
    info = machine()
    with _scratch() as out:
        steps: list[Callable[[], Outcome]] = [
            lambda: run_json(
                "impairment", [python, "bench/impairment.py", "--iperf3", "--refine", "2"], out, 240
            ),
            lambda: run_json("capture", [python, "bench/capture.py"], out, 120),
            lambda: run_json(
                "analysis",
                [python, "bench/analysis.py", "--packets", str(ANALYSIS_PACKETS)],
                out,
                240,
            ),
        ]
        outcomes = [step() for step in steps]
        quick = run_quickstart(lab, out, max(1, args.quickstart_runs), 60)
    failed = [o for o in [*outcomes, *quick] if o.error is not None]
    if failed:
        for o in failed:
            print(f"bench: {o.name} failed: {o.error}", file=sys.stderr)
        print(f"bench: {args.output} left as it was", file=sys.stderr)
        return 1
    seconds = time.perf_counter() - clock
    others = (_busy_s() - busy) - (_children_s() - own)
    report = Report(
        started=started,
        ended=datetime.now(UTC),
        seconds=seconds,
        load_start=load_start,
        load_end=_load(),
        others_cpus=max(0.0, others / seconds),
        machine=info,
        impairment=outcomes[0],
        capture=outcomes[1],
        analysis=outcomes[2],
        quickstart=quick,
    )
    _write_atomically(args.output, render(report))
    print(f"\nbench: wrote {args.output} ({report.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
