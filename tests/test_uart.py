# SPDX-License-Identifier: GPL-2.0-or-later
"""16550A UART: register read-back, DLAB, transcript and flushing to the sink, receive and FIFO,
loopback, interrupt priorities in IIR and the IRQ line gated by OUT2."""

import io

import pytest

from devices._uart import UartCore
from devices.bus import Access, Bus
from devices.device import BusRange, PropertyError
from devices.uart import COM1_BASE, Uart16550
from tests.fake_context import FakeContext


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
def ctx():
    return FakeContext()


@pytest.fixture
def uart(ctx, sink):
    ctx.console = sink     # the machine's serial console, as vmm/platform.py provides it
    return Uart16550(ctx)


@pytest.fixture
def bus(uart):
    pio = Bus("pio", 0x10000)
    for bus_range in uart.bus_ranges():
        pio.register(bus_range.base, bus_range.size, uart)
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
    uart = Uart16550(FakeContext())
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


# -- device and props ------------------------------------------------------------------------------
IER, IIR, FCR, LCR, MCR, LSR, MSR = 1, 2, 2, 3, 4, 5, 6
RX_DATA, THR_EMPTY, LINE_STATUS, MODEM_STATUS = 0x01, 0x02, 0x04, 0x08
OUT2, LOOPBACK = 0x08, 0x10


def test_device_claims_eight_ports_at_iobase_and_drives_its_irq():
    ctx = FakeContext()
    uart = Uart16550(ctx, iobase=0x2F8, irq=3)
    assert uart.bus_ranges() == [BusRange("pio", 0x2F8, 8)]
    uart.write(Access(0x2FC, 4, 1), OUT2)
    uart.write(Access(0x2F9, 1, 1), THR_EMPTY)
    assert ctx.levels == {3: True}


@pytest.mark.parametrize("props", [{"iobase": 0xFFF9}, {"irq": 16}, {"irq": -1}])
def test_bad_props_are_refused(props):
    with pytest.raises(PropertyError):
        Uart16550(FakeContext(), **props)


# -- interrupts ------------------------------------------------------------------------------------
def test_enabling_etbei_raises_thr_empty_and_an_iir_read_clears_it(bus):
    out(bus, IER, THR_EMPTY)
    assert inb(bus, IIR) == 0x02
    assert inb(bus, IIR) == 0x01


def test_thr_write_raises_thr_empty_again_at_once(bus):
    out(bus, IER, THR_EMPTY)
    inb(bus, IIR)
    out(bus, 0, ord("a"))
    assert inb(bus, IIR) == 0x02


def test_linux_thre_test_sees_the_interrupt_each_time_etbei_is_enabled(bus):
    out(bus, IER, THR_EMPTY)
    assert inb(bus, IIR) == 0x02
    out(bus, IER, 0)
    out(bus, IER, THR_EMPTY)
    assert inb(bus, IIR) == 0x02


def test_rewriting_ier_with_etbei_already_set_raises_nothing_new(bus):
    out(bus, IER, THR_EMPTY)
    inb(bus, IIR)
    out(bus, IER, THR_EMPTY | RX_DATA)
    assert inb(bus, IIR) == 0x01


def test_irq_line_is_high_while_an_enabled_interrupt_is_pending_and_out2_is_set(bus, ctx):
    out(bus, IER, THR_EMPTY)
    assert ctx.levels == {}                    # OUT2 clear: the IRQ is gated off
    out(bus, MCR, OUT2)
    assert ctx.levels == {4: True}
    inb(bus, IIR)                              # reading it clears the THRE interrupt
    assert ctx.levels == {4: False}
    out(bus, 0, ord("x"))
    assert ctx.levels == {4: True}
    out(bus, IER, 0)
    assert ctx.levels == {4: False}


def test_irq_line_drops_when_out2_is_cleared(bus, ctx):
    out(bus, MCR, OUT2)
    out(bus, IER, THR_EMPTY)
    out(bus, MCR, 0)
    assert ctx.levels == {4: False}
    assert inb(bus, IIR) == 0x02               # still pending inside the UART


def test_loopback_forces_out2_inactive_so_no_irq(bus, ctx):
    out(bus, MCR, LOOPBACK | OUT2)
    out(bus, IER, THR_EMPTY)
    assert ctx.levels == {}
    out(bus, MCR, OUT2)
    assert ctx.levels == {4: True}


def test_iir_reports_the_highest_priority_source_first(bus, uart, ctx):
    out(bus, FCR, 0x01)                        # FIFOs on: IIR bits 7:6 set
    out(bus, MCR, LOOPBACK)
    for byte in range(17):                     # one more than the FIFO holds: an overrun
        out(bus, 0, byte)
    out(bus, MCR, LOOPBACK | 0x02)             # RTS -> CTS: a modem status change
    out(bus, IER, RX_DATA | THR_EMPTY | LINE_STATUS | MODEM_STATUS)
    assert inb(bus, IIR) == 0xC6               # line status
    assert inb(bus, LSR) & 0x03 == 0x03        # overrun and data ready; reading clears OE
    assert inb(bus, IIR) == 0xC4               # received data (16 >= trigger level 1)
    for _ in range(16):
        inb(bus, 0)
    assert inb(bus, IIR) == 0xC2               # THR empty, cleared by this very read
    assert inb(bus, IIR) == 0xC0               # modem status
    assert inb(bus, MSR) == 0x1B               # CTS; DDCD, DDSR, DCTS (loopback dropped lines, then CTS)
    assert inb(bus, IIR) == 0xC1


def test_thr_empty_is_not_cleared_by_an_iir_read_that_reports_something_else(bus, uart):
    out(bus, IER, THR_EMPTY | RX_DATA)
    uart.feed(b"k")
    assert inb(bus, IIR) == 0x04
    assert inb(bus, 0) == ord("k")
    assert inb(bus, IIR) == 0x02


def test_disabled_sources_do_not_show_in_iir(bus, uart):
    uart.feed(b"z")
    out(bus, IER, THR_EMPTY)
    assert inb(bus, IIR) == 0x02
    assert inb(bus, IIR) == 0x01


# -- receive ---------------------------------------------------------------------------------------
def test_fed_bytes_set_data_ready_and_come_out_of_rbr_in_order(bus, uart, ctx):
    out(bus, MCR, OUT2)
    out(bus, IER, RX_DATA)
    uart.feed(b"ab")
    assert inb(bus, LSR) == 0x61
    assert inb(bus, IIR) == 0x04
    assert ctx.levels == {4: True}
    assert inb(bus, 0) == ord("a")
    assert inb(bus, 0) == ord("b")
    assert inb(bus, LSR) == 0x60
    assert inb(bus, IIR) == 0x01
    assert ctx.levels == {4: False}


def test_without_fifos_the_receiver_holds_one_byte_and_the_rest_waits(bus, uart):
    uart.feed(b"xyz")
    out(bus, FCR, 0x03)                        # enabling the FIFOs empties the receiver...
    assert inb(bus, 0) == ord("y")             # ...and the waiting bytes flow in
    assert inb(bus, 0) == ord("z")
    assert inb(bus, LSR) & 0x01 == 0


def test_fifo_holds_sixteen_and_clearing_it_drops_only_those(bus, uart):
    out(bus, FCR, 0x01)
    uart.feed(bytes(range(20)))
    out(bus, FCR, 0x03)                        # clear the receive FIFO
    assert [inb(bus, 0) for _ in range(4)] == [16, 17, 18, 19]
    assert inb(bus, LSR) & 0x01 == 0


def test_fifo_below_its_trigger_level_reports_a_character_timeout(bus, uart):
    out(bus, FCR, 0x81)                        # FIFOs, trigger level 8
    out(bus, IER, RX_DATA)
    uart.feed(b"1234567")
    assert inb(bus, IIR) == 0xCC
    uart.feed(b"8")
    assert inb(bus, IIR) == 0xC4
    inb(bus, 0)
    assert inb(bus, IIR) == 0xCC


def test_disabling_the_fifos_empties_the_receiver(bus, uart):
    out(bus, FCR, 0x01)
    uart.feed(b"ab")
    out(bus, FCR, 0x00)
    assert inb(bus, LSR) & 0x01 == 0
    assert inb(bus, IIR) == 0x01


# -- loopback --------------------------------------------------------------------------------------
def test_loopback_echoes_transmitted_bytes_into_the_receiver(bus, uart, sink):
    out(bus, FCR, 0x01)
    out(bus, MCR, LOOPBACK)
    for byte in b"hi\n":
        out(bus, 0, byte)
    assert inb(bus, LSR) & 0x01
    assert bytes(inb(bus, 0) for _ in range(3)) == b"hi\n"
    assert uart.output == b"" and sink.getvalue() == b""


def test_fed_input_waits_while_in_loopback(bus, uart):
    out(bus, MCR, LOOPBACK)
    uart.feed(b"q")
    assert inb(bus, LSR) & 0x01 == 0
    out(bus, MCR, 0)
    assert inb(bus, 0) == ord("q")


def test_loopback_overrun_without_fifos_overwrites_rbr(bus):
    out(bus, MCR, LOOPBACK)
    out(bus, 0, ord("1"))
    out(bus, 0, ord("2"))
    assert inb(bus, LSR) == 0x63               # DR, OE, THRE, TEMT
    assert inb(bus, LSR) == 0x61               # reading LSR cleared OE
    assert inb(bus, 0) == ord("2")


def test_loopback_overrun_with_a_full_fifo_keeps_the_fifo(bus):
    out(bus, FCR, 0x01)
    out(bus, MCR, LOOPBACK)
    for byte in range(17):
        out(bus, 0, byte)
    assert inb(bus, LSR) & 0x02
    assert [inb(bus, 0) for _ in range(16)] == list(range(16))


def test_loopback_modem_lines_set_delta_bits_and_the_modem_interrupt(bus, ctx):
    out(bus, IER, MODEM_STATUS)
    out(bus, MCR, LOOPBACK | 0x04)             # OUT1 -> RI; DCD, DSR and CTS drop
    assert inb(bus, IIR) == 0x00
    assert inb(bus, MSR) == 0x4B               # RI; DDCD, DDSR, DCTS
    assert inb(bus, IIR) == 0x01
    out(bus, MCR, LOOPBACK)                    # RI goes off: trailing-edge RI
    assert inb(bus, MSR) == 0x04
    out(bus, MCR, LOOPBACK | 0x01)             # DTR -> DSR
    assert inb(bus, MSR) == 0x22
    assert inb(bus, MSR) == 0x20


# -- the C core on its own (devices/_uart.pyx: what the vCPU layer drives) --------------------
class CountingLine:
    def __init__(self):
        self.levels: list[bool] = []

    def set_level(self, level: bool) -> None:
        self.levels.append(level)


def test_the_core_drives_its_line_only_when_the_level_changes():
    line = CountingLine()
    core = UartCore(line, None)
    core.write(4, 0x08)             # OUT2
    core.write(1, 0x02)             # ETBEI: THR empty is pending
    for byte in b"many bytes":
        core.write(0, byte)         # each THR write keeps it pending: no new level
    assert line.levels == [True]
    assert core.read(2) == 0x02     # reading IIR clears it
    assert line.levels == [True, False] and core.irq_level is False


def test_a_core_without_a_sink_keeps_the_transcript_and_takes_input():
    core = UartCore(CountingLine(), None)
    for byte in b"out\n":
        core.write(0, byte)
    core.flush()
    core.feed(b"in")
    assert core.output == b"out\n"
    assert core.read(5) & 0x01 and core.read(0) == ord("i") and core.read(0) == ord("n")
    assert not core.read(5) & 0x01
