# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's pc-testdev: data register and its byte alias, flush port, IRQ line ports, scratch memory."""

from __future__ import annotations

import pytest

from devices.bus import Bus
from devices.device import PropertyError
from devices.pc_testdev import IOMEM_BASE, PcTestdev
from devices.registry import DeviceSpec, device_class, device_help
from devices.test_hooks import TestHooks
from tests.fake_context import FakeContext, mmio_read, mmio_write, pio_read, pio_write
from vmm.board import PC_BOARD, with_user_devices


def make() -> tuple[PcTestdev, FakeContext]:
    ctx = FakeContext()
    return PcTestdev(ctx), ctx


def test_registered_under_qemus_name_without_properties():
    assert device_class("pc-testdev") is PcTestdev
    assert 'name "pc-testdev", desc "' in device_help()
    assert PcTestdev.parse_props({}) == {}
    with pytest.raises(PropertyError):
        PcTestdev.parse_props({"iobase": "0xe0"})


def test_not_on_the_default_board_but_addable():
    assert "pc-testdev" not in [spec.name for spec in PC_BOARD]
    assert with_user_devices(PC_BOARD, [DeviceSpec("pc-testdev")])[-1] == DeviceSpec("pc-testdev")


def test_coexists_with_the_test_hooks_and_the_board():
    pio, mmio = Bus("pio", 0x10000, (1, 2, 4)), Bus("mmio", 1 << 52)
    ctx = FakeContext()
    for spec in with_user_devices(PC_BOARD, [DeviceSpec("pc-testdev"), DeviceSpec("pmu-vmm-test-hooks")]):
        device = device_class(spec.name)(ctx, **device_class(spec.name).parse_props(spec.props))
        device.register(pio)       # an overlap raises
        device.register(mmio)
    assert isinstance(pio.lookup(0xE0)[1], PcTestdev) and isinstance(pio.lookup(0x5F0)[1], TestHooks)


def test_data_register_round_trip_and_byte_lanes():
    dev, _ = make()
    pio_write(dev, 0xE0, 0x12345678, 4)
    assert pio_read(dev, 0xE0, 4) == 0x12345678
    assert pio_read(dev, 0xE1, 1) == 0x56 and pio_read(dev, 0xE2, 2) == 0x1234
    pio_write(dev, 0xE3, 0xAB, 1)
    pio_write(dev, 0xE0, 0xCDEF, 2)
    assert pio_read(dev, 0xE0, 4) == 0xAB34CDEF
    pio_write(dev, 0xE1, 0x1FFFF, 2)              # only the access's bytes are written
    assert pio_read(dev, 0xE0, 4) == 0xABFFFFEF


def test_byte_port_is_the_same_register():
    dev, _ = make()
    pio_write(dev, 0xE8, 0x11223344, 4)
    assert pio_read(dev, 0xE0, 4) == 0x11223344
    pio_write(dev, 0xE2, 0x99, 1)
    assert pio_read(dev, 0xEA, 1) == 0x99 and pio_read(dev, 0xE8, 4) == 0x11993344


def test_string_output_leaves_the_last_byte():
    dev, _ = make()
    for byte in b"abcdefghijklmnop":
        pio_write(dev, 0xE0, byte, 1)
    assert pio_read(dev, 0xE0, 1) == ord("p")


def test_flush_port_accepts_writes_and_reads_all_ones():
    dev, ctx = make()
    pio_write(dev, 0xE0, 0x55, 1)
    assert pio_write(dev, 0xE4, 0x12345000, 4) is None
    assert pio_read(dev, 0xE4, 4) == 0xFFFFFFFF and pio_read(dev, 0xE0, 1) == 0x55
    assert ctx.levels == {}


@pytest.mark.parametrize("line", [0, 14, 23])
def test_irq_port_sets_the_line_level(line):
    dev, ctx = make()
    pio_write(dev, 0x2000 + line, 1, 1)
    assert ctx.levels == {line: True}
    pio_write(dev, 0x2000 + line, 0x80, 1)
    assert ctx.levels == {line: True}
    pio_write(dev, 0x2000 + line, 0, 1)
    assert ctx.levels == {line: False}


def test_irq_ports_take_only_byte_writes_and_read_all_ones():
    dev, ctx = make()
    pio_write(dev, 0x2004, 0x0101, 2)
    pio_write(dev, 0x2004, 1, 4)
    assert ctx.levels == {}
    assert pio_read(dev, 0x2004, 1) == 0xFF and pio_read(dev, 0x2004, 2) == 0xFFFF


def test_irq_port_drives_a_controller():
    dev, ctx = make()
    seen: list[tuple[int, bool]] = []

    class Controller:
        def set_irq(self, line, level):
            seen.append((line, level))

    ctx.add_controller(Controller())
    pio_write(dev, 0x200E, 1, 1)
    pio_write(dev, 0x200E, 0, 1)
    assert seen == [(14, True), (14, False)]


@pytest.mark.parametrize("size", [1, 2, 4, 8])
def test_scratch_memory_little_endian(size):
    dev, _ = make()
    value = 0x0807060504030201 & ((1 << (8 * size)) - 1)
    mmio_write(dev, IOMEM_BASE + 0x10, value, size)
    assert mmio_read(dev, IOMEM_BASE + 0x10, size) == value
    assert mmio_read(dev, IOMEM_BASE + 0x10, 1) == 0x01
    assert mmio_read(dev, IOMEM_BASE + 0x10 + size, 1) == 0


def test_scratch_memory_is_64_kib_and_separate_from_the_register():
    dev, _ = make()
    mmio_write(dev, IOMEM_BASE + 0xFFFF, 0x7F, 1)
    pio_write(dev, 0xE0, 0x11, 1)
    assert mmio_read(dev, IOMEM_BASE + 0xFFFF, 1) == 0x7F and mmio_read(dev, IOMEM_BASE, 4) == 0
    mmio = Bus("mmio", 1 << 52)
    dev.register(mmio)
    assert mmio.lookup(IOMEM_BASE + 0xFFFF)[0] == IOMEM_BASE and mmio.lookup(IOMEM_BASE + 0x10000) is None
