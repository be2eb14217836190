# cython: language_level=3, boundscheck=False, wraparound=False
# SPDX-License-Identifier: GPL-2.0-or-later
"""The trace ring's owner: a fixed-size C array of records (vmm/_trace.pxd) and its way to Python.

C writers append records with ``trace_emit`` and never allocate or touch a Python object; when the
ring is full ``trace_emit`` calls back here and :meth:`TraceBuffer.flush` hands every record to
``consumer`` (vmm/trace.py formats and writes them), then writing goes on.  A record is lost only
when the consumer fails (a write error): :attr:`TraceBuffer.dropped` counts those and the consumer's
exception is kept in :attr:`TraceBuffer.error`.  Records leave as tuples
``(time, vcpu, rip, kind, flags, a, b, c)``, in the order they were written.
"""

from libc.stdint cimport uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free

from vmm._tracering cimport TraceRecord, TraceRing, TraceTap, trace_emit

DEFAULT_CAPACITY = 8192     # 48-byte records: 384 KiB


cdef void _drain(TraceRing *ring) noexcept with gil:
    cdef TraceBuffer buffer = <TraceBuffer> ring.owner
    try:
        buffer.flush()
    except BaseException as e:     # flush() counted what it lost; the run goes on
        buffer.error = e


cdef class TraceBuffer:
    def __cinit__(self):
        self.ring.drain = _drain
        self.ring.owner = <void*> self
        self.ring.retired = &self.test_zero       # until a vCPU drives it (UcVcpu.trace_clock)
        self.ring.clock_offset = &self.test_zero
        self.test_tap.ring = &self.ring
        self.test_tap.eip = &self.test_rip
        self.test_tap.cs_base = &self.test_zero

    def __init__(self, uint32_t capacity=DEFAULT_CAPACITY, consumer=None):
        if capacity == 0:
            raise ValueError("a trace buffer holds at least one record")
        if self.ring.records != NULL:
            raise RuntimeError("a trace buffer is initialised once")
        self.ring.records = <TraceRecord*> calloc(capacity, sizeof(TraceRecord))
        if self.ring.records == NULL:
            raise MemoryError()
        self.ring.capacity = capacity
        self.consumer = consumer
        self.error = None

    def __dealloc__(self):
        free(self.ring.records)

    cdef TraceRing *c_ring(self) noexcept:
        return &self.ring

    @property
    def capacity(self) -> int:
        return self.ring.capacity

    @property
    def count(self) -> int:
        """Records waiting in the ring."""
        return self.ring.count

    @property
    def dropped(self) -> int:
        return self.ring.dropped

    def take(self) -> list:
        """Every record waiting, oldest first, as tuples; the ring is empty afterwards."""
        cdef uint32_t i
        cdef TraceRecord *r
        out = []
        for i in range(self.ring.count):
            r = &self.ring.records[i]
            out.append((r.time, r.vcpu, r.rip, r.kind, r.flags, r.a, r.b, r.c))
        self.ring.count = 0
        return out

    def flush(self) -> None:
        """Hand every waiting record to ``consumer``; if it raises, they count as dropped."""
        if self.ring.count == 0 or self.consumer is None:
            return
        records = self.take()
        try:
            self.consumer(records)
        except BaseException:
            self.ring.dropped += len(records)
            raise

    def emit(self, int kind, int flags, uint64_t a=0, uint64_t b=0, uint64_t c=0, *,
             uint64_t time=0, uint64_t rip=0, uint32_t vcpu=0):
        """Append a record through the C writer, at ``time`` (tests)."""
        cdef const uint64_t *retired = self.ring.retired
        cdef const uint64_t *offset = self.ring.clock_offset
        self.test_time = time
        self.test_rip = rip
        self.test_tap.vcpu = vcpu
        self.ring.retired = &self.test_time
        self.ring.clock_offset = &self.test_zero
        trace_emit(&self.test_tap, kind, flags, a, b, c)
        self.ring.retired = retired
        self.ring.clock_offset = offset
