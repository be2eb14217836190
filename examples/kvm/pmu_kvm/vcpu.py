# SPDX-License-Identifier: GPL-2.0-or-later
"""KvmVcpu: one KVM vCPU, seen by our devices through the devices.vcpu.Vcpu protocol.

The LAPIC and the PMU hold a vCPU and ask it only for what devices/vcpu.py lists: its id, CPL,
CR0, CR4, whether interrupts are enabled, whether guest code is running, ``kick()`` and
``queue_work()``.  Here those answers come from KVM (KVM_GET_REGS / KVM_GET_SREGS /
KVM_GET_VCPU_EVENTS), read lazily once per exit and cached until the next KVM_RUN.

Threading: the example runs the vCPU on the thread that calls :meth:`KvmVcpu.run_once`; devices
are called from that thread between two KVM_RUNs, so ``in_guest`` is always False while a device
runs (deferred PMIs go through ``queue_work`` and run before the next KVM_RUN, the same irq_work
path the Unicorn backend has outside its hooks).  ``kick()`` from another thread sets
``kvm_run.immediate_exit`` so that a KVM_RUN about to start returns at once; it does not
interrupt a KVM_RUN already under way (that needs a signal, which this example does not send).

Not part of the protocol (the machine's own controls): :meth:`run_once`, register access,
:meth:`inject_interrupt`, :meth:`inject_nmi`, :meth:`set_debug` and :meth:`run_work`.
"""

from __future__ import annotations

from collections.abc import Callable

from pmu_kvm import kvmapi

RFLAGS_IF = 1 << 9
RFLAGS_TF = 1 << 8


class KvmVcpu:
    """A KVM vCPU; provides devices.vcpu.Vcpu (checked by mypy: examples/kvm/typing_check.py)."""

    def __init__(self, fd: kvmapi.VcpuFd, vcpu_id: int = 0):
        self.fd = fd
        self.vcpu_id = vcpu_id
        self.in_guest = False
        self.attention = False        # kick() was called: the run loop looks at the devices again
        self.work: list[Callable[[], object]] = []
        self._regs: kvmapi.KvmRegs | None = None
        self._sregs: kvmapi.KvmSregs | None = None
        self._events: kvmapi.KvmVcpuEvents | None = None
        self.debug_control = -1       # last KVM_SET_GUEST_DEBUG control word (-1: never set)

    # -- devices.vcpu.Vcpu ------------------------------------------------------------------------
    def cpl(self) -> int:
        # SS.DPL is the CPL (CS.DPL differs for conforming code segments); real mode is CPL 0.
        sregs = self.sregs()
        return sregs.ss.dpl if sregs.cr0 & 1 else 0

    def cr0(self) -> int:
        return self.sregs().cr0

    def cr4(self) -> int:
        return self.sregs().cr4

    def interrupts_enabled(self) -> bool:
        return bool(self.regs().rflags & RFLAGS_IF) and not self.events().interrupt_shadow

    def kick(self) -> None:
        self.attention = True
        run = self.fd.run
        if run is not None:
            run.immediate_exit = 1

    def queue_work(self, fn: Callable[[], object]) -> None:
        self.work.append(fn)
        self.kick()

    # -- the machine's controls ------------------------------------------------------------------
    def run_work(self) -> None:
        """Deferred work (the PMU's deferred PMI), before the next KVM_RUN."""
        while self.work:
            self.work.pop(0)()

    def run_once(self) -> int:
        """One KVM_RUN; returns the exit reason (kvmapi.EXIT_*)."""
        self._regs = self._sregs = self._events = None
        self.fd.run.immediate_exit = 0
        self.attention = False
        self.in_guest = True
        try:
            return self.fd.run_once()
        finally:
            self.in_guest = False

    def regs(self) -> kvmapi.KvmRegs:
        if self._regs is None:
            self._regs = self.fd.get_regs()
        return self._regs

    def set_regs(self, regs: kvmapi.KvmRegs) -> None:
        self.fd.set_regs(regs)
        self._regs = regs

    def sregs(self) -> kvmapi.KvmSregs:
        if self._sregs is None:
            self._sregs = self.fd.get_sregs()
        return self._sregs

    def set_sregs(self, sregs: kvmapi.KvmSregs) -> None:
        self.fd.set_sregs(sregs)
        self._sregs = sregs

    def events(self) -> kvmapi.KvmVcpuEvents:
        if self._events is None:
            self._events = self.fd.get_vcpu_events()
        return self._events

    def code_bits(self) -> int:
        """The code segment's default operand size: 64, 32 or 16."""
        cs = self.sregs().cs
        return 64 if cs.l else 32 if cs.db else 16

    def inject_interrupt(self, vector: int) -> None:
        """KVM_INTERRUPT: valid only while kvm_run.ready_for_interrupt_injection is set."""
        self.fd.interrupt(vector)

    def inject_nmi(self) -> None:
        self.fd.nmi()

    def set_debug(self, control: int, breakpoint_address: int | None = None) -> None:
        """KVM_SET_GUEST_DEBUG with ``control`` and, if given, an instruction breakpoint in DR0."""
        blob = kvmapi.KvmGuestDebug(control=control)
        if breakpoint_address is not None:
            blob.debugreg[0] = breakpoint_address
            blob.debugreg[7] = 0x1 | (1 << 10)      # L0, R/W0 = LEN0 = 0 (execute), bit 10 reads as 1
        kvmapi._ioctl(self.fd.fd, kvmapi.KVM_SET_GUEST_DEBUG, blob, "KVM_SET_GUEST_DEBUG")
        self.debug_control = control
        self._regs = None       # KVM changed RFLAGS.TF/RF
