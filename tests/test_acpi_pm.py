# SPDX-License-Identifier: GPL-2.0-or-later
"""ACPI PM fixed hardware: S5 poweroff as ACPICA writes it, other sleep types waking at once, the
24-bit PM timer against virtual time and its wrap, write-1-to-clear status, TMR_STS and the SCI."""

import pytest

from devices.acpi_pm import AcpiPm
from devices.device import PropertyError
from tests.fake_context import FakeContext, pio_read, pio_write
from vmm.clock import time_of_tick

PM1_STS, PM1_EN, PM1_CNT, PM_TMR = 0x600, 0x602, 0x604, 0x608
TMR_STS, WAK_STS, TMR_EN, PWRBTN_EN = 0x0001, 0x8000, 0x0001, 0x0100
SCI_EN, SLP_EN = 0x0001, 0x2000
PM_HZ = 3_579_545


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def pm(ctx):
    return AcpiPm(ctx)


def acpica_enter_sleep(pm, sleep_type):
    """ACPICA's legacy sleep: clear WAK_STS, write SLP_TYP, then SLP_TYP with SLP_EN."""
    pio_write(pm, PM1_STS, WAK_STS, 2)
    control = pio_read(pm, PM1_CNT, 2) & ~(0x7 << 10 | SLP_EN)
    pio_write(pm, PM1_CNT, control | sleep_type << 10, 2)
    pio_write(pm, PM1_CNT, control | sleep_type << 10 | SLP_EN, 2)


def test_s5_powers_off_on_the_slp_en_write(pm, ctx):
    pio_write(pm, PM1_CNT, 0 << 10, 2)
    assert ctx.stops == []
    acpica_enter_sleep(pm, 0)
    assert ctx.stops == [("poweroff", 0)]


def test_s5_type_is_a_property(ctx):
    pm = AcpiPm(ctx, **AcpiPm.parse_props({"s5_type": "5"}))
    acpica_enter_sleep(pm, 0)
    assert ctx.stops == []
    acpica_enter_sleep(pm, 5)
    assert ctx.stops == [("poweroff", 0)]


def test_s5_type_must_fit_slp_typ():
    with pytest.raises(PropertyError):
        AcpiPm(FakeContext(), s5_type=8)


def test_other_sleep_types_wake_at_once_with_wak_sts(pm, ctx):
    acpica_enter_sleep(pm, 1)
    assert ctx.stops == []
    assert pio_read(pm, PM1_STS, 2) & WAK_STS  # ACPICA's wait for WAK_STS ends at once
    pio_write(pm, PM1_STS, WAK_STS, 2)
    assert not pio_read(pm, PM1_STS, 2) & WAK_STS


def test_control_reads_sci_en_and_slp_typ_but_not_slp_en(pm):
    assert pio_read(pm, PM1_CNT, 2) == SCI_EN  # ACPI mode from power-on
    pio_write(pm, PM1_CNT, 3 << 10 | 0x0002, 2)  # SLP_TYP 3, BM_RLD
    assert pio_read(pm, PM1_CNT, 2) == 3 << 10 | 0x0002 | SCI_EN
    pio_write(pm, PM1_CNT, 0x0000, 2)  # clearing SCI_EN does not leave ACPI mode
    assert pio_read(pm, PM1_CNT, 2) == SCI_EN


def test_slp_en_in_a_byte_write_of_the_high_half(pm, ctx):
    pio_write(pm, PM1_CNT + 1, SLP_EN >> 8, 1)
    assert ctx.stops == [("poweroff", 0)]


@pytest.mark.parametrize("ns", [0, 1, 279, 280, 10**9, 4_686_846_017, 123_456_789_012])
def test_pm_timer_is_virtual_time_at_3_579545_mhz_in_24_bits(pm, ctx, ns):
    ctx.clock.set(ns)
    expected = ns * PM_HZ // 10**9 % (1 << 24)
    assert pio_read(pm, PM_TMR, 4) == expected
    assert pio_read(pm, PM_TMR, 2) == expected & 0xFFFF
    assert pio_read(pm, PM_TMR + 2, 1) == expected >> 16
    assert pio_read(pm, PM_TMR + 3, 1) == 0  # TMR_VAL_EXT clear: 24 bits


def test_pm_timer_wraps_at_2_to_the_24(pm, ctx):
    wrap = time_of_tick(1 << 24, PM_HZ)
    ctx.clock.set(wrap - 1)
    assert pio_read(pm, PM_TMR, 4) == 0xFFFFFF
    ctx.clock.set(wrap)
    assert pio_read(pm, PM_TMR, 4) == 0
    pio_write(pm, PM_TMR, 0x1234, 4)  # read-only
    assert pio_read(pm, PM_TMR, 4) == 0


def test_tmr_sts_is_set_when_bit_23_toggles_and_cleared_by_writing_1(pm, ctx):
    toggle = time_of_tick(1 << 23, PM_HZ)
    ctx.clock.set(toggle - 1)
    assert pio_read(pm, PM1_STS, 2) == 0
    ctx.clock.set(toggle)
    assert pio_read(pm, PM1_STS, 2) == TMR_STS
    pio_write(pm, PM1_STS, 0x0000, 2)  # writing 0 leaves it
    assert pio_read(pm, PM1_STS, 2) == TMR_STS
    pio_write(pm, PM1_STS, TMR_STS, 2)
    assert pio_read(pm, PM1_STS, 2) == 0
    ctx.clock.set(time_of_tick(2 << 23, PM_HZ))
    assert pio_read(pm, PM1_STS, 2) == TMR_STS


def test_tmr_en_raises_the_sci_at_the_toggle_until_tmr_sts_is_cleared(pm, ctx):
    assert pm.next_deadline() is None
    pio_write(pm, PM1_EN, TMR_EN, 2)
    assert ctx.timer_changes == 1
    first = time_of_tick(1 << 23, PM_HZ)
    assert pm.next_deadline() == first
    ctx.clock.set(first)
    pm.tick(first)
    assert ctx.levels[9] is True and pm.next_deadline() is None
    pio_write(pm, PM1_STS, TMR_STS, 2)
    assert ctx.levels[9] is False
    assert pm.next_deadline() == time_of_tick(2 << 23, PM_HZ)
    pio_write(pm, PM1_EN, 0, 2)
    assert pm.next_deadline() is None


def test_enabling_an_already_set_status_raises_the_sci_at_once(ctx):
    pm = AcpiPm(ctx, sci_irq=11)
    ctx.clock.set(time_of_tick(1 << 23, PM_HZ))
    pio_write(pm, PM1_EN, TMR_EN, 2)
    assert ctx.levels[11] is True


def test_event_block_takes_byte_word_and_dword_accesses(pm, ctx):
    pio_write(pm, PM1_EN + 1, PWRBTN_EN >> 8, 1)
    assert pio_read(pm, PM1_EN, 2) == PWRBTN_EN
    pio_write(pm, PM1_STS, 0xFFFF_0000 | TMR_EN, 4)  # dword: status W1C, enable written
    assert pio_read(pm, PM1_STS, 4) == 0x0721 << 16  # only enable bits that exist
    assert pio_read(pm, PM1_EN + 1, 1) == 0x07
    assert ctx.levels.get(9, False) is False  # nothing pending: no SCI


def test_ports_are_properties(ctx):
    pm = AcpiPm(ctx, **AcpiPm.parse_props({"pm1a_evt": "0xb000", "pm1a_cnt": "0xb004", "pm_tmr": "0xb008"}))
    assert [(r.base, r.size) for r in pm.bus_ranges()] == [(0xB000, 4), (0xB004, 2), (0xB008, 4)]
    ctx.clock.set(10**9)
    assert pio_read(pm, 0xB008, 4) == PM_HZ
    assert pio_read(pm, 0xB004, 2) == SCI_EN


def test_default_ranges_match_the_fadt(pm):
    assert [(r.bus, r.base, r.size) for r in pm.bus_ranges()] == [("pio", 0x600, 4), ("pio", 0x604, 2),
                                                                   ("pio", 0x608, 4)]
