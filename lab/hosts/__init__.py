"""Runs between two real hosts (issue 13, in progress): for now, the clocks.

One-way delay across two hosts needs their clock offset. :mod:`lab.hosts.clock`
estimates it from NTP-style four-timestamp exchanges (RFC 5905 §8, as OWAMP, RFC 4656,
and irtt leave to the hosts' clocks), with a bound that provably contains the true
offset, and says when that bound is too wide for one-way delays to mean anything.
"""
