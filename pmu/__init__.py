# SPDX-License-Identifier: GPL-2.0-or-later
"""The virtual PMU: Intel architectural perfmon (v1/v2) and AMD core counters (legacy, PerfCtrExtCore,
PerfMonV2), counted exactly from the emulated CPU.

``Pmu`` is the device the machine uses; ``PmuCore`` (pmu._core, Cython) holds the state and hot
paths; ``PmuConfig`` says what is emulated; ``EventFilter`` is the host's event filter;
``pmu.reference`` is a pure-Python model of the same semantics used to test the core.
"""

from pmu.config import PmuConfig
from pmu.filter import ALLOW, DENY, MASKED_EVENTS, EventFilter, PmuFilterError, PmuFilterTooBigError
from pmu.pmu import PMC_LVT, Pmu, PmuRefreshError

__all__ = [
    "ALLOW", "DENY", "MASKED_EVENTS", "PMC_LVT", "EventFilter", "Pmu", "PmuConfig", "PmuFilterError",
    "PmuFilterTooBigError", "PmuRefreshError",
]
