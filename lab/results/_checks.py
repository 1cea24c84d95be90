"""What a results folder can hold, checked before it is parsed or drawn.

A results folder is data from disk: a corrupted or hostile one (a table of junk lines,
a directory or a link where a file belongs, a huge file, a meta.json nested 100,000
deep) is refused in one line (:class:`~lab.errors.ResultsError`, "path: what: why"),
quickly, and never rendered for minutes.

Tables are checked in the order the checks cost: the file itself (a regular file, not a
link), its size, its header, its number of lines, then the parsed columns: the ones a
reader needs exist and hold what they must (numbers, counts >= 0, known protocols). The
bounds come from the run's workload in its ``scenario.toml`` (``messages.csv`` holds one
row per message per protocol, ``summary.csv`` one per protocol); where the scenario
cannot be read, from the largest workload a scenario may declare (3 protocols x
1,000,000 messages of 65,000 bytes), so every run the lab can produce is read.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd

from lab.errors import ResultsError, one_line
from lab.results._files import MAX_META_DEPTH, nested_deeper_than, open_results_file, table_dtypes

ALL_PROTOCOLS = ("tcp", "udp", "raw")
DIRECTIONS = ("client_to_server", "server_to_client")
SIDES = ("client", "server")

#: Largest workload a scenario may declare (lab/scenario.py): the bound when it is unknown.
MAX_COUNT = 1_000_000
MAX_SIZE = 65_000
MAX_SWEEP_VALUES = 100
MAX_SWEEP_REPEAT = 100
#: What a scenario file the lab did not write can give, as the scenario model's defaults.
_DEFAULT_PROTOCOLS = ("tcp", "udp")
_DEFAULT_COUNT = 1000
_DEFAULT_SIZE = 256

#: scenario.toml is a few hundred bytes; a copy larger than this is not one.
MAX_SCENARIO_BYTES = 1 << 20
#: Rows a table may have beyond its exact bound: older or future writers, not junk.
ROW_SLACK = 2
#: Every table, however small its bound, may have this many rows.
MIN_ROWS = 16
#: The header line: the widest table (exchanges.csv, ~60 kernel counters) needs ~2 kB.
MAX_HEADER_BYTES = 64 * 1024
MAX_COLUMNS = 256
#: Bytes per cell on average: a nanosecond time is 19 digits, a float ~20 characters.
CELL_BYTES = 64
#: Smallest payload a TCP segment of a message may carry (RFC 1122's default MSS); a
#: message of S bytes crosses in at most ceil(S / 536) + 1 segments.
MIN_SEGMENT_BYTES = 536
#: Per data segment: its ACK, retransmissions and duplicate ACKs a capture may hold
#: (generous: junk is refused by its columns, a real run must never be).
SEGMENT_FACTOR = 32
#: Per capture: handshake, teardown, SYN and FIN retransmissions, window probes.
CONNECTION_SEGMENTS = 256
#: Time-series intervals one protocol may have: (longest run + longest drain) / shortest
#: interval, (3600 s + 600 s) / 10 ms.
MAX_INTERVALS = 420_000
#: TCP_INFO samples a run may hold: (3600 s + 600 s) / 20 ms, plus the last one.
MAX_TCP_INFO_SAMPLES = 210_001
#: Latency probes per load protocol: UDP and TCP at 100 Hz at most, over the longest run,
#: drain and idle periods, (3600 s + 600 s + 2 x 30 s) x 100 x 2.
MAX_PROBES = 852_000
#: Parallel flows of one protocol (lab.scenario.MAX_PARALLEL).
MAX_PARALLEL = 16
#: A sweep sweeps one parameter; a sweep.csv merged by hand may hold a few.
MAX_SWEEP_PARAMETERS = 4


@dataclass(frozen=True)
class Workload:
    """What a run could have produced, from its scenario.toml: the tables' bounds."""

    protocols: tuple[str, ...] = ALL_PROTOCOLS
    count: int = MAX_COUNT
    size: int = MAX_SIZE
    #: Flows of one protocol (workload.parallel, twice that when bidirectional); unknown:
    #: the most there can be.
    parallel: int = 1
    #: values x repetitions of a sweep (its folder's meta.json), 1 for a run.
    sweep_cells: int = MAX_SWEEP_VALUES * MAX_SWEEP_REPEAT
    known: bool = False

    def describe(self, table: str = "") -> str:
        """What the bound is derived from, for a refusal."""
        if table == "sweep":
            return f"a sweep of {self.sweep_cells:,} cell(s) x {len(self.protocols)} protocol(s)"
        what = "a run of" if self.known else "any run (scenario.toml unreadable):"
        flows = f" x {self.parallel} flows" if self.parallel > 1 else ""
        return f"{what} {len(self.protocols)} protocol(s){flows} x {self.count:,} messages"


#: The bound when nothing is known: the largest run a valid scenario describes.
MAX_FLOWS = 2 * MAX_PARALLEL  # parallel flows each way of a bidirectional workload
LARGEST = Workload(parallel=MAX_FLOWS)


def _bounded_int(table: Mapping[str, Any], key: str, default: int, low: int, high: int) -> int:
    """``table[key]`` when a whole number in [low, high]; absent: default; else: high."""
    if key not in table:
        return default
    value = table[key]
    if isinstance(value, int) and not isinstance(value, bool) and low <= value <= high:
        return value
    return high


def workload_of(scenario: Mapping[str, Any] | None, meta: Mapping[str, Any]) -> Workload:
    """The workload a folder's scenario.toml declares, made safe: a bad value is the maximum."""
    values, repeat = meta.get("values"), meta.get("repeat")
    cells = LARGEST.sweep_cells
    if isinstance(values, list) and 1 <= len(values) <= MAX_SWEEP_VALUES:
        rounds = _bounded_int({"r": repeat}, "r", 1, 1, MAX_SWEEP_REPEAT)
        cells = len(values) * rounds
    if not scenario:
        return Workload(sweep_cells=cells, parallel=MAX_FLOWS)
    declared = scenario.get("protocols", list(_DEFAULT_PROTOCOLS))
    protocols: tuple[str, ...] = ALL_PROTOCOLS
    if isinstance(declared, list) and declared and all(p in ALL_PROTOCOLS for p in declared):
        protocols = tuple(dict.fromkeys(str(p) for p in declared))
    workload = scenario.get("workload", {})
    if not isinstance(workload, dict):
        return Workload(protocols=protocols, sweep_cells=cells, parallel=MAX_FLOWS)
    # a bulk workload without count sends until its time is up: at most the largest count
    bulk = workload.get("pattern") in ("bulk", "latency_under_load")
    default_count = MAX_COUNT if bulk else _DEFAULT_COUNT
    # "bidirectional" doubles the flows; anything but a known one-way value may have
    ways = 1 if workload.get("direction", "forward") in ("forward", "reverse") else 2
    return Workload(
        protocols=protocols,
        count=_bounded_int(workload, "count", default_count, 1, MAX_COUNT),
        size=_bounded_int(workload, "size", _DEFAULT_SIZE, 16, MAX_SIZE),
        parallel=_bounded_int(workload, "parallel", 1, 1, MAX_PARALLEL) * ways,
        sweep_cells=cells,
        known=True,
    )


# --- column kinds ------------------------------------------------------------------------

NUMBER = "number"  # any number, empty allowed
COUNT = "count"  # a finite number >= 0, empty allowed
BOOL = "bool"  # True / False (1 / 0), empty allowed
TEXT = "text"  # anything
PROTOCOL = "protocol"  # tcp, udp or raw; never empty
DIRECTION = "direction"  # client_to_server or server_to_client
SIDE = "side"  # client or server

_ENUMS = {PROTOCOL: ALL_PROTOCOLS, DIRECTION: DIRECTIONS, SIDE: SIDES}
_BOOL_TEXT = frozenset({"true", "false", "1", "0", "1.0", "0.0"})
#: Summary-like columns whose unit suffix says they are numbers.
_NUMBER_SUFFIXES = ("_ns", "_ms", "_s", "_pct", "_bps", "_ratio", "_bytes")

RowBound = Callable[[Workload], int]


@dataclass(frozen=True)
class TableSpec:
    """One table: its row bound, and the kind of each column a reader relies on."""

    rows: RowBound
    #: How the bound is derived, for the refusal: "one per message per protocol".
    per: str
    required: Mapping[str, str]
    optional: Mapping[str, str] = field(default_factory=dict)
    #: Kind of every column starting with one of these (client.Tcp.RetransSegs, ...).
    prefixes: Mapping[str, str] = field(default_factory=dict)
    #: Columns ending in a unit suffix are numbers.
    suffix_numbers: bool = False
    #: Columns whose values (together) identify a row.
    unique: tuple[str, ...] = ()
    #: Columns never empty (protocol, direction and side never are).
    nonnull: tuple[str, ...] = ()
    #: Most different values a column may hold (each is a section or a curve of a page).
    distinct: Mapping[str, int] = field(default_factory=dict)
    #: Rows beyond the exact bound (ROW_SLACK, or 1 where the bound is exact).
    slack: int = 0

    def kind(self, column: str) -> str:
        if column in self.required:
            return self.required[column]
        if column in self.optional:
            return self.optional[column]
        for prefix, kind in self.prefixes.items():
            if column.startswith(prefix):
                return kind
        if column.endswith("_ns") or (self.suffix_numbers and column.endswith(_NUMBER_SUFFIXES)):
            return NUMBER
        return TEXT


def _tcp_segments(w: Workload) -> int:
    if "tcp" not in w.protocols:
        return 0
    per_message = math.ceil(w.size / MIN_SEGMENT_BYTES) + 1
    # parallel flows share the count; each has its own handshake and teardown
    return 2 * (SEGMENT_FACTOR * w.count * per_message + w.parallel * CONNECTION_SEGMENTS)


_SUMMARY_COUNTS = (
    "probe_lost",
    "flows",
    "out_of_order",
    "duplicates",
    "losses_explained",
    "capture_drops",
    "tcp_retransmissions",
    "hol_blocked",
    "explained",
    "unexplained",
    "engine_packets",
)
_SUMMARY_OPTIONAL = {
    **dict.fromkeys(_SUMMARY_COUNTS, COUNT),
    "accounting_closes": BOOL,
    "owd_available": BOOL,  # two hosts: the clocks' bound is under the delays
}

#: Count columns of timeseries.csv and flow_timeseries.csv.
_SERIES_COUNTS = dict.fromkeys(
    ("sent", "lost", "delivered", "bytes_delivered", "out_of_order"), COUNT
)

TABLES: dict[str, TableSpec] = {
    "messages": TableSpec(
        rows=lambda w: len(w.protocols) * w.count,  # parallel flows share the count
        per="one per message per protocol",
        required={"protocol": PROTOCOL, "seq": COUNT, "t_send_ns": NUMBER},
        optional={
            "flow": COUNT,
            "size": COUNT,
            "arrival_index": COUNT,
            "copies": COUNT,
            "duplicate": BOOL,
            "intact": BOOL,
        },
        unique=("protocol", "flow", "seq"),  # no flow column (format 1): protocol and seq
        nonnull=("seq", "t_send_ns"),
    ),
    "summary": TableSpec(
        rows=lambda w: len(w.protocols),
        per="one per protocol",
        required={
            "protocol": PROTOCOL,
            "sent": COUNT,
            "delivered": COUNT,
            "lost": COUNT,
            "loss_pct": NUMBER,
        },
        optional=_SUMMARY_OPTIONAL,
        suffix_numbers=True,
        unique=("protocol",),
    ),
    "exchanges": TableSpec(
        rows=lambda w: len(w.protocols) * w.parallel,
        per="one per protocol and flow",
        required={"protocol": PROTOCOL},
        optional={"flow": COUNT, "client_port": COUNT, "server_port": COUNT, "direction": TEXT},
        prefixes={"client.": NUMBER, "server.": NUMBER},
        unique=("protocol", "flow"),
    ),
    "flows": TableSpec(
        rows=lambda w: len(w.protocols) * w.parallel,
        per="one per protocol and flow",
        required={"protocol": PROTOCOL, "flow": COUNT},
        optional={"sent": COUNT, "delivered": COUNT},
        suffix_numbers=True,
        unique=("protocol", "flow"),
    ),
    "accounting": TableSpec(
        rows=lambda w: len(DIRECTIONS),
        per="one per direction",
        required={},
        optional={
            "direction": DIRECTION,
            "packets_in": COUNT,
            "forwarded": COUNT,
            "dropped_loss": COUNT,
            "dropped_queue": COUNT,
            "duplicated": COUNT,
            "corrupted": COUNT,
            "reordered": COUNT,
            "pending_at_stop": COUNT,
            "closes": BOOL,
        },
        suffix_numbers=True,
    ),
    "impairment_by_protocol": TableSpec(
        rows=lambda w: len(w.protocols) * len(DIRECTIONS),
        per="one per protocol and direction",
        required={"protocol": PROTOCOL, "direction": DIRECTION},
        optional={
            **{
                name: COUNT
                for name in (
                    "packets",
                    "dropped_loss",
                    "dropped_queue",
                    "duplicated",
                    "corrupted",
                    "reordered",
                )
            },
            # a write can end before the schedule only by a clock step: kept as measured
            "late_p50_ms": NUMBER,
            "late_p99_ms": NUMBER,
        },
    ),
    "captures": TableSpec(
        rows=lambda w: len(w.protocols) * len(SIDES),
        per="one per protocol and capture",
        required={},
        optional={"protocol": PROTOCOL, "side": SIDE, "complete": BOOL},
    ),
    "tcp_segments": TableSpec(
        rows=_tcp_segments,
        per="segments of the TCP messages, both captures",
        required={"ts_ns": NUMBER, "direction": DIRECTION},
        optional={
            "client_port": COUNT,
            "side": SIDE,
            "seq": NUMBER,
            "ack": NUMBER,
            "len": COUNT,
            "retransmission": BOOL,
            "fast_retransmission": BOOL,
            "spurious": BOOL,
            "dup_ack": BOOL,
            "out_of_order": BOOL,
        },
    ),
    "tcp_stats": TableSpec(
        rows=lambda w: w.parallel, per="one per TCP flow", required={}, suffix_numbers=True
    ),
    "hol": TableSpec(
        rows=lambda w: w.count if "tcp" in w.protocols else 0,
        per="one per TCP message",
        required={"seq": COUNT, "hol_wait_ns": NUMBER},
        optional={"flow": COUNT, "blocked": BOOL},
        unique=("flow", "seq"),
    ),
    "timeseries": TableSpec(
        rows=lambda w: len(w.protocols) * MAX_INTERVALS,
        per="one per protocol and interval",
        required={"protocol": PROTOCOL, "interval": COUNT, "t_start_s": NUMBER},
        optional=_SERIES_COUNTS,
        suffix_numbers=True,
        unique=("protocol", "interval"),
        slack=1,
    ),
    "flow_timeseries": TableSpec(
        rows=lambda w: len(w.protocols) * w.parallel * MAX_INTERVALS if w.parallel > 1 else 0,
        per="one per protocol, parallel flow and interval",
        required={"protocol": PROTOCOL, "flow": COUNT, "interval": COUNT, "t_start_s": NUMBER},
        optional=_SERIES_COUNTS,
        suffix_numbers=True,
        unique=("protocol", "flow", "interval"),
        slack=1,
    ),
    "tcp_info": TableSpec(
        rows=lambda w: MAX_TCP_INFO_SAMPLES * w.parallel if "tcp" in w.protocols else 0,
        per="one per TCP_INFO sample of the TCP sender",
        required={"protocol": PROTOCOL, "t_ns": NUMBER},
        optional={
            name: COUNT
            for name in (
                "cwnd_segments",
                "cwnd_bytes",
                "ssthresh_segments",
                "retransmits_total",
                "lost_segments",
                "bytes_acked",
                "notsent_bytes",
            )
        },
        suffix_numbers=True,
        slack=1,
    ),
    "probe": TableSpec(
        rows=lambda w: len(w.protocols) * MAX_PROBES,
        per="one per latency probe (UDP and TCP) per load protocol",
        required={"load_protocol": PROTOCOL, "probe": PROTOCOL, "seq": COUNT},
        optional={"t_send_ns": NUMBER, "t_echo_ns": NUMBER, "rtt_ns": NUMBER},
        unique=("load_protocol", "probe", "seq"),
        slack=1,
    ),
    "sweep": TableSpec(
        rows=lambda w: w.sweep_cells * len(w.protocols),
        per="one per sweep cell and protocol",
        required={
            "parameter": TEXT,
            "value": TEXT,
            "repetition": COUNT,
            "protocol": PROTOCOL,
            "sent": COUNT,
            "delivered": COUNT,
        },
        optional={
            **_SUMMARY_OPTIONAL,
            "loss_pct": NUMBER,
            "lost": COUNT,
            "base_rtt_ms": NUMBER,
            "mss_bytes": NUMBER,
        },
        suffix_numbers=True,
        nonnull=("parameter", "value", "repetition"),
        distinct={
            "parameter": MAX_SWEEP_PARAMETERS,
            "value": MAX_SWEEP_PARAMETERS * MAX_SWEEP_VALUES,
            "repetition": MAX_SWEEP_REPEAT,
        },
        slack=1,  # one row per cell and protocol, exactly: the largest sweep renders in ~30 s
    ),
}
#: Any other CSV a report might read: no columns required, the largest bound.
_OTHER = TableSpec(rows=lambda w: len(w.protocols) * w.count, per="one per message", required={})


def max_rows(name: str, workload: Workload) -> int:
    """Rows ``name``.csv may have for ``workload`` (slack included)."""
    spec = TABLES.get(name, _OTHER)
    return max(MIN_ROWS, (spec.slack or ROW_SLACK) * spec.rows(workload))


# --- reading -------------------------------------------------------------------------------


def _example(value: object) -> str:
    text = repr(str(value))
    return text if len(text) <= 40 else text[:37] + "..."


def read_checked_table(path: Path, workload: Workload = LARGEST) -> pd.DataFrame:
    """One results CSV, refused (ResultsError) unless it can be what a run wrote.

    FileNotFoundError passes through; "" (a table with no header) is an empty frame.
    """
    name = path.name.removesuffix(".csv")
    spec = TABLES.get(name, _OTHER)
    limit = max_rows(name, workload)
    with open_results_file(path) as handle:
        columns, header_bytes = _header(path, handle)
        if not columns:
            return pd.DataFrame()
        size = _size(handle)
        max_bytes = header_bytes + limit * len(columns) * CELL_BYTES
        if size > max_bytes:
            raise ResultsError(
                f"{path}: {size:,} bytes: more than {workload.describe(name)} can write "
                f"({spec.per}; at most {max_bytes:,} bytes)"
            )
        rows = _count_rows(handle, limit)
        if rows > limit:
            raise ResultsError(
                f"{path}: more than {limit:,} rows: more than {workload.describe(name)} can "
                f"write ({spec.per})"
            )
        handle.seek(0)
        try:
            frame = pd.read_csv(handle, low_memory=False, dtype=table_dtypes(columns))
        except pd.errors.EmptyDataError:
            return pd.DataFrame()
        except (ValueError, TypeError, OverflowError) as error:
            raise ResultsError(f"{path}: not a table the lab wrote: {one_line(error)}") from None
    check_columns(path, frame, spec)
    return frame


def _header(path: Path, handle: BinaryIO) -> tuple[list[str], int]:
    """The column names and the header line's length; refuses an over-long header."""
    head = handle.read(MAX_HEADER_BYTES + 1)
    end = head.find(b"\n")
    if end < 0:
        if len(head) > MAX_HEADER_BYTES:
            raise ResultsError(
                f"{path}: header line longer than {MAX_HEADER_BYTES:,} bytes: "
                "not a table the lab wrote"
            )
        end = len(head)
    line = head[: end + 1]
    if not line.strip():
        return [], len(line)
    try:
        columns = [str(c) for c in pd.read_csv(io.BytesIO(line), nrows=0).columns]
    except (ValueError, TypeError) as error:
        raise ResultsError(
            f"{path}: header: not a table the lab wrote: {one_line(error)}"
        ) from None
    if len(columns) > MAX_COLUMNS:
        raise ResultsError(
            f"{path}: header: {len(columns):,} columns, more than any results table ({MAX_COLUMNS})"
        )
    return columns, len(line)


def _size(handle: BinaryIO) -> int:
    return handle.seek(0, io.SEEK_END)


def _count_rows(handle: BinaryIO, limit: int) -> int:
    """Lines after the header (quoted line breaks count too: an upper bound); stops at limit."""
    handle.seek(0)
    lines = 0
    last = b"\n"
    while chunk := handle.read(1 << 20):
        lines += chunk.count(b"\n")
        last = chunk[-1:]
        if lines - 1 > limit:
            break
    if last != b"\n":
        lines += 1
    return max(0, lines - 1)


def check_columns(path: Path, frame: pd.DataFrame, spec: TableSpec) -> None:
    """Required columns exist; every column of a known kind holds that kind; unique rows."""
    missing = [c for c in spec.required if c not in frame.columns]
    if missing:
        raise ResultsError(f"{path}: missing column(s): {', '.join(missing)}")
    for column in frame.columns:
        kind = spec.kind(str(column))
        if kind != TEXT:
            frame[column] = _checked(path, str(column), frame[column], kind)
    for column in spec.nonnull:
        _refuse(path, column, frame[column], frame[column].isna(), "empty")
    for column, most in spec.distinct.items():
        if column in frame.columns and (found := frame[column].nunique()) > most:
            raise ResultsError(
                f"{path}: column {column}: {found:,} different values, more than a "
                f"{path.name} holds ({most:,})"
            )
    keys = [c for c in spec.unique if c in frame.columns or c in spec.required]
    if keys and len(frame):
        repeated = frame.duplicated(subset=keys)
        if repeated.any():
            row = int(np.argmax(repeated.to_numpy()))
            key = ", ".join(f"{c} {_example(frame[c].iloc[row])}" for c in keys)
            raise ResultsError(f"{path}: row {row + 1}: {key} appears twice")


def _refuse(path: Path, column: str, series: pd.Series, bad: pd.Series, what: str) -> None:
    """ResultsError naming the first row (1 = the first after the header) where ``bad``."""
    mask = bad.to_numpy(dtype=bool, na_value=True)
    if mask.any():
        row = int(np.argmax(mask))
        cell = "" if what == "empty" else f"{_example(series.iloc[row])} in "
        raise ResultsError(f"{path}: column {column}: {what} ({cell}row {row + 1})")


def _checked(path: Path, column: str, series: pd.Series, kind: str) -> pd.Series:
    """``series`` as the kind requires, or ResultsError naming the first bad cell."""
    if kind in _ENUMS:
        allowed = _ENUMS[kind]
        text = series.astype("string")
        _refuse(path, column, series, ~text.isin(allowed).fillna(False), f"not {'/'.join(allowed)}")
        return series
    if kind == BOOL:
        if pd.api.types.is_bool_dtype(series) or series.isna().all():
            return series
        text = series.astype("string").str.strip().str.lower()
        _refuse(path, column, series, ~text.isin(_BOOL_TEXT) & text.notna(), "not true/false")
        return series
    numbers = series
    if not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
        numbers = pd.to_numeric(series, errors="coerce")
        _refuse(path, column, series, numbers.isna() & series.notna(), "not a number")
    if kind == COUNT:
        values = numbers.to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(invalid="ignore"):
            negative = pd.Series((values < 0) | np.isinf(values))
        _refuse(path, column, series, negative, "not a count (a finite number >= 0)")
    return numbers


# --- scenario.toml -----------------------------------------------------------------------


def too_deep(data: object) -> bool:
    """Nested beyond anything a results file holds (checked without recursion)."""
    return nested_deeper_than(data, MAX_META_DEPTH)
