# SPDX-License-Identifier: GPL-2.0-or-later
# Control registers, EFER and SYSENTER/SYSEXIT (included by vmm/_ucvcpu.pyx): the SDM's checks the
# engine leaves out.
#
# * MOV to CR0/CR3/CR4 (from the code hook learn_block() puts on each, through on_hooked_insn) and
#   WRMSR to EFER (from on_msr_insn) get the SDM's #GP(0) checks before the engine, which takes
#   anything, runs them: reserved bits, bits of features the vCPU's CPUID model does not advertise
#   (CpuidModel.reserved_bits, copied by load_cpuid with the CPUID table) and illegal combinations
#   (check_cr_write, efer_refused).  What passes runs natively.
# * SYSENTER is emulated (the engine does nothing) after its faults were raised from its code hook;
#   SYSEXIT runs natively after the checks the engine lacks.  Both follow the CPUID vendor: AMD CPUs
#   raise #UD for them in long mode.
#
# Not here: MOV to/from CR8 (_ucvcpu_insns.pxi), the other native MSRs' checks (_ucvcpu_msr.pxi),
# SYSCALL (_ucvcpu_cpuid.pxi).  Checks not made: the PDPTEs a MOV to CR0/CR3/CR4 loads in PAE paging
# (reserved bits there are no #GP), CR4.CET against CR0.WP (CET is never advertised), activating
# IA-32e mode from code whose CS.L is set; LA57 is only refused while in long mode.

DEF CR0_NW = 1 << 29
DEF CR0_CD = 1 << 30
DEF CR0_PG = 1 << 31
DEF CR4_PAE = 1 << 5
DEF CR4_LA57 = 1 << 12
DEF CR4_PCIDE = 1 << 17
DEF CR3_NOFLUSH = 1 << 63            # with CR4.PCIDE: keep the PCID's translations; never stored in CR3
DEF EFER_LME = 1 << 8
# Segment cache flags (the descriptor's second dword): what SYSENTER/SYSEXIT load.
DEF DESC_TYPE_CODE = 0xB << 8       # execute/read, accessed
DEF DESC_TYPE_DATA = 0x3 << 8       # read/write, accessed
DEF DESC_S = 1 << 12
DEF DESC_DPL_SHIFT = 13
DEF DESC_P = 1 << 15
DEF DESC_L = 1 << 21
DEF DESC_B = 1 << 22
DEF DESC_G = 1 << 23
DEF MSR_SYSENTER_CS = 0x174
DEF MSR_SYSENTER_ESP = 0x175
DEF MSR_SYSENTER_EIP = 0x176


cdef void _on_sysenter(void *uc, void *ud) noexcept:
    on_sysenter(<UcVcpu> ud)


cdef void refresh_reserved_bits(UcVcpu vcpu) noexcept:
    """Bring cr4/cr3/efer_reserved up to date with the handler's CPUID model (cold paths)."""
    try:
        model = getattr(vcpu.handler, "cpuid", None)
        if model is not None and (model is not vcpu.cpuid_model or model.generation != vcpu.cpuid_generation):
            load_cpuid(vcpu, model)
    except BaseException as e:
        vcpu._fail(f"CPUID model: {e!r}")


cdef uint64_t engine_msr(UcVcpu vcpu, uint32_t index) noexcept:
    """An MSR the engine models itself (EFER, SYSENTER_*, ...), read from the engine."""
    cdef MsrArg m
    m.rid = index
    m.value = 0
    uc_reg_read(vcpu.uc, REG_MSR, &m)
    return m.value


cdef void check_cr_write(UcVcpu vcpu, uint64_t address, uint64_t next_pc, int cr, int gpr) noexcept:
    """MOV to CR0/CR3/CR4 at CPL0, before the engine runs it: a load the SDM refuses is a #GP(0)
    (the engine would take it); the rest run natively.  Refused: CR0[63:32] set, PG without PE,
    NW without CD, clearing PG in 64-bit code or while CR4.PCIDE=1, setting PG with EFER.LME and
    CR4.PAE clear (or PCIDE set); CR3 bits at or above MAXPHYADDR in long mode (bit 63 is "keep
    the PCID's translations" when PCIDE=1, and never stored); CR4 bits the CPUID model does not
    advertise, PCIDE outside long mode or with CR3[11:0] != 0, clearing PAE or changing LA57 in
    long mode.  CR0[31:0]'s reserved bits are ignored, as the SDM says."""
    cdef uint32_t hf = vcpu.hflags()
    cdef uint64_t v = vcpu.regs()[gpr], cr0 = vcpu.c_cr(0), cr4 = vcpu.c_cr(4), allowed
    cdef bint lma = (hf & HF_LMA) != 0, bad
    if not (hf & HF_CS64):
        v &= 0xFFFFFFFF         # outside 64-bit code the operand is 32 bits
    refresh_reserved_bits(vcpu)
    if cr == 0:
        bad = (v >> 32) != 0 or ((v & CR0_PG) and not (v & CR0_PE)) or ((v & CR0_NW) and not (v & CR0_CD))
        if (cr0 & CR0_PG) and not (v & CR0_PG):
            bad = bad or (hf & HF_CS64) or (cr4 & CR4_PCIDE)
        elif (v & CR0_PG) and not (cr0 & CR0_PG) and (engine_msr(vcpu, MSR_EFER) & EFER_LME):
            bad = bad or not (cr4 & CR4_PAE) or (cr4 & CR4_PCIDE)
    elif cr == 3:
        allowed = CR3_NOFLUSH if (cr4 & CR4_PCIDE) else 0
        bad = lma and (v & vcpu.cr3_reserved & ~allowed) != 0
        if not bad and (v & allowed):
            # The engine would store bit 63 and walk page tables from a wrong address.
            v &= ~<uint64_t>CR3_NOFLUSH
            vcpu.commit_before(address)
            uc_reg_write(vcpu.uc, ucapi.UC_X86_REG_CR3, &v)
            vcpu.step_over(next_pc)
            return
    elif cr == 4:
        bad = (v & vcpu.cr4_reserved) != 0 or \
            ((v & CR4_PCIDE) and (not lma or (not (cr4 & CR4_PCIDE) and (vcpu.c_cr(3) & 0xFFF)))) or \
            (lma and (not (v & CR4_PAE) or ((v ^ cr4) & CR4_LA57)))
    else:
        return      # CR2 takes anything; CR1, CR5-CR7 are the engine's #UD
    if bad:
        vcpu.commit_before(address)
        raise_fault(vcpu, EXC_GP)


cdef bint efer_refused(UcVcpu vcpu, uint64_t value) noexcept:
    """WRMSR to IA32_EFER is a #GP(0) for a bit the CPUID model does not back (SCE, LME, NXE,
    SVME, FFXSR, TCE; LMSLE and the reserved bits never) and for a change of LME while
    CR0.PG=1.  LMA is the processor's: writes to it are ignored."""
    refresh_reserved_bits(vcpu)
    return (value & vcpu.efer_reserved) != 0 or \
        (((value ^ engine_msr(vcpu, MSR_EFER)) & EFER_LME) and (vcpu.c_cr(0) & CR0_PG))


cdef void load_flat_segments(UcVcpu vcpu, uint16_t cs, int dpl, bint long_code) noexcept:
    """CS = ``cs`` and SS = ``cs`` + 8 as the fixed flat segments SYSENTER/SYSEXIT load (base 0,
    limit 4 GiB, present, accessed, DPL ``dpl``; CS 64-bit or 32-bit), without reading the GDT,
    and the engine's mode flags derived from them: CPL = ``dpl``, 64-bit or 32-bit code and
    stack, and whether 32-bit code must add segment bases."""
    cdef char *seg = vcpu.env + OFF_SEGS
    cdef uint32_t *hf = <uint32_t*> (vcpu.env + OFF_HFLAGS)
    cdef uint32_t flags = DESC_G | DESC_P | DESC_S | (<uint32_t> dpl << DESC_DPL_SHIFT)
    cdef uint64_t bases
    (<uint32_t*> (seg + SEG_CS * SEG_CACHE_SIZE))[0] = cs
    (<uint64_t*> (seg + SEG_CS * SEG_CACHE_SIZE + SEG_BASE))[0] = 0
    (<uint32_t*> (seg + SEG_CS * SEG_CACHE_SIZE + SEG_BASE + 8))[0] = 0xFFFFFFFF
    (<uint32_t*> (seg + SEG_CS * SEG_CACHE_SIZE + SEG_BASE + 12))[0] = \
        flags | DESC_TYPE_CODE | (DESC_L if long_code else DESC_B)
    (<uint32_t*> (seg + SEG_SS * SEG_CACHE_SIZE))[0] = cs + 8
    (<uint64_t*> (seg + SEG_SS * SEG_CACHE_SIZE + SEG_BASE))[0] = 0
    (<uint32_t*> (seg + SEG_SS * SEG_CACHE_SIZE + SEG_BASE + 8))[0] = 0xFFFFFFFF
    (<uint32_t*> (seg + SEG_SS * SEG_CACHE_SIZE + SEG_BASE + 12))[0] = flags | DESC_TYPE_DATA | DESC_B
    hf[0] = (hf[0] & ~<uint32_t>(HF_CPL_MASK | HF_CS32 | HF_SS32 | HF_CS64 | HF_ADDSEG)) | <uint32_t> dpl \
        | HF_CS32 | HF_SS32
    if long_code:
        hf[0] |= HF_CS64
        return
    bases = (<uint64_t*> (seg + SEG_BASE))[0] | (<uint64_t*> (seg + SEG_DS * SEG_CACHE_SIZE + SEG_BASE))[0]
    if bases:       # ES or DS not flat (SS is)
        hf[0] |= HF_ADDSEG


cdef int sysenter_fault(UcVcpu vcpu) noexcept:
    """The exception SYSENTER raises (SDM), or 0: #GP(0) outside protected mode or with
    SYSENTER_CS[15:2] = 0; AMD CPUs raise #UD in long mode."""
    if (vcpu.hflags() & HF_LMA) and vendor_is_amd(vcpu):
        return EXC_UD
    if not (vcpu.c_cr(0) & CR0_PE) or (engine_msr(vcpu, MSR_SYSENTER_CS) & 0xFFFC) == 0:
        return EXC_GP
    return 0


cdef void check_sysenter(UcVcpu vcpu, uint64_t address) noexcept:
    """SYSENTER's faults, raised from its code hook before the engine runs it: raised from inside
    the engine's SYSENTER hook (on_sysenter) they would be followed by the single-step trap the
    engine compiles after a SYSENTER run with RFLAGS.TF set."""
    cdef int fault = sysenter_fault(vcpu)
    if fault:
        vcpu.commit_before(address)
        raise_fault(vcpu, fault)


cdef void on_sysenter(UcVcpu vcpu) noexcept:
    """SYSENTER (SDM): CPL0 at IA32_SYSENTER_EIP with RSP = IA32_SYSENTER_ESP, CS = SYSENTER_CS
    (RPL 0) and SS = CS + 8 as fixed flat segments (64-bit code in IA-32e mode, 32-bit code
    otherwise), RFLAGS.VM/IF/RF cleared (TF is kept: the engine's single-step trap then comes at
    the target); nothing is saved.  The engine does nothing itself.  Its faults are check_sysenter's
    (raised here too should the code hook have been missed)."""
    cdef uint64_t *r = vcpu.regs()
    cdef bint lma = (vcpu.hflags() & HF_LMA) != 0
    cdef uint64_t cs = engine_msr(vcpu, MSR_SYSENTER_CS), rflags = 0, target
    cdef int fault = sysenter_fault(vcpu)
    if fault:
        vcpu.commit_before(vcpu.pc())
        raise_fault(vcpu, fault)
        vcpu.set_eip(vcpu.eip() - 2)    # the engine adds SYSENTER's length to the handler's RIP
        return
    uc_reg_read(vcpu.uc, REG_RFLAGS, &rflags)
    rflags &= ~<uint64_t>(EFLAGS_VM | EFLAGS_IF | EFLAGS_RF)
    uc_reg_write(vcpu.uc, REG_RFLAGS, &rflags)
    load_flat_segments(vcpu, cs & 0xFFFC, 0, lma)
    r[R_RSP] = engine_msr(vcpu, MSR_SYSENTER_ESP)
    target = engine_msr(vcpu, MSR_SYSENTER_EIP)
    if not lma:
        r[R_RSP] &= 0xFFFFFFFF
        target &= 0xFFFFFFFF
    vcpu.set_eip(target - 2)


cdef void check_sysexit(UcVcpu vcpu, uint64_t address, bint to_64) noexcept:
    """SYSEXIT, before the engine runs it (its own checks: CPL0, protected mode, SYSENTER_CS not 0,
    and loading fixed flat segments are the SDM's): AMD CPUs raise #UD in long mode; SYSENTER_CS
    with only RPL bits set, and a non-canonical RCX or RDX for a return to 64-bit code (REX.W),
    are a #GP(0)."""
    cdef uint64_t *r = vcpu.regs()
    cdef int fault = 0
    if (vcpu.hflags() & HF_LMA) and vendor_is_amd(vcpu):
        fault = EXC_UD
    elif vcpu.c_cpl() == 0 and (vcpu.c_cr(0) & CR0_PE) and (
            (engine_msr(vcpu, MSR_SYSENTER_CS) & 0xFFFC) == 0
            or (to_64 and (not canonical(r[R_RCX]) or not canonical(r[R_RDX])))):
        fault = EXC_GP
    if fault:
        vcpu.commit_before(address)
        raise_fault(vcpu, fault)
