"""The netem backend: ``tc`` arguments for kernels that have sch_netem, and a probe for it.

:func:`netem_args` maps every :class:`LinkImpairment` field to tc-netem(8) syntax; the
engine runs :func:`netem_commands` inside a namespace on the interface that carries one
direction. Where netem and the userspace model (:mod:`lab.impairment.model`) behave
differently for the same parameters, :func:`netem_caveats` says so in words a user can
read, because the numbers measured on the two backends then differ:

* ``keep_order`` has no netem option. netem sorts packets by departure time, so with
  jitter it reorders them; with ``rate_bps`` set it keeps order by itself.
* Delay correlation: the kernel's tabledist takes the correlated random value modulo the
  table size (or ``2 * jitter``), which discards most of the correlation.
* Duplication: netem forwards one copy of a packet drawn for both loss and duplication,
  and the duplicate goes through the qdisc again (loss, delay, ...).
* Rate: netem counts the link-layer header (14 bytes on a veth); the model counts what
  the forwarder passes (the IP packet).

Without ``distribution`` tc loads no table and the kernel draws jitter uniformly, so
``uniform`` maps to no ``distribution`` argument (iproute2 ships no uniform.dist).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
from typing import Final

from lab.impairment.spec import Distribution, LinkImpairment

PROBE_TIMEOUT_S: Final = 10.0
_PROBE_PREFIX: Final = "lab-probe-"
# tc's answers when the kernel has no sch_netem (new and old iproute2).
_UNKNOWN_QDISC: Final = (
    "qdisc kind is unknown",
    "rtnetlink answers: no such file or directory",
    "unknown qdisc",
)

_probe_cache: dict[str, bool] = {}
_probe_lock = threading.Lock()


def _time(ms: float) -> str:
    """tc time syntax at tc's microsecond resolution: "20ms", "500us"."""
    us = round(ms * 1000)
    return f"{us // 1000}ms" if us % 1000 == 0 else f"{us}us"


def _percent(value: float) -> str:
    """tc percent syntax without float noise: "5%", "0.25%"."""
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return f"{text}%"


def netem_args(params: LinkImpairment) -> list[str]:
    """The arguments after ``tc qdisc replace dev IF root`` for one direction."""
    args = ["netem", "limit", str(params.queue_limit)]
    if params.delay_ms > 0 or params.jitter_ms > 0:
        args += ["delay", _time(params.delay_ms)]
        if params.jitter_ms > 0:
            args.append(_time(params.jitter_ms))
            if params.delay_correlation > 0:
                args.append(_percent(params.delay_correlation))
            if params.distribution is not Distribution.UNIFORM:
                args += ["distribution", params.distribution.value]
    if params.gemodel is not None:
        ge = params.gemodel
        args += [
            "loss",
            "gemodel",
            _percent(ge.p),
            _percent(ge.r_effective),
            _percent(ge.one_minus_h),
            _percent(ge.one_minus_k),
        ]
    elif params.loss > 0:
        args += ["loss", "random", _percent(params.loss)]
        if params.loss_correlation > 0:
            args.append(_percent(params.loss_correlation))
    if params.duplicate > 0:
        args += ["duplicate", _percent(params.duplicate)]
        if params.duplicate_correlation > 0:
            args.append(_percent(params.duplicate_correlation))
    if params.corrupt > 0:
        args += ["corrupt", _percent(params.corrupt)]
        if params.corrupt_correlation > 0:
            args.append(_percent(params.corrupt_correlation))
    if params.reorder > 0:
        args += ["reorder", _percent(params.reorder)]
        if params.reorder_correlation > 0:
            args.append(_percent(params.reorder_correlation))
        if params.reorder_gap > 0:
            args += ["gap", str(params.reorder_gap)]
    if params.rate_bps > 0:
        args += ["rate", f"{params.rate_bps}bit"]
    return args


def netem_commands(ifname: str, params: LinkImpairment) -> list[list[str]]:
    """Full argv lists that impair ifname; none when the direction is clean."""
    if params.is_clean:
        return []
    return [["tc", "qdisc", "replace", "dev", ifname, "root", *netem_args(params)]]


def netem_delete_command(ifname: str) -> list[str]:
    """argv that removes the netem root qdisc again (fails harmlessly if there is none)."""
    return ["tc", "qdisc", "del", "dev", ifname, "root"]


def netem_caveats(params: LinkImpairment) -> list[str]:
    """Where netem will not do what the userspace model does for these parameters."""
    caveats: list[str] = []
    if params.keep_order and params.jitter_ms > 0 and params.rate_bps == 0:
        caveats.append(
            "keep_order: netem has no such option and reorders jittered packets"
            " (it keeps order only when a rate is set)"
        )
    if params.delay_correlation > 0 and params.jitter_ms > 0:
        caveats.append(
            "delay_correlation: the kernel takes the correlated value modulo the jitter"
            " table, so successive delays are nearly uncorrelated"
        )
    if params.duplicate > 0 and (params.loss > 0 or params.gemodel is not None):
        caveats.append(
            "duplicate: netem forwards one copy of a packet drawn for both loss and"
            " duplication, and impairs the duplicate a second time"
        )
    if params.rate_bps > 0:
        caveats.append("rate_bps: netem also counts the link-layer header of each packet")
    return caveats


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, check=False, timeout=PROBE_TIMEOUT_S
    )


def _ok(argv: list[str]) -> bool:
    try:
        return _run(argv).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _probe_in(namespace: str, throwaway: bool) -> bool | None:
    """Add a netem qdisc to a scratch interface in namespace: True, False or None (unsure)."""
    in_ns = ["ip", "netns", "exec", namespace]
    dev = f"lprobe{os.getpid() % 100_000}"  # <= 15 characters (IFNAMSIZ)
    created = _ok([*in_ns, "ip", "link", "add", dev, "type", "dummy"]) or _ok(
        [*in_ns, "ip", "link", "add", dev, "type", "veth", "peer", "name", f"{dev}p"]
    )
    if not created:
        if not throwaway:
            return None
        dev = "lo"  # the throwaway namespace's own loopback: touches nothing else
    try:
        try:
            result = _run(
                [*in_ns, "tc", "qdisc", "add", "dev", dev, "root", "netem", "delay", "1ms"]
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode == 0:
            return True
        error = (result.stderr + result.stdout).lower()
        return False if any(text in error for text in _UNKNOWN_QDISC) else None
    finally:
        if created and not throwaway:
            _ok([*in_ns, "ip", "link", "del", dev])


def _probe(netns: str | None) -> bool | None:
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return False  # without the tools the backend cannot run either
    if netns is not None:
        return _probe_in(netns, throwaway=False)
    namespace = f"{_PROBE_PREFIX}{os.getpid()}"
    if not _ok(["ip", "netns", "add", namespace]):
        return None  # typically not root: no answer
    try:
        return _probe_in(namespace, throwaway=True)
    finally:
        _ok(["ip", "netns", "del", namespace])


def netem_available(netns: str | None = None) -> bool:
    """True when the running kernel has sch_netem (checked once per process).

    The probe never touches the host's interfaces: it adds a netem qdisc to a dummy
    interface in a throwaway namespace ``lab-probe-<pid>`` (removed again), or, when
    netns names an existing namespace, to a dummy created and deleted there. Needs
    root; an inconclusive probe (no privileges, timeout) answers False and is not
    cached, so a later call with privileges can still find netem.
    """
    with _probe_lock:
        if "netem" in _probe_cache:
            return _probe_cache["netem"]
        result = _probe(netns)
        if result is not None:
            _probe_cache["netem"] = result
        return bool(result)
