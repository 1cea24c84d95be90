"""protolab: how TCP, UDP and RAW sockets behave when the network misbehaves.

The public surface is small: load a scenario, run it, read its results. Each stage of
the data flow (scenario -> testbed -> impairment -> exchanges -> capture -> analysis ->
report) lives in its own module or subpackage.
"""

from lab._version import __version__
from lab.errors import LabError
from lab.scenario import Scenario, load_scenario

__all__ = ["LabError", "Scenario", "__version__", "load_scenario"]
