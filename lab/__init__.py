"""protolab: how TCP, UDP and RAW sockets behave when the network misbehaves.

The public surface is small::

    import lab
    scenario = lab.load_scenario("scenarios/lossy-link.toml")   # validated, frozen
    run = lab.run(scenario, results="results")                  # root: builds namespaces
    run.summary, run.messages, run.table("hol"), run.report_path, run.meta
    past = lab.load_run("results/lossy-link-20261202T021717Z")
    lab.compare(past, run)                                       # B - A per metric
    with lab.sniff("lo", "lo.pcap", count=100): ...              # root or CAP_NET_RAW
    lab.analyze_pcap("lo.pcap").flows                             # any pcap or pcapng

Errors a user can cause are :class:`LabError` (and its subclasses below), each one
line. Importing ``lab`` is cheap: the stages load when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from lab._version import __version__
from lab.errors import (
    AnalysisError,
    CaptureError,
    ExchangeError,
    Interrupted,
    LabError,
    PrivilegeError,
    ResultsError,
    ScenarioError,
    TestbedError,
)

if TYPE_CHECKING:
    from lab._api import analyze_pcap, compare, run, sniff
    from lab.results import Run, load_run
    from lab.scenario import Scenario, load_scenario

__all__ = [
    "AnalysisError",
    "CaptureError",
    "ExchangeError",
    "Interrupted",
    "LabError",
    "PrivilegeError",
    "ResultsError",
    "Run",
    "Scenario",
    "ScenarioError",
    "TestbedError",
    "__version__",
    "analyze_pcap",
    "compare",
    "load_run",
    "load_scenario",
    "run",
    "sniff",
]

_LAZY = {
    "Scenario": "lab.scenario",
    "load_scenario": "lab.scenario",
    "Run": "lab.results",
    "load_run": "lab.results",
    "run": "lab._api",
    "compare": "lab._api",
    "sniff": "lab._api",
    "analyze_pcap": "lab._api",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'lab' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
