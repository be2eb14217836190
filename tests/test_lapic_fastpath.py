# SPDX-License-Identifier: GPL-2.0-or-later
"""The LAPIC's C API for x2APIC MSRs (devices/lapic.pxd), through its Python test wrappers.

Every case runs the same accesses on two LAPICs, one through the MSR bus and one through
``x2apic_write``/``x2apic_read``, and checks that results and saved state agree.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.bus import GP
from devices.lapic import MSR_APIC_BASE
from tests.lapic_harness import Harness

DONE, FAULT, UNHANDLED = 0, 1, 2
NO_DEADLINE = (1 << 64) - 1

TPR, PPR, EOI, LDR, SPIV = 0x808, 0x80A, 0x80B, 0x80D, 0x80F
ISR0, TMR0, IRR0, ESR, ICR = 0x810, 0x818, 0x820, 0x828, 0x830
LVT_TIMER, TMICT, TMCCT, TDCR, SELF_IPI = 0x832, 0x838, 0x839, 0x83E, 0x83F


def pair(**kwargs) -> tuple[Harness, Harness]:
    """(bus harness, C-path harness), both in x2APIC mode at virtual time 1000."""
    hs = []
    for _ in range(2):
        h = Harness(**kwargs)
        h.enter_x2apic()
        h.clock.set(1000)
        hs.append(h)
    return hs[0], hs[1]


def bus_write(h: Harness, msr: int, value: int) -> int:
    result = h.wrmsr(msr, value)
    assert result is None or result is GP
    return DONE if result is None else FAULT


def bus_read(h: Harness, msr: int) -> tuple[int, int]:
    result = h.rdmsr(msr)
    return (FAULT, 0) if result is GP else (DONE, result)


def c_write(h: Harness, msr: int, value: int) -> int:
    return h.lapic.x2apic_write_py(msr, value, h.clock.now())


def c_read(h: Harness, msr: int) -> tuple[int, int]:
    return h.lapic.x2apic_read_py(msr, h.clock.now())


def same_write(bus: Harness, fast: Harness, msr: int, value: int) -> int:
    result = c_write(fast, msr, value)
    assert result == bus_write(bus, msr, value), (hex(msr), hex(value))
    assert fast.lapic.get_state() == bus.lapic.get_state()
    return result


def same_read(bus: Harness, fast: Harness, msr: int) -> tuple[int, int]:
    result = c_read(fast, msr)
    expected = bus_read(bus, msr)
    if expected[0] == FAULT:
        assert result[0] == FAULT, hex(msr)
    else:
        assert result == expected, hex(msr)
    return result


def c_state(h: Harness) -> tuple[bool, int]:
    return h.lapic.c_state_py()


# -- modes and ranges --------------------------------------------------------------------------
@pytest.mark.parametrize("msr", [TPR, EOI, SELF_IPI, TMICT, LVT_TIMER])
def test_xapic_mode_is_not_handled(msr):
    h = Harness()
    before = h.lapic.get_state()
    assert h.lapic.x2apic_write_py(msr, 0, 0) == UNHANDLED
    assert h.lapic.x2apic_read_py(msr, 0)[0] == UNHANDLED
    assert h.lapic.get_state() == before
    assert h.wrmsr(msr, 0) is GP   # what the bus path then answers


def test_disabled_mode_is_not_handled():
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, h.lapic.base)
    assert h.lapic.x2apic_write_py(TPR, 0x20, 0) == UNHANDLED
    assert h.lapic.x2apic_read_py(TPR, 0)[0] == UNHANDLED


@pytest.mark.parametrize("msr", [0x1B, 0x6E0, 0x7FF, 0x900, 0xC0000080])
def test_msrs_outside_the_x2apic_range_are_not_handled(msr):
    bus, fast = pair()
    assert c_write(fast, msr, 0) == UNHANDLED
    assert c_read(fast, msr)[0] == UNHANDLED
    assert fast.lapic.get_state() == bus.lapic.get_state()


# -- TPR / PPR ---------------------------------------------------------------------------------
def test_tpr_write_read_and_ppr():
    bus, fast = pair()
    assert same_write(bus, fast, TPR, 0x35) == DONE
    assert same_read(bus, fast, TPR) == (DONE, 0x35)
    assert same_read(bus, fast, PPR) == (DONE, 0x35)
    assert fast.lapic.get_cr8() == 3


@pytest.mark.parametrize("value", [0x100, 1 << 32, 1 << 63])
def test_tpr_reserved_bits_gp(value):
    bus, fast = pair()
    assert same_write(bus, fast, TPR, value) == FAULT
    assert same_read(bus, fast, TPR) == (DONE, 0)


def test_ppr_write_gp():
    bus, fast = pair()
    assert same_write(bus, fast, PPR, 0) == FAULT


def test_tpr_lowering_unmasks_pending_interrupt():
    bus, fast = pair()
    same_write(bus, fast, TPR, 0xF0)
    same_write(bus, fast, SELF_IPI, 0x51)
    assert c_state(fast) == (False, NO_DEADLINE)
    assert fast.lapic.wake_pending   # newly in the IRR, even if masked by the TPR (as on_wakeup)
    same_write(bus, fast, TPR, 0x40)
    assert c_state(fast) == (True, NO_DEADLINE)
    assert fast.lapic.pending_interrupt() == 0x51


# -- SELF IPI ----------------------------------------------------------------------------------
def test_self_ipi_sets_irr_and_wake_pending_without_python_callbacks():
    bus, fast = pair()
    calls = []
    fast.lapic.on_wakeup = lambda: calls.append("wakeup")
    fast.lapic.on_write = lambda: calls.append("write")
    kicks = bus.vcpu.kicks
    assert same_write(bus, fast, SELF_IPI, 0x40) == DONE
    assert bus.vcpu.kicks == kicks + 1
    assert calls == []
    assert fast.lapic.wake_pending
    assert c_state(fast) == (True, NO_DEADLINE)
    assert same_read(bus, fast, IRR0 + 2) == (DONE, 1)
    fast.lapic.wake_pending = False
    assert same_write(bus, fast, SELF_IPI, 0x40) == DONE   # already pending: not newly
    assert not fast.lapic.wake_pending
    assert fast.lapic.accept_interrupt(0x40) == 0x40


def test_self_ipi_illegal_vector_latches_esr():
    bus, fast = pair()
    assert same_write(bus, fast, SELF_IPI, 5) == DONE
    assert not fast.lapic.wake_pending
    assert same_write(bus, fast, ESR, 0) == DONE
    assert same_read(bus, fast, ESR) == (DONE, 0x20)


@pytest.mark.parametrize("value", [0x100, 0x1_0000_0040])
def test_self_ipi_reserved_bits_gp(value):
    bus, fast = pair()
    assert same_write(bus, fast, SELF_IPI, value) == FAULT
    assert c_state(fast) == (False, NO_DEADLINE)


def test_self_ipi_read_gp():
    bus, fast = pair()
    assert same_read(bus, fast, SELF_IPI)[0] == FAULT


def test_self_ipi_to_software_disabled_apic_is_refused():
    bus, fast = pair()
    same_write(bus, fast, SPIV, 0xFF)
    assert same_write(bus, fast, SELF_IPI, 0x40) == DONE
    assert c_state(fast) == (False, NO_DEADLINE)
    assert not fast.lapic.wake_pending


# -- EOI, ISR/IRR/TMR --------------------------------------------------------------------------
def test_eoi_clears_highest_isr_bit():
    bus, fast = pair()
    for h in (bus, fast):
        for vector in (0x31, 0x92):
            h.wrmsr(SELF_IPI, vector)
            h.lapic.accept_interrupt(vector)
    assert same_read(bus, fast, ISR0 + 4) == (DONE, 1 << 0x12)
    assert same_read(bus, fast, PPR) == (DONE, 0x90)
    assert same_write(bus, fast, EOI, 0) == DONE
    assert same_read(bus, fast, ISR0 + 4) == (DONE, 0)
    assert same_read(bus, fast, ISR0 + 1) == (DONE, 1 << 0x11)
    assert same_write(bus, fast, EOI, 0) == DONE
    assert same_write(bus, fast, EOI, 0) == DONE   # empty ISR: nothing


@pytest.mark.parametrize("value", [1, 0x100, 1 << 40])
def test_nonzero_eoi_gp(value):
    bus, fast = pair()
    for h in (bus, fast):
        h.wrmsr(SELF_IPI, 0x31)
        h.lapic.accept_interrupt(0x31)
    assert same_write(bus, fast, EOI, value) == FAULT
    assert same_read(bus, fast, ISR0 + 1) == (DONE, 1 << 0x11)


def test_eoi_read_gp():
    bus, fast = pair()
    assert same_read(bus, fast, EOI)[0] == FAULT


def test_vector_bank_reads():
    bus, fast = pair()
    for h in (bus, fast):
        h.wrmsr(0x835, 0x8000 | 0x61)   # LINT0 level-triggered, vector 0x61
        h.lapic.deliver_local(3)
        h.wrmsr(SELF_IPI, 0xFE)
    for bank in (ISR0, TMR0, IRR0):
        for i in range(8):
            same_read(bus, fast, bank + i)
    assert c_read(fast, IRR0 + 3) == (DONE, 1 << 1)
    assert c_read(fast, TMR0 + 3) == (DONE, 1 << 1)
    assert c_read(fast, IRR0 + 7) == (DONE, 1 << 30)
    assert same_write(bus, fast, IRR0, 0) == FAULT   # read-only


# -- timer -------------------------------------------------------------------------------------
def test_tmict_arms_timer_and_reads():
    bus, fast = pair()
    assert same_write(bus, fast, TDCR, 0x3) == DONE     # divide by 16
    assert same_write(bus, fast, LVT_TIMER, 0x40) == DONE
    assert same_write(bus, fast, TMICT, 100) == DONE
    assert c_state(fast) == (False, 1000 + 100 * 16)
    assert fast.lapic.next_deadline() == bus.lapic.next_deadline() == 2600
    assert same_read(bus, fast, TMICT) == (DONE, 100)
    for h in (bus, fast):
        h.clock.set(1000 + 16 * 30 + 1)
    assert same_read(bus, fast, TMCCT) == (DONE, 70)
    assert same_read(bus, fast, TDCR) == (DONE, 3)
    assert same_read(bus, fast, LVT_TIMER) == (DONE, 0x40)


def test_tmict_zero_disarms():
    bus, fast = pair()
    same_write(bus, fast, TMICT, 100)
    assert same_write(bus, fast, TMICT, 0) == DONE
    assert c_state(fast) == (False, NO_DEADLINE)


@pytest.mark.parametrize("msr, value", [
    (TMICT, 1 << 32), (TDCR, 0x4), (LVT_TIMER, 0x60040),  # reserved timer mode 0b11
    (LVT_TIMER, 0x100), (TMCCT, 0),
])
def test_timer_reserved_bits_gp(msr, value):
    bus, fast = pair()
    assert same_write(bus, fast, msr, value) == FAULT


def test_overdue_timer_fires_on_reprogram():
    bus, fast = pair()
    same_write(bus, fast, LVT_TIMER, 0x40)
    same_write(bus, fast, TMICT, 10)       # deadline 1020
    fast.lapic.wake_pending = False
    for h in (bus, fast):
        h.clock.set(5000)
    assert same_write(bus, fast, TMICT, 10) == DONE
    assert fast.lapic.wake_pending
    assert c_state(fast) == (True, 5000 + 20)
    assert fast.lapic.pending_interrupt() == 0x40


def test_periodic_current_count_and_divide_change():
    bus, fast = pair()
    same_write(bus, fast, LVT_TIMER, 0x20040)   # periodic
    same_write(bus, fast, TMICT, 100)          # divide by 2: period 200
    for h in (bus, fast):
        h.clock.set(1000 + 450)
    assert same_read(bus, fast, TMCCT) == (DONE, 75)
    assert same_write(bus, fast, TDCR, 0xB) == DONE   # divide by 1: remaining 75 counts at 1 ns
    assert c_state(fast) == (True, 1450 + 75)


def test_tsc_deadline_mode_ignores_tmict():
    bus, fast = pair()
    assert same_write(bus, fast, LVT_TIMER, 0x40040) == DONE
    assert same_write(bus, fast, TMICT, 100) == DONE
    assert c_state(fast) == (False, NO_DEADLINE)
    assert same_read(bus, fast, TMICT) == (DONE, 0)


# -- the rest of the register file is shared code too ---------------------------------------
def test_icr_self_ipi_and_reads():
    bus, fast = pair(apic_id=5)
    assert same_write(bus, fast, ICR, (5 << 32) | 0x4055) == DONE
    assert c_state(fast) == (True, NO_DEADLINE)
    assert same_read(bus, fast, ICR) == (DONE, (5 << 32) | 0x4055)
    assert same_read(bus, fast, LDR) == (DONE, 1 << 5)
    assert same_read(bus, fast, 0x802) == (DONE, 5)
    assert same_read(bus, fast, 0x831)[0] == FAULT


ACCESSES = [TPR, PPR, EOI, 0x802, 0x803, LDR, 0x80E, SPIV, ISR0 + 1, TMR0 + 2, IRR0 + 2, ESR, ICR, 0x831,
            LVT_TIMER, 0x833, 0x834, 0x835, 0x836, 0x837, TMICT, TMCCT, TDCR, SELF_IPI, 0x8FF]
VALUES = st.one_of(
    st.sampled_from([0, 0x20, 0x45, 0xFF, 0x1FF, 0x100, 0x40040, 0x20041, 0x60040, 0x10030, 0x400, 0xB, 0x3]),
    st.integers(0, 0xFFFF), st.integers(0, (1 << 64) - 1),
)
OPS = st.lists(st.tuples(st.sampled_from(ACCESSES), st.booleans(), VALUES, st.integers(0, 3000)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_random_accesses_match_the_bus_path(ops):
    bus, fast = pair()
    for msr, is_write, value, advance in ops:
        for h in (bus, fast):
            h.clock.advance(advance)
            h.lapic.tick(h.clock.now())
        if is_write:
            same_write(bus, fast, msr, value)
        else:
            same_read(bus, fast, msr)
        assert c_state(fast) == (bus.lapic.has_wakeup(), bus.lapic.next_deadline() or NO_DEADLINE)
        if fast.lapic.pending_interrupt() is not None and value & 1:
            for h in (bus, fast):
                h.lapic.accept_interrupt(h.lapic.pending_interrupt())


def test_eoi_of_a_level_vector_hands_back_to_python():
    """The I/O APIC must hear of it before the guest goes on: the C path applies the EOI and leaves
    the after-write work (on_wakeup, on_write) to settle_write(), as the xAPIC page's does."""
    bus, fast = pair()
    for h in (bus, fast):
        h.lapic.receive(0, 0x50, True)
        assert h.lapic.accept_interrupt(0x50) == 0x50
    calls = []
    fast.lapic.on_write = lambda: calls.append("write")
    assert c_write(fast, EOI, 0) == 3                               # LAPIC_SETTLE
    assert bus_write(bus, EOI, 0) == DONE
    assert fast.lapic.get_state() == bus.lapic.get_state()
    assert calls == [] and not fast.lapic.wake_pending
    assert fast.lapic.take_level_eois() == [0x50] == bus.lapic.take_level_eois()


def test_eoi_of_an_edge_vector_is_done_in_c():
    bus, fast = pair()
    for h in (bus, fast):
        h.lapic.receive(0, 0x50, False)
        h.lapic.accept_interrupt(0x50)
    assert same_write(bus, fast, EOI, 0) == DONE
    assert fast.lapic.take_level_eois() == [] == bus.lapic.take_level_eois()
