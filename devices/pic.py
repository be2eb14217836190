# SPDX-License-Identifier: GPL-2.0-or-later
"""The two cascaded 8259A PICs of a PC (master at ports 0x20/0x21, slave at 0xa0/0xa1) and the
chipset's edge/level control registers (ELCR, ports 0x4d0/0x4d1), as one device.

The machine's interrupt path is the I/O APIC; the PICs are here for the guest's probe and
initialisation and for the status it can read back.  What is modelled, per chip:

* the initialisation sequence: ICW1 on the command port, then on the data port ICW2 (vector base),
  ICW3 when ICW1 says cascaded (accepted; the wiring is fixed: the slave's output is master IR2)
  and ICW4 when ICW1 asks for it (only auto-EOI is used).  ICW1 clears the mask, re-arms the
  edge detectors, gives IR7 the lowest priority, leaves special mask mode, selects IRR for status
  reads and, without ICW4, clears auto-EOI;
* OCW1: the interrupt mask register, read back from the data port (Linux decides a PIC exists by
  writing a mask and reading it back).  At power-on every line is masked;
* OCW2: non-specific and specific EOI, their rotating forms, set priority and rotate in auto-EOI;
* OCW3: IRR or ISR for command-port reads, special mask mode, and poll: the next command-port read
  acknowledges the highest-priority unmasked request (sets its ISR bit, or not in auto-EOI mode) and
  returns 0x80 | its level, or 0 when nothing is requesting;
* the IRR: the raised inputs, from :meth:`I8259.set_irq` (ISA IRQs 0-7 on the master, 8-15 on the
  slave).  A level-sensitive input (ICW1 LTIM, or its ELCR bit) requests while it is high; an
  edge-sensitive one requests from a rising edge until it is acknowledged or goes low again (the
  8259A's request latch is transparent: a request that goes away is gone);
* the cascade: the slave's interrupt output drives master IR2, so polling the master shows 2 while
  the slave has a request; the ISA IRQ 2 line itself reaches nothing, as on a PC;
* the ELCR: one bit per IRQ, 1 = level-sensitive; IRQs 0, 1, 2, 8 and 13 are always edge (those
  bits read 0, as on Intel's PIIX/ICH chipsets).

Deliberately not supported: interrupt delivery to the CPU (no INT output, no INTA cycle, no ExtINT
through the LAPIC's LINT0), so no spurious IR7 either; special fully nested mode and buffered mode
(accepted, ignored); 8080/8085 mode.  Port accesses wider than a byte act on their low byte.
"""

from __future__ import annotations

from devices.device import BusRange, Device, DeviceContext

MASTER_BASE = 0x20
SLAVE_BASE = 0xA0
ELCR_BASE = 0x4D0
PIC_PORTS = 2

COMMAND_OFFSET = 0
DATA_OFFSET = 1
CASCADE_INPUT = 2               # master IR2 carries the slave's interrupt output
LINES_PER_CHIP = 8

ICW1_INIT = 0x10
ICW1_NEEDS_ICW4 = 0x01
ICW1_SINGLE = 0x02
ICW1_LEVEL_TRIGGERED = 0x08
ICW4_AUTO_EOI = 0x02
OCW3 = 0x08
OCW3_READ_REGISTER = 0x02
OCW3_READ_ISR = 0x01
OCW3_POLL = 0x04
OCW3_SET_SPECIAL_MASK = 0x40
OCW3_SPECIAL_MASK_ON = 0x20
POLL_INTERRUPT = 0x80
ALL_MASKED = 0xFF

# OCW2: bit 7 rotates the priorities, bit 6 names a level (bits 2:0), bit 5 is an EOI.
OCW2_ROTATE = 0x80
OCW2_SPECIFIC = 0x40
OCW2_EOI = 0x20

# ELCR bits that may be set: IRQ0-2 (timer, keyboard, cascade) and IRQ8, 13 (RTC, FPU) stay edge.
MASTER_ELCR_WRITABLE = 0xF8
SLAVE_ELCR_WRITABLE = 0xDE


class Pic8259A:
    """One 8259A: its registers and priority logic, without ports (see :class:`I8259`)."""

    def __init__(self, elcr_writable: int):
        self.elcr_writable = elcr_writable
        self.elcr = 0
        self.imr = ALL_MASKED
        self.isr = 0
        self.vector_base = 0
        self.inputs = 0                 # current level of IR0-7
        self.armed = 0xFF               # edge detectors ready for a rising edge
        self.level_triggered = False    # ICW1 LTIM: every input level-sensitive
        self.auto_eoi = False
        self.rotate_on_auto_eoi = False
        self.lowest_priority = 7
        self.special_mask = False
        self.read_isr = False
        self.poll_pending = False
        self.icws_due: list[int] = []   # initialisation words still expected on the data port

    @property
    def irr(self) -> int:
        """Inputs requesting service: level-sensitive ones while high, edge ones while armed and high."""
        level_sensitive = ALL_MASKED if self.level_triggered else self.elcr
        return self.inputs & (self.armed | level_sensitive)

    def set_input(self, pin: int, level: bool) -> None:
        bit = 1 << pin
        if level:
            self.inputs |= bit
        else:
            self.inputs &= ~bit
            self.armed |= bit   # a falling edge re-arms the detector for the next rising one

    def interrupt_requested(self) -> bool:
        """The chip's INT output: an unmasked request outranks everything in service."""
        return self._highest_request() is not None

    def read_command(self) -> int:
        if self.poll_pending:
            self.poll_pending = False
            return self._acknowledge()
        return self.isr if self.read_isr else self.irr

    def read_data(self) -> int:
        return self.imr

    def write_command(self, value: int) -> None:
        if value & ICW1_INIT:
            self._start_initialisation(value)
        elif value & OCW3:
            self._ocw3(value)
        else:
            self._ocw2(value)

    def write_data(self, value: int) -> None:
        if not self.icws_due:
            self.imr = value
            return
        icw = self.icws_due.pop(0)
        if icw == 2:
            self.vector_base = value & 0xF8
        elif icw == 4:
            self.auto_eoi = bool(value & ICW4_AUTO_EOI)
        # ICW3 describes the cascade wiring, which is fixed here.

    def _start_initialisation(self, icw1: int) -> None:
        self.icws_due = [2]
        if not icw1 & ICW1_SINGLE:
            self.icws_due.append(3)
        if icw1 & ICW1_NEEDS_ICW4:
            self.icws_due.append(4)
        else:
            self.auto_eoi = False
        self.level_triggered = bool(icw1 & ICW1_LEVEL_TRIGGERED)
        self.imr = 0
        self.armed = ~self.inputs & 0xFF    # a line already high must go low and high again
        self.lowest_priority = 7
        self.special_mask = False
        self.read_isr = False
        self.poll_pending = False

    def _ocw2(self, value: int) -> None:
        rotate, specific = value & OCW2_ROTATE, value & OCW2_SPECIFIC
        if value & OCW2_EOI:
            level = value & 7 if specific else self._highest_in_service()
            if level is None:
                return
            self.isr &= ~(1 << level)
            if rotate:
                self.lowest_priority = level
        elif specific:
            if rotate:  # set priority; without rotate it is "no operation"
                self.lowest_priority = value & 7
        else:
            self.rotate_on_auto_eoi = bool(rotate)

    def _ocw3(self, value: int) -> None:
        if value & OCW3_SET_SPECIAL_MASK:
            self.special_mask = bool(value & OCW3_SPECIAL_MASK_ON)
        if value & OCW3_READ_REGISTER:
            self.read_isr = bool(value & OCW3_READ_ISR)
        self.poll_pending = bool(value & OCW3_POLL)

    def _priority_order(self) -> list[int]:
        """The eight levels, highest priority first."""
        first = (self.lowest_priority + 1) & 7
        return [(first + i) & 7 for i in range(LINES_PER_CHIP)]

    def _highest_in_service(self) -> int | None:
        return next((level for level in self._priority_order() if self.isr & (1 << level)), None)

    def _highest_request(self) -> int | None:
        """The level the chip would interrupt for, honouring the mask and the fully nested priority
        (in special mask mode a masked level in service does not hold back the others)."""
        blocking = self.isr & ~self.imr if self.special_mask else self.isr
        requests = self.irr & ~self.imr
        for level in self._priority_order():
            bit = 1 << level
            if blocking & bit:
                return None
            if requests & bit:
                return level
        return None

    def _acknowledge(self) -> int:
        """A poll read: take the highest request as the INTA cycle would, return its status byte."""
        level = self._highest_request()
        if level is None:
            return 0
        bit = 1 << level
        self.armed &= ~bit
        if not self.auto_eoi:
            self.isr |= bit
        elif self.rotate_on_auto_eoi:
            self.lowest_priority = level
        return POLL_INTERRUPT | level


class I8259(Device):
    """Master and slave 8259A plus the ELCR; every interrupt line change reaches :meth:`set_irq`."""

    name = "i8259"
    description = "cascaded 8259A PICs (ports 0x20-0x21, 0xa0-0xa1) and ELCR (0x4d0-0x4d1)"
    user_creatable = False

    def __init__(self, ctx: DeviceContext):
        # Nothing is asked of the machine: the PICs deliver no interrupts.
        self.master = Pic8259A(MASTER_ELCR_WRITABLE)
        self.slave = Pic8259A(SLAVE_ELCR_WRITABLE)

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", base, PIC_PORTS) for base in (MASTER_BASE, SLAVE_BASE, ELCR_BASE)]

    def read(self, access) -> int:
        chip, offset = self._decode(access.address)
        if chip is None:
            return (self.master, self.slave)[offset].elcr
        value = chip.read_command() if offset == COMMAND_OFFSET else chip.read_data()
        self._update_cascade()
        return value

    def write(self, access, value: int) -> None:
        chip, offset = self._decode(access.address)
        value &= 0xFF
        if chip is None:
            elcr_chip = (self.master, self.slave)[offset]
            elcr_chip.elcr = value & elcr_chip.elcr_writable
        elif offset == COMMAND_OFFSET:
            chip.write_command(value)
        else:
            chip.write_data(value)
        self._update_cascade()

    def set_irq(self, line: int, level: bool) -> None:
        """ISA IRQ ``line`` changed; IRQ 2 (the cascade) and lines past 15 reach no PIC input."""
        if line == CASCADE_INPUT or not 0 <= line < 2 * LINES_PER_CHIP:
            return
        chip = self.master if line < LINES_PER_CHIP else self.slave
        chip.set_input(line % LINES_PER_CHIP, level)
        self._update_cascade()

    def _decode(self, address: int) -> tuple[Pic8259A | None, int]:
        """The chip and register offset a port selects; chip None is the ELCR (offset = chip index)."""
        base, offset = address & ~1, address & 1
        if base == ELCR_BASE:
            return None, offset
        return (self.master if base == MASTER_BASE else self.slave), offset

    def _update_cascade(self) -> None:
        self.master.set_input(CASCADE_INPUT, self.slave.interrupt_requested())

