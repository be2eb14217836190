# SPDX-License-Identifier: GPL-2.0-or-later
"""VMM test hooks: an I/O port through which our own test kernels ask the VMM to do things
only a device could, so guest-level tests can check the paths devices use.

Port 0xE0, 32-bit OUT:
  1 -> deliver the LAPIC's LVTPC entry now, exactly as the PMU does for a PMI.

Present only when the machine is built with ``test_hooks=True`` (CLI ``--test-hooks``); real
kernels never see it.  Reads return all-ones.  Unknown commands are ignored.
"""

from __future__ import annotations

TEST_HOOKS_PORT = 0xE0
CMD_DELIVER_LVTPC = 1


class TestHooks:
    __test__ = False    # not a pytest class

    def __init__(self, lapic, lvt_pmc):
        self._lapic = lapic
        self._lvt_pmc = lvt_pmc

    def register(self, bus) -> None:
        bus.register(TEST_HOOKS_PORT, 4, self)

    def read(self, access) -> int:
        return (1 << (8 * access.size)) - 1

    def write(self, access, value: int) -> None:
        if access.offset == 0 and value == CMD_DELIVER_LVTPC:
            self._lapic.deliver_local(self._lvt_pmc)
