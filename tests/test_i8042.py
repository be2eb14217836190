# SPDX-License-Identifier: GPL-2.0-or-later
"""8042 keyboard controller with nothing attached: Linux's probe runs to "controller, no devices"
without a single timeout, the commands it uses, IRQ 1 / IRQ 12 levels, and guest resets."""

import pytest

from devices.i8042 import I8042
from tests.fake_context import FakeContext, pio_read, pio_write

DATA, COMMAND = 0x60, 0x64
OBF, IBF, SYS, A2, UNLOCKED, AUXDATA, TIMEOUT = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40
KBDINT, AUXINT, KBDDIS, AUXDIS, XLATE = 0x01, 0x02, 0x10, 0x20, 0x40


class ProbeTimeout(AssertionError):
    """The guest would have polled the status register until its timeout."""


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def kbc(ctx):
    return I8042(ctx)


def status(kbc):
    return pio_read(kbc, COMMAND)


def command(kbc, code, *params, results=0, aux_loop=False):
    """Linux's i8042_command(): wait for IBF clear, write the command and its parameters, then
    wait for OBF before each result byte (an AUX loopback result must be AUX data)."""
    if status(kbc) & IBF:
        raise ProbeTimeout(f"input buffer never empties before command {code:#x}")
    pio_write(kbc, COMMAND, code)
    for param in params:
        pio_write(kbc, DATA, param)
    answer = []
    for _ in range(results):
        if not status(kbc) & OBF:
            raise ProbeTimeout(f"no result for command {code:#x}")
        if aux_loop and not status(kbc) & AUXDATA:
            raise ProbeTimeout("AUX loopback answered as keyboard data")
        answer.append(pio_read(kbc, DATA))
    return answer


def flush(kbc):
    flushed = 0
    while status(kbc) & OBF:
        assert flushed < 16, "the output buffer never empties"
        pio_read(kbc, DATA)
        flushed += 1
    return flushed


def read_ctr(kbc):
    return command(kbc, 0x20, results=1)[0]


def write_ctr(kbc, value):
    command(kbc, 0x60, value)


def test_power_on_status_and_command_byte(kbc):
    assert status(kbc) == UNLOCKED | SYS
    assert read_ctr(kbc) == XLATE | AUXDIS | SYS | KBDINT
    assert status(kbc) & A2


def test_linux_probe_finds_a_controller_with_no_keyboard_and_no_mouse(kbc, ctx):
    # i8042_controller_check
    assert flush(kbc) == 0
    # i8042_controller_selftest (i8042.reset)
    assert command(kbc, 0xAA, results=1) == [0x55]
    # i8042_controller_init: two equal CTR reads, keyboard off, written back
    ctr = read_ctr(kbc)
    assert read_ctr(kbc) == ctr
    assert status(kbc) & UNLOCKED  # no "Keylock active" warning
    ctr = (ctr | KBDDIS) & ~KBDINT
    write_ctr(kbc, ctr)
    flush(kbc)
    # i8042_check_aux: loopback, then AUX enable/disable bit test
    flush(kbc)
    assert command(kbc, 0xD3, 0x5A, results=1, aux_loop=True) == [0x5A]
    command(kbc, 0xA7)
    assert read_ctr(kbc) & AUXDIS
    command(kbc, 0xA8)
    assert not read_ctr(kbc) & AUXDIS
    # AUX IRQ delivery test: the byte written with 0xD3 arrives through IRQ 12
    ctr = (ctr & ~AUXDIS) | AUXINT
    write_ctr(kbc, ctr)
    command(kbc, 0xD3, 0xA5)
    assert ctx.levels[12] is True and status(kbc) & (OBF | AUXDATA) == OBF | AUXDATA
    assert pio_read(kbc, DATA) == 0xA5  # i8042_aux_test_irq
    assert ctx.levels[12] is False
    ctr = (ctr | AUXDIS) & ~AUXINT
    write_ctr(kbc, ctr)
    # i8042_check_mux: a plain loopback is no active multiplexer
    flush(kbc)
    assert command(kbc, 0xD3, 0xF0, results=1, aux_loop=True) == [0xF0]
    assert command(kbc, 0xD3, 0x56, results=1, aux_loop=True) == [0x56]
    assert command(kbc, 0xD3, 0xA4, results=1, aux_loop=True) == [0xA4]  # == sent: "no MUX"
    # i8042_setup_aux / i8042_setup_kbd enable both ports with interrupts
    ctr = (ctr & ~(AUXDIS | KBDDIS)) | AUXINT | KBDINT
    write_ctr(kbc, ctr)
    # atkbd: GETID to the keyboard is answered at once by the controller: time-out, 0xFE
    pio_write(kbc, DATA, 0xF2)
    assert ctx.levels[1] is True
    assert status(kbc) & (OBF | AUXDATA | TIMEOUT) == OBF | TIMEOUT
    assert pio_read(kbc, DATA) == 0xFE
    assert ctx.levels[1] is False
    # psmouse: GETID through 0xD4, same answer on the mouse side
    command(kbc, 0xD4, 0xF2)
    assert ctx.levels[12] is True
    assert status(kbc) & (OBF | AUXDATA | TIMEOUT) == OBF | AUXDATA | TIMEOUT
    assert pio_read(kbc, DATA) == 0xFE
    assert ctx.levels[12] is False and ctx.levels[1] is False
    assert flush(kbc) == 0 and ctx.stops == []


def test_port_tests_pass_and_self_test_sets_the_system_flag(kbc):
    write_ctr(kbc, 0x00)
    assert not status(kbc) & SYS
    assert command(kbc, 0xAB, results=1) == [0x00]
    assert command(kbc, 0xA9, results=1) == [0x00]
    assert command(kbc, 0xAA, results=1) == [0x55]
    assert status(kbc) & SYS


def test_enable_and_disable_commands_edit_the_command_byte(kbc):
    write_ctr(kbc, 0x00)
    command(kbc, 0xAD)
    command(kbc, 0xA7)
    assert read_ctr(kbc) == KBDDIS | AUXDIS
    command(kbc, 0xAE)
    assert read_ctr(kbc) == AUXDIS
    command(kbc, 0xA8)
    assert read_ctr(kbc) == 0


def test_internal_ram_reads_back(kbc):
    command(kbc, 0x65, 0x42)
    assert command(kbc, 0x25, results=1) == [0x42]
    assert command(kbc, 0x3F, results=1) == [0x00]


def test_status_a2_bit_follows_the_last_port_written(kbc):
    command(kbc, 0x60)
    assert status(kbc) & A2
    pio_write(kbc, DATA, 0x45)
    assert not status(kbc) & A2


def test_command_cancels_a_parameter_still_expected(kbc, ctx):
    pio_write(kbc, COMMAND, 0xD1)  # expects the output port
    command(kbc, 0xAD)
    pio_write(kbc, DATA, 0x00)  # now a byte for the (absent) keyboard, not a reset
    assert ctx.stops == []
    assert pio_read(kbc, DATA) == 0xFE


class LineRecorder:
    """An interrupt controller that only remembers every line change it sees."""

    def __init__(self):
        self.changes = []

    def set_irq(self, line, level):
        self.changes.append((line, level))


def test_bytes_wait_in_order_and_each_one_makes_a_new_irq_edge(kbc, ctx):
    write_ctr(kbc, KBDINT | AUXINT)
    recorder = LineRecorder()
    ctx.add_controller(recorder)
    edges = recorder.changes
    command(kbc, 0xD2, 0x11)
    command(kbc, 0xD2, 0x22)
    command(kbc, 0xD3, 0x33)
    assert edges == [(1, True)]
    assert pio_read(kbc, DATA) == 0x11
    assert pio_read(kbc, DATA) == 0x22
    assert pio_read(kbc, DATA) == 0x33
    assert edges == [(1, True), (1, False), (1, True), (1, False), (12, True), (12, False)]
    assert pio_read(kbc, DATA) == 0x33  # an empty buffer reads its last byte again
    assert not status(kbc) & OBF


def test_interrupts_follow_the_command_byte_enables(kbc, ctx):
    write_ctr(kbc, 0x00)
    command(kbc, 0xD2, 0x11)
    assert ctx.levels.get(1, False) is False
    write_ctr(kbc, KBDINT)  # queued behind the keyboard byte: written, and the line rises
    assert ctx.levels[1] is True
    write_ctr(kbc, 0x00)
    assert ctx.levels[1] is False


def test_output_port_reads_back_and_bit0_low_resets(kbc, ctx):
    assert command(kbc, 0xD0, results=1) == [0x03]
    command(kbc, 0xD1, 0xDF)
    assert command(kbc, 0xD0, results=1) == [0xDF] and ctx.stops == []
    command(kbc, 0xD1, 0xDE)
    assert ctx.stops == [("reset", 0)]


@pytest.mark.parametrize("code, resets", [(0xFE, True), (0xF0, True), (0xFF, False), (0xFD, False)])
def test_pulse_output_port_resets_when_bit0_is_pulsed(kbc, ctx, code, resets):
    command(kbc, code)
    assert ctx.stops == ([("reset", 0)] if resets else [])


def test_linux_keyboard_reboot(kbc, ctx):
    """Linux's BOOT_KBD: wait for the input buffer, then pulse the reset line."""
    for _ in range(10):
        assert not status(kbc) & IBF
        pio_write(kbc, COMMAND, 0xFE)
    assert ctx.stops[0] == ("reset", 0)


def test_unknown_commands_answer_nothing(kbc):
    command(kbc, 0xC0)
    command(kbc, 0xA1)
    assert not status(kbc) & OBF
