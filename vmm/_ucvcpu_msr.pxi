# SPDX-License-Identifier: GPL-2.0-or-later
# RDMSR/WRMSR (included by vmm/_ucvcpu.pyx), reached through the code hook learn_block() puts on
# each of them.
#
# * MSRs the engine models itself (EFER, STAR/LSTAR/CSTAR/FMASK, FS/GS bases, SYSENTER, PAT,
#   TSC_AUX) run natively, with the SDM's canonical-address #GP (and reserved EFER/TSC_AUX bits)
#   added; the rest are exits, or C fast paths into the PMU core and (x2APIC registers, reads of
#   IA32_APIC_BASE) the LAPIC.
#   Unknown MSRs are a #GP in the guest.
# * IA32_TSC and IA32_TSC_ADJUST are this vCPU's (tsc_offset, tsc_adjust over the machine's one
#   clock), each write moving the other as the SDM says.
#
# Not here: RDTSC/RDTSCP (_ucvcpu_cpuid.pxi), the MSRs' devices (vmm.dispatch and the bus).

DEF EFER_ALLOWED = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11)   # SCE, LME, LMA, NXE
DEF MSR_EFER = 0xC0000080


# MSRs the engine models itself; writes of non-canonical addresses to some of them #GP.
DEF MSR_TSC = 0x10
DEF MSR_TSC_ADJUST = 0x3B           # emulated here, with the TSC (CPUID.7:EBX[1] says it exists)
DEF MSR_TSC_AUX = 0xC0000103        # the engine's: RDTSCP reads it from there
DEF MSR_HIGH = 0xC0000000
DEF MSR_APIC_BASE = 0x1B            # read through the attached LAPIC's C field

cdef inline bint msr_is_native(uint32_t index) noexcept nogil:
    cdef uint32_t hi
    if index == 0x174 or index == 0x175 or index == 0x176 or index == 0x277 or index == 0x1A0:
        return True
    hi = index - <uint32_t> MSR_HIGH
    return (hi >= 0x80 and hi <= 0x84) or (hi >= 0x100 and hi <= 0x103)   # EFER..FMASK, FS/GS/KGS_BASE, TSC_AUX


cdef inline bint msr_needs_canonical(uint32_t index) noexcept nogil:
    cdef uint32_t hi = index - <uint32_t> MSR_HIGH
    return index == 0x175 or index == 0x176 or hi == 0x82 or hi == 0x83 or (hi >= 0x100 and hi <= 0x102)


cdef inline bint canonical(uint64_t v) noexcept nogil:
    cdef int64_t s = <int64_t>(v << 16) >> 16
    return <uint64_t>s == v


cdef void on_msr_insn(UcVcpu vcpu, uint64_t address, bint write) noexcept:
    cdef uint64_t *r = vcpu.regs()
    cdef uint32_t index = r[R_RCX] & 0xFFFFFFFF
    cdef uint64_t value = (r[R_RDX] << 32) | (r[R_RAX] & 0xFFFFFFFF)
    cdef uint64_t delta
    cdef uint64_t native[2]           # the engine's uc_x86_msr: index, then the value at offset 8
    if msr_is_native(index):
        if write and ((msr_needs_canonical(index) and not canonical(value))
                      or (index == MSR_EFER and efer_refused(vcpu, value))
                      or (index == MSR_TSC_AUX and (value >> 32))):     # TSC_AUX[63:32] reserved
            vcpu.commit_before(address)
            trace_msr(vcpu, index, write, value, True)
            raise_fault(vcpu, EXC_GP)
        else:
            if write and index == MSR_EFER:
                code_may_have_changed(vcpu, False)  # paging mode, NX: the engine flushes its TLB
            if vcpu.tap.mask & (1 << TK_MSR):
                vcpu.commit_before(address)     # (the block's count is the same either way)
                if not write:       # what the engine's RDMSR is about to read
                    native[0] = index
                    native[1] = 0
                    uc_reg_read(vcpu.uc, REG_MSR, native)
                    value = native[1]
                trace_msr(vcpu, index, write, value, False)
        return      # the engine executes it
    vcpu.commit_before(address)
    if index == MSR_TSC:
        # SDM (IA32_TSC_ADJUST): a write to the TSC that moves it by X adds X to TSC_ADJUST too.
        if write:
            delta = value - (vcpu.retired + vcpu.c_clock_offset + vcpu.tsc_offset)
            vcpu.tsc_offset += delta
            vcpu.tsc_adjust += <int64_t> delta
        else:
            value = vcpu.retired + vcpu.c_clock_offset + vcpu.tsc_offset
    elif index == MSR_TSC_ADJUST:
        # ... and a write to TSC_ADJUST that changes it by X moves the TSC by X.
        if not has_feature(vcpu, "tsc_adjust"):
            trace_msr(vcpu, index, write, value, True)
            raise_fault(vcpu, EXC_GP)
            return
        if write:
            delta = value - <uint64_t> vcpu.tsc_adjust
            vcpu.tsc_adjust = <int64_t> value
            vcpu.tsc_offset += delta
        else:
            value = <uint64_t> vcpu.tsc_adjust
    elif vcpu.pmu is not None and vcpu.pmu.owns_msr(index):
        vcpu.drop_budget()
        if (vcpu.pmu.wrmsr(index, value, False) if write else vcpu.pmu.rdmsr(index, &value, False)) != 0:
            trace_msr(vcpu, index, write, value, True)
            raise_fault(vcpu, EXC_GP)
            return
    elif index == MSR_APIC_BASE and not write and vcpu.lapic is not None:
        value = vcpu.lapic.apic_base    # the LAPIC's own register (writes change modes: the bus)
    elif vcpu.lapic is not None and (index >> 8) == 0x8 and \
            x2apic_access(vcpu, index, write, &value) != LAPIC_UNHANDLED:
        if vcpu.lapic_status == LAPIC_GP:
            trace_msr(vcpu, index, write, value, True)
            raise_fault(vcpu, EXC_GP)
            return
    else:
        res = vcpu._py_exit(ExitKind.MSR_WRITE if write else ExitKind.MSR_READ, index, 8, value)
        if res is None and not write or isinstance(res, Fault):
            trace_msr(vcpu, index, write, value, True)
            raise_fault(vcpu, EXC_GP)
            return
        if not write:
            value = res
    if not write:
        r[R_RAX] = value & 0xFFFFFFFF
        r[R_RDX] = value >> 32
    trace_msr(vcpu, index, write, value, False)
    # The MSR instruction retires now, under the state it just set.
    vcpu.step_over(address + 2)


cdef inline void trace_msr(UcVcpu vcpu, uint32_t index, bint write, uint64_t value, bint fault) noexcept:
    if vcpu.tap.mask & (1 << TK_MSR):
        trace_emit(&vcpu.tap, TK_MSR, (TF_WRITE if write else 0) | (TF_FAULT if fault else 0), index,
                   0 if fault and not write else value, 0)
