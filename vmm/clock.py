# SPDX-License-Identifier: GPL-2.0-or-later
"""Virtual time: one deterministic clock per machine, in nanoseconds of virtual time.

Timing model (documented in docs/design.md): every retired guest instruction is one core cycle;
the core clock, the reference clock, the TSC and the APIC timer bus all run at 1 GHz, so one
retired instruction advances virtual time by 1 ns.  HLT skips virtual time forward to the next
timer deadline.  Nothing here reads the host's wall clock, so the same kernel gives the same
times on every run.

Not modelled: frequency scaling, turbo, TSC scaling/offsetting per vCPU.
"""

from __future__ import annotations

#: Virtual clock frequency shared by core cycles, reference cycles, the TSC and the APIC bus.
CLOCK_HZ = 1_000_000_000
NS_PER_S = 1_000_000_000


def ticks_at(ns: int, hz: int) -> int:
    """Edges of an ``hz`` clock in the first ``ns`` virtual nanoseconds (floor; right for ``ns`` < 0 too).

    Devices with their own clocks (PIT, RTC, ACPI PM timer) derive their counts from virtual time
    with these two, in integer arithmetic, so their values are exact and deterministic."""
    return ns * hz // NS_PER_S


def time_of_tick(tick: int, hz: int) -> int:
    """The virtual ns at which edge ``tick`` of an ``hz`` clock happens: the first ``ns`` whose
    :func:`ticks_at` reaches it."""
    return -(-tick * NS_PER_S // hz)


class VirtualClock:
    """The machine's clock: instructions the vCPU has retired plus idle time skipped in HLT.

    The vCPU backend owns both numbers (its hook layer reads them on hot paths: RDTSC, timer
    deadlines); this object is the view devices get.
    """

    def __init__(self, vcpu):
        self._vcpu = vcpu

    def now(self) -> int:
        return self._vcpu.now()

    def skip_to(self, deadline: int) -> None:
        """Jump forward to ``deadline`` while halted (never backwards)."""
        now = self._vcpu.now()
        if deadline > now:
            self._vcpu.idle_ns += deadline - now


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start: int = 0):
        self._now = start

    def now(self) -> int:
        return self._now

    def advance(self, ns: int) -> None:
        self._now += ns

    def set(self, ns: int) -> None:
        self._now = ns

    def skip_to(self, deadline: int) -> None:
        self._now = max(self._now, deadline)
