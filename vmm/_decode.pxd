# SPDX-License-Identifier: GPL-2.0-or-later
# C-level interface of the block decoder (vmm/_decode.pyx) for the vCPU hook layer.

from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t


cdef struct BlockDecode:
    uint16_t n            # instructions; 1 (at offset 0) when the first one does not decode
    uint16_t n_hooked
    uint8_t flags         # vmm.decode's block flags (ENDS_IN_BRANCH ... CHANGES_MAPPING)
    uint16_t *offsets     # n offsets from the block start, ascending
    uint16_t *hooked      # n_hooked offsets of instructions that need a code hook, ascending
                          # (both arrays are the decoder's: valid until its next call)


cdef int decode_block_c(const uint8_t *code, uint32_t size, uint64_t address, int bits, BlockDecode *out) except -1
