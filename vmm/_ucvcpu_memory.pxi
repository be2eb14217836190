# SPDX-License-Identifier: GPL-2.0-or-later
# Physical memory that is not RAM (included by vmm/_ucvcpu.pyx): MMIO windows and void regions.
#
# * MMIO windows (UcVcpu.map_mmio) are engine MMIO regions whose callbacks are exits to the handler
#   (the xAPIC page's accesses take the LAPIC's C path instead: _ucvcpu_lapic.pxi).
# * Physical memory with neither RAM nor a device reads all-ones and drops writes, as on a PC: the
#   first access maps the gap around it (at most one aligned GiB) as a "void" MMIO region that only
#   counts accesses; ``strict_memory`` ends the run there instead, and an instruction fetch from
#   unmapped memory always does.
#
# Not here: RAM (the machine maps it), the devices (vmm.dispatch).  Not supported: executing from an
# MMIO window (the run ends with an internal error).

# ---------------------------------------------------------------------------------------
# MMIO windows: the engine calls these with an offset into the mapped region.

cdef struct MmioRegion:
    void *vcpu
    uint64_t base


DEF MAX_MMIO = 8
DEF PHYS_LIMIT = 1 << 52            # the architectural limit of physical addresses (MAXPHYADDR <= 52)
DEF VOID_CHUNK = 1 << 30            # the largest void region (see map_void)
DEF MAX_VOIDS = 4096


cdef uint64_t _mmio_read(void *uc, uint64_t offset, unsigned size, void *ud) noexcept:
    cdef MmioRegion *r = <MmioRegion*> ud
    cdef UcVcpu vcpu = <UcVcpu> r.vcpu
    if on_xapic_page(vcpu, r.base, offset, size):      # the LAPIC's C path (_ucvcpu_lapic.pxi)
        return xapic_mmio_read(vcpu, r.base + offset, <uint32_t> offset, size)
    return py_mmio(vcpu, ExitKind.MMIO_READ, r.base + offset, size, 0)


cdef void _mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) noexcept:
    cdef MmioRegion *r = <MmioRegion*> ud
    cdef UcVcpu vcpu = <UcVcpu> r.vcpu
    if on_xapic_page(vcpu, r.base, offset, size) and \
            xapic_mmio_write(vcpu, r.base + offset, <uint32_t> offset, size, value):
        return
    py_mmio(vcpu, ExitKind.MMIO_WRITE, r.base + offset, size, value)


cdef int _on_unmapped(void *uc, int access, uint64_t address, int size, int64_t value, void *ud) noexcept:
    return on_unmapped(<UcVcpu> ud, access, address, size)


# Physical memory with neither RAM nor a device behind it (the platform rule: reads all-ones, writes
# dropped), mapped on first access as "void" MMIO regions whose callbacks only count.
cdef uint64_t _void_read(void *uc, uint64_t offset, unsigned size, void *ud) noexcept:
    (<UcVcpu> ud).unmapped_reads += 1
    return <uint64_t> -1 if size >= 8 else ((<uint64_t> 1 << (8 * size)) - 1)


cdef void _void_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) noexcept:
    (<UcVcpu> ud).unmapped_writes += 1


cdef uint64_t py_mmio(UcVcpu vcpu, int kind, uint64_t address, unsigned size, uint64_t value) noexcept:
    res = vcpu._py_exit(kind, address, size, value)
    if vcpu.stop_reason != STOP_NONE:
        stop_at_access(vcpu)
    if kind == ExitKind.MMIO_READ:
        value = 0 if (res is None or isinstance(res, Fault)) else <uint64_t> res
    if vcpu.tap.mask & (1 << TK_MMIO):
        trace_emit(&vcpu.tap, TK_MMIO, TF_WRITE if kind == ExitKind.MMIO_WRITE else 0, address, value, size)
    return value if kind == ExitKind.MMIO_READ else 0


cdef bint on_unmapped(UcVcpu vcpu, int access, uint64_t address, int size) noexcept:
    """A data access to physical memory with no RAM and no device follows the platform rule
    (reads all-ones, writes dropped): the gap it is in becomes a void region and the access goes
    on.  Under strict_memory it ends the run instead; an instruction fetch from there always
    does (as one from an MMIO window).  ``address`` is physical (the engine reports it after
    translation)."""
    if access == ucapi.UC_MEM_FETCH_UNMAPPED:
        vcpu.stop_reason = STOP_ERROR
        vcpu.stop_text = f"guest fetched an instruction from unmapped physical memory at {address:#x}"
        return False
    if vcpu.strict_memory or vcpu.stop_reason == STOP_ERROR or not map_void(vcpu, address):
        if vcpu.stop_reason != STOP_ERROR:
            vcpu.stop_reason = STOP_ERROR
            vcpu.stop_text = f"guest accessed unmapped physical memory at {address:#x} (size {size})"
        return False
    return True


cdef bint map_void(UcVcpu vcpu, uint64_t address) noexcept:
    """Map the unmapped range around ``address`` as a void region: the gap between the mappings
    on either side, clipped to the naturally aligned VOID_CHUNK that holds ``address``.  Chunks
    keep the regions few (one per chunk a guest touches: the engine's 40-bit physical space has
    1024) and cheap to carve up again (unmapping costs the engine a TLB flush per page)."""
    cdef uint64_t lo = address & ~<uint64_t>(VOID_CHUNK - 1)
    cdef uint64_t hi = lo + VOID_CHUNK
    cdef int err
    if address >= PHYS_LIMIT:
        return False
    if len(vcpu.voids) >= MAX_VOIDS:
        vcpu._fail(f"guest accessed unmapped physical memory in more than {MAX_VOIDS} places")
        return False
    try:
        for begin, last, _ in vcpu.engine.mem_regions():
            if last < address:
                lo = max(lo, last + 1)
            elif begin > address:
                hi = min(hi, begin)
            else:
                return False        # mapped after all: not ours to change
        err = uc_mmio_map(vcpu.uc, lo, hi - lo, <void*> _void_read, <void*> vcpu, <void*> _void_write,
                          <void*> vcpu)
        if err:
            vcpu._fail(f"mapping unmapped physical memory {lo:#x}-{hi - 1:#x}: {EngineError(err)}")
            return False
        vcpu.voids.append((lo, hi))
        return True
    except BaseException as e:
        vcpu._fail(f"unmapped physical memory at {address:#x}: {e!r}")
        return False


cdef void carve_voids(UcVcpu vcpu, uint64_t base, uint64_t size) except *:
    """Make room for a mapping at [base, base + size): void regions there shrink around it."""
    cdef uint64_t end = base + size
    for begin, last in list(vcpu.voids):
        if begin < end and base < last:
            uc_mem_unmap(vcpu.uc, begin, last - begin)
            vcpu.voids.remove((begin, last))
            for b, e in ((begin, base), (end, last)):
                if b < e:
                    if uc_mmio_map(vcpu.uc, b, e - b, <void*> _void_read, <void*> vcpu, <void*> _void_write,
                                   <void*> vcpu):
                        raise RuntimeError(f"remapping unmapped physical memory {b:#x}-{e - 1:#x}")
                    vcpu.voids.append((b, e))
