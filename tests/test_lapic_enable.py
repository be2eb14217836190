# SPDX-License-Identifier: GPL-2.0-or-later
"""LAPIC hardware enable state: IA32_APIC_BASE.EN, CPUID.1:EDX.APIC, the undecoded page, the reset."""

from __future__ import annotations

import pytest

from devices.bus import GP
from devices.lapic import (
    APIC_BASE_BSP,
    APIC_BASE_EN,
    APIC_BASE_EXTD,
    DEFAULT_APIC_BASE,
    MSR_APIC_BASE,
    MSR_TSC_DEADLINE,
    DeliveryMode,
    Lvt,
)
from tests.lapic_harness import SPIV_ENABLED, Harness

XAPIC = DEFAULT_APIC_BASE | APIC_BASE_EN | APIC_BASE_BSP
X2APIC = XAPIC | APIC_BASE_EXTD
DISABLED = DEFAULT_APIC_BASE | APIC_BASE_BSP
#: offset -> power-up value of every readable xAPIC register (ID for APIC ID 3, 6 LVT entries)
POWER_UP = {0x20: 0x03000000, 0x30: 0x00050014, 0x80: 0, 0x90: 0, 0xA0: 0, 0xB0: 0, 0xD0: 0, 0xE0: 0xFFFFFFFF,
            0xF0: 0xFF, **{bank + 0x10 * i: 0 for bank in (0x100, 0x180, 0x200) for i in range(8)},
            0x280: 0, 0x300: 0, 0x310: 0, **{0x320 + 0x10 * i: 0x10000 for i in range(6)},
            0x380: 0, 0x390: 0, 0x3E0: 0}


def busy(h: Harness) -> None:
    """Give every kind of register a non-power-up value."""
    h.write(0x20, 0x09000000)
    h.write(0x80, 0x30)
    h.write(0xD0, 0x01000000)
    h.write(0xE0, 0x0FFFFFFF)
    h.write(0x350, 0x8038)
    h.lapic.deliver_local(Lvt.LINT0)            # IRR 0x38, TMR 0x38
    h.write(0x300, 0x40041)
    h.lapic.accept_interrupt(h.lapic.pending_interrupt())   # ISR 0x41
    h.write(0x300, 0x40003)                     # illegal vector: an ESR bit
    h.write(0x280, 0)
    h.write(0x3E0, 0xB)
    h.write(0x320, 0x20050)
    h.write(0x380, 5000)
    h.write(0x360, 0x400)
    h.lapic.deliver_local(Lvt.LINT1)            # NMI latched


def registers(h: Harness) -> dict[int, int]:
    return {offset: h.read(offset) for offset in POWER_UP}


# -- CPUID.1:EDX.APIC --------------------------------------------------------------------------
def test_cpuid_apic_bit_follows_en():
    h = Harness()
    assert h.cpuid.has("apic")
    assert h.wrmsr(MSR_APIC_BASE, DISABLED) is None
    assert not h.cpuid.has("apic") and not h.cpuid.query(1)[3] >> 9 & 1
    assert h.wrmsr(MSR_APIC_BASE, XAPIC) is None
    assert h.cpuid.has("apic")


def test_cpuid_apic_bit_from_x2apic_and_host_writes():
    h = Harness()
    h.enter_x2apic()
    assert h.cpuid.has("apic")
    assert h.wrmsr(MSR_APIC_BASE, DISABLED) is None
    assert not h.cpuid.has("apic")
    assert h.wrmsr(MSR_APIC_BASE, X2APIC, host=True) is None
    assert h.cpuid.has("apic")


def test_writes_that_keep_en_leave_cpuid_and_registers_alone():
    h = Harness(apic_id=3)
    busy(h)
    before, generation = registers(h), h.cpuid.generation
    assert h.wrmsr(MSR_APIC_BASE, XAPIC & ~APIC_BASE_BSP) is None
    h.enter_x2apic()
    assert h.cpuid.generation == generation
    assert h.rdmsr(0x808) == 0x30 and h.rdmsr(0x80A) == before[0xA0] == 0x40
    assert h.rdmsr(0x828) == before[0x280] != 0


def test_refused_disable_changes_nothing():
    h = Harness()
    assert h.wrmsr(MSR_APIC_BASE, DISABLED | APIC_BASE_EXTD) == GP
    assert h.cpuid.has("apic") and h.read(0xF0) == SPIV_ENABLED


# -- the page and the MSRs while disabled ------------------------------------------------------
@pytest.mark.parametrize("offset, size", [(0x30, 4), (0x80, 4), (0x0, 1), (0x31, 2), (0xFF8, 8), (0x400, 4)])
def test_disabled_page_reads_all_ones(offset, size):
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.read(offset, size) == (1 << (8 * size)) - 1


def test_disabled_page_ignores_writes():
    h = Harness(apic_id=3)
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    for offset in POWER_UP:
        h.write(offset, 0xFFFFFFFF)
    h.write(0x300, 0x40040)                     # a self-IPI would set IRR 0x40
    assert h.lapic.pending_interrupt() is None
    h.wrmsr(MSR_APIC_BASE, XAPIC)
    assert registers(h) == POWER_UP


@pytest.mark.parametrize("start", [XAPIC, X2APIC])
def test_x2apic_msrs_gp_while_disabled(start):
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, start)
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.rdmsr(0x802) == GP and h.rdmsr(0x808) == GP
    assert h.wrmsr(0x808, 0) == GP and h.wrmsr(0x83F, 0x40) == GP
    assert h.lapic.x2apic_read_py(0x802, 0) == (2, 0)           # C path: not handled, the bus says #GP
    assert h.lapic.x2apic_write_py(0x83F, 0x40, 0) == 2


def test_tsc_deadline_msr_inert_while_disabled():
    h = Harness()
    h.write(0x320, 0x40040)                     # TSC-deadline mode, vector 0x40
    h.wrmsr(MSR_TSC_DEADLINE, 5000)
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.rdmsr(MSR_TSC_DEADLINE) == 0 and h.lapic.next_deadline() is None
    assert h.wrmsr(MSR_TSC_DEADLINE, 100) is None
    assert h.rdmsr(MSR_TSC_DEADLINE) == 0 and h.lapic.next_deadline() is None


def test_nothing_is_delivered_while_disabled():
    h = Harness()
    h.write(0x340, 0x50)
    h.write(0x320, 0x40)
    h.write(0x380, 10)                          # timer armed
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    h.clock.set(1_000_000)
    h.lapic.tick(h.clock.now())
    assert not h.lapic.deliver_local(Lvt.PMC)
    assert not h.lapic.receive(DeliveryMode.FIXED, 0x60, False)
    assert not h.lapic.receive(DeliveryMode.NMI, 0, False)
    assert not h.lapic.has_wakeup() and h.lapic.pending_interrupt() is None and not h.lapic.nmi_pending


# -- the reset on EN changes ---------------------------------------------------------------------
@pytest.mark.parametrize("start", [XAPIC, X2APIC])
def test_disable_and_enable_give_power_up_registers(start):
    h = Harness(apic_id=3)
    busy(h)
    h.wrmsr(MSR_APIC_BASE, start)
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.lapic.pending_interrupt() is None and not h.lapic.take_nmi() and h.lapic.next_deadline() is None
    h.wrmsr(MSR_APIC_BASE, XAPIC)
    assert registers(h) == POWER_UP             # the xAPIC ID written by busy() is gone too
    assert h.lapic.get_state()["isr"] == 0 and h.lapic.get_state()["esr_accumulated"] == 0


def test_cr8_works_while_disabled_and_enable_resets_the_tpr():
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    h.lapic.set_cr8(0xA)
    assert h.lapic.get_cr8() == 0xA
    assert h.read(0x80) == 0xFFFFFFFF           # but the page does not show it
    h.wrmsr(MSR_APIC_BASE, XAPIC)
    assert h.lapic.get_cr8() == 0 and h.read(0x80) == 0


def test_relocating_while_disabled_moves_the_undecoded_page():
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    assert h.wrmsr(MSR_APIC_BASE, 0xFED00000 | APIC_BASE_BSP) is None
    assert h.mmio.read(0xFED00030, 4) == 0xFFFFFFFF
    h.wrmsr(MSR_APIC_BASE, 0xFED00000 | APIC_BASE_BSP | APIC_BASE_EN)
    assert h.mmio.read(0xFED00030, 4) == 0x50014
    assert h.base_changes == [(DEFAULT_APIC_BASE, 0xFED00000)]


def test_enabled_apic_works_again():
    h = Harness()
    h.wrmsr(MSR_APIC_BASE, DISABLED)
    h.wrmsr(MSR_APIC_BASE, XAPIC)
    h.write(0xF0, SPIV_ENABLED)
    h.write(0x300, 0x40045)
    assert h.lapic.pending_interrupt() == 0x45
