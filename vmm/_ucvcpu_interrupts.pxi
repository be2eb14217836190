# SPDX-License-Identifier: GPL-2.0-or-later
# Interrupts and exceptions (included by vmm/_ucvcpu.pyx): their delivery through the guest's IDT.
#
# * Exceptions and interrupts are delivered by the engine's own delivery code (IDT gates, TSS.RSP0
#   stack switch, error codes, CR2, #DF, triple fault), called from inside hooks; the engine's
#   64-bit IDT error codes are corrected to the SDM's.  A delivery through a task gate (a task
#   switch: CR3 changes) moves the code generation (_ucvcpu_blocks.pxi).
# * Injection: UcVcpu.on_block checks the pending-interrupt flags at each block boundary and calls
#   inject_pending(); NMIs are delivered whatever RFLAGS.IF says (until the guest's IRET unmasks the
#   next), maskable interrupts when IF=1 and no STI/MOV SS shadow is active.
# * A fault while delivering a #DF is a triple fault even when the engine stops by itself, and a run
#   that is ending delivers no more exceptions (a delivery that reads unmapped memory would
#   otherwise be retried inside the engine for ever); every so many deliveries the run's timeout
#   is looked at (_ucvcpu_timeout.pxi), as exceptions alone do not move virtual time.
# * RDPMC, which the engine turns into #UD (or a wrong #GP at CPL3), is answered here from the PMU
#   core; so is KVM's forced-emulation prefix (``ud2; .ascii "kvm"``) when enabled, and so are
#   VMCALL and VMMCALL (#UD in the engine) when the platform offers hypercalls (KVM's ABI,
#   devices/kvm_pv.py).
#
# Not here: the interrupt controller (devices.lapic: what is pending), the STI-shadow cut of a block
# (UcVcpu.on_block), the #DB traps the engine does not raise (_ucvcpu_debug.pxi).  An interrupt made
# pending by an MMIO access (e.g. a self-IPI through the xAPIC page) is taken at the next block
# boundary, a few instructions late.

cdef void _on_intr(void *uc, uint32_t intno, void *ud) noexcept:
    on_intr(<UcVcpu> ud, intno)

cdef int _on_invalid(void *uc, void *ud) noexcept:
    return on_invalid(<UcVcpu> ud)


cdef bint inject_pending(UcVcpu vcpu, bint interrupts) noexcept:
    """Deliver the interrupt source's next NMI (or, if ``interrupts``, maskable interrupt)
    through the IDT; True if one was."""
    cdef int vector
    cdef bint nmi
    try:
        got = vcpu.intc.next_injection(interrupts) if vcpu.intc is not None else None
        if got is None:
            if interrupts:
                vcpu.irq_if = 0
            return False
        vector, nmi = got
    except BaseException as e:
        vcpu._fail(f"interrupt controller: {e!r}")
        return False
    deliver_external(vcpu, vector, nmi)
    return True


cdef void deliver_external(UcVcpu vcpu, int vector, bint nmi) noexcept:
    if vcpu.tap.mask & (1 << TK_IRQ):
        trace_emit(&vcpu.tap, TK_IRQ, TF_NMI if nmi else 0, vector, 0, 0)
    if nmi:
        (<uint32_t*> (vcpu.env + OFF_HFLAGS2))[0] |= HF2_NMI_MASK   # cleared by the guest's IRET
    deliver(vcpu, vector, 1)
    vcpu.db_hits = 0        # (the delivery's own writes are no data breakpoint's)
    vcpu.leave_block()
    vcpu.restart(vcpu.pc())


cdef void deliver(UcVcpu vcpu, int vector, int hardware) noexcept:
    """Deliver ``vector`` through the IDT: an external interrupt (``hardware``) or a fault whose frame
    points at the current instruction (error code 0).  Nothing once the run's timeout has expired."""
    cdef uint64_t cr3 = vcpu.c_cr(3)
    if timed_out_while_still(vcpu):
        return
    x86_hardirq(vcpu.env, vector, hardware)
    if vcpu.c_cr(3) != cr3:
        code_may_have_changed(vcpu, False)  # through a task gate: a task switch


cdef void raise_fault(UcVcpu vcpu, int vector) noexcept:
    """Deliver a fault whose frame points at the current instruction (error code 0)."""
    if vcpu.tap.mask & (1 << TK_EXC):
        trace_exception(vcpu, vector)
    vcpu.leave_block()
    deliver(vcpu, vector, 0)
    vcpu.db_hits = 0
    vcpu.restart(vcpu.pc())


cdef inline bint has_error_code(uint32_t vector) noexcept nogil:
    """Exceptions that push an error code (#DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP)."""
    return vector == 8 or (10 <= vector <= 14) or vector == 17 or vector == 21


cdef void trace_exception(UcVcpu vcpu, int vector) noexcept:
    """An ``exc`` record for a fault the hook layer raises itself (#GP(0), #UD)."""
    trace_emit(&vcpu.tap, TK_EXC, TF_ERROR_CODE if has_error_code(vector) else 0, vector, 0, 0)


cdef void trace_delivered(UcVcpu vcpu, uint32_t intno, uint64_t software, uint32_t record) noexcept:
    """Complete the ``exc`` record ``record`` (made before the delivery) with the error code the
    delivery pushed (the top of the handler's stack) and, for #PF, CR2."""
    cdef uint64_t ec = 0
    cdef TraceRecord *r
    cdef TraceRing *ring = vcpu.tap.ring
    if software or not has_error_code(intno) or ring.count != record + 1:
        return      # (a drain in between wrote the record already: it goes without them)
    r = &ring.records[record]
    if r.kind != TK_EXC or r.a != intno:
        return
    if vcpu.read_guest(vcpu.regs()[R_RSP], PROT_READ, &ec, 8 if (vcpu.hflags() & HF_LMA) else 4):
        r.flags |= TF_ERROR_CODE
        r.b = ec
    if intno == 14:
        r.flags |= TF_CR2
        r.c = vcpu.c_cr(2)


cdef void on_intr(UcVcpu vcpu, uint32_t intno) noexcept:
    cdef uint64_t rip = vcpu.pc(), dr6 = 0
    cdef uint8_t op[2]
    cdef uint64_t insn, cr3
    if triple_faulted(vcpu) or vcpu.stop_reason != STOP_NONE:
        # A run that is ending delivers nothing: a delivery that read unmapped memory (an IDT
        # beyond RAM) leaves the engine's exception pending, and delivering it again would
        # loop inside the engine for ever.
        return
    # Exceptions report RIP at the faulting instruction (which did not retire); INT n,
    # INT3 and INTO report RIP after it (it did).  Either way: retire what lies before RIP.
    insn = software_interrupt_at(vcpu, rip, intno)
    vcpu.commit_before(rip)
    vcpu.leave_block()
    if insn:
        # The engine moved RIP past INT n before this hook; the return address it pushes
        # comes from its next-EIP, but a fault while delivering (not-present gate, DPL)
        # must point at the INT instruction itself.
        vcpu.set_pc(insn)
    if intno == EXC_GP and vcpu.c_cpl() > 0 and vcpu.fetch(rip, op, 2):
        if op[0] == 0x0F and op[1] == 0x33:
            # The engine's RDPMC raises #GP at CPL>0 when CR4.PCE=1 (its check is inverted).
            # It has already recorded that #GP as the exception in flight: forget it, or the
            # guest's next contributory fault would become a #DF.
            (<int*> (vcpu.env + OFF_OLD_EXCEPTION))[0] = -1
            emulate_rdpmc(vcpu, rip)
            return
    if intno == EXC_DB and vcpu.db_hits:
        # The engine's single-step trap (or an instruction breakpoint) and the data breakpoints the
        # instruction hit are one #DB.
        uc_reg_read(vcpu.uc, REG_DR6, &dr6)
        dr6 |= vcpu.db_hits
        uc_reg_write(vcpu.uc, REG_DR6, &dr6)
    cdef uint32_t record = 0
    cdef bint traced = (vcpu.tap.mask & (1 << TK_EXC)) != 0
    if timed_out_while_still(vcpu):
        return      # a handler that faults at once retires nothing: time would not move
    if traced:
        record = vcpu.tap.ring.count
        trace_emit(&vcpu.tap, TK_EXC, TF_SOFTWARE if insn else 0, intno, 0, 0)
    vcpu.delivering_df = intno == 8
    cr3 = vcpu.c_cr(3)
    x86_do_interrupt(vcpu.cpu)
    vcpu.delivering_df = False
    vcpu.db_hits = 0        # a faulting instruction's accesses hit nothing (it did not complete)
    if vcpu.c_cr(3) != cr3:
        code_may_have_changed(vcpu, False)  # through a task gate: a task switch
    if (intno == 11 or intno == 13) and (vcpu.hflags() & HF_LMA):
        fix_idt_error_code(vcpu)
    if traced:
        trace_delivered(vcpu, intno, insn, record)


cdef uint64_t software_interrupt_at(UcVcpu vcpu, uint64_t rip, uint32_t intno) noexcept:
    """Address of the INT n / INT3 / INTO / INT1 that raised ``intno`` just before ``rip``, or 0."""
    cdef Block *b = vcpu.cur
    cdef int k
    cdef uint64_t at
    cdef uint8_t op[2]
    if b == NULL:
        return 0
    k = index_in_block(b, rip)
    if k == 0 or (k < b.n and b.addr + b.offs[k] != rip) or (k == b.n and rip != b.addr + b.size):
        return 0
    at = b.addr + b.offs[k - 1]
    if not vcpu.fetch(at, op, 2):
        return 0
    if (op[0] == 0xCD and op[1] == intno) or (op[0] == 0xCC and intno == 3) or \
            (op[0] == 0xCE and intno == 4) or (op[0] == 0xF1 and intno == 1):
        return at
    return 0


cdef void fix_idt_error_code(UcVcpu vcpu) noexcept:
    """The engine's 64-bit IDT checks push vector*16+2 as the error code of the #GP/#NP
    they raise; the SDM says vector*8+2 (selector index into the IDT, IDT bit set).  In long
    mode only those checks produce IDT error codes, so any with the IDT bit is rewritten."""
    cdef uint64_t rsp = vcpu.regs()[R_RSP], ec = 0
    if not vcpu.read_guest(rsp, PROT_READ, &ec, 8) or (ec & 3) != 2:
        return
    ec = ((ec >> 4) << 3) | 2
    uc_vmem_write(vcpu.uc, rsp, PROT_WRITE, &ec, 8)


cdef bint triple_faulted(UcVcpu vcpu) noexcept:
    """True if a #DF delivery never completed: a fault while delivering it.  The engine then
    either stops (run() sees the flag still set) or retries the faulting instruction, so the
    next hook we see is where a CPU would have shut down."""
    if not vcpu.delivering_df:
        return False
    vcpu.delivering_df = False
    vcpu.leave_block()
    vcpu.stop_reason = STOP_SHUTDOWN
    vcpu.stop_text = f"triple fault at RIP {vcpu.eip():#x}"
    uc_emu_stop(vcpu.uc)
    return True


cdef int on_invalid(UcVcpu vcpu) noexcept:
    cdef uint64_t rip = vcpu.pc()
    cdef uint8_t op[5]
    if triple_faulted(vcpu):
        return 0
    if vcpu.stop_reason != STOP_NONE:
        return 1        # as in on_intr: the run is ending, deliver nothing
    vcpu.commit_before(rip)
    vcpu.leave_block()
    if vcpu.fetch(rip, op, 3) and op[0] == 0x0F:
        if op[1] == 0x33:
            emulate_rdpmc(vcpu, rip)
            return 1
        if op[1] == 0x01 and (op[2] == 0xC1 or op[2] == 0xD9) and emulate_hypercall(vcpu, rip):
            return 1
        if op[1] == 0x0B and vcpu.forced_emulation and vcpu.fetch(rip, op, 5) \
                and op[2] == 0x6B and op[3] == 0x76 and op[4] == 0x6D:
            vcpu.set_pc(rip + 5)    # "ud2; .ascii kvm": run the next instruction as if emulated
            return 1
    if vcpu.tap.mask & (1 << TK_EXC):
        trace_exception(vcpu, EXC_UD)
    deliver(vcpu, EXC_UD, 0)
    return 1


cdef bint emulate_hypercall(UcVcpu vcpu, uint64_t rip) noexcept:
    """VMCALL or VMMCALL with KVM's hypercall ABI: the platform answers (vmm.machine.Machine.hypercall,
    devices/kvm_pv.py) and the result goes to RAX.  False when the platform offers no hypercalls:
    the caller raises the #UD."""
    cdef uint64_t *r = vcpu.regs()
    vcpu.drop_budget()       # a hypercall may reach other devices (IPIs)
    try:
        if vcpu.platform is None or not hasattr(vcpu.platform, "hypercall"):
            return False
        regs = {"rax": r[R_RAX], "rbx": r[R_RBX], "rcx": r[R_RCX], "rdx": r[R_RDX], "rsi": r[R_RSI]}
        result = vcpu.platform.hypercall(regs, vcpu.c_cpl(), vcpu.code_bits() == 64)
        if result is None:
            return False
        r[R_RAX] = <uint64_t> result
    except BaseException as e:
        vcpu._fail(f"hypercall: {e!r}")
        return True
    retire_outside_block(vcpu, rip + 3)
    return True


cdef void emulate_rdpmc(UcVcpu vcpu, uint64_t rip) noexcept:
    """RDPMC outside any translation block: answer it, retire it, step over it."""
    cdef uint64_t *r = vcpu.regs()
    cdef uint64_t v = 0
    cdef bint fault
    if vcpu.pmu is not None:
        fault = vcpu.pmu.rdpmc(r[R_RCX] & 0xFFFFFFFF, vcpu.c_cpl(), vcpu.c_cr(0), vcpu.c_cr(4), &v) != 0
    else:
        res = vcpu._py_exit(ExitKind.RDPMC, r[R_RCX] & 0xFFFFFFFF, 4, 0)
        fault = res is None or isinstance(res, Fault)
        if not fault:
            v = res
    if vcpu.tap.mask & (1 << TK_RDPMC):
        trace_emit(&vcpu.tap, TK_RDPMC, TF_FAULT if fault else 0, r[R_RCX] & 0xFFFFFFFF, v, 0)
    if fault:
        if vcpu.tap.mask & (1 << TK_EXC):
            trace_exception(vcpu, EXC_GP)
        deliver(vcpu, EXC_GP, 0)
        return
    r[R_RAX] = v & 0xFFFFFFFF
    r[R_RDX] = v >> 32
    retire_outside_block(vcpu, rip + 2)


cdef void retire_outside_block(UcVcpu vcpu, uint64_t next_pc) noexcept:
    """An instruction emulated in the engine's #UD/#GP path (RDPMC, a hypercall) retires and
    execution goes on after it (outside any translation block a plain store of EIP is enough), as
    after any instruction: no interrupt shadow, and the #DB trap of a single-step."""
    vcpu.retire_one()
    (<uint32_t*> (vcpu.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
    vcpu.set_pc(next_pc)
    trap_after_emulated(vcpu, 0)
