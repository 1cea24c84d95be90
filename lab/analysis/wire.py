"""Wire analysis of a run: TCP seen packet by packet on both captures, and every
lost or late message tied to what the engine did to it.

:func:`analyze_tcp` studies one TCP exchange from its two captures (tables
``tcp_segments``, ``tcp_stats``, ``rtt_samples``, ``hol``; definitions in
:mod:`lab.analysis._wire_tcp` and :mod:`lab.analysis._tcp`); :func:`analyze_run`
does it for a results folder and adds the ``explained`` join of
:mod:`lab.analysis.join`. Everything is a pure function of the files: a finished
run can be analysed again at any time.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lab.analysis._wire_tcp import (
    BLOCKED_THRESHOLD_NS,
    HOL_COLUMNS,
    RTT_COLUMNS,
    TCP_SEGMENT_COLUMNS,
    TCP_STATS_COLUMNS,
    TcpWireAnalysis,
    analyze_tcp,
    analyze_tcp_frames,
    head_of_line,
)
from lab.errors import AnalysisError

__all__ = [
    "BLOCKED_THRESHOLD_NS",
    "HOL_COLUMNS",
    "RTT_COLUMNS",
    "TABLES",
    "TCP_SEGMENT_COLUMNS",
    "TCP_STATS_COLUMNS",
    "TcpWireAnalysis",
    "analyze_run",
    "analyze_tcp",
    "analyze_tcp_frames",
    "head_of_line",
]

#: The tables :func:`analyze_run` returns, in the order to write them.
TABLES = ("tcp_segments", "tcp_stats", "rtt_samples", "hol", "explained", "explained_summary")


def analyze_run(folder: Path) -> dict[str, pd.DataFrame]:
    """Every wire table of a finished run's folder, keyed by table name (:data:`TABLES`).

    Reads the folder through :mod:`lab.results`: messages.csv, exchanges.csv, for TCP
    the two TCP captures and, for ``explained``, impairment.csv (empty without).
    Raises ResultsError or AnalysisError when a file is missing or unreadable.
    """
    from lab.analysis.run import record_of, wire_tables  # noqa: PLC0415 - run builds on this
    from lab.results import load_run  # noqa: PLC0415

    run = load_run(folder)
    for name in ("messages", "exchanges"):
        if not run.has_table(name):
            raise AnalysisError(
                f"{run.path / (name + '.csv')}: missing; is {folder} a results folder?"
            )
    return wire_tables(record_of(run))
