# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's isa-debug-exit device: a guest write to its port stops the VM with a chosen exit status.

Writing ``value`` (1, 2 or 4 bytes, at any offset in the range) asks for process exit status
``(value << 1) | 1``, exactly QEMU's formula, so a test kernel's status 0/1/38/63 becomes 1/3/77/127
and no guest can fake a clean exit of 0.  The device does not stop anything itself: it records the
status in ``exit_code`` (the raw value in ``exit_value``) and calls the ``on_exit(status)`` callback
given at construction; the machine then asks the vCPU to stop.  ``exit_code`` is the status the host
process will actually report, i.e. truncated to 8 bits as the operating system does.

Only the first write counts: QEMU exits at once, so later writes (the vCPU may retire a few more
instructions before it stops) are ignored.  Reads return 0, as in QEMU.
"""

from __future__ import annotations

from collections.abc import Callable

DEBUG_EXIT_BASE = 0xF4
DEBUG_EXIT_SIZE = 4


def exit_status(value: int) -> int:
    """The process exit status QEMU produces for a debug-exit write of ``value``."""
    return ((value << 1) | 1) & 0xFF


class DebugExit:
    """isa-debug-exit over ``[iobase, iobase + iosize)``."""

    def __init__(
        self,
        on_exit: Callable[[int], None] | None = None,
        iobase: int = DEBUG_EXIT_BASE,
        iosize: int = DEBUG_EXIT_SIZE,
    ):
        self.iobase = iobase
        self.iosize = iosize
        self.on_exit = on_exit
        self.exit_value: int | None = None
        self.exit_code: int | None = None

    def register(self, bus) -> None:
        bus.register(self.iobase, self.iosize, self)

    def read(self, access) -> int:
        return 0

    def write(self, access, value: int) -> None:
        if self.exit_code is not None:
            return
        self.exit_value = value & ((1 << (8 * access.size)) - 1)
        self.exit_code = exit_status(self.exit_value)
        if self.on_exit is not None:
            self.on_exit(self.exit_code)
