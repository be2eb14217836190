# SPDX-License-Identifier: GPL-2.0-or-later
"""Lapic.set_state: all or nothing, and only states the registers can hold."""

from __future__ import annotations

import pytest

from devices.lapic import (
    APIC_BASE_BSP,
    APIC_BASE_EN,
    APIC_BASE_EXTD,
    DEFAULT_APIC_BASE,
    MSR_APIC_BASE,
    LapicStateError,
    Lvt,
)
from tests.lapic_harness import Harness
from vmm.cpuid import DEFAULT_FEATURES

XAPIC = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_BSP
X2APIC = XAPIC | APIC_BASE_EXTD
DISABLED = DEFAULT_APIC_BASE | APIC_BASE_BSP


def saved_state() -> dict:
    """A valid state with something in every register, pending work and an armed timer."""
    h = Harness()
    h.write(0x80, 0x20)
    h.write(0x310, 0x01000000)
    h.write(0x350, 0x8038)
    h.lapic.deliver_local(Lvt.LINT0)
    h.write(0x300, 0x40003)
    h.write(0x320, 0x20050)
    h.write(0x380, 100)
    return h.lapic.get_state()


def target() -> Harness:
    h = Harness()
    h.write(0x80, 0x10)
    return h


def assert_refused(change: dict, match: str = "") -> None:
    """set_state(saved state + change) raises and leaves target, CPUID and the page as they were."""
    h = target()
    state = {**saved_state(), **change}
    before, generation = h.lapic.get_state(), h.cpuid.generation
    with pytest.raises(LapicStateError, match=match):
        h.lapic.set_state(state)
    assert h.lapic.get_state() == before
    assert h.cpuid.generation == generation and h.cpuid.has("apic")
    assert h.base_changes == [] and h.read(0x80) == 0x10


@pytest.mark.parametrize("apic_base", [
    XAPIC | 1, XAPIC | 1 << 9, XAPIC | 1 << 48, DISABLED | APIC_BASE_EXTD,
])
def test_apic_base_refused_like_the_msr_write(apic_base):
    assert target().wrmsr(MSR_APIC_BASE, apic_base, host=True) is not None
    assert_refused({"apic_base": apic_base}, "apic_base")


def test_extd_without_cpuid_x2apic_refused():
    h = Harness(features=tuple(f for f in DEFAULT_FEATURES if f != "x2apic"))
    with pytest.raises(LapicStateError, match="reserved"):
        h.lapic.set_state({**saved_state(), "apic_base": X2APIC})
    assert h.lapic.mode.name == "XAPIC"


@pytest.mark.parametrize("change", [
    {"tpr": 0x100}, {"spiv": 0x11FF}, {"ldr": 0x01000001}, {"dfr": 0x0FFFFFFF}, {"timer_divide_config": 0x4},
    {"xapic_id": 0x100},
    {"icr": 1 << 12},                            # delivery status is read-only
    {"icr": 1 << 40},                            # xAPIC: only ICR2 bits 31:24
    {"lvt": [0x10000, 0x10000, 0x11000, 0x10000, 0x10000, 0x10000]},   # LVTPC delivery status
    {"lvt": [0x60000, 0x10000, 0x10000, 0x10000, 0x10000, 0x10000]},   # timer mode 0b11
    {"lvt": [0x10000, 0x10000, 0x10000, 0x10000, 0x10000, 0x100]},     # error LVT has no mode bits
])
def test_register_bits_refused_like_the_register_writes(change):
    assert_refused(change, "bits outside|reserved mode|wider than")


def test_tsc_deadline_mode_needs_cpuid():
    h = Harness(features=tuple(f for f in DEFAULT_FEATURES if f != "tsc_deadline"))
    state = {**saved_state(), "lvt": [0x50040, *[0x10000] * 5], "timer_deadline": None}
    with pytest.raises(LapicStateError, match="lvt\\[0\\]"):
        h.lapic.set_state(state)


@pytest.mark.parametrize("change, match", [
    ({"spiv": 0xFF, "lvt": [0x10000, 0x10000, 0x40, 0x10000, 0x10000, 0x10000]}, "software-disabled"),
    ({"esr": 0x80}, "errors"),
    ({"esr_accumulated": 0x1}, "errors"),
    ({"irr": 1 << 5}, "below 16"),
    ({"isr": 1 << 15}, "below 16"),
    ({"tmr": 1}, "below 16"),
    ({"timer_initial_count": 0}, "nothing to count"),
    ({"lvt": [0x40040, *[0x10000] * 5], "timer_deadline": 0}, "nothing to count"),
    ({"apic_base": DISABLED}, "hardware-disabled"),
])
def test_unreachable_states_refused(change, match):
    assert_refused(change, match)


@pytest.mark.parametrize("change", [
    {"nmi_pending": 1}, {"tpr": "0x20"}, {"tpr": -1}, {"tpr": 32.0}, {"apic_base": -1}, {"icr": 1 << 64},
    {"irr": 1 << 256}, {"irr": -1}, {"lvt": 5}, {"lvt": [0x10000] * 5}, {"lvt": [0x10000] * 5 + [None]},
    {"timer_deadline": -5}, {"timer_deadline": 1.5},
])
def test_values_of_the_wrong_type_or_size_refused(change):
    assert_refused(change, "bad value")


def test_not_a_dict_refused():
    with pytest.raises(LapicStateError, match="dict"):
        target().lapic.set_state([("version", 1)])


def test_taken_page_refused_and_nothing_changes():
    h = target()
    h.mmio.register(0xFED00000, 0x1000, object())
    before = h.lapic.get_state()
    with pytest.raises(LapicStateError, match="taken"):
        h.lapic.set_state({**saved_state(), "apic_base": 0xFED00000 | APIC_BASE_EN})
    assert h.lapic.get_state() == before and h.read(0x80) == 0x10


def test_x2apic_icr_takes_a_32_bit_destination():
    h = Harness()
    h.enter_x2apic()
    h.wrmsr(0x830, 0x12345678 << 32 | 0x40050)
    state = h.lapic.get_state()
    fresh = Harness()
    fresh.lapic.set_state(state)
    assert fresh.rdmsr(0x830) == 0x12345678 << 32 | 0x40050
    assert_refused({"icr": state["icr"]}, "icr")      # the same ICR is not an xAPIC one


def test_disabled_state_clears_the_cpuid_apic_bit_and_undecodes_the_page():
    source = Harness()
    source.wrmsr(MSR_APIC_BASE, DISABLED)
    h = target()
    h.lapic.set_state(source.lapic.get_state())
    assert not h.cpuid.has("apic") and h.read(0x30) == 0xFFFFFFFF
    h.lapic.set_state(saved_state())
    assert h.cpuid.has("apic") and h.read(0x80) == 0x20


def test_cr8_value_of_a_disabled_apic_is_restored():
    source = Harness()
    source.wrmsr(MSR_APIC_BASE, DISABLED)
    source.lapic.set_cr8(5)
    h = target()
    h.lapic.set_state(source.lapic.get_state())
    assert h.lapic.get_cr8() == 5
