# SPDX-License-Identifier: GPL-2.0-or-later
# C-level interface of the 16550A UART's core (devices/_uart.pyx) for the vCPU hook layer.
#
# Fast path for IN/OUT at the UART's eight ports, no Python objects touched:
#
#     cdef int port_read(self, uint32_t offset, uint32_t *value) noexcept
#     cdef int port_write(self, uint32_t offset, uint32_t value) noexcept
#
# ``offset`` is the port minus the UART's base (0-7); a wider access acts on its low byte (a read's
# value is that byte, zero-extended).  The result is a set of UART_* flags saying what the access
# left for Python to do, at once and in this order (settle() does both):
#   * UART_FLUSH: a newline went out while a sink is attached: the bytes since the last flush go to
#     the sink now, as the device promises (devices/uart.py);
#   * UART_IRQ: the interrupt output changed level: irq_line.set_level(the new level);
#   * UART_NOMEM: a transmitted or fed byte found no memory (settle() raises MemoryError).
# 0 (the common case: scratch, LSR, THR without a newline) means nothing is left to do.

from libc.stdint cimport uint8_t, uint16_t, uint32_t

cdef enum:
    UART_FLUSH = 1
    UART_IRQ = 2
    UART_NOMEM = 4
    UART_RX_SIZE = 16           # the receive FIFO; without FIFOs only its first byte is RBR


cdef class UartCore:
    # -- wiring: Python objects, reached only from settle() and the Python API --
    cdef public object irq_line         # .set_level(bool): the ISA interrupt line
    cdef public object sink             # binary file-like (write, flush) or None: output stays in the transcript

    # -- registers (the ones the guest writes readable from Python) --
    cdef readonly uint16_t divisor
    cdef readonly uint8_t ier, fcr, lcr, mcr, scr
    cdef uint8_t modem_lines, modem_deltas
    cdef bint overrun
    cdef bint thr_empty_interrupt
    cdef readonly bint irq_level        # the interrupt output, as last driven on irq_line

    # -- receiver: RBR or the FIFO, a ring of UART_RX_SIZE bytes --
    cdef uint8_t rx[UART_RX_SIZE]
    cdef int rx_head, rx_len

    # -- fed input the receiver has had no room for yet: bytes [in_head, in_len) of in_buf --
    cdef uint8_t *in_buf
    cdef size_t in_head, in_len, in_cap

    # -- transmitted bytes (the transcript); [tx_flushed, tx_len) have not reached the sink yet --
    cdef uint8_t *tx
    cdef size_t tx_len, tx_cap, tx_flushed

    # -- the C API --
    cdef int port_read(self, uint32_t offset, uint32_t *value) noexcept
    cdef int port_write(self, uint32_t offset, uint32_t value) noexcept
    cdef int settle(self, int flags) except -1

    # -- internals --
    cdef int read_rbr(self) noexcept
    cdef int read_iir(self) noexcept
    cdef int read_lsr(self) noexcept
    cdef int write_thr(self, uint8_t byte) noexcept
    cdef void write_ier(self, uint8_t value) noexcept
    cdef void write_fcr(self, uint8_t value) noexcept
    cdef void write_mcr(self, uint8_t value) noexcept
    cdef int receiver_room(self) noexcept
    cdef void take_input(self) noexcept
    cdef void receive(self, uint8_t byte) noexcept
    cdef void loop_back(self, uint8_t byte) noexcept
    cdef uint8_t current_modem_lines(self) noexcept
    cdef int interrupt_source(self) noexcept
    cdef int update_irq(self) noexcept
