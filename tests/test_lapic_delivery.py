# SPDX-License-Identifier: GPL-2.0-or-later
"""LAPIC interrupt delivery: priorities (TPR/PPR/CR8), IRR -> ISR -> EOI, NMIs, IPIs to self, local LVT delivery."""

from __future__ import annotations

import pytest

from devices.lapic import Lvt
from tests.lapic_harness import Harness, bits_of

ISR, TMR, IRR = 0x100, 0x180, 0x200


def self_ipi(h: Harness, vector: int, mode: int = 0) -> None:
    h.write(0x300, 0x40000 | (mode << 8) | vector)


# -- priorities --------------------------------------------------------------------------------
def test_ppr_is_tpr_when_isr_empty():
    h = Harness()
    h.write(0x80, 0x35)
    assert h.read(0xA0) == 0x35


def test_ppr_is_isr_class_when_above_tpr():
    h = Harness()
    h.write(0x80, 0x25)
    self_ipi(h, 0x47)
    assert h.lapic.accept_interrupt(0x47) == 0x47
    assert h.read(0xA0) == 0x40


def test_ppr_is_tpr_when_tpr_class_equals_isr_class():
    h = Harness()
    self_ipi(h, 0x47)
    h.lapic.accept_interrupt(0x47)
    h.write(0x80, 0x4A)
    assert h.read(0xA0) == 0x4A


def test_tpr_masks_same_and_lower_classes():
    h = Harness()
    h.write(0x80, 0x50)
    self_ipi(h, 0x5F)
    assert h.lapic.pending_interrupt() is None
    assert not h.lapic.has_wakeup()
    self_ipi(h, 0x60)
    assert h.lapic.pending_interrupt() == 0x60
    assert h.lapic.has_wakeup()
    h.write(0x80, 0x4F)
    assert h.lapic.pending_interrupt() == 0x60


def test_lowering_tpr_releases_held_interrupt():
    h = Harness()
    h.write(0x80, 0xF0)
    self_ipi(h, 0x80)
    assert h.lapic.pending_interrupt() is None
    h.write(0x80, 0)
    assert h.lapic.pending_interrupt() == 0x80


def test_cr8_is_tpr_high_nibble():
    h = Harness()
    h.lapic.set_cr8(0x7)
    assert h.read(0x80) == 0x70
    h.write(0x80, 0x9C)
    assert h.lapic.get_cr8() == 0x9
    h.lapic.set_cr8(0x13)
    assert h.read(0x80) == 0x30


def test_apr_follows_highest_of_tpr_isr_irr():
    h = Harness()
    h.write(0x80, 0x31)
    assert h.read(0x90) == 0x31
    self_ipi(h, 0x55)
    assert h.read(0x90) == 0x50
    h.lapic.accept_interrupt(0x55)
    self_ipi(h, 0x22)
    assert h.read(0x90) == 0x50


# -- IRR -> ISR -> EOI -------------------------------------------------------------------------
def test_accept_moves_irr_to_isr():
    h = Harness()
    self_ipi(h, 0x41)
    assert bits_of(h, IRR) == 1 << 0x41
    assert h.lapic.accept_interrupt(0x41) == 0x41
    assert bits_of(h, IRR) == 0
    assert bits_of(h, ISR) == 1 << 0x41
    assert h.read(ISR + 0x20) == 1 << 1  # vector 0x41 is bit 1 of ISR register 2


def test_eoi_with_nested_isr_clears_highest_first():
    h = Harness()
    self_ipi(h, 0x40)
    assert h.lapic.accept_interrupt(0x40) == 0x40
    self_ipi(h, 0x90)  # higher class nests
    assert h.lapic.pending_interrupt() == 0x90
    h.lapic.accept_interrupt(0x90)
    self_ipi(h, 0x45)  # same class as the outer handler: held
    assert h.lapic.pending_interrupt() is None
    assert bits_of(h, ISR) == (1 << 0x40) | (1 << 0x90)
    h.write(0xB0, 0)
    assert bits_of(h, ISR) == 1 << 0x40
    assert h.lapic.pending_interrupt() is None
    h.write(0xB0, 0)
    assert bits_of(h, ISR) == 0
    assert h.lapic.pending_interrupt() == 0x45


def test_eoi_with_empty_isr_is_harmless():
    h = Harness()
    self_ipi(h, 0x40)
    h.write(0xB0, 0)
    assert bits_of(h, IRR) == 1 << 0x40


def test_x2apic_eoi_clears_isr():
    h = Harness()
    h.enter_x2apic()
    h.wrmsr(0x83F, 0x66)
    h.lapic.accept_interrupt(0x66)
    assert h.rdmsr(0x813) == 1 << 6
    h.wrmsr(0x80B, 0)
    assert h.rdmsr(0x813) == 0


def test_same_vector_coalesces_in_irr():
    h = Harness()
    self_ipi(h, 0x40)
    self_ipi(h, 0x40)
    h.lapic.accept_interrupt(0x40)
    assert h.lapic.pending_interrupt() is None


def test_interrupt_for_applies_if_and_shadow():
    h = Harness()
    self_ipi(h, 0x40)
    assert h.lapic.interrupt_for(h.vcpu) == 0x40
    h.vcpu.rflags_if = False
    assert h.lapic.interrupt_for(h.vcpu) is None
    assert h.lapic.has_wakeup()  # pending all the same; IF is the vCPU's decision for HLT
    h.vcpu.rflags_if = True
    h.vcpu.interrupt_shadow = True
    assert h.lapic.interrupt_for() is None
    h.vcpu.interrupt_shadow = False
    assert h.lapic.interrupt_for() == 0x40


def test_accept_of_vector_masked_since_offered_returns_spurious_vector():
    h = Harness()
    h.write(0xF0, 0x1EF)
    self_ipi(h, 0x40)
    offered = h.lapic.interrupt_for(h.vcpu)
    h.write(0x80, 0x80)  # TPR raised between the offer and the acknowledge
    assert h.lapic.accept_interrupt(offered) == 0xEF
    assert bits_of(h, ISR) == 0
    assert bits_of(h, IRR) == 1 << 0x40


def test_accept_of_vector_not_in_irr_returns_spurious_vector():
    h = Harness()
    assert h.lapic.accept_interrupt(0x40) == 0xFF
    assert bits_of(h, ISR) == 0


def test_tmr_follows_trigger_mode_of_lint():
    h = Harness()
    h.write(0x350, 0x8041)  # level
    h.lapic.deliver_local(Lvt.LINT0)
    assert bits_of(h, TMR) == 1 << 0x41
    h.lapic.accept_interrupt(0x41)
    h.write(0xB0, 0)
    h.write(0x350, 0x41)  # edge now
    h.lapic.deliver_local(Lvt.LINT0)
    assert bits_of(h, TMR) == 0


def test_wakeup_called_for_newly_pending_interrupt_only():
    h = Harness()
    calls = []
    h.lapic.on_wakeup = lambda: calls.append(1)
    self_ipi(h, 0x40)
    self_ipi(h, 0x40)
    assert len(calls) == 1
    self_ipi(h, 0x41)
    assert len(calls) == 2


def test_default_wakeup_kicks_the_vcpu():
    h = Harness()
    h.vcpu.halted = True
    self_ipi(h, 0x40)
    assert h.vcpu.kicks == 1 and not h.vcpu.halted


# -- NMIs --------------------------------------------------------------------------------------
def test_lvt_nmi_latches_one_nmi():
    h = Harness()
    h.write(0x360, 0x400)
    h.vcpu.rflags_if = False
    assert h.lapic.deliver_local(Lvt.LINT1) is True
    assert h.lapic.deliver_local(Lvt.LINT1) is True
    assert h.lapic.has_wakeup()
    assert h.vcpu.kicks == 1
    assert h.lapic.take_nmi() is True
    assert h.lapic.take_nmi() is False
    assert not h.lapic.has_wakeup()


def test_icr_nmi_to_self():
    h = Harness()
    h.write(0x300, 0x40400)
    assert h.lapic.take_nmi() is True
    assert h.lapic.pending_interrupt() is None


# -- IPI destinations (one vCPU) ---------------------------------------------------------------
@pytest.mark.parametrize("icr_high, icr_low, reaches", [
    (0, 0x40050, True),              # shorthand self
    (0, 0x80050, True),              # all including self
    (0, 0xC0050, False),             # all excluding self
    (0x02000000, 0x00050, True),     # physical, our ID 2
    (0x03000000, 0x00050, False),    # physical, someone else
    (0xFF000000, 0x00050, True),     # physical broadcast
    (0x04000000, 0x00850, True),     # logical flat, LDR bit 2 set
    (0x08000000, 0x00850, False),    # logical flat, other bit
    (0x02000000, 0x00150, True),     # lowest priority to ourselves acts as fixed in xAPIC
    (0x02000000, 0x00250, False),    # SMI: not modelled
    (0x02000000, 0x00550, False),    # INIT: latched for the machine, no vector (test_lapic_ipi.py)
    (0x02000000, 0x00650, False),    # SIPI: latched for the machine, no vector (test_lapic_ipi.py)
])
def test_xapic_ipi_destinations(icr_high, icr_low, reaches):
    h = Harness(apic_id=2)
    h.write(0xD0, 0x04000000)
    h.write(0x310, icr_high)
    h.write(0x300, icr_low)
    assert h.lapic.pending_interrupt() == (0x50 if reaches else None)


@pytest.mark.parametrize("destination, reaches", [
    (0x11, True),     # cluster 1, member bit 0
    (0x13, True),     # cluster 1, member bits 0 and 1
    (0x12, False),    # cluster 1, another member
    (0x21, False),    # cluster 2
])
def test_xapic_cluster_logical_model(destination, reaches):
    h = Harness()
    h.write(0xD0, 0x11000000)
    h.write(0xE0, 0x0FFFFFFF)
    h.write(0x310, destination << 24)
    h.write(0x300, 0x00850)
    assert h.lapic.pending_interrupt() == (0x50 if reaches else None)


@pytest.mark.parametrize("icr, reaches", [
    ((0x23 << 32) | 0x50, True),                  # physical, our x2APIC ID
    ((0x24 << 32) | 0x50, False),
    ((0xFFFFFFFF << 32) | 0x50, True),            # broadcast
    ((0x20008 << 32) | 0x850, True),              # logical: cluster 2, bit 3
    ((0x2000C << 32) | 0x850, True),
    ((0x10008 << 32) | 0x850, False),             # other cluster
    ((0x20004 << 32) | 0x850, False),             # other member
    (0x40050, True),                              # shorthand self
])
def test_x2apic_ipi_destinations(icr, reaches):
    h = Harness(apic_id=0x23)
    h.enter_x2apic()
    assert h.wrmsr(0x830, icr) is None
    assert h.lapic.pending_interrupt() == (0x50 if reaches else None)


def test_x2apic_self_ipi_register():
    h = Harness()
    h.enter_x2apic()
    assert h.wrmsr(0x83F, 0x99) is None
    assert h.lapic.pending_interrupt() == 0x99
    assert h.rdmsr(0x824) == 1 << 25


# -- local delivery (deliver_local) ------------------------------------------------------------
def test_masked_lvt_delivers_nothing():
    h = Harness()
    h.write(0x340, 0x10050)
    assert h.lapic.deliver_local(Lvt.PMC) is False
    assert h.lapic.pending_interrupt() is None


@pytest.mark.parametrize("vendor, masked_after", [("intel", True), ("amd", False)])
def test_pmi_sets_lvtpc_mask_on_intel_only(vendor, masked_after):
    h = Harness(vendor=vendor)
    h.write(0x340, 0x50)
    assert h.lapic.deliver_local(Lvt.PMC) is True
    assert h.lapic.pending_interrupt() == 0x50
    assert h.read(0x340) == (0x10050 if masked_after else 0x50)


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_pmi_as_nmi(vendor):
    h = Harness(vendor=vendor)
    h.write(0x340, 0x400)
    assert h.lapic.deliver_local(Lvt.PMC) is True
    assert h.lapic.take_nmi() is True
    assert h.read(0x340) >> 16 & 1 == (vendor == "intel")


def test_pmi_with_if_clear_stays_pending_until_if_set():
    h = Harness()
    h.write(0x340, 0x50)
    h.vcpu.rflags_if = False
    h.lapic.deliver_local(Lvt.PMC)
    assert h.lapic.interrupt_for(h.vcpu) is None
    h.vcpu.rflags_if = True
    assert h.lapic.interrupt_for(h.vcpu) == 0x50
    assert h.lapic.accept_interrupt(0x50) == 0x50


@pytest.mark.parametrize("mode", [2, 5, 7])  # SMI, INIT, ExtINT
def test_lvt_modes_without_a_model_deliver_nothing(mode):
    h = Harness()
    h.write(0x350, (mode << 8) | 0x50)
    assert h.read(0x350) == (mode << 8) | 0x50
    assert h.lapic.deliver_local(Lvt.LINT0) is False
    assert h.lapic.pending_interrupt() is None and h.lapic.take_nmi() is False


@pytest.mark.parametrize("lvt", list(Lvt))
def test_every_lvt_delivers_its_fixed_vector(lvt):
    h = Harness()
    h.write(0x320 + 0x10 * lvt, 0x60 + lvt)
    assert h.lapic.deliver_local(lvt) is True
    assert h.lapic.pending_interrupt() == 0x60 + lvt
