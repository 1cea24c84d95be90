"""The Python API behind ``import lab``: what a notebook needs, nothing of the internals.

>>> import lab
>>> run = lab.run("scenarios/quickstart.toml")           # needs root: it builds namespaces
>>> run.summary[["protocol", "loss_pct", "owd_p50_ms"]]
>>> past = lab.load_run("results/lossy-link-20261202T021717Z")
>>> lab.compare(past, run)                                 # B - A per protocol and metric
>>> lab.analyze_pcap("capture.pcapng").flows               # any capture, per flow
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lab.results import DEFAULT_ROOT, Run, load_run
from lab.scenario import Scenario, load_scenario

if TYPE_CHECKING:
    from lab.analysis._wire_offline import CaptureReport
    from lab.capture import Sniffer

__all__ = ["analyze_pcap", "compare", "run", "sniff"]

PathLike = str | os.PathLike[str]


def run(
    scenario: Scenario | PathLike,
    *,
    results: PathLike = DEFAULT_ROOT,
    progress: Callable[[str], None] | None = None,
) -> Run:
    """Run a scenario (a file, or a :class:`Scenario` already loaded) and load its results.

    Needs root, as ``lab run`` does. A sweep scenario runs every cell and returns the
    sweep (``run.runs()`` gives the cells). A run where one protocol failed comes back
    incomplete (``run.complete`` is False) with the others' results in it.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _run(scenario, results, progress)
    # Inside a running event loop (a Jupyter kernel): the testbed's netlink library runs
    # its own loop, which cannot nest, so the run goes to a thread of its own.
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="lab-run") as pool:
        return pool.submit(_run, scenario, results, progress).result()


def _run(
    scenario: Scenario | PathLike, results: PathLike, progress: Callable[[str], None] | None
) -> Run:
    from lab.runner import run_scenario, run_sweep  # noqa: PLC0415 (heavy: load on use)

    if isinstance(scenario, Scenario):
        loaded, source = scenario, Path(f"{scenario.name}.toml")
        text: str | None = _scenario_text(scenario)
    else:
        source = Path(scenario)
        loaded, text = load_scenario(source), None
    report = progress or (lambda _text: None)
    if loaded.sweep is not None:
        return load_run(run_sweep(loaded, source, Path(results), progress=report).path)
    outcome = run_scenario(loaded, source, Path(results), report, scenario_text=text)
    return load_run(outcome.path)


def _scenario_text(scenario: Scenario) -> str:
    import tomli_w  # noqa: PLC0415

    data = scenario.model_dump(mode="json", exclude_none=True)
    return f"# built in Python, not read from a file\n{tomli_w.dumps(data)}"


def compare(
    a: Run | PathLike, b: Run | PathLike, *, allow_incomplete: bool = False
) -> pd.DataFrame:
    """B - A per protocol and summary metric: columns protocol, metric, a, b, diff, rel_pct."""
    from lab.report.listing import compare_runs  # noqa: PLC0415

    first = a.path if isinstance(a, Run) else Path(a)
    second = b.path if isinstance(b, Run) else Path(b)
    return compare_runs(first, second, allow_incomplete=allow_incomplete)


@contextlib.contextmanager
def sniff(
    interface: str,
    pcap: PathLike | None = None,
    *,
    netns: str | None = None,
    bpf: str | None = None,
    count: int | None = None,
) -> Iterator[Sniffer]:
    """Capture on ``interface`` (in namespace ``netns``) for the body of a ``with``.

    Writes ``pcap`` (nanosecond pcap) if given; ``bpf`` is a tcpdump filter. Needs root
    or CAP_NET_RAW. The capture stops when the body ends (or after ``count`` packets);
    the object yielded is the running :class:`lab.capture.Sniffer`: after the body its
    ``stop()`` returns what was captured and what the kernel dropped.
    """
    from lab.capture import Sniffer  # noqa: PLC0415

    sniffer = Sniffer(
        interface, Path(pcap) if pcap is not None else None, netns=netns, bpf=bpf, count=count
    )
    with sniffer:
        yield sniffer


def analyze_pcap(path: PathLike) -> CaptureReport:
    """Analyse any capture file (pcap or pcapng, not only the lab's), as ``lab analyze``.

    ``report.flows`` has one row per flow (largest first): packets, bytes, TCP
    retransmissions, duplicate ACKs and the handshake, Karn and ack RTTs; loss,
    reordering and duplicates for UDP carrying the lab's header. ``report.rtt_samples``
    holds every TCP RTT sample; ``report.stats`` what the reader skipped and why.
    A file that is not a capture raises :class:`~lab.errors.AnalysisError`.
    """
    from lab.analysis.offline import analyze_capture  # noqa: PLC0415 - numpy/pandas on use

    return analyze_capture(Path(path))
