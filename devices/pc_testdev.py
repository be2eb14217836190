# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's ``pc-testdev``: the ISA test device kvm-unit-tests drives (``-device pc-testdev``).

What it decodes, as QEMU's hw/misc/pc-testdev.c does:

* ports 0xE0-0xE3: one 32-bit data register, read and written with any access size at any
  offset (byte lanes, little endian); kvm-unit-tests' emulator test streams bytes through it
  with ``rep outsb`` / ``rep insb`` and reads back the last one;
* ports 0xE8-0xEB: the same register again, reached one byte at a time (QEMU splits wider
  accesses into bytes; the result is the same);
* port 0xE4 (32-bit writes): "flush page" -- QEMU drops the host mapping of the guest page at
  the written physical address so that the next access takes a fresh fault.  Guest RAM here is a
  plain host mapping the engine always sees, so nothing guest-visible changes: the write is
  accepted and does nothing;
* ports 0x2000-0x2017 (byte writes): port 0x2000 + N sets interrupt line N to the written
  value (0 low, anything else high) -- kvm-unit-tests' IOAPIC test raises and lowers IRQs this
  way.  Lines are ISA IRQs as vmm/platform.py routes them (IRQ 0 is IOAPIC pin 2); lines 16-23
  reach IOAPIC pins 16-23 (QEMU only has ISA lines 0-15 there);
* MMIO 0xFF000000-0xFF00FFFF: 64 KiB of scratch memory (kvm-unit-tests' "ioram"), any access
  size, little endian, crossing pages included.

Reads of the write-only ports (flush, IRQ lines) return all-ones, as unclaimed ports do;
accesses QEMU's access-size rules reject (a wide write to an IRQ port, a narrow one to the flush
port) are ignored.  The device is not on the default board (QEMU adds it only with ``-device
pc-testdev``).  Our own test hooks (devices/test_hooks.py) moved off port 0xE0 to make room.

Not supported: properties (QEMU's device has none either), save/restore.
"""

from __future__ import annotations

from devices.device import BusRange, Device

DATA_PORT = 0xE0
FLUSH_PORT = 0xE4
DATA_BYTE_PORT = 0xE8
IRQ_PORT_BASE = 0x2000
IRQ_LINES = 24
IOMEM_BASE = 0xFF000000
IOMEM_SIZE = 0x10000
REGISTER_BYTES = 4


def _all_ones(size: int) -> int:
    return (1 << (8 * size)) - 1


def _bytes(value: int, size: int) -> bytes:
    return (value & _all_ones(size)).to_bytes(size, "little")


class PcTestdev(Device):
    name = "pc-testdev"
    description = ("QEMU's ISA test device for kvm-unit-tests: data register 0xE0/0xE8, flush port 0xE4, "
                   "IRQ lines 0x2000, scratch memory at 0xFF000000")

    def __init__(self, ctx):
        self._ctx = ctx
        self._data = bytearray(REGISTER_BYTES)
        self._iomem = bytearray(IOMEM_SIZE)

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", DATA_PORT, REGISTER_BYTES), BusRange("pio", FLUSH_PORT, REGISTER_BYTES),
                BusRange("pio", DATA_BYTE_PORT, REGISTER_BYTES), BusRange("pio", IRQ_PORT_BASE, IRQ_LINES),
                BusRange("mmio", IOMEM_BASE, IOMEM_SIZE)]

    def read(self, access) -> int:
        base = access.address - access.offset
        if base == IOMEM_BASE:
            return int.from_bytes(self._iomem[access.offset:access.offset + access.size], "little")
        if base in (DATA_PORT, DATA_BYTE_PORT):
            return int.from_bytes(self._data[access.offset:access.offset + access.size], "little")
        return _all_ones(access.size)

    def write(self, access, value: int) -> None:
        base = access.address - access.offset
        if base == IOMEM_BASE:
            self._iomem[access.offset:access.offset + access.size] = _bytes(value, access.size)
        elif base in (DATA_PORT, DATA_BYTE_PORT):
            self._data[access.offset:access.offset + access.size] = _bytes(value, access.size)
        elif base == IRQ_PORT_BASE and access.size == 1:
            self._ctx.irq(access.offset).set_level(value & 0xFF != 0)
