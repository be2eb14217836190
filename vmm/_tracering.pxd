# SPDX-License-Identifier: GPL-2.0-or-later
# The trace ring (docs/design.md, "Trace"): fixed-size records of plain C fields, written by the
# vCPU hook layer's C paths and the PMU core, drained to Python (vmm/trace.py) for formatting.
#
# Writers hold a TraceTap: the categories traced on that vCPU (``mask``), the ring every vCPU of the
# machine shares (one host thread runs them in turn, so the ring's order is the order events
# happened in), and where that vCPU's RIP is; the ring knows where the machine's virtual time is.  With tracing off the mask is 0 and
# a writer's only cost is testing it.  Everything here is header-only (inline), so the PMU core can
# cimport it without importing vmm at run time.

from libc.stdint cimport uint16_t, uint32_t, uint64_t

cdef enum:
    # Record kinds; category bit = 1 << kind (vmm/trace.py CATEGORIES keeps the same numbers).
    TK_PMU = 0          # a counter started, stopped or overflowed: a slot, b config, c value
    TK_MSR = 1          # RDMSR/WRMSR: a index, b value
    TK_RDPMC = 2        # a ECX, b value
    TK_PMI = 3          # a GLOBAL_STATUS, b LVTPC entry before delivery
    TK_IO = 4           # IN/OUT/INS/OUTS: a port, b value, c size
    TK_MMIO = 5         # a physical address, b value, c size
    TK_IRQ = 6          # an interrupt or NMI injected: a vector
    TK_EXC = 7          # an exception delivered through the IDT: a vector, b error code, c CR2
    TK_COUNT = 8

    # flags
    TF_WRITE = 1        # MSR, IO, MMIO: a write (OUT, WRMSR)
    TF_DELIVERED = 1    # PMI: the LAPIC delivered it
    TF_FAULT = 2        # MSR, RDPMC: the guest got #GP
    TF_NMI = 4          # IRQ: an NMI; PMI: LVTPC in NMI mode
    TF_ERROR_CODE = 8   # EXC: b holds an error code
    TF_CR2 = 16         # EXC: c holds CR2 (#PF)
    TF_SOFTWARE = 32    # EXC: INT n, INT3, INTO
    # PMU records: the event in the low bits
    TP_START = 0
    TP_STOP = 1
    TP_OVERFLOW = 2
    TP_PMI = 4          # with TP_OVERFLOW: the counter's INT/PMI bit is set


ctypedef struct TraceRecord:
    uint64_t time       # virtual ns
    uint64_t rip        # linear address of the instruction (CS base + RIP)
    uint64_t a
    uint64_t b
    uint64_t c
    uint32_t vcpu
    uint16_t kind
    uint16_t flags


ctypedef struct TraceRing:
    TraceRecord *records
    uint32_t capacity
    uint32_t count
    uint64_t dropped    # records lost: the drain failed (a write error) and the ring was full
    # The machine's clock: the running vCPU's retired count + clock offset (vmm/clock.py), so
    # records of a vCPU that is not running (the HLT wait) carry the machine's time too.
    const uint64_t *retired
    const uint64_t *clock_offset
    # Called with the ring full; empties it (count = 0) through Python.  May not be NULL.
    void (*drain)(TraceRing *ring) noexcept nogil
    void *owner         # the vmm._trace.TraceBuffer (borrowed)


ctypedef struct TraceTap:
    uint32_t mask       # 1 << TK_... of the categories traced; 0 = off
    uint32_t vcpu
    TraceRing *ring
    const uint64_t *eip             # RIP = cs_base + eip
    const uint64_t *cs_base


cdef inline void trace_emit(TraceTap *tap, int kind, int flags, uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    """Append one record; callers test ``tap.mask & (1 << kind)`` first."""
    cdef TraceRing *ring = tap.ring
    cdef TraceRecord *r
    if ring.count >= ring.capacity:
        ring.drain(ring)
        if ring.count >= ring.capacity:
            ring.dropped += 1
            return
    r = &ring.records[ring.count]
    ring.count += 1
    r.time = ring.retired[0] + ring.clock_offset[0]
    r.rip = tap.cs_base[0] + tap.eip[0]
    r.vcpu = tap.vcpu
    r.kind = <uint16_t> kind
    r.flags = <uint16_t> flags
    r.a = a
    r.b = b
    r.c = c
