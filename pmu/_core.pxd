# SPDX-License-Identifier: GPL-2.0-or-later
# C-level interface of the PMU core for the vCPU hook layer (docs/design.md, "PMU").
# Every method below touches no Python object and may run without the GIL, except rdpmc(),
# which reads the injected clocks for the VMware pseudo-PMCs on that cold branch.

from libc.stdint cimport int8_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t

from vmm._tracering cimport TraceTap

cdef enum:
    MAX_GP = 8
    MAX_FIXED = 3
    NUM_SLOTS = 11           # GP counters in slots 0..7, fixed counters in slots 8..10
    FIXED_SLOT = 8
    NUM_EVENTS = 9           # generic event ids 0..8 (pmu/events.py)
    MAX_TABLE = 16
    FILTER_MAX = 300


cdef class PmuCore:
    # -- shape (set by configure()) --
    cdef readonly bint is_amd
    cdef readonly int version
    cdef readonly int num_gp
    cdef readonly int num_fixed
    cdef readonly uint64_t gp_mask
    cdef readonly uint64_t fixed_mask
    cdef readonly bint pdcm
    cdef readonly bint amd_perfctr_core
    cdef bint tsx
    cdef bint reset_fixed_enables   # global_ctrl_reset == "seed"
    cdef bint rdpmc_seed            # rdpmc_fast == "seed"
    cdef readonly bint vmware_backdoor
    cdef public int64_t guest_clock_offset_ns
    cdef uint64_t eventsel_reserved
    cdef uint64_t fixed_ctrl_reserved
    cdef uint64_t global_ctrl_reserved
    cdef uint64_t global_status_reserved
    cdef uint64_t status_clear_ignored  # reserved bits a STATUS_CLR write may set without #GP (AMD)
    cdef uint32_t valid_slots
    cdef int table_len
    cdef uint16_t table_select[MAX_TABLE]
    cdef uint8_t table_umask[MAX_TABLE]
    cdef int8_t table_generic[MAX_TABLE]

    # -- architectural state --
    cdef uint64_t counter[NUM_SLOTS]
    cdef uint64_t eventsel[NUM_SLOTS]
    cdef readonly uint64_t fixed_ctr_ctrl
    cdef readonly uint64_t global_ctrl
    cdef readonly uint64_t global_status
    cdef readonly uint64_t perf_capabilities

    # -- derived per-counter state (reprogram time) --
    cdef uint64_t current_config[NUM_SLOTS]
    cdef uint64_t width_mask[NUM_SLOTS]
    cdef int8_t generic[NUM_SLOTS]
    cdef uint8_t cmask[NUM_SLOTS]
    cdef uint8_t inv[NUM_SLOTS]
    cdef uint8_t edge[NUM_SLOTS]
    cdef uint8_t prev_cond[NUM_SLOTS]
    cdef uint8_t ring_mask[NUM_SLOTS]   # bit 0: counts at CPL 0, bit 1: at CPL > 0
    cdef readonly uint32_t running
    cdef readonly uint32_t programmed
    cdef readonly uint32_t pmi_enabled
    cdef readonly uint32_t filter_allowed
    cdef uint32_t plain[NUM_EVENTS][2]     # running counters with raw counting, by event and ring
    cdef uint32_t special[NUM_EVENTS][2]   # running counters with CMASK/INV/EDGE
    cdef readonly uint32_t active_events
    cdef readonly uint64_t reprograms

    # -- housekeeping and PMI --
    cdef readonly uint32_t pmc_in_use
    cdef readonly bint need_cleanup
    cdef readonly bint pmi_requested
    cdef readonly uint64_t overflows

    # -- event filter (compiled) --
    cdef readonly int filter_action        # -1: no filter
    cdef uint32_t filter_fixed_bitmap
    cdef int filter_len
    cdef uint16_t filter_select[FILTER_MAX]
    cdef uint8_t filter_match[FILTER_MAX]
    cdef uint8_t filter_mask[FILTER_MAX]
    cdef uint8_t filter_exclude[FILTER_MAX]

    # -- trace: the vCPU's tap (vmm/_tracering.pxd), set by the vCPU; NULL while nothing is traced --
    cdef TraceTap *trace

    # -- clocks for the pseudo-PMCs (cold path only) --
    cdef object tsc_clock
    cdef object real_clock

    # -- the C API of docs/design.md --
    cdef int rdmsr(self, uint32_t index, uint64_t *value, bint host) noexcept nogil
    cdef int wrmsr(self, uint32_t index, uint64_t value, bint host) noexcept nogil
    cdef int rdpmc(self, uint32_t ecx, int cpl, uint64_t cr0, uint64_t cr4, uint64_t *value) noexcept
    cdef void count(self, int event, uint64_t n, int cpl) noexcept nogil
    cdef void count_block(self, uint64_t insns, uint64_t branches, int cpl, uint64_t conditional=*) noexcept nogil
    cdef uint64_t events_to_overflow(self, int event, int cpl) noexcept nogil
    cdef bint owns_msr(self, uint32_t index) noexcept nogil

    # -- internals --
    cdef int msr_slot(self, uint32_t index, int *kind) noexcept nogil
    cdef bint globally_enabled(self, int slot) noexcept nogil
    cdef void reprogram(self, int slot) noexcept nogil
    cdef void reprogram_mask(self, uint64_t status_bits) noexcept nogil
    cdef void rebuild_tables(self) noexcept nogil
    cdef bint filter_allows(self, int slot) noexcept nogil
    cdef void advance(self, int slot, uint64_t n) noexcept nogil
    cdef void feed_special(self, int slot, uint64_t idle, uint64_t busy) noexcept nogil
    cdef void clear_state(self) noexcept nogil
    cdef void trace_counter(self, int slot, int event, uint64_t config) noexcept nogil
