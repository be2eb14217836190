# SPDX-License-Identifier: GPL-2.0-or-later
"""LAPIC access paths and registers: IA32_APIC_BASE transitions, xAPIC page, x2APIC MSRs, ESR, SPIV, state."""

from __future__ import annotations

import pytest

from devices.bus import GP
from devices.lapic import (
    APIC_BASE_BSP,
    APIC_BASE_EN,
    APIC_BASE_EXTD,
    DEFAULT_APIC_BASE,
    DFR_FLAT_MODEL,
    DFR_RESERVED_ONES,
    MSR_APIC_BASE,
    ApicMode,
    Lapic,
    LapicStateError,
    Lvt,
)
from tests.lapic_harness import SPIV_ENABLED, Harness
from vmm.cpuid import DEFAULT_FEATURES

XAPIC = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_BSP
X2APIC = XAPIC | APIC_BASE_EXTD
DISABLED = DEFAULT_APIC_BASE | APIC_BASE_BSP
INVALID = DISABLED | APIC_BASE_EXTD
NO_X2APIC = tuple(f for f in DEFAULT_FEATURES if f != "x2apic")


def x2apic_harness(**kwargs) -> Harness:
    h = Harness(**kwargs)
    h.enter_x2apic()
    return h


# -- IA32_APIC_BASE ----------------------------------------------------------------------------
@pytest.mark.parametrize("bsp, value", [(True, 0xFEE00900), (False, 0xFEE00800)])
def test_apic_base_reset_value(bsp, value):
    h = Harness(bsp=bsp)
    assert h.rdmsr(MSR_APIC_BASE) == value
    assert h.lapic.mode == ApicMode.XAPIC


@pytest.mark.parametrize("start, target", [
    (XAPIC, XAPIC), (XAPIC, X2APIC), (XAPIC, DISABLED), (X2APIC, X2APIC), (X2APIC, DISABLED),
    (DISABLED, DISABLED), (DISABLED, XAPIC),
])
def test_apic_base_legal_transitions(start, target):
    h = Harness()
    if start == X2APIC:
        h.enter_x2apic()
    elif start == DISABLED:
        assert h.wrmsr(MSR_APIC_BASE, DISABLED) is None
    assert h.wrmsr(MSR_APIC_BASE, target) is None
    assert h.rdmsr(MSR_APIC_BASE) == target


@pytest.mark.parametrize("start, target", [
    (X2APIC, XAPIC), (DISABLED, X2APIC), (XAPIC, INVALID), (X2APIC, INVALID), (DISABLED, INVALID),
])
def test_apic_base_illegal_transitions_gp_and_change_nothing(start, target):
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, start, host=True) is None
    assert h.wrmsr(MSR_APIC_BASE, target) == GP
    assert h.rdmsr(MSR_APIC_BASE) == start


@pytest.mark.parametrize("start, target", [(X2APIC, XAPIC), (DISABLED, X2APIC)])
def test_host_write_skips_transition_rules(start, target):
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, start, host=True) is None
    assert h.wrmsr(MSR_APIC_BASE, target, host=True) is None
    assert h.rdmsr(MSR_APIC_BASE) == target


@pytest.mark.parametrize("host", [False, True])
def test_invalid_state_and_reserved_bits_gp_even_for_host(host):
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, INVALID, host=host) == GP
    assert h.wrmsr(MSR_APIC_BASE, XAPIC | 1, host=host) == GP


@pytest.mark.parametrize("bit", [0, 1, 7, 9, 48, 52, 63])
def test_apic_base_reserved_bits_gp(bit):
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, XAPIC | (1 << bit)) == GP
    assert h.rdmsr(MSR_APIC_BASE) == XAPIC


def test_extd_without_cpuid_x2apic_gp_and_x2apic_msrs_gp():
    h = Harness(features=NO_X2APIC)
    assert h.wrmsr(MSR_APIC_BASE, X2APIC) == GP
    assert h.rdmsr(0x802) == GP
    assert h.wrmsr(0x808, 0) == GP


def test_bsp_bit_is_writable():
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, XAPIC & ~APIC_BASE_BSP) is None
    assert h.rdmsr(MSR_APIC_BASE) == XAPIC & ~APIC_BASE_BSP


def test_relocation_remaps_page_and_reports_old_and_new():
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, 0xFEC01000 | APIC_BASE_EN) is None
    assert h.base_changes == [(DEFAULT_APIC_BASE, 0xFEC01000)]
    assert h.mmio.lookup(DEFAULT_APIC_BASE) is None
    assert h.mmio.read(0xFEC01030, 4) == 0x50014
    assert h.mmio.read(0xFEC010F0, 4) == SPIV_ENABLED


def test_relocation_onto_another_device_gp_and_keeps_page():
    h = Harness()
    h.mmio.register(0xFEC00000, 0x1000, object())
    assert h.wrmsr(MSR_APIC_BASE, 0xFEC00000 | APIC_BASE_EN) == GP
    assert h.base_changes == []
    assert h.rdmsr(MSR_APIC_BASE) == XAPIC
    assert h.mmio.read(DEFAULT_APIC_BASE + 0x30, 4) == 0x50014


def test_rewriting_same_base_does_not_report_a_move():
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, XAPIC) is None
    assert h.base_changes == []


def test_hardware_disable_resets_registers():
    h = Harness(apic_id=2)
    h.write(0x20, 0x07000000)
    h.write(0x80, 0x40)
    h.write(0x350, 0x30)
    h.write(0x380, 1000)
    h.write(0x300, 0x40050)  # self-IPI vector 0x50
    h.lapic.deliver_local(Lvt.LINT0)
    assert h.wrmsr(MSR_APIC_BASE, DISABLED) is None
    assert h.read(0x20) == 0xFFFFFFFF  # page not decoded while disabled
    assert h.lapic.pending_interrupt() is None and h.lapic.next_deadline() is None
    assert h.wrmsr(MSR_APIC_BASE, XAPIC) is None
    assert h.read(0x20) == 0x02000000
    assert h.read(0x80) == 0 and h.read(0xF0) == 0xFF
    assert [h.read(0x320 + 0x10 * i) for i in range(6)] == [0x10000] * 6
    assert h.read(0x380) == 0 and h.read(0x200 + 0x50) == 0


def test_disabled_apic_does_not_deliver():
    h = Harness()
    h.write(0x350, 0x30)
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.lapic.deliver_local(Lvt.LINT0) is False


# -- xAPIC page --------------------------------------------------------------------------------
def test_id_and_version():
    h = Harness(apic_id=5)
    assert h.read(0x20) == 0x05000000
    assert h.read(0x30) == 0x00050014  # 6 LVT entries
    h.write(0x20, 0x0AFFFFFF)
    assert h.read(0x20) == 0x0A000000
    h.write(0x30, 0)
    assert h.read(0x30) == 0x00050014


@pytest.mark.parametrize("offset, size", [(0x80, 1), (0x80, 2), (0x80, 8), (0x84, 4), (0x81, 1)])
def test_non_dword_or_misaligned_mmio_reads_zero_and_ignores_writes(offset, size):
    h = Harness()
    h.write(0x80, 0x20)
    assert h.read(offset, size) == 0
    h.write(offset, 0xFF, size)
    assert h.read(0x80) == 0x20


@pytest.mark.parametrize("offset", [0x0, 0x10, 0x40, 0xC0, 0x2F0, 0x3F0, 0x3A0, 0xFF0])
def test_reserved_offsets_read_zero_and_ignore_writes(offset):
    h = Harness()
    h.write(offset, 0xFFFFFFFF)
    assert h.read(offset) == 0
    assert h.lapic.pending_interrupt() is None


def test_self_ipi_register_does_not_exist_in_xapic_mode():
    h = Harness()
    h.write(0x3F0, 0x40)
    assert h.lapic.pending_interrupt() is None


def test_mmio_in_x2apic_mode_reads_all_ones_and_ignores_writes():
    h = x2apic_harness()
    assert h.read(0x30) == 0xFFFFFFFF
    h.write(0x80, 0x50)
    assert h.rdmsr(0x808) == 0


def test_x2apic_msrs_gp_in_xapic_mode():
    h = Harness()
    assert h.rdmsr(0x803) == GP
    assert h.wrmsr(0x808, 0x10) == GP
    assert h.read(0x80) == 0


def test_tpr_and_ldr_and_dfr():
    h = Harness()
    h.write(0x80, 0x1FF)
    assert h.read(0x80) == 0xFF
    h.write(0xD0, 0xFFFFFFFF)
    assert h.read(0xD0) == 0xFF000000
    assert h.read(0xE0) == 0xFFFFFFFF == DFR_FLAT_MODEL | DFR_RESERVED_ONES
    h.write(0xE0, 0)
    assert h.read(0xE0) == 0x0FFFFFFF


def test_icr_reads_back_without_delivery_status():
    h = Harness()
    h.write(0x310, 0xFFFFFFFF)
    assert h.read(0x310) == 0xFF000000
    h.write(0x300, 0x000C1F30 | (1 << 12) | (1 << 13))  # all-excl-self, INIT-level-ish bits, busy bit
    assert h.read(0x300) == 0x000C0F30


def test_eoi_reads_zero():
    h = Harness()
    assert h.read(0xB0) == 0


def test_lvt_writable_bits():
    h = Harness()
    h.write(0x320, 0xFFFDFFFF)
    assert h.read(0x320) == 0x000500FF  # vector, mask, timer mode (TSC deadline here); no delivery mode
    h.write(0x330, 0xFFFFFFFF)
    assert h.read(0x330) == 0x000107FF
    h.write(0x350, 0xFFFFFFFF)
    assert h.read(0x350) == 0x0001A7FF  # + polarity and trigger, never remote IRR / delivery status
    h.write(0x370, 0xFFFFFFFF)
    assert h.read(0x370) == 0x000100FF


def test_timer_mode_11_in_xapic_becomes_periodic_and_deadline_bit_needs_cpuid():
    h = Harness()
    h.write(0x320, 0x60040)
    assert h.read(0x320) == 0x20040
    h2 = Harness(features=tuple(f for f in DEFAULT_FEATURES if f != "tsc_deadline"))
    h2.write(0x320, 0x40040)
    assert h2.read(0x320) == 0x00040


def test_divide_config_bits():
    h = Harness()
    h.write(0x3E0, 0xFFFFFFFF)
    assert h.read(0x3E0) == 0xB


# -- x2APIC MSRs -------------------------------------------------------------------------------
def test_x2apic_id_is_32_bit_and_read_only():
    h = x2apic_harness(apic_id=0x1234)
    assert h.rdmsr(0x802) == 0x1234
    assert h.wrmsr(0x802, 0x1234) == GP
    assert h.rdmsr(0x803) == 0x50014


@pytest.mark.parametrize("apic_id, ldr", [(0, 0x1), (5, 0x20), (0x23, 0x20008), (0x1234, 0x1230010)])
def test_x2apic_ldr_derived_from_id_and_read_only(apic_id, ldr):
    h = x2apic_harness(apic_id=apic_id)
    assert h.rdmsr(0x80D) == ldr
    assert h.wrmsr(0x80D, ldr) == GP


@pytest.mark.parametrize("msr", [0x802, 0x803, 0x80A, 0x80D, 0x810, 0x817, 0x818, 0x820, 0x827, 0x839])
def test_x2apic_read_only_registers_gp_on_write(msr):
    h = x2apic_harness()
    assert h.wrmsr(msr, 0) == GP


@pytest.mark.parametrize("msr", [0x80B, 0x83F])
def test_x2apic_write_only_registers_gp_on_read(msr):
    h = x2apic_harness()
    assert h.rdmsr(msr) == GP


@pytest.mark.parametrize("msr", [0x800, 0x801, 0x804, 0x809, 0x80C, 0x80E, 0x82F, 0x831, 0x83A, 0x83D, 0x840, 0x8FF])
def test_x2apic_reserved_registers_gp(msr):
    h = x2apic_harness()
    assert h.rdmsr(msr) == GP
    assert h.wrmsr(msr, 0) == GP


@pytest.mark.parametrize("msr, value", [
    (0x808, 0x100),                 # TPR bits 31:8
    (0x808, 1 << 32),               # upper half of every MSR but ICR
    (0x80F, 0x1000 | 0x1FF),        # SPIV EOI-broadcast suppression is not supported
    (0x832, 0x80000),               # timer LVT bit 19
    (0x832, 0x60000),               # timer mode 0b11
    (0x832, 0x100),                 # timer LVT has no delivery mode
    (0x837, 0x400),                 # error LVT has no delivery mode
    (0x830, 0x1000),                # ICR delivery status does not exist in x2APIC
    (0x830, 0x2000),                # ICR bit 13
    (0x830, 0x100000),              # ICR bits 31:20
    (0x83E, 0x4),                   # divide bit 2
    (0x83F, 0x100),                 # SELF IPI bits 31:8
    (0x838, 1 << 32),               # initial count is 32-bit
])
def test_x2apic_reserved_bits_gp(msr, value):
    h = x2apic_harness()
    assert h.wrmsr(msr, value) == GP


@pytest.mark.parametrize("msr, value", [
    (0x834, 0x1000 | 0x10050),      # LVTPC delivery status
    (0x835, 0x5700),                # LINT0 ExtINT with delivery status and remote IRR (Linux at shutdown)
    (0x836, 0x4400),                # LINT1 NMI with remote IRR
    (0x832, 0x1000 | 0x10040),      # timer delivery status
])
def test_x2apic_read_only_lvt_bits_are_ignored_not_reserved(msr, value):
    h = x2apic_harness()
    assert h.wrmsr(msr, value) is None
    assert h.rdmsr(msr) == value & ~0x5000


def test_x2apic_tsc_deadline_mode_is_reserved_without_cpuid():
    h = x2apic_harness(features=tuple(f for f in DEFAULT_FEATURES if f != "tsc_deadline"))
    assert h.wrmsr(0x832, 0x40040) == GP
    assert h.wrmsr(0x832, 0x20040) is None


def test_x2apic_eoi_and_esr_accept_only_zero():
    h = x2apic_harness()
    assert h.wrmsr(0x80B, 1) == GP
    assert h.wrmsr(0x80B, 0) is None
    assert h.wrmsr(0x828, 1) == GP
    assert h.wrmsr(0x828, 0) is None


def test_x2apic_icr_is_64_bit():
    h = x2apic_harness()
    value = (0x12345678 << 32) | 0x000C4000 | 0x0F30  # all-excluding-self: not delivered to us
    assert h.wrmsr(0x830, value) is None
    assert h.rdmsr(0x830) == value
    assert h.lapic.pending_interrupt() is None


def test_x2apic_register_values_shared_with_xapic_view():
    h = Harness()
    h.write(0x80, 0x30)
    h.write(0x340, 0x10045)
    h.enter_x2apic()
    assert h.rdmsr(0x808) == 0x30
    assert h.rdmsr(0x834) == 0x10045
    assert h.rdmsr(0x80F) == SPIV_ENABLED


# -- ESR ---------------------------------------------------------------------------------------
def test_esr_write_before_read():
    h = Harness()
    h.write(0x300, 0x40005)  # self-IPI with illegal vector 5
    assert h.read(0x280) == 0  # not visible until ESR is written
    h.write(0x280, 0)
    assert h.read(0x280) == 0x20  # send illegal vector
    h.write(0x280, 0)
    assert h.read(0x280) == 0


def test_esr_accumulates_errors_between_writes():
    h = Harness()
    h.write(0x350, 0x07)  # LINT0 fixed, illegal vector
    h.lapic.deliver_local(Lvt.LINT0)
    h.write(0x300, 0x40003)
    h.write(0x280, 0xFFFFFFFF)  # the value written does not matter in xAPIC mode
    assert h.read(0x280) == 0x60


def test_illegal_local_vector_sets_receive_illegal_and_is_not_delivered():
    h = Harness()
    h.write(0x330, 0x0F)
    assert h.lapic.deliver_local(Lvt.THERMAL) is False
    assert h.lapic.pending_interrupt() is None
    h.write(0x280, 0)
    assert h.read(0x280) == 0x40


def test_x2apic_self_ipi_illegal_vector_sets_send_illegal():
    h = x2apic_harness()
    assert h.wrmsr(0x83F, 0x0E) is None
    assert h.wrmsr(0x828, 0) is None
    assert h.rdmsr(0x828) == 0x20
    assert h.lapic.pending_interrupt() is None


def test_error_raises_lvt_error_interrupt():
    h = Harness()
    h.write(0x370, 0xE3)
    h.write(0x300, 0x40001)
    assert h.lapic.pending_interrupt() == 0xE3


def test_illegal_error_vector_does_not_recurse():
    h = Harness()
    h.write(0x370, 0x02)
    h.write(0x300, 0x40001)
    h.write(0x280, 0)
    assert h.read(0x280) == 0x60
    assert h.lapic.pending_interrupt() is None


def test_x2apic_lowest_priority_ipi_sets_redirectable_error():
    h = x2apic_harness()
    h.wrmsr(0x830, 0x40140)
    assert h.lapic.pending_interrupt() is None
    h.wrmsr(0x828, 0)
    assert h.rdmsr(0x828) == 0x10


# -- SPIV / software disable -------------------------------------------------------------------
def test_spiv_reset_value_is_software_disabled():
    h = Harness(enable=False)
    assert h.read(0xF0) == 0xFF
    assert not h.lapic.software_enabled


def test_software_disabled_lvt_masks_cannot_be_cleared():
    h = Harness(enable=False)
    h.write(0x350, 0x30)
    assert h.read(0x350) == 0x10030
    assert h.lapic.deliver_local(Lvt.LINT0) is False
    h.write(0xF0, SPIV_ENABLED)
    assert h.read(0x350) == 0x10030  # re-enabling does not unmask
    h.write(0x350, 0x30)
    assert h.read(0x350) == 0x30


def test_software_disable_sets_every_mask():
    h = Harness()
    for i in range(6):
        h.write(0x320 + 0x10 * i, 0x40 + i)
    h.write(0xF0, 0xFF)
    assert [h.read(0x320 + 0x10 * i) for i in range(6)] == [0x10040 + i for i in range(6)]


def test_software_disabled_apic_drops_fixed_self_ipi_but_takes_nmi():
    h = Harness(enable=False)
    h.write(0x300, 0x40040)
    assert h.lapic.pending_interrupt() is None
    h.write(0x300, 0x40400)
    assert h.lapic.take_nmi() is True


def test_software_disable_keeps_pending_irr():
    h = Harness()
    h.write(0x300, 0x40040)
    h.write(0xF0, 0xFF)
    assert h.lapic.pending_interrupt() == 0x40


def test_x2apic_software_disabled_mask_write_is_not_gp():
    h = x2apic_harness()
    h.wrmsr(0x80F, 0xFF)
    assert h.wrmsr(0x834, 0x40) is None
    assert h.rdmsr(0x834) == 0x10040


# -- state -------------------------------------------------------------------------------------
def busy_harness() -> Harness:
    h = Harness(apic_id=3)
    h.clock.set(1000)
    h.write(0x80, 0x20)
    h.write(0xD0, 0x04000000)
    h.write(0x310, 0x03000000)
    h.write(0x300, 0x4061)                # fixed vector 0x61 to physical ID 3 (us)
    h.write(0x300, 0x40072)
    h.lapic.accept_interrupt(0x72)
    h.write(0x350, 0x8038)                # LINT0 level-triggered
    h.lapic.deliver_local(Lvt.LINT0)
    h.write(0x360, 0x400)                 # LINT1 NMI
    h.lapic.deliver_local(Lvt.LINT1)
    h.write(0x300, 0x40003)               # error latched in the accumulator
    h.write(0x3E0, 0x3)
    h.write(0x320, 0x20050)
    h.write(0x380, 100)
    return h


def test_state_round_trip_is_exact():
    h = busy_harness()
    state = h.lapic.get_state()
    assert state["version"] == 1
    fresh = Harness(apic_id=3, enable=False)
    fresh.clock.set(1000)
    fresh.lapic.set_state(state)
    assert fresh.lapic.get_state() == state
    for offset in list(range(0x20, 0x400, 0x10)):
        assert fresh.read(offset) == h.read(offset), hex(offset)
    assert fresh.lapic.next_deadline() == h.lapic.next_deadline() == 1000 + 100 * 16
    assert fresh.lapic.take_nmi() is True


def test_state_round_trip_in_x2apic_and_tsc_deadline_mode():
    h = x2apic_harness()
    h.wrmsr(0x832, 0x40040)
    h.wrmsr(0x6E0, 5000)
    fresh = Harness(enable=False)
    fresh.lapic.set_state(h.lapic.get_state())
    assert fresh.lapic.mode == ApicMode.X2APIC
    assert fresh.rdmsr(0x6E0) == 5000
    assert fresh.lapic.get_state() == h.lapic.get_state()


def test_set_state_remaps_page():
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, 0xFED00000 | APIC_BASE_EN)
    fresh = Harness()
    fresh.lapic.set_state(h.lapic.get_state())
    assert fresh.base_changes == [(DEFAULT_APIC_BASE, 0xFED00000)]
    assert fresh.mmio.read(0xFED00030, 4) == 0x50014


@pytest.mark.parametrize("change", [
    {"version": 2}, {"version": None}, {"apic_id": 9}, {"bogus": 1}, {"lvt": [0] * 5},
])
def test_set_state_rejects_bad_states(change):
    h = Harness()
    state = {**h.lapic.get_state(), **change}
    before = h.lapic.get_state()
    with pytest.raises(LapicStateError):
        h.lapic.set_state(state)
    assert h.lapic.get_state() == before


def test_set_state_rejects_missing_field():
    h = Harness()
    state = h.lapic.get_state()
    del state["tpr"]
    with pytest.raises(LapicStateError, match="tpr"):
        h.lapic.set_state(state)


def test_unattached_lapic_works_without_buses():
    h = Harness()
    lapic = Lapic(h.clock, h.cpuid)
    lapic.set_cr8(3)
    assert lapic.get_cr8() == 3
    assert lapic.pending_interrupt() is None
