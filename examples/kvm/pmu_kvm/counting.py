# SPDX-License-Identifier: GPL-2.0-or-later
"""Exact instruction and branch counts under KVM, by single-stepping.

Hardware-assisted guests run natively: nothing tells the VMM how many instructions retired.  So
while a counter that counts a per-instruction event is running (instructions, branches,
conditional branches, core or reference cycles: in our model one instruction = one cycle), the
example single-steps the guest (KVM_SET_GUEST_DEBUG with KVM_GUESTDBG_SINGLESTEP) and feeds the
PMU one instruction per single-step trap, at the CPL it ran at, as a branch or conditional branch
when vmm/decode.py (the same decoder the Unicorn backend uses) says so -- what vmm/_ucvcpu.pyx's
commit() feeds through count_block, one instruction at a time.  When no such counter runs, the
guest runs free.  The decision is re-made before every KVM_RUN, so the WRMSR that enables a
counter is counted (its single-step trap comes after the write took effect) and the one that
disables it is not, as docs/design.md's counting model says.

Event delivery clears RFLAGS.TF, so the handler of an interrupt, NMI or exception would run
unstepped.  For the events the VMM injects (KVM_INTERRUPT, KVM_NMI, the #GP of a refused MSR
access) and for INT n, the counter puts a hardware instruction breakpoint (DR0) on the handler
found in the guest's IDT and resumes single-stepping there; the IRET back restores the stepped
frame's TF.  The guest debug mode always includes KVM_GUESTDBG_USE_HW_BP, so that a TF left in a
stacked RFLAGS after stepping stopped traps to us (we clear it) rather than into the guest.

Not exact (documented limits): handlers of exceptions the guest raises itself (#PF, #UD, #DE, ...)
and the kernel side of SYSCALL when FMASK clears TF run unstepped, so their instructions are not
counted; a guest's own use of TF or of DR0-DR7 breakpoints is not supported while the example
runs; LLC and branch-miss events are never counted (no cache or predictor model under KVM).

Cost: each stepped instruction is one KVM_RUN round trip plus KVM_GET_REGS, KVM_GET_SREGS and a
KVM_TRANSLATE for the code bytes (cached per page and CR3): tens of microseconds per guest
instruction from Python, against well under a nanosecond natively (README.md has the numbers).
"""

from __future__ import annotations

import struct

from capstone import CS_ARCH_X86, CS_MODE_16, CS_MODE_32, CS_MODE_64, Cs
from capstone import x86_const as cx

from pmu import events
from pmu_kvm import kvmapi
from vmm.decode import BRANCH_CONDITIONAL, ENDS_IN_BRANCH, decode_block

#: Generic events whose counts follow retired instructions one by one.
STEP_EVENTS = ((1 << events.CORE_CYCLES) | (1 << events.INSTRUCTIONS) | (1 << events.REF_CYCLES)
               | (1 << events.BRANCHES) | (1 << events.COND_BRANCHES))
DR6_B0 = 1 << 0
DR6_BS = 1 << 14
FREE = kvmapi.GUESTDBG_ENABLE | (1 << 17)             # KVM_GUESTDBG_USE_HW_BP = 0x20000
STEP = FREE | kvmapi.GUESTDBG_SINGLESTEP
MAX_INSN = 15
PAGE = 0x1000
_LENGTH = {64: Cs(CS_ARCH_X86, CS_MODE_64), 32: Cs(CS_ARCH_X86, CS_MODE_32), 16: Cs(CS_ARCH_X86, CS_MODE_16)}
_INT_N = {cx.X86_INS_INT, cx.X86_INS_INT3}
# Instructions after which RFLAGS.TF may come from memory or FMASK: single-stepping is re-armed.
_RELOADS_FLAGS = {cx.X86_INS_IRET, cx.X86_INS_IRETD, cx.X86_INS_IRETQ, cx.X86_INS_POPF, cx.X86_INS_POPFD,
                  cx.X86_INS_POPFQ, cx.X86_INS_SYSCALL, cx.X86_INS_SYSRET, cx.X86_INS_SYSENTER,
                  cx.X86_INS_SYSEXIT}
MAX_CATCH_UP = 16
for _md in _LENGTH.values():
    _md.detail = True


class Insn:
    """What the PMU needs to know of one instruction: branch, conditional branch, INT n vector."""

    __slots__ = ("branch", "conditional", "int_vector", "code", "size", "reloads_flags")

    def __init__(self, code: bytes, address: int, bits: int):
        first = next(_LENGTH[bits].disasm(code, address, 1), None)
        self.code = code
        self.size = 0
        self.reloads_flags = False
        if first is None:           # undecodable: it will #UD, and never retire
            self.branch = self.conditional = 0
            self.int_vector = None
            return
        self.size = first.size
        self.reloads_flags = first.id in _RELOADS_FLAGS
        flags = decode_block(code[:first.size], address, bits).flags
        self.branch = 1 if flags & ENDS_IN_BRANCH else 0
        self.conditional = 1 if flags & BRANCH_CONDITIONAL else 0
        self.int_vector = None
        if first.id in _INT_N:
            self.int_vector = 3 if first.id == cx.X86_INS_INT3 else first.operands[0].imm & 0xFF


class StepCounter:
    """Decides stepping before each KVM_RUN and feeds the PMU after each single-step trap."""

    def __init__(self, vcpu, pmu, ram: memoryview):
        self.vcpu = vcpu
        self.pmu = pmu
        self.ram = ram
        self.steps = 0                  # instructions fed to the PMU
        self.caught_up = 0              # of which retired without their own trap (see _catch_up)
        self.stray_traps = 0            # TF traps after stepping stopped (cleared)
        self._pending: tuple[int, int, Insn | None] | None = None   # (cpl, linear rip, insn) under TF
        self._breakpoint: int | None = None             # handler address armed in DR0
        self._pages: dict[tuple[int, int], int | None] = {}
        self._insns: dict[tuple[int, int], Insn] = {}
        self._control: tuple[int, int | None] = (-1, None)
        self._fault: int | None = None                  # exception KVM injects on the next entry
        self.window_wanted = False      # the machine waits for an interrupt window (see machine.py)

    def wanted(self) -> bool:
        return self.window_wanted or bool(self.pmu.core.active_events & STEP_EVENTS)

    def fault_injected(self, vector: int) -> None:
        """KVM will inject exception ``vector`` on the next entry (an MSR access we refused): the
        instruction did not retire."""
        self._fault = vector
        self._pending = None

    # -- before KVM_RUN --------------------------------------------------------------------------
    def prepare(self, injected_vector: int | None) -> None:
        """Set the debug mode for the next KVM_RUN; ``injected_vector`` is an event the VMM
        injects on this entry (its handler runs first)."""
        if injected_vector is None:
            injected_vector = self._fault
        self._fault = None
        if not self.wanted():
            self._pending = None
            self._breakpoint = None
            self._set(FREE, None)
            return
        if injected_vector is not None:
            # TF is cleared by the delivery: stop at the handler, step from there.
            self._pending = None
            self._breakpoint = self.handler_address(injected_vector)
            self._set(FREE if self._breakpoint is not None else STEP, self._breakpoint)
            return
        if self._breakpoint is not None:
            return      # still on the way to a handler entry
        rip = self._linear_rip()
        insn = self.insn_at(rip)
        self._pending = (self.vcpu.cpl(), rip, insn)
        if insn is not None and insn.int_vector is not None:
            self._breakpoint = self.handler_address(insn.int_vector)
        self._set(STEP, self._breakpoint)

    def _set(self, control: int, breakpoint_address: int | None, force: bool = False) -> None:
        if force or self._control != (control, breakpoint_address):
            self.vcpu.set_debug(control, breakpoint_address)
            self._control = (control, breakpoint_address)

    # -- after KVM_RUN ---------------------------------------------------------------------------
    def on_exit(self) -> None:
        """Any exit but a trap (I/O, MMIO, MSR, HLT...), before the VMM handles it: the
        instructions from the pending one up to (not including) the exiting one retired without
        a trap of their own (see on_debug_exit); feed them before the exit changes the counters."""
        if self._pending is None or self._breakpoint is not None:
            return
        cpl, rip, _ = self._pending
        self._pending = None
        now = self._linear_rip()
        if now != rip:
            self._catch_up(rip, cpl, now)

    def on_debug_exit(self, dr6: int) -> bool:
        """A KVM_EXIT_DEBUG: feed the stepped instruction(s).  False if the trap was not ours."""
        if dr6 & DR6_B0 and self._breakpoint is not None:
            if self._pending is not None:       # INT n reached its handler: it retired
                self._feed(self._pending[0], self._pending[2])
            self._pending = None
            self._breakpoint = None
            self._set(STEP, None, force=True)   # TF on again, from the handler's first instruction
            return True
        if not dr6 & DR6_BS:
            return False
        if self._control[0] != STEP:
            # A TF restored from a frame stacked while we stepped: not the guest's; drop it.
            regs = self.vcpu.regs()
            regs.rflags &= ~(1 << 8)
            self.vcpu.set_regs(regs)
            self.stray_traps += 1
            return True
        if self._pending is not None:
            cpl, rip, insn = self._pending
            self._pending = None
            if insn is not None and not insn.branch and self._linear_rip() == rip:
                return True         # one iteration of a REP string instruction: it retires once, at the end
            self._feed(cpl, insn)
            if insn is not None and not insn.branch:
                # Some instructions' traps are not taken on every CPU (seen here after MFENCE and
                # LFENCE on an AMD host): the next trap then comes one instruction later.
                self._catch_up(rip + insn.size, cpl, self._linear_rip())
            if insn is not None and insn.reloads_flags:
                self._set(STEP, None, force=True)   # the instruction may have loaded TF = 0
        return True

    def _catch_up(self, start: int, cpl: int, stop: int) -> None:
        """Feed the straight-line instructions in [start, stop) that retired without a trap (a
        branch among them ends the walk: it took us to ``stop``)."""
        address = start
        for _ in range(MAX_CATCH_UP):
            if address == stop:
                return
            insn = self.insn_at(address)
            if insn is None or insn.size == 0:
                return
            self._feed(cpl, insn)
            self.caught_up += 1
            if insn.branch:
                return
            address += insn.size

    def _feed(self, cpl: int, insn: Insn | None) -> None:
        branch, conditional = (insn.branch, insn.conditional) if insn is not None else (0, 0)
        self.pmu.feed_block(1, branch, cpl, conditional)
        self.steps += 1

    def _linear_rip(self) -> int:
        return self.vcpu.sregs().cs.base + self.vcpu.regs().rip

    # -- guest memory ----------------------------------------------------------------------------
    def physical(self, linear: int) -> int | None:
        sregs = self.vcpu.sregs()
        key = (sregs.cr3 if sregs.cr0 >> 31 else -1, linear // PAGE)
        if key not in self._pages:
            base = self.vcpu.fd.translate(linear & ~(PAGE - 1))
            self._pages[key] = base
        base = self._pages[key]
        return None if base is None else base + linear % PAGE

    def read_linear(self, linear: int, size: int) -> bytes:
        out = b""
        while size:
            phys = self.physical(linear)
            n = min(size, PAGE - linear % PAGE)
            if phys is None or phys + n > len(self.ram):
                break
            out += bytes(self.ram[phys:phys + n])
            linear, size = linear + n, size - n
        return out

    def insn_at(self, linear: int) -> Insn | None:
        bits = self.vcpu.code_bits()
        code = self.read_linear(linear, MAX_INSN)
        key = (linear, bits)
        insn = self._insns.get(key)
        if insn is None or insn.code != code:
            insn = Insn(code, linear, bits) if code else None
            if insn is not None:
                self._insns[key] = insn
        return insn

    def handler_address(self, vector: int) -> int | None:
        """The linear address of IDT[vector]'s handler (64-bit or 32-bit gates), or None."""
        sregs = self.vcpu.sregs()
        long_mode = bool(sregs.efer & (1 << 10))
        size = 16 if long_mode else 8
        if not sregs.cr0 & 1 or vector * size + size - 1 > sregs.idt.limit:
            return None
        gate = self.read_linear(sregs.idt.base + vector * size, size)
        if len(gate) != size:
            return None
        low, selector, _, mid = struct.unpack_from("<HHHH", gate)
        offset = low | mid << 16
        if long_mode:
            offset |= struct.unpack_from("<I", gate, 8)[0] << 32
            return offset      # 64-bit code segments have base 0
        # 32-bit: add the code segment's base from the GDT
        descriptor = self.read_linear(sregs.gdt.base + (selector & ~7), 8)
        if len(descriptor) != 8:
            return None
        d = int.from_bytes(descriptor, "little")
        base = ((d >> 16) & 0xFFFFFF) | ((d >> 56) & 0xFF) << 24
        return (base + offset) & 0xFFFFFFFF
