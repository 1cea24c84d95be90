"""Results folders: the one owner of ``results/<scenario>-<UTC time>/``.

Writing: :class:`RunFolder` creates the folder with ``meta.json`` saying ``complete:
false``, writes tables as they are ready and sets ``complete: true`` last, so a half
run never passes as done. Reading: :func:`load_run` gives a :class:`Run` (meta.json
checked, tables as DataFrames with one dtype rule, capture and report paths). The
table names, the capture-file rule and the format version live here and nowhere
else; results/README.md documents every file.
"""

from lab.results._checks import LARGEST, Workload
from lab.results._files import (
    MAX_META_BYTES,
    MAX_META_DEPTH,
    nested_deeper_than,
    open_results_file,
    read_small_file,
    table_dtypes,
)
from lab.results._read import (
    CAPTURE_DIR,
    REPORT_PAGES,
    RUN_TABLES,
    SWEEP_TABLES,
    Run,
    is_file_safely,
    load_run,
    pcap_path,
    present,
    read_meta,
    read_scenario,
    read_table,
    run_workload,
)
from lab.results._write import (
    DEFAULT_ROOT,
    FORMAT_VERSION,
    RunFolder,
    environment,
    now_iso,
    write_file,
)

__all__ = [
    "CAPTURE_DIR",
    "DEFAULT_ROOT",
    "FORMAT_VERSION",
    "LARGEST",
    "MAX_META_BYTES",
    "MAX_META_DEPTH",
    "REPORT_PAGES",
    "RUN_TABLES",
    "SWEEP_TABLES",
    "Run",
    "RunFolder",
    "Workload",
    "environment",
    "is_file_safely",
    "load_run",
    "nested_deeper_than",
    "now_iso",
    "open_results_file",
    "pcap_path",
    "present",
    "read_meta",
    "read_scenario",
    "read_small_file",
    "read_table",
    "run_workload",
    "table_dtypes",
    "write_file",
]
