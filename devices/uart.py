# SPDX-License-Identifier: GPL-2.0-or-later
"""A transmit-only 16550A UART (COM1 at ports 0x3f8-0x3ff) that writes the guest's console output.

Every byte written to THR goes to two places: the in-memory transcript ``uart.output`` (for tests
and reports) and the output sink, a binary file-like object (``sys.stdout.buffer`` by default).
Bytes reach the sink at every newline and at an explicit :meth:`flush` or :meth:`close`, so a guest
that crashes or times out mid-line loses nothing as long as the machine closes the UART on the way
out.

LSR always reports THRE and TEMT (the transmitter is infinitely fast), so polling guests never
spin.  The divisor latch (DLAB), IER, FCR, LCR, MCR, MSR and the scratch register read back what
the guest wrote; in loopback mode (MCR bit 4) MSR mirrors the MCR outputs, which is what Linux's
8250 probe checks, and transmitted bytes are dropped instead of reaching the console.

Deliberately not supported: receiving (RBR reads 0, LSR.DR is never set), interrupts (IIR always
says "none pending"; the LAPIC is the machine's only interrupt source), FIFO contents, baud-rate
timing and break/parity/overrun errors.  Wider port accesses act on their low byte.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

COM1_BASE = 0x3F8
UART_PORTS = 8

# Register offsets from the base port.
RBR_THR_DLL = 0
IER_DLM = 1
IIR_FCR = 2
LCR = 3
MCR = 4
LSR = 5
MSR = 6
SCR = 7

LCR_DLAB = 0x80
MCR_LOOPBACK = 0x10
LSR_THRE = 0x20
LSR_TEMT = 0x40
IIR_NO_INTERRUPT = 0x01
IIR_FIFOS_ENABLED = 0xC0
FCR_FIFO_ENABLE = 0x01
# Modem status lines a cable-less port shows outside loopback: DCD, DSR and CTS asserted (as QEMU).
MSR_LINES_UP = 0xB0


class Uart16550:
    """COM1 as a port-I/O device: register with :meth:`register` or over ``(base, UART_PORTS)``."""

    def __init__(self, sink: BinaryIO | None = None, base: int = COM1_BASE):
        self.base = base
        self.output = bytearray()
        self._sink = sys.stdout.buffer if sink is None else sink
        self._pending = bytearray()  # bytes written since the last newline, not yet in the sink
        self.divisor = 0
        self.ier = 0
        self.fcr = 0
        self.lcr = 0
        self.mcr = 0
        self.scr = 0

    def register(self, bus) -> None:
        bus.register(self.base, UART_PORTS, self)

    def read(self, access) -> int:
        offset = access.offset
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            return self.divisor & 0xFF if dlab else 0
        if offset == IER_DLM:
            return self.divisor >> 8 if dlab else self.ier
        if offset == IIR_FCR:
            return IIR_NO_INTERRUPT | (IIR_FIFOS_ENABLED if self.fcr & FCR_FIFO_ENABLE else 0)
        if offset == LCR:
            return self.lcr
        if offset == MCR:
            return self.mcr
        if offset == LSR:
            return LSR_THRE | LSR_TEMT
        if offset == MSR:
            return self._modem_status()
        return self.scr

    def write(self, access, value: int) -> None:
        offset = access.offset
        value &= 0xFF
        dlab = self.lcr & LCR_DLAB
        if offset == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | value
            elif not self.mcr & MCR_LOOPBACK:
                self._transmit(value)
        elif offset == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (value << 8)
            else:
                self.ier = value & 0x0F
        elif offset == IIR_FCR:
            # Bits 1-2 (clear FIFOs) and 3 (DMA mode) are commands, not state.
            self.fcr = value & 0xC1
        elif offset == LCR:
            self.lcr = value
        elif offset == MCR:
            self.mcr = value & 0x1F
        elif offset == SCR:
            self.scr = value
        # LSR and MSR writes (factory test modes) are ignored.

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

    def _transmit(self, byte: int) -> None:
        self.output.append(byte)
        if self._sink is None:
            return
        self._pending.append(byte)
        if byte == 0x0A:
            self.flush()

    def _modem_status(self) -> int:
        if not self.mcr & MCR_LOOPBACK:
            return MSR_LINES_UP
        # Loopback wiring: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        mcr = self.mcr
        return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)
