# SPDX-License-Identifier: GPL-2.0-or-later
"""A fake vCPU for device-level tests and for embedding devices without a CPU.

It offers exactly the view devices may use, the :class:`devices.vcpu.Vcpu` protocol (docs/design.md,
"vCPU view for devices"): its id, CPL, CR0, CR4, the interrupt window, the "in guest" flag, kick()
and queue_work(); tests set the values with the ``set_*`` methods and plain attributes.  Deferred
work queued while outside the guest runs only when the test calls :meth:`enter_guest` (or
:meth:`run_work`), just as the real backend runs it before it next enters the guest.

Not supported: running anything (there are no instructions, registers or exits).
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["CR0_PE", "CR4_PCE", "FakeVcpu"]

CR0_PE = 1 << 0
CR4_PCE = 1 << 8


class FakeVcpu:
    def __init__(self, vcpu_id: int = 0, cpl: int = 0, cr0: int = CR0_PE | (1 << 31), cr4: int = 0):
        self.vcpu_id = vcpu_id
        self._cpl = cpl
        self._cr0 = cr0
        self._cr4 = cr4
        self.rflags_if = True
        self.interrupt_shadow = False
        self.in_guest = False
        self.halted = False
        self.kicks = 0
        self.work: list[Callable[[], object]] = []

    def cpl(self) -> int:
        return self._cpl

    def cr0(self) -> int:
        return self._cr0

    def cr4(self) -> int:
        return self._cr4

    def set_cpl(self, cpl: int) -> None:
        self._cpl = cpl

    def set_cr0(self, value: int) -> None:
        self._cr0 = value

    def set_cr4(self, value: int) -> None:
        self._cr4 = value

    def interrupts_enabled(self) -> bool:
        return self.rflags_if and not self.interrupt_shadow

    def kick(self) -> None:
        self.kicks += 1
        self.halted = False

    def queue_work(self, fn: Callable[[], object]) -> None:
        self.work.append(fn)
        self.kick()

    def run_work(self) -> None:
        while self.work:
            self.work.pop(0)()

    def enter_guest(self) -> None:
        """What the real backend does before running guest code: drain deferred work first."""
        self.run_work()
        self.in_guest = True

    def exit_guest(self) -> None:
        self.in_guest = False
