# SPDX-License-Identifier: GPL-2.0-or-later
"""The Bochs/old-QEMU shutdown port 0x8900: writing the string "Shutdown" powers the VM off.

Test kernels use it as a fallback when isa-debug-exit did not stop the VM.  The device watches
the low byte of every write and, when the last eight bytes spell ``Shutdown``, records
``exit_code = 0`` and asks the machine to stop with ``ctx.stop("poweroff", 0)``: a poweroff in
QEMU ends the process with status 0, so that is the status we report.  Only the first shutdown counts.

It is a one-byte port: each write is one character.  Not supported: the other Bochs BIOS
debug ports (0x400-0x403 panic/info messages, 0x8A00 debugger).
"""

from __future__ import annotations

from devices.device import BusRange, Device

BOCHS_SHUTDOWN_PORT = 0x8900
SHUTDOWN_STRING = b"Shutdown"
POWEROFF_STATUS = 0


class BochsShutdown(Device):
    """One-port device matching the ``Shutdown`` string over its recent writes."""

    name = "bochs-shutdown"
    description = 'port 0x8900: writing "Shutdown" powers the VM off'
    user_creatable = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.exit_code: int | None = None
        self._recent = bytearray()

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", BOCHS_SHUTDOWN_PORT, 1)]

    def read(self, access) -> int:
        # Nothing to read back; an all-ones byte is what a port without a reader returns.
        return 0xFF

    def write(self, access, value: int) -> None:
        if self.exit_code is not None:
            return
        self._recent.append(value & 0xFF)
        del self._recent[: -len(SHUTDOWN_STRING)]
        if self._recent == SHUTDOWN_STRING:
            self.exit_code = POWEROFF_STATUS
            self.ctx.stop("poweroff", POWEROFF_STATUS)
