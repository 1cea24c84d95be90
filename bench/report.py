"""Run every benchmark and write ``docs/benchmarks.md`` (``make bench``; run as root).

    sudo .venv/bin/python bench/report.py [--output docs/benchmarks.md] [--quickstart-runs 3]

Runs, one after the other and each as its own process with a time limit:

* ``bench/impairment.py --iperf3 --sockperf``: the engine's forwarding rate against a
  plain veth link (a Python sender, sockperf and iperf3), the compiled engine and the
  Python reference alike, the engine's CPU per million packets, and its delay error at
  1000 and 50,000 packets/s with a C lateness probe (``bench/lateness_probe.c``) run at
  the same time;
* ``bench/throughput.py``: TCP bulk (iperf3) through the engine, the Python engine and a
  plain veth link, round by round, with CPU per Gbit; and the lab's own TCP bulk run;
* ``bench/impairment.py --differential-only``: the compiled core against the Python
  reference model, decision for decision, timed;
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
#: packets per scenario of the differential check (issue 15 asks for 1M in the benchmark)
DIFFERENTIAL_PACKETS = 1_000_000
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


def _owned_testbeds(pid: int, listed: Path | None) -> list[str]:
    """Run ids of testbeds whose state file names ``pid`` as their owner, and those the
    benchmark listed as its own in ``listed`` (``lab testbed up`` ones: their owner is
    the command that built them), if they still exist."""
    from lab.testbed import read_states  # noqa: PLC0415 - only on the error path

    named: set[str] = set()
    if listed is not None:
        with contextlib.suppress(OSError):
            named = set(listed.read_text().split())
    return [
        str(s["run_id"])
        for s in read_states()
        if s.get("owner_pid") == pid or str(s.get("run_id")) in named
    ]


def _stop(proc: subprocess.Popen[str], reason: str, listed: Path | None = None) -> None:
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

    for run_id in _owned_testbeds(proc.pid, listed):
        with contextlib.suppress(Exception):
            destroy(run_id)


def run(
    name: str,
    argv: list[str],
    out: Path,
    timeout: float,
    *,
    capture: bool,
    listed: Path | None = None,
) -> Outcome:
    """Run one benchmark process, bounded by ``timeout`` seconds; ``listed``: where it
    writes the ids of the testbeds it keeps up (removed if it has to be stopped)."""
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
        _stop(proc, f"{name} ran over {timeout:.0f} s", listed)
        outcome.error = f"ran over its limit of {timeout:.0f} s and was stopped"
    except BaseException:  # Ctrl-C or SIGTERM of make: take the benchmark down cleanly
        _stop(proc, "interrupted", listed)
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


def run_json(
    name: str, argv: list[str], out: Path, timeout: float, *, listed: Path | None = None
) -> Outcome:
    """A benchmark script that writes ``$OUT/<name>.json``."""
    path = out / f"{name}.json"
    outcome = run(name, [*argv, "--json", str(path)], out, timeout, capture=False, listed=listed)
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
        "sockperf": _first_line(["sockperf", "--version"], "sockperf"),
        "gcc": _first_line(["gcc", "--version"], "gcc"),
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
    throughput: Outcome
    differential: Outcome
    capture: Outcome
    analysis: Outcome
    quickstart: list[Outcome]


ENGINE_OF_LINK = {"engine": "compiled", "engine-python": "python"}
LINK_ORDER = ("engine", "engine-python", "tun-floor", "veth", "veth-segments")


def _sender_name(row: JSON) -> str:
    payload = row["size"] - 28  # the IP packet less its IP and UDP headers
    return {
        "python": "Python",
        "iperf3": f"iperf3 -u -l {payload}",
        "sockperf": f"sockperf -m {payload}",
        "sockperf-x2": f"2 x sockperf -m {payload}",
    }.get(row["sender"], str(row["sender"]))


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
            ["sockperf", m.get("sockperf", "unknown")],
            ["gcc (builds the lateness probe)", m.get("gcc", "unknown")],
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


def _qualified(ratio: float, numerator_exact: bool, denominator_exact: bool, unit: str = "") -> str:
    """A ratio of two rates, either of which may be a lower bound (``>=``)."""
    text = f"{ratio:.2f}{unit}"
    if numerator_exact and not denominator_exact:
        return f"<= {text}"
    if denominator_exact and not numerator_exact:
        return f">= {text}"
    if not numerator_exact and not denominator_exact:
        return f"~{text} (both lower bounds)"
    return text


def _engine_name(engine: str) -> str:
    return {
        "compiled": "compiled engine",
        "compiled-sleep": "compiled engine, spinning off (it sleeps to each deadline)",
    }.get(engine, "Python engine")


def _cpu_mpkt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def _forwarding_rows(imp: JSON) -> list[JSON]:
    """Engine vs veth rows of both engines (compiled first)."""
    return [*imp["forwarding"], *(imp.get("forwarding_python_engine") or [])]


def _engine_pairs(imp: JSON) -> list[tuple[JSON, JSON]]:
    """(compiled row, Python row) for each sender and size measured with both engines."""
    python = {(r["sender"], r["size"]): r for r in imp.get("forwarding_python_engine") or []}
    return [
        (row, python[(row["sender"], row["size"])])
        for row in imp["forwarding"]
        if (row["sender"], row["size"]) in python
    ]


def _differential_range(rows: list[JSON]) -> tuple[float, float, float, float]:
    """(lowest, highest) decisions/s of the compiled and of the Python model."""
    compiled = [r["compiled_decisions_per_s"] for r in rows]
    python = [r["python_decisions_per_s"] for r in rows]
    return min(compiled), max(compiled), min(python), max(python)


def _lateness_rows(imp: JSON) -> list[JSON]:
    return list(imp.get("delays") or [])


def _lateness_groups(imp: JSON) -> dict[tuple[str, int], list[JSON]]:
    """The delay test's tries, per (engine, rate), in the order they ran."""
    groups: dict[tuple[str, int], list[JSON]] = {}
    for row in _lateness_rows(imp):
        groups.setdefault((row["engine"], row["rate_pps"]), []).append(row)
    return groups


def _limit_text(limit: str) -> str:
    return {
        "engine": "the engine (>= 0.9 CPU)",
        "forwarder": "the floor's forwarder (>= 0.9 CPU)",
        "sender": "the sender (iperf3 client >= 90 % of a CPU)",
        "receiver": "the receiver (iperf3 server >= 90 % of a CPU)",
        "machine": "the machine's CPUs (>= 90 % busy, other work included)",
    }.get(limit, "nothing saturated")


def _limits(limits: list[str]) -> str:
    """Each try's limit, in order, counted: ``machine x2``."""
    counted: dict[str, int] = {}
    for limit in limits:
        counted[limit] = counted.get(limit, 0) + 1
    return ", ".join(f"{k} x{n}" if n > 1 else k for k, n in counted.items())


def _render_summary(md: Markdown, report: Report) -> None:
    imp, cap, ana = report.impairment.data, report.capture.data, report.analysis.data
    tp, diff = report.throughput.data, report.differential.data.get("differential") or []
    walls = [o.seconds for o in report.quickstart]
    rows: list[list[str]] = []
    for row in _forwarding_rows(imp):
        rows.append(
            [
                f"{_engine_name(row['engine'])} vs plain veth ({_sender_name(row)} sender,"
                f" {row['size']} B packets), max pps at <= 0.1 % self-loss",
                f"**{_ratio_text(row)}** ({_bound(row['engine_stopped_by'])}"
                f"{_pps(row['engine_pps'])} vs {_bound(row['veth_stopped_by'])}"
                f"{_pps(row['veth_pps'])} pps); engine CPU"
                f" {_cpu_mpkt(row['engine_cpu_s_per_mpkt'])} per million packets"
                + _floor_text(row),
            ]
        )
    if imp.get("iperf3_error"):
        rows.append(["impairment engine vs plain veth, iperf3 sender", imp["iperf3_error"]])
    if imp.get("sockperf_error"):
        rows.append(["impairment engine vs plain veth, sockperf sender", imp["sockperf_error"]])
    for compiled, python in _engine_pairs(imp):
        ratio = compiled["engine_pps"] / python["engine_pps"] if python["engine_pps"] else 0.0
        text = _qualified(
            ratio,
            compiled["engine_stopped_by"] == "loss",
            python["engine_stopped_by"] == "loss",
            "x",
        )
        rows.append(
            [
                f"compiled vs Python engine ({_sender_name(compiled)} sender,"
                f" {compiled['size']} B packets), max pps at <= 0.1 % self-loss",
                f"**{text}**"
                f" ({_bound(compiled['engine_stopped_by'])}{_pps(compiled['engine_pps'])} vs"
                f" {_bound(python['engine_stopped_by'])}{_pps(python['engine_pps'])} pps)",
            ]
        )
    if diff:
        low_c, high_c, low_p, high_p = _differential_range(diff)
        mismatches = sum(int(r["mismatches"]) for r in diff)
        rows.append(
            [
                f"compiled core vs Python reference model, {diff[0]['packets']:,} synthetic"
                f" packets x {len(diff)} scenarios",
                f"**{mismatches:,} mismatches**; {low_c / 1e6:.1f}–{high_c / 1e6:.1f} M vs"
                f" {low_p / 1e6:.2f}–{high_p / 1e6:.2f} M decisions/s",
            ]
        )
    links, ratios = tp["links"], tp["ratios"]
    seconds = tp["settings"]["seconds"]
    for link in ("engine", "engine-python"):
        ratio = ratios[f"{link}_over_veth"]
        name = _engine_name(ENGINE_OF_LINK[link])
        rows.append(
            [
                f"TCP bulk through the {name} vs plain veth (iperf3 sender, cubic,"
                f" {seconds} s), median of {len(ratio['each'])} same-round ratios",
                f"**{ratio['median']:.3f}** ({links[link]['gbit_s']:.2f} vs"
                f" {links['veth']['gbit_s']:.1f} Gbit/s, medians); limited by"
                f" {_limits(links[link]['limits'])} / {_limits(links['veth']['limits'])}"
                " (this link / veth)",
            ]
        )
    for link in ("engine", "engine-python"):
        segments = ratios.get(f"{link}_over_veth-segments")
        if segments is None:
            continue
        rows.append(
            [
                f"TCP bulk through the {_engine_name(ENGINE_OF_LINK[link])} vs veth with TCP"
                " segmentation offload off (each segment its own packet, as through the"
                f" engine; iperf3, cubic, {seconds} s), median of {len(segments['each'])}"
                " same-round ratios",
                f"**{segments['median']:.3f}** ({links[link]['gbit_s']:.2f} vs"
                f" {links['veth-segments']['gbit_s']:.2f} Gbit/s, medians); limited by"
                f" {_limits(links[link]['limits'])} /"
                f" {_limits(links['veth-segments']['limits'])} (this link / veth-segments)",
            ]
        )
    if floor := ratios.get("engine_over_tun-floor"):
        rows.append(
            [
                "TCP bulk through the compiled engine vs the TUN floor (the same two TUN"
                " devices, forwarded by `bench/tun_floor.c`: a read and a write per packet,"
                f" nothing decided; iperf3, cubic, {seconds} s), median of"
                f" {len(floor['each'])} same-round ratios",
                f"**{floor['median']:.3f}** ({links['engine']['gbit_s']:.2f} vs"
                f" {links['tun-floor']['gbit_s']:.2f} Gbit/s, medians); the floor itself is"
                f" {ratios['tun-floor_over_veth']['median']:.3f} of plain veth"
                + (
                    f" and {ratios['tun-floor_over_veth-segments']['median']:.3f} of veth-segments"
                    if "tun-floor_over_veth-segments" in ratios
                    else ""
                ),
            ]
        )
    rows.append(
        [
            "CPU seconds per Gbit delivered, TCP bulk (iperf3 sender): engine process,"
            " compiled / Python",
            f"**{links['engine']['engine_cpu_s_per_gbit']:.3f}** /"
            f" **{links['engine-python']['engine_cpu_s_per_gbit']:.3f}**; whole machine"
            f" {links['engine']['machine_cpu_s_per_gbit']:.3f} /"
            f" {links['engine-python']['machine_cpu_s_per_gbit']:.3f}, plain veth"
            f" {links['veth']['machine_cpu_s_per_gbit']:.3f} (other work included)",
        ]
    )
    bulk = tp.get("lab_bulk")
    if bulk:
        reference = tp["lab_bulk_reference"]
        share = bulk["app_limited_share"]
        rows.append(
            [
                "the lab's own TCP bulk (`lab run`, Python sender,"
                f" {tp['settings']['lab_bulk_size']} B messages, {seconds} s) vs iperf3 through"
                " the compiled engine, tries in a row",
                f"**{tp['lab_bulk_over_iperf3_engine']:.2f}** ({bulk['goodput_bps'] / 1e9:.3f} vs"
                f" {reference['gbit_s']:.3f} Gbit/s)"
                + (
                    f"; the lab's send queue was empty in {share:.0%} of TCP_INFO samples"
                    + (": bounded by its sender" if share >= 0.5 else "")
                    if share is not None
                    else ""
                ),
            ]
        )
    for (engine, rate), tries in _lateness_groups(imp).items():
        ratios = [t["late_p99_over_probe_p99"] for t in tries]
        measured = [r for r in ratios if r is not None]
        failed = next(((t.get("probe") or {}).get("error") for t in tries if t.get("probe")), None)
        rows.append(
            [
                f"{_engine_name(engine)} lateness p99 vs a C `clock_nanosleep` probe's,"
                f" same time (Python sender, {_pps(rate)} pps, delay"
                f" {imp['settings']['delay_ms']} ms)"
                + (f", median of {len(tries)} tries" if len(tries) > 1 else ""),
                "probe failed: " + str(failed)
                if not measured
                else f"**{statistics.median(measured):.2f}x**"
                + (
                    f" (each try: {', '.join(f'{r:.2f}x' for r in measured)};"
                    if len(tries) > 1
                    else " ("
                )
                + " engine p99 "
                + ", ".join(f"{t['engine_late_p99_ms']:.3f}" for t in tries)
                + " vs probe p99 "
                + ", ".join(
                    f"{(t.get('probe') or {}).get('p99_ms', float('nan')):.3f}" for t in tries
                )
                + " ms)"
                + _wake_text(tries),
            ]
        )
    groups = _lateness_groups(imp)
    for rate in sorted({r for _, r in groups}):
        spin, sleep = groups.get(("compiled", rate)), groups.get(("compiled-sleep", rate))
        if not spin or not sleep:
            continue
        p99 = [statistics.median(t["engine_late_p99_ms"] for t in g) for g in (spin, sleep)]
        shares = [
            statistics.median(t["engine_cpu_share"] for t in g if t["engine_cpu_share"] is not None)
            if any(t["engine_cpu_share"] is not None for t in g)
            else float("nan")
            for g in (spin, sleep)
        ]
        rows.append(
            [
                "compiled engine, waking 50 us early and spinning to the deadline vs sleeping"
                f" to it (spinning off), {_pps(rate)} pps, delay {imp['settings']['delay_ms']}"
                f" ms, medians of {len(spin)} tries",
                f"lateness p99 **{p99[0]:.3f}** vs **{p99[1]:.3f}** ms"
                f" ({p99[0] / p99[1]:.2f}x); engine CPU {shares[0]:.2f} vs {shares[1]:.2f} of a CPU"
                if p99[1]
                else "n/a",
            ]
        )
    if imp.get("probe_error"):
        rows.append(["lateness probe", imp["probe_error"]])
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
            f"compiled engine delay error at delay_ms = {imp['settings']['delay_ms']} (Python"
            f" sender, {_pps(delay['rate_pps'])} pps)",
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


def _wake_text(tries: list[JSON]) -> str:
    """Wake-ups alone (the writer free at the deadline), beside the whole lateness."""
    ratios = [
        t["wake_late_p99_over_probe_p99"] for t in tries if t.get("wake_late_p99_over_probe_p99")
    ]
    if not ratios:
        return ""  # runs from before the split
    share = statistics.median(t["wake_share"] for t in tries)
    text = (
        f"; wake-ups only (the writer free at the deadline, {share:.0%} of packets):"
        f" **{statistics.median(ratios):.2f}x** the probe's p99"
    )
    if share >= 0.99:
        return text
    return (
        text
        + "; the rest queued behind earlier writes (arrivals "
        + ", ".join(f"{t['arrival_gap_p50_us']:.1f}" for t in tries)
        + " us apart, writes "
        + ", ".join(f"{t['write_gap_p50_us']:.1f}" for t in tries)
        + " us, medians per try)"
    )


def _engine_over_floor(row: JSON) -> str:
    """The engine's rate over the TUN floor's, either of which may be a lower bound."""
    return _qualified(
        row["ratio_to_floor"],
        row["engine_stopped_by"] == "loss",
        row["floor_stopped_by"] == "loss",
    )


def _floor_text(row: JSON) -> str:
    """The row's TUN floor and the engine's ratio to it, when the floor was measured."""
    if row.get("ratio_to_floor") is None:
        return ""
    ratio = _engine_over_floor(row)
    floor_over_veth = _qualified(
        row["floor_pps"] / row["veth_pps"] if row["veth_pps"] else float("nan"),
        row["floor_stopped_by"] == "loss",
        row["veth_stopped_by"] == "loss",
    )
    return (
        f"; the TUN floor (`bench/tun_floor.c`) {_bound(row['floor_stopped_by'])}"
        f"{_pps(row['floor_pps'])} pps, engine / floor **{ratio}**, floor / veth"
        f" {floor_over_veth}"
    )


def _render_impairment(md: Markdown, outcome: Outcome) -> None:
    imp = outcome.data
    s = imp["settings"]
    md.add("## Impairment engine vs a plain veth link", "")
    md.command(outcome)
    md.para(
        "The engine forwards between two TUN devices; the reference is the same two namespaces"
        " joined by a veth pair, no engine. Both engines are measured: the compiled core"
        " (`lab/impairment/_core.c`, the default) and the Python reference"
        ' (`impairment.engine = "python"`), each on its own clean testbed. One sender'
        " process in the client namespace sends UDP at each rate of a ladder for a bounded"
        " step, counted by the kernels' own counters; a rate passes at"
        f" <= {s['self_loss_limit'] * 100:g} % self-loss. After the first failing rate,"
        f" {s['refine']} bisection step(s) narrow the figure down. Python sender"
        f" (`bench/impairment.py` itself): rates {', '.join(_pps(r) for r in s['python_rates'])}"
        f" pps, {s['step_s']:g} s each, to a socket nobody reads; Udp.OutDatagrams at the"
        " client against Ip.InReceives at the server."
    )
    if s.get("sockperf_rates"):
        md.para(
            "sockperf sender (C++; it paces by busy-waiting, so it keeps one CPU busy at any"
            " rate): `ip netns exec <client> sockperf throughput -i 198.18.0.2 -m <IP packet -"
            f" 28> --mps <rate> -t {s['sockperf_step_s']} --dontwarmup` to the same unread"
            f" socket, rates {', '.join(_pps(r) for r in s['sockperf_rates'])} pps. Then two"
            " sockperf processes side by side, each sending half the rate (*2 x sockperf*, 100 B,"
            f" {', '.join(_pps(r) for r in s['sockperf_pair_rates'])} pps in all). Why two: on"
            " a veth pair the receiving namespace's whole IP/UDP receive path runs inside the"
            " sender's own send call, so with one sender veth stops where that one CPU does"
            " (`sender`): that is the most this sender gets through veth, and the one-sender"
            " ratio compares the engine with it. Two senders use both CPUs and show what the"
            " veth link itself carries; through the engine the two senders compete with the"
            " engine's threads for the same two CPUs. The Python engine is not measured with"
            " sockperf. The same sockperf searches also run over the *TUN floor*: the"
            " engine's own link, the same two TUN devices (`lab.testbed.open_tun_testbed`),"
            " forwarded instead by `bench/tun_floor.c`, one thread per direction doing a"
            " blocking read of one device and a write of the same bytes to the other: no"
            " model, no clock, no queue, no record. It is what a forwarder between two TUN"
            " devices, a packet per read and per write, reaches on this machine with nothing"
            " else to do, so *engine / floor* is the engine's own cost, and *floor / veth*"
            " the cost of the TUN design."
        )
    if s.get("iperf3_rates"):
        lengths = s.get("iperf3_lengths") or [s.get("iperf3_length", 64)]
        md.para(
            "iperf3 sender: `ip netns exec <client> iperf3 -c 198.18.0.2 -u -l"
            f" <{' or '.join(str(n) for n in lengths)}> -b <rate x length x 8> -t"
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
        " and the figure is a lower bound (`>=`): it is the sender's limit, not the link's;"
        " `ladder`, the top rate passed (also a lower bound). A ratio against a lower bound is"
        " an upper bound (`<=`). *Engine CPU* is the engine process's utime + stime"
        " (/proc/<pid>/stat) over the best passing step, per million packets that crossed it."
    )
    md.table(
        [
            "engine",
            "sender",
            "IP packet",
            "engine pps",
            "stopped by",
            "engine CPU per Mpkt",
            "plain veth pps",
            "stopped by",
            "engine / veth",
            "TUN floor pps",
            "engine / floor",
        ],
        [
            [
                row["engine"],
                _sender_name(row),
                f"{row['size']} B",
                _bound(row["engine_stopped_by"]) + _pps(row["engine_pps"]),
                row["engine_stopped_by"],
                _cpu_mpkt(row["engine_cpu_s_per_mpkt"]),
                _bound(row["veth_stopped_by"]) + _pps(row["veth_pps"]),
                row["veth_stopped_by"],
                f"**{_ratio_text(row)}**",
                "n/a"
                if row.get("floor_pps") is None
                else _bound(row["floor_stopped_by"]) + _pps(row["floor_pps"]),
                "n/a" if row.get("ratio_to_floor") is None else f"**{_engine_over_floor(row)}**",
            ]
            for row in _forwarding_rows(imp)
        ],
    )
    if imp.get("iperf3_error"):
        md.para(f"iperf3 was not measured: {imp['iperf3_error']}.")
    if imp.get("sockperf_error"):
        md.para(f"sockperf was not measured: {imp['sockperf_error']}.")
    pairs = _engine_pairs(imp)
    if pairs:
        md.para(
            "The two engines side by side (each against the same sender; the veth figures"
            " above are shared):"
        )
        md.table(
            ["sender", "IP packet", "compiled pps", "Python pps", "compiled / Python",
             "CPU per Mpkt, compiled / Python"],
            [
                [
                    _sender_name(c),
                    f"{c['size']} B",
                    _bound(c["engine_stopped_by"]) + _pps(c["engine_pps"]),
                    _bound(p["engine_stopped_by"]) + _pps(p["engine_pps"]),
                    "**"
                    + _qualified(
                        c["engine_pps"] / p["engine_pps"] if p["engine_pps"] else 0.0,
                        c["engine_stopped_by"] == "loss",
                        p["engine_stopped_by"] == "loss",
                        "x",
                    )
                    + "**",
                    f"{_cpu_mpkt(c['engine_cpu_s_per_mpkt'])} /"
                    f" {_cpu_mpkt(p['engine_cpu_s_per_mpkt'])}",
                ]
                for c, p in pairs
            ],
        )  # fmt: skip
    _render_lateness(md, imp)
    md.add("<details><summary>Every step</summary>", "")
    md.table(
        ["sender", "link", "IP packet", "target pps", "sent pps", "self-loss", "passed",
         "engine CPU per Mpkt"],
        [
            [
                st["sender"],
                st["link"],
                f"{st['size']} B",
                _pps(st["target_pps"]),
                _pps(st["achieved_pps"]),
                f"{st['self_loss'] * 100:.3f} %",
                "yes" if st["ok"] else "no",
                "" if st.get("cpu_s_per_mpkt") is None else f"{st['cpu_s_per_mpkt']:.2f} s",
            ]
            for st in imp["steps"]
        ],
    )  # fmt: skip
    md.add("</details>", "")


def _render_lateness(md: Markdown, imp: JSON) -> None:
    s = imp["settings"]
    rows = _lateness_rows(imp)
    md.add("### Delay error and timer lateness", "")
    md.para(
        f"Each engine on a testbed with `delay_ms = {s['delay_ms']}` (queue_limit raised so"
        " that every packet in flight fits), one Python sender sending 8-byte UDP datagrams at"
        f" {' and '.join(_pps(r) for r in s.get('delay_rates', [s['delay_rate_pps']]))}"
        " packets/s (in 1 ms batches above 1,000/s). *Engine lateness*: when the engine"
        " wrote each packet minus when its schedule said (its ground truth). *Socket*: the"
        f" one-way delay minus {s['delay_ms']} ms, from kernel receive timestamps. At the same"
        " time, on the same machine, `bench/lateness_probe.c` (compiled with gcc for the run)"
        " sleeps to absolute 1 ms deadlines with `clock_nanosleep(CLOCK_MONOTONIC,"
        " TIMER_ABSTIME)`, timer slack 1 ns as the engine sets its own, for as long as the"
        " sender sends, and reports how late it woke: what any sleeper on this machine"
        " suffered meanwhile. The last column is the engine's p99 over the probe's p99 (1.0:"
        " no later than any sleeper). A try's p99 ratio moves with what else the machine"
        f" does, so the test runs {s.get('delay_tries', 1)} time(s), each engine and rate once"
        " per try, and the summary gives the median ratio with every try's. *compiled-sleep*"
        " is the compiled engine with spinning off (`PROTOLAB_ENGINE_SPIN_NS=0`): its writer"
        " sleeps to each deadline instead of waking 50 us early and spinning the rest, so the"
        " two rows say what spinning buys in lateness and costs in CPU. *Wake-ups* are the"
        " packets whose writer was free at their deadline (the write before had ended): their"
        " lateness is the timer's, which is what the probe measures. The others waited behind"
        " earlier writes: the sender's bursts arrive faster than the engine can write them"
        " (each write runs the receiving namespace's UDP path), so above 1,000 pps the"
        " engine's p99 is mostly that queue, not its timer."
    )
    if imp.get("probe_error"):
        md.para(f"The probe was not run: {imp['probe_error']}.")
    md.table(
        ["engine", "pps", "try", "packets (arrived)", "engine late mean / p50 / p99 / max",
         "probe late mean / p50 / p99 / max", "socket + mean / p99", "engine p99 / probe p99",
         "wake-ups: share, p99 / probe p99"],
        [
            [
                r["engine"],
                _pps(r["rate_pps"]),
                str(r.get("try", 1)),
                f"{r['samples']:,} ({r['received']:,})",
                f"{r['engine_late_mean_ms']:.3f} / {r['engine_late_p50_ms']:.3f} /"
                f" {r['engine_late_p99_ms']:.3f} / {r['engine_late_max_ms']:.3f} ms",
                "n/a"
                if not r.get("probe") or "p99_ms" not in r["probe"]
                else f"{r['probe']['mean_ms']:.3f} / {r['probe']['p50_ms']:.3f} /"
                f" {r['probe']['p99_ms']:.3f} / {r['probe']['max_ms']:.3f} ms",
                f"{r['socket_error_mean_ms']:.3f} / {r['socket_error_p99_ms']:.3f} ms",
                "n/a"
                if r["late_p99_over_probe_p99"] is None
                else f"**{r['late_p99_over_probe_p99']:.2f}x**",
                "n/a"
                if r.get("wake_late_p99_over_probe_p99") is None
                else f"{r['wake_share']:.0%}, {r['wake_late_p99_over_probe_p99']:.2f}x",
            ]
            for r in sorted(rows, key=lambda r: (r["engine"] != "compiled", r["rate_pps"]))
        ],
    )  # fmt: skip


def _render_differential(md: Markdown, outcome: Outcome) -> None:
    rows = outcome.data.get("differential") or []
    md.add("## Compiled core vs the Python reference model", "")
    md.command(outcome)
    md.para(
        "`lab/impairment/differential.py` feeds the compiled model and the Python model the"
        " same seed and the same synthetic packet sequence per scenario (every impairment"
        " knob, both directions, per-direction overrides) and compares every decision and"
        " every ground-truth row; no packets, no root. *Decisions/s* is packets decided per"
        " second of each model's own time, one process, no I/O."
    )
    md.table(
        ["scenario", "packets", "mismatches", "compiled decisions/s", "Python decisions/s",
         "compiled / Python"],
        [
            [
                r["scenario"],
                f"{r['packets']:,}",
                f"**{r['mismatches']:,}**",
                f"{r['compiled_decisions_per_s'] / 1e6:.2f} M",
                f"{r['python_decisions_per_s'] / 1e6:.3f} M",
                f"{r['compiled_decisions_per_s'] / r['python_decisions_per_s']:.0f}x"
                if r["python_decisions_per_s"]
                else "n/a",
            ]
            for r in rows
        ],
    )  # fmt: skip


def _render_throughput(md: Markdown, outcome: Outcome) -> None:
    tp = outcome.data
    st, links, ratios = tp["settings"], tp["links"], tp["ratios"]
    md.add("## TCP bulk: iperf3 through the engine vs a plain veth link", "")
    md.command(outcome)
    md.para(f"The same sender, {tp['iperf3']}, client and server:")
    md.add("```sh", st["client_command"], st["server_command"], "```", "")
    measured = [link for link in LINK_ORDER if link in links]
    md.para(
        f"over {len(measured)} links kept up side by side: *engine*, `lab"
        " testbed up` of a clean scenario (the compiled engine) with both ends started by"
        ' `lab exec`; *engine-python*, the same with `[impairment] engine = "python"`;'
        " *veth*, the same two namespaces joined by a plain veth pair, iperf3 through `ip"
        " netns exec`"
        + (
            "; *veth-segments*, another plain veth pair with TCP segmentation offload"
            " (tx-tcp-segmentation and its IPv6/ECN variants) turned off on both ends, as the"
            " testbed's TUN devices have it: the sending kernel cuts the data into MTU-sized"
            " segments before the link and each crosses as its own packet, as through the"
            " engine, which must see every segment to impair it, and the captures show"
            " wire-sized segments. The plain veth pair instead carries the sender's"
            " super-packets of up to 64 KiB whole, no segment ever cut. The target of 0.7x"
            " is against plain veth"
            if "veth-segments" in links
            else ""
        )
        + (
            "; *tun-floor*, the engine's link (the same two TUN devices, built by"
            " `lab.testbed.open_tun_testbed`) forwarded instead by `bench/tun_floor.c`, one"
            " thread per direction doing a blocking read of one device and a write of the"
            " same bytes to the other: no model, no clock, no queue, no record. It is what"
            " the TUN design allows before the engine decides anything, so *ratio to"
            " tun-floor* is the engine's own cost and the floor's ratio to veth the cost of"
            " passing every segment through TUN devices, a packet per read and per write"
            if "tun-floor" in links
            else ""
        )
        + f". {st['rounds']} rounds; each round measures every link once, seconds"
        " apart (the order alternates), so each ratio below is of two tries of the same"
        " round, and the headline is the median of those ratios. CPU is taken over the"
        " transfer (first established connection to the client's exit): the engine process's"
        " utime + stime and the whole machine's busy time (/proc/stat), per Gbit delivered"
        " (CPU seconds per Gbit, which is also CPUs kept busy per Gbit/s). The machine's"
        " figure includes other work; *others* is how many CPUs the machine kept busy in the"
        " second before the try, with the iperf3 server idle."
    )
    md.para(
        "*Limit* names the first party that was saturated over the transfer: the engine"
        " or the floor's forwarder, both *forwarder* in the CPU columns"
        f" (>= {st['saturated']:g} CPU), iperf3's sender or receiver (>="
        f" {st['saturated'] * 100:.0f} % of a CPU by iperf3's own count), or the machine (>="
        f" {st['saturated'] * 100:.0f} % of its {st['cpus']} CPUs busy, other work included):"
        " a figure limited by the sender or by a machine busy with other work is the"
        " sender's or the machine's, not the link's. *Bytes per IP packet* is the bytes"
        " delivered over the server's Ip.InReceives: the veth pair passes the sender's"
        " GSO super-packets whole, the TUN link passes MTU-sized packets, each one read and"
        " written by the engine."
    )
    md.table(
        ["link", "Gbit/s (median)", "each round", "ratio to veth (median, each round)",
         "ratio to veth-segments", "ratio to tun-floor", "forwarder CPU s / Gbit",
         "machine CPU s / Gbit",
         "bytes per IP packet", "limit"],
        [
            [
                link,
                f"**{links[link]['gbit_s']:.3f}**",
                ", ".join(f"{g:.3f}" for g in links[link]["gbit_s_each"]),
                "1"
                if link == "veth"
                else f"**{ratios[f'{link}_over_veth']['median']:.3f}** ("
                + ", ".join(f"{r:.3f}" for r in ratios[f"{link}_over_veth"]["each"])
                + ")",
                "n/a"
                if f"{link}_over_veth-segments" not in ratios
                else f"**{ratios[f'{link}_over_veth-segments']['median']:.3f}** ("
                + ", ".join(f"{r:.3f}" for r in ratios[f"{link}_over_veth-segments"]["each"])
                + ")",
                "n/a"
                if f"{link}_over_tun-floor" not in ratios
                else f"**{ratios[f'{link}_over_tun-floor']['median']:.3f}** ("
                + ", ".join(f"{r:.3f}" for r in ratios[f"{link}_over_tun-floor"]["each"])
                + ")",
                "n/a"
                if links[link]["engine_cpu_s_per_gbit"] is None
                else f"{links[link]['engine_cpu_s_per_gbit']:.3f}",
                f"{links[link]['machine_cpu_s_per_gbit']:.3f}",
                "n/a"
                if links[link].get("bytes_per_server_packet") is None
                else f"{links[link]['bytes_per_server_packet']:,.0f}",
                _limits(links[link]["limits"]),
            ]
            for link in measured
        ],
    )  # fmt: skip
    md.add("<details><summary>Every try</summary>", "")
    md.table(
        ["round", "link", "Gbit/s", "retransmits", "iperf3 CPU sender / receiver",
         "forwarder CPU s", "machine CPU s", "window", "others", "limit"],
        [
            [
                str(t["round"] + 1),
                t["link"],
                f"{t['gbit_s']:.3f}",
                str(t["retransmits"]),
                f"{t['sender_cpu_pct']:.0f} % / {t['receiver_cpu_pct']:.0f} %",
                "n/a" if t["engine_cpu_s"] is None else f"{t['engine_cpu_s']:.2f}",
                f"{t['machine_cpu_s']:.2f}",
                f"{t['window_s']:.2f} s",
                f"{t['background_cpus']:.2f} CPUs",
                _limit_text(t["limit"]),
            ]
            for t in tp["tries"]
        ],
    )  # fmt: skip
    md.add("</details>", "")
    bulk = tp.get("lab_bulk")
    if not bulk:
        return
    reference = tp["lab_bulk_reference"]
    share = bulk["app_limited_share"]
    md.add("### The lab's own TCP bulk vs iperf3", "")
    md.para(
        "Right after the last engine try, `lab run` of this scenario (a clean link, the"
        " compiled engine, the lab's Python sender writing one message at a time with"
        " TCP_NODELAY, both ends captured in full by the lab's sniffers, TCP_INFO sampled):"
    )
    md.add("```toml", bulk["scenario"].rstrip(), "```", "")
    md.para(
        f"Its summary.csv: goodput_bps **{bulk['goodput_bps'] / 1e9:.3f} Gbit/s**"
        f" ({bulk['delivered']:,} of {bulk['sent']:,} messages delivered over"
        f" {bulk['duration_s']:.2f} s, {bulk['tcp_retransmissions']:.0f} retransmissions;"
        f" the whole command took {bulk['wall_s']:.0f} s with its analysis). iperf3 through"
        f" the compiled engine just before it: {reference['gbit_s']:.3f} Gbit/s. Ratio"
        f" **{tp['lab_bulk_over_iperf3_engine']:.2f}**."
        + (
            f" The lab's send queue (TCP_INFO notsent_bytes) was empty in {share:.0%} of the"
            " samples taken during the transfer: "
            + (
                "the lab's sender, not the window or the link, held the transfer back most"
                " of the time, so this is the lab sender's rate."
                if share >= 0.5
                else "data was mostly waiting for the window, so the link or the receiver"
                " set the pace."
            )
            if share is not None
            else ""
        )
    )


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
    tp = report.throughput.data
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
    _render_differential(md, report.differential)
    _render_throughput(md, report.throughput)
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
        " sends "
        + ", ".join(
            f"{n:,} packets at {_pps(int(r))} pps"
            for r, n in (s.get("delay_samples_per_rate") or {"1000": s["delay_samples"]}).items()
        )
        + ".",
        f"`bench/throughput.py`: {tp['settings']['rounds']} rounds of"
        f" {tp['settings']['seconds']} s iperf3 tries per link, one `lab run` bulk of"
        f" {tp['settings']['seconds']} s.",
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
                "impairment",
                [python, "bench/impairment.py", "--iperf3", "--sockperf", "--refine", "2"],
                out,
                900,
            ),
            lambda: run_json(
                "throughput",
                [python, "bench/throughput.py", "--testbeds-file", str(out / "throughput.ids")],
                out,
                600,
                listed=out / "throughput.ids",
            ),
            lambda: run_json(
                "differential",
                [
                    python,
                    "bench/impairment.py",
                    "--differential-only",
                    "--differential",
                    str(DIFFERENTIAL_PACKETS),
                ],
                out,
                600,
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
        throughput=outcomes[1],
        differential=outcomes[2],
        capture=outcomes[3],
        analysis=outcomes[4],
        quickstart=quick,
    )
    _write_atomically(args.output, render(report))
    print(f"\nbench: wrote {args.output} ({report.seconds:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
