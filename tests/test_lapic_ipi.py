# SPDX-License-Identifier: GPL-2.0-or-later
"""The APIC bus (devices.lapic.ApicBus): IPIs between LAPICs, I/O APIC messages, INIT and SIPI.

Device level, with a fake clock and fake vCPUs: each CPU is a :class:`tests.lapic_harness.Harness`
(its own xAPIC page and MSR bus), and the LAPICs share one ApicBus.  IPIs go through the xAPIC page,
the MSR bus (the Python path) or ``x2apic_write`` (the C path, through ``x2apic_write_py``).
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.lapic import (
    APIC_BASE_EN,
    APIC_BASE_EXTD,
    ESR_RECEIVE_ILLEGAL_VECTOR,
    ESR_REDIRECTABLE_IPI,
    ESR_SEND_ILLEGAL_VECTOR,
    MSR_APIC_BASE,
    ApicBus,
    DeliveryMode,
)
from tests.lapic_harness import Harness, bits_of

# xAPIC page offsets and x2APIC MSRs
ID, TPR, EOI, LDR, DFR, SPIV, ESR, ICR_LOW, ICR_HIGH = 0x20, 0x80, 0xB0, 0xD0, 0xE0, 0xF0, 0x280, 0x300, 0x310
LVT_TIMER, TIMER_INITIAL = 0x320, 0x380
X2_TPR, X2_ESR, X2_ICR = 0x808, 0x828, 0x830

# ICR low-word fields
SELF, ALL, OTHERS = 1 << 18, 2 << 18, 3 << 18
LOGICAL = 1 << 11
ASSERT, LEVEL_TRIGGER = 1 << 14, 1 << 15
FIXED, LOWEST, SMI, NMI, INIT, SIPI = (m << 8 for m in (0, 1, 2, 4, 5, 6))

SPIV_ENABLED = 0x1FF


def smp(n: int = 4, x2apic: bool = False) -> tuple[ApicBus, list[Harness]]:
    """``n`` software-enabled LAPICs, APIC ids 0..n-1 (0 is the BSP), on one bus."""
    bus = ApicBus()
    cpus = [Harness(apic_id=i, bsp=i == 0) for i in range(n)]
    for h in cpus:
        bus.attach(h.lapic)
        if x2apic:
            h.enter_x2apic()
    return bus, cpus


def xapic_ipi(sender: Harness, low: int, destination: int = 0) -> None:
    sender.write(ICR_HIGH, destination << 24)
    sender.write(ICR_LOW, low)


def x2apic_ipi(sender: Harness, low: int, destination: int = 0, path: str = "msr") -> None:
    value = destination << 32 | low
    if path == "msr":
        assert sender.wrmsr(X2_ICR, value) is None
    else:
        assert sender.lapic.x2apic_write_py(X2_ICR, value, 0) == 0


def pending(cpus: list[Harness]) -> list[int | None]:
    return [h.lapic.pending_interrupt() for h in cpus]


def nmis(cpus: list[Harness]) -> list[bool]:
    return [h.lapic.nmi_pending for h in cpus]


def esr(h: Harness) -> int:
    """The errors collected since the last ESR write (write, then read, as the SDM asks)."""
    if h.lapic.mode == 3:
        h.wrmsr(X2_ESR, 0)
        return h.rdmsr(X2_ESR)
    h.write(ESR, 0)
    return h.read(ESR)


def hardware_disable(h: Harness) -> None:
    assert h.wrmsr(MSR_APIC_BASE, h.lapic.base) is None
    assert not h.lapic.hardware_enabled


# -- joining the bus -----------------------------------------------------------------------------
def test_lapics_join_in_apic_id_order():
    bus, cpus = smp(3)
    assert bus.lapics == tuple(h.lapic for h in cpus)
    assert all(h.lapic.bus is bus for h in cpus)
    assert bus.remote_events == 0


def test_attach_refuses_an_id_out_of_order_or_a_second_bus():
    bus = ApicBus()
    with pytest.raises(ValueError, match="next APIC id is 0"):
        bus.attach(Harness(apic_id=1).lapic)
    lapic = Harness(apic_id=0).lapic
    bus.attach(lapic)
    with pytest.raises(ValueError, match="already on an APIC bus"):
        ApicBus().attach(lapic)
    assert bus.lapics == (lapic,)


def test_a_standalone_lapic_has_no_bus_and_reaches_only_itself():
    h = Harness(apic_id=0)
    assert h.lapic.bus is None
    xapic_ipi(h, ALL | 0x41)
    xapic_ipi(h, OTHERS | 0x42)
    xapic_ipi(h, 0x43, destination=1)
    assert bits_of(h, 0x200) == 1 << 0x41
    assert h.vcpu.kicks == 1


MESSAGES = [
    (SELF | 0x40, 0), (ALL | 0x41, 0), (OTHERS | 0x42, 0), (0x43, 0), (0x44, 1), (0x45, 0xFF),
    (LOGICAL | 0x46, 0x01), (LOGICAL | 0x47, 0x02), (LOWEST | 0x48, 0), (NMI, 0), (SMI, 0),
    (0x05, 0), (INIT | ASSERT | LEVEL_TRIGGER, 0), (SIPI | 0x9A, 0),
]


@pytest.mark.parametrize("low, destination", MESSAGES)
def test_a_bus_of_one_acts_as_a_standalone_lapic(low, destination):
    alone = Harness(apic_id=0)
    bus, (member,) = smp(1)
    for h in (alone, member):
        h.write(LDR, 0x01000000)
        h.write(TPR, 0x20)
        xapic_ipi(h, low, destination)
    state_alone, state_member = alone.lapic.get_state(), member.lapic.get_state()
    assert state_alone == state_member
    assert (alone.lapic.init_pending, alone.lapic.sipi_vector) == (member.lapic.init_pending, member.lapic.sipi_vector)
    assert alone.vcpu.kicks == member.vcpu.kicks
    assert bus.remote_events == 0


# -- who is selected: shorthands and destinations -----------------------------------------------
@pytest.mark.parametrize("shorthand, reached", [
    (SELF, [1]),
    (ALL, [0, 1, 2, 3]),
    (OTHERS, [0, 2, 3]),
])
def test_xapic_shorthands(shorthand, reached):
    bus, cpus = smp()
    xapic_ipi(cpus[1], shorthand | 0x50, destination=3)   # the destination field is ignored
    assert pending(cpus) == [0x50 if i in reached else None for i in range(4)]


@pytest.mark.parametrize("path", ["msr", "c"])
@pytest.mark.parametrize("shorthand, reached", [
    (SELF, [2]),
    (ALL, [0, 1, 2]),
    (OTHERS, [0, 1]),
])
def test_x2apic_shorthands(path, shorthand, reached):
    bus, cpus = smp(3, x2apic=True)
    x2apic_ipi(cpus[2], shorthand | 0x51, destination=0, path=path)
    assert pending(cpus) == [0x51 if i in reached else None for i in range(3)]


@pytest.mark.parametrize("destination, reached", [
    (2, [2]),
    (0, [0]),
    (7, []),
    (0xFF, [0, 1, 2, 3]),
])
def test_xapic_physical_destinations(destination, reached):
    bus, cpus = smp()
    xapic_ipi(cpus[1], 0x60, destination)
    assert pending(cpus) == [0x60 if i in reached else None for i in range(4)]


def test_xapic_physical_destination_is_the_id_register_software_wrote():
    bus, cpus = smp()
    cpus[2].write(ID, 0x09000000)
    xapic_ipi(cpus[0], 0x61, destination=9)
    xapic_ipi(cpus[0], 0x62, destination=2)
    assert pending(cpus) == [None, None, 0x61, None]
    assert bits_of(cpus[2], 0x200) == 1 << 0x61


@pytest.mark.parametrize("destination, reached", [
    (0b0101, [0, 2]),
    (0b1000, [3]),
    (0b0000, []),
    (0xF0, []),
    (0xFF, [0, 1, 2, 3]),
])
def test_xapic_logical_flat_model(destination, reached):
    bus, cpus = smp()
    for i, h in enumerate(cpus):
        h.write(LDR, (1 << i) << 24)
    xapic_ipi(cpus[0], LOGICAL | 0x63, destination)
    assert pending(cpus) == [0x63 if i in reached else None for i in range(4)]


@pytest.mark.parametrize("destination, reached", [
    (0x13, [0, 1]),     # cluster 1, members 0 and 1
    (0x12, [1]),
    (0x21, [2]),
    (0x2F, [2, 3]),
    (0x31, []),         # no cluster 3
    (0x10, []),         # no member bit
    (0xFF, [0, 1, 2, 3]),
])
def test_xapic_logical_cluster_model(destination, reached):
    bus, cpus = smp()
    for h, ldr in zip(cpus, (0x11, 0x12, 0x21, 0x22), strict=True):
        h.write(DFR, 0x0FFFFFFF)
        h.write(LDR, ldr << 24)
    xapic_ipi(cpus[3], LOGICAL | 0x64, destination)
    assert pending(cpus) == [0x64 if i in reached else None for i in range(4)]


def test_each_target_reads_a_logical_destination_with_its_own_dfr():
    bus, cpus = smp(2)
    cpus[0].write(LDR, 0x11000000)                    # flat: bits 0 and 4
    cpus[1].write(DFR, 0x0FFFFFFF)
    cpus[1].write(LDR, 0x11000000)                    # cluster 1, member 0
    xapic_ipi(cpus[0], LOGICAL | 0x65, destination=0x10)
    assert pending(cpus) == [0x65, None]
    xapic_ipi(cpus[0], LOGICAL | 0x66, destination=0x11)
    assert pending(cpus) == [0x66, 0x66]


@pytest.mark.parametrize("path", ["msr", "c"])
@pytest.mark.parametrize("destination, logical, reached", [
    (17, False, [17]),
    (0, False, [0]),
    (18, False, []),
    (0xFF, False, []),                                # an x2APIC ID, not broadcast, in a 32-bit message
    (0xFFFFFFFF, False, list(range(18))),
    ((1 << 16) | 0b11, True, [16, 17]),               # cluster 1 (ids 16-31), members 0 and 1
    ((0 << 16) | 0x8001, True, [0, 15]),              # cluster 0, members 0 and 15
    ((1 << 16) | 0b100, True, []),                    # cluster 1 has no id 18 here
    ((2 << 16) | 0xFFFF, True, []),
    (0xFFFFFFFF, True, list(range(18))),
])
def test_x2apic_destinations(path, destination, logical, reached):
    bus, cpus = smp(18, x2apic=True)
    x2apic_ipi(cpus[5], (LOGICAL if logical else 0) | 0x67, destination, path)
    assert pending(cpus) == [0x67 if i in reached else None for i in range(18)]


def test_icr_delivery_status_reads_idle_after_an_ipi_to_another_cpu():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], 0x68, destination=1)
    assert cpus[1].lapic.pending_interrupt() == 0x68
    assert cpus[0].read(ICR_LOW) == 0x68
    assert cpus[0].read(ICR_HIGH) == 0x01000000


# -- delivery modes -------------------------------------------------------------------------------
def test_fixed_ipis_are_edge_triggered_even_with_the_level_trigger_bit():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], LEVEL_TRIGGER | ASSERT | 0x70, destination=1)
    assert cpus[1].lapic.pending_interrupt() == 0x70
    assert bits_of(cpus[1], 0x180) == 0            # TMR clear: no EOI message expected


@pytest.mark.parametrize("tprs, winner", [
    ((0x30, 0x10, 0x10, 0x20), 1),                  # lowest TPR; CPU 1 and 2 tie, the lower id wins
    ((0x30, 0x40, 0x10, 0x20), 2),
    ((0x00, 0x00, 0x00, 0x00), 0),
    ((0x20, 0x20, 0x20, 0x1F), 3),                  # the whole TPR counts, not only its class
])
def test_lowest_priority_goes_to_the_lowest_arbitration_priority(tprs, winner):
    bus, cpus = smp()
    for h, tpr in zip(cpus, tprs, strict=True):
        h.write(TPR, tpr)
    xapic_ipi(cpus[3], LOWEST | 0x71, destination=0xFF)
    assert pending(cpus) == [0x71 if i == winner else None for i in range(4)]


def test_lowest_priority_counts_in_service_and_pending_interrupts():
    bus, cpus = smp(3)
    cpus[0].lapic.receive(DeliveryMode.FIXED, 0x90, False)     # pending in class 9: APR 0x90
    cpus[1].lapic.receive(DeliveryMode.FIXED, 0x80, False)
    assert cpus[1].lapic.accept_interrupt(0x80) == 0x80       # in service in class 8: APR 0x80
    cpus[2].write(TPR, 0x85)
    xapic_ipi(cpus[0], LOWEST | 0x72, destination=0xFF)
    assert bits_of(cpus[1], 0x200) == 1 << 0x72
    assert bits_of(cpus[0], 0x200) == 1 << 0x90 and bits_of(cpus[2], 0x200) == 0


def test_lowest_priority_chooses_among_the_selected_apics_only():
    bus, cpus = smp()
    for i, h in enumerate(cpus):
        h.write(LDR, (1 << i) << 24)
    cpus[0].write(TPR, 0x10)
    cpus[2].write(TPR, 0x30)
    cpus[3].write(TPR, 0x20)
    xapic_ipi(cpus[0], LOGICAL | LOWEST | 0x73, destination=0b1100)
    assert pending(cpus) == [None, None, None, 0x73]


def test_lowest_priority_skips_disabled_apics():
    bus, cpus = smp(3)
    cpus[0].write(SPIV, 0xFF)                          # software-disabled, TPR 0
    hardware_disable(cpus[1])
    cpus[2].write(TPR, 0xE0)
    xapic_ipi(cpus[2], LOWEST | 0x74, destination=0xFF)
    assert [h.lapic.get_state()["irr"] for h in cpus] == [0, 0, 1 << 0x74]   # CPU 1's page reads all-ones


def test_lowest_priority_with_no_enabled_target_reaches_nobody():
    bus, cpus = smp(2)
    cpus[1].write(SPIV, 0xFF)
    xapic_ipi(cpus[0], LOWEST | 0x75, destination=1)
    assert pending(cpus) == [None, None]
    assert bus.remote_events == 0


def test_lowest_priority_all_excluding_self_never_comes_back():
    bus, cpus = smp(2)
    cpus[1].write(TPR, 0xF0)
    xapic_ipi(cpus[0], OTHERS | LOWEST | 0x76)
    assert pending(cpus) == [None, None]               # CPU 1 took it: it waits above TPR 0xF0
    assert bits_of(cpus[1], 0x200) == 1 << 0x76


@pytest.mark.parametrize("path", ["msr", "c"])
def test_x2apic_lowest_priority_ipi_is_a_redirectable_ipi_error(path):
    bus, cpus = smp(2, x2apic=True)
    x2apic_ipi(cpus[0], LOWEST | 0x77, destination=1, path=path)
    assert pending(cpus) == [None, None]
    assert esr(cpus[0]) == ESR_REDIRECTABLE_IPI and esr(cpus[1]) == 0
    assert bus.remote_events == 0


@pytest.mark.parametrize("mode", [FIXED, LOWEST])
def test_an_illegal_vector_is_a_send_error_and_reaches_nobody(mode):
    bus, cpus = smp(3)
    xapic_ipi(cpus[0], OTHERS | mode | 0x0F)
    assert [bits_of(h, 0x200) for h in cpus] == [0, 0, 0]
    assert [esr(h) for h in cpus] == [ESR_SEND_ILLEGAL_VECTOR, 0, 0]
    assert bus.remote_events == 0


@pytest.mark.parametrize("path", ["mmio", "msr", "c"])
def test_nmi_reaches_every_selected_cpu_and_ignores_the_vector(path):
    bus, cpus = smp(3, x2apic=path != "mmio")
    if path == "mmio":
        xapic_ipi(cpus[0], OTHERS | NMI | 0x05)
    else:
        x2apic_ipi(cpus[0], OTHERS | NMI | 0x05, path=path)
    assert nmis(cpus) == [False, True, True]
    assert pending(cpus) == [None, None, None]
    assert [esr(h) for h in cpus] == [0, 0, 0]


def test_smi_delivers_nothing():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], ALL | SMI)
    assert pending(cpus) == [None, None] and nmis(cpus) == [False, False]
    assert not cpus[1].lapic.init_pending and bus.remote_events == 0 and cpus[1].vcpu.kicks == 0


# -- targets: software- and hardware-disabled -----------------------------------------------------
def test_a_software_disabled_target_refuses_fixed_and_takes_nmi_init_sipi():
    bus, cpus = smp(2)
    cpus[1].write(SPIV, 0xFF)
    xapic_ipi(cpus[0], 0x78, destination=1)
    assert bits_of(cpus[1], 0x200) == 0
    xapic_ipi(cpus[0], NMI, destination=1)
    assert cpus[1].lapic.take_nmi() is True
    xapic_ipi(cpus[0], INIT | ASSERT, destination=1)
    xapic_ipi(cpus[0], SIPI | 0x12, destination=1)
    assert cpus[1].lapic.take_init() is True
    assert cpus[1].lapic.take_sipi() == 0x12


def test_a_hardware_disabled_target_takes_nothing_not_even_init_or_sipi():
    bus, cpus = smp(3)
    hardware_disable(cpus[1])
    for low in (0x79, NMI, INIT | ASSERT, SIPI | 0x12):
        xapic_ipi(cpus[0], OTHERS | low)
    lapic = cpus[1].lapic
    assert (lapic.get_state()["irr"], lapic.nmi_pending, lapic.init_pending, lapic.sipi_vector) == (0, False, False, -1)
    assert cpus[1].vcpu.kicks == 0 and not lapic.wake_pending
    assert (cpus[2].lapic.init_pending, cpus[2].lapic.sipi_vector) == (True, 0x12)
    assert bus.remote_events == 4                      # all four on CPU 2, none on CPU 1


def test_a_hardware_disabled_sender_cannot_send():
    bus, cpus = smp(2)
    hardware_disable(cpus[0])
    xapic_ipi(cpus[0], OTHERS | 0x7A)                  # the page is not decoded: the writes are lost
    assert pending(cpus) == [None, None]


# -- INIT and SIPI ------------------------------------------------------------------------------
def dirty_xapic(h: Harness) -> None:
    """Leave every resettable register of an xAPIC-mode LAPIC away from its power-up value."""
    h.write(ID, 0x0C000000)
    h.write(TPR, 0x35)
    h.write(DFR, 0x0FFFFFFF)
    h.write(LDR, 0x21000000)
    h.write(SPIV, 0x1EE)
    h.write(LVT_TIMER, 0x20040)                       # periodic, vector 0x40, unmasked
    h.write(TIMER_INITIAL, 1000)
    h.write(ICR_HIGH, 0x05000000)
    h.lapic.receive(DeliveryMode.FIXED, 0x50, True)
    h.lapic.receive(DeliveryMode.FIXED, 0x60, False)
    assert h.lapic.accept_interrupt(0x60) == 0x60
    h.lapic.receive(DeliveryMode.FIXED, 0x05, False)  # an error to collect
    h.lapic.receive(DeliveryMode.NMI, 0, False)
    assert h.lapic.next_deadline() is not None


def test_init_resets_the_target_to_power_up_values_but_keeps_its_id_and_apic_base():
    bus, cpus = smp(3)
    target = cpus[2]
    dirty_xapic(target)
    apic_base = target.rdmsr(MSR_APIC_BASE)
    xapic_ipi(cpus[0], INIT | ASSERT | LEVEL_TRIGGER, destination=0x0C)
    fresh = Harness(apic_id=2, bsp=False, enable=False).lapic.get_state()
    state = target.lapic.get_state()
    assert state == {**fresh, "xapic_id": 0x0C}
    assert target.read(ID) == 0x0C000000
    assert target.rdmsr(MSR_APIC_BASE) == apic_base == target.lapic.base | APIC_BASE_EN
    assert (target.read(TPR), target.read(LDR), target.read(DFR), target.read(SPIV)) == (0, 0, 0xFFFFFFFF, 0xFF)
    assert target.lapic.next_deadline() is None and not target.lapic.nmi_pending
    assert target.lapic.init_pending is True
    assert cpus[1].lapic.init_pending is False and cpus[0].lapic.init_pending is False


def test_init_keeps_an_x2apic_target_in_x2apic_mode():
    bus, cpus = smp(2, x2apic=True)
    cpus[1].wrmsr(X2_TPR, 0x40)
    apic_base = cpus[1].rdmsr(MSR_APIC_BASE)
    x2apic_ipi(cpus[0], INIT | ASSERT, destination=1, path="c")
    assert cpus[1].rdmsr(MSR_APIC_BASE) == apic_base
    assert apic_base & (APIC_BASE_EN | APIC_BASE_EXTD) == APIC_BASE_EN | APIC_BASE_EXTD
    assert cpus[1].rdmsr(0x802) == 1 and cpus[1].rdmsr(X2_TPR) == 0 and cpus[1].rdmsr(0x80F) == 0xFF
    assert cpus[1].lapic.take_init() is True


def test_init_keeps_level_triggered_eois_the_ioapic_has_not_collected():
    bus, cpus = smp(2)
    cpus[1].lapic.receive(DeliveryMode.FIXED, 0x55, True)
    assert cpus[1].lapic.accept_interrupt(0x55) == 0x55
    cpus[1].write(EOI, 0)
    xapic_ipi(cpus[0], INIT | ASSERT, destination=1)
    assert cpus[1].lapic.take_level_eois() == [0x55]


@pytest.mark.parametrize("low, is_init", [
    (INIT | ASSERT | LEVEL_TRIGGER, True),            # what Linux sends
    (INIT | ASSERT, True),
    (INIT, True),                                     # edge: the level bit does not matter
    (INIT | LEVEL_TRIGGER, False),                    # level de-assert: nothing on P4 and later
])
def test_init_level_deassert_does_nothing(low, is_init):
    bus, cpus = smp(2)
    cpus[1].write(TPR, 0x20)
    xapic_ipi(cpus[0], low, destination=1)
    assert cpus[1].lapic.init_pending is is_init
    assert cpus[1].read(TPR) == (0 if is_init else 0x20)
    assert bus.remote_events == (1 if is_init else 0)


def test_take_init_and_take_sipi_consume_the_latches():
    bus, cpus = smp(2)
    lapic = cpus[1].lapic
    assert lapic.take_init() is False and lapic.take_sipi() is None
    xapic_ipi(cpus[0], INIT | ASSERT, destination=1)
    xapic_ipi(cpus[0], SIPI | 0x9F, destination=1)
    assert (lapic.init_pending, lapic.sipi_vector) == (True, 0x9F)
    assert lapic.take_init() is True and lapic.take_init() is False
    assert lapic.take_sipi() == 0x9F and lapic.take_sipi() is None
    assert lapic.sipi_vector == -1


def test_sipi_vector_is_icr_bits_7_0_and_any_value_is_legal():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], SIPI | 0x00, destination=1)
    assert cpus[1].lapic.take_sipi() == 0
    xapic_ipi(cpus[0], SIPI | 0x0A, destination=1)
    assert cpus[1].lapic.take_sipi() == 0x0A
    assert esr(cpus[0]) == 0 and esr(cpus[1]) == 0


def test_the_first_sipi_stays_latched_until_taken():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], SIPI | 0x10, destination=1)
    xapic_ipi(cpus[0], SIPI | 0x20, destination=1)
    assert cpus[1].lapic.take_sipi() == 0x10
    assert bus.remote_events == 1 and cpus[1].vcpu.kicks == 1


def test_init_forgets_a_sipi_latched_before_it():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], SIPI | 0x10, destination=1)
    xapic_ipi(cpus[0], INIT | ASSERT, destination=1)
    assert cpus[1].lapic.take_sipi() is None
    xapic_ipi(cpus[0], SIPI | 0x30, destination=1)
    assert cpus[1].lapic.take_sipi() == 0x30


def test_init_sipi_sipi_to_all_aps():
    """The MP start-up sequence: INIT, then SIPI twice, all excluding self."""
    bus, cpus = smp()
    for low in (OTHERS | INIT | ASSERT | LEVEL_TRIGGER, OTHERS | INIT | LEVEL_TRIGGER, OTHERS | SIPI | 0x08,
                OTHERS | SIPI | 0x08):
        xapic_ipi(cpus[0], low)
    assert [h.lapic.take_init() for h in cpus] == [False, True, True, True]
    assert [h.lapic.take_sipi() for h in cpus] == [None, 0x08, 0x08, 0x08]
    assert [h.vcpu.kicks for h in cpus] == [0, 2, 2, 2]
    assert bus.remote_events == 6


# -- wake-ups -----------------------------------------------------------------------------------
def test_python_path_ipi_kicks_the_target_and_counts_a_remote_event():
    bus, cpus = smp(3)
    xapic_ipi(cpus[0], 0x80, destination=2)
    assert [h.vcpu.kicks for h in cpus] == [0, 0, 1]
    assert [h.lapic.wake_pending for h in cpus] == [False, False, True]
    assert bus.remote_events == 1
    xapic_ipi(cpus[0], 0x80, destination=2)          # already pending: nothing new
    assert cpus[2].vcpu.kicks == 1 and bus.remote_events == 1
    xapic_ipi(cpus[0], ALL | 0x81)
    assert [h.vcpu.kicks for h in cpus] == [1, 1, 2]
    assert bus.remote_events == 3                     # the sender's own interrupt is not remote


@pytest.mark.parametrize("path", ["msr", "c"])
def test_x2apic_ipi_flags_the_target_and_the_sender(path):
    bus, cpus = smp(3, x2apic=True)
    x2apic_ipi(cpus[0], 0x82, destination=1, path=path)
    assert cpus[1].lapic.wake_pending is True
    assert bus.remote_events == 1
    # The C path calls no Python: no kick; it flags the sender so the hook layer gives the machine
    # attention.  The Python path kicks the target and leaves the sender to on_write().
    assert cpus[1].vcpu.kicks == (1 if path == "msr" else 0)
    assert cpus[0].lapic.wake_pending is (path == "c")
    assert cpus[0].vcpu.kicks == 0 and not cpus[2].lapic.wake_pending


def test_c_path_self_ipi_flags_only_the_sender():
    bus, cpus = smp(2, x2apic=True)
    x2apic_ipi(cpus[0], SELF | 0x83, path="c")
    assert [h.lapic.wake_pending for h in cpus] == [True, False]
    assert bus.remote_events == 0


def test_c_path_ipi_that_nobody_takes_flags_nobody():
    bus, cpus = smp(2, x2apic=True)
    cpus[1].wrmsr(0x80F, 0xFF)                        # software-disabled
    x2apic_ipi(cpus[0], 0x84, destination=1, path="c")
    assert [h.lapic.wake_pending for h in cpus] == [False, False]
    assert bus.remote_events == 0


def test_an_event_the_c_path_reported_is_not_reported_again_by_a_python_path():
    bus, cpus = smp(2, x2apic=True)
    x2apic_ipi(cpus[0], NMI, destination=1, path="c")
    cpus[1].wrmsr(X2_TPR, 0x10)                       # a Python-path write on the target
    cpus[0].wrmsr(X2_TPR, 0x10)                       # and on the sender
    assert [h.vcpu.kicks for h in cpus] == [0, 0]
    assert cpus[1].lapic.take_nmi() is True


@pytest.mark.parametrize("path", ["mmio", "c"])
def test_init_and_sipi_wake_the_target(path):
    bus, cpus = smp(2, x2apic=path == "c")
    for low in (INIT | ASSERT, SIPI | 0x07):
        if path == "mmio":
            xapic_ipi(cpus[0], low, destination=1)
        else:
            x2apic_ipi(cpus[0], low, destination=1, path="c")
        assert cpus[1].lapic.wake_pending is True
        cpus[1].lapic.wake_pending = False
    assert bus.remote_events == 2
    assert cpus[1].vcpu.kicks == (2 if path == "mmio" else 0)


def test_the_machine_clears_remote_events():
    bus, cpus = smp(2)
    xapic_ipi(cpus[0], 0x85, destination=1)
    assert bus.remote_events == 1
    bus.remote_events = 0
    xapic_ipi(cpus[1], 0x86, destination=0)
    assert bus.remote_events == 1


# -- I/O APIC messages: ApicBus.deliver ---------------------------------------------------------
def test_deliver_fixed_to_a_physical_destination_sets_the_tmr_of_a_level_vector():
    bus, cpus = smp(3)
    assert bus.deliver(1, False, DeliveryMode.FIXED, 0x91, True) is True
    assert pending(cpus) == [None, 0x91, None]
    assert bits_of(cpus[1], 0x180) == 1 << 0x91
    assert cpus[1].vcpu.kicks == 1 and cpus[1].lapic.wake_pending and bus.remote_events == 1


def test_deliver_logical_and_broadcast():
    bus, cpus = smp(3)
    for i, h in enumerate(cpus):
        h.write(LDR, (1 << i) << 24)
    assert bus.deliver(0b110, True, DeliveryMode.FIXED, 0x92, False) is True
    assert pending(cpus) == [None, 0x92, 0x92]
    assert bus.deliver(0xFF, False, DeliveryMode.FIXED, 0x93, False) is True
    assert pending(cpus) == [0x93, 0x93, 0x93]
    assert bus.deliver(0x05, False, DeliveryMode.FIXED, 0x94, False) is False


def test_deliver_lowest_priority_arbitrates():
    bus, cpus = smp(3)
    cpus[0].write(TPR, 0x40)
    cpus[2].write(TPR, 0x40)
    cpus[1].write(TPR, 0x50)
    assert bus.deliver(0xFF, False, DeliveryMode.LOWEST_PRIORITY, 0x95, True) is True
    assert [bits_of(h, 0x200) for h in cpus] == [1 << 0x95, 0, 0]
    assert bits_of(cpus[0], 0x180) == 1 << 0x95


@pytest.mark.parametrize("mode, check", [
    (DeliveryMode.NMI, lambda lapic: lapic.take_nmi()),
    (DeliveryMode.INIT, lambda lapic: lapic.take_init()),
    (DeliveryMode.STARTUP, lambda lapic: lapic.take_sipi() == 0x42),
])
def test_deliver_nmi_init_sipi(mode, check):
    bus, cpus = smp(2)
    assert bus.deliver(1, False, mode, 0x42, False) is True
    assert check(cpus[1].lapic) and not check(cpus[0].lapic)
    assert cpus[1].vcpu.kicks == 1 and bus.remote_events == 1


@pytest.mark.parametrize("mode", [DeliveryMode.SMI, DeliveryMode.EXTINT])
def test_deliver_smi_and_extint_deliver_nothing(mode):
    bus, cpus = smp(2)
    assert bus.deliver(0xFF, False, mode, 0x42, False) is False
    assert pending(cpus) == [None, None] and bus.remote_events == 0


def test_deliver_an_illegal_vector_is_a_receive_error_on_the_target():
    bus, cpus = smp(2)
    assert bus.deliver(1, False, DeliveryMode.FIXED, 0x05, False) is False
    assert [esr(h) for h in cpus] == [0, ESR_RECEIVE_ILLEGAL_VECTOR]


def test_deliver_skips_a_hardware_disabled_apic():
    bus, cpus = smp(2)
    hardware_disable(cpus[1])
    for mode in (DeliveryMode.FIXED, DeliveryMode.NMI, DeliveryMode.INIT, DeliveryMode.STARTUP):
        assert bus.deliver(1, False, mode, 0x96, False) is False
    assert bus.remote_events == 0 and cpus[1].vcpu.kicks == 0


def test_deliver_broadcast_0xff_reaches_x2apic_targets():
    """An I/O APIC message carries 8 destination bits: 0xFF is broadcast whatever the target's mode."""
    bus, cpus = smp(2, x2apic=True)
    assert bus.deliver(0xFF, False, DeliveryMode.FIXED, 0x97, False) is True
    assert pending(cpus) == [0x97, 0x97]
    assert bus.deliver(1, False, DeliveryMode.FIXED, 0x98, False) is True
    assert pending(cpus) == [0x97, 0x98]
    # accepts_destination (the Python check of one APIC) keeps comparing the 32-bit x2APIC ID
    assert not cpus[0].lapic.accepts_destination(0xFF, False)
    assert cpus[0].lapic.accepts_destination(0xFFFFFFFF, False)


def test_deliver_refuses_out_of_range_vectors_and_modes():
    bus, cpus = smp(1)
    assert bus.deliver(0, False, DeliveryMode.FIXED, 256, False) is False
    assert bus.deliver(0, False, 8, 0x40, False) is False
    assert pending(cpus) == [None]


# -- the x2APIC C path gives the same results as the Python paths --------------------------------
def outcome(bus: ApicBus, cpus: list[Harness]) -> tuple:
    """Everything a message can change, for every CPU and the bus (kicks aside: only Python paths kick)."""
    return (bus.remote_events,
            [(h.lapic.get_state(), h.lapic.init_pending, h.lapic.sipi_vector) for h in cpus],
            [h.lapic.wake_pending for h in cpus[1:]])


def prepared(x2apic: bool) -> tuple[ApicBus, list[Harness]]:
    """Four CPUs with different TPRs, one software-disabled and one with an interrupt in service."""
    bus, cpus = smp(4, x2apic=x2apic)
    for h, tpr in zip(cpus, (0x20, 0x10, 0x30, 0x10), strict=True):
        h.lapic.set_cr8(tpr >> 4)
    cpus[3].lapic.receive(DeliveryMode.FIXED, 0x70, False)
    cpus[3].lapic.accept_interrupt(0x70)
    spiv = cpus[2].lapic.get_state()
    cpus[2].lapic.set_state({**spiv, "spiv": 0xFF, "lvt": [e | 0x10000 for e in spiv["lvt"]]})
    return bus, cpus


icr_lows = st.builds(lambda vector, mode, logical, shorthand, trigger, level: vector | mode << 8 | logical << 11 |
                     level << 14 | trigger << 15 | shorthand << 18,
                     st.integers(0, 255), st.sampled_from([0, 1, 2, 4, 5, 6]), st.booleans(), st.integers(0, 3),
                     st.booleans(), st.booleans())


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.tuples(icr_lows, st.sampled_from([0, 1, 2, 3, 5, 0xF, 0xFF])), min_size=1,
                         max_size=4))
def test_c_path_matches_xapic_mmio_path(messages):
    """Destinations below 16 mean the same in both modes (physical ID; logical: xAPIC flat LDR bit i
    for CPU i, x2APIC cluster 0 bit i); the 8-bit broadcast becomes the 32-bit one."""
    mmio_bus, mmio_cpus = prepared(x2apic=False)
    c_bus, c_cpus = prepared(x2apic=True)
    for low, destination in messages:
        if low >> 8 & 7 == 1:
            low &= ~(7 << 8)          # lowest priority is an error in x2APIC: compare it as fixed here
        for i, h in enumerate(mmio_cpus):
            h.write(LDR, (1 << i) << 24)              # again after an INIT, which clears the xAPIC LDR
            assert h.read(DFR) == 0xFFFFFFFF          # flat model
        xapic_ipi(mmio_cpus[0], low, destination)
        x2apic_ipi(c_cpus[0], low, 0xFFFFFFFF if destination == 0xFF else destination, path="c")
    mmio, c = outcome(mmio_bus, mmio_cpus), outcome(c_bus, c_cpus)
    assert mmio[0] == c[0] and mmio[2] == c[2]
    for (mmio_state, *mmio_latches), (c_state, *c_latches) in zip(mmio[1], c[1], strict=True):
        for key in ("apic_base", "ldr", "dfr", "icr", "xapic_id"):   # mode-dependent registers
            mmio_state.pop(key), c_state.pop(key)
        assert (mmio_state, mmio_latches) == (c_state, c_latches)


@settings(max_examples=150, deadline=None)
@given(messages=st.lists(st.tuples(icr_lows, st.sampled_from([0, 1, 3, 5, 0x10003, 0xFFFFFFFF])), min_size=1,
                         max_size=4))
def test_c_path_matches_x2apic_msr_bus_path(messages):
    msr_bus, msr_cpus = prepared(x2apic=True)
    c_bus, c_cpus = prepared(x2apic=True)
    for low, destination in messages:
        x2apic_ipi(msr_cpus[0], low, destination, path="msr")
        x2apic_ipi(c_cpus[0], low, destination, path="c")
    assert outcome(msr_bus, msr_cpus) == outcome(c_bus, c_cpus)
