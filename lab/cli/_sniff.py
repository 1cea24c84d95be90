"""``lab sniff``: capture on one interface with a live summary in the terminal.

``lab sniff -i IFACE [-f FILTER] [-c COUNT] [-t SECONDS] [-w out.pcap] [--netns NAME]``

The capture runs in a child process (:class:`~lab.capture.sniffer.Sniffer`), which
reports packet / byte counts per protocol and per flow every refresh; the terminal
shows them with rich.live. Ctrl-C, ``-c`` or ``-t`` ends it; the pcap is always left
complete. When stdout is not a terminal only the final summary is printed.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from lab.capture import _linux
from lab.capture.flows import LiveCounters
from lab.capture.sniffer import MAX_SNAPLEN, CaptureStats, Sniffer
from lab.cli._common import Commands
from lab.errors import CaptureError, PrivilegeError
from lab.pcap import LINKTYPE_ETHERNET, LINKTYPE_RAW

PRIVILEGE_MESSAGE = "lab sniff needs root or CAP_NET_RAW: run it as `sudo .venv/bin/lab sniff ...`"
#: Seconds between two refreshes of the live view.
REFRESH_S = 0.5

_LINKTYPE_NAMES = {LINKTYPE_RAW: "RAW (raw IP)", LINKTYPE_ETHERNET: "EN10MB (Ethernet)"}


def _whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number in [low, high]; anything else is a usage error."""
    bounds = f"between {low} and {high}" if high is not None else f">= {low}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bounds}, not {text!r}")
        return value

    return parse


def _seconds(text: str) -> float:
    """An argparse type: a finite number of seconds > 0 (not nan, inf or negative)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, not {text!r}")
    return value


def register(commands: Commands) -> None:
    parser = commands.add_parser(
        "sniff",
        help="capture live traffic on an interface (root), with a live summary",
        description="Capture packets on IFACE with a RAW AF_PACKET socket (root or CAP_NET_RAW);"
        " a live summary per protocol and flow.",
    )
    add_arguments(parser)
    parser.set_defaults(handler=run)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``lab sniff``; bad numbers are refused by argparse (usage, exit 2)."""
    parser.add_argument("-i", "--interface", required=True, help="interface to capture on")
    parser.add_argument(
        "-f", "--filter", dest="bpf", metavar="FILTER", help='BPF filter, e.g. "udp port 5000"'
    )
    parser.add_argument("-c", "--count", type=_whole_number(1), help="stop after COUNT packets")
    parser.add_argument(
        "-t", "--timeout", type=_seconds, metavar="SECONDS", help="stop after SECONDS"
    )
    parser.add_argument(
        "-w", "--write", type=Path, metavar="FILE", help="write the packets to a pcap file"
    )
    parser.add_argument("--netns", metavar="NAME", help="network namespace of the interface")
    parser.add_argument(
        "-s",
        "--snaplen",
        type=_whole_number(1, MAX_SNAPLEN),
        default=MAX_SNAPLEN,
        help="bytes kept of each packet",
    )
    parser.add_argument("--top", type=_whole_number(1), default=10, help="flows shown (default 10)")


def _human(n: float, unit: str = "B") -> str:
    for prefix in ("", "k", "M", "G"):
        if abs(n) < 1000:
            return f"{n:.0f} {prefix}{unit}" if prefix == "" else f"{n:.1f} {prefix}{unit}"
        n /= 1000
    return f"{n:.1f} T{unit}"


def render(
    counters: LiveCounters | None,
    *,
    title: str,
    pps: float,
    bps: float,
    top: int,
) -> Group:
    """The summary: a headline, a table per protocol, the top flows."""
    c = counters
    head = Text(title, style="bold")
    if c is None:
        return Group(head, Text("waiting for the first report ..."))
    head.append(
        f"\n{c.elapsed_s:.1f} s   {c.packets:,} packets   {_human(c.bytes)}"
        f"   {pps:,.0f} pkt/s   {_human(bps * 8, 'bit/s')}   kernel drops: "
    )
    head.append(f"{c.kernel_drops:,}", style="bold red" if c.kernel_drops else "green")
    protos = Table(title="per protocol", title_justify="left", expand=False)
    protos.add_column("protocol")
    protos.add_column("packets", justify="right")
    protos.add_column("bytes", justify="right")
    protos.add_column("%", justify="right")
    for name, pkts, nbytes in c.protocols:
        share = 100.0 * pkts / c.packets if c.packets else 0.0
        protos.add_row(name, f"{pkts:,}", f"{nbytes:,}", f"{share:.1f}")
    flows = Table(
        title=f"top {min(top, len(c.flows))} of {c.flows_seen:,} flows",
        title_justify="left",
    )
    flows.add_column("protocol")
    flows.add_column("flow")
    flows.add_column("packets", justify="right")
    flows.add_column("bytes", justify="right")
    for f in c.flows[:top]:
        flows.add_row(f.protocol, f.label(), f"{f.packets:,}", f"{f.bytes:,}")
    return Group(head, protos, flows)


def _chown_to_sudo_user(path: Path) -> None:
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid:
        return
    with contextlib.suppress(OSError, ValueError):
        os.chown(path, int(uid), int(gid) if gid else -1)


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Let a second Ctrl-C not interrupt the orderly stop."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def run(args: argparse.Namespace) -> int:
    """``lab sniff``: capture until Ctrl-C, ``--count`` or ``--timeout``; 0 when done."""
    if not _linux.has_cap_net_raw():
        raise PrivilegeError(PRIVILEGE_MESSAGE)
    if args.count is not None and args.count < 1:
        raise CaptureError(f"--count must be at least 1, not {args.count}")
    if args.timeout is not None and not (math.isfinite(args.timeout) and args.timeout > 0):
        raise CaptureError(f"--timeout must be positive, not {args.timeout}")
    top = max(1, args.top)
    sniffer = Sniffer(
        args.interface,
        args.write,
        netns=args.netns,
        bpf=args.bpf,
        snaplen=args.snaplen,
        count=args.count,
        summary_interval=REFRESH_S,
        top_flows=top,
    )
    out = Console()
    err = Console(stderr=True)
    where = f"{args.interface}" + (f" in netns {args.netns}" if args.netns else "")
    sniffer.start()
    try:
        kind = _LINKTYPE_NAMES.get(sniffer.linktype, str(sniffer.linktype))
        target = f", writing {args.write}" if args.write else ""
        print(
            f"capturing on {where}, link type {kind}{target} (Ctrl-C to stop)",
            file=sys.stderr,
            flush=True,
        )
        _watch(sniffer, out, title=f"lab sniff {where}", top=top, timeout=args.timeout)
    except KeyboardInterrupt:
        pass
    finally:
        with _sigint_ignored():
            stats = sniffer.stop()
            if args.write is not None:
                _chown_to_sudo_user(args.write)
    _final_summary(sniffer.counters, stats, out, err, title=f"lab sniff {where}", top=top)
    return 0


def _watch(sniffer: Sniffer, out: Console, *, title: str, top: int, timeout: float | None) -> None:
    deadline = time.monotonic() + timeout if timeout is not None else math.inf
    live = Live(console=out, transient=True, auto_refresh=False) if out.is_terminal else None
    last: tuple[float, int, int] = (0.0, 0, 0)
    pps = bps = 0.0
    with live if live is not None else contextlib.nullcontext():
        while not sniffer.finished:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            before = sniffer.counters
            c = sniffer.poll(min(left, REFRESH_S / 2))
            if c is not None and c is not before:
                dt = c.elapsed_s - last[0]
                if dt > 0:
                    pps = (c.packets - last[1]) / dt
                    bps = (c.bytes - last[2]) / dt
                last = (c.elapsed_s, c.packets, c.bytes)
            if live is not None:
                live.update(render(c, title=title, pps=pps, bps=bps, top=top), refresh=True)


def _final_summary(
    counters: LiveCounters | None,
    stats: CaptureStats,
    out: Console,
    err: Console,
    *,
    title: str,
    top: int,
) -> None:
    duration = stats.duration_s
    pps = stats.packets / duration if duration > 0 else 0.0
    bps = stats.bytes / duration if duration > 0 else 0.0
    out.print(render(counters, title=title, pps=pps, bps=bps, top=top))
    written = f" written to {stats.path}" if stats.path else ""
    out.print(
        f"{stats.packets:,} packets{written}; {stats.kernel_packets:,} received by filter,"
        f" {stats.kernel_drops:,} dropped by kernel",
        soft_wrap=True,
        highlight=False,
    )
    if stats.kernel_drops:
        err.print(
            f"warning: the kernel dropped {stats.kernel_drops:,} packets: the capture is"
            " incomplete",
            style="bold red",
            soft_wrap=True,
        )
