# SPDX-License-Identifier: GPL-2.0-or-later
"""An 82093AA-style I/O APIC: 24 interrupt pins turned into APIC-bus messages for the local APICs.

Memory map (a 4 KiB window at ``address``, 0xFEC00000 by default): IOREGSEL at +0x00 selects one
indirect register, IOWIN at +0x10 reads or writes it, and, on version 0x20 (the default), the EOI
register at +0x40 takes a vector whose level-triggered pins get their remote IRR cleared (what a
local APIC with directed EOI would send).  Version 0x11 is the plain 82093AA, without that register.

Indirect registers: ID (0x00, the 4-bit id in bits 27:24, read/write), VER (0x01, read-only:
version and the highest redirection entry, 23), ARB (0x02, read-only: the arbitration id, which a
write to ID loads too) and the redirection table (0x10-0x3F: pin n's 64-bit entry as a low half at
0x10 + 2n and a high half at 0x11 + 2n).  An entry holds the vector, delivery mode, destination mode,
delivery status (read-only), polarity, remote IRR (read-only), trigger mode, mask (set at reset) and
the destination (bits 63:56); other bits are reserved, read 0 and ignore writes.  Unused register
indices read 0.

Interrupt inputs come through :meth:`Ioapic.set_irq` (line number = pin; other lines are ignored).
An active-low pin (INTPOL) sees its line inverted.  An edge-triggered pin sends one message per
rising edge while unmasked; an edge on a masked pin is lost, as the datasheet says.  A
level-triggered pin sends while it is asserted, unmasked and its remote IRR is clear, then sets
remote IRR; :meth:`Ioapic.eoi` (or the EOI register) clears remote IRR and sends again if the line is
still asserted.  So unmasking, or reprogramming, an asserted level pin delivers at once.  Only fixed
and lowest-priority deliveries are level-capable: SMI, NMI, INIT and ExtINT entries act as edge
entries whatever their trigger mode bit says, as the datasheet asks software to program them.
Switching an entry to edge clears its remote IRR (the bit means nothing for edge pins); Linux
relies on this to clear a stuck remote IRR on IOAPICs without an EOI register.

Messages go out through ``ctx.send_interrupt(destination, logical, mode, vector, level)`` at once:
delivery is instantaneous, so delivery status always reads 0 (idle), and remote IRR is set when the
message is sent (the machine has no way to refuse it).

Only aligned 32-bit accesses reach the registers, as the datasheet requires: other sizes, and
offsets other than IOREGSEL, IOWIN and EOI, read all-ones and ignore writes.  The EOI register is
write-only (reads all-ones).

Not supported: edges made by reprogramming the polarity of an edge pin (edges are detected on line
changes only), the APIC-bus arbitration protocol, extended destination ids, the pin-assertion
register of later chipsets, and state save/restore.
"""

from __future__ import annotations

from devices.device import BusRange, Device, DeviceContext, Prop, PropertyError

IOAPIC_BASE = 0xFEC00000
#: The MP specification gives each I/O APIC a 4 KiB window; the vCPU maps MMIO by whole pages.
IOAPIC_WINDOW = 0x1000
PINS = 24

# Memory-mapped registers: offsets in the window.
IOREGSEL = 0x00
IOWIN = 0x10
IOEOI = 0x40
ALL_ONES = 0xFFFFFFFF

# Indirect registers, selected through IOREGSEL.
REG_ID = 0x00
REG_VERSION = 0x01
REG_ARBITRATION = 0x02
REG_REDIRECTION = 0x10          # pin n: low half at 0x10 + 2n, high half at 0x11 + 2n
REG_REDIRECTION_END = REG_REDIRECTION + 2 * PINS

VERSION_82093AA = 0x11
VERSION_WITH_EOI_REGISTER = 0x20
ID_SHIFT = 24
ID_MASK = 0xF

# Redirection entry fields.
VECTOR = 0xFF
DELIVERY_MODE_SHIFT = 8
DELIVERY_MODE = 0x7 << DELIVERY_MODE_SHIFT
DEST_LOGICAL = 1 << 11
DELIVERY_PENDING = 1 << 12      # read-only, always 0 here: delivery is instantaneous
ACTIVE_LOW = 1 << 13
REMOTE_IRR = 1 << 14            # read-only
LEVEL_TRIGGERED = 1 << 15
MASKED = 1 << 16
DESTINATION_SHIFT = 56
#: What software may change: every defined field except delivery status and remote IRR.
WRITABLE = (0xFF << DESTINATION_SHIFT) | MASKED | LEVEL_TRIGGERED | ACTIVE_LOW | DEST_LOGICAL | DELIVERY_MODE | VECTOR

MODE_FIXED = 0
MODE_LOWEST_PRIORITY = 1
#: Delivery modes that carry a vector the local APIC will EOI, hence can be level-triggered.
LEVEL_CAPABLE_MODES = (MODE_FIXED, MODE_LOWEST_PRIORITY)


class Ioapic(Device):
    """One I/O APIC with 24 pins; the machine routes every interrupt line change to :meth:`set_irq`."""

    name = "ioapic"
    description = "82093AA-style I/O APIC, 24 pins, MMIO window at 0xfec00000"
    props = (
        Prop("address", int, IOAPIC_BASE, "physical address of the 4 KiB register window, above guest RAM"),
        Prop("id", int, 0, "I/O APIC id (0-15), as the ACPI MADT gives it"),
        Prop("version", int, VERSION_WITH_EOI_REGISTER, "0x11 (82093AA) or 0x20 (adds the EOI register)"),
    )

    def __init__(self, ctx: DeviceContext, address: int = IOAPIC_BASE, id: int = 0,
                 version: int = VERSION_WITH_EOI_REGISTER):
        # ``id`` shadows the builtin because props arrive as keyword arguments named after them.
        if address % IOAPIC_WINDOW or not 0 <= address < 1 << 32:
            raise PropertyError(f"ioapic: address {address:#x} is not a 4 KiB-aligned 32-bit address")
        if address < ctx.ram_size:      # the vCPU cannot map MMIO over RAM (and a PC routes RAM there)
            raise PropertyError(f"ioapic: address {address:#x} is inside guest RAM (0x0-{ctx.ram_size - 1:#x})")
        if not 0 <= id <= ID_MASK:
            raise PropertyError(f"ioapic: id {id} is not 0-{ID_MASK}")
        if version not in (VERSION_82093AA, VERSION_WITH_EOI_REGISTER):
            raise PropertyError(f"ioapic: version {version:#x} is not {VERSION_82093AA:#x} or "
                                f"{VERSION_WITH_EOI_REGISTER:#x}")
        self.ctx = ctx
        self.address = address
        self.apic_id = id
        self.version = version
        self.ioregsel = 0
        self.redirection = [MASKED] * PINS
        self._line_levels = [False] * PINS

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("mmio", self.address, IOAPIC_WINDOW)]

    # -- memory-mapped registers ---------------------------------------------------------------
    def read(self, access) -> int:
        if access.size != 4:
            return (1 << (8 * access.size)) - 1
        if access.offset == IOREGSEL:
            return self.ioregsel
        if access.offset == IOWIN:
            return self._read_register(self.ioregsel)
        return ALL_ONES

    def write(self, access, value: int) -> None:
        if access.size != 4:
            return
        if access.offset == IOREGSEL:
            self.ioregsel = value & 0xFF
        elif access.offset == IOWIN:
            self._write_register(self.ioregsel, value & ALL_ONES)
        elif access.offset == IOEOI and self.version == VERSION_WITH_EOI_REGISTER:
            self.eoi(value & VECTOR)

    def _read_register(self, index: int) -> int:
        if index in (REG_ID, REG_ARBITRATION):
            return self.apic_id << ID_SHIFT
        if index == REG_VERSION:
            return ((PINS - 1) << 16) | self.version
        if REG_REDIRECTION <= index < REG_REDIRECTION_END:
            pin, high = divmod(index - REG_REDIRECTION, 2)
            return (self.redirection[pin] >> (32 * high)) & ALL_ONES
        return 0

    def _write_register(self, index: int, value: int) -> None:
        if index == REG_ID:
            self.apic_id = (value >> ID_SHIFT) & ID_MASK
        elif REG_REDIRECTION <= index < REG_REDIRECTION_END:
            pin, high = divmod(index - REG_REDIRECTION, 2)
            half = ALL_ONES << (32 * high)
            entry = self.redirection[pin]
            entry = (entry & ~(half & WRITABLE)) | ((value << (32 * high)) & half & WRITABLE)
            if not _level_triggered(entry):
                entry &= ~REMOTE_IRR
            self.redirection[pin] = entry
            self._deliver_level(pin)
        # VER and ARB are read-only; other indices are unused.

    # -- interrupt inputs ----------------------------------------------------------------------
    #: The platform hands us global system interrupts (ISA IRQ 0 arrives on pin 2), not ISA IRQs.
    inputs_are_gsis = True

    def set_irq(self, line: int, level: bool) -> None:
        """Interrupt line ``line`` (= pin) now carries ``level``; lines past the last pin are not ours."""
        if not 0 <= line < PINS:
            return
        was_asserted = self._asserted(line)
        self._line_levels[line] = bool(level)
        entry = self.redirection[line]
        if _level_triggered(entry):
            self._deliver_level(line)
        elif self._asserted(line) and not was_asserted and not entry & MASKED:
            self._send(line)

    def eoi(self, vector: int) -> None:
        """A local APIC EOIed level-triggered ``vector``: clear remote IRR of the pins using it, and
        deliver again from those still asserted."""
        for pin, entry in enumerate(self.redirection):
            if entry & REMOTE_IRR and entry & VECTOR == vector:
                self.redirection[pin] = entry & ~REMOTE_IRR
                self._deliver_level(pin)

    def _asserted(self, pin: int) -> bool:
        """The pin's input after the polarity inversion of an active-low entry."""
        return self._line_levels[pin] != bool(self.redirection[pin] & ACTIVE_LOW)

    def _deliver_level(self, pin: int) -> None:
        """Send from a level-triggered pin if it is asserted, unmasked and not awaiting an EOI."""
        entry = self.redirection[pin]
        if _level_triggered(entry) and not entry & (MASKED | REMOTE_IRR) and self._asserted(pin):
            self._send(pin)

    def _send(self, pin: int) -> None:
        entry = self.redirection[pin]
        level = _level_triggered(entry)
        if level:
            self.redirection[pin] = entry | REMOTE_IRR
        mode = (entry & DELIVERY_MODE) >> DELIVERY_MODE_SHIFT
        self.ctx.send_interrupt(entry >> DESTINATION_SHIFT, bool(entry & DEST_LOGICAL), mode, entry & VECTOR, level)


def _level_triggered(entry: int) -> bool:
    """Whether the entry acts level-triggered: its trigger mode says so and its delivery mode allows it."""
    mode = (entry & DELIVERY_MODE) >> DELIVERY_MODE_SHIFT
    return bool(entry & LEVEL_TRIGGERED) and mode in LEVEL_CAPABLE_MODES
