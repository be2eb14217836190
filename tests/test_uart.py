# SPDX-License-Identifier: GPL-2.0-or-later
"""16550 UART: register read-back, DLAB, loopback, transcript and flushing to the sink."""

import io

import pytest

from devices.bus import Access, Bus
from devices.uart import COM1_BASE, Uart16550


class RecordingSink(io.BytesIO):
    """A sink that remembers what it held at each flush."""

    def __init__(self):
        super().__init__()
        self.flushed: list[bytes] = []

    def flush(self):
        self.flushed.append(self.getvalue())


@pytest.fixture
def sink():
    return RecordingSink()


@pytest.fixture
def uart(sink):
    return Uart16550(sink)


@pytest.fixture
def bus(uart):
    pio = Bus("pio", 0x10000)
    uart.register(pio)
    return pio


def out(bus, offset, value):
    bus.write(COM1_BASE + offset, 1, value)


def inb(bus, offset):
    return bus.read(COM1_BASE + offset, 1)


def test_thr_writes_reach_the_transcript_and_sink_at_newline(bus, uart, sink):
    for byte in b"PASS: x":
        out(bus, 0, byte)
    assert uart.output == b"PASS: x"
    assert sink.getvalue() == b""
    out(bus, 0, ord("\n"))
    assert sink.getvalue() == b"PASS: x\n"
    assert sink.flushed == [b"PASS: x\n"]


def test_explicit_flush_hands_over_a_partial_line(bus, uart, sink):
    for byte in b"FAIL: crash":
        out(bus, 0, byte)
    uart.flush()
    assert sink.getvalue() == b"FAIL: crash"
    assert sink.flushed == [b"FAIL: crash"]
    uart.flush()
    assert sink.flushed == [b"FAIL: crash"]  # nothing new: no empty writes


def test_close_flushes_then_detaches_but_keeps_the_transcript(bus, uart, sink):
    out(bus, 0, ord("a"))
    uart.close()
    assert sink.getvalue() == b"a"
    out(bus, 0, ord("b"))
    out(bus, 0, ord("\n"))
    assert sink.getvalue() == b"a"
    assert uart.output == b"ab\n"
    assert not sink.closed


def test_default_sink_is_stdout(capsysbinary):
    uart = Uart16550()
    for byte in b"hi\n":
        uart.write(Access(COM1_BASE, 0, 1), byte)
    assert capsysbinary.readouterr().out == b"hi\n"


def test_lsr_always_reports_transmitter_empty_and_no_data(bus):
    assert inb(bus, 5) == 0x60
    out(bus, 0, ord("x"))
    assert inb(bus, 5) == 0x60


def test_rbr_reads_zero(bus):
    assert inb(bus, 0) == 0


def test_dlab_switches_offsets_0_and_1_to_the_divisor_latch(bus, uart):
    out(bus, 1, 0x05)  # IER
    out(bus, 3, 0x83)  # DLAB + 8N1
    out(bus, 0, 0x01)
    out(bus, 1, 0x02)
    assert uart.divisor == 0x0201
    assert (inb(bus, 0), inb(bus, 1)) == (0x01, 0x02)
    assert uart.output == b""  # a divisor write is not a character
    out(bus, 3, 0x03)
    assert inb(bus, 1) == 0x05
    assert inb(bus, 3) == 0x03


def test_ier_keeps_only_its_four_bits(bus):
    out(bus, 1, 0xFF)
    assert inb(bus, 1) == 0x0F


def test_iir_says_no_interrupt_and_reflects_fifo_enable(bus):
    assert inb(bus, 2) == 0x01
    out(bus, 2, 0x07)  # enable + clear both FIFOs
    assert inb(bus, 2) == 0xC1
    out(bus, 2, 0x00)
    assert inb(bus, 2) == 0x01


def test_mcr_scratch_and_msr(bus):
    out(bus, 4, 0x0B)
    out(bus, 7, 0x5A)
    assert inb(bus, 4) == 0x0B
    assert inb(bus, 7) == 0x5A
    assert inb(bus, 6) == 0xB0  # DCD, DSR, CTS


def test_loopback_mirrors_mcr_in_msr_and_drops_output(bus, uart, sink):
    out(bus, 4, 0x10 | 0x0A)  # loopback, RTS, OUT2: what Linux's 8250 probe writes
    assert inb(bus, 6) & 0xF0 == 0x90
    out(bus, 4, 0x10 | 0x05)  # DTR, OUT1
    assert inb(bus, 6) & 0xF0 == 0x60
    out(bus, 0, ord("\n"))
    assert uart.output == b"" and sink.getvalue() == b""


def test_lsr_and_msr_writes_are_ignored(bus):
    out(bus, 5, 0x00)
    out(bus, 6, 0x00)
    assert inb(bus, 5) == 0x60
    assert inb(bus, 6) == 0xB0


def test_wide_write_uses_the_low_byte(bus, uart):
    bus.write(COM1_BASE, 2, 0x4142)
    assert uart.output == b"B"
