# SPDX-License-Identifier: GPL-2.0-or-later
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""The virtual PMU's state machine in C: counters, event selects, global MSRs, counting and overflow.

All counter state lives in C arrays of :class:`PmuCore`.  GP counter n is slot n (0..7), Intel
fixed counter n is slot 8+n; a slot's GLOBAL_STATUS / GLOBAL_CTRL bit is n for GP and 32+n for
fixed counters.  The C methods declared in _core.pxd (rdmsr, wrmsr, count, count_block,
events_to_overflow, owns_msr) touch no Python object and run without the GIL; rdpmc() needs the
GIL only for the VMware pseudo-PMCs, whose clocks are Python objects.

Reprogramming is immediate.  A WRMSR that changes an event select, FIXED_CTR_CTRL or
GLOBAL_CTRL updates the affected counters before it returns: a counter whose configuration is
unchanged since it was last programmed is resumed (paused counters keep their value), otherwise
it is reprogrammed (event decoded again, edge-detection state cleared, ``reprograms`` bumped).
So the instruction that enables a counter is counted and the one that disables it is not, as
long as the caller feeds an emulated instruction's own retirement *after* calling wrmsr().

Counting model.  One retired instruction is one cycle.  In every cycle each generic event has a
per-cycle increment of 0 or 1.  A counter's event select decides what it adds:

* CMASK = 0 and EDGE clear: the raw increments (INV is ignored when CMASK is 0, as on Intel).
* CMASK = c > 0: 1 for every cycle whose increment is >= c; with INV, < c.  Since increments are
  at most 1, CMASK >= 2 counts nothing and INV with CMASK >= 2 counts every cycle.
* EDGE: 1 for every cycle in which the condition above (``increment >= 1`` when CMASK is 0)
  becomes true after being false in the previous fed cycle.  The previous-cycle state starts
  false when the counter is programmed.

The feeds define the cycles:

* ``count_block(k, b, cpl, c=0)``: a block of k instructions of which the last b (0 or 1 in
  practice; clamped to k) are branches, and of those the last c (clamped to b) conditional
  branches: k cycles with increment 1 for INSTRUCTIONS, CORE_CYCLES and REF_CYCLES; for
  BRANCHES, k-b cycles with increment 0 followed by b cycles with increment 1; for
  COND_BRANCHES the same with c.
* ``count(event, n, cpl)``: n consecutive cycles with increment 1 of ``event``.  For events
  fed only this way (cache events, branch misses) the zero-increment cycles between events are
  not seen, so INV counts nothing for them and EDGE sees one transition per call.

Overflow: a counter overflows when it wraps from all-ones of its width to zero; events to
overflow = (-value) & mask, or mask + 1 when that is 0.  Overflow sets the counter's
GLOBAL_STATUS bit and, if its INT/PMI bit is set, the C flag ``pmi_requested``.  Nothing else
happens in C: the caller polls ``pmi_requested`` (a plain C field) and the Python facade
(pmu.pmu.Pmu.service_pmi) delivers the PMI to the LAPIC on a cold path.

Trace: while the vCPU traces ``pmu`` (its tap, vmm/_tracering.pxd, in ``trace``) a counter that
starts or stops running and every overflow is a record; ``pmi`` records come from
:meth:`PmuCore.trace_pmi`.  With nothing traced ``trace`` is NULL, tested only on those cold paths.

Not supported: counter freezing on PMI, PEBS/LBR, AnyThread counting, multiple increments per
cycle, and the Intel IN_TX / IN_TXCP qualifiers beyond "IN_TX counts nothing" (no transactions).
"""

from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.string cimport memset

from vmm._tracering cimport TF_DELIVERED, TF_NMI, TK_PMI, TK_PMU, TP_OVERFLOW, TP_PMI, TP_START, TP_STOP, trace_emit

from pmu import events as _events

cdef extern from *:
    int __builtin_ctz(unsigned int x) nogil

# MSR kinds, the result of msr_slot().
cdef enum:
    K_GP_CTR = 1          # Intel IA32_PERFCTRn: guest writes sign-extend the low 32 bits
    K_GP_CTR_FULL = 2     # Intel IA32_PMCn: full-width writes, bits above the width fault
    K_CTR = 3             # AMD counters and Intel fixed counters: written modulo the width
    K_EVTSEL = 4
    K_FIXED_CTRL = 5
    K_GLOBAL_STATUS = 6
    K_GLOBAL_CTRL = 7
    K_GLOBAL_CLEAR = 8    # Intel GLOBAL_OVF_CTRL, AMD GLOBAL_STATUS_CLR
    K_GLOBAL_SET = 9      # AMD GLOBAL_STATUS_SET
    K_PERF_CAPS = 10

cdef enum:
    EVTSEL_USR = 1 << 16
    EVTSEL_OS = 1 << 17
    EVTSEL_EDGE = 1 << 18
    EVTSEL_INT = 1 << 20
    EVTSEL_EN = 1 << 22
    EVTSEL_INV = 1 << 23
    PERF_CAP_FW_WRITE = 1 << 13
    CR0_PE = 1
    CR4_PCE = 1 << 8
    RING_KERNEL = 1
    RING_USER = 2

cdef uint64_t INTEL_EVTSEL_RESERVED = 0xFFFFFFFF00200000ULL
cdef uint64_t TSX_BITS = 3ULL << 32
cdef uint64_t IN_TX = 1ULL << 32
cdef uint64_t AMD_EVTSEL_RESERVED = 0xFFFFFCF000280000ULL
cdef uint64_t OVF_BUF_COND_CHGD = 3ULL << 62
cdef uint64_t ALL_ONES = 0xFFFFFFFFFFFFFFFFULL

cdef uint32_t INTEL_PERFCTR0 = 0xC1
cdef uint32_t INTEL_PMC0 = 0x4C1
cdef uint32_t INTEL_EVTSEL0 = 0x186
cdef uint32_t INTEL_FIXED_CTR0 = 0x309
cdef uint32_t INTEL_PERF_CAPS = 0x345
cdef uint32_t INTEL_FIXED_CTRL = 0x38D
cdef uint32_t INTEL_GLOBAL_STATUS = 0x38E
cdef uint32_t INTEL_GLOBAL_CTRL = 0x38F
cdef uint32_t INTEL_GLOBAL_OVF_CTRL = 0x390
cdef uint32_t AMD_EVTSEL0 = 0xC0010000
cdef uint32_t AMD_CTR0 = 0xC0010004
cdef uint32_t AMD_EXT_CTL0 = 0xC0010200
cdef uint32_t AMD_GLOBAL_STATUS = 0xC0000300
cdef uint32_t AMD_GLOBAL_CTL = 0xC0000301
cdef uint32_t AMD_GLOBAL_STATUS_CLR = 0xC0000302
cdef uint32_t AMD_GLOBAL_STATUS_SET = 0xC0000303

PSEUDO_PMC_HOST_TSC = 0x10000
PSEUDO_PMC_REAL_TIME = 0x10001
PSEUDO_PMC_APPARENT_TIME = 0x10002

# Generic event ids the block feed uses, as C constants; they are pmu/events.py's (checked below).
cdef enum:
    EV_CORE_CYCLES = 0
    EV_INSTRUCTIONS = 1
    EV_REF_CYCLES = 2
    EV_BRANCHES = 5
    EV_COND_BRANCHES = 8
if (_events.CORE_CYCLES, _events.INSTRUCTIONS, _events.REF_CYCLES, _events.BRANCHES, _events.COND_BRANCHES,
        _events.NUM_EVENTS) != (EV_CORE_CYCLES, EV_INSTRUCTIONS, EV_REF_CYCLES, EV_BRANCHES, EV_COND_BRANCHES,
                                NUM_EVENTS):
    raise ImportError("pmu.events generic ids differ from the PMU core's C constants")

# What Intel fixed counter n counts, copied from pmu/events.py.
cdef int8_t _FIXED_EVENTS[MAX_FIXED]
for _i in range(MAX_FIXED):
    _FIXED_EVENTS[_i] = _events.INTEL_FIXED_EVENTS[_i]


cdef inline uint64_t status_bit(int slot) noexcept nogil:
    if slot < FIXED_SLOT:
        return 1ULL << slot
    return 1ULL << (32 + slot - FIXED_SLOT)


cdef inline uint64_t low_bits(int n) noexcept nogil:
    if n >= 64:
        return ALL_ONES
    return (1ULL << n) - 1


cdef inline int clamp_cpl_ring(int cpl) noexcept nogil:
    return 1 if cpl != 0 else 0


# Module-level and inline (not methods) so that an empty slot mask costs one test on the hot path.
cdef inline void advance_all(PmuCore core, uint32_t slots, uint64_t n) noexcept nogil:
    """Advance every counter in the ``slots`` bitmap by n events."""
    cdef int s
    while slots:
        s = __builtin_ctz(slots)
        slots &= slots - 1
        core.advance(s, n)


cdef inline void feed_special_all(PmuCore core, uint32_t slots, uint64_t idle, uint64_t busy) noexcept nogil:
    """Feed idle then busy cycles to every CMASK/INV/EDGE counter in the ``slots`` bitmap."""
    cdef int s
    while slots:
        s = __builtin_ctz(slots)
        slots &= slots - 1
        core.feed_special(s, idle, busy)


cdef class PmuCore:
    """Counter state and MSR semantics of one vCPU's PMU; configure() before use."""

    def __cinit__(self):
        self.filter_action = -1
        self.version = 0

    def configure(self, config, tsc_clock=None, real_clock=None):
        """Take the shape and policies of ``config`` (a pmu.config.PmuConfig) and reset all state."""
        cdef int i
        self.is_amd = config.vendor == "amd"
        self.version = config.version
        self.num_gp = config.gp_counters if config.version else 0
        self.num_fixed = config.fixed_counters if config.version else 0
        self.gp_mask = low_bits(config.gp_width)
        self.fixed_mask = low_bits(config.fixed_width) if self.num_fixed else 0
        self.pdcm = config.pdcm and not self.is_amd and self.version > 0
        self.amd_perfctr_core = config.perfctr_core
        self.tsx = config.tsx
        self.reset_fixed_enables = config.global_ctrl_reset == "seed"
        self.rdpmc_seed = config.rdpmc_fast == "seed"
        self.vmware_backdoor = config.vmware_backdoor
        self.guest_clock_offset_ns = config.guest_clock_offset_ns
        self.perf_capabilities = config.perf_capabilities if self.pdcm else 0
        self.tsc_clock = tsc_clock
        self.real_clock = real_clock

        if self.is_amd:
            self.eventsel_reserved = AMD_EVTSEL_RESERVED
        else:
            self.eventsel_reserved = INTEL_EVTSEL_RESERVED & ~(TSX_BITS if self.tsx else 0)
        self.fixed_ctrl_reserved = ALL_ONES
        for i in range(self.num_fixed):
            self.fixed_ctrl_reserved &= ~(0xBULL << (4 * i))  # OS, USR and PMI; AnyThread stays reserved
        self.global_ctrl_reserved = ~(low_bits(self.num_gp) | (low_bits(self.num_fixed) << 32))
        self.global_status_reserved = self.global_ctrl_reserved & ~(0 if self.is_amd else OVF_BUF_COND_CHGD)
        # AMD's STATUS_CLR ignores bits without a counter: Linux 6.1 writes LbrFreeze (bit 58) there at
        # CPU reset and ~status after each PMI, and real PerfMonV2 parts take both without a #GP.
        self.status_clear_ignored = ALL_ONES if self.is_amd else 0
        self.valid_slots = <uint32_t>low_bits(self.num_gp) | (<uint32_t>low_bits(self.num_fixed) << FIXED_SLOT)
        for i in range(NUM_SLOTS):
            self.width_mask[i] = self.gp_mask if i < FIXED_SLOT else self.fixed_mask

        unavailable = config.unavailable_events
        self.table_len = 0
        if self.is_amd:
            rows = [(sel, umask, generic) for sel, umask, generic in _events.AMD_EVENTS]
        else:
            rows = [(sel, umask, generic) for sel, umask, generic, bit in _events.INTEL_ARCH_EVENTS
                    if not unavailable >> bit & 1]
            rows += _events.INTEL_MODEL_EVENTS
        for sel, umask, generic in rows:
            self.table_select[self.table_len] = sel
            self.table_umask[self.table_len] = umask
            self.table_generic[self.table_len] = generic
            self.table_len += 1
        self.clear_state()

    # ------------------------------------------------------------------ reset and housekeeping
    cdef void clear_state(self) noexcept nogil:
        cdef int i
        memset(self.counter, 0, sizeof(self.counter))
        memset(self.eventsel, 0, sizeof(self.eventsel))
        memset(self.current_config, 0, sizeof(self.current_config))
        memset(self.prev_cond, 0, sizeof(self.prev_cond))
        self.fixed_ctr_ctrl = 0
        self.global_status = 0
        self.global_ctrl = low_bits(self.num_gp)
        if self.reset_fixed_enables:
            self.global_ctrl |= low_bits(self.num_fixed) << 32
        self.running = 0
        self.programmed = 0
        self.pmi_enabled = 0
        self.pmc_in_use = 0
        self.need_cleanup = False
        self.pmi_requested = False
        self.filter_allowed = 0
        for i in range(NUM_SLOTS):
            if self.filter_allows(i):
                self.filter_allowed |= 1U << i
        self.rebuild_tables()

    def reset(self):
        """Clear counters, selects, global state and any PMI request (PERF_CAPABILITIES is kept)."""
        self.clear_state()

    def sched_in(self):
        """The vCPU starts a time slice: ask for a cleanup of unused counters before next entry."""
        if self.version and self.programmed:
            self.need_cleanup = True

    def cleanup(self):
        """Release counters unused in the last time slice; returns the slot bitmap released.

        A counter is released when its MSRs were not written during the slice and it is not
        enabled by its own select (a globally disabled counter counts as in use).  Releasing
        forgets its programmed configuration, so enabling it again reprograms it.
        """
        cdef uint32_t release = 0
        cdef int i
        if not self.need_cleanup:
            return 0
        self.need_cleanup = False
        for i in range(NUM_SLOTS):
            if (self.valid_slots >> i & 1) and not (self.pmc_in_use >> i & 1) and (self.programmed >> i & 1):
                if i < FIXED_SLOT:
                    speculative = self.eventsel[i] & EVTSEL_EN
                else:
                    speculative = (self.fixed_ctr_ctrl >> (4 * (i - FIXED_SLOT))) & 3
                if not speculative:
                    release |= 1U << i
        self.programmed &= ~release
        self.running &= ~release
        for i in range(NUM_SLOTS):
            if release >> i & 1:
                self.current_config[i] = 0
        self.pmc_in_use = 0
        self.rebuild_tables()
        return release

    def traces_pmi(self) -> bool:
        """Whether PMIs are traced on this vCPU (then the caller reads LVTPC for :meth:`trace_pmi`)."""
        return self.trace != NULL and (self.trace.mask & (1 << TK_PMI)) != 0

    def trace_pmi(self, uint32_t lvt_entry, bint delivered) -> None:
        """A ``pmi`` record: GLOBAL_STATUS (the counters that overflowed), the LVTPC entry as it
        was before the delivery, and whether the LAPIC delivered it (masked, disabled: not)."""
        cdef int flags = (TF_DELIVERED if delivered else 0) | (TF_NMI if ((lvt_entry >> 8) & 7) == 4 else 0)
        if self.traces_pmi():
            trace_emit(self.trace, TK_PMI, flags, self.global_status, lvt_entry, 0)

    def take_pmi_request(self):
        """Consume the PMI request flag; True if a PMI was pending."""
        pending = self.pmi_requested
        self.pmi_requested = False
        return pending

    # ------------------------------------------------------------------ event filter
    def set_filter(self, compiled):
        """Install ``EventFilter.compiled()`` (or None) and re-evaluate every counter at once.

        All or nothing: every value is checked against its C field before the first is stored, so
        a refused filter (ValueError / TypeError) leaves the installed one as it was."""
        cdef int i
        if compiled is None:
            self.filter_action = -1
            self.filter_len = 0
        else:
            action, fixed_bitmap, entries = compiled
            entries = [(int(sel), int(match), int(mask), bool(exclude)) for sel, match, mask, exclude in entries]
            if len(entries) > FILTER_MAX:
                raise ValueError(f"at most {FILTER_MAX} filter entries")
            if not (0 <= int(fixed_bitmap) <= 0xFFFFFFFF and -1 <= int(action) <= 0x7FFFFFFF):
                raise ValueError(f"filter action {action!r} or fixed bitmap {fixed_bitmap!r} out of range")
            for sel, match, mask, _ in entries:
                if not (0 <= sel <= 0xFFFF and 0 <= match <= 0xFF and 0 <= mask <= 0xFF):
                    raise ValueError(f"filter entry ({sel:#x}, {match:#x}, {mask:#x}) out of range")
            self.filter_len = 0
            for sel, match, mask, exclude in entries:
                self.filter_select[self.filter_len] = sel
                self.filter_match[self.filter_len] = match
                self.filter_mask[self.filter_len] = mask
                self.filter_exclude[self.filter_len] = 1 if exclude else 0
                self.filter_len += 1
            self.filter_fixed_bitmap = fixed_bitmap
            self.filter_action = action
        self.filter_allowed = 0
        for i in range(NUM_SLOTS):
            if self.filter_allows(i):
                self.filter_allowed |= 1U << i
        self.reprogram_mask(ALL_ONES)

    cdef bint filter_allows(self, int slot) noexcept nogil:
        cdef uint64_t sel
        cdef uint16_t select
        cdef uint8_t umask
        cdef bint included = False, excluded = False
        cdef int i
        if self.filter_action < 0:
            return True
        if slot >= FIXED_SLOT:
            return ((self.filter_fixed_bitmap >> (slot - FIXED_SLOT)) & 1) == (self.filter_action == 0)
        sel = self.eventsel[slot]
        select = <uint16_t>((sel & 0xFF) | ((sel >> 24) & 0xF00))
        umask = <uint8_t>((sel >> 8) & 0xFF)
        for i in range(self.filter_len):
            if self.filter_select[i] == select and (umask & self.filter_mask[i]) == self.filter_match[i]:
                if self.filter_exclude[i]:
                    excluded = True
                else:
                    included = True
        return (included and not excluded) == (self.filter_action == 0)

    def filter_allows_eventsel(self, uint64_t eventsel):
        """What the compiled filter says about ``eventsel`` (for tests and explain_event)."""
        saved = self.eventsel[0]
        self.eventsel[0] = eventsel
        allowed = self.filter_allows(0)
        self.eventsel[0] = saved
        return allowed

    # ------------------------------------------------------------------ reprogramming
    cdef bint globally_enabled(self, int slot) noexcept nogil:
        if self.version < 2:
            return True  # no GLOBAL_CTRL MSR: every counter is globally enabled
        return (self.global_ctrl & status_bit(slot)) != 0

    cdef void reprogram_mask(self, uint64_t status_bits) noexcept nogil:
        cdef int i
        for i in range(NUM_SLOTS):
            if (self.valid_slots >> i & 1) and (status_bits & status_bit(i)):
                self.reprogram(i)
        self.rebuild_tables()

    cdef void reprogram(self, int slot) noexcept nogil:
        """Pause, resume or reprogram one counter; callers rebuild the dispatch tables after."""
        cdef uint32_t bit = 1U << slot
        cdef uint64_t config, sel
        cdef bint enabled
        cdef int i, generic
        cdef uint16_t select
        cdef uint8_t umask
        if slot < FIXED_SLOT:
            config = self.eventsel[slot]
            enabled = (config & EVTSEL_EN) != 0
        else:
            config = (self.fixed_ctr_ctrl >> (4 * (slot - FIXED_SLOT))) & 0xF
            enabled = (config & 3) != 0
        if not (enabled and self.globally_enabled(slot) and (self.filter_allowed & bit)):
            if self.running & bit and self.trace != NULL:
                self.trace_counter(slot, TP_STOP, config)
            self.running &= ~bit
            return
        if not ((self.programmed & bit) and self.current_config[slot] == config):
            self.current_config[slot] = config
            self.programmed |= bit
            self.reprograms += 1
            self.prev_cond[slot] = 0
            if slot >= FIXED_SLOT:
                self.generic[slot] = _FIXED_EVENTS[slot - FIXED_SLOT]
                self.ring_mask[slot] = (RING_KERNEL if config & 1 else 0) | (RING_USER if config & 2 else 0)
                self.cmask[slot] = 0
                self.inv[slot] = 0
                self.edge[slot] = 0
                if config & 8:
                    self.pmi_enabled |= bit
                else:
                    self.pmi_enabled &= ~bit
            else:
                sel = config
                generic = -1
                umask = <uint8_t>((sel >> 8) & 0xFF)
                if self.is_amd:
                    select = <uint16_t>((sel & 0xFF) | ((sel >> 24) & 0xF00))
                else:
                    select = <uint16_t>(sel & 0xFF)
                if self.is_amd or not (sel & IN_TX):
                    for i in range(self.table_len):
                        if self.table_select[i] == select and self.table_umask[i] == umask:
                            generic = self.table_generic[i]
                            break
                self.generic[slot] = generic
                self.ring_mask[slot] = (RING_KERNEL if sel & EVTSEL_OS else 0) | (RING_USER if sel & EVTSEL_USR else 0)
                self.cmask[slot] = <uint8_t>((sel >> 24) & 0xFF)
                self.inv[slot] = 1 if sel & EVTSEL_INV else 0
                self.edge[slot] = 1 if sel & EVTSEL_EDGE else 0
                if sel & EVTSEL_INT:
                    self.pmi_enabled |= bit
                else:
                    self.pmi_enabled &= ~bit
        if not (self.running & bit) and self.trace != NULL:
            self.running |= bit
            self.trace_counter(slot, TP_START, config)
        self.running |= bit

    cdef void trace_counter(self, int slot, int event, uint64_t config) noexcept nogil:
        """A ``pmu`` record: counter ``slot`` started, stopped or overflowed (``event``)."""
        if self.trace.mask & (1 << TK_PMU):
            trace_emit(self.trace, TK_PMU, event, slot, config, self.counter[slot])

    cdef void rebuild_tables(self) noexcept nogil:
        cdef int i, g, r
        cdef uint32_t bit
        memset(self.plain, 0, sizeof(self.plain))
        memset(self.special, 0, sizeof(self.special))
        self.active_events = 0
        for i in range(NUM_SLOTS):
            bit = 1U << i
            g = self.generic[i]
            if not (self.running & bit) or g < 0 or not self.ring_mask[i]:
                continue
            self.active_events |= 1U << g
            for r in range(2):
                if not (self.ring_mask[i] >> r & 1):
                    continue
                if self.cmask[i] or self.edge[i]:
                    self.special[g][r] |= bit
                else:
                    self.plain[g][r] |= bit

    # ------------------------------------------------------------------ MSRs
    cdef int msr_slot(self, uint32_t index, int *kind) noexcept nogil:
        """Slot (0 for global MSRs) and kind of a PMU MSR that exists now, or -1."""
        cdef uint32_t n
        if self.version == 0:
            return -1
        if self.is_amd:
            n = <uint32_t>(self.num_gp if self.num_gp < 4 else 4)
            if AMD_EVTSEL0 <= index < AMD_EVTSEL0 + n:
                kind[0] = K_EVTSEL
                return index - AMD_EVTSEL0
            if AMD_CTR0 <= index < AMD_CTR0 + n:
                kind[0] = K_CTR
                return index - AMD_CTR0
            if self.amd_perfctr_core and AMD_EXT_CTL0 <= index < AMD_EXT_CTL0 + 2 * <uint32_t>self.num_gp:
                kind[0] = K_CTR if (index - AMD_EXT_CTL0) & 1 else K_EVTSEL
                return (index - AMD_EXT_CTL0) >> 1
            if self.version >= 2:
                if index == AMD_GLOBAL_STATUS:
                    kind[0] = K_GLOBAL_STATUS
                    return 0
                if index == AMD_GLOBAL_CTL:
                    kind[0] = K_GLOBAL_CTRL
                    return 0
                if index == AMD_GLOBAL_STATUS_CLR:
                    kind[0] = K_GLOBAL_CLEAR
                    return 0
                if index == AMD_GLOBAL_STATUS_SET:
                    kind[0] = K_GLOBAL_SET
                    return 0
            return -1
        n = <uint32_t>self.num_gp
        if INTEL_PERFCTR0 <= index < INTEL_PERFCTR0 + n:
            kind[0] = K_GP_CTR
            return index - INTEL_PERFCTR0
        if INTEL_EVTSEL0 <= index < INTEL_EVTSEL0 + n:
            kind[0] = K_EVTSEL
            return index - INTEL_EVTSEL0
        if INTEL_PMC0 <= index < INTEL_PMC0 + n and (self.perf_capabilities & PERF_CAP_FW_WRITE):
            kind[0] = K_GP_CTR_FULL
            return index - INTEL_PMC0
        if INTEL_FIXED_CTR0 <= index < INTEL_FIXED_CTR0 + <uint32_t>self.num_fixed:
            kind[0] = K_CTR
            return FIXED_SLOT + index - INTEL_FIXED_CTR0
        if self.version >= 2:
            if index == INTEL_FIXED_CTRL:
                kind[0] = K_FIXED_CTRL
                return 0
            if index == INTEL_GLOBAL_STATUS:
                kind[0] = K_GLOBAL_STATUS
                return 0
            if index == INTEL_GLOBAL_CTRL:
                kind[0] = K_GLOBAL_CTRL
                return 0
            if index == INTEL_GLOBAL_OVF_CTRL:
                kind[0] = K_GLOBAL_CLEAR
                return 0
        if self.pdcm and index == INTEL_PERF_CAPS:
            kind[0] = K_PERF_CAPS
            return 0
        return -1

    cdef bint owns_msr(self, uint32_t index) noexcept nogil:
        """Whether ``index`` is in the MSR ranges of this configuration (see Pmu.msr_ranges)."""
        cdef int kind
        if not self.is_amd and self.pdcm and INTEL_PMC0 <= index < INTEL_PMC0 + <uint32_t>self.num_gp:
            return True  # registered even while full-width writes are off; accesses then fault
        return self.msr_slot(index, &kind) >= 0

    cdef int rdmsr(self, uint32_t index, uint64_t *value, bint host) noexcept nogil:
        cdef int kind = 0
        cdef int slot = self.msr_slot(index, &kind)
        if slot < 0:
            return 1
        if kind == K_EVTSEL:
            value[0] = self.eventsel[slot]
        elif kind == K_GP_CTR or kind == K_GP_CTR_FULL or kind == K_CTR:
            value[0] = self.counter[slot]
        elif kind == K_FIXED_CTRL:
            value[0] = self.fixed_ctr_ctrl
        elif kind == K_GLOBAL_STATUS:
            value[0] = self.global_status
        elif kind == K_GLOBAL_CTRL:
            value[0] = self.global_ctrl
        elif kind == K_PERF_CAPS:
            value[0] = self.perf_capabilities
        else:
            value[0] = 0  # the write-1-to-clear/set MSRs read as zero
        return 0

    cdef int wrmsr(self, uint32_t index, uint64_t value, bint host) noexcept nogil:
        cdef int kind = 0
        cdef int slot = self.msr_slot(index, &kind)
        cdef uint64_t old, diff
        cdef int i
        if slot < 0:
            return 1
        if kind == K_EVTSEL:
            self.pmc_in_use |= 1U << slot
            if self.is_amd:
                value &= ~self.eventsel_reserved  # AMD drops reserved bits instead of faulting
            elif value & self.eventsel_reserved:
                return 1
            if value != self.eventsel[slot]:
                self.eventsel[slot] = value
                if self.filter_allows(slot):
                    self.filter_allowed |= 1U << slot
                else:
                    self.filter_allowed &= ~(1U << slot)
                self.reprogram(slot)
                self.rebuild_tables()
        elif kind == K_GP_CTR:
            self.pmc_in_use |= 1U << slot
            if not host:
                value = <uint64_t><int64_t><int32_t>(<uint32_t>value)  # sign-extend the low 32 bits
            self.counter[slot] = value & self.gp_mask
        elif kind == K_GP_CTR_FULL:
            self.pmc_in_use |= 1U << slot
            if value & ~self.gp_mask:
                return 1
            self.counter[slot] = value
        elif kind == K_CTR:
            self.pmc_in_use |= 1U << slot
            self.counter[slot] = value & self.width_mask[slot]
        elif kind == K_FIXED_CTRL:
            if value & self.fixed_ctrl_reserved:
                return 1
            old = self.fixed_ctr_ctrl
            self.fixed_ctr_ctrl = value
            diff = 0
            for i in range(self.num_fixed):
                if ((old ^ value) >> (4 * i)) & 0xF:
                    diff |= status_bit(FIXED_SLOT + i)
            if diff:
                self.reprogram_mask(diff)
        elif kind == K_GLOBAL_STATUS:
            if not host:
                return 0 if self.is_amd else 1  # read-only: AMD ignores guest writes, Intel faults
            if value & self.global_status_reserved:
                return 1
            self.global_status = value
        elif kind == K_GLOBAL_CTRL:
            if value & self.global_ctrl_reserved:
                return 1
            diff = value ^ self.global_ctrl
            self.global_ctrl = value
            if diff:
                self.reprogram_mask(diff)
        elif kind == K_GLOBAL_CLEAR:
            if value & self.global_status_reserved & ~self.status_clear_ignored:
                return 1
            if not host:  # a host restore of this MSR must not clobber the restored status
                self.global_status &= ~value
        elif kind == K_GLOBAL_SET:
            if value & self.global_status_reserved:
                return 1
            if not host:
                self.global_status |= value
        elif kind == K_PERF_CAPS:
            if not host or value & ~(<uint64_t>PERF_CAP_FW_WRITE):
                return 1
            self.perf_capabilities = value
        return 0

    # ------------------------------------------------------------------ RDPMC
    cdef int rdpmc(self, uint32_t ecx, int cpl, uint64_t cr0, uint64_t cr4, uint64_t *value) noexcept:
        cdef uint64_t mask = ALL_ONES
        cdef uint32_t idx, kind
        cdef int slot
        if self.version == 0:
            return 1
        if self.vmware_backdoor and PSEUDO_PMC_HOST_TSC <= ecx <= PSEUDO_PMC_APPARENT_TIME:
            # Readable at any CPL with CR4.PCE clear: these checks come before the PCE check.
            try:
                if ecx == PSEUDO_PMC_HOST_TSC:
                    value[0] = <uint64_t>self.tsc_clock.now()
                elif ecx == PSEUDO_PMC_REAL_TIME:
                    value[0] = <uint64_t>self.real_clock.now()
                else:
                    value[0] = <uint64_t>(self.real_clock.now() + self.guest_clock_offset_ns)
            except Exception:
                return 1  # a missing or broken clock is a #GP, never an exception into the CPU loop
            return 0
        if self.is_amd:
            if self.rdpmc_seed:
                if ecx & 0x80000000U:
                    mask = 0xFFFFFFFFULL
                idx = ecx & 0x3FFFFFFFU
            else:
                idx = ecx
            if idx >= <uint32_t>self.num_gp:
                return 1
            slot = idx
        else:
            if self.rdpmc_seed:
                if ecx & 0x80000000U:
                    mask = 0xFFFFFFFFULL
                kind = 0x4000 if ecx & 0x40000000U else 0
                idx = ecx & 0x3FFFFFFFU
            else:
                kind = ecx >> 16
                idx = ecx & 0xFFFFU
            if kind == 0x4000:
                if idx >= <uint32_t>self.num_fixed:
                    return 1
                slot = FIXED_SLOT + idx
            elif kind == 0:
                if idx >= <uint32_t>self.num_gp:
                    return 1
                slot = idx
            else:
                return 1
        if not (cr4 & CR4_PCE) and cpl != 0 and (cr0 & CR0_PE):
            return 1
        value[0] = self.counter[slot] & self.width_mask[slot] & mask
        return 0

    # ------------------------------------------------------------------ counting
    cdef void advance(self, int slot, uint64_t n) noexcept nogil:
        cdef uint64_t c = self.counter[slot]
        cdef uint64_t m = self.width_mask[slot]
        self.counter[slot] = (c + n) & m
        if n > m - c:
            self.global_status |= status_bit(slot)
            self.overflows += 1
            if self.pmi_enabled >> slot & 1:
                self.pmi_requested = True
            if self.trace != NULL:
                self.trace_counter(slot, TP_OVERFLOW | (TP_PMI if self.pmi_enabled >> slot & 1 else 0),
                                   self.current_config[slot])

    cdef void feed_special(self, int slot, uint64_t idle, uint64_t busy) noexcept nogil:
        """Feed ``idle`` cycles with increment 0, then ``busy`` cycles with increment 1."""
        cdef uint8_t c = self.cmask[slot]
        cdef bint cond_idle, cond_busy, prev
        cdef uint64_t add = 0
        if c == 0:  # only EDGE is set: the condition is "increment >= 1", INV is ignored
            cond_idle = False
            cond_busy = True
        elif self.inv[slot]:
            cond_idle = True
            cond_busy = c > 1
        else:
            cond_idle = False
            cond_busy = c == 1
        if self.edge[slot]:
            prev = self.prev_cond[slot]
            if idle:
                if cond_idle and not prev:
                    add += 1
                prev = cond_idle
            if busy:
                if cond_busy and not prev:
                    add += 1
                prev = cond_busy
            self.prev_cond[slot] = prev
        else:
            add = (idle if cond_idle else 0) + (busy if cond_busy else 0)
        if add:
            self.advance(slot, add)

    cdef void count(self, int event, uint64_t n, int cpl) noexcept nogil:
        cdef int r = clamp_cpl_ring(cpl)
        if n == 0 or <unsigned int>event >= NUM_EVENTS:
            return
        advance_all(self, self.plain[event][r], n)
        feed_special_all(self, self.special[event][r], 0, n)

    cdef void count_block(self, uint64_t insns, uint64_t branches, int cpl, uint64_t conditional=0) noexcept nogil:
        cdef int r = clamp_cpl_ring(cpl)
        if insns == 0:
            return
        if branches > insns:
            branches = insns
        if conditional > branches:
            conditional = branches
        advance_all(self, self.plain[EV_CORE_CYCLES][r] | self.plain[EV_INSTRUCTIONS][r]
                         | self.plain[EV_REF_CYCLES][r], insns)
        if branches:
            advance_all(self, self.plain[EV_BRANCHES][r], branches)
        if conditional:
            advance_all(self, self.plain[EV_COND_BRANCHES][r], conditional)
        feed_special_all(self, self.special[EV_CORE_CYCLES][r] | self.special[EV_INSTRUCTIONS][r]
                              | self.special[EV_REF_CYCLES][r], 0, insns)
        feed_special_all(self, self.special[EV_BRANCHES][r], insns - branches, branches)
        feed_special_all(self, self.special[EV_COND_BRANCHES][r], insns - conditional, conditional)

    cdef uint64_t events_to_overflow(self, int event, int cpl) noexcept nogil:
        """Fewest ``event`` events at ``cpl`` until a running counter overflows, or all-ones.

        Exact for counters without CMASK/INV/EDGE.  A counter with them adds at most 1 per
        cycle, so its distance bounds the events that matter from below: it is reported under
        INSTRUCTIONS, CORE_CYCLES and REF_CYCLES when it counts one of the block events, and under
        its own event unless it counts cycles without that event (INV with CMASK >= 1).
        """
        cdef int r = clamp_cpl_ring(cpl)
        cdef uint32_t m, candidates
        cdef uint64_t best = ALL_ONES, d
        cdef int s
        cdef bint cycle_event
        if <unsigned int>event >= NUM_EVENTS:
            return best
        cycle_event = event == EV_CORE_CYCLES or event == EV_INSTRUCTIONS or event == EV_REF_CYCLES
        candidates = self.plain[event][r] | self.special[event][r]
        if cycle_event:
            candidates |= self.special[EV_CORE_CYCLES][r] | self.special[EV_INSTRUCTIONS][r] \
                | self.special[EV_REF_CYCLES][r] | self.special[EV_BRANCHES][r] | self.special[EV_COND_BRANCHES][r]
        m = candidates
        while m:
            s = __builtin_ctz(m)
            m &= m - 1
            if not cycle_event and self.inv[s] and self.cmask[s]:
                continue
            d = self.width_mask[s] - self.counter[s]
            d = d + 1 if d != ALL_ONES else ALL_ONES
            if d < best:
                best = d
        return best

    # ------------------------------------------------------------------ Python-level wrappers
    def read_msr(self, uint32_t index, bint host=False):
        """The MSR's value, or None for #GP."""
        cdef uint64_t value = 0
        if self.rdmsr(index, &value, host):
            return None
        return value

    def write_msr(self, uint32_t index, uint64_t value, bint host=False):
        """True if accepted, False for #GP."""
        return self.wrmsr(index, value, host) == 0

    def read_pmc(self, uint32_t ecx, int cpl, uint64_t cr0, uint64_t cr4):
        """RDPMC's result, or None for #GP."""
        cdef uint64_t value = 0
        if self.rdpmc(ecx, cpl, cr0, cr4, &value):
            return None
        return value

    def feed(self, int event, uint64_t n, int cpl):
        self.count(event, n, cpl)

    def feed_block(self, uint64_t insns, uint64_t branches, int cpl, uint64_t conditional=0):
        self.count_block(insns, branches, cpl, conditional)

    def overflow_distance(self, int event, int cpl):
        return self.events_to_overflow(event, cpl)

    def msr_owned(self, uint32_t index):
        return self.owns_msr(index)

    def slot_info(self, int slot):
        """A dict describing one counter slot (inspection only)."""
        if not 0 <= slot < NUM_SLOTS or not (self.valid_slots >> slot & 1):
            raise IndexError(f"no counter in slot {slot}")
        bit = 1 << slot
        return {
            "kind": "gp" if slot < FIXED_SLOT else "fixed",
            "index": slot if slot < FIXED_SLOT else slot - FIXED_SLOT,
            "value": self.counter[slot],
            "eventsel": self.eventsel[slot] if slot < FIXED_SLOT
            else (self.fixed_ctr_ctrl >> (4 * (slot - FIXED_SLOT))) & 0xF,
            "width_mask": self.width_mask[slot],
            "running": bool(self.running & bit),
            "programmed": bool(self.programmed & bit),
            "filter_allowed": bool(self.filter_allowed & bit),
            "pmi": bool(self.pmi_enabled & bit),
            "generic": self.generic[slot] if self.programmed & bit else -1,
            "current_config": self.current_config[slot],
        }

    # ------------------------------------------------------------------ state
    def get_state(self):
        """Architectural state as plain data (derived state is rebuilt on restore)."""
        cdef int i
        return {
            "counters": [self.counter[i] for i in range(NUM_SLOTS)],
            "eventsel": [self.eventsel[i] for i in range(NUM_SLOTS)],
            "prev_cond": [self.prev_cond[i] for i in range(NUM_SLOTS)],
            "fixed_ctr_ctrl": self.fixed_ctr_ctrl,
            "global_ctrl": self.global_ctrl,
            "global_status": self.global_status,
            "perf_capabilities": self.perf_capabilities,
            "pmi_requested": bool(self.pmi_requested),
            "pmc_in_use": self.pmc_in_use,
        }

    def set_state(self, state):
        """Restore what :meth:`get_state` returned.

        All or nothing: ValueError, having changed nothing, for a state of the wrong shape or type
        and for any value this PMU's MSR writes refuse or cannot produce (see :meth:`_state_refused`)."""
        cdef int i
        refused = self._state_refused(state)
        if refused is not None:
            raise ValueError(f"PMU state refused: {refused}")
        counters, eventsel, prev = state["counters"], state["eventsel"], state["prev_cond"]
        self.clear_state()
        for i in range(NUM_SLOTS):
            self.counter[i] = counters[i]
            self.eventsel[i] = eventsel[i]
        self.fixed_ctr_ctrl = state["fixed_ctr_ctrl"]
        self.global_ctrl = state["global_ctrl"]
        self.global_status = state["global_status"]
        self.perf_capabilities = state["perf_capabilities"]
        self.pmc_in_use = state["pmc_in_use"]
        self.filter_allowed = 0
        for i in range(NUM_SLOTS):
            if self.filter_allows(i):
                self.filter_allowed |= 1U << i
        self.reprogram_mask(ALL_ONES)
        for i in range(NUM_SLOTS):
            self.prev_cond[i] = prev[i]
        self.pmi_requested = state["pmi_requested"]

    def _state_refused(self, state):
        """Why ``state`` cannot be this PMU's, or None.  Values must be what the registers can hold:
        counters within their width, selects and controls without the bits a write refuses (or, on
        AMD, drops), PERF_CAPABILITIES only with full-width writes and only with PDCM, and nothing
        at all in slots this PMU does not have."""
        cdef int i
        keys = {"counters", "eventsel", "prev_cond", "fixed_ctr_ctrl", "global_ctrl", "global_status",
                "perf_capabilities", "pmi_requested", "pmc_in_use"}
        if not isinstance(state, dict) or set(state) != keys:
            return f"expected a dict with exactly {sorted(keys)}"
        for name in ("counters", "eventsel", "prev_cond"):
            values = state[name]
            if not isinstance(values, (list, tuple)) or len(values) != NUM_SLOTS:
                return f"{name} needs {NUM_SLOTS} counter slots"
            if not all(type(v) is int and 0 <= v < 1 << 64 for v in values):
                return f"{name} {values!r} holds a value that is not a 64-bit unsigned integer"
        for name in ("fixed_ctr_ctrl", "global_ctrl", "global_status", "perf_capabilities", "pmc_in_use"):
            if type(state[name]) is not int or not 0 <= state[name] < 1 << 64:
                return f"{name} {state[name]!r} is not a 64-bit unsigned integer"
        if not isinstance(state["pmi_requested"], bool):
            return f"pmi_requested {state['pmi_requested']!r} is not a bool"
        for i in range(NUM_SLOTS):
            if not self.valid_slots >> i & 1:
                if state["counters"][i] or state["eventsel"][i] or state["prev_cond"][i]:
                    return f"slot {i}: this PMU has no such counter"
                continue
            if state["counters"][i] & ~self.width_mask[i]:
                return f"counter {state['counters'][i]:#x} of slot {i} is wider than the counter"
            if state["prev_cond"][i] > 1:
                return f"prev_cond {state['prev_cond'][i]} of slot {i} is not 0 or 1"
            if i < FIXED_SLOT and state["eventsel"][i] & self.eventsel_reserved:
                return f"eventsel {state['eventsel'][i]:#x} of slot {i} has reserved bits"
            if i >= FIXED_SLOT and state["eventsel"][i]:
                return f"slot {i}: a fixed counter has no event select"
        for name, reserved in (("fixed_ctr_ctrl", self.fixed_ctrl_reserved),
                               ("global_ctrl", self.global_ctrl_reserved),
                               ("global_status", self.global_status_reserved),
                               ("pmc_in_use", ~(<uint64_t>self.valid_slots)),
                               ("perf_capabilities", ~(<uint64_t>PERF_CAP_FW_WRITE if self.pdcm else 0))):
            if state[name] & reserved:
                return f"{name} {state[name]:#x} has reserved bits"
        return None

