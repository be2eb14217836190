# SPDX-License-Identifier: GPL-2.0-or-later
"""The 8042 keyboard controller (data port 0x60, command/status port 0x64) with nothing plugged in.

The controller itself is complete enough for a PC guest's probe: it answers at once, so a guest
that polls the status register never waits.  Commands (port 0x64):

* 0x20-0x3F / 0x60-0x7F read / write internal RAM (byte 0 is the command byte);
* 0xA7 / 0xA8 disable / enable the auxiliary (mouse) port, 0xAD / 0xAE the keyboard port;
* 0xA9 / 0xAB test the auxiliary / keyboard port: 0x00 (the lines are fine, nothing answers);
* 0xAA self-test: 0x55, and sets the system flag;
* 0xD0 / 0xD1 read / write the output port: writing bit 0 (reset line) as 0 resets the machine;
* 0xD2 / 0xD3 put the next data byte in the output buffer as if the keyboard / mouse sent it
  (Linux's AUX loopback test, and its AUX interrupt test with 0xD3);
* 0xD4 send the next data byte to the mouse;
* 0xF0-0xFF pulse the output port bits whose command bit is 0: 0xFE pulses the reset line.

A byte for a device (written to port 0x60 with no command waiting, or after 0xD4) finds nobody:
the controller answers 0xFE with the time-out bit set in the status register, what a PS/2
controller reports when no device clocks the byte in.  Linux then ends its probe with "controller
found, no keyboard or mouse" quickly: its i8042 driver sees a working controller and AUX
loopback, and its atkbd and psmouse drivers get an immediate NAK / time-out for their first
command instead of waiting.

Bytes the controller sends wait in a queue, as the firmware would hold each one until the guest
reads the previous; the head is in the output buffer.  IRQ 1 (a byte from the keyboard side) and
IRQ 12 (from the mouse side) are levels: high while such a byte is in the output buffer and the
command byte enables its interrupt (bits 0 and 1); reading the byte drops the line, and the
next byte raises it again.  The status register reads: output buffer full, system flag (command
byte bit 2), command/data (last write was to 0x64), keyboard not inhibited, mouse data, time-out.

A guest reset (output port bit 0 written 0, or 0xFE) calls ``ctx.stop("reset", 0)``: the machine
maps the reason to its exit status.  The controller keeps running if the machine does not stop
at once, so a repeated reset request calls ``stop`` again.

Not supported: keyboards and mice (no scan codes, ever), scan code translation (the command
byte's bit is kept), A20 gating (the output port's A20 bit is kept; the address line is always
enabled), the input port (0xC0) and vendor commands (ignored: no answer), parity errors.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
from collections import deque
from typing import NamedTuple

from devices.bus import Access
from devices.device import BusRange, Device

DATA_PORT = 0x60
COMMAND_PORT = 0x64
KBD_IRQ = 1
AUX_IRQ = 12

# Status register
OUTPUT_FULL = 0x01
SYSTEM_FLAG = 0x04
COMMAND_WRITTEN = 0x08
NOT_INHIBITED = 0x10
AUX_DATA = 0x20
TIMEOUT = 0x40

# Command byte (internal RAM byte 0)
KBD_INTERRUPT = 0x01
AUX_INTERRUPT = 0x02
KBD_DISABLED = 0x10
AUX_DISABLED = 0x20
TRANSLATE = 0x40
#: What a BIOS that found no mouse leaves: translation on, mouse port off, system flag, keyboard interrupt.
INITIAL_COMMAND_BYTE = TRANSLATE | AUX_DISABLED | SYSTEM_FLAG | KBD_INTERRUPT

# Output port
RESET_LINE = 0x01      # active low: 0 holds the CPU in reset
INITIAL_OUTPUT_PORT = RESET_LINE | 0x02   # running, A20 enabled

RAM_SIZE = 32
READ_RAM = 0x20
WRITE_RAM = 0x60
RAM_COMMAND_MASK = 0xE0
DISABLE_AUX = 0xA7
ENABLE_AUX = 0xA8
TEST_AUX = 0xA9
SELF_TEST = 0xAA
TEST_KBD = 0xAB
DISABLE_KBD = 0xAD
ENABLE_KBD = 0xAE
READ_OUTPUT_PORT = 0xD0
WRITE_OUTPUT_PORT = 0xD1
WRITE_KBD_BUFFER = 0xD2
WRITE_AUX_BUFFER = 0xD3
WRITE_AUX = 0xD4
PULSE_OUTPUT_PORT = 0xF0

SELF_TEST_PASSED = 0x55
PORT_TEST_PASSED = 0x00
NO_DEVICE = 0xFE

#: Commands that take a parameter byte on the data port.
TAKES_PARAMETER = frozenset((WRITE_OUTPUT_PORT, WRITE_KBD_BUFFER, WRITE_AUX_BUFFER, WRITE_AUX))
#: Commands that only set or clear command-byte bits: (bits to set, bits to clear).
COMMAND_BYTE_EDITS = {
    DISABLE_AUX: (AUX_DISABLED, 0),
    ENABLE_AUX: (0, AUX_DISABLED),
    DISABLE_KBD: (KBD_DISABLED, 0),
    ENABLE_KBD: (0, KBD_DISABLED),
}


class _Byte(NamedTuple):
    """A byte waiting for the guest, and where it came from."""

    value: int
    from_aux: bool = False
    timeout: bool = False


class I8042(Device):
    """8042 keyboard controller at 0x60/0x64 with no keyboard or mouse; IRQ 1 and IRQ 12."""

    name = "i8042"
    description = "8042 keyboard controller with no keyboard or mouse (ports 0x60, 0x64; IRQ 1, 12)"
    user_creatable = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.ram = bytearray(RAM_SIZE)
        self.ram[0] = INITIAL_COMMAND_BYTE
        self.output_port = INITIAL_OUTPUT_PORT
        self.queue: deque[_Byte] = deque()
        self.last_read = 0
        self.pending_command: int | None = None   # waiting for its parameter byte
        self.command_written = False
        self.irq_lines = {line: ctx.irq(line) for line in (KBD_IRQ, AUX_IRQ)}
        self.irq_levels = dict.fromkeys(self.irq_lines, False)

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", DATA_PORT, 1), BusRange("pio", COMMAND_PORT, 1)]

    @property
    def command_byte(self) -> int:
        return self.ram[0]

    def status(self) -> int:
        status = NOT_INHIBITED | (self.command_byte & SYSTEM_FLAG) | (COMMAND_WRITTEN if self.command_written else 0)
        if self.queue:
            head = self.queue[0]
            status |= OUTPUT_FULL | (AUX_DATA if head.from_aux else 0) | (TIMEOUT if head.timeout else 0)
        return status

    def read(self, access: Access) -> int:
        if access.address == COMMAND_PORT:
            return self.status()
        if self.queue:
            self.last_read = self.queue.popleft().value
            for line in self.irq_lines:  # the byte that raised a line is gone: the line drops,
                self._set_irq(line, False)  # and a byte behind it raises it again, a new edge
            self._update_irqs()
        return self.last_read  # an empty buffer reads its last byte again

    def write(self, access: Access, value: int) -> None:
        value &= 0xFF
        self.command_written = access.address == COMMAND_PORT
        if self.command_written:
            self.pending_command = None
            self._command(value)
        elif self.pending_command is not None:
            command, self.pending_command = self.pending_command, None
            self._parameter(command, value)
        else:
            self.queue.append(_Byte(NO_DEVICE, from_aux=False, timeout=True))  # no keyboard
        self._update_irqs()

    def _command(self, command: int) -> None:
        if command & RAM_COMMAND_MASK == READ_RAM:
            self.queue.append(_Byte(self.ram[command & (RAM_SIZE - 1)]))
        elif command & RAM_COMMAND_MASK == WRITE_RAM or command in TAKES_PARAMETER:
            self.pending_command = command
        elif command in COMMAND_BYTE_EDITS:
            set_bits, clear_bits = COMMAND_BYTE_EDITS[command]
            self.ram[0] = (self.command_byte | set_bits) & ~clear_bits
        elif command in (TEST_AUX, TEST_KBD):
            self.queue.append(_Byte(PORT_TEST_PASSED))
        elif command == SELF_TEST:
            self.ram[0] |= SYSTEM_FLAG
            self.queue.append(_Byte(SELF_TEST_PASSED))
        elif command == READ_OUTPUT_PORT:
            self.queue.append(_Byte(self.output_port))
        elif command >= PULSE_OUTPUT_PORT and not command & RESET_LINE:
            self.ctx.stop("reset", 0)
        # anything else (input port, vendor commands, pulses of other lines) does nothing

    def _parameter(self, command: int, value: int) -> None:
        if command & RAM_COMMAND_MASK == WRITE_RAM:
            self.ram[command & (RAM_SIZE - 1)] = value
        elif command == WRITE_OUTPUT_PORT:
            self.output_port = value
            if not value & RESET_LINE:
                self.ctx.stop("reset", 0)
        elif command == WRITE_KBD_BUFFER:
            self.queue.append(_Byte(value))
        elif command == WRITE_AUX_BUFFER:
            self.queue.append(_Byte(value, from_aux=True))
        else:  # WRITE_AUX: no mouse
            self.queue.append(_Byte(NO_DEVICE, from_aux=True, timeout=True))

    def _set_irq(self, line: int, level: bool) -> None:
        if self.irq_levels[line] != level:
            self.irq_levels[line] = level
            self.irq_lines[line].set_level(level)

    def _update_irqs(self) -> None:
        """Raise the line of the byte in the output buffer if the command byte enables it; drop the other."""
        raised = None
        if self.queue:
            line, enable = (AUX_IRQ, AUX_INTERRUPT) if self.queue[0].from_aux else (KBD_IRQ, KBD_INTERRUPT)
            raised = line if self.command_byte & enable else None
        for line in self.irq_lines:
            self._set_irq(line, line == raised)
