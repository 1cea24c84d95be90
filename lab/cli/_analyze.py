"""``lab analyze FILE``: print the per-flow analysis of any capture (pcap or pcapng).

Output costs what is printed: up to :data:`RICH_MAX_ROWS` flows are drawn as a rich
table; more (``--top 0`` on a big capture) are printed in full as plain aligned
columns, and ``--json`` writes one flow per line; both are built a column at a time
for a chunk of flows (:func:`lab.analysis._wire_offline.table_lines`,
:func:`~lab.analysis._wire_offline.json_lines`), so 200,000 flows take a second.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.analysis.offline import DEFAULT_TOP, analyze_capture, report_header
from lab.cli._common import Commands
from lab.errors import AnalysisError

if TYPE_CHECKING:
    from lab.analysis._wire_offline import CaptureReport

__all__ = [
    "RICH_MAX_ROWS",
    "TABLE_COLUMNS",
    "register",
    "render",
    "run",
    "write_json",
    "write_table",
]

#: Tables of at most this many flows are drawn by rich (boxed, fitted to the
#: terminal); longer ones are printed as plain aligned columns, which costs
#: microseconds per flow where rich costs milliseconds.
RICH_MAX_ROWS = 100

#: The table's columns: (header, flow column or (address, port) columns, number
#: format, right-justified).
TABLE_COLUMNS: tuple[tuple[str, str | tuple[str, str], str | None, bool], ...] = (
    ("proto", "proto", None, False),
    ("A", ("a", "a_port"), None, False),
    ("B", ("b", "b_port"), None, False),
    ("pkts", "packets", None, True),
    ("bytes", "bytes", None, True),
    ("dur s", "duration_s", "{:.3f}", True),
    ("retx", "retransmissions", None, True),
    ("fast", "fast_retransmissions", None, True),
    ("dup ack", "dup_acks", None, True),
    ("ooo", "out_of_order", None, True),
    ("spur", "spurious", None, True),
    ("hs RTT ms", "handshake_rtt_ms", "{:.3f}", True),
    ("Karn RTT p50 ms", "karn_rtt_p50_ms", "{:.3f}", True),
    ("ack RTT p50 ms", "ack_rtt_p50_ms", "{:.3f}", True),
    ("lost", "lab_lost", None, True),
    ("reord", "lab_reordered", None, True),
    ("dup", "lab_duplicates", None, True),
)

_TOP_HELP = (
    f"show the N largest flows, by bytes (default {DEFAULT_TOP}; 0: all). Up to "
    f"{RICH_MAX_ROWS} flows are drawn as a boxed table; more are printed in full as "
    "plain aligned columns, one line per flow: fast for any number of flows, ready "
    "for grep, sort or less"
)


def register(commands: Commands) -> None:
    """Add ``analyze`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "analyze",
        help="analyse any pcap or pcapng file: flows, TCP retransmissions and RTT, UDP loss",
        description="Per-flow analysis of a pcap or pcapng file (any source, not only the lab's).",
    )
    parser.add_argument("file", type=Path, help="capture file (pcap or pcapng)")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of a table (the same --top N flows, one object per line)",
    )
    parser.add_argument("--top", type=int, default=DEFAULT_TOP, metavar="N", help=_TOP_HELP)
    parser.add_argument(
        "--rtt-csv",
        type=Path,
        metavar="PATH",
        help="also write every TCP RTT sample (Karn and ack RTT, with frame numbers) as CSV",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Handler of ``lab analyze``: print the report; AnalysisError on a bad file."""
    if args.top < 0:
        raise AnalysisError(f"--top must be 0 (all) or more (got {args.top})")
    report = analyze_capture(Path(args.file))
    top = None if args.top == 0 else args.top
    if args.rtt_csv is not None:
        try:
            report.rtt_samples.to_csv(args.rtt_csv, index=False)
        except OSError as exc:
            raise AnalysisError(f"cannot write {args.rtt_csv}: {exc}") from exc
    try:
        if args.json:
            write_json(report, top, sys.stdout)
        elif _shown(report, top) <= RICH_MAX_ROWS:
            console = Console() if sys.stdout.isatty() else Console(width=200)
            console.print(render(report, top))
            console.print(_skipped_line(report), markup=False, highlight=False)
        else:
            write_table(report, top, sys.stdout)
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`lab analyze ... | head`): stop, without a traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    return 0


def _shown(report: CaptureReport, top: int | None) -> int:
    total = len(report.flows)
    return total if top is None else min(top, total)


def write_json(report: CaptureReport, top: int | None, out: TextIO) -> None:
    """Write :func:`lab.analysis.offline.report_dict` as JSON: the same document (parsed
    back, equal data), with one flow per line, written a chunk of flows at a time."""
    from lab.analysis._wire_offline import json_lines

    head = json.dumps(report_header(report), indent=2)
    out.write(head[: head.rindex("}")].rstrip() + ',\n  "flows": [')
    flows = report.flows if top is None else report.flows.head(top)
    sep = "\n    "
    for lines in json_lines(flows):
        out.write(sep + ",\n    ".join(lines))
        sep = ",\n    "
    out.write("\n  ]\n}\n" if len(flows) else "]\n}\n")


def write_table(report: CaptureReport, top: int | None, out: TextIO) -> None:
    """Write the flows as plain aligned columns (see :data:`RICH_MAX_ROWS`): the
    title, the table, a count of the flows shown and the reader's line."""
    from lab.analysis._wire_offline import table_lines

    flows = report.flows if top is None else report.flows.head(top)
    out.write(_title(report, top) + "\n")
    for block in table_lines(flows, TABLE_COLUMNS):
        out.write(block)
    out.write(f"{len(flows)} of {len(report.flows)} flow(s) shown\n")
    out.write(_skipped_line(report) + "\n")


def _title(report: CaptureReport, top: int | None) -> str:
    title = f"{report.path} — {len(report.flows)} flow(s), {report.stats.packets} packet(s)"
    if top is not None and len(report.flows) > top:
        title += f", largest {top} shown"
    return title


def _cell(value: Any, fmt: str | None) -> str:
    return "–" if value is None else (fmt or "{}").format(value)


def render(report: CaptureReport, top: int | None = DEFAULT_TOP) -> Table:
    """The flows as a rich table, largest first."""
    table = Table(title=escape(_title(report, top)), title_justify="left")
    for header, _, _, right in TABLE_COLUMNS:
        table.add_column(header, justify="right" if right else "left")

    def end(host: str, port: Any) -> str:
        text = f"[{host}]" if ":" in host else host
        return escape(text if port is None else f"{text}:{port}")

    for row in report.rows(top):
        cells = []
        for _, source, fmt, _ in TABLE_COLUMNS:
            if isinstance(source, tuple):
                cells.append(end(str(row[source[0]]), row[source[1]]))
            else:
                cells.append(_cell(row[source], fmt))
        table.add_row(*cells)
    return table


def _skipped_line(report: CaptureReport) -> str:
    stats = report.stats
    line = f"{stats.records} record(s), {stats.packets} IP packet(s), {stats.skipped} skipped"
    reasons = [f"{k}: {v}" for k, v in stats.reasons.items() if v]
    if reasons:
        line += f" ({', '.join(reasons)})"
    if stats.garbage_offset is not None:
        line += f"; garbage at byte {stats.garbage_offset}, the rest of the file was ignored"
    elif stats.truncated_tail:
        line += "; the file ends inside a record (cut short)"
    return line
