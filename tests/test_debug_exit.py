# SPDX-License-Identifier: GPL-2.0-or-later
"""isa-debug-exit and the Bochs shutdown port: exit status and the stop they ask of the machine."""

import pytest

from devices.bochs import BOCHS_SHUTDOWN_PORT, BochsShutdown
from devices.bus import Bus
from devices.debug_exit import DEBUG_EXIT_BASE, DebugExit, exit_status
from tests.fake_context import FakeContext


class Stops(list):
    """The statuses a device asked the fake machine to stop with, checking the reason."""

    def __init__(self, ctx: FakeContext, reason: str):
        super().__init__()
        self._ctx, self._reason = ctx, reason

    def __eq__(self, other):
        assert all(r == self._reason for r, _ in self._ctx.stops)
        return [status for _, status in self._ctx.stops] == other


def make(**kwargs):
    pio = Bus("pio", 0x10000)
    ctx = FakeContext()
    device = DebugExit(ctx, **DebugExit.parse_props({k: hex(v) for k, v in kwargs.items()}))
    device.register(pio)
    return pio, device, Stops(ctx, "debug-exit")


@pytest.mark.parametrize("value, status", [(0, 1), (1, 3), (38, 77), (63, 127)])
def test_exit_status_formula_matches_qemu(value, status):
    assert exit_status(value) == status


@pytest.mark.parametrize("size", [1, 2, 4])
def test_write_of_any_width_stops_with_the_status(size):
    pio, device, calls = make()
    pio.write(DEBUG_EXIT_BASE, size, 0x26)
    assert device.exit_value == 0x26
    assert device.exit_code == 77
    assert calls == [77]


def test_value_is_cut_to_the_access_width_and_status_to_eight_bits():
    pio, device, _ = make()
    pio.write(DEBUG_EXIT_BASE, 1, 0x1FF)
    assert device.exit_value == 0xFF
    assert device.exit_code == 0xFF  # (0xff << 1 | 1) & 0xff, as the OS reports it


def test_only_the_first_write_counts():
    pio, device, calls = make()
    pio.write(DEBUG_EXIT_BASE, 4, 1)
    pio.write(DEBUG_EXIT_BASE, 4, 0)
    assert device.exit_code == 3
    assert calls == [3]


def test_any_offset_inside_the_range_works_and_reads_give_zero():
    pio, _, calls = make()
    assert pio.read(DEBUG_EXIT_BASE + 3, 1) == 0
    pio.write(DEBUG_EXIT_BASE + 2, 1, 0)
    assert calls == [1]


def test_configurable_iobase_and_iosize():
    pio, device, calls = make(iobase=0x501, iosize=2)
    assert pio.lookup(0x501) == (0x501, device)
    assert pio.lookup(0x503) is None
    assert pio.lookup(DEBUG_EXIT_BASE) is None
    pio.write(0x502, 1, 63)
    assert calls == [127]


def test_properties_are_declared_with_qemu_defaults():
    assert DebugExit.parse_props({}) == {"iobase": 0xF4, "iosize": 4}
    assert DebugExit.parse_props({"iobase": "0x501"})["iobase"] == 0x501


def shutdown_port():
    pio = Bus("pio", 0x10000)
    ctx = FakeContext()
    device = BochsShutdown(ctx)
    device.register(pio)
    return pio, device, Stops(ctx, "poweroff")


def send(pio, text):
    for byte in text:
        pio.write(BOCHS_SHUTDOWN_PORT, 1, byte)


def test_bochs_shutdown_string_powers_off_with_status_zero():
    pio, device, calls = shutdown_port()
    send(pio, b"Shutdow")
    assert calls == [] and device.exit_code is None
    send(pio, b"n")
    assert calls == [0] and device.exit_code == 0
    send(pio, b"Shutdown")
    assert calls == [0]


def test_bochs_shutdown_matches_after_garbage_and_a_false_start():
    pio, _, calls = shutdown_port()
    send(pio, b"xxShutShutdown")
    assert calls == [0]


def test_bochs_other_strings_do_nothing():
    pio, _, calls = shutdown_port()
    send(pio, b"shutdown Shutdow n")
    assert calls == []
    assert pio.read(BOCHS_SHUTDOWN_PORT, 1) == 0xFF
