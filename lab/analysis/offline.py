"""Per-flow analysis of any capture file, not only the lab's (``lab analyze`` prints it).

Per flow (bidirectional 5-tuple): packets, bytes, duration; for TCP the
retransmissions, duplicate ACKs, out-of-order segments and three round-trip times
(defined in :mod:`lab.analysis._tcp`): the handshake RTT (SYN to the ACK completing
the handshake), the median of the Karn RTT samples (RFC 6298 §3: each original
segment to the first ACK covering it) and the median of the ack RTT samples
(tshark's ``tcp.analysis.ack_rtt``: each ACK to the segment ending at its number),
the last two over the segments sent from the capture point; for UDP carrying the
lab's message header, loss, reordering and duplicates by message seq. Records the
reader had to skip (truncated, non-IP, malformed, garbage) are counted and shown.
Bad files end in one AnalysisError, never a traceback.

numpy and pandas load when a capture is analysed (:mod:`lab.analysis._wire_offline`),
not when this module is imported, so ``lab --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab.analysis._wire_offline import CaptureReport

__all__ = ["DEFAULT_TOP", "analyze_capture", "report_dict", "report_header"]

DEFAULT_TOP = 20


def analyze_capture(path: Path) -> CaptureReport:
    """Analyse one capture file (see :func:`lab.analysis._wire_offline.analyze_capture`)."""
    # numpy/pandas load here, not when the CLI imports this module: `lab --help` stays fast
    from lab.analysis._wire_offline import analyze_capture as analyze  # noqa: PLC0415

    return analyze(path)


def report_header(report: CaptureReport) -> dict[str, Any]:
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
    }


def report_dict(report: CaptureReport, top: int | None = DEFAULT_TOP) -> dict[str, Any]:
    """The report as JSON-ready data: file, reader counts and the largest flows."""
    return {**report_header(report), "flows": report.rows(top)}
