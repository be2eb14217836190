# SPDX-License-Identifier: GPL-2.0-or-later
"""82093AA-style I/O APIC: registers and read-only bits, edge and level delivery, masking, remote
IRR and EOI, polarity, and the fields of the messages it sends."""

import pytest

from devices.device import BusRange, PropertyError
from devices.ioapic import IOAPIC_BASE, Ioapic
from tests.fake_context import FakeContext, mmio_read, mmio_write

IOREGSEL = IOAPIC_BASE
IOWIN = IOAPIC_BASE + 0x10
IOEOI = IOAPIC_BASE + 0x40

# Redirection entry bits.
LOGICAL = 1 << 11
DELIVERY_STATUS = 1 << 12
ACTIVE_LOW = 1 << 13
REMOTE_IRR = 1 << 14
LEVEL = 1 << 15
MASKED = 1 << 16
LOWEST_PRIORITY = 1 << 8
NMI = 4 << 8


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def ioapic(ctx):
    device = Ioapic(ctx)
    ctx.add_controller(device)
    return device


def select_read(ioapic, index):
    mmio_write(ioapic, IOREGSEL, index)
    return mmio_read(ioapic, IOWIN)


def select_write(ioapic, index, value):
    mmio_write(ioapic, IOREGSEL, index)
    mmio_write(ioapic, IOWIN, value)


def program(ioapic, pin, low, destination=0):
    """Write pin's entry the way Linux does: high half first, then the low half."""
    select_write(ioapic, 0x11 + 2 * pin, destination << 24)
    select_write(ioapic, 0x10 + 2 * pin, low)


def entry_low(ioapic, pin):
    return select_read(ioapic, 0x10 + 2 * pin)


# -- registers -------------------------------------------------------------------------------------
def test_claims_one_4k_mmio_window_at_its_address(ctx):
    assert Ioapic(ctx).bus_ranges() == [BusRange("mmio", 0xFEC00000, 0x1000)]
    assert Ioapic(ctx, address=0xFEC01000).bus_ranges() == [BusRange("mmio", 0xFEC01000, 0x1000)]


def test_version_register_gives_version_and_23_as_highest_entry(ctx):
    assert select_read(Ioapic(ctx), 0x01) == 0x00170020
    assert select_read(Ioapic(ctx, version=0x11), 0x01) == 0x00170011


def test_id_comes_from_the_prop_and_is_writable_in_bits_27_24(ctx):
    ioapic = Ioapic(ctx, id=2)
    assert select_read(ioapic, 0x00) == 0x02000000
    select_write(ioapic, 0x00, 0xFFFFFFFF)
    assert select_read(ioapic, 0x00) == 0x0F000000
    assert ioapic.apic_id == 0xF


def test_arbitration_id_follows_id_writes_and_ver_arb_are_read_only(ioapic):
    select_write(ioapic, 0x00, 0x05000000)
    assert select_read(ioapic, 0x02) == 0x05000000
    select_write(ioapic, 0x01, 0)
    select_write(ioapic, 0x02, 0x0A000000)
    assert select_read(ioapic, 0x01) == 0x00170020
    assert select_read(ioapic, 0x02) == 0x05000000


def test_ioregsel_keeps_its_low_byte_and_unused_indices_read_zero(ioapic):
    mmio_write(ioapic, IOREGSEL, 0x1203)
    assert mmio_read(ioapic, IOREGSEL) == 0x03
    assert mmio_read(ioapic, IOWIN) == 0
    assert select_read(ioapic, 0x40) == 0       # past the last redirection entry


def test_every_entry_starts_masked(ioapic):
    for pin in range(24):
        assert entry_low(ioapic, pin) == MASKED
        assert select_read(ioapic, 0x11 + 2 * pin) == 0


def test_entry_keeps_writable_fields_and_ignores_read_only_and_reserved_bits(ioapic):
    select_write(ioapic, 0x10 + 2 * 5, 0xFFFFFFFF)
    assert entry_low(ioapic, 5) == 0xFFFFFFFF & ~(DELIVERY_STATUS | REMOTE_IRR) & 0x1FFFF
    select_write(ioapic, 0x11 + 2 * 5, 0xFFFFFFFF)
    assert select_read(ioapic, 0x11 + 2 * 5) == 0xFF000000
    assert ioapic.redirection[5] >> 56 == 0xFF


def test_halves_are_written_independently(ioapic):
    program(ioapic, 3, 0x31, destination=0x42)
    select_write(ioapic, 0x10 + 2 * 3, 0x32)
    assert ioapic.redirection[3] == (0x42 << 56) | 0x32


def test_only_dword_accesses_reach_the_registers(ioapic):
    assert mmio_read(ioapic, IOREGSEL, size=1) == 0xFF
    assert mmio_read(ioapic, IOWIN, size=2) == 0xFFFF
    assert mmio_read(ioapic, IOREGSEL, size=8) == 0xFFFFFFFFFFFFFFFF
    mmio_write(ioapic, IOREGSEL, 0x01, size=1)
    assert mmio_read(ioapic, IOREGSEL) == 0


def test_other_offsets_and_the_write_only_eoi_register_read_all_ones(ioapic):
    assert mmio_read(ioapic, IOAPIC_BASE + 0x20) == 0xFFFFFFFF
    assert mmio_read(ioapic, IOEOI) == 0xFFFFFFFF
    mmio_write(ioapic, IOAPIC_BASE + 0x04, 0x10)
    assert mmio_read(ioapic, IOREGSEL) == 0


@pytest.mark.parametrize("props", [{"address": 0xFEC00400}, {"address": 1 << 32}, {"id": 16}, {"version": 0x12}])
def test_bad_props_are_refused(ctx, props):
    with pytest.raises(PropertyError):
        Ioapic(ctx, **props)


# -- edge-triggered pins ---------------------------------------------------------------------------
def test_edge_pin_sends_one_message_per_rising_edge(ctx, ioapic):
    program(ioapic, 4, 0x34)
    line = ctx.irq(4)
    line.set_level(True)
    line.set_level(True)
    line.set_level(False)
    assert ctx.messages == [(0, False, 0, 0x34, False)]
    line.pulse()
    assert ctx.messages == [(0, False, 0, 0x34, False)] * 2


def test_edge_on_a_masked_pin_is_lost_not_held(ctx, ioapic):
    program(ioapic, 1, MASKED | 0x31)
    ctx.irq(1).pulse()
    ctx.irq(1).set_level(True)
    select_write(ioapic, 0x10 + 2 * 1, 0x31)     # unmask while the line is high: no new edge
    assert ctx.messages == []
    ctx.irq(1).set_level(False)
    ctx.irq(1).set_level(True)
    assert ctx.messages == [(0, False, 0, 0x31, False)]


def test_edge_pin_never_sets_remote_irr(ctx, ioapic):
    program(ioapic, 0, 0x30)
    ctx.irq(0).pulse()
    assert entry_low(ioapic, 0) == 0x30


def test_active_low_edge_pin_fires_on_the_falling_edge(ctx, ioapic):
    ctx.irq(9).set_level(True)
    program(ioapic, 9, ACTIVE_LOW | 0x39)
    ctx.irq(9).set_level(False)
    assert ctx.messages == [(0, False, 0, 0x39, False)]
    ctx.irq(9).set_level(True)
    assert len(ctx.messages) == 1


# -- level-triggered pins --------------------------------------------------------------------------
def test_level_pin_sends_once_until_eoi_and_sets_remote_irr(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    assert ctx.messages == [(0, False, 0, 0x3B, True)]
    assert entry_low(ioapic, 11) == LEVEL | REMOTE_IRR | 0x3B
    ctx.irq(11).set_level(False)
    ctx.irq(11).set_level(True)
    assert len(ctx.messages) == 1                  # remote IRR holds it back


def test_eoi_resends_while_the_line_is_still_asserted(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    ioapic.eoi(0x3B)
    assert ctx.messages == [(0, False, 0, 0x3B, True)] * 2
    assert entry_low(ioapic, 11) & REMOTE_IRR


def test_eoi_after_the_line_dropped_only_clears_remote_irr(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    ctx.irq(11).set_level(False)
    ioapic.eoi(0x3B)
    assert len(ctx.messages) == 1
    assert entry_low(ioapic, 11) == LEVEL | 0x3B
    ctx.irq(11).set_level(True)
    assert len(ctx.messages) == 2


def test_eoi_of_another_vector_changes_nothing(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    ioapic.eoi(0x3C)
    assert len(ctx.messages) == 1
    assert entry_low(ioapic, 11) & REMOTE_IRR


def test_eoi_clears_every_pin_sharing_the_vector(ctx, ioapic):
    program(ioapic, 16, LEVEL | 0x50)
    program(ioapic, 17, LEVEL | 0x50)
    ctx.irq(16).set_level(True)
    ctx.irq(17).set_level(True)
    ctx.irq(16).set_level(False)
    ioapic.eoi(0x50)
    assert not entry_low(ioapic, 16) & REMOTE_IRR
    assert len(ctx.messages) == 3                  # pin 17 is still asserted: sent again


def test_eoi_register_of_version_0x20_acts_like_an_eoi(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    mmio_write(ioapic, IOEOI, 0x3B)
    assert len(ctx.messages) == 2


def test_version_0x11_has_no_eoi_register(ctx):
    ioapic = Ioapic(ctx, version=0x11)
    ctx.add_controller(ioapic)
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    mmio_write(ioapic, IOEOI, 0x3B)
    assert entry_low(ioapic, 11) & REMOTE_IRR
    assert len(ctx.messages) == 1


def test_switching_to_edge_clears_a_stuck_remote_irr(ctx, ioapic):
    program(ioapic, 11, LEVEL | 0x3B)
    ctx.irq(11).set_level(True)
    select_write(ioapic, 0x10 + 2 * 11, MASKED | 0x3B)             # edge, masked
    assert entry_low(ioapic, 11) == MASKED | 0x3B
    select_write(ioapic, 0x10 + 2 * 11, MASKED | LEVEL | 0x3B)
    assert not entry_low(ioapic, 11) & REMOTE_IRR
    assert len(ctx.messages) == 1


def test_masked_level_pin_delivers_when_unmasked_while_asserted(ctx, ioapic):
    program(ioapic, 10, MASKED | LEVEL | 0x3A)
    ctx.irq(10).set_level(True)
    assert ctx.messages == []
    select_write(ioapic, 0x10 + 2 * 10, LEVEL | 0x3A)
    assert ctx.messages == [(0, False, 0, 0x3A, True)]


def test_masked_level_pin_that_dropped_before_unmask_sends_nothing(ctx, ioapic):
    program(ioapic, 10, MASKED | LEVEL | 0x3A)
    ctx.irq(10).set_level(True)
    ctx.irq(10).set_level(False)
    select_write(ioapic, 0x10 + 2 * 10, LEVEL | 0x3A)
    assert ctx.messages == []


def test_masking_after_delivery_keeps_remote_irr_until_eoi(ctx, ioapic):
    program(ioapic, 10, LEVEL | 0x3A)
    ctx.irq(10).set_level(True)
    select_write(ioapic, 0x10 + 2 * 10, MASKED | LEVEL | 0x3A)
    assert entry_low(ioapic, 10) & REMOTE_IRR
    ioapic.eoi(0x3A)
    assert len(ctx.messages) == 1                  # masked: the EOI does not resend


def test_active_low_level_pin_is_asserted_while_the_line_is_low(ctx, ioapic):
    program(ioapic, 20, ACTIVE_LOW | LEVEL | 0x60)    # line low from reset: asserted at once
    assert ctx.messages == [(0, False, 0, 0x60, True)]
    ctx.irq(20).set_level(True)
    ioapic.eoi(0x60)
    assert len(ctx.messages) == 1
    ctx.irq(20).set_level(False)
    assert len(ctx.messages) == 2


def test_nmi_entries_act_as_edge_whatever_their_trigger_bit(ctx, ioapic):
    program(ioapic, 2, LEVEL | NMI)
    ctx.irq(2).set_level(True)
    assert ctx.messages == [(0, False, 4, 0, False)]
    assert not entry_low(ioapic, 2) & REMOTE_IRR
    ctx.irq(2).set_level(False)
    ctx.irq(2).set_level(True)
    assert len(ctx.messages) == 2


# -- messages --------------------------------------------------------------------------------------
def test_message_carries_destination_destination_mode_and_delivery_mode(ctx, ioapic):
    program(ioapic, 7, LOGICAL | LOWEST_PRIORITY | 0x41, destination=0x03)
    program(ioapic, 8, 0x42, destination=0xFF)
    ctx.irq(7).pulse()
    ctx.irq(8).pulse()
    assert ctx.messages == [(0x03, True, 1, 0x41, False), (0xFF, False, 0, 0x42, False)]


def test_lines_past_pin_23_are_ignored(ctx, ioapic):
    ioapic.set_irq(24, True)
    ioapic.set_irq(-1, True)
    assert ctx.messages == []
