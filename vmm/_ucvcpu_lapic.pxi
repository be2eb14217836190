# SPDX-License-Identifier: GPL-2.0-or-later
# The local APIC's C paths (included by vmm/_ucvcpu.pyx): x2APIC MSRs (from _ucvcpu_msr.pxi) and the
# xAPIC page (from the MMIO callbacks of _ucvcpu_memory.pxi), both through the attached LAPIC's C API
# (devices/lapic.pxd), with no exit and no Python.
#
# * A write is followed by what the machine does after a bus write (on_write): the vCPU's deadline
#   and pending-interrupt flags are re-read (lapic_written).  An EOI of a level-triggered vector
#   (xAPIC page or x2APIC MSR) is the exception: the I/O APIC must hear of it before the guest goes
#   on, so the LAPIC's Python after-write work runs (settle_lapic_write), as on the bus path.
# * An interrupt an xAPIC access makes pending is taken at the next block boundary, after the
#   rest of the block, as on the bus path: the MMIO callback runs inside the block.
# * The xAPIC page is answered here while ``xapic_page`` is set (UcVcpu.attach_lapic: off while
#   exits are traced) for accesses inside the page at the LAPIC's base; the LVT timer's writes and
#   accesses across the page's end take the bus path (the LAPIC says which, devices/lapic.pxd).
#
# Not here: IA32_APIC_BASE and IA32_TSC_DEADLINE (the MSR bus, except APIC_BASE reads in
# _ucvcpu_msr.pxi), the register semantics (devices/lapic.pyx).

DEF XAPIC_PAGE = 0x1000


cdef int x2apic_access(UcVcpu vcpu, uint32_t index, bint write, uint64_t *value) noexcept:
    """An x2APIC MSR through the LAPIC's C path: LAPIC_DONE (a read fills ``value``),
    LAPIC_GP, or LAPIC_UNHANDLED (not in x2APIC mode: use the bus).  The status is also kept
    in lapic_status."""
    cdef uint64_t now = vcpu.retired + vcpu.c_clock_offset
    cdef int res = vcpu.lapic.x2apic_write(index, value[0], now) if write else \
        vcpu.lapic.x2apic_read(index, value, now)
    vcpu.lapic_status = res
    if res == LAPIC_SETTLE:
        settle_lapic_write(vcpu, f"WRMSR {index:#x}")
    elif res == LAPIC_DONE and write:
        lapic_written(vcpu)
    return res


cdef void settle_lapic_write(UcVcpu vcpu, what) noexcept:
    """A write the I/O APIC must hear of before the guest goes on (an EOI of a level-triggered
    vector): the LAPIC's Python after-write work, as on the bus path."""
    vcpu.drop_budget()       # host-side calls, as for an exit
    try:
        vcpu.lapic.settle_write()
    except BaseException as e:
        vcpu._fail(f"{what}: {e!r}")
    if vcpu.stop_reason != STOP_NONE:
        stop_at_access(vcpu)     # (from the x2APIC MSRs' code hook too: the WRMSR was stepped over)


cdef void lapic_written(UcVcpu vcpu) noexcept:
    """After a write through the LAPIC's C path: the timer deadline and pending interrupts are
    re-read, as the machine does after a bus write (on_write), since the C path calls no Python."""
    # The vCPU's deadline is the earliest of every timer the machine has, not only this LAPIC's:
    # an earlier LAPIC deadline moves it; a later one costs one early attention, at which the
    # machine recomputes it.
    cdef uint64_t deadline = vcpu.lapic.c_next_deadline()
    if deadline < vcpu.deadline:
        vcpu.deadline = deadline
        vcpu.fold_fast_until()
    if vcpu.lapic.c_interrupt_pending() or vcpu.lapic.wake_pending:
        vcpu.lapic.wake_pending = False
        vcpu.irq_if = EFLAGS_IF
        vcpu.holds.nmi_check = True
    if vcpu.lapic.bus is not None and vcpu.lapic.bus.remote_events:
        vcpu.holds.attention = True   # another vCPU has something new: the machine ends this slice


cdef inline bint on_xapic_page(UcVcpu vcpu, uint64_t window, uint64_t offset, unsigned size) noexcept:
    """Whether an access at ``offset`` in the MMIO window at ``window`` is the xAPIC page's to
    answer here: the window is the page at the LAPIC's base and the access lies inside it."""
    return vcpu.xapic_page and window == (vcpu.lapic.apic_base & ~<uint64_t> (XAPIC_PAGE - 1)) and \
        offset + size <= XAPIC_PAGE


cdef uint64_t xapic_mmio_read(UcVcpu vcpu, uint64_t address, uint32_t offset, unsigned size) noexcept:
    cdef uint64_t value = vcpu.lapic.xapic_read(offset, size, vcpu.retired + vcpu.c_clock_offset)
    if vcpu.tap.mask & (1 << TK_MMIO):
        trace_emit(&vcpu.tap, TK_MMIO, 0, address, value, size)
    return value


cdef bint xapic_mmio_write(UcVcpu vcpu, uint64_t address, uint32_t offset, unsigned size, uint64_t value) noexcept:
    """An xAPIC page write through the LAPIC's C path; False if it must take the bus path."""
    cdef int res = vcpu.lapic.xapic_write(offset, size, value, vcpu.retired + vcpu.c_clock_offset)
    if res == LAPIC_UNHANDLED:
        return False
    if res == LAPIC_SETTLE:
        settle_lapic_write(vcpu, f"MMIO_WRITE {address:#x}")
    else:
        lapic_written(vcpu)
    if vcpu.tap.mask & (1 << TK_MMIO):
        trace_emit(&vcpu.tap, TK_MMIO, TF_WRITE, address, value, size)
    return True
