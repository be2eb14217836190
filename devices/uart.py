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

Implementation: the registers, receiver and transcript are the C state of a
:class:`devices._uart.UartCore`; this device owns the bus range and hands every access to it.  The
vCPU hook layer answers IN/OUT at the UART's ports from the same core without an exit
(vmm/_ucvcpu_insns.pxi), so both paths behave alike, byte for byte.
"""

from __future__ import annotations

import sys
from typing import BinaryIO

from devices._uart import UartCore
from devices.device import BusRange, Device, DeviceContext, Prop, PropertyError

COM1_BASE = 0x3F8
COM1_IRQ = 4
UART_PORTS = 8
ISA_IRQS = 16


def _core_view(name: str, doc: str) -> property:
    """A read-only property giving the UART core's register ``name``."""
    return property(lambda self: getattr(self.core, name), doc=doc)


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
        # ``console`` is not in every DeviceContext yet (tests' FakeContext lacks it): none means stdout.
        console: BinaryIO | None = ctx.console
        #: The registers and state, in C; the vCPU layer reaches it directly (vmm.machine wires it).
        self.core = UartCore(ctx.irq(irq), sys.stdout.buffer if console is None else console)

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.iobase, UART_PORTS)]

    # -- port I/O ------------------------------------------------------------------------------
    def read(self, access) -> int:
        return self.core.read(access.offset)

    def write(self, access, value: int) -> None:
        self.core.write(access.offset, value)

    # -- the machine's side --------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        """Queue ``data`` as input arriving on the serial line."""
        self.core.feed(data)

    def flush(self) -> None:
        """Hand every byte written so far to the sink and flush it."""
        self.core.flush()

    def close(self) -> None:
        """Flush, then detach from the sink (later bytes only reach ``output``); the sink stays open."""
        self.core.close()

    @property
    def output(self) -> bytes:
        """The transcript: every byte the guest transmitted (not looped back)."""
        return self.core.output

    # -- registers the guest programs (read-only views, for tests and tools) -------------------
    divisor = _core_view("divisor", "The divisor latch (DLL | DLM << 8).")
    ier = _core_view("ier", "The interrupt enable register.")
    fcr = _core_view("fcr", "The FIFO control register as last written.")
    lcr = _core_view("lcr", "The line control register.")
    mcr = _core_view("mcr", "The modem control register.")
    scr = _core_view("scr", "The scratch register.")
