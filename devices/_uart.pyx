# SPDX-License-Identifier: GPL-2.0-or-later
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""The register logic and state of the 16550A UART (devices/uart.py), in C.

:class:`UartCore` holds every register, the receiver, the fed input and the transcript as plain C
state, so the vCPU hook layer answers IN/OUT at the UART's ports with no Python on the way
(devices/_uart.pxd: ``port_read``/``port_write``); what an access leaves for Python (bytes for the
sink at a newline, a level change of the interrupt line) is reported in flags and done by
:meth:`UartCore.settle`, right after the access, as the Python path does.  devices/uart.py is the
device the board registers: it owns the bus range and delegates every access to its core, so
both paths run the same code.  The behaviour (registers, FIFO, loopback, interrupts, what is not
supported) is documented there.

Not here: the device's properties and bus range (devices/uart.py), which ports reach the core from
the vCPU (vmm/_ucvcpu_insns.pxi, vmm/machine.py).
"""

from libc.stdint cimport uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, realloc
from libc.string cimport memcpy, memmove

cdef enum:
    # Register offsets from the base port.
    RBR_THR_DLL = 0
    IER_DLM = 1
    IIR_FCR = 2
    LCR = 3
    MCR = 4
    LSR = 5
    MSR = 6

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

cdef int RX_TRIGGER_LEVELS[4]
RX_TRIGGER_LEVELS[:] = [1, 4, 8, 14]


cdef bint grow(uint8_t **buf, size_t *cap, size_t need) noexcept:
    """Make ``*buf`` hold at least ``need`` bytes (doubling); False if there is no memory."""
    cdef size_t new_cap = cap[0] if cap[0] else 256
    cdef uint8_t *p
    if need <= cap[0]:
        return True
    while new_cap < need:
        new_cap *= 2
    p = <uint8_t*> realloc(buf[0], new_cap)
    if p == NULL:
        return False
    buf[0] = p
    cap[0] = new_cap
    return True


cdef class UartCore:
    """The state and register logic of one 16550A; ``irq_line`` gets its interrupt output and
    ``sink`` (None: none) its transmitted bytes at each newline and flush."""

    def __cinit__(self):
        self.modem_lines = MSR_LINES_UP

    def __init__(self, irq_line, sink):
        self.irq_line = irq_line
        self.sink = sink

    def __dealloc__(self):
        free(self.in_buf)
        free(self.tx)

    # -- the C API (devices/_uart.pxd) ----------------------------------------------------
    cdef int port_read(self, uint32_t offset, uint32_t *value) noexcept:
        cdef bint dlab = self.lcr & LCR_DLAB
        cdef int v
        if offset == RBR_THR_DLL:
            v = (self.divisor & 0xFF) if dlab else self.read_rbr()
        elif offset == IER_DLM:
            v = (self.divisor >> 8) if dlab else self.ier
        elif offset == IIR_FCR:
            v = self.read_iir()
        elif offset == LCR:
            v = self.lcr
        elif offset == MCR:
            v = self.mcr
        elif offset == LSR:
            v = self.read_lsr()
        elif offset == MSR:
            v = self.modem_lines | self.modem_deltas
            self.modem_deltas = 0
        else:
            v = self.scr
        value[0] = <uint32_t> v
        return self.update_irq()

    cdef int port_write(self, uint32_t offset, uint32_t value) noexcept:
        cdef uint8_t byte = value & 0xFF
        cdef bint dlab = self.lcr & LCR_DLAB
        cdef int flags = 0
        if offset == RBR_THR_DLL:
            if dlab:
                self.divisor = (self.divisor & 0xFF00) | byte
            else:
                flags = self.write_thr(byte)
        elif offset == IER_DLM:
            if dlab:
                self.divisor = (self.divisor & 0x00FF) | (<uint16_t> byte << 8)
            else:
                self.write_ier(byte)
        elif offset == IIR_FCR:
            self.write_fcr(byte)
        elif offset == LCR:
            self.lcr = byte
        elif offset == MCR:
            self.write_mcr(byte)
        elif offset > MSR:
            self.scr = byte
        # LSR and MSR writes (factory test modes) are ignored.
        return flags | self.update_irq()

    cdef int settle(self, int flags) except -1:
        """Do what an access left for Python (its UART_* flags): the sink first, then the line."""
        if flags & UART_NOMEM:
            raise MemoryError("isa-serial: no memory for the transcript or the input queue")
        if flags & UART_FLUSH:
            self.flush()
        if flags & UART_IRQ:
            self.irq_line.set_level(bool(self.irq_level))
        return 0

    # -- the Python API (the device, tests) ------------------------------------------------
    def read(self, uint32_t offset) -> int:
        """An IN at the port ``offset`` from the base (its low byte's value)."""
        cdef uint32_t value = 0
        self.settle(self.port_read(offset, &value))
        return value

    def write(self, uint32_t offset, value: int) -> None:
        """An OUT of ``value`` (its low byte) at the port ``offset`` from the base."""
        self.settle(self.port_write(offset, value & 0xFF))

    def feed(self, const uint8_t[:] data) -> None:
        """Queue ``data`` as input arriving on the serial line."""
        cdef size_t n = data.shape[0]
        if self.in_head == self.in_len:
            self.in_head = self.in_len = 0
        elif self.in_head and self.in_len + n > self.in_cap:
            memmove(self.in_buf, self.in_buf + self.in_head, self.in_len - self.in_head)
            self.in_len -= self.in_head
            self.in_head = 0
        if n:
            if not grow(&self.in_buf, &self.in_cap, self.in_len + n):
                raise MemoryError("isa-serial: no memory for the input queue")
            memcpy(self.in_buf + self.in_len, &data[0], n)
            self.in_len += n
        self.take_input()
        self.settle(self.update_irq())

    def flush(self) -> None:
        """Hand every byte transmitted so far to the sink and flush it."""
        if self.tx_flushed < self.tx_len and self.sink is not None:
            self.sink.write((<char*> self.tx)[self.tx_flushed:self.tx_len])
            self.sink.flush()
        self.tx_flushed = self.tx_len

    def close(self) -> None:
        """Flush, then detach from the sink (later bytes only reach the transcript)."""
        self.flush()
        self.sink = None

    @property
    def output(self) -> bytes:
        """Every byte transmitted (not looped back) so far."""
        return (<char*> self.tx)[:self.tx_len] if self.tx_len else b""

    @property
    def iir_source(self) -> int:
        """The IIR identification of the highest-priority enabled pending interrupt (no side effect)."""
        return self.interrupt_source()

    # -- registers -------------------------------------------------------------------------
    cdef int read_rbr(self) noexcept:
        cdef int byte
        if not self.rx_len:
            return 0
        byte = self.rx[self.rx_head]
        self.rx_head = (self.rx_head + 1) % UART_RX_SIZE
        self.rx_len -= 1
        self.take_input()
        return byte

    cdef int read_iir(self) noexcept:
        cdef int source = self.interrupt_source()
        if source == IIR_THR_EMPTY:
            self.thr_empty_interrupt = False
        return source | (IIR_FIFOS_ENABLED if self.fcr & FCR_FIFO_ENABLE else 0)

    cdef int read_lsr(self) noexcept:
        cdef int value = LSR_THRE | LSR_TEMT
        if self.rx_len:
            value |= LSR_DATA_READY
        if self.overrun:
            value |= LSR_OVERRUN
            self.overrun = False
        return value

    cdef int write_thr(self, uint8_t byte) noexcept:
        cdef int flags = 0
        if self.mcr & MCR_LOOPBACK:
            self.loop_back(byte)
        elif not grow(&self.tx, &self.tx_cap, self.tx_len + 1):
            flags = UART_NOMEM
        else:
            self.tx[self.tx_len] = byte
            self.tx_len += 1
            if self.sink is None:
                self.tx_flushed = self.tx_len     # a detached UART keeps only the transcript
            elif byte == 0x0A:
                flags = UART_FLUSH
        # The byte left at once: THR is empty again before the guest can look.
        self.thr_empty_interrupt = True
        return flags

    cdef void write_ier(self, uint8_t value) noexcept:
        if value & IER_THR_EMPTY and not self.ier & IER_THR_EMPTY:
            self.thr_empty_interrupt = True     # enabling it while THR is empty raises it
        self.ier = value & IER_BITS

    cdef void write_fcr(self, uint8_t value) noexcept:
        # Without the enable bit the other bits are not programmed; toggling it empties the FIFOs.
        cdef uint8_t new_fcr = (value & FCR_STORED) if value & FCR_FIFO_ENABLE else 0
        if (new_fcr ^ self.fcr) & FCR_FIFO_ENABLE or (new_fcr and value & FCR_CLEAR_RX):
            self.rx_len = 0
        self.fcr = new_fcr
        self.take_input()

    cdef void write_mcr(self, uint8_t value) noexcept:
        cdef uint8_t lines, changed
        self.mcr = value & MCR_BITS
        lines = self.current_modem_lines()
        changed = lines ^ self.modem_lines
        self.modem_deltas |= (changed & MSR_DELTA_TRACKED) >> 4
        if changed & self.modem_lines & MSR_RING:
            self.modem_deltas |= MSR_TRAILING_RING     # RI went from on to off
        self.modem_lines = lines
        self.take_input()                              # leaving loopback reconnects the line

    # -- receiver and interrupt output -----------------------------------------------------
    cdef int receiver_room(self) noexcept:
        return (UART_RX_SIZE if self.fcr & FCR_FIFO_ENABLE else 1) - self.rx_len

    cdef void take_input(self) noexcept:
        """Move fed bytes into the receiver while it has room and is connected to the line."""
        if self.mcr & MCR_LOOPBACK:
            return
        while self.in_head < self.in_len and self.receiver_room() > 0:
            self.receive(self.in_buf[self.in_head])
            self.in_head += 1

    cdef void receive(self, uint8_t byte) noexcept:
        self.rx[(self.rx_head + self.rx_len) % UART_RX_SIZE] = byte
        self.rx_len += 1

    cdef void loop_back(self, uint8_t byte) noexcept:
        if self.receiver_room() > 0:
            self.receive(byte)
            return
        self.overrun = True
        if not self.fcr & FCR_FIFO_ENABLE:
            self.rx[self.rx_head] = byte    # RBR is overwritten; a full FIFO keeps its bytes instead

    cdef uint8_t current_modem_lines(self) noexcept:
        cdef uint8_t mcr = self.mcr
        if not mcr & MCR_LOOPBACK:
            return MSR_LINES_UP
        # Loopback wiring: DTR->DSR, RTS->CTS, OUT1->RI, OUT2->DCD.
        return ((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) | ((mcr & 0x08) << 4)

    cdef int interrupt_source(self) noexcept:
        """The IIR identification of the highest-priority enabled pending interrupt."""
        cdef uint8_t ier = self.ier
        if ier & IER_LINE_STATUS and self.overrun:
            return IIR_LINE_STATUS
        if ier & IER_RX_DATA and self.rx_len:
            if self.fcr & FCR_FIFO_ENABLE and self.rx_len < RX_TRIGGER_LEVELS[self.fcr >> FCR_TRIGGER_SHIFT]:
                return IIR_RX_TIMEOUT
            return IIR_RX_DATA
        if ier & IER_THR_EMPTY and self.thr_empty_interrupt:
            return IIR_THR_EMPTY
        if ier & IER_MODEM_STATUS and self.modem_deltas:
            return IIR_MODEM_STATUS
        return IIR_NO_INTERRUPT

    cdef int update_irq(self) noexcept:
        """Recompute the interrupt output; UART_IRQ if its level changed (settle() drives the line)."""
        cdef bint level = (self.mcr & (MCR_OUT2 | MCR_LOOPBACK)) == MCR_OUT2 and \
            self.interrupt_source() != IIR_NO_INTERRUPT
        if level == self.irq_level:
            return 0
        self.irq_level = level
        return UART_IRQ
