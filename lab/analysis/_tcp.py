"""TCP sequence-space analysis on per-segment tables, shared by the lab's two-capture
view (:mod:`lab.analysis.wire`) and ``lab analyze`` (:mod:`lab.analysis.offline`).

Input rows are TCP segments of one or many connections, in capture order, with the
columns ``flow`` (int, one value per connection), ``dir`` (0: sent by the connection's
initiator, 1: towards it), ``ts_ns``, ``tcp_seq``, ``tcp_ack``, ``tcp_flags``,
``tcp_window``, ``payload_len`` and ``ip_id``. ``g = 2 * flow + dir`` names one
direction of one connection: every per-direction step is a groupby transform over
``g``, so thousands of connections cost no Python loop, and a 100k-segment
connection costs a handful of numpy passes.

The three round-trip times (``results/README.md`` uses the same words):

* **handshake RTT** (:func:`handshakes`) — the SYN to the ACK that completes the
  three-way handshake, as captured: one round trip plus one host's turnaround,
  wherever the capture sat (Wireshark's ``tcp.analysis.initial_rtt``).
* **Karn RTT** (:func:`karn_rtt_samples`) — per original data segment sent from the
  capture point: the time to the first ACK of the peer covering its last byte;
  segments whose bytes were ever retransmitted, and segments whose ACK came after a
  retransmission sent in between, give none (RFC 6298 §3, Karn's algorithm).
* **ack RTT** (:func:`ack_rtt_samples`) — per ACK, tshark's
  ``tcp.analysis.ack_rtt``: the time from the earliest still-unacknowledged segment
  whose end is exactly that ACK number; retransmitted data counts (timed from the
  first copy) and a cumulative ACK times only the segment ending at its number.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]

_WRAP = 1 << 32
_HALF = 1 << 31
_INF = np.iinfo(np.int64).max

#: tshark's out-of-order window when no handshake RTT is known (ns).
DEFAULT_OOO_THRESHOLD_NS = 3_000_000
#: RFC 5681 §3.2: the third duplicate ACK triggers the fast retransmit.
DUPACK_THRESHOLD = 3
#: A retransmission is "fast" only if it follows the last duplicate ACK by at most
#: max(handshake RTT, this): an RTO (RFC 6298 §2.4: >= 1 s, Linux >= 200 ms, and
#: always > RTT) then never passes for one.
FAST_WINDOW_FLOOR_NS = 20_000_000


def signed32(values: I64) -> I64:
    """A 32-bit sequence-number difference as a signed step (RFC 9293 §3.4 arithmetic)."""
    return ((values + _HALF) % _WRAP) - _HALF


def _col(frame: pd.DataFrame, name: str, fill: int = 0) -> I64:
    return frame[name].to_numpy(dtype=np.int64, na_value=fill)


def _well_formed(seg: pd.DataFrame) -> Mask:
    """Rows whose TCP header is valid (data offset >= 20 bytes: the reader gives them a
    payload length). tshark does not analyse the others, and no stack accepts them."""
    if "payload_len" not in seg:
        return np.ones(len(seg), dtype=np.bool_)
    return seg["payload_len"].notna().to_numpy(dtype=np.bool_)


def _joint_keys(*pairs: tuple[I64, npt.NDArray[np.int64] | npt.NDArray[np.float64]]) -> list[I64]:
    """Order-preserving (group, value) keys for arrays that are searched in each other.

    Dense ranks of the groups and of the values over all the arrays together, so
    the key never overflows, however large the flow ids (``lab analyze`` numbers
    every flow of a capture) or the sequence offsets.
    """
    sizes = [len(group) for group, _ in pairs]
    _, group_rank = np.unique(np.concatenate([g for g, _ in pairs]), return_inverse=True)
    values = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in pairs])
    distinct, value_rank = np.unique(values, return_inverse=True)
    keys = group_rank.reshape(-1).astype(np.int64) * (distinct.size + 1) + value_rank.reshape(-1)
    return list(np.split(keys, np.cumsum(sizes)[:-1]))


def initial_sequence_numbers(seg: pd.DataFrame) -> pd.Series:
    """ISN per direction ``g``: the seq of its first SYN, else one below its first seq.

    Without a SYN in the capture the first byte seen becomes relative seq 1, so
    relative numbers read the same as with a handshake (Wireshark's convention).
    """
    g = seg["g"]
    flags = _col(seg, "tcp_flags")
    seq = pd.Series(_col(seg, "tcp_seq"), index=seg.index)
    fallback = (seq - 1).groupby(g).first() % _WRAP
    syn = seq[(flags & SYN) > 0].groupby(g[(flags & SYN) > 0]).first()
    return syn.combine_first(fallback).astype(np.int64)


def _unwrap(values: I64, group: I64, base: I64) -> I64:
    """Unwrap 32-bit numbers per group into int64: cumulative signed steps from ``base``.

    Each step between consecutive values of a group is taken modulo 2^32 as a
    signed number, so wrapping past 2^32 keeps counting (RFC 9293 §3.4: comparisons
    are modulo 2^32; no real step exceeds 2^31).
    """
    frame = pd.DataFrame({"v": values, "g": group})
    prev = frame.groupby("g")["v"].shift().to_numpy(dtype=np.float64)
    first = np.isnan(prev)
    step = signed32(values - np.where(first, 0, prev).astype(np.int64))
    step[first] = signed32(values[first] - base[first])
    return pd.Series(step).groupby(group).cumsum().to_numpy(dtype=np.int64)


def relative(seg: pd.DataFrame, isn: pd.Series | None = None) -> pd.DataFrame:
    """Add relative ``seq`` (ISN = 0, so the first data byte is 1), ``seq_end``
    (seq + payload + SYN + FIN, RFC 9293 §3.4 SEG.LEN), ``len`` (payload bytes) and
    ``ack`` (relative to the peer's ISN; NaN when the ACK flag is off).

    ``isn`` maps ``g`` to an ISN and overrides what this capture shows (the other
    capture of the same connection may have seen the SYN).
    """
    out = seg.copy()
    n = len(out)
    if n == 0:
        for name in ("seq", "seq_end", "len"):
            out[name] = np.zeros(0, dtype=np.int64)
        out["ack"] = np.zeros(0, dtype=np.float64)
        return out
    g = _col(out, "g")
    own = initial_sequence_numbers(out)
    if isn is not None:
        own = isn.combine_first(own).astype(np.int64)
    flags = _col(out, "tcp_flags")
    base = own.reindex(g).to_numpy(dtype=np.int64)
    seq = _unwrap(_col(out, "tcp_seq"), g, base)
    plen = _col(out, "payload_len")
    out["seq"] = seq
    out["len"] = plen
    out["seq_end"] = seq + plen + ((flags & SYN) > 0) + ((flags & FIN) > 0)
    has_ack = (flags & ACK) > 0
    ack = np.full(n, np.nan)
    if has_ack.any():
        peer = g[has_ack] ^ 1
        peer_isn = own.reindex(peer).to_numpy(dtype=np.float64)
        raw = _col(out, "tcp_ack")[has_ack]
        # a direction never seen: count its acks from one below the first one
        first_ack = pd.Series(raw).groupby(peer).transform("first").to_numpy(dtype=np.int64)
        peer_base = np.where(np.isnan(peer_isn), first_ack - 1, peer_isn).astype(np.int64)
        ack[has_ack] = _unwrap(raw, peer, peer_base)
    out["ack"] = ack
    return out


def asof_peer(flow: I64, direction: I64, values: F64) -> F64:
    """For every row: the latest ``values`` of the other direction of its connection,
    up to that row in capture order (NaN before the peer's first row).

    Rows of a direction whose value is NaN do not count, so a caller resets a state
    with a non-NaN sentinel rather than NaN.
    """
    out = np.full(values.size, np.nan)
    for d in (0, 1):
        mine = pd.Series(np.where(direction == d, values, np.nan))
        carried = mine.groupby(flow).ffill().to_numpy(dtype=np.float64)
        out = np.where(direction == 1 - d, carried, out)
    return out


def flag_segments(
    seg: pd.DataFrame,
    *,
    at_sender: Mask | None = None,
    truth_retx: npt.NDArray[np.float64] | None = None,
    truth_fast: npt.NDArray[np.float64] | None = None,
    ooo_threshold_ns: I64 | int = DEFAULT_OOO_THRESHOLD_NS,
    fast_window_ns: I64 | int = FAST_WINDOW_FLOOR_NS,
) -> pd.DataFrame:
    """Classify every segment of :func:`relative`'s output (adds boolean columns).

    * ``dup_ack`` — RFC 5681 §2: no data, no SYN/FIN/RST, same ACK number and window
      as the previous segment of that direction, not below the highest ACK sent, and
      the peer has data outstanding above it. ``dup_count`` numbers them in a run.
    * ``retransmission`` — the segment carries data (or SYN/FIN) and starts below the
      highest sequence number already seen in its direction (a cumulative max over
      seq_end), keep-alives excepted (at most one byte just below that maximum once
      the peer has acknowledged everything). On a capture at the sender
      (``at_sender``) that is exact (a sender only goes back for data it sent) and
      counts what the sender kernel's ``Tcp.RetransSegs`` counts, when every
      segment leaves as its own packet (no TSO). Elsewhere the flags may come from
      the sender's capture (``truth_retx``, NaN where unknown). Failing that, when
      the sender numbers its IPv4 packets with a counter (Linux, Windows: see
      :func:`_ip_id_order`), a segment going back with a new IP ID is a resend and
      one with an old ID a reordered original. Otherwise tshark's heuristic: going
      back within ``ooo_threshold_ns`` of the segment that advanced the sequence
      (not ending where it ended, not already acknowledged) is reordering, else a
      retransmission.
    * ``out_of_order`` — seen at the receiver (never at the sender): below the highest
      seq seen and not a retransmission (nor an exact copy of a segment already seen).
    * ``fast_retransmission`` — a retransmission sent while the peer's run of
      duplicate ACKs has reached 3 (RFC 5681 §3.2; with SACK the recovery of RFC 6675
      retransmits every hole during that run) and its last duplicate ACK is at most
      ``fast_window_ns`` old.
    * ``spurious`` — a retransmission whose data had already been acknowledged by the
      peer when it was captured (seq_end <= highest ACK of the other direction so far).
      At the receiver: the original had arrived; the resend was for nothing.
    """
    out = seg.copy()
    n = len(out)
    if n == 0:
        for name in (
            "retransmission",
            "fast_retransmission",
            "spurious",
            "dup_ack",
            "out_of_order",
            "copy",
        ):
            out[name] = np.zeros(0, dtype=np.bool_)
        out["dup_count"] = np.zeros(0, dtype=np.int64)
        return out
    g = _col(out, "g")
    flow = _col(out, "flow")
    direction = _col(out, "dir")
    ts = _col(out, "ts_ns")
    ts = ts - ts.min()  # exact as float64 (epoch ns are not)
    flags = _col(out, "tcp_flags")
    seq = _col(out, "seq")
    end = _col(out, "seq_end")
    plen = _col(out, "len")
    ack = out["ack"].to_numpy(dtype=np.float64)
    window = _col(out, "tcp_window", fill=-1).astype(np.float64)
    ooo_thr = np.broadcast_to(np.asarray(ooo_threshold_ns, dtype=np.int64), (n,))
    fast_win = np.broadcast_to(np.asarray(fast_window_ns, dtype=np.int64), (n,))
    sender = np.zeros(n, np.bool_) if at_sender is None else at_sender

    by_g = pd.Series(end).groupby(g)
    high = by_g.cummax().to_numpy(dtype=np.int64)
    prev_high = pd.Series(high).groupby(g).shift().to_numpy(dtype=np.float64)
    advanced = np.isnan(prev_high) | (end > prev_high)
    t_set = pd.Series(np.where(advanced, ts, np.nan)).groupby(g).ffill()
    t_high = t_set.groupby(g).shift().to_numpy(dtype=np.float64)  # when prev_high was set

    # the highest ACK each direction has sent so far, and the peer's as of each row
    ack_s = pd.Series(ack)
    best = ack_s.groupby(g).cummax().groupby(g).ffill()
    peer_best = asof_peer(flow, direction, best.to_numpy(dtype=np.float64))
    acked = (plen > 0) & (end <= peer_best)  # all of it acknowledged already

    control = (flags & (SYN | FIN | RST)) > 0
    # RFC 9293 §3.8.4: a keep-alive repeats the last byte (or none) once everything
    # is acknowledged; one byte resent while it is still outstanding is a
    # retransmission (tshark calls both keep-alive, the kernel counts the latter)
    keepalive = (plen <= 1) & ~control & (seq == prev_high - 1) & (peer_best >= prev_high)
    carries = ((end - seq) > 0) & ~keepalive
    behind = carries & (seq < prev_high)
    key = pd.DataFrame({"g": g, "id": _col(out, "ip_id", -1), "s": _col(out, "tcp_seq")})
    key["a"], key["l"] = _col(out, "tcp_ack"), plen
    copy = key.duplicated().to_numpy() & out["ip_id"].notna().to_numpy()

    # tshark's rule (4.x): back within the window, not ending where the highest
    # segment ends, not already acknowledged -> reordered rather than resent
    heuristic_ooo = behind & ((ts - t_high) < ooo_thr) & (end != prev_high) & ~acked & ~copy
    counting, fresh_id = _ip_id_order(g, _col(out, "ip_id", -1))
    heuristic_ooo = np.where(counting, behind & ~fresh_id & ~acked & ~copy, heuristic_ooo)
    retx = np.where(sender, behind & ~copy, behind & ~heuristic_ooo & ~copy)
    if truth_retx is not None:
        known = ~np.isnan(truth_retx) & ~sender
        retx = np.where(known, (truth_retx > 0) & ~copy, retx)
    out_of_order = ~sender & behind & ~retx & ~copy

    # RFC 5681 §2 duplicate ACKs and their runs
    pure = ((flags & ACK) > 0) & (plen == 0) & ~control
    prev_ack = ack_s.groupby(g).shift().to_numpy(dtype=np.float64)
    prev_win = pd.Series(window).groupby(g).shift().to_numpy(dtype=np.float64)
    prev_best = best.groupby(g).shift().to_numpy(dtype=np.float64)
    peer_high = asof_peer(flow, direction, high.astype(np.float64))
    dup = pure & (ack == prev_ack) & (window == prev_win) & (ack >= prev_best)
    dup &= peer_high > ack
    run = pd.Series(~dup).groupby(g).cumsum().to_numpy()
    dup_count = pd.Series(dup.astype(np.int64)).groupby([g, run]).cumsum().to_numpy()

    peer_count = asof_peer(flow, direction, dup_count.astype(np.float64))
    last_dup = asof_peer(flow, direction, np.where(dup, ts, -np.inf).astype(np.float64))
    fast = retx & (peer_count >= DUPACK_THRESHOLD) & ((ts - last_dup) <= fast_win)
    if truth_fast is not None:
        known = ~np.isnan(truth_fast) & ~sender
        fast = np.where(known, (truth_fast > 0) & retx, fast)

    spurious = retx & acked

    out["retransmission"] = retx
    out["fast_retransmission"] = fast
    out["spurious"] = spurious
    out["dup_ack"] = dup
    out["dup_count"] = dup_count.astype(np.int64)
    out["out_of_order"] = out_of_order
    out["copy"] = copy
    return out


def _ip_id_order(group: I64, ip_id: I64) -> tuple[Mask, Mask]:
    """Per row: whether its direction's IP IDs count up (RFC 6864 §4.1 leaves them
    free for atomic datagrams, but most stacks use a per-connection counter), and
    whether its ID is above every earlier one of its direction.

    A direction counts up when at least 80 % of the steps between consecutive IDs
    (modulo 2^16) are small positive ones, over at least 8 packets.
    """
    n = ip_id.size
    frame = pd.DataFrame({"g": group, "id": ip_id})
    prev = frame.groupby("g")["id"].shift().to_numpy(dtype=np.float64)
    has = ~np.isnan(prev) & (ip_id >= 0)
    step = np.zeros(n, dtype=np.int64)
    step[has] = ((ip_id[has] - prev[has].astype(np.int64) + (1 << 15)) % (1 << 16)) - (1 << 15)
    small = pd.Series((step > 0) & (step <= 64)).groupby(group)
    share = small.transform("sum").to_numpy() / np.maximum(
        pd.Series(has).groupby(group).transform("sum").to_numpy(), 1
    )
    counting = (share >= 0.8) & (pd.Series(has).groupby(group).transform("sum").to_numpy() >= 8)
    unwrapped = pd.Series(step).groupby(group).cumsum().to_numpy(dtype=np.int64)
    highest = pd.Series(unwrapped).groupby(group).cummax()
    prev_highest = highest.groupby(group).shift().to_numpy(dtype=np.float64)
    fresh = np.isnan(prev_highest) | (unwrapped > prev_highest)
    return counting & (ip_id >= 0), fresh


def handshakes(seg: pd.DataFrame) -> pd.DataFrame:
    """Per flow: times of the SYN, SYN/ACK and the ACK completing the handshake
    (RFC 9293 §3.5), and ``rtt_ns`` = ACK - SYN, the **handshake RTT**.

    Handshake RTT: the time from the SYN to the initiator's ACK of the SYN/ACK, as
    captured. At the initiator that is the round trip plus the initiator's own
    turnaround, at the responder the responder's turnaround plus the round trip:
    one round trip wherever the capture was taken (Wireshark's initial RTT,
    ``tcp.analysis.initial_rtt``). ``at_client`` says whether the SYN -> SYN/ACK gap
    dominates, i.e. the capture sat at the initiator. A retransmitted SYN is
    ambiguous (RFC 6298 §3, Karn): the last SYN before the SYN/ACK is used, as
    Wireshark does, a lower bound.
    """
    columns = ["flow", "t_syn_ns", "t_synack_ns", "t_ack_ns", "rtt_ns", "at_client"]
    flags = _col(seg, "tcp_flags")
    direction = _col(seg, "dir")
    frame = pd.DataFrame(
        {"flow": _col(seg, "flow"), "ts": _col(seg, "ts_ns"), "pos": np.arange(len(seg))}
    )
    synack = frame[((flags & (SYN | ACK)) == (SYN | ACK)) & (direction == 1)]
    synack = synack.groupby("flow").first()
    if synack.empty:
        return pd.DataFrame(columns=columns)
    syn = frame[((flags & (SYN | ACK)) == SYN) & (direction == 0)]
    third = frame[((flags & (SYN | ACK)) == ACK) & (direction == 0)]
    at = synack["pos"]
    syn = syn[syn["pos"] < syn["flow"].map(at).fillna(-1).to_numpy()]
    third = third[third["pos"] > third["flow"].map(at).fillna(np.inf).to_numpy()]
    table = pd.DataFrame(
        {
            "t_syn_ns": syn.groupby("flow")["ts"].last(),
            "t_synack_ns": synack["ts"],
            "t_ack_ns": third.groupby("flow")["ts"].first(),
        }
    ).dropna()
    table = table.astype(np.int64)
    table["rtt_ns"] = table["t_ack_ns"] - table["t_syn_ns"]
    gap_out = table["t_synack_ns"] - table["t_syn_ns"]
    gap_back = table["t_ack_ns"] - table["t_synack_ns"]
    table["at_client"] = gap_out > gap_back
    return table.rename_axis("flow").reset_index()[columns]


def karn_rtt_samples(seg: pd.DataFrame, use: Mask) -> pd.DataFrame:
    """**Karn RTT** samples: an original data segment to the first ACK of the peer
    covering its last byte (RFC 6298 §3).

    Karn's algorithm: no sample from a segment whose bytes were ever retransmitted.
    Also skipped (conservatively): a segment whose covering ACK came after some
    retransmission sent in between, since that cumulative ACK was held back by a
    hole below, not by the path. ``use`` selects rows taken at the sender of their
    direction (elsewhere a "sample" would time the peer's ACK delay). Every segment
    of a cumulative ACK gives a sample (one ACK for two segments: two samples, the
    first one longer by the gap between them); like the sender's own estimator
    without timestamps, samples include delayed ACKs and lost ACKs (a later ACK
    then covers the segment).
    Returns flow, dir, ts_ns (the segment), rtt_ns, seq_end, row and ack_row (the
    positions in ``seg`` of the segment and of the ACK).
    """
    columns = ["flow", "dir", "ts_ns", "rtt_ns", "seq_end", "row", "ack_row"]
    if len(seg) == 0:
        return pd.DataFrame({c: np.zeros(0, dtype=np.int64) for c in columns})
    g = _col(seg, "g")
    ts = _col(seg, "ts_ns")
    seq, end = _col(seg, "seq"), _col(seg, "seq_end")
    pos = np.arange(len(seg), dtype=np.int64)
    retx = seg["retransmission"].to_numpy(dtype=np.bool_)
    ack = seg["ack"].to_numpy(dtype=np.float64)
    data = use & (seg["len"].to_numpy() > 0) & ~retx & ~seg["copy"].to_numpy(dtype=np.bool_)

    # the peer's cumulative ACK, non-decreasing within each direction, in capture order
    has = ~np.isnan(ack) & _well_formed(seg)
    a_g, a_pos, a_ts = g[has], pos[has], ts[has]
    a_best = pd.Series(ack[has]).groupby(a_g).cummax().to_numpy(dtype=np.float64)
    order = np.lexsort((a_pos, a_g))
    a_g, a_pos, a_ts, a_best = a_g[order], a_pos[order], a_ts[order], a_best[order]
    q_g = g[data] ^ 1
    a_key, q_key = _joint_keys((a_g, a_best), (q_g, end[data]))
    idx = np.searchsorted(a_key, q_key, side="left")
    found = idx < a_key.size
    found[found] &= a_g[idx[found]] == q_g[found]
    found[found] &= a_pos[idx[found]] > pos[data][found]
    d_rows = np.flatnonzero(data)[found]
    hit = idx[found]
    ack_pos = a_pos[hit]
    rtt = a_ts[hit] - ts[d_rows]

    # Karn: drop segments overlapping any retransmitted range of their direction
    r_g, r_s, r_e = g[retx], seq[retx], end[retx]
    r_order = np.lexsort((r_s, r_g))
    r_g, r_s, r_e = r_g[r_order], r_s[r_order], r_e[r_order]
    r_reach = pd.Series(r_e).groupby(r_g).cummax().to_numpy(dtype=np.int64)
    r_key, d_key = _joint_keys((r_g, r_s), (g[d_rows], end[d_rows]))
    last = np.searchsorted(r_key, d_key, side="left") - 1
    overlap = last >= 0
    overlap[overlap] &= r_g[last[overlap]] == g[d_rows][overlap]
    overlap[overlap] &= r_reach[last[overlap]] > seq[d_rows][overlap]

    # and those whose ACK waited for a retransmission sent after them
    rp_g, rp_pos = g[retx], pos[retx]  # capture order: already sorted within g
    rp_order = np.lexsort((rp_pos, rp_g))
    rp_key, acked_key, sent_key = _joint_keys(
        (rp_g[rp_order], rp_pos[rp_order]), (g[d_rows], ack_pos), (g[d_rows], pos[d_rows])
    )
    between = np.searchsorted(rp_key, acked_key) - np.searchsorted(rp_key, sent_key)
    keep = ~overlap & (between == 0) & (rtt >= 0)
    rows = d_rows[keep]
    return pd.DataFrame(
        {
            "flow": _col(seg, "flow")[rows],
            "dir": _col(seg, "dir")[rows],
            "ts_ns": ts[rows],
            "rtt_ns": rtt[keep],
            "seq_end": end[rows],
            "row": rows,
            "ack_row": ack_pos[keep],
        }
    )


def _acknowledged_points(seg: pd.DataFrame) -> F64:
    """Each row's acknowledgment field as a point of the peer's relative sequence space.

    Rows with the ACK flag have :func:`relative`'s ``ack``. tshark reads the field of
    every segment, also without the flag (a bare RST carries 0): such a raw value is
    placed within 2^31 of the peer's highest sequence number seen so far (the
    modulo-2^32 comparison tshark makes), NaN before the peer's first segment.
    """
    ack = seg["ack"].to_numpy(dtype=np.float64).copy()
    bare = np.isnan(ack)
    if not bare.any():
        return ack
    g = _col(seg, "g")
    isn = (_col(seg, "tcp_seq") - _col(seg, "seq")) % _WRAP  # constant per direction
    isn_by_g = pd.Series(isn).groupby(g).first()
    high = pd.Series(_col(seg, "seq_end")).groupby(g).cummax().to_numpy(dtype=np.float64)
    peer_high = asof_peer(_col(seg, "flow"), _col(seg, "dir"), high)
    peer_isn = isn_by_g.reindex(g ^ 1).to_numpy(dtype=np.float64)
    ok = bare & ~np.isnan(peer_high) & ~np.isnan(peer_isn)
    ref = peer_high[ok].astype(np.int64)
    raw_ref = (peer_isn[ok].astype(np.int64) + ref) % _WRAP
    ack[ok] = ref + signed32(_col(seg, "tcp_ack")[ok] - raw_ref)
    return ack


def _previous_at_least(values: F64, block: I64) -> I64:
    """For each position: the last earlier position of its block holding a value
    >= its own, -1 if none (NaN never qualifies, nor asks).

    "Previous greater-or-equal element" by pointer jumping: every position starts at
    its predecessor and, while that holds less than its own value, jumps to the
    predecessor's own answer (everything skipped is smaller). All positions jump
    at once, so a run of increasing values halves each round: O(n log n) numpy work.
    """
    n = values.size
    vals = np.where(np.isnan(values), -np.inf, values)
    first = np.ones(n, dtype=np.bool_)
    first[1:] = block[1:] != block[:-1]
    jump = np.arange(n, dtype=np.int64) - 1
    jump[first] = -1
    # a new maximum of its block has none (most ACKs: the cumulative ACK only grows)
    before = pd.Series(vals).groupby(block).cummax().groupby(block).shift()
    jump[before.to_numpy(dtype=np.float64, na_value=-np.inf) < vals] = -1
    active = np.flatnonzero((jump >= 0) & ~np.isnan(values))
    while active.size:
        target = jump[active]
        smaller = vals[target] < vals[active]
        active = active[smaller]
        jump[active] = jump[target[smaller]]
        active = active[jump[active] >= 0]
    return np.where(np.isnan(values), -1, jump)


def ack_rtt_samples(seg: pd.DataFrame) -> pd.DataFrame:
    """**ack RTT** samples, computed as tshark 4.x computes ``tcp.analysis.ack_rtt``.

    tshark keeps, per direction, a list of the segments that carry data (or SYN or
    FIN) and no ACK number of the peer has reached yet; every segment of the peer
    then removes those its acknowledgment field reaches or passes, and when that
    field equals a listed segment's end (seq + len + SYN + FIN) it becomes a sample:
    the ACK's time minus that segment's, the earliest-captured one if several copies
    (an original and its resends) share that end. So at most one sample per ACK; a
    cumulative ACK times only the segment that ends at its number (the latest of
    those it covers); a resent segment is timed from its first copy (no Karn), and
    samples exist in both directions, whatever the capture point (a direction
    captured at its receiver times the local ACK delay). Like tshark, it reads the
    acknowledgment field of segments without the ACK flag (see
    :func:`_acknowledged_points`) and ignores segments with an invalid header; unlike
    tshark it does not stop listing after 10,000 unacknowledged segments.
    Returns flow, dir (of the data segment), ts_ns (the segment), rtt_ns, row and
    ack_row (positions in ``seg``).
    """
    columns = ["flow", "dir", "ts_ns", "rtt_ns", "row", "ack_row"]
    if len(seg) == 0:
        return pd.DataFrame({c: np.zeros(0, dtype=np.int64) for c in columns})
    g = _col(seg, "g")
    ts = _col(seg, "ts_ns")
    end = _col(seg, "seq_end")
    flags = _col(seg, "tcp_flags")
    pos = np.arange(len(seg), dtype=np.int64)
    point = _acknowledged_points(seg)
    valid = _well_formed(seg)
    point[~valid] = np.nan

    # an ACK at p with value v kills every listed segment ending at or below v: a
    # segment ending at v is still listed at p iff it came after the last earlier
    # segment of the ACK's direction whose value was >= v
    order = np.lexsort((pos, g))
    previous = _previous_at_least(point[order], g[order])
    killer = np.full(len(seg), -1, dtype=np.int64)
    killer[order] = np.where(previous >= 0, order[np.maximum(previous, 0)], -1)

    listed = valid & ((_col(seg, "len") > 0) | ((flags & (SYN | FIN)) > 0))
    asks = np.flatnonzero(~np.isnan(point))
    l_rows = np.flatnonzero(listed)
    l_order = np.lexsort((l_rows, end[l_rows], g[l_rows]))
    l_rows = l_rows[l_order]
    # the earliest listed segment of the peer ending exactly at v, after the killer
    l_key, q_key = _joint_keys((g[l_rows], end[l_rows]), (g[asks] ^ 1, point[asks]))
    _, rank = np.unique(np.concatenate((l_key, q_key)), return_inverse=True)
    l_key, q_key = rank[: l_rows.size], rank[l_rows.size :]  # < 2n: no overflow below
    scale = np.int64(len(seg) + 1)
    idx = np.searchsorted(l_key * scale + l_rows, q_key * scale + killer[asks] + 1)
    found = idx < l_rows.size
    found[found] &= l_key[idx[found]] == q_key[found]
    hit = l_rows[np.minimum(idx, max(l_rows.size - 1, 0))]
    found &= hit < asks
    acks, rows = asks[found], hit[found]
    return pd.DataFrame(
        {
            "flow": _col(seg, "flow")[rows],
            "dir": _col(seg, "dir")[rows],
            "ts_ns": ts[rows],
            "rtt_ns": ts[acks] - ts[rows],
            "row": rows,
            "ack_row": acks,
        }
    )


def first_cover(starts: I64, ends: I64, keys: I64, points: I64) -> I64:
    """For each point p: the smallest key among intervals [start, end) holding p, -1 if none.

    Used with keys = capture positions, it gives the first packet that carried each
    byte. Offline range-min updates over the elementary segments between interval
    boundaries, done level by level as in a sparse table: each interval writes its
    key into two power-of-two blocks that cover it, and each level is pushed down to
    the next. O((intervals + boundaries) * log(longest interval)), all numpy.
    """
    result = np.full(points.size, -1, dtype=np.int64)
    ok = ends > starts
    starts, ends, keys = starts[ok], ends[ok], keys[ok]
    if starts.size == 0 or points.size == 0:
        return result
    bounds = np.unique(np.concatenate((starts, ends)))
    elementary = bounds.size - 1
    lo = np.searchsorted(bounds, starts)
    hi = np.searchsorted(bounds, ends)
    span = hi - lo
    level = np.floor(np.log2(span)).astype(np.int64)
    table = np.full(elementary, _INF, dtype=np.int64)
    for k in range(int(level.max()), -1, -1):
        width = 1 << k
        if k < int(level.max()):  # push level k+1 down to level k
            pushed = np.full(elementary, _INF, dtype=np.int64)
            np.minimum(pushed, table, out=pushed)
            np.minimum(pushed[width:], table[:-width], out=pushed[width:])
            table = pushed
        at = level == k
        np.minimum.at(table, lo[at], keys[at])
        np.minimum.at(table, hi[at] - width, keys[at])
    j = np.searchsorted(bounds, points, side="right") - 1
    inside = (j >= 0) & (j < elementary)
    got = np.full(points.size, _INF, dtype=np.int64)
    got[inside] = table[j[inside]]
    result[got != _INF] = got[got != _INF]
    return result


def elementary_first_cover(starts: I64, ends: I64, keys: I64) -> tuple[I64, I64]:
    """Boundaries of the elementary segments of the union of the intervals and the
    smallest covering key of each (``_INF`` where no interval covers it)."""
    ok = ends > starts
    bounds = np.unique(np.concatenate((starts[ok], ends[ok])))
    if bounds.size < 2:
        return bounds, np.zeros(0, dtype=np.int64)
    values = first_cover(starts, ends, keys, bounds[:-1])
    return bounds, np.where(values < 0, _INF, values)
