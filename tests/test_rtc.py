# SPDX-License-Identifier: GPL-2.0-or-later
"""MC146818 RTC: time from the epoch plus virtual time in BCD and binary, 12/24-hour, UIP window,
SET and divider reset as Linux writes the time, register C flags and IRQ 8, CMOS memory sizes."""

from datetime import datetime, timezone

import pytest

from devices.device import PropertyError
from devices.rtc import DEFAULT_EPOCH, Rtc
from tests.fake_context import FakeContext, pio_read, pio_write

NS = 10**9
SECONDS, MINUTES, HOURS, WEEKDAY, DAY, MONTH, YEAR = 0, 2, 4, 6, 7, 8, 9
REG_A, REG_B, REG_C, REG_D, CENTURY = 0x0A, 0x0B, 0x0C, 0x0D, 0x32
#: UIP rises 8 periods of 32.768 kHz (244140.625 ns) before each update.
UIP_START = NS - 244_140


def epoch_of(*date):
    return int(datetime(*date, tzinfo=timezone.utc).timestamp())


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def rtc(ctx):
    return Rtc(ctx)


def rd(rtc, index):
    pio_write(rtc, 0x70, index)
    return pio_read(rtc, 0x71)


def wr(rtc, index, value):
    pio_write(rtc, 0x70, index)
    pio_write(rtc, 0x71, value)


def clock(rtc):
    """(century, year, month, day, hours, minutes, seconds) registers as read."""
    return tuple(rd(rtc, index) for index in (CENTURY, YEAR, MONTH, DAY, HOURS, MINUTES, SECONDS))


def test_default_epoch_is_2026_new_year_in_bcd_24_hour(rtc):
    assert DEFAULT_EPOCH == epoch_of(2026, 1, 1)
    assert clock(rtc) == (0x20, 0x26, 0x01, 0x01, 0x00, 0x00, 0x00)
    assert rd(rtc, WEEKDAY) == 5  # Thursday (1 = Sunday)
    assert (rd(rtc, REG_A), rd(rtc, REG_B), rd(rtc, REG_C), rd(rtc, REG_D)) == (0x26, 0x02, 0x00, 0x80)


def test_time_is_epoch_plus_virtual_time_across_a_leap_day_and_a_year(ctx):
    rtc = Rtc(ctx, epoch=epoch_of(2024, 2, 28, 23, 59, 58))
    ctx.clock.set(2 * NS - 1)
    assert clock(rtc) == (0x20, 0x24, 0x02, 0x28, 0x23, 0x59, 0x59)
    ctx.clock.set(2 * NS)
    assert clock(rtc) == (0x20, 0x24, 0x02, 0x29, 0x00, 0x00, 0x00)
    assert rd(rtc, WEEKDAY) == 5  # Thursday
    ctx.clock.set((2 + 307 * 86_400 + 12 * 3600 + 34 * 60 + 56) * NS)
    assert clock(rtc) == (0x20, 0x25, 0x01, 0x01, 0x12, 0x34, 0x56)


def test_binary_and_12_hour_formats(ctx):
    rtc = Rtc(ctx, epoch=epoch_of(1999, 12, 31, 23, 45, 6))
    wr(rtc, REG_B, 0x04)  # binary, 12-hour
    assert clock(rtc) == (19, 99, 12, 31, 0x80 | 11, 45, 6)
    ctx.clock.set(15 * 60 * NS)
    assert clock(rtc) == (20, 0, 1, 1, 12, 0, 6)  # midnight is 12 AM
    wr(rtc, REG_B, 0x00)  # BCD, 12-hour
    ctx.clock.set((15 * 60 + 13 * 3600) * NS)
    assert rd(rtc, HOURS) == 0x81  # 1 PM
    ctx.clock.set((15 * 60 + 12 * 3600) * NS)
    assert rd(rtc, HOURS) == 0x92  # 12 PM (noon)


def test_uip_is_set_for_the_last_244_us_of_each_second(rtc, ctx):
    wr(rtc, REG_B, 0x06)  # binary
    for second in (0, 1, 59):
        ctx.clock.set(second * NS + UIP_START - 1)
        assert not rd(rtc, REG_A) & 0x80
        ctx.clock.set(second * NS + UIP_START)
        assert rd(rtc, REG_A) & 0x80 and rd(rtc, SECONDS) == second % 60
        ctx.clock.set((second + 1) * NS)
        assert not rd(rtc, REG_A) & 0x80 and rd(rtc, SECONDS) == (second + 1) % 60


def test_set_freezes_the_clock_and_clears_uip_and_uie(rtc, ctx):
    wr(rtc, REG_B, 0x12)  # UIE
    ctx.clock.set(3 * NS + UIP_START)
    wr(rtc, REG_B, 0x82 | 0x10)  # SET (and UIE again: SET rising clears it)
    assert rd(rtc, REG_B) == 0x82
    assert not rd(rtc, REG_A) & 0x80
    ctx.clock.set(100 * NS)
    assert rd(rtc, SECONDS) == 0x03


def test_time_written_under_set_runs_on_in_the_dividers_phase(rtc, ctx):
    ctx.clock.set(10 * NS + 300_000_000)
    wr(rtc, REG_B, 0x82)
    for index, value in ((HOURS, 0x07), (MINUTES, 0x08), (SECONDS, 0x09), (DAY, 0x15), (MONTH, 0x06),
                         (YEAR, 0x30), (CENTURY, 0x20)):
        wr(rtc, index, value)
    ctx.clock.set(20 * NS + 500_000_000)
    wr(rtc, REG_B, 0x02)
    assert clock(rtc) == (0x20, 0x30, 0x06, 0x15, 0x07, 0x08, 0x09)
    assert rd(rtc, WEEKDAY) == 5  # still Thursday: the weekday is only ever written on its own
    ctx.clock.set(21 * NS - 1)
    assert rd(rtc, SECONDS) == 0x09
    ctx.clock.set(21 * NS)  # updates stayed on whole virtual seconds
    assert rd(rtc, SECONDS) == 0x10


def test_linux_set_time_with_divider_reset_updates_half_a_second_after_release(rtc, ctx):
    ctx.clock.set(5 * NS + 123)
    wr(rtc, REG_B, rd(rtc, REG_B) | 0x80)
    saved_a = rd(rtc, REG_A)
    wr(rtc, REG_A, saved_a | 0x70)  # RTC_DIV_RESET2
    for index, value in ((SECONDS, 0x58), (MINUTES, 0x59), (HOURS, 0x23), (DAY, 0x31), (MONTH, 0x12),
                         (YEAR, 0x99)):
        wr(rtc, index, value)
    wr(rtc, REG_B, 0x02)  # SET cleared, divider still in reset: time stands still
    ctx.clock.set(7 * NS)
    assert clock(rtc) == (0x20, 0x99, 0x12, 0x31, 0x23, 0x59, 0x58)
    wr(rtc, REG_A, saved_a)
    ctx.clock.set(7 * NS + NS // 2 - 1)
    assert rd(rtc, SECONDS) == 0x58
    ctx.clock.set(7 * NS + NS // 2)
    assert rd(rtc, SECONDS) == 0x59
    ctx.clock.set(8 * NS + NS // 2)
    assert clock(rtc) == (0x21, 0x00, 0x01, 0x01, 0x00, 0x00, 0x00)  # into the next century


def test_written_values_are_clamped_into_range(rtc):
    wr(rtc, REG_B, 0x86)  # SET, binary, 24-hour
    wr(rtc, MONTH, 2)
    wr(rtc, DAY, 31)
    wr(rtc, MINUTES, 99)
    assert (rd(rtc, MONTH), rd(rtc, DAY), rd(rtc, MINUTES)) == (2, 28, 59)  # 2026 is no leap year
    wr(rtc, WEEKDAY, 1)
    assert rd(rtc, WEEKDAY) == 1
    wr(rtc, DAY, 1)
    assert rd(rtc, WEEKDAY) == 1  # a weekday written keeps its own count, as on the chip


def test_register_c_flags_are_set_without_enables_and_cleared_by_reading(rtc, ctx):
    ctx.clock.set(NS + 1)
    assert rd(rtc, REG_C) == 0x40 | 0x10  # periodic ticks and an update passed; IRQF needs enables
    assert rd(rtc, REG_C) == 0
    assert ctx.levels.get(8) is None


def test_update_ended_interrupt_raises_irq8_until_register_c_is_read(rtc, ctx):
    ctx.clock.set(NS // 3)
    changes = ctx.timer_changes
    wr(rtc, REG_B, 0x12)  # UIE
    assert rtc.next_deadline() == NS and ctx.timer_changes == changes + 1
    ctx.clock.set(NS)
    rtc.tick(NS)
    assert ctx.levels[8] is True and rtc.next_deadline() is None
    ctx.clock.set(NS + 5000)
    assert rd(rtc, REG_C) == 0x80 | 0x40 | 0x10
    assert ctx.levels[8] is False and rtc.next_deadline() == 2 * NS


def test_periodic_interrupt_at_1024_hz_lands_on_exact_ns(rtc, ctx):
    wr(rtc, REG_B, 0x42)  # PIE, default rate 6 = 1024 Hz
    deadlines = []
    for _ in range(3):
        deadline = rtc.next_deadline()
        ctx.clock.set(deadline)
        rtc.tick(deadline)
        deadlines.append(deadline)
        assert ctx.levels[8] is True
        assert rd(rtc, REG_C) & 0xC0 == 0xC0
    assert deadlines == [976_563, 1_953_125, 2_929_688]  # ceil(m * 10**9 / 1024)


@pytest.mark.parametrize("rate, first_ns", [
    (3, 122_071),       # 8192 Hz: 122070.3125 ns, rounded up to the ns the edge falls in
    (1, 3_906_250),     # RS 1 and 2 are 256 and 128 Hz on the 32.768 kHz time base
    (2, 7_812_500),
    (15, 500_000_000),  # 2 Hz
])
def test_periodic_rates(rtc, ctx, rate, first_ns):
    wr(rtc, REG_A, 0x20 | rate)
    wr(rtc, REG_B, 0x42)
    assert rtc.next_deadline() == first_ns


def test_alarm_with_dont_care_fields(rtc, ctx):
    wr(rtc, 1, 0x30)  # seconds alarm 30
    wr(rtc, 3, 0xC0)  # any minute
    wr(rtc, 5, 0xFF)  # any hour
    wr(rtc, REG_B, 0x22)  # AIE
    assert rtc.next_deadline() == 30 * NS
    ctx.clock.set(30 * NS)
    rtc.tick(30 * NS)
    assert rd(rtc, REG_C) == 0x80 | 0x20 | 0x40 | 0x10
    assert rtc.next_deadline() == 90 * NS


def test_daily_alarm_comes_tomorrow_once_passed(ctx):
    rtc = Rtc(ctx, epoch=epoch_of(2026, 1, 1, 12, 0, 0))
    for index, value in ((1, 0x00), (3, 0x30), (5, 0x06)):  # 06:30:00
        wr(rtc, index, value)
    wr(rtc, REG_B, 0x22)
    assert rtc.next_deadline() == (18 * 3600 + 30 * 60) * NS
    wr(rtc, 5, 0x25)  # hour 25 never comes
    assert rtc.next_deadline() is None


def test_alarm_hour_in_12_hour_format(ctx):
    rtc = Rtc(ctx, epoch=epoch_of(2026, 1, 1, 0, 0, 0))
    wr(rtc, REG_B, 0x20)  # AIE, BCD, 12-hour
    for index, value in ((1, 0x00), (3, 0x00), (5, 0x80 | 0x03)):  # 3 PM
        wr(rtc, index, value)
    assert rtc.next_deadline() == 15 * 3600 * NS


def test_cmos_memory_and_index_port(rtc):
    wr(rtc, 0x40, 0x5A)
    assert rd(rtc, 0x40) == 0x5A
    wr(rtc, REG_C, 0xFF)
    wr(rtc, REG_D, 0x00)
    assert (rd(rtc, REG_C), rd(rtc, REG_D)) == (0x00, 0x80)  # read-only
    pio_write(rtc, 0x70, 0x80 | 0x0F)
    assert rtc.nmi_disabled and pio_read(rtc, 0x70) == 0x8F
    assert pio_read(rtc, 0x71) == 0  # shutdown status byte 0x0F


def word(rtc, index):
    return rd(rtc, index) | rd(rtc, index + 1) << 8


@pytest.mark.parametrize("ram_mib, extended_kib, above_16m", [
    (8, 7 * 1024, 0),
    (32, 31 * 1024, 256),
    (128, 0xFFFF, 1792),
    (4096, 0xFFFF, 65280),
    (16384, 0xFFFF, 65280),
])
def test_cmos_memory_sizes_as_a_bios_sets_them(ram_mib, extended_kib, above_16m):
    rtc = Rtc(FakeContext(ram_size=ram_mib << 20))
    assert word(rtc, 0x15) == 640
    assert word(rtc, 0x17) == word(rtc, 0x30) == extended_kib
    assert word(rtc, 0x34) == above_16m
    assert all(rd(rtc, index) == 0 for index in (0x10, 0x12, 0x19, 0x1A))  # no floppies, no disks
    checksum = sum(rd(rtc, index) for index in range(0x10, 0x2E))
    assert rd(rtc, 0x2E) << 8 | rd(rtc, 0x2F) == checksum


def test_epoch_out_of_range_is_refused():
    with pytest.raises(PropertyError):
        Rtc(FakeContext(), epoch=10**12)
    assert Rtc.parse_props({"epoch": "0"}) == {"epoch": 0}
    first, last = epoch_of(1, 1, 1), epoch_of(9999, 12, 31, 23, 59, 59)   # the years datetime holds
    for epoch in (first, last):
        Rtc(FakeContext(), epoch=epoch)
    for epoch in (first - 1, last + 1):
        with pytest.raises(PropertyError):
            Rtc(FakeContext(), epoch=epoch)
