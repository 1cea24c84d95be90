"""``lab analyze FILE.pcap``: what can be told about any capture, not only the lab's.

Per flow (bidirectional 5-tuple): packets, bytes, duration; for TCP the
retransmissions, duplicate ACKs, out-of-order segments and three round-trip times
(defined in :mod:`lab.analysis._tcp`): the handshake RTT (SYN to the ACK completing
the handshake), the median of the Karn RTT samples (RFC 6298 §3: each original
segment to the first ACK covering it) and the median of the ack RTT samples
(tshark's ``tcp.analysis.ack_rtt``: each ACK to the segment ending at its number),
the last two over the segments sent from the capture point; for UDP carrying the
lab's message header, loss, reordering and duplicates by message seq. Records the
reader had to skip (truncated, non-IP, malformed, garbage) are counted and shown.
Bad files end in one AnalysisError line (exit status 2), never a traceback.

This module is imported when the CLI builds its parser, so it stays light: numpy
and pandas are loaded by the handler only (:mod:`lab.analysis._wire_offline`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lab.errors import AnalysisError

if TYPE_CHECKING:
    from lab.analysis._wire_offline import CaptureReport

DEFAULT_TOP = 20


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``analyze`` to the CLI's subcommands."""
    parser = commands.add_parser(
        "analyze",
        help="analyse any pcap file: flows, TCP retransmissions and RTT, UDP loss",
        description="Per-flow analysis of a classic pcap file (any source, not only the lab's).",
    )
    parser.add_argument("file", type=Path, help="pcap file (classic libpcap format)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--top",
        type=int,
        default=DEFAULT_TOP,
        metavar="N",
        help=f"largest N flows shown (default {DEFAULT_TOP}; 0: all)",
    )
    parser.add_argument(
        "--rtt-csv",
        type=Path,
        metavar="PATH",
        help="also write every TCP RTT sample (Karn and ack RTT, with frame numbers) as CSV",
    )
    parser.set_defaults(handler=run)


def analyze_capture(path: Path) -> CaptureReport:
    """Analyse one capture file (see :func:`lab.analysis._wire_offline.analyze_capture`)."""
    # numpy/pandas load here, not when the CLI imports this module: `lab --help` stays fast
    from lab.analysis._wire_offline import analyze_capture as analyze  # noqa: PLC0415

    return analyze(path)


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
    if args.json:
        sys.stdout.write(json.dumps(report_dict(report, top), indent=2) + "\n")
        return 0
    console = Console() if sys.stdout.isatty() else Console(width=200)
    console.print(render(report, top))
    console.print(_skipped_line(report), markup=False, highlight=False)
    return 0


def report_dict(report: CaptureReport, top: int | None = DEFAULT_TOP) -> dict[str, Any]:
    """The report as JSON-ready data: file, reader counts and the largest flows."""
    stats = report.stats
    return {
        "file": str(report.path),
        "linktype": report.linktype,
        "records": stats.records,
        "packets": stats.packets,
        "skipped": stats.skipped,
        "skipped_reasons": dict(stats.reasons),
        "truncated_tail": stats.truncated_tail,
        "garbage_offset": stats.garbage_offset,
        "flows_total": len(report.flows),
        "flows": report.rows(top),
    }


def _cell(value: Any, fmt: str = "{}") -> str:
    return "–" if value is None else fmt.format(value)


def render(report: CaptureReport, top: int | None = DEFAULT_TOP) -> Table:
    """The flows as a rich table, largest first."""
    rows = report.rows(top)
    title = f"{report.path} — {len(report.flows)} flow(s), {report.stats.packets} packet(s)"
    if top is not None and len(report.flows) > top:
        title += f", largest {top} shown"
    table = Table(title=escape(title), title_justify="left")
    headers = [
        "proto",
        "A",
        "B",
        "pkts",
        "bytes",
        "dur s",
        "retx",
        "fast",
        "dup ack",
        "ooo",
        "spur",
        "hs RTT ms",
        "Karn RTT p50 ms",
        "ack RTT p50 ms",
        "lost",
        "reord",
        "dup",
    ]
    for header in headers:
        table.add_column(header, justify="left" if header in ("proto", "A", "B") else "right")

    def end(host: str, port: Any) -> str:
        text = f"[{host}]" if ":" in host else host
        return escape(text if port is None else f"{text}:{port}")

    for row in rows:
        table.add_row(
            str(row["proto"]),
            end(str(row["a"]), row["a_port"]),
            end(str(row["b"]), row["b_port"]),
            _cell(row["packets"]),
            _cell(row["bytes"]),
            _cell(row["duration_s"], "{:.3f}"),
            _cell(row["retransmissions"]),
            _cell(row["fast_retransmissions"]),
            _cell(row["dup_acks"]),
            _cell(row["out_of_order"]),
            _cell(row["spurious"]),
            _cell(row["handshake_rtt_ms"], "{:.3f}"),
            _cell(row["karn_rtt_p50_ms"], "{:.3f}"),
            _cell(row["ack_rtt_p50_ms"], "{:.3f}"),
            _cell(row["lab_lost"]),
            _cell(row["lab_reordered"]),
            _cell(row["lab_duplicates"]),
        )
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
