# SPDX-License-Identifier: GPL-2.0-or-later
# C-level interface of the micro-architecture models (vmm/_uarch.pyx) for the vCPU hook layer.
# Every method below touches no Python object and runs without the GIL.  The classes are final,
# so modules that cimport them call these methods directly rather than through a vtable.

cimport cython
from libc.stdint cimport uint8_t, uint32_t, uint64_t


cdef struct CacheLevel:
    uint64_t set_mask       # number of sets - 1 (a power of two)
    uint32_t ways
    uint64_t *entry         # ways entries per set, most recently used first: a line number, with
                            # PREFETCHED set while a prefetched line is unused, or NO_LINE (last)


@cython.final
cdef class CacheModel:
    cdef CacheLevel l1d
    cdef CacheLevel llc
    cdef readonly bint next_line_prefetch
    cdef readonly uint64_t references
    cdef readonly uint64_t misses

    # -- the C API for the hook layer --
    cdef void access(self, uint64_t address, uint32_t size) noexcept nogil
    cdef void flush_line(self, uint64_t address) noexcept nogil
    cdef void invalidate(self) noexcept nogil

    # -- internals --
    cdef void access_line(self, uint64_t line) noexcept nogil
    cdef void prefetch_line(self, uint64_t line) noexcept nogil


@cython.final
cdef class BranchPredictor:
    cdef uint8_t *pattern_table     # 2-bit saturating counters
    cdef uint32_t pattern_mask      # entries - 1; also the global history mask
    cdef uint32_t history           # outcomes of the latest conditional branches, newest in bit 0
    cdef uint8_t *btb_valid
    cdef uint64_t *btb_branch
    cdef uint64_t *btb_target
    cdef uint32_t btb_mask
    cdef uint64_t *rsb
    cdef uint32_t rsb_mask          # depth - 1
    cdef uint32_t rsb_top
    cdef uint32_t rsb_count
    cdef readonly uint64_t mispredicts

    # -- the C API for the hook layer --
    cdef bint conditional(self, uint64_t branch_address, bint taken) noexcept nogil
    cdef bint indirect(self, uint64_t branch_address, uint64_t target) noexcept nogil
    cdef void call(self, uint64_t return_address) noexcept nogil
    cdef bint ret(self, uint64_t target) noexcept nogil
    cdef void flush(self) noexcept nogil
