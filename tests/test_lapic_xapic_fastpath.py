# SPDX-License-Identifier: GPL-2.0-or-later
"""The LAPIC's C API for the xAPIC page (devices/lapic.pxd: xapic_read/xapic_write), through its
Python test wrappers, against the MMIO bus path: the same answers and state for any access, no
Python callback on the way, and the bus path's after-write work where the C path hands back."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.lapic import MSR_APIC_BASE, DeliveryMode
from tests.lapic_harness import Harness

DONE, UNHANDLED, SETTLE = 0, 2, 3
NO_DEADLINE = (1 << 64) - 1
TPR, EOI, SPIV, ISR0, IRR0, ICR, ICR2 = 0x80, 0xB0, 0xF0, 0x100, 0x200, 0x300, 0x310
LVT_TIMER, TMICT, TMCCT, TDCR = 0x320, 0x380, 0x390, 0x3E0


def pair() -> tuple[Harness, Harness]:
    """(bus harness, C-path harness), both in xAPIC mode at virtual time 1000."""
    hs = [Harness(), Harness()]
    for h in hs:
        h.clock.set(1000)
    return hs[0], hs[1]


def same_write(bus: Harness, fast: Harness, offset: int, value: int, size: int = 4) -> int:
    result = fast.lapic.xapic_write_py(offset, size, value, fast.clock.now())
    if result == UNHANDLED:
        fast.write(offset, value, size)         # what the hook layer then does
    bus.write(offset, value, size)
    assert fast.lapic.get_state() == bus.lapic.get_state(), (hex(offset), hex(value), size)
    return result


def same_read(bus: Harness, fast: Harness, offset: int, size: int = 4) -> int:
    value = fast.lapic.xapic_read_py(offset, size, fast.clock.now())
    assert value == bus.read(offset, size), (hex(offset), size)
    return value


_OFFSETS = st.one_of(st.sampled_from([0x20, 0x30, TPR, 0x90, 0xA0, EOI, 0xD0, 0xE0, SPIV, ISR0, 0x180, IRR0,
                                      0x280, ICR, ICR2, LVT_TIMER, 0x330, 0x340, 0x350, 0x360, 0x370, TMICT,
                                      TMCCT, TDCR, 0x3F0, 0x400, 0xFF0]),
                     st.integers(0, 0xFFF))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.booleans(), _OFFSETS, st.sampled_from([4, 4, 4, 1, 2, 8]), st.integers(0, 2**32 - 1),
                          st.integers(0, 5000)), max_size=30))
def test_any_access_sequence_agrees_with_the_bus(accesses):
    bus, fast = pair()
    for write, offset, size, value, ns in accesses:
        if offset + size > 0x1000:
            continue        # (across the page's end: the hook layer takes the bus path)
        for h in (bus, fast):
            h.clock.advance(ns)
        if write:
            same_write(bus, fast, offset, value & ((1 << (8 * size)) - 1), size)
        else:
            same_read(bus, fast, offset, size)


@pytest.mark.parametrize("apic_base", [0, "x2apic"])
def test_outside_xapic_mode_reads_all_ones_and_ignores_writes(apic_base):
    bus, fast = pair()
    for h in (bus, fast):
        if apic_base == "x2apic":
            h.enter_x2apic()
        else:
            h.wrmsr(MSR_APIC_BASE, h.lapic.base)
    for size in (1, 2, 4, 8):
        assert same_read(bus, fast, TPR, size) == (1 << (8 * size)) - 1
    assert same_write(bus, fast, TPR, 0x40) == DONE


def test_other_sizes_and_misaligned_offsets_read_0_and_ignore_writes():
    bus, fast = pair()
    same_write(bus, fast, TPR, 0x40)
    assert same_read(bus, fast, TPR, 2) == 0 and same_read(bus, fast, TPR + 4) == 0
    assert same_write(bus, fast, TPR, 0x50, 2) == DONE and same_write(bus, fast, TPR + 4, 0x50) == DONE
    assert same_read(bus, fast, TPR) == 0x40


def test_the_lvt_timer_is_left_to_the_bus_path():
    bus, fast = pair()
    before = fast.lapic.get_state()
    assert fast.lapic.xapic_write_py(LVT_TIMER, 4, 0x40, 1000) == UNHANDLED
    assert fast.lapic.get_state() == before


def test_a_self_ipi_flags_wake_pending_without_callbacks():
    bus, fast = pair()
    calls = []
    fast.lapic.on_wakeup = lambda: calls.append("wakeup")
    fast.lapic.on_write = lambda: calls.append("write")
    assert same_write(bus, fast, ICR, (1 << 18) | 0x40) == DONE        # self shorthand, fixed, 0x40
    assert calls == [] and fast.lapic.wake_pending
    assert fast.lapic.c_state_py() == (True, NO_DEADLINE)


def test_timer_initial_count_arms_the_deadline():
    bus, fast = pair()
    same_write(bus, fast, TDCR, 0xB)                                    # divide by 1
    assert same_write(bus, fast, TMICT, 500) == DONE
    assert fast.lapic.c_state_py() == (False, 1500)
    fast.clock.advance(100)
    bus.clock.advance(100)
    assert same_read(bus, fast, TMCCT) == 400


def test_eoi_of_a_level_vector_hands_back_to_python():
    bus, fast = pair()
    for h in (bus, fast):
        h.lapic.receive(DeliveryMode.FIXED, 0x50, True)
        assert h.lapic.accept_interrupt(0x50) == 0x50
    calls = []
    fast.lapic.on_write = lambda: calls.append("write")
    assert same_write(bus, fast, EOI, 0) == SETTLE
    assert calls == [] and not fast.lapic.wake_pending        # left for settle_write(): on_wakeup, on_write
    assert fast.lapic.take_level_eois() == [0x50] == bus.lapic.take_level_eois()


def test_eoi_of_an_edge_vector_is_done_in_c():
    bus, fast = pair()
    for h in (bus, fast):
        h.lapic.receive(DeliveryMode.FIXED, 0x50, False)
        h.lapic.accept_interrupt(0x50)
    assert same_write(bus, fast, EOI, 0) == DONE
    assert same_read(bus, fast, ISR0 + 0x20) == 0
