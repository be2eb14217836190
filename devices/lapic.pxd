# SPDX-License-Identifier: GPL-2.0-or-later
# C-level interface of the local APIC for the vCPU hook layer (docs/design.md, "LAPIC").
#
# Fast path for x2APIC MSR accesses (0x800-0x8FF), no Python objects touched:
#
#     cdef int x2apic_write(self, uint32_t msr, uint64_t value, uint64_t now) noexcept
#     cdef int x2apic_read(self, uint32_t msr, uint64_t *value, uint64_t now) noexcept
#
# ``now`` is the current virtual time in ns (what clock.now() would return); the caller passes
# it because the timer registers (TMICT/LVT timer/TDCR writes, TMCCT reads) need it.  Result:
# LAPIC_DONE (0), LAPIC_GP (1: inject #GP), LAPIC_UNHANDLED (2: the APIC is not in x2APIC mode or
# the MSR is outside 0x800-0x8FF -- take the Python bus path, which gives the architectural answer),
# or, from x2apic_write(), LAPIC_SETTLE (an EOI of a level-triggered vector: as for the xAPIC page
# below).  Every x2APIC register is handled in C, with the same code the Python bus path runs.
#
# Fast path for the xAPIC page (an access of ``size`` bytes at ``offset`` in the page, made by the
# MMIO callbacks of the window at the LAPIC's base), the same code as the Python bus path's:
#
#     cdef uint64_t xapic_read(self, uint32_t offset, uint32_t size, uint64_t now) noexcept
#     cdef int xapic_write(self, uint32_t offset, uint32_t size, uint64_t value, uint64_t now) noexcept
#
# A read is always answered (all-ones outside xAPIC mode, 0 for other sizes than 4, misaligned or
# reserved offsets).  A write returns LAPIC_DONE (applied or ignored, as the page ignores it),
# LAPIC_UNHANDLED (the LVT timer, whose write samples CPUID in Python: use the bus), or
# LAPIC_SETTLE (3: applied, but an EOI of a level-triggered vector must reach the I/O APIC now:
# call settle_write(), which runs what the bus path runs after a write -- on_wakeup() per newly
# pending event, then on_write() -- and skip the steps below).
#
# The C paths never call Python: no on_wakeup(), no on_write().  After a fast-path write the
# caller must do what on_write() would have made the machine do:
#   * re-read c_next_deadline() (absolute virtual ns, 0xFFFFFFFFFFFFFFFF when no timer is armed)
#     -- TMICT, LVT timer, TDCR writes may arm, move or disarm the timer (and may fire an overdue
#     expiry, which adds an IRR bit);
#   * re-check c_interrupt_pending() (an IRR vector above the PPR, or a latched NMI) -- TPR, EOI,
#     SELF_IPI, ICR, SPIV writes change what is deliverable;
#   * poll and clear ``wake_pending``: set (instead of calling on_wakeup) when the C path made an
#     IRR bit, the NMI latch, INIT or SIPI newly pending here, i.e. exactly when the Python path
#     would kick the vCPU -- and also when an ICR write made something newly pending on another
#     APIC of the bus (that APIC's wake_pending is set too, and the bus counts it in remote_events).
#
# APIC bus (several CPUs): ``ApicBus`` joins the LAPICs of a machine (``lapic.bus``; None = a
# standalone APIC, whose IPIs reach only itself).  ICR writes route through it on both paths;
# IOAPIC messages enter through ``ApicBus.deliver``.  Delivery is immediate and calls no Python:
# a target's newly pending events set its ``wake_pending`` and add to ``remote_events`` (the
# machine reads and clears both); INIT and SIPI are latched in ``init_pending``/``sipi_vector``
# for the machine, which runs the CPU side of them.
#
# CPUID-dependent bits (LVT timer bit 18 needs CPUID tsc_deadline; the Intel LVTPC auto-mask) use
# a copy sampled from the cpuid object at construction, at every APIC_BASE write, set_state() and
# every Python-path LVT-timer / deliver_local call.

from libc.stdint cimport uint32_t, uint64_t

cdef enum:
    LAPIC_DONE = 0
    LAPIC_GP = 1
    LAPIC_UNHANDLED = 2
    LAPIC_SETTLE = 3
    LAPIC_LVT_COUNT = 6


cdef class ApicBus


cdef class Lapic:
    # -- Python-visible wiring --
    cdef public object clock
    cdef public object cpuid
    cdef public object vcpu
    cdef public object on_wakeup        # called (Python paths only) when an IRR bit / NMI becomes newly set
    cdef public object on_base_change   # called with (old, new) after the xAPIC page moved
    cdef public object on_write         # called after every Python-path register write (CR8 included)
    cdef object _mmio_bus
    cdef public uint32_t apic_id
    cdef readonly ApicBus bus           # the APIC bus it is on (None: standalone, IPIs reach only itself)

    # -- architectural state --
    cdef uint64_t apic_base
    cdef uint32_t xapic_id
    cdef uint32_t tpr
    cdef uint32_t ldr
    cdef uint32_t dfr
    cdef uint32_t spiv
    cdef uint64_t irr[4]
    cdef uint64_t isr[4]
    cdef uint64_t tmr[4]
    cdef uint32_t esr
    cdef uint32_t esr_accumulated
    cdef uint64_t icr
    cdef uint32_t lvt[LAPIC_LVT_COUNT]
    cdef uint32_t timer_initial_count
    cdef uint32_t timer_divide_config
    cdef bint timer_armed
    cdef uint64_t timer_deadline        # valid only while timer_armed
    cdef bint nmi_latched
    cdef uint64_t level_eois[4]         # level-triggered vectors EOIed since take_level_eois() (IOAPIC)

    # -- INIT and SIPI received, for the machine (take_init / take_sipi consume them) --
    cdef readonly bint init_pending
    cdef readonly int sipi_vector       # -1: none latched

    # -- wake-up accounting --
    cdef public bint wake_pending       # something became newly pending, reported without a Python call
                                        # (C path, or a message from another APIC); the machine clears it
    cdef uint32_t wakeups               # not yet reported newly-pending events (internal)

    # -- cached CPUID facts --
    cdef bint has_tsc_deadline
    cdef bint is_intel

    # -- the C API for the hook layer --
    cdef int x2apic_write(self, uint32_t msr, uint64_t value, uint64_t now) noexcept
    cdef int x2apic_read(self, uint32_t msr, uint64_t *value, uint64_t now) noexcept
    cdef uint64_t xapic_read(self, uint32_t offset, uint32_t size, uint64_t now) noexcept
    cdef int xapic_write(self, uint32_t offset, uint32_t size, uint64_t value, uint64_t now) noexcept
    cdef int settle_write(self) except -1
    cdef bint c_interrupt_pending(self) noexcept
    cdef uint64_t c_next_deadline(self) noexcept

    # -- internals (shared by the C API and the Python bus path).  They count newly pending events
    # in ``wakeups`` without reporting them: x2apic_write() turns the count into wake_pending, the
    # Python paths into on_wakeup() calls.  Callers outside this module should use the C API above.
    cdef void c_tick(self, uint64_t now) noexcept
    cdef bint c_deliver_local(self, int lvt) noexcept
    cdef int x2apic_write_core(self, uint32_t msr, uint64_t value, uint64_t now) noexcept
    cdef bint xapic_write_core(self, uint32_t offset, uint32_t size, uint64_t value, uint64_t now) noexcept
    cdef void wakeups_to_flag(self, uint64_t remote_before) noexcept
    cdef bint has_level_eois(self) noexcept
    cdef void reset_registers(self) noexcept
    cdef int pending_vector(self) noexcept
    cdef uint32_t c_ppr(self) noexcept
    cdef uint32_t c_apr(self) noexcept
    cdef uint32_t c_x2apic_ldr(self) noexcept
    cdef bint read_register(self, uint32_t offset, bint x2apic, uint64_t now, uint64_t *value) noexcept
    cdef bint writable_mask(self, uint32_t offset, bint x2apic, uint64_t *mask) noexcept
    cdef bint write_register(self, uint32_t offset, uint64_t value, bint x2apic, uint64_t now) noexcept
    cdef void write_lvt(self, int lvt, uint32_t value, uint64_t now) noexcept
    cdef void c_eoi(self) noexcept
    cdef bint set_irr(self, int vector, bint level) noexcept
    cdef void raise_nmi(self) noexcept
    cdef void record_error(self, uint32_t bits) noexcept
    cdef void send_ipi(self, bint x2apic) noexcept
    cdef void send_fixed_ipi_to_self(self, uint32_t vector) noexcept
    cdef bint c_accept_message(self, uint32_t mode, uint32_t vector, bint level) noexcept
    cdef void c_init(self) noexcept
    cdef int timer_mode(self) noexcept
    cdef uint64_t timer_divide(self) noexcept
    cdef uint64_t timer_current_count(self, uint64_t now) noexcept
    cdef void write_timer_initial(self, uint32_t count, uint64_t now) noexcept
    cdef void write_timer_divide(self, uint32_t config, uint64_t now) noexcept
    cdef int flush_wakeups(self) except -1
    cdef int report_wakeups(self) except -1


cdef class ApicBus:
    cdef list members                   # the Lapics, index = APIC id; read by the C path (no Python calls)
    cdef Py_ssize_t count               # len(members), kept so the C path needs no len()
    cdef public uint64_t remote_events  # newly pending events on APICs other than a message's sender

    cdef void forget_wakeups(self) noexcept
    cdef int flush_wakeups(self) except -1
