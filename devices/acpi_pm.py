# SPDX-License-Identifier: GPL-2.0-or-later
"""ACPI fixed hardware: the PM1a event and control blocks, the PM timer, and the SCI.

Three port ranges, each a property so the FADT and the device agree:

* PM1a event block (``pm1a_evt``, 4 bytes): PM1_STS (2 bytes, write 1 to clear) then PM1_EN
  (2 bytes).  TMR_STS is set each time bit 23 of the PM timer toggles; WAK_STS is set when the
  guest asks for a sleep state other than S5 (see below); PWRBTN_STS and the other sources are
  never set (there is no power button to press).  The enable bits of PM1_EN are kept as written.
* PM1a control block (``pm1a_cnt``, 2 bytes): SCI_EN always reads 1 -- the machine is in ACPI
  mode from power-on, there is no SMI_CMD port to switch modes; BM_RLD and SLP_TYP (bits 10-12)
  read back as written; SLP_EN (bit 13) and GBL_RLS are write-only.  Writing SLP_EN with
  SLP_TYP equal to the ``s5_type`` property (the _S5 package of the DSDT) powers off:
  ``ctx.stop("poweroff", 0)``.  Other sleep types (S1-S4) are not supported: the sleep ends at
  once, as if a wake event came, with WAK_STS set -- an OS polling WAK_STS after its write
  carries on instead of hanging.
* PM timer (``pm_tmr``, 4 bytes, read-only): 24 bits counting at 3.579545 MHz from virtual time 0,
  exactly (``now_ns * 3579545 // 10**9``, modulo 2**24); the FADT must leave TMR_VAL_EXT clear.

The SCI (``sci_irq``, a level-triggered, active-high line: ``ctx.irq(sci_irq).set_level``) is high
while an enabled status bit is set.  The only source that can raise it is the timer's TMR_STS
with TMR_EN, through ``next_deadline()``/``tick``.  Every register takes byte, word and dword
accesses at any offset within its block.

Not supported: PM1b blocks, GPE blocks, the power and sleep buttons, bus master status, the
global lock (GBL_STS / GBL_RLS), RTC wake, the 32-bit timer extension, SMI_CMD and legacy mode.
"""

from __future__ import annotations

from devices.bus import Access
from devices.device import BusRange, Device, Prop, PropertyError
from vmm.clock import ticks_at, time_of_tick

PM1_EVT_SIZE = 4
PM1_CNT_SIZE = 2
PM_TMR_SIZE = 4
ENABLE_OFFSET = 2    # PM1_EN follows the 2-byte PM1_STS in the event block

# PM1_STS and PM1_EN
TMR_STS = 0x0001
WAK_STS = 0x8000
TMR_EN = 0x0001
#: Enable bits that exist: timer, global lock, power button, sleep button, RTC.
PM1_EN_BITS = 0x0721
# PM1_CNT
SCI_EN = 0x0001
BM_RLD = 0x0002
SLP_TYP_SHIFT = 10
SLP_TYP = 0x7 << SLP_TYP_SHIFT
SLP_EN = 0x2000
PM1_CNT_KEPT = BM_RLD | SLP_TYP   # what reads back as written

PM_TIMER_HZ = 3_579_545
PM_TIMER_BITS = 24
#: TMR_STS is set whenever the timer's top bit toggles: every 2**23 counts.
TMR_STS_PERIOD = 1 << (PM_TIMER_BITS - 1)


def _lanes(offset: int, size: int) -> int:
    """The bits of a register that an access of ``size`` bytes at byte ``offset`` covers."""
    return ((1 << (8 * size)) - 1) << (8 * offset)


class AcpiPm(Device):
    """ACPI PM1a event/control blocks and PM timer; SCI on ``sci_irq``."""

    name = "acpi-pm"
    description = "ACPI fixed hardware: PM1a event/control blocks, 24-bit PM timer, SCI; S5 powers off"
    user_creatable = False
    props = (
        Prop("pm1a_evt", int, 0x600, "PM1a event block port (PM1_STS, PM1_EN: 4 bytes)"),
        Prop("pm1a_cnt", int, 0x604, "PM1a control block port (2 bytes)"),
        Prop("pm_tmr", int, 0x608, "PM timer port (4 bytes)"),
        Prop("sci_irq", int, 9, "interrupt line of the SCI"),
        Prop("s5_type", int, 0, "SLP_TYP value of S5 (soft off), as in the DSDT's _S5"),
    )

    def __init__(self, ctx, pm1a_evt: int = 0x600, pm1a_cnt: int = 0x604, pm_tmr: int = 0x608,
                 sci_irq: int = 9, s5_type: int = 0):
        if not 0 <= s5_type <= SLP_TYP >> SLP_TYP_SHIFT:
            raise PropertyError(f"property 's5_type': {s5_type} is not a 3-bit SLP_TYP value (0-7)")
        self.ctx = ctx
        self.pm1a_evt, self.pm1a_cnt, self.pm_tmr = pm1a_evt, pm1a_cnt, pm_tmr
        self.s5_type = s5_type
        self.sci_irq = sci_irq
        self.sci = ctx.irq(sci_irq)
        self._sci_level = False
        self.status = 0       # PM1_STS bits other than TMR_STS
        self.enable = 0
        self.control = 0
        self._timer_toggle = TMR_STS_PERIOD   # count at which TMR_STS is next set
        self._deadline: int | None = None

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.pm1a_evt, PM1_EVT_SIZE), BusRange("pio", self.pm1a_cnt, PM1_CNT_SIZE),
                BusRange("pio", self.pm_tmr, PM_TMR_SIZE)]

    def _pm1_status(self, now: int) -> int:
        return self.status | (TMR_STS if ticks_at(now, PM_TIMER_HZ) >= self._timer_toggle else 0)

    def read(self, access: Access) -> int:
        base = access.address - access.offset
        now = self.ctx.clock.now()
        if base == self.pm1a_evt:
            register = self._pm1_status(now) | self.enable << (8 * ENABLE_OFFSET)
        elif base == self.pm1a_cnt:
            register = self.control | SCI_EN
        else:
            register = ticks_at(now, PM_TIMER_HZ) & ((1 << PM_TIMER_BITS) - 1)
        return (register & _lanes(access.offset, access.size)) >> (8 * access.offset)

    def write(self, access: Access, value: int) -> None:
        base = access.address - access.offset
        lanes = _lanes(access.offset, access.size)
        written = (value << (8 * access.offset)) & lanes
        if base == self.pm1a_evt:
            self._write_event_block(written, lanes)
        elif base == self.pm1a_cnt:
            self.control = ((self.control & ~lanes) | written) & PM1_CNT_KEPT
            if written & SLP_EN:
                self._sleep(self.control >> SLP_TYP_SHIFT)
        # the PM timer is read-only

    def _write_event_block(self, written: int, lanes: int) -> None:
        now = self.ctx.clock.now()
        cleared = written & 0xFFFF   # PM1_STS: write 1 to clear
        self.status &= ~cleared
        if cleared & TMR_STS:
            self._timer_toggle = (ticks_at(now, PM_TIMER_HZ) // TMR_STS_PERIOD + 1) * TMR_STS_PERIOD
        enable_lanes = lanes >> (8 * ENABLE_OFFSET)
        self.enable = ((self.enable & ~enable_lanes) | (written >> (8 * ENABLE_OFFSET))) & PM1_EN_BITS
        old_deadline = self._deadline
        self._update_sci(now)
        if self._deadline != old_deadline:
            self.ctx.timers_changed()

    def _sleep(self, sleep_type: int) -> None:
        if sleep_type == self.s5_type:
            self.ctx.stop("poweroff", 0)
        else:
            self.status |= WAK_STS  # unsupported sleep state: wake at once

    def _update_sci(self, now: int) -> None:
        level = bool(self._pm1_status(now) & self.enable)
        if level != self._sci_level:
            self._sci_level = level
            self.sci.set_level(level)
        waiting_for_timer = self.enable & TMR_EN and not level
        self._deadline = time_of_tick(self._timer_toggle, PM_TIMER_HZ) if waiting_for_timer else None

    def next_deadline(self) -> int | None:
        return self._deadline

    def tick(self, now: int) -> None:
        self._update_sci(now)
