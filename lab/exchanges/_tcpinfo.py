"""The TCP sender's own view, sampled: ``getsockopt(TCP_INFO)`` every few ms while it sends.

The kernel keeps a ``struct tcp_info`` per socket (``linux/tcp.h``); ``ss -ti`` prints
the same fields. Sampled every :data:`~lab.exchanges.TCP_INFO_INTERVAL_S` on the client
(the sender) from a thread, it shows the congestion window growing and collapsing,
the smoothed RTT with the queue in it, the bytes in flight and the delivery rate.
Times are CLOCK_REALTIME ns, as every other time of a run.
"""

from __future__ import annotations

import socket
import struct
import threading
import time

__all__ = ["TCP_INFO_COLUMNS", "TcpInfoSampler", "parse_tcp_info"]

#: Bytes of ``struct tcp_info`` read: up to tcpi_snd_wnd (Linux 5.4+); older kernels
#: return less and the missing fields are -1.
_TCP_INFO_BYTES = 232

#: (column, struct format, byte offset) of the fields kept, from ``linux/tcp.h``.
_FIELDS: tuple[tuple[str, str, int], ...] = (
    ("state", "B", 0),
    ("ca_state", "B", 1),
    ("retransmits", "B", 2),
    ("rto_us", "I", 8),
    ("snd_mss", "I", 16),
    ("unacked", "I", 24),
    ("sacked", "I", 28),
    ("lost", "I", 32),
    ("retrans", "I", 36),
    ("rtt_us", "I", 68),
    ("rttvar_us", "I", 72),
    ("snd_ssthresh", "I", 76),
    ("snd_cwnd", "I", 80),
    ("total_retrans", "I", 100),
    ("pacing_rate", "Q", 104),
    ("bytes_acked", "Q", 120),
    ("notsent_bytes", "I", 144),
    ("min_rtt_us", "I", 148),
    ("delivery_rate", "Q", 160),
    ("bytes_sent", "Q", 200),
    ("bytes_retrans", "Q", 208),
    ("snd_wnd", "I", 228),
)

#: Columns of ``tcp_info.csv`` (results/README.md gives units and meaning).
TCP_INFO_COLUMNS = (
    "protocol",
    "t_ns",
    "cwnd_segments",
    "cwnd_bytes",
    "ssthresh_segments",
    "in_flight_segments",
    "in_flight_bytes",
    "srtt_ms",
    "rttvar_ms",
    "min_rtt_ms",
    "rto_ms",
    "retransmits_total",
    "lost_segments",
    "delivery_rate_bps",
    "pacing_rate_bps",
    "bytes_acked",
    "bytes_sent",
    "bytes_retrans",
    "notsent_bytes",
    "snd_wnd_bytes",
    "ca_state",
    "congestion_control",
)

_CA_STATES = ("open", "disorder", "cwr", "recovery", "loss")
#: ssthresh before the first loss: "infinite" (TCP_INFINITE_SSTHRESH), shown as missing.
_INFINITE_SSTHRESH = 0x7FFFFFFF


def parse_tcp_info(raw: bytes) -> dict[str, int]:
    """The kept fields of one ``struct tcp_info``; -1 for a field the kernel did not fill."""
    values: dict[str, int] = {}
    for name, fmt, offset in _FIELDS:
        size = struct.calcsize(fmt)
        values[name] = (
            struct.unpack_from("=" + fmt, raw, offset)[0] if len(raw) >= offset + size else -1
        )
    return values


def sample_row(t_ns: int, info: dict[str, int], congestion_control: str) -> dict[str, object]:
    """One ``tcp_info.csv`` row from a parsed sample (the sender's figures, in lab units).

    In flight follows the kernel's ``tcp_packets_in_flight``: unacked - (sacked + lost)
    + retrans (RFC 6675's "pipe"), in segments of snd_mss bytes.
    """
    mss = info["snd_mss"]
    in_flight = info["unacked"] - (info["sacked"] + info["lost"]) + info["retrans"]
    ssthresh = info["snd_ssthresh"]
    state = info["ca_state"]
    return {
        "protocol": "tcp",
        "t_ns": t_ns,
        "cwnd_segments": info["snd_cwnd"],
        "cwnd_bytes": info["snd_cwnd"] * mss,
        "ssthresh_segments": None if ssthresh >= _INFINITE_SSTHRESH else ssthresh,
        "in_flight_segments": in_flight,
        "in_flight_bytes": in_flight * mss,
        "srtt_ms": info["rtt_us"] / 1000,
        "rttvar_ms": info["rttvar_us"] / 1000,
        "min_rtt_ms": info["min_rtt_us"] / 1000 if info["min_rtt_us"] >= 0 else None,
        "rto_ms": info["rto_us"] / 1000,
        "retransmits_total": info["total_retrans"],
        "lost_segments": info["lost"],
        "delivery_rate_bps": info["delivery_rate"] * 8 if info["delivery_rate"] >= 0 else None,
        "pacing_rate_bps": info["pacing_rate"] * 8 if info["pacing_rate"] >= 0 else None,
        "bytes_acked": info["bytes_acked"],
        "bytes_sent": info["bytes_sent"] if info["bytes_sent"] >= 0 else None,
        "bytes_retrans": info["bytes_retrans"] if info["bytes_retrans"] >= 0 else None,
        "notsent_bytes": info["notsent_bytes"],
        "snd_wnd_bytes": info["snd_wnd"] if info["snd_wnd"] >= 0 else None,
        "ca_state": _CA_STATES[state] if 0 <= state < len(_CA_STATES) else str(state),
        "congestion_control": congestion_control,
    }


class TcpInfoSampler:
    """Samples a connected socket's TCP_INFO every ``interval_s`` until :meth:`stop`."""

    def __init__(self, sock: socket.socket, interval_s: float) -> None:
        self._sock = sock
        self._interval_s = interval_s
        self.samples: list[tuple[int, bytes]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tcp-info", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stopped.wait(self._interval_s):
                return

    def sample(self) -> None:
        """Take one sample now (a closed socket ends the sampling)."""
        try:
            raw = self._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_BYTES)
        except OSError:
            self._stopped.set()
            return
        self.samples.append((time.time_ns(), raw))

    def stop(self) -> list[tuple[int, bytes]]:
        """End the sampling with a last sample; the raw samples, oldest first."""
        self._stopped.set()
        self._thread.join(1.0)
        self.sample()
        return self.samples
