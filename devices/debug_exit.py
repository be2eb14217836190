# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's isa-debug-exit device: a guest write to its port stops the VM with a chosen exit status.

Writing ``value`` (1, 2 or 4 bytes, at any offset in the range) asks for process exit status
``(value << 1) | 1``, exactly QEMU's formula, so a test kernel's status 0/1/38/63 becomes 1/3/77/127
and no guest can fake a clean exit of 0.  The device does not stop anything itself: it records the
status in ``exit_code`` (the raw value in ``exit_value``) and asks the machine to stop with
``ctx.stop("debug-exit", status)``.  ``exit_code`` is the status the host
process will actually report, i.e. truncated to 8 bits as the operating system does.

Only the first write counts: QEMU exits at once, so later writes (the vCPU may retire a few more
instructions before it stops) are ignored.  Reads return 0, as in QEMU.
"""

from __future__ import annotations

from devices.device import BusRange, Device, Prop

DEBUG_EXIT_BASE = 0xF4
DEBUG_EXIT_SIZE = 4


def exit_status(value: int) -> int:
    """The process exit status QEMU produces for a debug-exit write of ``value``."""
    return ((value << 1) | 1) & 0xFF


class DebugExit(Device):
    """isa-debug-exit over ``[iobase, iobase + iosize)``."""

    name = "isa-debug-exit"
    description = "write a value to stop the VM with exit status (value << 1) | 1"
    props = (
        Prop("iobase", int, DEBUG_EXIT_BASE, "first I/O port"),
        Prop("iosize", int, DEBUG_EXIT_SIZE, "number of I/O ports"),
    )

    def __init__(self, ctx, iobase: int = DEBUG_EXIT_BASE, iosize: int = DEBUG_EXIT_SIZE):
        self.ctx = ctx
        self.iobase = iobase
        self.iosize = iosize
        self.exit_value: int | None = None
        self.exit_code: int | None = None

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.iobase, self.iosize)]

    def read(self, access) -> int:
        return 0

    def write(self, access, value: int) -> None:
        if self.exit_code is not None:
            return
        self.exit_value = value & ((1 << (8 * access.size)) - 1)
        self.exit_code = exit_status(self.exit_value)
        self.ctx.stop("debug-exit", self.exit_code)
