# SPDX-License-Identifier: GPL-2.0-or-later
"""8259A pair: Linux's probe and initialisation, mask read-back, IRR/ISR reads, poll, EOI commands,
priorities, the cascade and the ELCR."""

import pytest

from devices.bus import Bus
from devices.device import BusRange
from devices.pic import I8259
from tests.fake_context import FakeContext, pio_read, pio_write

READ_IRR = 0x0A
READ_ISR = 0x0B
POLL = 0x0C
NON_SPECIFIC_EOI = 0x20


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def pics(ctx):
    device = I8259(ctx)
    ctx.add_controller(device)
    return device


def initialise(pics, master_icw4=0x01, slave_icw4=0x01):
    """Linux's sequence: ICW1 edge + cascade + ICW4, vector bases 0x30/0x38, slave on IR2."""
    for base, icw2, icw3, icw4 in ((0x20, 0x30, 0x04, master_icw4), (0xA0, 0x38, 0x02, slave_icw4)):
        pio_write(pics, base, 0x11)
        for word in (icw2, icw3, icw4):
            pio_write(pics, base + 1, word)


def poll(pics, base):
    pio_write(pics, base, POLL)
    return pio_read(pics, base)


def test_claims_both_chips_and_the_elcr(pics):
    assert pics.bus_ranges() == [BusRange("pio", 0x20, 2), BusRange("pio", 0xA0, 2), BusRange("pio", 0x4D0, 2)]
    assert not I8259.user_creatable


def test_everything_is_masked_at_reset(pics):
    assert pio_read(pics, 0x21) == 0xFF
    assert pio_read(pics, 0xA1) == 0xFF


def test_linux_probe_reads_back_the_mask_it_wrote(pics):
    pio_write(pics, 0xA1, 0xFF)
    pio_write(pics, 0x21, 0xFB)        # everything but the cascade
    assert pio_read(pics, 0x21) == 0xFB
    assert pio_read(pics, 0xA1) == 0xFF


def test_linux_style_initialisation_then_mask(pics):
    for base, icw2, icw3 in ((0x20, 0x20, 0x04), (0xA0, 0x28, 0x02)):
        pio_write(pics, base, 0x11)
        assert pio_read(pics, base + 1) == 0       # ICW1 clears the mask
        for word in (icw2, icw3, 0x01):
            pio_write(pics, base + 1, word)
        assert pio_read(pics, base + 1) == 0       # initialisation words are not masks
        pio_write(pics, base + 1, 0xFF)
        assert pio_read(pics, base + 1) == 0xFF
    assert (pics.master.vector_base, pics.slave.vector_base) == (0x20, 0x28)


def test_single_mode_without_icw4_expects_only_icw2(pics):
    pio_write(pics, 0x20, 0x12)        # ICW1: single, no ICW4
    pio_write(pics, 0x21, 0x08)        # ICW2
    pio_write(pics, 0x21, 0xAA)        # OCW1
    assert pio_read(pics, 0x21) == 0xAA
    assert pics.master.vector_base == 0x08


def test_ocw2_and_ocw3_leave_the_mask_alone(pics):
    pio_write(pics, 0x21, 0xF0)
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)
    pio_write(pics, 0x20, READ_ISR)
    assert pio_read(pics, 0x21) == 0xF0
    assert pio_read(pics, 0x20) == 0   # ISR: nothing in service


def test_all_ranges_work_through_a_port_bus(ctx):
    pio = Bus("pio", 0x10000)
    pics = I8259(ctx)
    pics.register(pio)
    pio.write(0x21, 1, 0xFB)
    pio.write(0x4D1, 1, 0x0C)
    assert pio.read(0x21, 1) == 0xFB
    assert pics.slave.elcr == 0x0C


# -- IRR -------------------------------------------------------------------------------------------
def test_irr_shows_raised_lines_even_when_masked(ctx, pics):
    initialise(pics)
    pio_write(pics, 0x21, 0xFF)
    ctx.irq(4).set_level(True)
    ctx.irq(12).set_level(True)
    assert pio_read(pics, 0x20) == 0x14        # IRR is selected after initialisation; IR2: the slave
    pio_write(pics, 0xA0, READ_IRR)
    assert pio_read(pics, 0xA0) == 0x10
    ctx.irq(4).set_level(False)
    assert pio_read(pics, 0x20) == 0x04        # an edge request that goes away is gone


def test_pulses_leave_nothing_in_the_irr(ctx, pics):
    ctx.irq(1).pulse()
    assert pio_read(pics, 0x20) == 0


def test_irr_and_isr_selection_is_remembered(ctx, pics):
    initialise(pics)
    ctx.irq(3).set_level(True)
    pio_write(pics, 0x20, READ_ISR)
    assert pio_read(pics, 0x20) == 0
    assert pio_read(pics, 0x20) == 0
    pio_write(pics, 0x20, 0x08)                # OCW3 without a read command: still ISR
    assert pio_read(pics, 0x20) == 0
    pio_write(pics, 0x20, READ_IRR)
    assert pio_read(pics, 0x20) == 0x08


def test_icw1_needs_a_new_rising_edge_from_lines_already_high(ctx, pics):
    ctx.irq(5).set_level(True)
    assert pio_read(pics, 0x20) == 0x20
    initialise(pics)
    assert pio_read(pics, 0x20) == 0
    ctx.irq(5).set_level(False)
    ctx.irq(5).set_level(True)
    assert pio_read(pics, 0x20) == 0x20


def test_irq2_is_the_cascade_not_a_device_line(ctx, pics):
    initialise(pics)
    ctx.irq(2).set_level(True)
    assert pio_read(pics, 0x20) == 0
    ctx.irq(16).set_level(True)                # an IOAPIC-only line
    assert pio_read(pics, 0x20) == 0 and pio_read(pics, 0xA0) == 0


# -- poll, ISR and EOI -----------------------------------------------------------------------------
def test_poll_acknowledges_the_highest_priority_unmasked_request(ctx, pics):
    initialise(pics)
    pio_write(pics, 0x21, 0x02)                # mask IR1
    for line in (1, 3, 6):
        ctx.irq(line).set_level(True)
    assert poll(pics, 0x20) == 0x83
    assert pio_read(pics, 0x20) == 0x42        # back to IRR reads: IR3 was taken, IR1 and IR6 wait
    pio_write(pics, 0x20, READ_ISR)
    assert pio_read(pics, 0x20) == 0x08


def test_poll_with_nothing_requesting_reads_zero(pics):
    initialise(pics)
    assert poll(pics, 0x20) == 0


def test_in_service_level_holds_back_itself_and_lower_levels(ctx, pics):
    initialise(pics)
    ctx.irq(3).set_level(True)
    assert poll(pics, 0x20) == 0x83
    ctx.irq(5).set_level(True)
    assert poll(pics, 0x20) == 0               # IR5 is below IR3, which is in service
    ctx.irq(1).set_level(True)
    assert poll(pics, 0x20) == 0x81            # IR1 outranks it
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)    # ends IR1, the highest in service
    pio_write(pics, 0x20, READ_ISR)
    assert pio_read(pics, 0x20) == 0x08
    pio_write(pics, 0x20, 0x63)                # specific EOI for IR3
    assert pio_read(pics, 0x20) == 0
    assert poll(pics, 0x20) == 0x85


def test_level_sensitive_line_requests_again_after_eoi_while_high(ctx, pics):
    initialise(pics)
    pio_write(pics, 0x4D0, 0x20)               # IRQ5 level-sensitive
    ctx.irq(5).set_level(True)
    assert poll(pics, 0x20) == 0x85
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)
    assert poll(pics, 0x20) == 0x85


def test_edge_line_held_high_requests_once(ctx, pics):
    initialise(pics)
    ctx.irq(5).set_level(True)
    assert poll(pics, 0x20) == 0x85
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)
    assert poll(pics, 0x20) == 0


def test_ltim_makes_every_line_level_sensitive(ctx, pics):
    pio_write(pics, 0x20, 0x19)                # ICW1 with LTIM
    for word in (0x30, 0x04, 0x01):
        pio_write(pics, 0x21, word)
    ctx.irq(0).set_level(True)
    assert poll(pics, 0x20) == 0x80
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)
    assert poll(pics, 0x20) == 0x80


def test_auto_eoi_leaves_nothing_in_service(ctx, pics):
    initialise(pics, master_icw4=0x03)
    ctx.irq(3).set_level(True)
    assert poll(pics, 0x20) == 0x83
    pio_write(pics, 0x20, READ_ISR)
    assert pio_read(pics, 0x20) == 0


def test_set_priority_and_rotation_change_the_poll_order(ctx, pics):
    initialise(pics)
    pio_write(pics, 0x20, 0xC3)                # set priority: IR3 lowest, IR4 highest
    ctx.irq(1).set_level(True)
    ctx.irq(6).set_level(True)
    assert poll(pics, 0x20) == 0x86
    pio_write(pics, 0x20, 0xA0)                # rotate on non-specific EOI: IR6 becomes lowest
    assert poll(pics, 0x20) == 0x81
    pio_write(pics, 0x20, 0xE1)                # rotate on specific EOI for IR1: IR1 lowest
    assert pics.master.lowest_priority == 1
    assert pics.master.isr == 0


def test_rotate_in_auto_eoi_makes_the_acknowledged_level_lowest(ctx, pics):
    initialise(pics, master_icw4=0x03)
    pio_write(pics, 0x20, 0x80)                # rotate in auto-EOI mode: set
    ctx.irq(0).set_level(True)
    ctx.irq(1).set_level(True)
    assert poll(pics, 0x20) == 0x80
    assert pics.master.lowest_priority == 0
    pio_write(pics, 0x20, 0x00)                # rotate in auto-EOI mode: clear
    assert poll(pics, 0x20) == 0x81
    assert pics.master.lowest_priority == 0


def test_special_mask_mode_lets_lower_levels_past_a_masked_level_in_service(ctx, pics):
    initialise(pics)
    ctx.irq(3).set_level(True)
    assert poll(pics, 0x20) == 0x83
    pio_write(pics, 0x21, 0x08)                # mask the level in service
    ctx.irq(5).set_level(True)
    assert poll(pics, 0x20) == 0
    pio_write(pics, 0x20, 0x68)                # OCW3: set special mask mode
    assert poll(pics, 0x20) == 0x85
    pio_write(pics, 0x20, 0x48)                # OCW3: reset special mask mode
    ctx.irq(6).set_level(True)
    assert poll(pics, 0x20) == 0


def test_slave_request_reaches_the_master_through_ir2(ctx, pics):
    initialise(pics)
    ctx.irq(10).set_level(True)
    assert pio_read(pics, 0x20) == 0x04
    assert poll(pics, 0x20) == 0x82
    assert poll(pics, 0xA0) == 0x82            # IRQ10 is slave IR2
    pio_write(pics, 0xA0, NON_SPECIFIC_EOI)
    pio_write(pics, 0x20, NON_SPECIFIC_EOI)
    assert (pics.master.isr, pics.slave.isr) == (0, 0)


def test_masked_slave_request_does_not_reach_the_master(ctx, pics):
    initialise(pics)
    pio_write(pics, 0xA1, 0x04)
    ctx.irq(10).set_level(True)
    assert pio_read(pics, 0x20) == 0
    pio_write(pics, 0xA1, 0x00)
    assert pio_read(pics, 0x20) == 0x04


# -- ELCR ------------------------------------------------------------------------------------------
def test_elcr_reads_back_with_timer_keyboard_cascade_rtc_and_fpu_always_edge(pics):
    pio_write(pics, 0x4D0, 0xFF)
    pio_write(pics, 0x4D1, 0xFF)
    assert (pio_read(pics, 0x4D0), pio_read(pics, 0x4D1)) == (0xF8, 0xDE)
    pio_write(pics, 0x4D1, 0x0E)               # IRQ9-11, what an ACPI SCI on IRQ9 would set
    assert pio_read(pics, 0x4D1) == 0x0E
    assert pio_read(pics, 0x4D0) == 0xF8


def test_wide_port_access_uses_the_low_byte(pics):
    pio_write(pics, 0x21, 0x12F0, size=2)
    assert pio_read(pics, 0x21, size=2) == 0xF0
