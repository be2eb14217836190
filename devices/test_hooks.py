# SPDX-License-Identifier: GPL-2.0-or-later
"""VMM test hooks: an I/O port through which our own test kernels ask the VMM to do things
only a device could, so guest-level tests can check the paths devices use.

Port 0x5F0, 32-bit OUT:
  1 -> deliver the LAPIC's LVTPC entry now, exactly as the PMU does for a PMI.

Present only when asked for (``-device pmu-vmm-test-hooks``, or the CLI's ``--test-hooks``);
real kernels never see it.  The LVTPC delivery goes through ``ctx.deliver_local(cpu, "pmc")``.
Reads return all-ones.  Unknown commands are ignored.

The port used to be 0xE0, which QEMU's pc-testdev (devices/pc_testdev.py) owns: kvm-unit-tests
stream data through it.  0x5F0 is used by no PC device, ours or QEMU's.
"""

from __future__ import annotations

from devices.device import BusRange, Device

TEST_HOOKS_PORT = 0x5F0
CMD_DELIVER_LVTPC = 1


class TestHooks(Device):
    __test__ = False    # not a pytest class

    name = "pmu-vmm-test-hooks"
    description = "port 0x5F0: lets our test kernels make the LAPIC deliver its LVTPC entry (tests only)"

    def __init__(self, ctx):
        self._ctx = ctx

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", TEST_HOOKS_PORT, 4)]

    def read(self, access) -> int:
        return (1 << (8 * access.size)) - 1

    def write(self, access, value: int) -> None:
        if access.offset == 0 and value == CMD_DELIVER_LVTPC:
            self._ctx.deliver_local(access.vcpu_id, "pmc")
