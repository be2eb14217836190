# SPDX-License-Identifier: GPL-2.0-or-later
# CPUID, RDTSC/RDTSCP and SYSCALL (included by vmm/_ucvcpu.pyx): instructions the engine hooks by
# kind, emulated here.
#
# * CPUID is answered from a C copy of the handler's CpuidModel (``handler.cpuid``, through
#   CpuidModel.entries()), rebuilt whenever the model's generation moves; CPUID.1:ECX.OSXSAVE is
#   taken from this vCPU's CR4.  While exits are traced (``handler.trace`` set) CPUID is an exit to
#   the handler, so traces keep listing it.
# * RDTSC/RDTSCP read this vCPU's TSC (retired instructions + clock offset + tsc_offset); RDTSCP's
#   ECX is the engine's TSC_AUX, which WRMSR sets.
# * SYSCALL loads CS/SS through the guest's GDT descriptors at STAR (real CPUs use fixed flat
#   values).  Outside 64-bit code it is #UD on Intel and goes to CSTAR (compatibility mode) or
#   STAR[31:0] (legacy mode) on AMD.
#
# Not here: the CPUID table itself (vmm.cpuid), SYSENTER/SYSEXIT (_ucvcpu_control.pxi).

DEF HYPERVISOR_BASE = 0x40000000   # the first hypervisor leaf (vmm.cpuid): present only when a device adds them

# CPUID bits that follow the vCPU's state (vmm/cpuid.py's, which the C path copies).
cdef uint32_t CPUID_XSAVE = _cpuid.XSAVE_BIT
cdef uint32_t CPUID_OSXSAVE = _cpuid.OSXSAVE_BIT
cdef uint64_t CR4_OSXSAVE = _cpuid.CR4_OSXSAVE


cdef struct CpuidEntry:
    uint32_t leaf
    uint32_t subleaf
    uint32_t takes_subleaf
    uint32_t regs[4]


cdef struct MsrArg:
    uint32_t rid
    uint64_t value


cdef void _on_syscall(void *uc, void *ud) noexcept:
    on_syscall(<UcVcpu> ud)

cdef int _on_cpuid(void *uc, void *ud) noexcept:
    return on_cpuid(<UcVcpu> ud)

cdef int _on_rdtsc(void *uc, void *ud) noexcept:
    return on_rdtsc(<UcVcpu> ud, False)

cdef int _on_rdtscp(void *uc, void *ud) noexcept:
    return on_rdtsc(<UcVcpu> ud, True)


cdef int on_cpuid(UcVcpu vcpu) noexcept:
    """CPUID from a C copy of the handler's CpuidModel (``handler.cpuid``), rebuilt whenever
    its generation moves; through the handler (a CPUID exit) while exits are traced
    (``handler.trace``), or when the handler has no model or its model reads another vCPU."""
    cdef uint64_t *r = vcpu.regs()
    try:
        h = vcpu.handler
        if getattr(h, "trace", None) is None:
            model = getattr(h, "cpuid", None)
            if model is not None:
                if model is not vcpu.cpuid_model or model.generation != vcpu.cpuid_generation:
                    load_cpuid(vcpu, model)
                if vcpu.cpuid_osxsave >= 0:
                    cpuid_answer(vcpu, r)
                    return 1
    except BaseException as e:
        vcpu._fail(f"CPUID: {e!r}")
        return 0
    res = vcpu._py_exit(ExitKind.CPUID, r[R_RAX] & 0xFFFFFFFF, 0, r[R_RCX] & 0xFFFFFFFF)
    if res is None:
        return 0
    for i in range(4):
        r[(R_RAX, R_RBX, R_RCX, R_RDX)[i]] = <uint32_t> res[i]
    return 1


cdef void load_cpuid(UcVcpu vcpu, model) except *:
    """Copy ``model`` (vmm.cpuid.CpuidModel.entries()) into the C table."""
    cdef CpuidEntry *table
    cdef int i
    generation = model.generation
    owner = model.vcpu
    max_basic, max_hypervisor, max_ext, rows = model.entries()
    table = <CpuidEntry*> malloc(sizeof(CpuidEntry) * (len(rows) + 1))
    if table == NULL:
        raise MemoryError()
    for i, (leaf, subleaf, takes_subleaf, eax, ebx, ecx, edx) in enumerate(rows):
        table[i].leaf = leaf
        table[i].subleaf = subleaf
        table[i].takes_subleaf = 1 if takes_subleaf else 0
        table[i].regs[0] = eax
        table[i].regs[1] = ebx
        table[i].regs[2] = ecx
        table[i].regs[3] = edx
    free(vcpu.cpuid_table)
    vcpu.cpuid_table = table
    vcpu.cpuid_len = len(rows)
    vcpu.cpuid_max_basic = max_basic
    vcpu.cpuid_max_hypervisor = max_hypervisor
    vcpu.cpuid_max_ext = max_ext
    vcpu.cpuid_osxsave = 1 if owner is vcpu else (0 if owner is None else -1)
    cr4_reserved, efer_reserved, maxphyaddr = model.reserved_bits()
    vcpu.cr4_reserved = cr4_reserved
    vcpu.efer_reserved = efer_reserved
    vcpu.cr3_reserved = ~((<uint64_t> 1 << <int> maxphyaddr) - 1)
    vcpu.cpuid_model = model
    vcpu.cpuid_generation = generation


cdef void cpuid_answer(UcVcpu vcpu, uint64_t *r) noexcept:
    """What CpuidModel.query() answers for EAX/ECX, from the C table, into RAX..RDX."""
    cdef uint32_t leaf = <uint32_t> r[R_RAX], subleaf = <uint32_t> r[R_RCX], eff = leaf
    cdef uint32_t out[4]
    cdef CpuidEntry *e
    cdef int i
    if (vcpu.cpuid_max_basic < eff < 0x80000000 and not (HYPERVISOR_BASE <= eff <= vcpu.cpuid_max_hypervisor)) \
            or eff > vcpu.cpuid_max_ext:
        eff = vcpu.cpuid_max_basic      # Intel: out-of-range leaves answer as the highest basic leaf
    memset(out, 0, sizeof(out))
    for i in range(vcpu.cpuid_len):
        e = &vcpu.cpuid_table[i]
        if e.leaf == eff and (e.subleaf == subleaf or not e.takes_subleaf):
            memcpy(out, e.regs, sizeof(out))
            break
    if leaf == 1 and (out[2] & CPUID_XSAVE) and vcpu.cpuid_osxsave == 1 and (vcpu.c_cr(4) & CR4_OSXSAVE):
        out[2] |= CPUID_OSXSAVE
    r[R_RAX] = out[0]
    r[R_RBX] = out[1]
    r[R_RCX] = out[2]
    r[R_RDX] = out[3]


cdef bint has_feature(UcVcpu vcpu, str name) noexcept:
    """Whether this vCPU's CPUID model advertises ``name`` (cold paths; True without a model)."""
    try:
        cpuid = getattr(vcpu.handler, "cpuid", None)
        return cpuid is None or cpuid.has(name)
    except BaseException as e:
        vcpu._fail(f"CPUID model: {e!r}")
        return False


cdef bint vendor_is_amd(UcVcpu vcpu) noexcept:
    """This vCPU's CPUID vendor is AMD (cold paths; Intel without a CPUID model)."""
    try:
        return getattr(getattr(vcpu.handler, "cpuid", None), "vendor", "intel") == "amd"
    except BaseException as e:
        vcpu._fail(f"CPUID model: {e!r}")
        return False


cdef int on_rdtsc(UcVcpu vcpu, bint rdtscp) noexcept:
    cdef uint64_t *r = vcpu.regs()
    vcpu.commit_before(vcpu.pc())
    cdef uint64_t tsc = vcpu.retired + vcpu.c_clock_offset + vcpu.tsc_offset
    r[R_RAX] = tsc & 0xFFFFFFFF
    r[R_RDX] = tsc >> 32
    if rdtscp:
        r[R_RCX] = c_tsc_aux(vcpu)     # as last written by WRMSR (the engine's copy)
    return 1


cdef uint64_t c_tsc_aux(UcVcpu vcpu) noexcept:
    cdef MsrArg m
    m.rid = MSR_TSC_AUX
    m.value = 0
    uc_reg_read(vcpu.uc, REG_MSR, &m)
    return m.value & 0xFFFFFFFF


cdef void on_syscall(UcVcpu vcpu) noexcept:
    """SYSCALL: RCX=return RIP, R11=RFLAGS, CS/SS from STAR, RIP=LSTAR (64-bit code).  Outside
    64-bit code Intel CPUs raise #UD; AMD ones go to CSTAR from compatibility mode and, in legacy
    mode, to STAR[31:0] with ECX = return EIP and IF/VM/RF cleared (no FMASK, R11 untouched)."""
    cdef uint64_t *r = vcpu.regs()
    cdef MsrArg m
    cdef uint64_t rflags = 0, star, target, fmask, rip = vcpu.eip()
    cdef uint32_t hf = vcpu.hflags()
    cdef bint legacy = False
    m.rid = 0xC0000080
    uc_reg_read(vcpu.uc, REG_MSR, &m)
    if not (m.value & 1) or (not (hf & HF_CS64) and not vendor_is_amd(vcpu)):
        # EFER.SCE clear, or (Intel) not in 64-bit mode
        vcpu.commit_before(vcpu.pc())
        raise_fault(vcpu, EXC_UD)
        vcpu.set_eip(vcpu.eip() - 2)    # the engine adds SYSCALL's length to the handler's RIP
        return
    m.rid = 0xC0000081
    uc_reg_read(vcpu.uc, REG_MSR, &m)
    star = m.value
    if hf & HF_CS64:
        m.rid = 0xC0000082         # LSTAR
    elif hf & HF_LMA:
        m.rid = 0xC0000083         # CSTAR: compatibility mode (AMD)
    else:
        legacy = True
    if legacy:
        target = star & 0xFFFFFFFF
        fmask = EFLAGS_IF | EFLAGS_VM | 0x10000
    else:
        uc_reg_read(vcpu.uc, REG_MSR, &m)
        target = m.value
        m.rid = 0xC0000084
        uc_reg_read(vcpu.uc, REG_MSR, &m)
        fmask = m.value
    uc_reg_read(vcpu.uc, REG_RFLAGS, &rflags)
    if legacy:
        r[R_RCX] = (r[R_RCX] & ~<uint64_t>0xFFFFFFFF) | <uint32_t> (rip + 2)
    else:
        r[R_RCX] = rip + 2
        r[11] = rflags & ~<uint64_t>0x10000     # RF reads as 0 in the saved image
    rflags &= ~(fmask | 0x10000)
    uc_reg_write(vcpu.uc, REG_RFLAGS, &rflags)
    (<uint32_t*> (vcpu.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_CPL_MASK
    x86_load_seg(vcpu.env, SEG_CS, (star >> 32) & 0xFFFC)
    x86_load_seg(vcpu.env, SEG_SS, ((star >> 32) & 0xFFFC) + 8)
    vcpu.set_eip(target - 2)     # the engine adds the instruction length afterwards
