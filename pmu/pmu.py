# SPDX-License-Identifier: GPL-2.0-or-later
"""The PMU device: MSR-bus device, RDPMC, event filter, PMI delivery, lifecycle and save/restore.

:class:`Pmu` wraps one :class:`pmu._core.PmuCore` per vCPU.  The vCPU's C hook layer talks to
``pmu.core`` directly (docs/design.md); everything else goes through this facade.

PMI delivery.  The core only sets its C flag ``pmi_requested`` when a counter with INT/PMI
overflows.  Two paths end in :meth:`Pmu.service_pmi`, which consumes that flag and calls
``lapic.deliver_local(PMC_LVT)``:

* in guest (``vcpu.in_guest``): the hook layer polls ``core.pmi_requested`` after feeding the
  core and calls ``service_pmi()`` before the next guest instruction;
* outside the guest (host calls, the VMM emulating an exit, save/restore): the facade notices
  the flag after its own call into the core (:meth:`notice_overflow`) and queues deferred work
  with ``vcpu.queue_work``; it runs before the vCPU next enters the guest and wakes it from HLT.

Both paths consume the same single flag, so one overflow (or several before the PMI is
serviced, as on hardware) yields exactly one PMI even when both paths fire; the later one finds
the flag clear and does nothing.  A pending request also counts as a wake-up (:meth:`has_wakeup`).
:meth:`reset` cancels deferred work that is still queued (it becomes a no-op) and drops the
request: a PMI raised by state that reset wipes is never delivered after the reset.

Time slices.  The run loop calls :meth:`sched_in` when the vCPU starts a slice and
:meth:`before_guest_entry` before it enters the guest; the latter releases counters that were
neither touched nor enabled during the last slice (the seed's cleanup) and marks the vCPU as
having run, after which :meth:`refresh` is refused.

Not supported: the Intel PMU on a vCPU whose CPUID changes after it ran (refused, as in KVM),
per-vCPU event filters, and PMIs delivered as anything but the LAPIC's LVTPC entry.
"""

from __future__ import annotations

import time

from devices.bus import GP
from pmu import events
from pmu._core import PmuCore
from pmu.config import POLICY_FIELDS, PmuConfig

#: Index of the LVTPC entry: devices.lapic.Lvt.PMC (kept as a constant to avoid importing the LAPIC).
PMC_LVT = 2
STATE_VERSION = 1
FIXED_SLOT = 8      # the core keeps GP counters in slots 0-7 and fixed counters from slot 8 (pmu/_core.pxd)
_SHAPE_FIELDS = ("vendor", "version", "gp_counters", "gp_width", "fixed_counters", "fixed_width",
                 "perfctr_core", "perfmon_v2", "pdcm")


class PmuRefreshError(RuntimeError):
    """refresh() was called after the vCPU ran; the PMU's shape may not change any more."""


class BootClock:
    """Host time since boot in ns (what the VMware real-time pseudo-PMC reports)."""

    def now(self) -> int:
        clock = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)
        return time.clock_gettime_ns(clock)


class Pmu:
    """One vCPU's PMU; a device on the MSR bus."""

    def __init__(self, cpuid, vcpu, lapic, clock, config: PmuConfig | None = None, real_clock=None, **policy):
        self.cpuid = cpuid
        self.vcpu = vcpu
        self.lapic = lapic
        self.clock = clock
        self.real_clock = real_clock or BootClock()
        self.config = config.replace(**policy) if config is not None else PmuConfig.from_cpuid(cpuid, **policy)
        self.core = PmuCore()
        self.vcpu_has_run = False
        self.pmis_delivered = 0
        self._filter = None
        self._bus = None
        self._ranges: list[tuple[int, int]] = []
        self._work_token = 0
        self._work_queued = False
        self.init()

    # -- lifecycle --------------------------------------------------------------------------
    def init(self) -> None:
        """Program the core for the current config with all state cleared."""
        self.core.configure(self.config, self.clock, self.real_clock)
        if self._filter is not None:
            self.core.set_filter(self._filter.compiled())
        self._cancel_work()

    def refresh(self) -> None:
        """Re-derive the PMU from the guest's CPUID (keeping the policies); refused after the vCPU ran."""
        if self.vcpu_has_run:
            raise PmuRefreshError("the PMU cannot be refreshed from CPUID after the vCPU has run")
        policy = {name: getattr(self.config, name) for name in POLICY_FIELDS}
        self.config = PmuConfig.from_cpuid(self.cpuid, **policy)
        self.init()
        if self._bus is not None:
            bus = self._bus
            self.detach()
            self.attach(bus)

    def reset(self) -> None:
        """Clear counters, selects and global state; cancel deferred PMI work still queued."""
        self._cancel_work()
        self.core.reset()

    def destroy(self) -> None:
        self.reset()
        self.detach()

    def _cancel_work(self) -> None:
        self._work_token += 1
        self._work_queued = False

    # -- MSR bus ----------------------------------------------------------------------------
    def msr_ranges(self) -> list[tuple[int, int]]:
        """``(base, size)`` of every MSR range this configuration has."""
        c = self.config
        if c.version == 0:
            return []
        n = c.gp_counters
        if c.vendor == "amd":
            legacy = min(n, 4)
            ranges = [(0xC0010000, legacy), (0xC0010004, legacy)]
            if c.perfctr_core:
                ranges.append((0xC0010200, 2 * n))
            if c.perfmon_v2:
                ranges.append((0xC0000300, 4))
            return ranges
        ranges = [(0xC1, n), (0x186, n)]
        if c.pdcm:
            # Registered even while PERF_CAPABILITIES bit 13 is clear (the host may set it); the
            # core faults accesses until then.
            ranges += [(0x345, 1), (0x4C1, n)]
        if c.fixed_counters:
            ranges.append((0x309, c.fixed_counters))
        if c.version >= 2:
            ranges.append((0x38D, 4))
        return sorted(ranges)

    def attach(self, msr_bus) -> None:
        self._ranges = self.msr_ranges()
        for base, size in self._ranges:
            msr_bus.register(base, size, self)
        self._bus = msr_bus

    def detach(self) -> None:
        if self._bus is not None:
            for base, _ in self._ranges:
                self._bus.unregister(base)
        self._bus = None
        self._ranges = []

    def read(self, access):
        value = self.core.read_msr(access.address, access.host)
        return GP if value is None else value

    def write(self, access, value: int):
        if not self.core.write_msr(access.address, value & 0xFFFFFFFFFFFFFFFF, access.host):
            return GP
        return None

    def rdpmc(self, ecx: int):
        value = self.core.read_pmc(ecx & 0xFFFFFFFF, self.vcpu.cpl(), self.vcpu.cr0(), self.vcpu.cr4())
        return GP if value is None else value

    # -- counting -----------------------------------------------------------------------------
    def feed(self, event: int, n: int, cpl: int | None = None) -> None:
        """Feed ``n`` events of a generic event at ``cpl`` (default: the vCPU's CPL)."""
        self.core.feed(event, n, self.vcpu.cpl() if cpl is None else cpl)
        self.notice_overflow()

    def feed_block(self, insns: int, branches: int = 0, cpl: int | None = None, conditional: int = 0) -> None:
        """Feed a block of ``insns`` instructions whose last ``branches`` are branches, the last
        ``conditional`` of them conditional ones."""
        self.core.feed_block(insns, branches, self.vcpu.cpl() if cpl is None else cpl, conditional)
        self.notice_overflow()

    def events_to_overflow(self, event: int, cpl: int | None = None) -> int:
        return self.core.overflow_distance(event, self.vcpu.cpl() if cpl is None else cpl)

    # -- PMI ------------------------------------------------------------------------------------
    def notice_overflow(self) -> None:
        """After feeding the core from outside guest execution: queue the deferred PMI if needed."""
        if self.core.pmi_requested and not self.vcpu.in_guest and not self._work_queued:
            self._work_queued = True
            token = self._work_token
            self.vcpu.queue_work(lambda: self._deferred_pmi(token))

    def _deferred_pmi(self, token: int) -> None:
        if token != self._work_token:
            return  # cancelled by reset()
        self._work_queued = False
        self.service_pmi()

    def service_pmi(self) -> bool:
        """Deliver the pending PMI, if any, through the LAPIC's LVTPC; True if one was pending."""
        if not self.core.take_pmi_request():
            return False
        self.pmis_delivered += 1
        if self.core.traces_pmi():
            lvt = self.lapic.lvt_entry(PMC_LVT)
            self.core.trace_pmi(lvt, self.lapic.deliver_local(PMC_LVT))
        else:
            self.lapic.deliver_local(PMC_LVT)
        return True

    def has_wakeup(self) -> bool:
        """A pending PMI ends HLT."""
        return bool(self.core.pmi_requested)

    # -- time slices --------------------------------------------------------------------------
    def sched_in(self) -> None:
        self.core.sched_in()

    def before_guest_entry(self) -> int:
        """Housekeeping before entering the guest; returns the bitmap of counter slots released."""
        self.vcpu_has_run = True
        return self.core.cleanup()

    # -- event filter -------------------------------------------------------------------------
    def set_event_filter(self, event_filter) -> None:
        """Replace the filter (None removes it); every counter is re-evaluated at once."""
        self.core.set_filter(None if event_filter is None else event_filter.compiled())
        self._filter = event_filter

    @property
    def event_filter(self):
        return self._filter

    def explain_event(self, eventsel: int) -> str:
        """Why a GP event select would be allowed or denied, and what it counts."""
        counts = events.NAMES[events.decode(self.config.vendor, eventsel, self.config.unavailable_events)]
        if self._filter is None:
            return f"no event filter, so it is allowed; it counts {counts}"
        return f"{self._filter.explain(eventsel)}; it counts {counts}"

    # -- inspection and state -------------------------------------------------------------------
    def counters(self) -> list[dict]:
        # The core's own counts: a version-0 config has neither GP nor fixed counters, whatever it lists.
        slots = [*range(self.core.num_gp), *(FIXED_SLOT + i for i in range(self.core.num_fixed))]
        return [self.core.slot_info(s) for s in slots]

    def get_state(self) -> dict:
        return {"version": STATE_VERSION, "config": self.config.as_dict(), "core": self.core.get_state()}

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned: all or nothing, ValueError (nothing changed) for a
        state of another version, shape or layout, or one the core refuses (PmuCore.set_state)."""
        if not isinstance(state, dict) or set(state) != {"version", "config", "core"}:
            raise ValueError("PMU state must be a dict with exactly version, config and core")
        if state["version"] != STATE_VERSION:
            raise ValueError(f"PMU state version {state['version']!r} is not {STATE_VERSION}")
        saved = state["config"]
        if not isinstance(saved, dict):
            raise ValueError(f"PMU state config {saved!r} is not a dict")
        for name in _SHAPE_FIELDS:
            if saved.get(name) != getattr(self.config, name):
                raise ValueError(f"PMU state is for {name}={saved.get(name)!r}, this PMU has "
                                 f"{getattr(self.config, name)!r}")
        self.core.set_state(state["core"])     # refuses before it changes anything
        self._cancel_work()
        self.notice_overflow()
