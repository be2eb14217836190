# SPDX-License-Identifier: GPL-2.0-or-later
"""A 16550A UART on the ISA bus (COM1 by default: ports 0x3f8-0x3ff, IRQ 4): the guest's console.

Output: every byte written to THR goes to two places: the in-memory transcript ``uart.output`` (for
tests and reports) and the sink, the machine's serial console ``ctx.console`` (a binary file-like
object; ``sys.stdout.buffer`` when the machine has none; every UART of the machine writes there).
Bytes reach the sink at every newline and at an explicit :meth:`flush` or :meth:`close`, so a guest
that crashes or times out mid-line loses nothing as long as the machine closes the UART on the way
out.  The transmitter is infinitely fast: LSR always reports THRE and TEMT.

Input: the machine queues bytes with :meth:`feed`; the receiver takes them as soon as it has room
(one byte in RBR, or sixteen when FCR enables the FIFOs), so LSR.DR is set while any is held and
reading RBR takes the oldest one.  There is no baud-rate timing, hence no overrun from fed input:
bytes the receiver has no room for wait in the queue.  Bytes fed before the guest opens the port may
be thrown away by its reset sequence (FIFO clear, dummy RBR read), as on real hardware.  Changing
FCR's FIFO-enable bit, or setting its clear-receive bit, empties the receiver.

Loopback (MCR bit 4): transmitted bytes come back as received bytes instead of reaching the console,
fed input waits until loopback ends, MSR mirrors the MCR outputs (what Linux's 8250 probe checks), and
a received byte with no room left is an overrun (LSR.OE; without FIFOs it replaces the byte in RBR).

Interrupts, with IIR giving the highest-priority pending one: receiver line status (ELSI; an overrun,
cleared by reading LSR) > received data (ERBFI; without FIFOs while RBR is full; with FIFOs 0x04 when
the FIFO holds at least the FCR trigger level, else the character-timeout indication 0x0C at once, as
there is no character timing) > THR empty (ETBEI; pending after every THR write and when ETBEI is
enabled, cleared by an IIR read that reports it or by a THR write) > modem status (EDSSI; an MSR delta
bit, cleared by reading MSR).  The interrupt output is the ISA line ``irq``, driven through
``ctx.irq(irq).set_level()``: high while an enabled interrupt is pending and MCR.OUT2 is set (a PC's
serial port gates its IRQ with OUT2), low in loopback mode, where the datasheet forces OUT2 inactive.

The divisor latch (DLAB), LCR and the scratch register read back what the guest wrote.  Wider port
accesses act on their low byte.

Deliberately not supported: baud-rate timing, parity/framing errors and breaks (LCR's break bit is
only stored), a transmit FIFO (it would always be empty), DMA mode signalling, and modem lines other
than "DCD, DSR and CTS up" outside loopback.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from devices.device import BusRange, Device, DeviceContext, Prop, PropertyError

COM1_BASE = 0x3F8
COM1_IRQ = 4
UART_PORTS = 8
FIFO_SIZE = 16
ISA_IRQS = 16

# Register offsets from the base port.
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

IER_RX_DATA = 0x01          # ERBFI
IER_THR_EMPTY = 0x02        # ETBEI
IER_LINE_STATUS = 0x04      # ELSI
IER_MODEM_STATUS = 0x08     # EDSSI
IER_BITS = 0x0F

# IIR interrupt identification, highest priority first.
IIR_LINE_STATUS = 0x06
IIR_RX_DATA = 0x04
IIR_RX_TIMEOUT = 0x0C
IIR_THR_EMPTY = 0x02
IIR_MODEM_STATUS = 0x00
IIR_NO_INTERRUPT = 0x01
IIR_FIFOS_ENABLED = 0xC0

FCR_FIFO_ENABLE = 0x01
FCR_CLEAR_RX = 0x02
FCR_TRIGGER_SHIFT = 6
FCR_STORED = 0xC1           # enable and trigger level; the other bits are commands or DMA mode
RX_TRIGGER_LEVELS = (1, 4, 8, 14)

LCR_DLAB = 0x80
MCR_OUT2 = 0x08
MCR_LOOPBACK = 0x10
MCR_BITS = 0x1F

LSR_DATA_READY = 0x01
LSR_OVERRUN = 0x02
LSR_THRE = 0x20
LSR_TEMT = 0x40

MSR_RING = 0x40
MSR_TRAILING_RING = 0x04
# Delta bits 0, 1 and 3 (DCTS, DDSR, DDCD) flag any change of status bits 4, 5 and 7 (CTS, DSR, DCD).
MSR_DELTA_TRACKED = 0xB0
# Modem status lines a cable-less port shows outside loopback: DCD, DSR and CTS asserted (as QEMU).
MSR_LINES_UP = 0xB0


class Uart16550(Device):
    """A 16550A over ``[iobase, iobase + 8)`` with its interrupt on ISA line ``irq``."""

    name = "isa-serial"
    description = "16550A UART (COM1 at 0x3f8, IRQ 4): console output, fed input, interrupts"
    props = (
        Prop("iobase", int, COM1_BASE, "first of the 8 I/O ports"),
        Prop("irq", int, COM1_IRQ, "ISA interrupt line (0-15)"),
    )

    def __init__(self, ctx: DeviceContext, iobase: int = COM1_BASE, irq: int = COM1_IRQ):
        if not 0 <= iobase <= 0x10000 - UART_PORTS:
            raise PropertyError(f"isa-serial: iobase {iobase:#x} does not leave 8 ports below 0x10000")
        if not 0 <= irq < ISA_IRQS:
            raise PropertyError(f"isa-serial: irq {irq} is not an ISA interrupt line (0-{ISA_IRQS - 1})")
        self.iobase = iobase
        self.irq = irq
        self._irq_line = ctx.irq(irq)
        self._irq_level = False
        self.output = bytearray()
        # ``console`` is not in every DeviceContext yet (tests' FakeContext lacks it): none means stdout.
        console: BinaryIO | None = ctx.console
        self._sink = sys.stdout.buffer if console is None else console
        self._pending = bytearray()     # bytes written since the last newline, not yet in the sink
        self._input = bytearray()       # fed bytes the receiver has had no room for yet
        self._received = bytearray()    # RBR, or the receive FIFO: what LSR.DR reports
        self._overrun = False
        self._thr_empty_interrupt = False
        self._modem_lines = MSR_LINES_UP
        self._modem_deltas = 0
        self.divisor = 0
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.iobase, UART_PORTS)]

    # -- port I/O ------------------------------------------------------------------------------
    def read(self, access) -> int:
        offset = access.offset
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            value = self.divisor & 0xFF if dlab else self._read_rbr()
        elif offset == IER_DLM:
            value = self.divisor >> 8 if dlab else self.ier
        elif offset == IIR_FCR:
            value = self._read_iir()
        elif offset == LCR:
            value = self.lcr
        elif offset == MCR:
            value = self.mcr
        elif offset == LSR:
            value = self._read_lsr()
        elif offset == MSR:
            value = self._modem_lines | self._modem_deltas
            self._modem_deltas = 0
        else:
            value = self.scr
        self._update_irq()
        return value

    def write(self, access, value: int) -> None:
        offset = access.offset
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            else:
                self._write_thr(value)
        elif offset == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self._write_ier(value)
        elif offset == IIR_FCR:
            self._write_fcr(value)
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self._write_mcr(value)
        elif offset == SCR:
            self.scr = value
        # LSR and MSR writes (factory test modes) are ignored.
        self._update_irq()

    # -- the machine's side --------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Queue ``data`` as input arriving on the serial line."""
        self._input += data
        self._take_input()
        self._update_irq()

    def flush(self) -> None:
        """Hand every byte written so far to the sink and flush it."""
        if self._pending and self._sink is not None:
            self._sink.write(self._pending)
            self._sink.flush()
        self._pending.clear()

    def close(self) -> None:
        """Flush, then detach from the sink (later bytes only reach ``output``); the sink stays open."""
        self.flush()
        self._sink = None

    # -- registers -----------------------------------------------------------------------------
    def _read_rbr(self) -> int:
        if not self._received:
            return 0
        byte = self._received.pop(0)
        self._take_input()
        return byte

    def _read_iir(self) -> int:
        source = self._interrupt_source()
        if source == IIR_THR_EMPTY:
            self._thr_empty_interrupt = False
        return source | (IIR_FIFOS_ENABLED if self._fifo_enabled() else 0)

    def _read_lsr(self) -> int:
        value = LSR_THRE | LSR_TEMT
        if self._received:
            value |= LSR_DATA_READY
        if self._overrun:
            value |= LSR_OVERRUN
            self._overrun = False
        return value

    def _write_thr(self, byte: int) -> None:
        if self.mcr & MCR_LOOPBACK:
            self._loop_back(byte)
        else:
            self._transmit(byte)
        # The byte left at once: THR is empty again before the guest can look.
        self._thr_empty_interrupt = True

    def _write_ier(self, value: int) -> None:
        if value & IER_THR_EMPTY and not self.ier & IER_THR_EMPTY:
            self._thr_empty_interrupt = True    # enabling it while THR is empty raises it
        self.ier = value & IER_BITS

    def _write_fcr(self, value: int) -> None:
        # Without the enable bit the other bits are not programmed; toggling it empties the FIFOs.
        new_fcr = value & FCR_STORED if value & FCR_FIFO_ENABLE else 0
        toggled = (new_fcr ^ self.fcr) & FCR_FIFO_ENABLE
        if toggled or (new_fcr and value & FCR_CLEAR_RX):
            self._received.clear()
        self.fcr = new_fcr
        self._take_input()

    def _write_mcr(self, value: int) -> None:
        self.mcr = value & MCR_BITS
        lines = self._current_modem_lines()
        changed = lines ^ self._modem_lines
        self._modem_deltas |= (changed & MSR_DELTA_TRACKED) >> 4
        if changed & self._modem_lines & MSR_RING:
            self._modem_deltas |= MSR_TRAILING_RING     # RI went from on to off
        self._modem_lines = lines
        self._take_input()                              # leaving loopback reconnects the line

    # -- receiver, transmitter and interrupt output --------------------------------------------
    def _fifo_enabled(self) -> bool:
        return bool(self.fcr & FCR_FIFO_ENABLE)

    def _receiver_room(self) -> int:
        return (FIFO_SIZE if self._fifo_enabled() else 1) - len(self._received)

    def _take_input(self) -> None:
        """Move fed bytes into the receiver while it has room and is connected to the line."""
        if self.mcr & MCR_LOOPBACK:
            return
        room = self._receiver_room()
        if room > 0 and self._input:
            self._received += self._input[:room]
            del self._input[:room]

    def _loop_back(self, byte: int) -> None:
        if self._receiver_room() > 0:
            self._received.append(byte)
            return
        self._overrun = True
        if not self._fifo_enabled():
            self._received[0] = byte    # RBR is overwritten; a full FIFO keeps its bytes instead

    def _transmit(self, byte: int) -> None:
        self.output.append(byte)
        if self._sink is None:
            return
        self._pending.append(byte)
        if byte == 0x0A:
            self.flush()

    def _current_modem_lines(self) -> int:
        if not self.mcr & MCR_LOOPBACK:
            return MSR_LINES_UP
        # Loopback wiring: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        mcr = self.mcr
        return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)

    def _interrupt_source(self) -> int:
        """The IIR identification of the highest-priority enabled pending interrupt."""
        ier = self.ier
        if ier & IER_LINE_STATUS and self._overrun:
            return IIR_LINE_STATUS
        if ier & IER_RX_DATA and self._received:
            if self._fifo_enabled() and len(self._received) < RX_TRIGGER_LEVELS[self.fcr >> FCR_TRIGGER_SHIFT]:
                return IIR_RX_TIMEOUT
            return IIR_RX_DATA
        if ier & IER_THR_EMPTY and self._thr_empty_interrupt:
            return IIR_THR_EMPTY
        if ier & IER_MODEM_STATUS and self._modem_deltas:
            return IIR_MODEM_STATUS
        return IIR_NO_INTERRUPT

    def _update_irq(self) -> None:
        gated_on = (self.mcr & (MCR_OUT2 | MCR_LOOPBACK)) == MCR_OUT2
        level = gated_on and self._interrupt_source() != IIR_NO_INTERRUPT
        if level != self._irq_level:
            self._irq_level = level
            self._irq_line.set_level(level)
