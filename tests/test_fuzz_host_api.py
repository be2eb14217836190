# SPDX-License-Identifier: GPL-2.0-or-later
"""Host-API call-sequence fuzzers: any order of calls, any values, and every object stays whole.

Hypothesis state machines drive what a VMM embedding the devices calls -- bus accesses, MSR and
MMIO writes, interrupt lines, EOIs, timer ticks on a fake clock, filters, save and restore -- in
arbitrary orders with arbitrary values, and check after every call:

* a call that raises raises one of the object's documented errors (:data:`LAPIC_ERRORS`, ...), and
  leaves the object exactly as it was (the full state snapshot before and after compare equal);
* for objects with save/restore (Lapic, Pmu/PmuCore), the state after every successful call
  round-trips: ``get_state()`` restored into a fresh object of the same shape reads back identical,
  and a state handed to ``set_state`` that is accepted is the state the object then reports;
* device-specific invariants that hold whatever the guest wrote (an IOAPIC entry never holds
  reserved bits, a timer's next deadline is never in the past after ``tick``, a UART's interrupt
  line is what its registers say, the buses agree with a model of their ranges).

tests/test_pmu_stateful.py checks the PMU core's counting against the reference model and
tests/test_lapic_state.py the LAPIC's set_state refusals case by case; these machines check
atomicity and round trips under random sequences instead.  Settings: :data:`STATEFUL` (bounded
for CI; ``PMU_VMM_FUZZ=long`` for more).
"""

from __future__ import annotations

import copy
import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from devices.bus import (
    Access,
    Bus,
    BusError,
    DeviceNotFoundError,
    Fault,
    InvalidAccessError,
    InvalidRangeError,
    OverlapError,
)
from devices.ioapic import PINS, REMOTE_IRR, WRITABLE, Ioapic
from devices.lapic import MSR_APIC_BASE, LapicStateError
from devices.pit import Pit
from devices.rtc import Rtc
from devices.uart import Uart16550
from pmu import ALLOW, DENY, MASKED_EVENTS, EventFilter, PmuConfig
from pmu.pmu import Pmu, PmuRefreshError
from tests.fake_context import FakeContext
from tests.lapic_harness import Harness
from vmm.clock import FakeClock
from vmm.cpuid import CpuidModel
from vmm.fake_vcpu import FakeVcpu

_LONG = os.environ.get("PMU_VMM_FUZZ") == "long"
STATEFUL = settings(max_examples=400 if _LONG else 50, stateful_step_count=60 if _LONG else 30, deadline=None,
                    derandomize=not _LONG, suppress_health_check=[HealthCheck.too_slow])

LAPIC_ERRORS = (LapicStateError, IndexError)            # set_state; deliver_local of no LVT entry
PMU_ERRORS = (ValueError, PmuRefreshError)              # set_state / set_filter; refresh after the vCPU ran
BUS_ERRORS = (BusError,)

u64 = st.one_of(st.sampled_from([0, 1, 0xFF, 0x100, 0xFFFFFFFF, 1 << 32, 1 << 63, (1 << 64) - 1]),
                st.integers(0, (1 << 64) - 1))
u32 = st.one_of(st.sampled_from([0, 1, 0x10, 0xFF, 0x1FF, 0x10000, 0x20040, 0x400, 0xFFFFFFFF]),
                st.integers(0, 0xFFFFFFFF))
#: Values of the wrong type or size for a saved-state field.
junk = st.sampled_from([-1, 1 << 64, 1 << 256, "0", None, 1.5, True, [], [0] * 11, {}])


def attempt(call, errors, snapshot):
    """Run ``call()``; if it raises, it must be one of ``errors`` and ``snapshot()`` must not change.
    Returns (True, result) or (False, the exception)."""
    before = snapshot()
    try:
        return True, call()
    except errors as e:
        after = snapshot()
        assert after == before, f"{e!r} changed the state:\nbefore {before}\nafter  {after}"
        return False, e


def mutate(state: dict, data) -> dict:
    """A copy of ``state`` with one field (or one list element) replaced by a random or junk value."""
    state = copy.deepcopy(state)
    key = data.draw(st.sampled_from(sorted(state)))
    value = data.draw(st.one_of(u64, u32, junk))
    if isinstance(state[key], list) and state[key] and data.draw(st.booleans()):
        state[key][data.draw(st.integers(0, len(state[key]) - 1))] = value
    elif data.draw(st.integers(0, 9)) == 0:
        del state[key]
    else:
        state[key] = value
    return state


# -- LAPIC ------------------------------------------------------------------------------------
XAPIC_OFFSETS = [0x20, 0x30, 0x80, 0xB0, 0xD0, 0xE0, 0xF0, 0x100, 0x200, 0x280, 0x300, 0x310, 0x320, 0x330,
                 0x340, 0x350, 0x360, 0x370, 0x380, 0x390, 0x3E0, 0x3F0]
LAPIC_MSRS = [MSR_APIC_BASE, 0x6E0, 0x802, 0x803, 0x808, 0x80B, 0x80D, 0x80F, 0x828, 0x830, 0x832, 0x835, 0x838,
              0x839, 0x83E, 0x83F, 0x800, 0x8FF]
APIC_BASES = [0xFEE00900, 0xFEE00D00, 0xFEE00000, 0xFEE00100, 0xFEC00900, 0xFED00900, 0x100900, 0xFEE00C00,
              0xFEE00500]
OTHER_MMIO = 0xFEC00000     # a page another device owns: the xAPIC page may not move there


class LapicApi(RuleBasedStateMachine):
    @initialize(vendor=st.sampled_from(["intel", "amd"]), enable=st.booleans())
    def setup(self, vendor, enable):
        self.vendor = vendor
        self.h = Harness(vendor=vendor, enable=enable)
        self.h.mmio.register(OTHER_MMIO, 0x1000, object())
        self.state = self.h.lapic.get_state

    def snapshot(self):
        return self.state(), self.h.cpuid.has("apic"), self.h.mmio.ranges()

    def call(self, fn, *args):
        return attempt(lambda: fn(*args), LAPIC_ERRORS, self.snapshot)

    @rule(offset=st.sampled_from(XAPIC_OFFSETS), value=u32, size=st.sampled_from([4, 4, 4, 1, 2, 8]))
    def mmio_write(self, offset, value, size):
        self.call(self.h.write, offset, value, size)

    @rule(offset=st.sampled_from(XAPIC_OFFSETS), size=st.sampled_from([4, 1, 8]))
    def mmio_read(self, offset, size):
        self.call(self.h.read, offset, size)

    @rule(index=st.sampled_from(LAPIC_MSRS), value=u64, host=st.booleans())
    def msr_write(self, index, value, host):
        ok, result = self.call(self.h.wrmsr, index, value, host)
        assert ok and (result is None or isinstance(result, Fault)), result

    @rule(base=st.sampled_from(APIC_BASES), host=st.booleans())
    def write_apic_base(self, base, host):
        """IA32_APIC_BASE with meaningful values: modes, relocation (onto another device's page too)."""
        ok, result = self.call(self.h.wrmsr, MSR_APIC_BASE, base, host)
        assert ok and (result is None or isinstance(result, Fault)), result

    @rule(index=st.sampled_from(LAPIC_MSRS), host=st.booleans())
    def msr_read(self, index, host):
        ok, result = self.call(self.h.rdmsr, index, host)
        assert ok and isinstance(result, (int, Fault)), result

    @rule(lvt=st.integers(-2, 8))
    def deliver_local(self, lvt):
        ok, result = self.call(self.h.lapic.deliver_local, lvt)
        assert ok == (0 <= lvt < 6), (lvt, result)

    @rule(mode=st.integers(0, 7), vector=st.integers(0, 255), level=st.booleans())
    def receive(self, mode, vector, level):
        self.call(self.h.lapic.receive, mode, vector, level)

    @rule(ns=st.sampled_from([0, 1, 7, 100, 1000, 12345, 1 << 20, 1 << 40]))
    def tick(self, ns):
        self.h.clock.advance(ns)
        now = self.h.clock.now()
        self.call(self.h.lapic.tick, now)
        deadline = self.h.lapic.next_deadline()
        assert deadline is None or deadline > now, (deadline, now)

    @rule(take=st.booleans(), vector=st.integers(0, 255))
    def accept(self, take, vector):
        pending = self.h.lapic.pending_interrupt()
        self.call(self.h.lapic.accept_interrupt, pending if take and pending is not None else vector)

    @rule()
    def take_nmi_and_eois(self):
        self.call(self.h.lapic.take_nmi)
        self.call(self.h.lapic.take_level_eois)

    @rule(value=st.integers(0, 15))
    def cr8(self, value):
        self.call(self.h.lapic.set_cr8, value)

    @rule(data=st.data())
    def set_state(self, data):
        state = mutate(self.state(), data) if data.draw(st.booleans()) else self.state()
        ok, _ = self.call(self.h.lapic.set_state, state)
        if ok:
            assert self.state() == state

    @rule(data=st.data())
    def set_state_from_another_lapic(self, data):
        """A state another LAPIC reached (its own random writes) is taken whole or not at all."""
        other = Harness(vendor=self.vendor)
        for _ in range(data.draw(st.integers(1, 4))):
            other.write(data.draw(st.sampled_from(XAPIC_OFFSETS)), data.draw(u32))
        ok, _ = self.call(self.h.lapic.set_state, other.lapic.get_state())
        if ok:
            assert self.state() == other.lapic.get_state()

    @invariant()
    def round_trips(self):
        if not hasattr(self, "h"):
            return
        state = self.state()
        fresh = Harness(vendor=self.vendor)
        fresh.lapic.set_state(state)
        assert fresh.lapic.get_state() == state
        assert fresh.cpuid.has("apic") == self.h.cpuid.has("apic")


LapicApi.TestCase.settings = STATEFUL
TestLapicApi = LapicApi.TestCase


# -- PMU --------------------------------------------------------------------------------------
CONFIGS = [
    PmuConfig(vmware_backdoor=True),
    PmuConfig(gp_counters=2, gp_width=40, fixed_counters=1, fixed_width=36, tsx=True, global_ctrl_reset="seed"),
    PmuConfig(version=1, gp_counters=2, gp_width=32, fixed_counters=0),
    PmuConfig(gp_counters=2, pdcm=False, full_width_writes=False),
    PmuConfig(version=0),
    PmuConfig(vendor="amd"),
    PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True, gp_counters=3),
]
PMU_MSRS = [0xC1, 0xC2, 0xC8, 0x186, 0x187, 0x189, 0x309, 0x30A, 0x30C, 0x345, 0x38D, 0x38E, 0x38F, 0x390,
            0x4C1, 0x4C2, 0xC0010000, 0xC0010003, 0xC0010004, 0xC0010007, 0xC0010200, 0xC0010201, 0xC0010205,
            0xC0000300, 0xC0000301, 0xC0000302, 0xC0000303]
EVTSELS = st.one_of(st.sampled_from([0x4300C0, 0x53003C, 0x1D300C4, 0x5300C0 | 1 << 21, 0x5300C0 | 1 << 32]), u64)
FILTER_ENTRIES = st.one_of(
    st.builds(lambda sel, match, mask, exclude: (sel, match, mask, exclude), st.integers(0, 0xFFFF),
              st.integers(0, 0xFF), st.integers(0, 0xFF), st.booleans()),
    st.tuples(st.integers(-1, 1 << 17), st.integers(-1, 0x100), st.sampled_from([0, 0xFF, 0x100]), st.booleans()))
COMPILED_FILTERS = st.one_of(
    st.none(),
    st.tuples(st.sampled_from([ALLOW, DENY, -1, 2, -2, 1 << 31]), st.sampled_from([0, 7, 0xFFFFFFFF, 1 << 32, -1]),
              st.lists(FILTER_ENTRIES, max_size=4)),
    st.tuples(st.just(ALLOW), st.just(0), st.lists(st.just((0xC0, 0, 0xFF, False)), min_size=301, max_size=301)),
    st.sampled_from([(), (0, 0), (0, 0, [(1, 2, 3)]), (0, 0, None), "filter", (0, 0, [("a", 0, 0, False)])]))


class PmuApi(RuleBasedStateMachine):
    @initialize(config=st.sampled_from(CONFIGS))
    def setup(self, config):
        self.config = config
        self.pmu, self.vcpu, self.msrs, self.clock = self.build(config)

    @staticmethod
    def build(config):
        clock, vcpu = FakeClock(), FakeVcpu()
        cpuid = CpuidModel(config.vendor)
        config.apply_to_cpuid(cpuid)
        lapic = Harness(vendor=config.vendor).lapic
        pmu = Pmu(cpuid, vcpu, lapic, clock, config)
        msrs = Bus("msr", 1 << 32, (8,), indexed=True)
        pmu.attach(msrs)
        return pmu, vcpu, msrs, clock

    def snapshot(self):
        core = self.pmu.core
        derived = {name: getattr(core, name) for name in ("running", "programmed", "pmi_enabled", "filter_allowed",
                                                          "filter_action", "active_events", "pmi_requested")}
        return self.pmu.get_state(), derived, self.pmu.counters(), self.pmu.event_filter, self.msrs.ranges()

    def call(self, fn, *args):
        return attempt(lambda: fn(*args), PMU_ERRORS, self.snapshot)

    @rule(index=st.sampled_from(PMU_MSRS), value=st.one_of(EVTSELS, u64), host=st.booleans())
    def msr_write(self, index, value, host):
        ok, result = self.call(self.msrs.write, index, 8, value, 0, host)
        assert ok and (result is None or result is False or isinstance(result, Fault)), result

    @rule(index=st.sampled_from(PMU_MSRS), host=st.booleans())
    def msr_read(self, index, host):
        ok, result = self.call(self.msrs.read, index, 8, 0, host)
        assert ok and (result is None or isinstance(result, (int, Fault))), result

    @rule(event=st.integers(0, 8), n=st.sampled_from([0, 1, 5, 1 << 20, 1 << 47]), cpl=st.sampled_from([0, 3]))
    def feed(self, event, n, cpl):
        self.call(self.pmu.feed, event, n, cpl)

    @rule(insns=st.integers(0, 50), branches=st.integers(0, 3), cpl=st.sampled_from([0, 3]))
    def feed_block(self, insns, branches, cpl):
        self.call(self.pmu.feed_block, insns, min(branches, insns), cpl)

    @rule(ecx=st.one_of(st.sampled_from([0, 1, 2, 0x40000000, 0x40000001, 0x80000000, 0x10000, 0x10001, 0x10002]),
                        u32), cpl=st.sampled_from([0, 3]))
    def rdpmc(self, ecx, cpl):
        self.vcpu.set_cpl(cpl)
        ok, result = self.call(self.pmu.rdpmc, ecx)
        assert ok and isinstance(result, (int, Fault)), result

    @rule(compiled=COMPILED_FILTERS)
    def set_core_filter(self, compiled):
        """The core's filter from anything at all: refused whole (ValueError/TypeError) or taken."""
        before = self.snapshot()
        try:
            self.pmu.core.set_filter(compiled)
        except (ValueError, TypeError):
            assert self.snapshot() == before
        else:
            self.pmu.set_event_filter(None if compiled is None else _PrecompiledFilter(compiled))

    @rule(action=st.sampled_from([ALLOW, DENY]), masked=st.booleans(), fixed=st.integers(0, 7),
          codes=st.lists(st.sampled_from([0xC0, 0x3C, 0x2E, 0xC4, 0x4F2E, 0x1_0000_00C0]), max_size=3))
    def set_event_filter(self, action, masked, fixed, codes):
        if masked:
            event_filter = EventFilter(action, [c | 0xFF << 56 for c in codes], fixed, MASKED_EVENTS)
        else:
            event_filter = EventFilter(action, codes, fixed)
        self.call(self.pmu.set_event_filter, event_filter)

    @rule(data=st.data())
    def set_state(self, data):
        state = self.pmu.get_state()
        if data.draw(st.booleans()):
            state = dict(state, core=mutate(state["core"], data))
        elif data.draw(st.booleans()):
            state = mutate(state, data)
        ok, _ = self.call(self.pmu.set_state, state)
        if ok:
            assert self.pmu.get_state() == state

    @rule()
    def housekeeping(self):
        self.call(self.pmu.sched_in)
        self.call(self.pmu.before_guest_entry)
        self.vcpu.enter_guest()         # deferred PMIs run here
        self.vcpu.exit_guest()

    @rule()
    def refresh(self):
        self.call(self.pmu.refresh)

    @rule()
    def reset(self):
        self.call(self.pmu.reset)

    @precondition(lambda self: hasattr(self, "pmu"))
    @invariant()
    def round_trips(self):
        state = self.pmu.get_state()
        fresh = self.build(self.pmu.config)[0]
        fresh.set_state(state)
        assert fresh.get_state() == state
        for info in self.pmu.counters():
            assert info["value"] <= info["width_mask"]


class _PrecompiledFilter:
    """An already compiled filter in EventFilter's clothing (for Pmu.set_event_filter)."""

    def __init__(self, compiled):
        self._compiled = compiled

    def compiled(self):
        return self._compiled

    def __eq__(self, other):
        return isinstance(other, _PrecompiledFilter) and other._compiled == self._compiled


PmuApi.TestCase.settings = STATEFUL
TestPmuApi = PmuApi.TestCase


# -- IOAPIC, PIT, RTC, UART --------------------------------------------------------------------
def device_snapshot(device) -> dict:
    """Everything a device holds but its context, lines and sink, deep-copied."""
    skip = ("ctx", "irq0", "irq8", "_irq_line", "_sink")
    return copy.deepcopy({k: v for k, v in vars(device).items() if k not in skip})


class DevicesApi(RuleBasedStateMachine):
    """Four devices on one fake machine: every access and line change, in any order, raises nothing."""

    def __init__(self):
        super().__init__()
        self.ctx = FakeContext()
        self.ioapic = Ioapic(self.ctx)
        self.ctx.add_controller(self.ioapic)
        self.pit = Pit(self.ctx)
        self.rtc = Rtc(self.ctx)
        self.uart = Uart16550(self.ctx)
        self.uart.close()               # output stays in uart.output: nothing reaches stdout
        self.pio = Bus("pio", 0x10000, (1, 2, 4))
        self.mmio = Bus("mmio", 1 << 52)
        for device in (self.ioapic, self.pit, self.rtc, self.uart):
            device.register(self.pio)
            device.register(self.mmio)

    @rule(port=st.sampled_from([0x40, 0x41, 0x42, 0x43, 0x61, 0x70, 0x71, *range(0x3F8, 0x400), 0x3F6, 0x3FF]),
          size=st.sampled_from([1, 1, 1, 2, 4]), value=u32, write=st.booleans())
    def port_access(self, port, size, value, write):
        if write:
            assert self.pio.write(port, size, value) in (None, False)
        else:
            result = self.pio.read(port, size)
            assert result is None or 0 <= result < 1 << (8 * size), result

    @rule(index=st.integers(0, 0x7F), value=st.integers(0, 0xFF), nmi=st.booleans())
    def rtc_register(self, index, value, nmi):
        self.pio.write(0x70, 1, index | (0x80 if nmi else 0))
        self.pio.write(0x71, 1, value)
        self.pio.read(0x71, 1)

    @rule(control=st.integers(0, 0xFF), low=st.integers(0, 0xFF), high=st.integers(0, 0xFF))
    def pit_program(self, control, low, high):
        self.pio.write(0x43, 1, control)
        self.pio.write(0x40 + min(control >> 6, 2), 1, low)
        self.pio.write(0x40 + min(control >> 6, 2), 1, high)

    @rule(offset=st.sampled_from([0x00, 0x10, 0x20, 0x40, 0x04, 0x11, 0xFFC]), size=st.sampled_from([4, 4, 1, 2, 8]),
          value=u32, write=st.booleans())
    def ioapic_access(self, offset, size, value, write):
        address = 0xFEC00000 + offset
        if write:
            assert self.mmio.write(address, size, value) in (None, False)
        else:
            assert 0 <= self.mmio.read(address, size) < 1 << (8 * size)

    @rule(pin=st.integers(0, PINS - 1), entry=u64)
    def ioapic_entry(self, pin, entry):
        for half in (0, 1):
            self.mmio.write(0xFEC00000, 4, 0x10 + 2 * pin + half)
            self.mmio.write(0xFEC00010, 4, (entry >> (32 * half)) & 0xFFFFFFFF)

    @rule(line=st.integers(-3, 30).filter(lambda line: line != 4), level=st.booleans())
    def set_irq(self, line, level):
        """Any interrupt line but the UART's own (its level is the UART's invariant below)."""
        self.ctx.set_line(line, level)

    @rule(vector=st.integers(0, 0xFF))
    def eoi(self, vector):
        self.ioapic.eoi(vector)

    @rule(data=st.binary(max_size=20))
    def uart_feed(self, data):
        self.uart.feed(data)

    @rule(ns=st.sampled_from([1, 100, 838, 10_000, 1_000_000, 999_999_999, 10**10]))
    def tick(self, ns):
        self.ctx.clock.advance(ns)
        now = self.ctx.clock.now()
        for device in (self.pit, self.rtc):
            device.tick(now)
            deadline = device.next_deadline()
            assert deadline is None or deadline > now, (type(device).__name__, deadline, now)

    @invariant()
    def ioapic_entries_hold_only_defined_bits(self):
        for entry in self.ioapic.redirection:
            assert not entry & ~(WRITABLE | REMOTE_IRR), hex(entry)

    @invariant()
    def uart_line_is_what_its_registers_say(self):
        uart = self.uart
        gated = (uart.mcr & 0x18) == 0x08                       # OUT2 without loopback
        expected = gated and uart.core.iir_source != 0x01      # IIR "no interrupt pending"
        assert self.ctx.levels.get(uart.irq, False) == expected

    @invariant()
    def reads_change_nothing_they_should_not(self):
        """Reading IOREGSEL and the redirection table has no side effect."""
        before = device_snapshot(self.ioapic)
        self.mmio.read(0xFEC00000, 4)
        assert device_snapshot(self.ioapic) == before


DevicesApi.TestCase.settings = STATEFUL
TestDevicesApi = DevicesApi.TestCase


# -- buses ------------------------------------------------------------------------------------
class BusApi(RuleBasedStateMachine):
    """register/unregister in any order against a model: overlaps and bad ranges refused whole."""

    def __init__(self):
        super().__init__()
        self.bus = Bus("pio", 0x100, (1, 2, 4))
        self.model: dict[int, tuple[int, object]] = {}       # base -> (size, device)

    def snapshot(self):
        return self.bus.ranges()

    @rule(base=st.integers(-2, 0x101), size=st.integers(-1, 0x20))
    def register(self, base, size):
        device = _Echo()
        clash = any(base < b + s and b < base + size for b, (s, _) in self.model.items())
        bad = size <= 0 or base < 0 or base + size > 0x100
        ok, error = attempt(lambda: self.bus.register(base, size, device), BUS_ERRORS, self.snapshot)
        if bad:
            assert isinstance(error, InvalidRangeError), error
        elif clash:
            assert isinstance(error, OverlapError), error
        else:
            assert ok, error
            self.model[base] = (size, device)

    @rule(data=st.data())
    def unregister(self, data):
        base = data.draw(st.one_of(st.sampled_from(sorted(self.model) or [0]), st.integers(-1, 0x101)))
        ok, result = attempt(lambda: self.bus.unregister(base), BUS_ERRORS, self.snapshot)
        if base in self.model:
            assert ok and result is self.model.pop(base)[1]
        else:
            assert isinstance(result, DeviceNotFoundError), result

    @rule(address=st.integers(0, 0xFF), size=st.sampled_from([1, 2, 4, 3, 8]))
    def access(self, address, size):
        ok, result = attempt(lambda: self.bus.read(address, size), BUS_ERRORS, self.snapshot)
        assert ok == (size in (1, 2, 4)) and (ok or isinstance(result, InvalidAccessError)), result

    @invariant()
    def agrees_with_the_model(self):
        assert self.bus.ranges() == [(b, s, d) for b, (s, d) in sorted(self.model.items())]
        for address in range(0, 0x100, 7):
            owner = next(((b, d) for b, (s, d) in self.model.items() if b <= address < b + s), None)
            assert self.bus.lookup(address) == owner


class _Echo:
    """A device answering its offset, for accesses through the bus."""

    def read(self, access: Access) -> int:
        return access.offset

    def write(self, access: Access, value: int) -> None:
        return None


BusApi.TestCase.settings = STATEFUL
TestBusApi = BusApi.TestCase


# -- what these fuzzers found, case by case ------------------------------------------------------
def _busy_pmu(config=CONFIGS[0]):
    """A PMU with something in every register the state holds, and a PMI pending."""
    pmu, vcpu, msrs, _ = PmuApi.build(config)
    msrs.write(0x186, 8, 0x5300C0)
    msrs.write(0xC1, 8, (1 << 48) - 2, host=True)
    msrs.write(0x38D, 8, 0xB)
    pmu.feed_block(5, 1, cpl=0)
    assert pmu.core.pmi_requested and pmu.core.global_status
    return pmu, vcpu


def test_pmu_set_state_refuses_what_the_msr_writes_refuse_and_changes_nothing():
    refused = [
        ("eventsel", 0, 0x5300C0 | 1 << 21),        # Intel reserved bit: the EVTSEL write is #GP
        ("eventsel", 0, 1 << 64),                   # does not fit the register
        ("eventsel", 9, 0x5300C0),                  # fixed counters have no select
        ("counters", 0, 1 << 48),                   # wider than the 48-bit counter
        ("prev_cond", 0, 2),
        ("fixed_ctr_ctrl", None, 1 << 2),           # AnyThread of fixed counter 0
        ("global_ctrl", None, 1 << 40),
        ("global_status", None, 1 << 40),
        ("perf_capabilities", None, 1),
        ("pmc_in_use", None, 1 << 20),
        ("pmi_requested", None, 1),
        ("counters", None, [0] * 10),
    ]
    for key, index, value in refused:
        pmu, vcpu = _busy_pmu()
        state = pmu.get_state()
        core = copy.deepcopy(state["core"])
        if index is None:
            core[key] = value
        else:
            core[key][index] = value
        before = pmu.get_state()
        try:
            pmu.set_state(dict(state, core=core))
        except ValueError:
            pass
        else:
            raise AssertionError(f"{key}[{index}] = {value!r} accepted")
        assert pmu.get_state() == before, key
        vcpu.enter_guest()
        assert pmu.pmis_delivered == 1, key         # the PMI pending before the refusal still comes


def test_pmu_set_state_refuses_counters_a_smaller_pmu_does_not_have():
    pmu, _ = _busy_pmu(CONFIGS[2])                 # version 1, 2 GP counters, no fixed counters
    for key, index in (("counters", 2), ("counters", 8), ("eventsel", 3), ("prev_cond", 10)):
        state = pmu.get_state()
        state["core"][key][index] = 1
        before = pmu.get_state()
        try:
            pmu.set_state(state)
        except ValueError:
            assert pmu.get_state() == before
        else:
            raise AssertionError(f"{key}[{index}] accepted")


def test_pmu_set_state_of_the_wrong_shape_is_a_value_error():
    pmu, _ = _busy_pmu()
    state = pmu.get_state()
    for bad in (None, [], {}, {k: v for k, v in state.items() if k != "core"}, dict(state, config=None),
                dict(state, core=None), dict(state, core=[]), dict(state, extra=1)):
        try:
            pmu.set_state(bad)
        except ValueError:
            assert pmu.get_state() == state
        else:
            raise AssertionError(f"{bad!r} accepted")
