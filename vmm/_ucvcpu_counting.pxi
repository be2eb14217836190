# SPDX-License-Identifier: GPL-2.0-or-later
# Counting beyond one block's commit (included by vmm/_ucvcpu.pyx): bulk retirement of self-loops,
# zero-skid overflow stops, the instruction limit, and the event models.
#
# * Zero-skid counter overflow: when an instruction/cycle counter would overflow before the block's
#   last instruction, the block runs again as a translation of its instructions up to the
#   overflowing one only, so the next block hook, right after it, commits the overflow and status
#   and PMI land before the next instruction (stop_at_overflow, truncate_after).  The engine keeps
#   such a translation beside the whole block's (the instruction count is part of a translation's
#   key), so nothing is dropped, and a later overflow at the same place needs no translation.
# * The budget of the block hook's fast path (stop_at_overflow): how many instructions may retire
#   with their PMU counts left pending before a counter could overflow or the instruction limit
#   be reached, and whether the fast path may run at all (slow_only).
# * Bulk retirement of self-loops (the forms classify_loop() marks): at its block hook, once every
#   check found nothing to do, as many iterations as run one by one would retire before any hook had
#   something to do are retired at once (up to the iteration before the loop falls through, the
#   deadline, the instruction limit or the first counter overflow), the counter register and DEC's
#   flags are set as the engine would leave them, and the block restarts, so its hook sees exactly
#   what the one-by-one run saw there.  Refused in an interrupt shadow, with TF or DR7 breakpoints,
#   and while a branch-miss or a CMASK/INV/EDGE counter runs.  ``bulk_loops = False`` turns it off
#   (tests/test_bulk_loops.py runs every form both ways).
# * Event models, paid for only while a counter uses them: the LLC model (vmm._uarch) behind a
#   memory-access hook that exists only while an LLC event is counted; the branch predictor model
#   consulted at the next block boundary for the previous block's final branch while a branch-miss
#   counter runs.  Overflows of LLC and branch-miss counters raise their PMI at the next block
#   boundary (the instruction/cycle/branch counters have zero skid).
#
# Not here: the exact accounting of a block's instructions (UcVcpu.commit, on_block, settle), the PMU's
# registers (pmu._core), CLFLUSH/WBINVD reported to the LLC model (_ucvcpu_insns.pxi).

# Generic PMU events (pmu/events.py) the block accounting feeds.
DEF EV_CORE_CYCLES = 0
DEF EV_INSTRUCTIONS = 1
DEF EV_REF_CYCLES = 2
DEF EV_LLC_REFS = 3
DEF EV_LLC_MISSES = 4
DEF EV_BRANCHES = 5
DEF EV_BRANCH_MISSES = 6
DEF EV_COND_BRANCHES = 8
DEF CYCLE_EVENTS = (1 << EV_CORE_CYCLES) | (1 << EV_INSTRUCTIONS) | (1 << EV_REF_CYCLES)
DEF CACHE_EVENTS = (1 << EV_LLC_REFS) | (1 << EV_LLC_MISSES)
DEF NUM_PMU_EVENTS = 9


cdef int _on_mem_access(void *uc, int access, uint64_t address, int size, int64_t value, void *ud) noexcept:
    on_mem_access(<UcVcpu> ud, address, size)
    return 1


cdef bint bulk_retire(UcVcpu vcpu, Block *b) noexcept:
    """At the entry of a self-loop block whose other checks (UcVcpu.on_block) found nothing to do:
    retire at once the iterations that run one by one would retire before any block hook had
    something to do, and restart the block (its hook then runs those checks as after the last of
    them).

    Iteration j ends at the hook of j+1, which sees the clock j*n later (n = b.n) and the counters
    j*n instructions/cycles and j branches further.  So K iterations are taken at once where the
    hooks of iterations 2..K would all be idle: the loop branch is taken in each (its counter does
    not reach 0), no counter overflows (an overflow, its PMI and zero-skid stop happen in an
    iteration run normally), the vCPU's deadline (timers, end of an SMP slice) and instruction
    limit are not reached before hook K+1.  Nothing else that hooks look at changes in a
    register-only loop: no interrupt becomes deliverable (RFLAGS.IF and the NMI mask do not
    change; a pending one was taken or is blocked), and no Python code runs.  Refused (0
    iterations) in an interrupt shadow, with RFLAGS.TF or a DR7 breakpoint enabled, while a
    branch-miss counter (predictor state) or a CMASK/INV/EDGE counter (not linear in a block's
    counts) runs, or while a PMI request is outstanding.  Returns
    True if it retired iterations (the engine restarts at the block)."""
    cdef uint64_t *r = vcpu.regs()
    cdef uint64_t n = b.n, k, c = 0, mask = 0, res = 0, d, now, rflags = 0, dr7 = 0
    cdef uint64_t branch = 1 if (b.flags & ENDS_IN_BRANCH) else 0
    cdef uint64_t conditional = 1 if (b.flags & BRANCH_CONDITIONAL) else 0
    cdef int cpl = vcpu.c_cpl(), ring = 1 if cpl else 0, ev
    if vcpu.holds.attention or vcpu.stop_reason != STOP_NONE or vcpu.br_flags \
            or (vcpu.hflags() & HF_INHIBIT_IRQ) or ((<uint64_t*> (vcpu.env + OFF_EFLAGS))[0] & EFLAGS_TF):
        return False
    if b.loop_kind == LOOP_JMP:
        k = BULK_MAX
    else:
        mask = <uint64_t> -1 if b.loop_bits == 64 else ((<uint64_t> 1 << b.loop_bits) - 1)
        c = r[b.loop_reg] & mask
        k = (c - 1) & mask      # iterations whose branch is taken (the counter is not yet 0)
        if k > BULK_MAX:
            k = BULK_MAX
    now = vcpu.retired + vcpu.c_clock_offset
    if vcpu.deadline != <uint64_t> -1:
        if vcpu.deadline <= now:
            return False
        d = (vcpu.deadline - now - 1) // n + 1
        k = d if d < k else k
    if vcpu.max_insns != <uint64_t> -1:
        if vcpu.max_insns <= vcpu.retired:
            return False
        d = (vcpu.max_insns - vcpu.retired - 1) // n + 1
        k = d if d < k else k
    if vcpu.pmu is not None and vcpu.pmu.active_events:
        if (vcpu.pmu.active_events & (1 << EV_BRANCH_MISSES)) or vcpu.pmu.pmi_requested:
            return False
        for ev in range(NUM_PMU_EVENTS):
            if vcpu.pmu.special[ev][ring]:
                return False
        d = cycle_events_to_overflow(vcpu, cpl)
        d = (d - 1) // n        # whole iterations that stay below the first overflow
        k = d if d < k else k
        if branch:
            d = vcpu.pmu.events_to_overflow(EV_BRANCHES, cpl) - 1
            k = d if d < k else k
        if conditional:
            d = vcpu.pmu.events_to_overflow(EV_COND_BRANCHES, cpl) - 1
            k = d if d < k else k
    if k == 0:
        return False
    uc_reg_read(vcpu.uc, REG_DR7, &dr7)
    if dr7 & 0xFF:
        return False
    if b.loop_kind != LOOP_JMP:
        res = (c - k) & mask
        if b.loop_bits == 16:
            r[b.loop_reg] = (r[b.loop_reg] & ~<uint64_t> 0xFFFF) | res
        else:
            r[b.loop_reg] = res     # 32-bit results zero-extend, as the engine writes them
    if b.loop_kind == LOOP_DEC_JNZ:
        # The flags of the last DEC (res != 0: ZF clear); CF is DEC's to keep.
        uc_reg_read(vcpu.uc, REG_RFLAGS, &rflags)
        rflags &= ~<uint64_t> EFLAGS_DEC
        if (res >> (b.loop_bits - 1)) & 1:
            rflags |= 1 << 7
        if res == mask >> 1:
            rflags |= 1 << 11       # from the most negative value to the most positive
        if (res & 0xF) == 0xF:
            rflags |= 1 << 4        # borrow out of bit 3
        if not (__builtin_popcountll(res & 0xFF) & 1):
            rflags |= 1 << 2
        uc_reg_write(vcpu.uc, REG_RFLAGS, &rflags)
    vcpu.retired += k * n
    if vcpu.pmu is not None and vcpu.pmu.active_events:
        vcpu.pmu.count_block(k * n, k * branch, cpl, k * conditional)
        if vcpu.pmu.pmi_requested:
            vcpu.holds.attention = True
    vcpu.set_rep_addr(<uint64_t> -1)
    vcpu.drop_budget()
    vcpu.bulk_iterations += k
    vcpu.restart(b.addr)
    return True


cdef inline bint check_limit(UcVcpu vcpu) noexcept:
    """Stop at the instruction limit; True if this stopped the engine."""
    if vcpu.retired >= vcpu.max_insns and (vcpu.stop_reason == STOP_NONE or vcpu.stop_reason == STOP_YIELD):
        vcpu.stop_reason = STOP_LIMIT
        vcpu.stop_text = f"instruction limit of {vcpu.max_insns} reached"
        uc_emu_stop(vcpu.uc)
        return True
    return False


cdef uint64_t cycle_events_to_overflow(UcVcpu vcpu, int cpl) noexcept:
    cdef uint64_t budget = vcpu.pmu.events_to_overflow(EV_INSTRUCTIONS, cpl)
    cdef uint64_t d = vcpu.pmu.events_to_overflow(EV_CORE_CYCLES, cpl)
    if d < budget:
        budget = d
    d = vcpu.pmu.events_to_overflow(EV_REF_CYCLES, cpl)
    return d if d < budget else budget


cdef void stop_at_overflow(UcVcpu vcpu, Block *b) noexcept:
    """If a counter of instructions/cycles overflows before the block's last instruction, run
    the block again as its instructions up to the overflowing one (truncate_after: zero skid).  An
    overflow on the last instruction needs nothing: the next block hook commits it before anything
    runs.

    ``cycle_budget`` caches where a budget ends: a retired-instruction count, valid at any CPL,
    below which no counter of instructions, cycles or branches overflows (a block has at least one
    instruction and at most one branch) and the instruction limit is not reached, at most
    PENDING_MAX ahead.  Anything outside the hook layer that may touch the PMU or the limit (an
    exit, device work, a PMU MSR write, run()) clears it.  The exact distances are computed only
    when a block could reach it.  It also bounds what on_block's fast path may leave pending (so
    nothing it leaves can overflow, and the limit is seen in time; the fast path reads it folded
    with the deadline, UcVcpu.fold_fast_until); ``slow_only`` turns the fast path off while the PMU
    needs each block's counts as the block retires -- a branch-miss counter (the predictor sees each
    branch), a CMASK/INV/EDGE counter of a block event (the order of a block's cycles matters), a
    PMI request outstanding (each commit asks for attention) -- while data breakpoints are armed (a
    hit is trapped at the next block hook), and with ``fast_blocks`` off
    (tests/test_block_fast_path.py runs guests both ways)."""
    cdef int skip = 1 if ((b.flags & STARTS_WITH_REP) and b.addr == vcpu.rep_addr) else 0
    cdef uint64_t need = b.n - skip, budget = PENDING_MAX, d
    cdef int ring, other
    cdef bint slow = vcpu.db_mem_hook != 0 or not vcpu.fast_blocks
    if vcpu.retired + need < vcpu.cycle_budget:
        return
    if vcpu.max_insns != <uint64_t> -1:
        budget = min(budget, vcpu.max_insns - vcpu.retired if vcpu.max_insns > vcpu.retired else 0)
    if vcpu.pmu is not None and vcpu.pmu.active_events:
        d = cycle_events_to_overflow(vcpu, vcpu.cur_cpl)
        if d < need:
            truncate_after(vcpu, b, <int> d + skip)
            return
        other = 3 if vcpu.cur_cpl == 0 else 0
        budget = min(budget, d, cycle_events_to_overflow(vcpu, other),
                     vcpu.pmu.events_to_overflow(EV_BRANCHES, vcpu.cur_cpl),
                     vcpu.pmu.events_to_overflow(EV_BRANCHES, other),
                     vcpu.pmu.events_to_overflow(EV_COND_BRANCHES, vcpu.cur_cpl),
                     vcpu.pmu.events_to_overflow(EV_COND_BRANCHES, other))
        if (vcpu.pmu.active_events & (1 << EV_BRANCH_MISSES)) or vcpu.pmu.pmi_requested:
            slow = True
        for ring in range(2):
            if vcpu.pmu.special[EV_CORE_CYCLES][ring] | vcpu.pmu.special[EV_INSTRUCTIONS][ring] \
                    | vcpu.pmu.special[EV_REF_CYCLES][ring] | vcpu.pmu.special[EV_BRANCHES][ring] \
                    | vcpu.pmu.special[EV_COND_BRANCHES][ring]:
                slow = True
    vcpu.holds.slow_only = slow       # (with the budget: both stand until the budget is cleared)
    vcpu.cycle_budget = vcpu.retired + budget
    vcpu.fold_fast_until()


cdef void truncate_after(UcVcpu vcpu, Block *b, int k) noexcept:
    """Run ``b`` again, from its start, as a block of its first k instructions (0 < k < b.n): the
    next block hook comes right after the k-th (a counter overflow, the end of an interrupt shadow).
    The engine's request for the instruction count of the next translation block it looks up
    (CPUState.cflags_next_tb; CPU_CFLAGS_NEXT_TB) gives a translation of its own, found again the
    next time the same truncation is asked for; the whole block's translation stays."""
    vcpu.cflags_next_tb()[0] = k
    vcpu.leave_block()
    vcpu.restart(b.addr)


cdef void resolve_branch(UcVcpu vcpu, uint64_t target) noexcept:
    """The last branch went to ``target``: ask the predictor whether it saw that coming."""
    cdef uint8_t kind = vcpu.br_flags
    cdef bint miss = False
    vcpu.br_flags = 0
    if kind & BRANCH_CONDITIONAL:
        miss = vcpu.predictor.conditional(vcpu.br_addr, target != vcpu.br_fallthrough)
    elif kind & BRANCH_RETURN:
        miss = vcpu.predictor.ret(target)
    elif kind & BRANCH_INDIRECT:
        miss = vcpu.predictor.indirect(vcpu.br_addr, target)
    if kind & BRANCH_CALL:
        vcpu.predictor.call(vcpu.br_fallthrough)
    if miss:
        vcpu.pmu.count(EV_BRANCH_MISSES, 1, vcpu.br_cpl)
        if vcpu.pmu.pmi_requested:
            vcpu.holds.attention = True


cdef void switch_memory_hook(UcVcpu vcpu) noexcept:
    """Memory-access callbacks only while an LLC event is counted (they cost on every access)."""
    if vcpu.mem_hook:
        uc_hook_del(vcpu.uc, vcpu.mem_hook)
        vcpu.mem_hook = 0
    elif uc_hook_add(vcpu.uc, &vcpu.mem_hook, HOOK_MEM_ACCESS, <void*> _on_mem_access, <void*> vcpu, 1, 0):
        vcpu.mem_hook = 0
    flush_translations(vcpu)
    vcpu.leave_block()


cdef void on_mem_access(UcVcpu vcpu, uint64_t address, int size) noexcept:
    cdef uint64_t refs = vcpu.cache.references, misses = vcpu.cache.misses
    cdef int cpl = vcpu.c_cpl()
    vcpu.cache.access(address, size)
    if vcpu.cache.references != refs:
        vcpu.pmu.count(EV_LLC_REFS, vcpu.cache.references - refs, cpl)
    if vcpu.cache.misses != misses:
        vcpu.pmu.count(EV_LLC_MISSES, vcpu.cache.misses - misses, cpl)
    if vcpu.pmu.pmi_requested:
        vcpu.holds.attention = True
