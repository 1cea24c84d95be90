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

from lab.analysis import join
from lab.analysis._wire_tcp import (
    BLOCKED_THRESHOLD_NS,
    HOL_COLUMNS,
    RTT_COLUMNS,
    TCP_SEGMENT_COLUMNS,
    TCP_STATS_COLUMNS,
    TcpWireAnalysis,
    analyze_tcp,
    analyze_tcp_frames,
    empty_tables,
    head_of_line,
)
from lab.errors import AnalysisError
from lab.results import pcap_path

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
    """Every wire table of a results folder, keyed by table name (see :data:`TABLES`).

    Needs messages.csv, exchanges.csv and, for TCP, capture/tcp-client.pcap and
    capture/tcp-server.pcap; ``explained`` also needs impairment.csv (it is empty
    without). Raises AnalysisError when a file is missing or unreadable.
    """
    folder = Path(folder)
    for name in ("messages.csv", "exchanges.csv"):
        if not (folder / name).exists():
            raise AnalysisError(f"{folder / name}: missing; is {folder} a results folder?")
    messages = join.read_table(folder / "messages.csv")
    exchanges = join.read_table(folder / "exchanges.csv")
    tables = empty_tables()
    tcp_rows = exchanges.loc[exchanges["protocol"] == "tcp"]
    analysis: TcpWireAnalysis | None = None
    if not tcp_rows.empty:
        row = tcp_rows.iloc[0]
        analysis = analyze_tcp(
            pcap_path(folder, "tcp", "client"),
            pcap_path(folder, "tcp", "server"),
            messages,
            int(row["client_port"]),
            int(row["server_port"]),
        )
        tables = {
            "tcp_segments": analysis.segments,
            "tcp_stats": analysis.stats,
            "rtt_samples": analysis.rtt_samples,
            "hol": analysis.hol,
        }
    if (folder / "impairment.csv").exists():
        explained = join.explain_run(folder, messages=messages, tcp=analysis)
    else:
        explained = pd.DataFrame(columns=list(join.EXPLAINED_COLUMNS))
    tables["explained"] = explained
    tables["explained_summary"] = join.explain_summary(explained)
    return tables
