# SPDX-License-Identifier: GPL-2.0-or-later
# The decoded-block cache (included by vmm/_ucvcpu.pyx): what the hook layer knows of each
# translation block the engine runs.
#
# * The first time a block is seen (learn_block) it is decoded (vmm.decode): its instruction offsets
#   and branch flags go into the BlockTable, keyed by (address, size).  Each instruction that must
#   be intercepted (RDMSR/WRMSR, port I/O, CR8, LTR, IRET, cache maintenance while an LLC event
#   runs) gets a per-address code hook; the block is then dropped from the translation cache and
#   restarted.
# * classify_loop() recognises the self-loops whose iterations can be retired in bulk: exactly
#   ``loop .`` (either address size), ``1: dec reg; jnz 1b`` (any GPR, 16/32/64-bit, jnz rel8/rel32)
#   or ``jmp .``.
#
# Not here: the accounting itself (UcVcpu.commit), bulk retirement (_ucvcpu_counting.pxi), what the
# code hooks do (_ucvcpu_insns.pxi, _ucvcpu_msr.pxi).  Not supported: self-modifying code that keeps
# a block's address and size but changes its instructions (the cache is keyed by address and size:
# the accounting of that block goes wrong).

# Block flags as C constants (hot paths must not touch Python names); they are vmm.decode's,
# which the check below enforces at import.
DEF ENDS_IN_BRANCH = 1
DEF STARTS_WITH_REP = 2
DEF ENDS_WITH_REP = 4
DEF BRANCH_CONDITIONAL = 8
DEF BRANCH_INDIRECT = 16
DEF BRANCH_RETURN = 32
DEF BRANCH_CALL = 64
if (decode.ENDS_IN_BRANCH, decode.STARTS_WITH_REP, decode.ENDS_WITH_REP, decode.BRANCH_CONDITIONAL,
        decode.BRANCH_INDIRECT, decode.BRANCH_RETURN, decode.BRANCH_CALL) != (1, 2, 4, 8, 16, 32, 64):
    raise ImportError("vmm.decode block flags differ from the hook layer's C constants")


# ---------------------------------------------------------------------------------------
# Decoded-block cache: open addressing keyed by (address, size).

cdef struct Block:
    uint64_t addr
    uint32_t size
    uint16_t n            # instructions
    uint8_t flags         # vmm.decode flags
    uint8_t used
    uint16_t *offs        # n instruction offsets
    uint8_t loop_kind     # a self-loop bulk_retire() can run many iterations of at once (LOOP_*)
    uint8_t loop_reg      # its counter register (RCX for LOOP, the DEC's register)
    uint8_t loop_bits     # the counter's width: LOOP's address size, DEC's operand size


# Self-loops: blocks that jump to their own first instruction with effects on one register (and
# the flags) only, whose iterations can be retired in bulk (bulk_retire, _ucvcpu_counting.pxi).
DEF LOOP_NONE = 0
DEF LOOP_LOOP = 1         # loop .            (E2 FE, or 67 E2 FD: the other address size)
DEF LOOP_DEC_JNZ = 2      # 1: dec reg; jnz 1b (any GPR, 16/32/64-bit; jnz rel8 or rel32)
DEF LOOP_JMP = 3          # jmp .             (EB FE, E9 rel32/rel16 to itself)
DEF BULK_MAX = 1 << 32    # iterations per bulk step: keeps retired far from wrapping in an endless jmp .


cdef void classify_loop(Block *b, const uint8_t *c, int bits) noexcept:
    """Mark ``b`` (decoded from the bytes ``c`` in ``bits``-bit code) if it is one of the exact
    self-loop forms above; anything else (other prefixes, other registers, other targets) is not."""
    cdef uint32_t size = b.size, o
    cdef int i = 0, rel
    cdef uint8_t rex = 0
    cdef bint opsize = False
    b.loop_kind = LOOP_NONE
    if b.n == 1:
        if size == 2 and c[0] == 0xE2 and c[1] == 0xFE:
            b.loop_kind = LOOP_LOOP
            b.loop_reg = R_RCX
            b.loop_bits = bits
        elif size == 3 and c[0] == 0x67 and c[1] == 0xE2 and c[2] == 0xFD:
            b.loop_kind = LOOP_LOOP
            b.loop_reg = R_RCX
            b.loop_bits = 16 if bits == 32 else 32
        elif (size == 2 and c[0] == 0xEB and c[1] == 0xFE) or \
                (bits != 16 and size == 5 and c[0] == 0xE9 and c[1] == 0xFB and c[2] == 0xFF and c[3] == 0xFF
                 and c[4] == 0xFF) or (bits == 16 and size == 3 and c[0] == 0xE9 and c[1] == 0xFD and c[2] == 0xFF):
            b.loop_kind = LOOP_JMP
        return
    if b.n != 2:
        return
    o = b.offs[1]       # jnz back to the dec
    if size - o == 2 and c[o] == 0x75:
        rel = <int8_t> c[o + 1]
    elif bits != 16 and size - o == 6 and c[o] == 0x0F and c[o + 1] == 0x85:
        rel = <int32_t> (c[o + 2] | (c[o + 3] << 8) | (c[o + 4] << 16) | (<uint32_t> c[o + 5] << 24))
    else:
        return
    if rel != -<int> size:
        return
    if c[i] == 0x66:
        opsize = True
        i += 1
    if bits == 64 and (c[i] & 0xF0) == 0x40:
        rex = c[i]
        i += 1
    if bits != 64 and (c[i] & 0xF8) == 0x48 and <uint32_t> (i + 1) == o:
        b.loop_reg = c[i] & 7                               # dec r16/r32 (one byte, not in 64-bit code)
    elif c[i] == 0xFF and (c[i + 1] & 0xF8) == 0xC8 and <uint32_t> (i + 2) == o:
        b.loop_reg = (c[i + 1] & 7) | ((rex & 1) << 3)      # dec r/m16/32/64, register form
    else:
        return
    if rex & 8:
        b.loop_bits = 64
    elif bits == 16:
        b.loop_bits = 32 if opsize else 16
    else:
        b.loop_bits = 16 if opsize else 32
    b.loop_kind = LOOP_DEC_JNZ


@cython.final
cdef class BlockTable:
    cdef Block *slots
    cdef Block *last        # the block found last (slots move when the table grows: reset then)
    cdef size_t cap
    cdef size_t count

    def __cinit__(self):
        self.cap = 1 << 14
        self.slots = <Block*> calloc(self.cap, sizeof(Block))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        self._free_offs()
        free(self.slots)

    cdef void _free_offs(self) noexcept:
        cdef size_t i
        for i in range(self.cap):
            if self.slots[i].used:
                free(self.slots[i].offs)

    cdef inline size_t _hash(self, uint64_t addr, uint32_t size) noexcept nogil:
        cdef uint64_t h = (addr ^ (<uint64_t>size << 48)) * <uint64_t>0x9E3779B97F4A7C15
        return <size_t>(h >> 20) & (self.cap - 1)

    cdef Block* find(self, uint64_t addr, uint32_t size) noexcept nogil:
        cdef size_t i
        if self.last != NULL and self.last.addr == addr and self.last.size == size:
            return self.last        # loops re-enter the same block: skip the hash
        i = self._hash(addr, size)
        while self.slots[i].used:
            if self.slots[i].addr == addr and self.slots[i].size == size:
                self.last = &self.slots[i]
                return self.last
            i = (i + 1) & (self.cap - 1)
        return NULL

    cdef Block* insert(self, uint64_t addr, uint32_t size, offsets, uint8_t flags) except NULL:
        if (self.count + 1) * 2 > self.cap:
            self._grow()
        cdef size_t i = self._hash(addr, size)
        while self.slots[i].used:
            i = (i + 1) & (self.cap - 1)
        cdef Block *b = &self.slots[i]
        b.addr = addr
        b.size = size
        b.n = len(offsets)
        b.flags = flags
        b.offs = <uint16_t*> malloc(sizeof(uint16_t) * b.n)
        if b.offs == NULL:
            raise MemoryError()
        cdef int k
        for k in range(b.n):
            b.offs[k] = offsets[k]
        b.used = 1
        self.count += 1
        return b

    cdef void _grow(self) except *:
        cdef Block *old = self.slots
        cdef size_t old_cap = self.cap, i, j
        self.last = NULL
        self.cap *= 2
        self.slots = <Block*> calloc(self.cap, sizeof(Block))
        if self.slots == NULL:
            raise MemoryError()
        for i in range(old_cap):
            if old[i].used:
                j = self._hash(old[i].addr, old[i].size)
                while self.slots[j].used:
                    j = (j + 1) & (self.cap - 1)
                self.slots[j] = old[i]
        free(old)


cdef inline int index_in_block(Block *b, uint64_t rip) noexcept nogil:
    """Instructions of ``b`` that lie before ``rip`` (all of them if rip is past the block)."""
    cdef uint64_t off
    cdef int k
    if rip < b.addr or rip >= b.addr + b.size:
        return b.n
    off = rip - b.addr
    for k in range(b.n):
        if b.offs[k] >= off:
            return k
    return b.n


cdef bint learn_block(UcVcpu vcpu, uint64_t address, uint32_t size) noexcept:
    """Decode a new block; returns True if it needed new code hooks (caller restarts it)."""
    cdef bytes code
    cdef char *buf = <char*> malloc(size)
    cdef bint hooked = False
    cdef uint64_t a
    if buf == NULL:
        return False
    try:
        if not vcpu.read_guest(address, PROT_EXEC, buf, size):
            return False
        code = buf[:size]
        d = decode_block(code, address, vcpu.code_bits())
        classify_loop(vcpu.blocks.insert(address, size, d.offsets, d.flags), <const uint8_t*> buf,
                      vcpu.code_bits())
        for off in d.hooked_offsets:
            a = address + off
            if a not in vcpu.hooked_insns:
                vcpu.hooked_insns.add(a)
                add_hook(vcpu, HOOK_CODE, <void*> _on_hooked_insn, a, a)
                hooked = True
        if hooked:
            uc_ctl(vcpu.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), address, address + size)
        return hooked
    except BaseException as e:
        vcpu._fail(f"decoding the block at {address:#x}: {e!r}")
        return False
    finally:
        free(buf)
