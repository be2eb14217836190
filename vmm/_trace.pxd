# SPDX-License-Identifier: GPL-2.0-or-later
# The owner of the trace ring (vmm/_trace.pyx); the ring and its writer are vmm/_tracering.pxd.

from libc.stdint cimport uint64_t

from vmm._tracering cimport TraceRing, TraceTap


cdef class TraceBuffer:
    cdef TraceRing ring
    cdef public object consumer     # callable(list of record tuples), or None
    cdef public object error        # what the consumer raised while the ring was drained from C
    cdef TraceTap test_tap          # emit()'s writer, with its own time and RIP
    cdef uint64_t test_time
    cdef uint64_t test_rip
    cdef uint64_t test_zero

    cdef TraceRing *c_ring(self) noexcept
