# SPDX-License-Identifier: GPL-2.0-or-later
"""The Intel 8254 programmable interval timer (ports 0x40-0x43) and the PC's port 0x61.

Three 16-bit down counters share one 1.193182 MHz input clock.  Nothing is ticked: the input
clock is virtual time divided exactly (:func:`ticks_at`), and a counter's value and OUT level
are computed from the tick at which its count was loaded whenever the guest looks.  Only
counter 0 raises interrupts: each rising edge of OUT0 is a pulse on IRQ 0, delivered through
``next_deadline()``/``tick(now)`` at the virtual ns of that input clock edge.  Edges that pass
between two ``tick()`` calls (the vCPU stops at a block boundary) merge into one pulse, as they
would in the interrupt controller's request register; an edge that has passed is delivered even
if the guest reprograms counter 0 before ``tick()`` comes.

Per counter, as the 8254 datasheet describes them: control words (counter select, access mode
LSB / MSB / LSB-then-MSB, modes 0-5, modes 6 and 7 as aliases of 2 and 3), the counter latch
command, the read-back command (count and/or status byte with OUT and null count), separate read
and write byte flip-flops, counts loaded on the input clock edge after they are written, new counts
in modes 2 and 3 taking effect at the end of the current cycle (half-cycle in mode 3), and the
gate: counter 0 and 1 gates are tied high; counter 2's is bit 0 of port 0x61 (low pauses modes 0
and 4, stops modes 2 and 3 with OUT high; a rising edge restarts modes 1, 2, 3 and 5).

Port 0x61 (NMI status and control): bit 0 gate of counter 2, bit 1 speaker data enable, bits 2-3
(NMI source enables) kept as written; bit 4 the refresh toggle, which flips every 18 input clocks
(15.09 us: the DRAM refresh rate a BIOS sets counter 1 to, and what delay loops poll); bit 5 OUT2.

Not supported: BCD counting (the BCD bit is kept and read back in the status byte, but counters
count in binary, as Linux and PC firmware program them), sound (the speaker bit has no effect), counter 1 driving
anything, the NMI sources of port 0x61 (bits 6-7 read 0), a powered-on counter state other than
"waiting for a count" (there is no BIOS to program counter 0 for 18.2 Hz).  Gate changes take
effect at the input clock tick in progress rather than at the next rising clock edge.  Wider than
byte accesses read the addressed port in the low byte (the bus does not split them): only byte
accesses are meaningful on this 8-bit device.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
from typing import NamedTuple

from devices.bus import Access
from devices.device import BusRange, Device
from vmm.clock import ticks_at, time_of_tick

#: The PIT's input clock: the PC's 14.31818 MHz crystal divided by 12.
PIT_HZ = 1_193_182

PIT_BASE = 0x40
PIT_PORTS = 4
CONTROL_OFFSET = 3
SYSTEM_CONTROL_PORT = 0x61

#: Port 0x61 bits.
GATE2 = 0x01
SPEAKER_DATA = 0x02
PORT61_WRITABLE = 0x0F
REFRESH_TOGGLE = 0x10
OUT2 = 0x20

#: Input clocks between two flips of the refresh toggle (a BIOS's counter 1 count of 18).
REFRESH_TICKS = 18

#: Access modes (control word bits 5-4).
LATCH = 0
LSB_ONLY = 1
MSB_ONLY = 2
LSB_THEN_MSB = 3

READ_BACK = 3          # counter select value of the read-back command
READ_BACK_NO_COUNT = 0x20
READ_BACK_NO_STATUS = 0x10

STATUS_OUT = 0x80
STATUS_NULL_COUNT = 0x40

FULL_COUNT = 0x10000   # a written count of 0 counts 65536 input clocks
OPEN_BUS = 0xFF        # what the write-only control port reads


# The PC's clocks divided exactly from virtual time; the RTC and the ACPI PM timer use them too.


class _Run(NamedTuple):
    """A count in the counting element: ``reload`` input clocks long, loaded at input clock edge
    ``start``.  ``phase`` is where a mode 3 square wave begins (a count that takes effect at a
    half-cycle boundary starts in the low half)."""

    start: int
    reload: int
    phase: int = 0


def _count_and_out(mode: int, run: _Run, counted: int) -> tuple[int, bool]:
    """Counting element value and OUT level after ``counted`` decrementing clocks of ``run``."""
    reload = run.reload
    if mode in (2, 3):
        position = (counted + run.phase) % reload
        if mode == 2:  # N, N-1, ... 1; OUT low while the count is 1
            return (reload - position) % FULL_COUNT, position != reload - 1
        high_half = (reload + 1) // 2  # an odd count is high one clock longer than low
        out = position < high_half
        step = position if out else position - high_half
        return (reload - (reload & 1) - 2 * step) % FULL_COUNT, out  # counts down by two
    count = (reload - counted) % FULL_COUNT  # modes 0, 1, 4, 5 count on past zero
    if mode in (0, 1):
        return count, counted >= reload  # OUT rises at terminal count and stays high
    return count, counted != reload  # modes 4, 5: one clock low strobe at terminal count


def _next_rise(mode: int, run: _Run, counted: int) -> int | None:
    """Decrementing clocks after which OUT next rises, counting from the run's start, beyond
    ``counted`` clocks; None if it never will."""
    if mode in (2, 3):  # OUT rises each time the square wave / rate cycle restarts
        first = counted + 1
        return first + (-(run.phase + first)) % run.reload
    rise = run.reload if mode in (0, 1) else run.reload + 1
    return rise if rise > counted else None


class Counter:
    """One 8254 counter.  ``tick`` arguments are input clock edges (:func:`ticks_at` of now)."""

    def __init__(self, gate: bool = True):
        self.gate = gate
        self.mode = 0
        self.mode_bits = 0              # bits 3-1 of the control word, for the status byte
        self.access = LSB_THEN_MSB
        self.bcd = False
        self.count_register: int | None = None   # the last count written (1..65536), None: none yet
        self.count_loaded = False       # the count register has reached the counting element
        self.run: _Run | None = None    # None: the counting element holds ``frozen_count``
        self.frozen_count = 0
        self.frozen_out = False
        self.next_run: _Run | None = None   # a count waiting for its input clock edge
        self.paused_at: int | None = None   # gate low since this tick (modes 0, 2, 3, 4)
        self.low_byte: int | None = None    # LSB of an LSB-then-MSB count, waiting for the MSB
        self.read_msb_next = False
        self.latched_count: list[int] = []   # latched count bytes not read yet
        self.latched_status: int | None = None

    # -- state at a tick --------------------------------------------------------------------

    def _settle(self, tick: int) -> None:
        """Move a waiting count into the counting element once its clock edge has come."""
        if self.next_run is not None and tick >= self.next_run.start:
            self.run, self.next_run = self.next_run, None
            self.count_loaded = True
            self.paused_at = self.run.start if self._gate_pauses() and not self.gate else None

    def _gate_pauses(self) -> bool:
        return self.mode in (0, 2, 3, 4)

    def _counted(self, tick: int) -> int:
        return (tick if self.paused_at is None else self.paused_at) - self.run.start

    def state(self, tick: int) -> tuple[int, bool]:
        """(counting element value, OUT level) at ``tick``."""
        self._settle(tick)
        if self.run is None:
            return self.frozen_count, self.frozen_out
        count, out = _count_and_out(self.mode, self.run, self._counted(tick))
        if self.paused_at is not None and self.mode in (2, 3):
            out = True  # a low gate forces OUT high in these modes
        return count, out

    def next_rise(self, tick: int) -> int | None:
        """The first input clock edge after ``tick`` at which OUT rises, if any."""
        self._settle(tick)
        rise = None
        if self.run is not None and self.paused_at is None:
            clocks = _next_rise(self.mode, self.run, self._counted(tick))
            rise = None if clocks is None else self.run.start + clocks
        following = self.next_run
        if following is None or (rise is not None and rise <= following.start):
            return rise
        if self._gate_pauses() and not self.gate:
            return None
        return following.start + _next_rise(self.mode, following, 0)

    # -- guest actions ------------------------------------------------------------------------

    def _freeze(self, tick: int, out: bool | None = None) -> None:
        """Stop counting: the counting element keeps its value; OUT keeps its level or takes ``out``."""
        count, current_out = self.state(tick)
        self.run, self.next_run, self.paused_at = None, None, None
        self.frozen_count = count
        self.frozen_out = current_out if out is None else out

    def program(self, control: int, tick: int) -> None:
        """A control word for this counter (access mode not LATCH)."""
        mode_bits = (control >> 1) & 7
        mode = mode_bits - 4 if mode_bits >= 6 else mode_bits
        self._freeze(tick, out=mode != 0)  # OUT starts low in mode 0, high in the others
        self.mode_bits, self.mode = mode_bits, mode
        self.access = (control >> 4) & 3
        self.bcd = bool(control & 1)
        self.count_register = None
        self.count_loaded = False
        self.low_byte = None
        self.read_msb_next = False
        self.latched_count = []
        self.latched_status = None

    def write(self, value: int, tick: int) -> None:
        """A byte written to the counter's port."""
        if self.access == LSB_ONLY:
            self._load(value, tick)
        elif self.access == MSB_ONLY:
            self._load(value << 8, tick)
        elif self.low_byte is None:
            self.low_byte = value
            if self.mode == 0:
                self._freeze(tick, out=False)  # the first byte stops mode 0 and drops OUT
        else:
            low, self.low_byte = self.low_byte, None
            self._load(low | value << 8, tick)

    def _load(self, count: int, tick: int) -> None:
        self._settle(tick)  # a count loaded earlier reaches the counting element first
        reload = count or FULL_COUNT
        self.count_register = reload
        self.count_loaded = False
        if self.mode in (1, 5):
            return  # used at the next gate trigger
        if self.mode == 0:
            self._freeze(tick, out=False)
        if self.mode in (2, 3) and self.run is not None:
            if self.paused_at is None:
                self.next_run = self._at_cycle_end(reload, tick)
            return  # a paused counter reloads the count register when the gate rises
        self.next_run = _Run(tick + 1, reload)

    def _at_cycle_end(self, reload: int, tick: int) -> _Run:
        """A new mode 2/3 count, loaded when the current cycle (mode 3: half-cycle) ends."""
        run = self.run
        counted = self._counted(tick)
        position = (counted + run.phase) % run.reload
        if self.mode == 3 and position < (run.reload + 1) // 2:
            end = run.start + counted + (run.reload + 1) // 2 - position
            return _Run(end, reload, phase=(reload + 1) // 2)  # the new count begins low
        return _Run(run.start + counted + run.reload - position, reload)

    def set_gate(self, level: bool, tick: int) -> None:
        if level == self.gate:
            return
        self._settle(tick)
        self.gate = level
        if not level:
            if self._gate_pauses() and self.run is not None:
                self.paused_at = tick
                if self.mode in (2, 3):
                    self.next_run = None  # the rising gate reloads the count register instead
            return
        if self.mode in (0, 4):
            if self.paused_at is not None:
                self.run = self.run._replace(start=self.run.start + tick - self.paused_at)
                self.paused_at = None
        elif self.count_register is not None:  # modes 1, 2, 3, 5: the rising edge (re)triggers
            self._freeze(tick, out=True if self.mode in (2, 3) else None)
            self.next_run = _Run(tick + 1, self.count_register)

    def latch_count(self, tick: int) -> None:
        if self.latched_count:
            return  # an unread latch holds its value
        count = self.state(tick)[0]
        low, high = count & 0xFF, count >> 8
        self.latched_count = {LSB_ONLY: [low], MSB_ONLY: [high]}.get(self.access, [low, high])

    def latch_status(self, tick: int) -> None:
        if self.latched_status is not None:
            return
        out = self.state(tick)[1]
        self.latched_status = ((STATUS_OUT if out else 0) | (0 if self.count_loaded else STATUS_NULL_COUNT)
                               | self.access << 4 | self.mode_bits << 1 | int(self.bcd))

    def read(self, tick: int) -> int:
        """A byte read from the counter's port: latched status, latched count, or the live count."""
        if self.latched_status is not None:
            status, self.latched_status = self.latched_status, None
            return status
        if self.latched_count:
            return self.latched_count.pop(0)
        count = self.state(tick)[0]
        if self.access == LSB_ONLY:
            return count & 0xFF
        if self.access == MSB_ONLY:
            return count >> 8
        msb = self.read_msb_next
        self.read_msb_next = not msb
        return count >> 8 if msb else count & 0xFF


class Pit(Device):
    """i8254 PIT at 0x40-0x43 plus port 0x61; counter 0's OUT is IRQ 0."""

    name = "i8254"
    description = "Intel 8254 PIT (ports 0x40-0x43, IRQ 0) with port 0x61 (speaker gate, refresh toggle)"
    user_creatable = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.counters = (Counter(), Counter(), Counter(gate=False))
        self.port61 = 0
        self.irq0 = ctx.irq(0)
        self._next_irq_tick: int | None = None   # input clock edge of the next IRQ 0 pulse

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", PIT_BASE, PIT_PORTS), BusRange("pio", SYSTEM_CONTROL_PORT, 1)]

    def _tick(self) -> int:
        return ticks_at(self.ctx.clock.now(), PIT_HZ)

    def read(self, access: Access) -> int:
        tick = self._tick()
        if access.address == SYSTEM_CONTROL_PORT:
            refresh = REFRESH_TOGGLE if (tick // REFRESH_TICKS) & 1 else 0
            out2 = OUT2 if self.counters[2].state(tick)[1] else 0
            return self.port61 | refresh | out2
        if access.offset == CONTROL_OFFSET:
            return OPEN_BUS
        return self.counters[access.offset].read(tick)

    def write(self, access: Access, value: int) -> None:
        value &= 0xFF
        tick = self._tick()
        if access.address == SYSTEM_CONTROL_PORT:
            self.port61 = value & PORT61_WRITABLE
            self.counters[2].set_gate(bool(value & GATE2), tick)
            return
        if access.offset == CONTROL_OFFSET:
            self._control(value, tick)
        else:
            self.counters[access.offset].write(value, tick)
        self._rearm(tick)

    def _control(self, value: int, tick: int) -> None:
        select = value >> 6
        if select == READ_BACK:
            for index, counter in enumerate(self.counters):
                if value & (2 << index):
                    if not value & READ_BACK_NO_STATUS:
                        counter.latch_status(tick)
                    if not value & READ_BACK_NO_COUNT:
                        counter.latch_count(tick)
        elif (value >> 4) & 3 == LATCH:
            self.counters[select].latch_count(tick)
        else:
            self.counters[select].program(value, tick)

    def _rearm(self, tick: int) -> None:
        """Recompute the next IRQ 0 edge after a guest write that may have moved it."""
        if self._next_irq_tick is not None and self._next_irq_tick <= tick:
            return  # an edge has passed and waits for tick(): it happened, whatever the write does
        next_irq = self.counters[0].next_rise(tick)
        if next_irq != self._next_irq_tick:
            self._next_irq_tick = next_irq
            self.ctx.timers_changed()

    def next_deadline(self) -> int | None:
        return None if self._next_irq_tick is None else time_of_tick(self._next_irq_tick, PIT_HZ)

    def tick(self, now: int) -> None:
        tick = ticks_at(now, PIT_HZ)
        if self._next_irq_tick is None or tick < self._next_irq_tick:
            return
        self.irq0.pulse()
        self._next_irq_tick = self.counters[0].next_rise(tick)
