# SPDX-License-Identifier: GPL-2.0-or-later
"""``example-scratch``: eight I/O ports holding a 32-bit scratch register and a read-only magic.

Port map, from ``iobase`` (property, default 0x520), little-endian like x86 port I/O:

* +0..+3 -- scratch: reads return what was last written, byte lanes kept apart, so a byte or
  word write changes only its own lanes;
* +4..+7 -- magic, :data:`MAGIC` (the bytes "EXPL"); writes are ignored.

Accesses of 1, 2 or 4 bytes are served at any offset where they fit within the eight ports (the
bus refuses one that runs past the end).  The firmware kernel ``plugin_port`` checks all of this
from a guest.

Not supported: interrupts, reset of the scratch register other than making a new machine, and
save/restore of its value.
"""

from __future__ import annotations

from devices.bus import Access
from devices.device import BusRange, Device, DeviceContext, Prop, PropertyError

DEFAULT_IOBASE = 0x520
SIZE = 8
MAGIC = 0x4C505845          # b"EXPL" in memory order
_SCRATCH_BYTES = 4


class ExampleScratch(Device):
    """The scratch register and magic over ``[iobase, iobase + 8)``."""

    name = "example-scratch"
    description = "example plugin: 32-bit scratch register at iobase, read-only magic at iobase+4"
    props = (Prop("iobase", int, DEFAULT_IOBASE, "first of the eight I/O ports"),)

    def __init__(self, ctx: DeviceContext, iobase: int = DEFAULT_IOBASE) -> None:
        if not 0 <= iobase <= 0x10000 - SIZE:
            raise PropertyError(f"example-scratch: iobase {iobase:#x} leaves no room for {SIZE} ports below 0x10000")
        self.iobase = iobase
        self.scratch = 0

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.iobase, SIZE)]

    def read(self, access: Access) -> int:
        registers = self.scratch | MAGIC << 32
        return (registers >> (8 * access.offset)) & ((1 << (8 * access.size)) - 1)

    def write(self, access: Access, value: int) -> None:
        for i in range(access.size):
            lane = access.offset + i
            if lane < _SCRATCH_BYTES:
                byte = (value >> (8 * i)) & 0xFF
                self.scratch = (self.scratch & ~(0xFF << (8 * lane))) | byte << (8 * lane)
