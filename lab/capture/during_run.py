"""Capture both ends of the link while an exchange runs.

The client-side pcap shows packets as the client's kernel sent them (before the
impairment, for client -> server traffic); the server-side pcap shows them as they
reached the server (after it). Together with the engine's ground truth they show
what the link did, packet by packet.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from lab.capture.sniffer import CaptureStats, Sniffer
from lab.results import CAPTURE_DIR, pcap_path
from lab.testbed import Host

__all__ = ["CAPTURE_DIR", "capture_link", "captures_table", "pcap_path"]


@contextlib.contextmanager
def capture_link(
    folder: Path, protocol: str, hosts: tuple[Host, Host]
) -> Iterator[list[CaptureStats]]:
    """Capture on both link interfaces for the body; fills the yielded list on exit.

    Both sniffers are receiving before the body starts (``Sniffer.start`` returns only
    then), so the first packet of the exchange is in the files.
    """
    (folder / CAPTURE_DIR).mkdir(exist_ok=True)
    stats: list[CaptureStats] = []
    with contextlib.ExitStack() as stack:
        sniffers = []
        for host in hosts:
            sniffer = Sniffer(
                host.interface, pcap_path(folder, protocol, host.role), netns=host.netns
            )
            sniffer.start()
            stack.callback(_stop_quietly, sniffer)
            sniffers.append(sniffer)
        yield stats
        stats.extend(sniffer.stop() for sniffer in sniffers)


def _stop_quietly(sniffer: Sniffer) -> None:
    with contextlib.suppress(Exception):
        sniffer.stop()


def captures_table(rows: list[tuple[str, str, CaptureStats]]) -> pd.DataFrame:
    """One row per pcap: packets written, the kernel's own counts and drops."""
    records = []
    for protocol, role, stats in rows:
        record = asdict(stats)
        record["path"] = str(Path(CAPTURE_DIR) / Path(str(record["path"])).name)
        records.append(
            {"protocol": protocol, "side": role, **record, "complete": stats.kernel_drops == 0}
        )
    return pd.DataFrame(records)
