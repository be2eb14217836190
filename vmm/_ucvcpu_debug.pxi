# SPDX-License-Identifier: GPL-2.0-or-later
# Debug exceptions the engine does not raise itself (included by vmm/_ucvcpu.pyx), so that #DB is
# exact around every instruction (SDM vol. 3 18.2, 18.3).
#
# * The engine raises the single-step trap (RFLAGS.TF) after the instructions it runs, and the
#   instruction-breakpoint fault (DR0-DR3, R/W 00b) before them, even before those the hook layer
#   emulates.  Instructions stepped over instead of run (port I/O, CR8, MSRs outside the engine,
#   RDPMC, hypercalls) get their single-step trap here (trap_after_emulated): one #DB with DR6.BS,
#   RIP after the instruction; RF is cleared after them as after any instruction.  A fault the
#   instruction raises wins (no trap), and a MOV SS/POP SS shadow (the engine's) delays the trap of
#   the MOV SS to after the next instruction, emulated or not: one #DB.
# * I/O breakpoints (CR4.DE=1, R/W 10b) trap after IN/OUT, which are emulated (io_breakpoints).
# * Data breakpoints (R/W 01b writes, 11b reads and writes): the engine's watchpoints are stubs, so
#   while DR7 enables one (re-read at the block after each MOV to a debug register, which the engine
#   runs and ends its block with) a memory-access hook notes the breakpoints each access overlaps and
#   a code hook on every instruction delivers the trap before the next instruction, with B0-B3 for
#   them (and BS too if the engine's single-step trap comes first: one #DB).  Those hooks cost on
#   every access and instruction, so they exist only while a data breakpoint is enabled.
#
# Not here: the delivery itself (the engine's, as in _ucvcpu_interrupts.pxi), the code hooks that
# call these (_ucvcpu_insns.pxi), the checks at each block (UcVcpu.on_block).  Not supported: I/O
# breakpoints on INS/OUTS (the engine runs them through its I/O hooks, where no trap can be
# delivered), general detect (DR7.GD) and DR6.BD/BT; the stack writes of event delivery never hit a
# data breakpoint.

DEF DR7_RW_WRITE = 1
DEF DR7_RW_IO = 2
DEF DR7_RW_ACCESS = 3

cdef int MEM_WRITE = ucapi.UC_MEM_WRITE


cdef int _on_data_access(void *uc, int access, uint64_t address, int size, int64_t value, void *ud) noexcept:
    cdef UcVcpu vcpu = <UcVcpu> ud
    cdef int n
    for n in range(4):
        if vcpu.db_len[n] and address < vcpu.db_base[n] + vcpu.db_len[n] and vcpu.db_base[n] < address + size \
                and (access == MEM_WRITE or vcpu.db_rw[n] == DR7_RW_ACCESS):
            vcpu.db_hits |= <uint64_t> 1 << n
    return 1


cdef void _on_data_step(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    if (<UcVcpu> ud).db_hits:
        data_breakpoint_trap(<UcVcpu> ud, address)
        exit_if_requested(uc, (<UcVcpu> ud).no_exit_request)    # (no Python reference held here)


cdef inline uint64_t breakpoint_length(uint64_t dr7, int n) noexcept nogil:
    """The bytes (or ports) breakpoint ``n`` covers: DR7's LEN 00b, 01b, 10b, 11b are 1, 2, 8, 4."""
    cdef uint64_t code = (dr7 >> (18 + 4 * n)) & 3
    return 8 if code == 2 else (4 if code == 3 else code + 1)


cdef inline int breakpoint_kind(uint64_t dr7, int n) noexcept nogil:
    """R/W of breakpoint ``n``, or -1 if DR7 enables it neither locally nor globally."""
    return <int> ((dr7 >> (16 + 4 * n)) & 3) if (dr7 >> (2 * n)) & 3 else -1


cdef void set_dr6_hits(UcVcpu vcpu, uint64_t hits) noexcept:
    """DR6 as a #DB trap leaves it: B0-B3 replaced by those of ``hits``, BS as in ``hits``, the rest
    as it was (the engine's single-step does the same)."""
    cdef uint64_t dr6 = 0
    uc_reg_read(vcpu.uc, REG_DR6, &dr6)
    dr6 = (dr6 & ~<uint64_t>DR6_HITS) | hits
    uc_reg_write(vcpu.uc, REG_DR6, &dr6)


cdef void deliver_db(UcVcpu vcpu) noexcept:
    """A #DB trap through the IDT, its frame at the current RIP (traced as the engine's are)."""
    if vcpu.tap.mask & (1 << TK_EXC):
        trace_exception(vcpu, EXC_DB)
    x86_hardirq(vcpu.env, EXC_DB, 0)


cdef void trap_after_emulated(UcVcpu vcpu, uint64_t breakpoints) noexcept:
    """The end of an instruction emulated here, RIP already after it.  RFLAGS.RF is cleared (it
    spares only the instruction it was set for), and the #DB trap a CPU takes there is delivered
    (SDM vol. 3 18.2.3): DR6.BS if RFLAGS.TF is set (no emulated instruction changes TF, so it is
    the flag the instruction started with) and ``breakpoints``, B0-B3 of the I/O breakpoints it
    hit.  The engine's own single-step never sees these instructions (they are stepped over, not
    run) and it has no I/O breakpoints."""
    cdef uint64_t *eflags = <uint64_t*> (vcpu.env + OFF_EFLAGS)
    cdef uint64_t hits = breakpoints
    eflags[0] &= ~<uint64_t>EFLAGS_RF
    if eflags[0] & EFLAGS_TF:
        hits |= DR6_BS
    if hits == 0:
        return
    set_dr6_hits(vcpu, hits)
    deliver_db(vcpu)


cdef uint64_t io_breakpoints(UcVcpu vcpu, uint32_t port, uint32_t size) noexcept:
    """B0-B3 of the I/O breakpoints an access to ports [port, port + size) hits (SDM vol. 3 18.2.4
    and 18.2.5): with CR4.DE=1, a breakpoint enabled in DR7 (L or G) whose R/W is 10b matches the
    ports of its DRn as aligned by its LEN (1, 2, 8 or 4 bytes).  The engine has none."""
    cdef uint64_t dr7 = 0, base = 0, length
    cdef uint64_t hits = 0
    cdef int n
    if not (vcpu.c_cr(4) & CR4_DE):
        return 0
    uc_reg_read(vcpu.uc, REG_DR7, &dr7)
    for n in range(4):
        if breakpoint_kind(dr7, n) != DR7_RW_IO:
            continue
        length = breakpoint_length(dr7, n)
        uc_reg_read(vcpu.uc, REG_DR0 + n, &base)
        base &= ~(length - 1)
        if port < base + length and base < port + size:
            hits |= <uint64_t> 1 << n
    return hits


cdef bint arm_data_breakpoints(UcVcpu vcpu) noexcept:
    """Re-read DR7 and DR0-DR3 after a MOV to a debug register: the data breakpoints DR7 enables
    (R/W 01b or 11b, L or G set) with their bytes aligned by LEN.  The two hooks exist while at least
    one does; True if they were added or removed (the engine's translations were dropped: the caller
    restarts the block)."""
    cdef uint64_t dr7 = 0, base = 0, length
    cdef int n, kind
    cdef bint armed = False
    uc_reg_read(vcpu.uc, REG_DR7, &dr7)
    for n in range(4):
        kind = breakpoint_kind(dr7, n)
        length = 0
        if kind == DR7_RW_WRITE or kind == DR7_RW_ACCESS:
            length = breakpoint_length(dr7, n)
            uc_reg_read(vcpu.uc, REG_DR0 + n, &base)
            base &= ~(length - 1)
            armed = True
        vcpu.db_len[n] = length
        vcpu.db_base[n] = base
        vcpu.db_rw[n] = kind
    if armed == (vcpu.db_mem_hook != 0):
        return False
    if armed:
        if uc_hook_add(vcpu.uc, &vcpu.db_mem_hook, HOOK_MEM_ACCESS, <void*> _on_data_access, <void*> vcpu, 1, 0):
            vcpu.db_mem_hook = 0
        if uc_hook_add(vcpu.uc, &vcpu.db_code_hook, HOOK_CODE, <void*> _on_data_step, <void*> vcpu, 1, 0):
            vcpu.db_code_hook = 0
    else:
        uc_hook_del(vcpu.uc, vcpu.db_mem_hook)
        uc_hook_del(vcpu.uc, vcpu.db_code_hook)
        vcpu.db_mem_hook = vcpu.db_code_hook = 0
        vcpu.db_hits = 0
    uc_ctl(vcpu.uc, ctl_write(CTL_TB_FLUSH, 0))
    forget_code_pages(vcpu)
    vcpu.leave_block()
    return True


cdef void data_breakpoint_trap(UcVcpu vcpu, uint64_t address) noexcept:
    """The #DB trap of the data breakpoints the last instruction hit, taken before the instruction
    at ``address`` (the next one: where the trap's RIP points) runs."""
    cdef uint64_t hits = vcpu.db_hits
    vcpu.commit_before(address)
    vcpu.leave_block()
    set_dr6_hits(vcpu, hits)
    deliver_db(vcpu)
    vcpu.db_hits = 0            # the writes of the delivery itself are not the guest's accesses
    vcpu.restart(vcpu.pc())
