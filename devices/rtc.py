# SPDX-License-Identifier: GPL-2.0-or-later
"""The MC146818 real-time clock and CMOS memory at ports 0x70 (index) and 0x71 (data).

The clock shows the ``epoch`` property (seconds since 1970-01-01 00:00 UTC) plus virtual time:
at virtual time 0 it reads exactly ``epoch`` and it updates at every whole virtual second, so the
guest sees the same dates on every run.  Nothing is ticked: the time registers, UIP and the
interrupt flags are computed from ``ctx.clock.now()`` when the guest reads them.

Registers, as the datasheet describes them:

* 0-9 time, date and alarm, in BCD or binary (register B's DM bit) and 24- or 12-hour format
  (B's 24/12 bit, bit 7 of the hours = PM); an alarm byte of 0xC0-0xFF matches any value; the
  day of the week (1 = Sunday) starts out right for the epoch and, as on the chip, counts on its
  own: it advances at midnight, and writing the date leaves it alone;
* A: UIP is set for the last 244 us (8 periods of the 32.768 kHz time base) of each second; the
  divider bits run the clock only at 010 (the PC's 32.768 kHz crystal); any other value stops it,
  and releasing it to 010 makes the first update come half a second later; rate bits 3-0 select
  the periodic interrupt (RS 1 and 2 are 256 and 128 Hz, as on the 32.768 kHz time base);
* B: SET stops updates so the guest can write the time (and clears UIE, as on the chip);
  PIE/AIE/UIE enable the periodic, alarm and update-ended interrupts;
* C: IRQF, PF, AF, UF flags, cleared by reading C; the flags are set whether or not enabled;
* D: VRT (battery good) always set;
* 0x32: the century, counted with the date (the PC BIOS convention ACPI's FADT CENTURY points at).

IRQF drives IRQ 8 as a level (``ctx.irq(8)``): high until the guest reads register C.  Timers
exist only for enabled interrupts and only while the line is low (``next_deadline()``/``tick``).

CMOS memory 0x0E-0x7F is plain read/write memory, filled as a PC BIOS leaves it: no floppy or
disk types, base memory (0x15/0x16, KiB), extended memory above 1 MiB (0x17/0x18 and the POST copy
0x30/0x31, KiB, saturating at 0xFFFF), memory between 16 MiB and 4 GiB in 64 KiB units
(0x34/0x35), all from ``ctx.ram_size``, and the standard checksum of 0x10-0x2D at 0x2E/0x2F.
Port 0x70 reads back the last index written; its bit 7 (NMI disable) is kept in ``nmi_disabled``.

Not supported: the square-wave output (SQWE is kept, no pin), daylight saving (DSE is kept, no
effect), the 4.194304 and 1.048576 MHz time bases, the second CMOS bank at 0x72/0x73.  Time
registers are kept as a date, not as raw bytes: a written value out of range is clamped into range
(the day into its month), and switching B's DM or 24/12 bit shows the same time in the new format
(the chip would keep the old bytes until rewritten).  Only byte accesses are meaningful: a wider
access reads the addressed port in its low byte.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from devices.bus import Access
from devices.device import BusRange, Device, Prop, PropertyError
from vmm.clock import NS_PER_S, ticks_at, time_of_tick

if TYPE_CHECKING:
    from datetime import datetime

RTC_BASE = 0x70
RTC_PORTS = 2
INDEX_OFFSET = 0
NMI_DISABLE = 0x80
INDEX_MASK = 0x7F

SECONDS, SECONDS_ALARM, MINUTES, MINUTES_ALARM, HOURS, HOURS_ALARM = range(6)
DAY_OF_WEEK, DAY_OF_MONTH, MONTH, YEAR = range(6, 10)
REG_A, REG_B, REG_C, REG_D = range(0x0A, 0x0E)
CENTURY = 0x32
ALARMS = (SECONDS_ALARM, MINUTES_ALARM, HOURS_ALARM)

# Register A
UIP = 0x80
DIVIDER_MASK = 0x70
DIVIDER_32K = 0x20
RATE_MASK = 0x0F
# Register B
SET = 0x80
PIE = 0x40
AIE = 0x20
UIE = 0x10
BINARY = 0x04
HOUR_24 = 0x02
# Register C: the flags sit at the same bits as their enables in B
IRQF = 0x80
PF = 0x40
AF = 0x20
UF = 0x10
INTERRUPT_BITS = PF | AF | UF
# Register D
VRT = 0x80

PM = 0x80            # bit 7 of the hours registers in 12-hour mode
DONT_CARE = 0xC0     # alarm bytes 0xC0-0xFF match any value

TIME_BASE_HZ = 32_768
UIP_PERIODS = 8      # UIP rises this many time-base periods (244.14 us) before an update
#: Offset into each second at which UIP rises.
UIP_START_NS = time_of_tick(TIME_BASE_HZ - UIP_PERIODS, TIME_BASE_HZ)
#: Divider released from reset: the first update comes half a second later.
FIRST_UPDATE_NS = NS_PER_S // 2

RESET_REG_A = DIVIDER_32K | 0x06   # 32.768 kHz time base, 1024 Hz periodic rate
RESET_REG_B = HOUR_24              # BCD, 24-hour, no interrupts

SECONDS_PER_DAY = 86_400
#: 2026-01-01 00:00:00 UTC.
DEFAULT_EPOCH = 1_767_225_600
#: The dates the clock holds (datetime's years 1-9999), in seconds since 1970-01-01 00:00 UTC.
FIRST_SECOND, LAST_SECOND = -62_135_596_800, 253_402_300_799

CMOS_SIZE = 128
BASE_MEMORY = 0x15           # KiB below 640 KiB, 2 bytes
EXTENDED_MEMORY = 0x17       # KiB above 1 MiB, 2 bytes
POST_EXTENDED_MEMORY = 0x30  # the same, as found by the POST
MEMORY_ABOVE_16M = 0x34      # 64 KiB units between 16 MiB and 4 GiB, 2 bytes
CHECKSUM = 0x2E              # big-endian sum of 0x10-0x2D
CHECKSUMMED = range(0x10, 0x2E)
KIB = 1 << 10
MIB = 1 << 20


# datetime and calendar are imported where the guest reads or sets the date, not with the module:
# every machine has an RTC, few guests look at its clock, and the two imports were ~1.5% of booting a
# test kernel from the command line.
def _date_of(seconds: int) -> datetime:
    from datetime import datetime, timedelta

    return datetime(1970, 1, 1) + timedelta(seconds=seconds)


def _seconds_of(date: datetime) -> int:
    from datetime import datetime, timedelta

    return (date - datetime(1970, 1, 1)) // timedelta(seconds=1)


def _to_bcd(value: int) -> int:
    return (value // 10) << 4 | value % 10


def _from_bcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0x0F)


def _first_match(choices: list[Sequence[int]], target: tuple[int, ...]) -> tuple[int, ...] | None:
    """The smallest tuple, in lexicographic order, that takes each field from ``choices`` (one
    ascending sequence of allowed values per field) and is not below ``target``; None if none is."""
    if not choices:
        return ()
    for value in choices[0]:
        if value < target[0]:
            continue
        rest_target = target[1:] if value == target[0] else (0,) * (len(choices) - 1)
        rest = _first_match(choices[1:], rest_target)
        if rest is not None:
            return (value, *rest)
    return None


def cmos_memory(ram_size: int) -> bytearray:
    """CMOS memory as a PC BIOS leaves it for ``ram_size`` bytes of RAM."""
    cmos = bytearray(CMOS_SIZE)
    base = min(ram_size // KIB, 640)
    extended = min(max(ram_size - MIB, 0) // KIB, 0xFFFF)
    above_16m = min(max(min(ram_size, 1 << 32) - 16 * MIB, 0) // (64 * KIB), 0xFFFF)
    for offset, value in ((BASE_MEMORY, base), (EXTENDED_MEMORY, extended),
                          (POST_EXTENDED_MEMORY, extended), (MEMORY_ABOVE_16M, above_16m)):
        cmos[offset:offset + 2] = value.to_bytes(2, "little")
    checksum = sum(cmos[CHECKSUMMED.start:CHECKSUMMED.stop])
    cmos[CHECKSUM:CHECKSUM + 2] = checksum.to_bytes(2, "big")
    return cmos


class Rtc(Device):
    """MC146818 RTC + CMOS RAM at 0x70/0x71, IRQ 8."""

    name = "mc146818rtc"
    description = "MC146818 real-time clock and CMOS memory (ports 0x70-0x71, IRQ 8)"
    user_creatable = False
    props = (Prop("epoch", int, DEFAULT_EPOCH, "time at virtual time 0, in seconds since 1970-01-01 00:00 UTC"),)

    def __init__(self, ctx, epoch: int = DEFAULT_EPOCH):
        if not FIRST_SECOND <= epoch <= LAST_SECOND:
            raise PropertyError(f"property 'epoch': {epoch} is not a date in years 1-9999")
        self.ctx = ctx
        self.irq8 = ctx.irq(8)
        self.index = 0
        self.nmi_disabled = False
        self.reg_a = RESET_REG_A
        self.reg_b = RESET_REG_B
        self.flags = 0
        self.alarms = dict.fromkeys(ALARMS, 0)
        self.day_of_week_offset = 0     # days the guest moved the weekday away from the date's
        self.cmos = cmos_memory(ctx.ram_size)
        # The clock: it read ``_seconds`` at ``_seconds_ns`` (a second boundary of the divider),
        # or reads ``_seconds`` while stopped.  ``_divider_origin`` is a second boundary of the
        # divider chain, None while the chain is held in reset.
        self._divider_origin: int | None = 0
        self._seconds = epoch
        self._seconds_ns = 0
        self._flags_until = ctx.clock.now()   # flags hold every event up to this instant
        self._irq_level = False
        self._deadline: int | None = None

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", RTC_BASE, RTC_PORTS)]

    # -- the clock --------------------------------------------------------------------------

    def _running(self) -> bool:
        return self._divider_origin is not None and not self.reg_b & SET

    def _seconds_at(self, now: int) -> int:
        if not self._running():
            return self._seconds
        return self._seconds + (now - self._seconds_ns) // NS_PER_S

    def _rebase(self, now: int, seconds: int) -> None:
        """Make the clock read ``seconds`` from ``now``, keeping the divider's phase."""
        self._seconds = seconds
        if self._divider_origin is not None:
            self._seconds_ns = now - (now - self._divider_origin) % NS_PER_S

    def _update_in_progress(self, now: int) -> bool:
        return self._running() and (now - self._divider_origin) % NS_PER_S >= UIP_START_NS

    # -- events: updates, alarms, periodic ticks --------------------------------------------

    def _next_update(self, after: int) -> int | None:
        if not self._running():
            return None
        return self._seconds_ns + ((after - self._seconds_ns) // NS_PER_S + 1) * NS_PER_S

    def _next_alarm(self, after: int) -> int | None:
        if not self._running():
            return None
        current = self._seconds_at(after)
        choices = []
        for register, limit in ((HOURS_ALARM, 24), (MINUTES_ALARM, 60), (SECONDS_ALARM, 60)):
            raw = self.alarms[register]
            value = self._decode_hour(raw) if register == HOURS_ALARM else self._decode(raw)
            choices.append(range(limit) if raw >= DONT_CARE else [value] if value < limit else [])
        day, second_of_day = divmod(current + 1, SECONDS_PER_DAY)
        target = (second_of_day // 3600, second_of_day // 60 % 60, second_of_day % 60)
        match = _first_match(choices, target)
        if match is None:
            day += 1
            match = _first_match(choices, (0, 0, 0))
            if match is None:
                return None  # an alarm byte out of range never matches
        hour, minute, second = match
        alarm = day * SECONDS_PER_DAY + hour * 3600 + minute * 60 + second
        return self._seconds_ns + (alarm - self._seconds) * NS_PER_S

    def _periodic_clocks(self) -> int | None:
        """Time-base periods between periodic interrupts, or None when they are off."""
        rate = self.reg_a & RATE_MASK
        if rate == 0 or self._divider_origin is None:
            return None
        if rate < 3:
            rate += 7  # on the 32.768 kHz time base, RS 1 and 2 select the taps of RS 8 and 9
        return 1 << (rate - 1)

    def _next_periodic(self, after: int) -> int | None:
        period = self._periodic_clocks()
        if period is None:
            return None
        clocks = ticks_at(after - self._divider_origin, TIME_BASE_HZ)
        return self._divider_origin + time_of_tick((clocks // period + 1) * period, TIME_BASE_HZ)

    def _events(self):
        """(flag, next event after an instant) for each interrupt source."""
        return ((PF, self._next_periodic), (AF, self._next_alarm), (UF, self._next_update))

    def _collect_flags(self, now: int) -> None:
        """Set the flags of every event between the last collection and ``now``."""
        for flag, next_event in self._events():
            event = next_event(self._flags_until)
            if event is not None and event <= now:
                self.flags |= flag
        self._flags_until = now

    def _update_irq(self) -> None:
        level = bool(self.flags & self.reg_b & INTERRUPT_BITS)
        if level != self._irq_level:
            self._irq_level = level
            self.irq8.set_level(level)
        deadlines = [] if level else [next_event(self._flags_until) for flag, next_event in self._events()
                                       if self.reg_b & flag]
        self._deadline = min((d for d in deadlines if d is not None), default=None)

    def next_deadline(self) -> int | None:
        return self._deadline

    def tick(self, now: int) -> None:
        self._collect_flags(now)
        self._update_irq()

    # -- register formats ---------------------------------------------------------------------

    def _encode(self, value: int) -> int:
        return value if self.reg_b & BINARY else _to_bcd(value)

    def _decode(self, raw: int) -> int:
        return raw if self.reg_b & BINARY else _from_bcd(raw)

    def _encode_hour(self, hour: int) -> int:
        if self.reg_b & HOUR_24:
            return self._encode(hour)
        return self._encode(hour % 12 or 12) | (PM if hour >= 12 else 0)

    def _decode_hour(self, raw: int) -> int:
        if self.reg_b & HOUR_24:
            return self._decode(raw)
        return self._decode(raw & ~PM) % 12 + (12 if raw & PM else 0)

    def _read_time(self, index: int, now: int) -> int:
        date = _date_of(self._seconds_at(now))
        if index == HOURS:
            return self._encode_hour(date.hour)
        if index == DAY_OF_WEEK:  # 1 = Sunday
            return self._encode((date.isoweekday() + self.day_of_week_offset) % 7 + 1)
        value = {SECONDS: date.second, MINUTES: date.minute, DAY_OF_MONTH: date.day, MONTH: date.month,
                 YEAR: date.year % 100, CENTURY: date.year // 100}[index]
        return self._encode(value)

    def _write_time(self, index: int, raw: int, now: int) -> None:
        import calendar
        from datetime import datetime

        date = _date_of(self._seconds_at(now))
        if index == DAY_OF_WEEK:
            weekday = min(max(self._decode(raw), 1), 7)
            self.day_of_week_offset = (weekday - 1 - date.isoweekday()) % 7
            return
        fields = {SECONDS: date.second, MINUTES: date.minute, HOURS: date.hour, DAY_OF_MONTH: date.day,
                  MONTH: date.month, YEAR: date.year % 100, CENTURY: date.year // 100}
        fields[index] = self._decode_hour(raw) if index == HOURS else self._decode(raw)
        year = max(min(fields[CENTURY], 99) * 100 + min(fields[YEAR], 99), 1)
        month = min(max(fields[MONTH], 1), 12)
        day = min(max(fields[DAY_OF_MONTH], 1), calendar.monthrange(year, month)[1])
        written = datetime(year, month, day, min(fields[HOURS], 23), min(fields[MINUTES], 59),
                           min(fields[SECONDS], 59))
        # the weekday is a counter of its own: a new date does not change it
        self.day_of_week_offset = (self.day_of_week_offset + date.isoweekday() - written.isoweekday()) % 7
        self._rebase(now, _seconds_of(written))

    # -- the bus -----------------------------------------------------------------------------

    def read(self, access: Access) -> int:
        if access.offset == INDEX_OFFSET:
            return self.index | (NMI_DISABLE if self.nmi_disabled else 0)
        now = self.ctx.clock.now()
        index = self.index
        if index in ALARMS:
            return self.alarms[index]
        if index < REG_A or index == CENTURY:
            return self._read_time(index, now)
        if index == REG_A:
            return self.reg_a | (UIP if self._update_in_progress(now) else 0)
        if index == REG_B:
            return self.reg_b
        if index == REG_C:
            self._collect_flags(now)
            value = self.flags | (IRQF if self.flags & self.reg_b & INTERRUPT_BITS else 0)
            self.flags = 0
            self._refresh()
            return value
        if index == REG_D:
            return VRT
        return self.cmos[index]

    def write(self, access: Access, value: int) -> None:
        value &= 0xFF
        if access.offset == INDEX_OFFSET:
            self.index = value & INDEX_MASK
            self.nmi_disabled = bool(value & NMI_DISABLE)
            return
        index = self.index
        if index in (REG_C, REG_D):
            return  # read-only
        if index > REG_D and index != CENTURY:
            self.cmos[index] = value
            return
        now = self.ctx.clock.now()
        self._collect_flags(now)  # events so far happened under the old settings
        seconds = self._seconds_at(now)
        if index in ALARMS:
            self.alarms[index] = value
        elif index == REG_A:
            self.reg_a = value & ~UIP
            if value & DIVIDER_MASK != DIVIDER_32K:
                self._divider_origin = None
            elif self._divider_origin is None:
                self._divider_origin = now + FIRST_UPDATE_NS - NS_PER_S
            self._rebase(now, seconds)
        elif index == REG_B:
            if value & SET and not self.reg_b & SET:
                value &= ~UIE
            self.reg_b = value
            self._rebase(now, seconds)
        else:
            self._write_time(index, value, now)
        self._refresh()

    def _refresh(self) -> None:
        """After a guest access changed the flags or the schedule: the line and the deadline."""
        old_deadline = self._deadline
        self._update_irq()
        if self._deadline != old_deadline:
            self.ctx.timers_changed()
