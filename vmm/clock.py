# SPDX-License-Identifier: GPL-2.0-or-later
"""Virtual time: one deterministic clock per machine, in nanoseconds of virtual time.

Timing model (documented in docs/design.md): every retired guest instruction is one core cycle;
the core clock, the reference clock, the TSC and the APIC timer bus all run at 1 GHz, so one
retired instruction advances virtual time by 1 ns.  With several vCPUs there is still one clock:
the vCPUs take turns on one host thread, and whichever runs advances it, so with N busy vCPUs each
sees its TSC move about N ns per instruction of its own (QEMU's icount with round-robin vCPUs
keeps time the same way).  When every vCPU is halted, time skips forward to the next timer
deadline.  Nothing here reads the host's wall clock, so the same kernel gives the same times on
every run.

Not modelled: frequency scaling, turbo, TSC scaling; per-vCPU TSC offsets are the guest's own
(IA32_TSC writes).
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
    """The machine's clock: instructions every vCPU has retired plus time skipped while all were halted.

    The vCPU backends keep it (their hook layers read it on hot paths: RDTSC, timer deadlines) as
    "own retired instructions + clock offset"; the clock reads the vCPU that runs now, and
    :meth:`switch_to` hands it to another one by setting that one's offset.  This object is the
    view devices get.
    """

    def __init__(self, vcpu=None):
        self._vcpu = vcpu

    def now(self) -> int:
        return 0 if self._vcpu is None else self._vcpu.now()

    def switch_to(self, vcpu) -> None:
        """``vcpu`` runs next: its reading of the clock continues from the current one's (the
        first vCPU given to a clock made without one starts it at its own reading)."""
        if self._vcpu is None:
            self._vcpu = vcpu
        elif vcpu is not self._vcpu:
            vcpu.clock_offset = self._vcpu.now() - vcpu.retired
            self._vcpu = vcpu

    def skip_to(self, deadline: int) -> None:
        """Jump forward to ``deadline`` while every vCPU is halted (never backwards)."""
        now = self._vcpu.now()
        if deadline > now:
            self._vcpu.clock_offset += deadline - now


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
