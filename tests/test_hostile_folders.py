"""Hostile results folders: ``lab report``, ``lab compare`` and ``lab list`` answer in seconds.

Every outcome is a page (or a listing) or one line (a ResultsError, exit status 2),
never a traceback and never minutes of rendering. The first tests pin what an
adversarial review found; the last corrupts a real-looking folder in many ways
(hypothesis) and feeds it to all three commands. No root needed (one test uses it
to drop to another user when it has it).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType

import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from lab.cli import _sniff as live
from lab.errors import LabError, ResultsError
from lab.report.listing import list_runs
from lab.results import MAX_META_BYTES
from lab.results._checks import LARGEST, Workload, max_rows, read_checked_table
from tests.test_report import make_run, make_sweep, run_cli

REPO = Path(__file__).resolve().parent.parent
#: Seconds any one command may take on a hostile folder (a clean one takes ~1 s).
CASE_LIMIT_S = 10.0
JUNK_LINES = 1_000_000


# --- helpers ---------------------------------------------------------------------------


class HangError(Exception):
    """A command ran far past CASE_LIMIT_S (a hang, e.g. on a FIFO)."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Raise HangError in the test if the body runs longer than ``seconds`` (SIGALRM)."""

    def expire(_signum: int, _frame: FrameType | None) -> None:
        raise HangError(f"still running after {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def outcome(action: Callable[[], object]) -> tuple[str, float]:
    """Run one command: "ok" or its one-line LabError; anything else fails the test."""
    started = time.perf_counter()
    with deadline(4 * CASE_LIMIT_S):
        try:
            action()
            result = "ok"
        except LabError as error:
            result = str(error)
            assert result and "\n" not in result, f"not one line: {result!r}"
    elapsed = time.perf_counter() - started
    assert elapsed < CASE_LIMIT_S, f"took {elapsed:.1f} s ({result})"
    return result, elapsed


def make_base(folder: Path) -> Path:
    """A run as `lab run` writes it: 3 protocols, wire tables, captures, kernel counters."""
    return make_run(folder, protocols=("tcp", "udp", "raw"), wire=True)


def make_sweep_base(folder: Path) -> Path:
    make_sweep(folder, values=[0.0, 1.0, 2.0, 5.0], repeat=3)
    (folder / "scenario.toml").write_text(
        'name = "loss-sweep"\nprotocols = ["tcp", "udp"]\n[sweep]\n'
        "impairment.loss = [0, 1, 2, 5]\nrepeat = 3\n"
    )
    return folder


def append_junk(path: Path, lines: int) -> None:
    with path.open("a") as handle:
        handle.write("".join(f"junk{i},x,y\n" for i in range(lines)))


def check_all_commands(good: Path, bad: Path, scratch: Path) -> dict[str, str]:
    """report, compare (both ways) and list on ``bad``; each ok or one line, in seconds."""
    results = {}
    results["report"], _ = outcome(lambda: run_cli(["report", str(bad), "--allow-incomplete"]))
    out = scratch / "compare.csv"
    results["compare"], _ = outcome(
        lambda: run_cli(
            ["compare", str(good), str(bad), "--allow-incomplete", "--output", str(out)]
        )
    )
    results["compare_back"], _ = outcome(
        lambda: run_cli(["compare", str(bad), str(good), "--output", str(out)])
    )
    listed: list[list[str]] = []

    def listing() -> None:
        runs, problems = list_runs(bad.parent)
        listed.append([r.name for r in runs])
        listed.append(problems)

    results["list"], _ = outcome(listing)
    assert results["list"] == "ok", "a bad folder must not stop lab list"
    names, problems = listed
    assert good.name in names, "the good run is always listed"
    assert all("\n" not in p for p in problems)
    assert len(problems) <= 1
    return results


# --- what the review found ------------------------------------------------------------------


def test_list_skips_a_meta_json_with_wrong_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "results"
    make_run(root / "good")
    make_run(root / "bad", started=12345)  # was: TypeError sorting the runs
    assert run_cli(["list", "--results", str(root)]) == 0
    captured = capsys.readouterr()
    assert "good" in captured.out
    assert captured.err.splitlines() == [
        f"lab list: skipped {root / 'bad' / 'meta.json'}: started: must be a string or null, "
        "not int"
    ]
    for field, value in (("complete", "yes"), ("kind", ["sweep"]), ("scenario", 3)):
        make_run(root / "bad", **{field: value})
        runs, problems = list_runs(root)
        assert [r.name for r in runs] == ["good"]
        assert len(problems) == 1
        assert problems[0].startswith(f"{root / 'bad' / 'meta.json'}: {field}: must be ")


@pytest.mark.parametrize("depth", [20, 100_000])
def test_deeply_nested_meta_json_is_refused(tmp_path: Path, depth: int) -> None:
    """Was RecursionError in report, compare and list (json.loads of 100k nested arrays)."""
    root = tmp_path / "results"
    good = make_run(root / "good")
    deep = make_run(root / "deep")
    (deep / "meta.json").write_text(
        '{"format_version": 1, "complete": true, "x": ' + "[" * depth + "]" * depth + "}"
    )
    message = f"{deep / 'meta.json'}: nested deeper than 16 levels: not a meta.json the lab wrote"
    with pytest.raises(ResultsError) as report:
        run_cli(["report", str(deep)])
    with pytest.raises(ResultsError) as compare:
        run_cli(["compare", str(good), str(deep)])
    assert str(report.value) == str(compare.value) == message
    runs, problems = list_runs(root)
    assert [r.name for r in runs] == ["good"] and problems == [message]


def test_meta_json_larger_than_a_mebibyte_is_refused_unread(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "big")
    (folder / "meta.json").write_text(
        json.dumps({"format_version": 1, "complete": True, "pad": "x" * MAX_META_BYTES})
    )
    with pytest.raises(ResultsError, match=r"meta\.json: larger than 1,048,576 bytes"):
        run_cli(["report", str(folder)])


def test_report_html_that_is_a_directory_is_refused_before_rendering(tmp_path: Path) -> None:
    """Was IsADirectoryError after the page had been built."""
    folder = make_run(tmp_path / "run")
    (folder / "report.html").mkdir()
    started = time.perf_counter()
    with pytest.raises(ResultsError, match=r"report\.html: a directory: cannot write the page"):
        run_cli(["report", str(folder)])
    assert time.perf_counter() - started < 1.0  # nothing was rendered


@pytest.mark.parametrize("count", [300, 1_000_000])
def test_a_million_junk_lines_in_messages_are_refused_in_seconds(
    tmp_path: Path, count: int
) -> None:
    """Was: no answer after 888 s. With the run's own count (300) the size alone refuses
    it; with a scenario that claims the largest count, the columns do."""
    folder = make_run(tmp_path / "run")
    scenario = folder / "scenario.toml"
    scenario.write_text(scenario.read_text().replace("count = 300", f"count = {count}"))
    append_junk(folder / "messages.csv", JUNK_LINES)
    expected = (
        r"messages\.csv: [\d,]+ bytes: more than a run of 2 protocol\(s\) x 300 messages can write"
        if count == 300
        else r"messages\.csv: column protocol: not tcp/udp/raw \('junk0' in row 601\)"
    )
    message, _ = outcome(lambda: run_cli(["report", str(folder)]))
    assert re.search(expected, message), message


def test_a_million_junk_lines_in_summary_are_refused_by_report_list_and_compare(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Was 47 s / 2.2 GB in report and 700 s with 328k output lines in list."""
    root = tmp_path / "results"
    good = make_run(root / "good")
    bad = make_run(root / "junk")
    append_junk(bad / "summary.csv", JUNK_LINES)
    why = (
        rf"{bad / 'summary.csv'}: [\d,]+ bytes: more than a run of 2 protocol\(s\) x 300 "
        r"messages can write \(one per protocol; at most [\d,]+ bytes\)"
    )
    for argv in (["report", str(bad)], ["compare", str(good), str(bad)]):
        message, _ = outcome(lambda argv=argv: run_cli(argv))
        assert re.fullmatch(why, message), message
    outcome(lambda: run_cli(["list", "--results", str(root)]))
    captured = capsys.readouterr()
    assert len(captured.out.splitlines()) < 10 and "good" in captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith(f"lab list: skipped {bad / 'summary.csv'}: ")


def test_junk_rows_within_the_bounds_are_refused_by_their_columns(tmp_path: Path) -> None:
    folder = make_run(tmp_path / "run", wire=True)
    cases = {
        "summary.csv": ("tcp,1,2,3,4\nudp,1,2,3,4\n", r"row 3: protocol 'tcp' appears twice"),
        "hol.csv": ("5,x,0,False\n", r"column t_recv_ns|not a table the lab wrote"),
        "exchanges.csv": ("icmp,1,2,0,5,0\n", r"column protocol: not tcp/udp/raw \('icmp'"),
        "messages.csv": ("tcp,-4,256,1,,,,,,,,\n", r"column seq: not a count"),
        "accounting.csv": ("sideways,1,1,0,True\n", r"column direction: not client_to_server"),
    }
    for name, (rows, why) in cases.items():
        original = (folder / name).read_text()
        (folder / name).write_text(original + rows)
        with pytest.raises(ResultsError, match=why):
            run_cli(["report", str(folder)])
        (folder / name).write_text(original)
    (folder / "messages.csv").write_text(
        (folder / "messages.csv").read_text().replace("t_send_ns", "t_sent", 1)
    )
    with pytest.raises(ResultsError, match=r"messages\.csv: missing column\(s\): t_send_ns"):
        run_cli(["report", str(folder)])


def test_sweep_csv_is_bounded_by_its_cells_and_parameters(tmp_path: Path) -> None:
    folder = make_sweep_base(tmp_path / "sweep")  # 4 values x 3 repetitions x 2 protocols
    tidy = pd.read_csv(folder / "sweep.csv")
    pd.concat([tidy, tidy.head(1)]).to_csv(folder / "sweep.csv", index=False)
    with pytest.raises(
        ResultsError,
        match=r"sweep\.csv: more than 24 rows: more than a sweep of 12 cell\(s\) x 2 protocol\(s\) can write",
    ):
        run_cli(["report", str(folder)])
    tidy.assign(parameter=[f"p{i % 5}" for i in range(len(tidy))]).to_csv(
        folder / "sweep.csv", index=False
    )
    with pytest.raises(
        ResultsError,
        match=r"column parameter: 5 different values, more than a sweep\.csv holds \(4\)",
    ):
        run_cli(["report", str(folder)])
    tidy.assign(value=None).to_csv(folder / "sweep.csv", index=False)
    with pytest.raises(ResultsError, match=r"column value: empty \(row 1\)"):
        run_cli(["report", str(folder)])


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda p: p.symlink_to("/dev/zero"), "a symbolic link, not a file the lab wrote"),
        (lambda p: p.symlink_to(p.name), "a symbolic link, not a file the lab wrote"),
        (os.mkfifo, "not a regular file, not a file the lab wrote"),
        (lambda p: p.mkdir(), "a directory, not a file the lab wrote"),
    ],
)
@pytest.mark.parametrize("name", ["meta.json", "scenario.toml", "messages.csv"])
def test_links_fifos_and_directories_are_refused(
    tmp_path: Path, name: str, make: Callable[[Path], None], why: str
) -> None:
    folder = make_run(tmp_path / "run")
    (folder / name).unlink()
    make(folder / name)
    message, _ = outcome(lambda: run_cli(["report", str(folder)]))
    assert message == f"{folder / name}: {why}"


def test_a_root_owned_folder_is_one_line_for_another_user(tmp_path: Path) -> None:
    """Was a PermissionError traceback for a user rendering root's results."""
    base = Path(tempfile.mkdtemp(prefix="lab-perm-"))
    try:
        folder = make_run(base / "run")
        if os.geteuid() == 0:
            if shutil.which("setpriv") is None:
                pytest.skip("needs setpriv to run as another user")
            base.chmod(0o755)
            command = [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-m",
                "lab",
                "report",
                str(folder),
            ]
            done = subprocess.run(
                command, cwd=REPO, capture_output=True, text=True, timeout=60, check=False
            )
            if "Permission denied" in done.stderr and "lab" not in done.stderr:
                pytest.skip("the interpreter is not readable by another user")
            assert done.returncode == 2, done.stderr
            assert done.stderr.splitlines() == [
                f"lab: {folder}: cannot write report.html: permission denied (the folder "
                "belongs to root; run with sudo)"
            ]
        else:
            folder.chmod(0o555)
            with pytest.raises(ResultsError, match=r"cannot write report\.html: permission denied"):
                run_cli(["report", str(folder)])
    finally:
        shutil.rmtree(base, ignore_errors=True)


@pytest.mark.parametrize(
    "argv",
    [
        ["-t", "nan"],
        ["-t", "inf"],
        ["-t", "-1"],
        ["-t", "0"],
        ["-c", "-3"],
        ["-c", "0"],
        ["-c", "2.5"],
        ["-s", "0"],
        ["--top", "-1"],
    ],
)
def test_sniff_refuses_bad_numbers_when_parsing(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """Was a ValueError traceback from the capture loop for ``-t nan``."""
    parser = argparse.ArgumentParser(prog="lab sniff")
    live.add_arguments(parser)
    with pytest.raises(SystemExit) as stop:
        parser.parse_args(["-i", "lo", *argv])
    assert stop.value.code == 2
    error = capsys.readouterr().err.splitlines()[-1]
    assert error.startswith("lab sniff: error: argument ") and "must be" in error


def test_sniff_accepts_good_numbers() -> None:
    parser = argparse.ArgumentParser(prog="lab sniff")
    live.add_arguments(parser)
    args = parser.parse_args(["-i", "lo", "-t", "1.5", "-c", "10", "-s", "96", "--top", "3"])
    assert (args.timeout, args.count, args.snaplen, args.top) == (1.5, 10, 96, 3)


def test_cli_says_one_line_and_exits_2(tmp_path: Path) -> None:
    """The whole CLI, as a user runs it: no traceback, one line on stderr, status 2."""
    root = tmp_path / "results"
    make_run(root / "good")
    deep = make_run(root / "deep")
    (deep / "meta.json").write_text(
        '{"format_version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    junk = make_run(root / "junk")
    append_junk(junk / "messages.csv", 200_000)
    for argv in (["report", str(deep)], ["report", str(junk)], ["compare", str(junk), str(deep)]):
        done = subprocess.run(
            [sys.executable, "-m", "lab", *argv],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 2, done.stderr
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("lab: "), done.stderr
    done = subprocess.run(
        [sys.executable, "-m", "lab", "list", "--results", str(root)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and "good" in done.stdout
    assert "junk" in done.stdout  # list reads summary.csv only: its messages are not its concern
    assert done.stderr.splitlines() == [
        f"lab list: skipped {deep / 'meta.json'}: nested deeper than 16 levels: not a meta.json "
        "the lab wrote"
    ]


# --- what a real run can be: never refused -------------------------------------------------


def test_bounds_admit_the_largest_workload() -> None:
    largest = Workload(("tcp", "udp", "raw"), 1_000_000, 65_000, known=True)
    assert max_rows("messages", largest) >= 3_000_000
    assert max_rows("hol", largest) >= 1_000_000
    assert max_rows("summary", largest) >= 3
    assert max_rows("messages", LARGEST) == max_rows("messages", largest)


def test_a_million_messages_per_protocol_are_read(tmp_path: Path) -> None:
    count = 1_000_000
    path = tmp_path / "messages.csv"
    header = "protocol,seq,size,t_send_ns,t_recv_ns,arrival_index,copies,duplicate,intact,owd_ns,t_echo_ns,rtt_ns"
    t0 = 1_800_000_000_000_000_000
    rows = (
        f"udp,{s},256,{t0 + s * 1000},{t0 + s * 1000 + 5_000_000},{s},1,False,True,5000000,,"
        for s in range(count)
    )
    path.write_text(header + "\n" + "\n".join(rows) + "\n")
    started = time.perf_counter()
    frame = read_checked_table(path, Workload(("udp",), count, 256, known=True))
    assert len(frame) == count and int(frame["t_send_ns"].iloc[-1]) == t0 + (count - 1) * 1000
    assert time.perf_counter() - started < CASE_LIMIT_S
    with path.open("a") as handle:  # one row more than twice what 500,000 messages make
        handle.write(f"udp,{count},256,{t0},{t0},{count},1,False,True,0,,\n")
    with pytest.raises(
        ResultsError,
        match=r"more than 1,000,000 rows: more than a run of 1 protocol\(s\) x 500,000",
    ):
        read_checked_table(path, Workload(("udp",), count // 2, 256, known=True))


# --- fuzz ----------------------------------------------------------------------------------

RUN_FILES = (
    "meta.json",
    "scenario.toml",
    "messages.csv",
    "summary.csv",
    "exchanges.csv",
    "accounting.csv",
    "impairment_by_protocol.csv",
    "captures.csv",
    "tcp_segments.csv",
    "hol.csv",
    "report.html",
)
SWEEP_FILES = ("meta.json", "scenario.toml", "sweep.csv", "sweep.html")
BAD_CELLS = (
    "",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "-1",
    "-5e300",
    "1e308",
    "99999999999999999999999",
    "3.5",
    "x",
    "True",
    "tcp",
    "<script>alert(1)</script>",
    "\x00",
    '"',
    "a,b",
    "\u202e",
)
META_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)
META_KEYS = (
    "format_version",
    "started",
    "ended",
    "complete",
    "incomplete_reason",
    "scenario",
    "kind",
    "values",
    "repeat",
    "client",
    "packages",
    "ground_truth",
    "seed",
)
SCENARIO_LINES = (
    "protocols = 5",
    'protocols = ["tcp", "tcp", "quic"]',
    "protocols = []",
    'workload = "big"',
    "[workload]\ncount = -1",
    "[workload]\ncount = 1000000000000",
    "[workload]\ncount = 1.5",
    "[workload]\nsize = 0",
    "x = " + "[" * 5000 + "]" * 5000,
    "x = " + "{a = " * 50 + "1" + "}" * 50,
    "[" + ".".join(["a"] * 200) + "]\nb = 1",
    "not toml at all [[[",
    'name = "\\u0000"',
)


def _replace_special(path: Path, kind: str) -> None:
    if path.is_symlink() or path.exists():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dangling":
        path.symlink_to("nowhere")
    elif kind == "loop":
        path.symlink_to(path.name)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "sibling":
        path.symlink_to("summary.csv" if path.name != "summary.csv" else "messages.csv")


def _csv_lines(path: Path) -> list[str] | None:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return None


@st.composite
def corruptions(draw: st.DrawFn, files: tuple[str, ...]) -> list[tuple[str, str, object]]:
    """1-3 (file, operation, parameter) steps."""
    steps = []
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(files))
        operation = draw(
            st.sampled_from(
                (
                    "truncate",
                    "garble",
                    "binary",
                    "delete",
                    "special",
                    "junk",
                    "cell",
                    "rename",
                    "drop",
                    "duplicate",
                    "meta",
                    "scenario",
                )
            )
        )
        parameter: object
        if operation == "truncate":
            parameter = draw(st.floats(0, 1))
        elif operation == "garble":
            parameter = draw(
                st.lists(
                    st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=4)),
                    min_size=1,
                    max_size=6,
                )
            )
        elif operation == "binary":
            parameter = draw(st.binary(max_size=600))
        elif operation == "special":
            parameter = draw(
                st.sampled_from(("directory", "fifo", "dangling", "loop", "dev-zero", "sibling"))
            )
        elif operation == "junk":
            parameter = draw(st.sampled_from((3, 500, 50_000)))
        elif operation == "cell":
            parameter = (
                draw(st.floats(0, 1)),
                draw(st.floats(0, 1)),
                draw(st.one_of(st.sampled_from(BAD_CELLS), st.text(max_size=12))),
            )
        elif operation in ("rename", "drop"):
            parameter = (
                draw(st.floats(0, 1)),
                draw(st.sampled_from(("", "x", "seq", "protocol", "t_send_ns", "a_ns", "é"))),
            )
        elif operation == "meta":
            parameter = draw(
                st.one_of(
                    st.tuples(st.sampled_from(META_KEYS), META_VALUES),
                    st.sampled_from(("deep", "list", "huge", "nan")),
                )
            )
        elif operation == "scenario":
            parameter = draw(st.sampled_from(SCENARIO_LINES))
        else:
            parameter = None
        steps.append((name, operation, parameter))
    return steps


def apply(folder: Path, steps: list[tuple[str, str, object]]) -> None:
    for name, operation, parameter in steps:
        path = folder / name
        if operation == "meta":
            path = folder / "meta.json"
        elif operation == "scenario":
            path = folder / "scenario.toml"
        regular = path.is_file() and not path.is_symlink()
        if operation == "delete":
            _replace_special(path, "none")
        elif operation == "special":
            _replace_special(path, str(parameter))
        elif not regular:
            continue
        elif operation == "truncate":
            data = path.read_bytes()
            path.write_bytes(data[: int(len(data) * float(str(parameter)))])
        elif operation == "garble":
            data = bytearray(path.read_bytes())
            for where, chunk in parameter:  # type: ignore[attr-defined]
                at = int(where * max(len(data) - 1, 0))
                data[at : at + len(chunk)] = chunk
            path.write_bytes(bytes(data))
        elif operation == "binary":
            path.write_bytes(parameter)  # type: ignore[arg-type]
        elif operation == "junk":
            append_junk(path, int(str(parameter)))
        elif operation in ("cell", "rename", "drop", "duplicate"):
            lines = _csv_lines(path)
            if not lines or not name.endswith(".csv"):
                continue
            header = lines[0].split(",")
            if operation == "cell" and len(lines) > 1:
                row_f, col_f, value = parameter  # type: ignore[misc]
                row = 1 + int(row_f * (len(lines) - 2))
                cells = lines[row].split(",")
                cells[int(col_f * (len(cells) - 1))] = str(value)
                lines[row] = ",".join(cells)
            elif operation == "rename":
                where, new = parameter  # type: ignore[misc]
                header[int(where * (len(header) - 1))] = str(new)
                lines[0] = ",".join(header)
            elif operation == "drop":
                where, _ = parameter  # type: ignore[misc]
                column = int(where * (len(header) - 1))
                lines = [
                    ",".join(c for i, c in enumerate(line.split(",")) if i != column)
                    for line in lines
                ]
            elif operation == "duplicate":
                lines = lines + lines[1:]
            path.write_text("\n".join(lines) + "\n")
        elif operation == "meta":
            try:
                meta = json.loads(path.read_text())
            except (ValueError, RecursionError):  # an earlier step broke it, or made it "deep"
                continue
            if parameter == "deep":
                path.write_text('{"format_version": 1, "x": ' + "[" * 50_000 + "]" * 50_000 + "}")
            elif parameter == "list":
                path.write_text(json.dumps([meta]))
            elif parameter == "huge":
                meta["pad"] = "x" * (MAX_META_BYTES + 10)
                path.write_text(json.dumps(meta))
            elif parameter == "nan":
                path.write_text(json.dumps(meta).replace('"seed": 3', '"seed": NaN'))
            elif isinstance(meta, dict):
                key, value = parameter  # type: ignore[misc]
                meta[key] = value
                path.write_text(json.dumps(meta))
        elif operation == "scenario":
            path.write_text(path.read_text(errors="replace") + "\n" + str(parameter) + "\n")


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("bases")
    return make_base(root / "run"), make_sweep_base(root / "sweep")


def _fuzz_case(
    bases: tuple[Path, Path], sweep: bool, steps: list[tuple[str, str, object]]
) -> dict[str, str]:
    run, sweep_base = bases
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        root = scratch / "results"
        good = root / "good"
        shutil.copytree(run, good, symlinks=True)
        bad = root / "bad"
        shutil.copytree(sweep_base if sweep else run, bad, symlinks=True)
        apply(bad, steps)
        return check_all_commands(good, bad, scratch)


def test_the_untouched_bases_render(bases: tuple[Path, Path]) -> None:
    """The fuzz starts from folders every command accepts."""
    with tempfile.TemporaryDirectory() as scratch:
        for base, sweep in ((bases[0], False), (bases[1], True)):
            root = Path(scratch) / ("s" if sweep else "r")
            good = root / "good"
            shutil.copytree(bases[0], good)
            bad = root / "bad"
            shutil.copytree(base, bad)
            results = check_all_commands(good, bad, Path(scratch))
            assert results["report"] == "ok"
            assert (results["compare"] == "ok") != sweep


@pytest.mark.parametrize("name", RUN_FILES)
@pytest.mark.parametrize(
    "operation",
    [
        ("truncate", 0.5),
        ("binary", b"\x00\xff\xfe" * 50),
        ("special", "directory"),
        ("junk", 200_000),
    ],
)
def test_every_file_broken_every_way(
    bases: tuple[Path, Path], name: str, operation: tuple[str, object]
) -> None:
    _fuzz_case(bases, False, [(name, operation[0], operation[1])])


@settings(
    max_examples=int(os.environ.get("LAB_FUZZ_EXAMPLES", "20")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_fuzz_corrupted_folders(bases: tuple[Path, Path], data: st.DataObject) -> None:
    sweep = data.draw(st.booleans(), label="sweep")
    steps = data.draw(corruptions(SWEEP_FILES if sweep else RUN_FILES), label="steps")
    results = _fuzz_case(bases, sweep, steps)
    for command in ("report", "compare"):
        event(f"{command}: {'ok' if results[command] == 'ok' else 'refused'}")
