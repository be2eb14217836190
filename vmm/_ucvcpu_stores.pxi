# SPDX-License-Identifier: GPL-2.0-or-later
# Which guest stores take the engine's fast path (included by vmm/_ucvcpu.pyx).
#
# The engine (unicorn 2.1.4) fills every writable RAM page into its TLB as "not dirty": a store
# through that entry takes the slow path (it finds the memory region and drops the translations the
# store overlaps).  After such a store the engine makes the entry fast -- if the entry is not
# executable and no memory hook's address range holds the address (a hook of any kind: unmapped,
# protection, access).  The unmapped-memory hook used to be registered over all addresses, so every
# store stayed slow (about a fifth of a Linux boot's CPU time).  But a fast entry stays fast until
# the TLB drops it, even once code is translated in its page through another linear address (the
# engine's dirty tracking, which would undo that, is stubbed out): a store through it would leave a
# stale translation running.  So:
#
# * The unmapped hook covers what is not RAM: the gaps between the RAM regions the engine has mapped
#   when the vCPU is made (watch_stores; RAM mapped later stays on the slow path: correct, slower).
# * "Markers", more copies of the unmapped hook, cover the physical pages that hold translated code,
#   so their TLB entries never become fast.  The engine reports each new translation (its
#   edge-generated hook; all but its very first, which the block hook reports at its decode), and
#   when the marked pages grow the TLB is flushed: no entry made fast before survives.  An unmapped
#   access in a marked range (never RAM) is handled as by the real hook, as it is the same callback.
# * Markers are a fixed pool of MAX_CODE_RANGES hooks whose bounds are rewritten in place (the
#   engine's struct hook, checked by the self-test); when the marked pages would need more ranges, the
#   two closest merge (marking more is safe, only slower).  Marks are dropped with all translations
#   (forget_code_pages, at the hook layer's translation flushes).
#
# Not here / not done: pages whose translations the engine dropped one by one stay marked until a
# flush of all; stores through executable entries always stay slow (the engine's rule: kernels that
# map data without NX pay it); a store by another vCPU into this one's code is seen when this one
# serializes, as before (vmm/_ucvcpu_insns.pxi).

DEF MAX_CODE_RANGES = 32
DEF PARKED = 0xFFFFFFFFFFFFFFFF     # a marker's bounds while unused: only this address, never RAM
DEF HOOK_BEGIN = 24                 # struct hook: int type, insn, refs, op, op_flags; bool to_delete;
                                    # uint64_t begin, end (unicorn 2.1.4 uc_priv.h)

ctypedef struct EngineTb:           # the engine's uc_tb: what its edge-generated hook reports
    uint64_t pc
    uint16_t icount
    uint16_t size


cdef void _on_translated(void *uc, EngineTb *tb, EngineTb *prev, void *ud) noexcept:
    cdef UcVcpu vcpu = <UcVcpu> ud
    vcpu.translations_reported = True
    mark_code(vcpu, tb.pc, tb.size)


cdef void watch_stores(UcVcpu vcpu) except *:
    """Register the unmapped hook over the gaps between the RAM regions mapped now, the marker pool
    (parked) and the report of new translations."""
    cdef uint64_t lo = 0
    cdef size_t h
    cdef int i
    for begin, last, _ in sorted(vcpu.engine.mem_regions()):
        if begin > lo:
            add_hook(vcpu, HOOK_MEM_UNMAPPED, <void*> _on_unmapped, lo, begin - 1)
        lo = last + 1
        if lo == 0:
            break
    else:
        add_hook(vcpu, HOOK_MEM_UNMAPPED, <void*> _on_unmapped, lo, PARKED)
    for i in range(MAX_CODE_RANGES):
        h = 0
        if uc_hook_add(vcpu.uc, &h, HOOK_MEM_READ_UNMAPPED, <void*> _on_unmapped, <void*> vcpu, PARKED, PARKED):
            raise RuntimeError("uc_hook_add(code page marker) failed")
        vcpu.code_bounds[i] = <uint64_t*> (<char*> h + HOOK_BEGIN)
    add_hook(vcpu, HOOK_EDGE_GENERATED, <void*> _on_translated, 1, 0)


cdef bint hook_bounds_where_expected(UcVcpu vcpu) except *:
    """The self-test's check of HOOK_BEGIN: a hook's bounds read back from its struct."""
    cdef size_t h = 0
    if uc_hook_add(vcpu.uc, &h, HOOK_MEM_READ_UNMAPPED, <void*> _on_unmapped, <void*> vcpu,
                   0x1234000, 0x5678FFF):
        return False
    cdef bint ok = ((<uint64_t*> (<char*> h + HOOK_BEGIN))[0] == 0x1234000
                    and (<uint64_t*> (<char*> h + HOOK_BEGIN))[1] == 0x5678FFF)
    uc_hook_del(vcpu.uc, h)
    return ok


cdef void mark_code(UcVcpu vcpu, uint64_t linear, uint32_t size) noexcept:
    """The engine has translated [linear, linear + size): mark the physical pages it lies in."""
    cdef uint64_t first = 0, last = 0
    cdef uint64_t end = linear + (size - 1 if size else 0)
    cdef uint64_t cr2 = vcpu.c_cr(2)
    cdef bint found = uc_vmem_translate(vcpu.uc, linear, PROT_EXEC, &first) == 0
    if found and (end ^ linear) < PAGE_SIZE:
        last = first                        # one page: one walk
    elif found:
        found = uc_vmem_translate(vcpu.uc, end, PROT_EXEC, &last) == 0
    (<uint64_t*> (vcpu.env + OFF_CR))[2] = cr2      # a failed walk would leave its address there
    if not found:
        mark_range(vcpu, 0, PARKED - 1)     # unknown: keep every store slow until the next flush
        return
    first &= ~<uint64_t> (PAGE_SIZE - 1)
    last &= ~<uint64_t> (PAGE_SIZE - 1)
    if last == first + PAGE_SIZE or last == first:
        mark_range(vcpu, first, last + PAGE_SIZE - 1)
    else:                                   # the two pages are not neighbours in physical memory
        mark_range(vcpu, first, first + PAGE_SIZE - 1)
        mark_range(vcpu, last, last + PAGE_SIZE - 1)


cdef void mark_range(UcVcpu vcpu, uint64_t lo, uint64_t hi) noexcept:
    """Mark [lo, hi] (inclusive): merge it into the sorted, disjoint ranges, the two closest ones
    too when there are more than markers, and flush the TLB if anything was not marked before."""
    cdef int i, j, n = vcpu.n_code
    for i in range(n):
        if vcpu.code_lo[i] <= lo and hi <= vcpu.code_hi[i]:
            return
    i = 0
    while i < n and vcpu.code_hi[i] + 1 < lo:
        i += 1                              # the first range that touches or follows [lo, hi]
    j = i
    while j < n and vcpu.code_lo[j] <= hi + 1:
        lo = min(lo, vcpu.code_lo[j])
        hi = max(hi, vcpu.code_hi[j])
        j += 1
    # ranges [i, j) become [lo, hi]
    memmove(&vcpu.code_lo[i + 1], &vcpu.code_lo[j], (n - j) * sizeof(uint64_t))
    memmove(&vcpu.code_hi[i + 1], &vcpu.code_hi[j], (n - j) * sizeof(uint64_t))
    vcpu.code_lo[i] = lo
    vcpu.code_hi[i] = hi
    n += 1 - (j - i)
    if n > MAX_CODE_RANGES:
        j = 0
        for i in range(1, n - 1):
            if vcpu.code_lo[i + 1] - vcpu.code_hi[i] < vcpu.code_lo[j + 1] - vcpu.code_hi[j]:
                j = i
        vcpu.code_hi[j] = vcpu.code_hi[j + 1]
        memmove(&vcpu.code_lo[j + 1], &vcpu.code_lo[j + 2], (n - j - 2) * sizeof(uint64_t))
        memmove(&vcpu.code_hi[j + 1], &vcpu.code_hi[j + 2], (n - j - 2) * sizeof(uint64_t))
        n -= 1
    vcpu.n_code = n
    set_markers(vcpu)
    uc_ctl(vcpu.uc, ctl_write(CTL_TLB_FLUSH, 0))
    vcpu.code_marks += 1


cdef void set_markers(UcVcpu vcpu) noexcept:
    cdef int i
    for i in range(MAX_CODE_RANGES):
        vcpu.code_bounds[i][0] = vcpu.code_lo[i] if i < vcpu.n_code else PARKED
        vcpu.code_bounds[i][1] = vcpu.code_hi[i] if i < vcpu.n_code else PARKED


cdef void forget_code_pages(UcVcpu vcpu) noexcept:
    """No translation is left: no page needs its stores kept slow."""
    if vcpu.n_code:
        vcpu.n_code = 0
        set_markers(vcpu)

