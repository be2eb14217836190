# SPDX-License-Identifier: GPL-2.0-or-later
"""What a device may ask of a vCPU: the :class:`Vcpu` protocol (docs/design.md, "vCPU view for devices").

The LAPIC and the PMU hold their vCPU and use only this; the Unicorn backend
(:class:`vmm._ucvcpu.UcVcpu`) and the device-test fake (:class:`vmm.fake_vcpu.FakeVcpu`) both
provide it, which mypy checks (tests/typing_vcpu.py).  It is a structural type: a backend need not
inherit from it, only have these members with these types.  ``isinstance(x, Vcpu)`` works too but,
as for any runtime-checkable protocol, only checks that the members exist.

Everything here is called on the vCPU's side (its thread, inside or between guest runs); code
elsewhere reaches the vCPU through :meth:`Vcpu.queue_work`.

Not part of the protocol: the machine's controls of the backend (running it, its exit handler,
interrupt source and platform, MMIO mapping, the PMU and LAPIC fast paths, the register state):
those are the backend's own API, used only by vmm/machine.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

__all__ = ["Vcpu"]


@runtime_checkable
class Vcpu(Protocol):
    """The vCPU as devices see it; read-only properties may be plain attributes in a backend."""

    @property
    def vcpu_id(self) -> int:
        """The vCPU's index in the machine (the ``vcpu_id`` of its bus accesses and exits)."""
        ...

    @property
    def in_guest(self) -> bool:
        """True while guest code runs, i.e. when a device is called from inside the vCPU's hooks."""
        ...

    def cpl(self) -> int:
        """Current privilege level, 0-3."""
        ...

    def cr0(self) -> int:
        ...

    def cr4(self) -> int:
        ...

    def interrupts_enabled(self) -> bool:
        """RFLAGS.IF is set and no STI / MOV SS interrupt shadow is active."""
        ...

    def kick(self) -> None:
        """Something changed for this vCPU (interrupt, timer, deferred work): look at it soon,
        also out of HLT."""
        ...

    def queue_work(self, fn: Callable[[], object]) -> None:
        """Run ``fn()`` on the vCPU's side before it next enters the guest (the irq_work
        equivalent); also kicks it."""
        ...
