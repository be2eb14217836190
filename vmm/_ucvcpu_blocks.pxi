# SPDX-License-Identifier: GPL-2.0-or-later
# The decoded-block cache (included by vmm/_ucvcpu.pyx): what the hook layer knows of each
# translation block the engine runs.
#
# * The first time a block is seen (current_block) it is decoded (vmm/_decode.pyx, in C): its instruction
#   offsets and branch flags go into the BlockTable, keyed by (address, size), with its bytes.  Each
#   instruction that must be intercepted (RDMSR/WRMSR, port I/O, CR8, LTR, IRET, cache maintenance
#   while an LLC event runs) gets a per-address code hook; the block is then dropped from the
#   translation cache and restarted.
# * A decode follows the code it was made from.  Each block records the code generation it was last
#   found current in; the generation moves (code_may_have_changed) when the engine drops
#   translations (its TCGContext count: a store into translated code, by this vCPU or the host), when
#   the hook layer flushes them (an SMP IRET to itself, stepping), at a TLB flush or paging change
#   (the retirement of a block that ends in MOV to CR0/CR3/CR4, INVLPG, INVPCID or a far JMP/CALL --
#   the engine ends a block after each -- EFER writes, task switches through gates or IRET, the host's
#   CR0/CR3/CR4 writes between runs).  No code hook is needed for these: hooks cost every hooked
#   instruction a walk over all of them in the engine.  At a block's first entry in a new generation it is compared with the code: unchanged if
#   the engine's TLB puts it in the same RAM as before and no store has been seen since, or if its
#   bytes are those there now; else the decode of the bytes there is taken (kept ones are reused:
#   MAX_VARIANTS per key), the engine's translation is dropped too and the block restarts.  The cost
#   on the hot path is one compare per block (UcVcpu.still_current).
# * Each block remembers the block entered right after it last time (``next``, set by
#   UcVcpu.on_block_slow) and the other one before that (``alt``: a conditional branch's two ways),
#   so that the block hook's fast path finds the next block without the table: it checks that one's
#   key and generation itself.  A block's own links are dropped when it is decoded again, links to a
#   block that becomes a self-loop are dropped (the fast path must not enter one: bulk_retire), and
#   the table's growth (which moves every block) drops them all.
# * classify_loop() recognises the self-loops whose iterations can be retired in bulk: exactly
#   ``loop .`` (either address size), ``1: dec reg; jnz 1b`` (any GPR, 16/32/64-bit, jnz rel8/rel32)
#   or ``jmp .``.
#
# Not here: the accounting itself (UcVcpu.commit), bulk retirement (_ucvcpu_counting.pxi), what the
# code hooks do (_ucvcpu_insns.pxi, _ucvcpu_msr.pxi).

from vmm._decode cimport BlockDecode, decode_block_c

# Block flags as C constants (hot paths must not touch Python names); they are vmm.decode's,
# which the check below enforces at import.
DEF ENDS_IN_BRANCH = 1
DEF STARTS_WITH_REP = 2
DEF ENDS_WITH_REP = 4
DEF BRANCH_CONDITIONAL = 8
DEF BRANCH_INDIRECT = 16
DEF BRANCH_RETURN = 32
DEF BRANCH_CALL = 64
DEF CHANGES_MAPPING = 128
if (decode.ENDS_IN_BRANCH, decode.STARTS_WITH_REP, decode.ENDS_WITH_REP, decode.BRANCH_CONDITIONAL,
        decode.BRANCH_INDIRECT, decode.BRANCH_RETURN, decode.BRANCH_CALL,
        decode.CHANGES_MAPPING) != (1, 2, 4, 8, 16, 32, 64, 128):
    raise ImportError("vmm.decode block flags differ from the hook layer's C constants")


# ---------------------------------------------------------------------------------------
# Decoded-block cache: open addressing keyed by (address, size).

# UcVcpu.pending packs three counts of 21 bits: instructions, branches, conditional branches
# (stop_at_overflow keeps fewer than PENDING_MAX instructions pending).
DEF PENDING_BRANCH = 1 << 21
DEF PENDING_COND = 1 << 42
DEF PENDING_MASK = PENDING_BRANCH - 1
DEF PENDING_MAX = 1 << 20

cdef struct Block:
    uint64_t addr
    uint32_t size
    uint16_t n            # instructions
    uint8_t flags         # vmm.decode flags
    uint8_t used
    uint16_t *offs        # n instruction offsets, in one allocation after its BlockCode and before its bytes
    uint8_t loop_kind     # a self-loop bulk_retire() can run many iterations of at once (LOOP_*)
    uint8_t loop_reg      # its counter register (RCX for LOOP, the DEC's register)
    uint8_t loop_bits     # the counter's width: LOOP's address size, DEC's operand size
    uint32_t checked      # the code generation (UcVcpu.code_gen) it was last found current in
    Block *next           # the block entered right after this one last time (UcVcpu.on_block's fast path;
    Block *alt            # ... and the other one entered after it before that              NO_LINK: none)
    uint64_t tally        # what its commit adds to UcVcpu.pending: n, its final branch, a conditional one
# (48 bytes: every block entry probes the table, so what is needed only to compare a block with the
# code is kept out of it, in its BlockCode.)

# A block's ``next`` and ``alt`` while it has no such link: a key no translation block has (none is
# 4 GiB long), so that the fast path finds no match without a NULL test.
cdef Block NO_LINK
NO_LINK.addr = <uint64_t> -1
NO_LINK.size = <uint32_t> -1


cdef struct BlockCode:
    uint8_t *host         # where guest RAM held the block's bytes when last compared (NULL: not in RAM, across pages)
    uint32_t written      # the write generation (UcVcpu.write_gen) they were last compared in


cdef inline BlockCode* block_code(Block *b) noexcept nogil:
    return (<BlockCode*> b.offs) - 1


cdef inline uint8_t* block_bytes(Block *b) noexcept nogil:
    """The size bytes ``b`` was decoded from."""
    return <uint8_t*> (b.offs + b.n)


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


DEF MAX_VARIANTS = 4      # decodes kept per (address, size): code that changes back and forth there
DEF CODE_TLB_SIZE = 64    # linear code pages whose place in RAM code_page() remembers


cdef struct CodePage:
    uint64_t page         # linear address >> 12
    uint32_t gen          # the code generation it was looked up in (0: never)
    uint8_t *host         # where guest RAM holds it; NULL: not in RAM, or not mapped


@cython.final
cdef class BlockTable:
    """Decoded blocks by (linear address, size), several per key when the code there changed (a
    patched site, another process's code at the same address): the one found first is the one in
    use, the others are kept to switch back to without decoding again."""
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
        cdef size_t i
        for i in range(self.cap):
            if self.slots[i].used:
                free(block_code(&self.slots[i]))
        free(self.slots)

    cdef inline size_t _hash(self, uint64_t addr, uint32_t size) noexcept nogil:
        cdef uint64_t h = (addr ^ (<uint64_t>size << 48)) * <uint64_t>0x9E3779B97F4A7C15
        return <size_t>(h >> 20) & (self.cap - 1)

    cdef inline Block* find(self, uint64_t addr, uint32_t size) noexcept nogil:
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

    cdef Block* variant(self, Block *first, const uint8_t *code, int *variants) noexcept nogil:
        """The block decoded from ``code`` among those with ``first``'s key (NULL: none); the
        number of blocks with that key in ``variants``."""
        cdef size_t i = self._hash(first.addr, first.size)
        cdef Block *found = NULL
        variants[0] = 0
        while self.slots[i].used:
            if self.slots[i].addr == first.addr and self.slots[i].size == first.size:
                variants[0] += 1
                if found == NULL and memcmp(block_bytes(&self.slots[i]), code, first.size) == 0:
                    found = &self.slots[i]
            i = (i + 1) & (self.cap - 1)
        return found

    cdef Block* promote(self, Block *b) noexcept nogil:
        """Make ``b`` the block find() returns for its key (it trades places with the one that was);
        returns its new place."""
        cdef Block *first
        cdef Block tmp
        self.last = NULL
        first = self.find(b.addr, b.size)
        if first != b:
            tmp = first[0]
            first[0] = b[0]
            b[0] = tmp
            if first.loop_kind:
                self.unlink(first)
            if b.loop_kind:
                self.unlink(b)
        return first

    cdef void unlink(self, Block *b) noexcept nogil:
        """Drop every link to ``b``: it holds a self-loop now, which the fast path must not enter
        (rare: code changed under a key)."""
        cdef size_t i
        for i in range(self.cap):
            if self.slots[i].next == b:
                self.slots[i].next = &NO_LINK
            if self.slots[i].alt == b:
                self.slots[i].alt = &NO_LINK

    cdef Block* insert(self, uint64_t addr, uint32_t size, const uint16_t *offsets, uint16_t n, uint8_t flags,
                       const uint8_t *code) except NULL:
        if (self.count + 1) * 2 > self.cap:
            self._grow()
        cdef size_t i = self._hash(addr, size)
        while self.slots[i].used:
            i = (i + 1) & (self.cap - 1)
        cdef Block *b = &self.slots[i]
        b.addr = addr
        b.size = size
        self.fill(b, offsets, n, flags, code)
        b.used = 1
        self.count += 1
        return b

    cdef void fill(self, Block *b, const uint16_t *offsets, uint16_t n, uint8_t flags, const uint8_t *code) except *:
        """(Re)decode ``b``: its ``n`` instruction offsets, flags and bytes."""
        cdef BlockCode *c
        if b.offs != NULL:
            free(block_code(b))
        b.n = n
        b.flags = flags
        b.next = b.alt = &NO_LINK   # (links to b stay: the fast path checks what it enters)
        b.tally = b.n
        if flags & ENDS_IN_BRANCH:
            b.tally += PENDING_BRANCH + (PENDING_COND if flags & BRANCH_CONDITIONAL else 0)
        c = <BlockCode*> calloc(1, sizeof(BlockCode) + sizeof(uint16_t) * b.n + b.size)
        if c == NULL:
            b.offs = NULL
            raise MemoryError()
        b.offs = <uint16_t*> (c + 1)
        memcpy(b.offs, offsets, sizeof(uint16_t) * b.n)
        memcpy(block_bytes(b), code, b.size)

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
                # Blocks with one key may come out in another order: which one find() gives must
                # be compared again.
                self.slots[j].checked = 0
                self.slots[j].next = self.slots[j].alt = &NO_LINK
                block_code(&self.slots[j]).host = NULL
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


cdef void code_may_have_changed(UcVcpu vcpu, bint written) noexcept:
    """Something that can change the code behind a linear address happened: a store into code
    (``written``: the engine dropped translations) or a change of what linear addresses map to (a
    TLB flush, a paging mode change).  Every block is checked at its next entry."""
    vcpu.invalidations_seen = vcpu.engine_invalidations[0]
    vcpu.code_gen += 1
    if vcpu.code_gen == 0:
        vcpu.code_gen = 1       # 0 is "never checked" (BlockTable._grow)
    sync_gen_bias(vcpu)
    if written:
        vcpu.write_gen += 1


cdef inline void sync_gen_bias(UcVcpu vcpu) noexcept:
    """After code_gen or invalidations_seen moved: UcVcpu.still_current compares a block's
    generation with code_gen and the engine's count with invalidations_seen in one sum."""
    vcpu.gen_bias = vcpu.code_gen - <uint32_t> vcpu.invalidations_seen


cdef void flush_translations(UcVcpu vcpu) noexcept:
    """Make the engine translate all code again, from the bytes there now."""
    uc_ctl(vcpu.uc, ctl_write(CTL_TB_FLUSH, 0))
    forget_code_pages(vcpu)
    code_may_have_changed(vcpu, True)


cdef void drop_translations(UcVcpu vcpu, uint64_t begin, uint64_t end) noexcept:
    """Make the engine translate the code in [begin, end) again.  The translations this drops are no
    sign of changed code, so they do not count as one (others dropped before still do)."""
    cdef bint current = vcpu.engine_invalidations[0] == vcpu.invalidations_seen
    uc_ctl(vcpu.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), begin, end)
    if current:
        vcpu.invalidations_seen = vcpu.engine_invalidations[0]
        sync_gen_bias(vcpu)


cdef uint8_t* code_page(UcVcpu vcpu, uint64_t linear) noexcept:
    """Where guest RAM holds the code page at ``linear`` as the engine's own TLB says (the block being
    entered was just fetched through it), NULL if not in RAM.  Remembered until the code generation
    moves, which it does at every event that can change what a linear address maps to."""
    cdef CodePage *e = &vcpu.code_tlb[(linear >> 12) & (CODE_TLB_SIZE - 1)]
    cdef void *host = NULL
    if e.gen != vcpu.code_gen or e.page != linear >> 12:
        e.page = linear >> 12
        e.gen = vcpu.code_gen
        e.host = NULL
        if x86_code_page(vcpu.env, linear & ~<uint64_t> (PAGE_SIZE - 1), &host) != -1:
            e.host = <uint8_t*> host
    return e.host


cdef uint8_t* code_in_ram(UcVcpu vcpu, uint64_t address, uint32_t size) noexcept:
    """Where guest RAM holds the code [address, address + size) now if it lies in one page of RAM,
    else NULL."""
    cdef uint8_t *page
    if (address & (PAGE_SIZE - 1)) + size > PAGE_SIZE:
        return NULL
    page = code_page(vcpu, address)
    return page + (address & (PAGE_SIZE - 1)) if page != NULL else NULL


cdef inline void mark_current(UcVcpu vcpu, Block *b, uint8_t *host) noexcept:
    """``b`` is the code at its address now, which is in RAM at ``host`` (NULL: not, or unknown)."""
    b.checked = vcpu.code_gen
    block_code(b).written = vcpu.write_gen
    block_code(b).host = host


cdef Block* current_block(UcVcpu vcpu, Block *b, uint64_t address, uint32_t size) noexcept:
    """The decoded block for the code now at [address, address + size): ``b`` (find()'s, NULL if
    none) if it is still that code, else another decode kept for that key, else a new decode.  ``b``
    is that code if it is in the same RAM as when last compared with no store seen since, or if the
    bytes there are its bytes.  Returns NULL if the block must restart: new code hooks, or changed
    code (the engine's translation is dropped too: only a store this engine did not see, another
    vCPU's, can leave it behind the bytes) -- or if the bytes cannot be read or decoded."""
    cdef uint8_t *host = code_in_ram(vcpu, address, size)
    cdef uint8_t *code = host
    cdef Block *other
    cdef int variants = 0
    if b != NULL and host != NULL and host == block_code(b).host and block_code(b).written == vcpu.write_gen:
        b.checked = vcpu.code_gen
        return b
    if code == NULL:
        code = <uint8_t*> malloc(size)
        if code == NULL or not vcpu.read_guest(address, PROT_EXEC, code, size):
            free(code)
            if b != NULL:
                b.checked = vcpu.code_gen    # the engine runs what it translated
            return b
    try:
        if b != NULL:
            vcpu.code_checks += 1
            if memcmp(block_bytes(b), code, size) == 0:
                mark_current(vcpu, b, host)
                return b
            vcpu.code_changes += 1
            other = vcpu.blocks.variant(b, code, &variants)
            if other != NULL:
                mark_current(vcpu, vcpu.blocks.promote(other), host)
            else:
                decode_into(vcpu, address, size, code, host, b if variants >= MAX_VARIANTS else NULL)
        else:
            if not vcpu.translations_reported:
                mark_code(vcpu, address, size)      # the engine's first translation: not reported
            if not decode_into(vcpu, address, size, code, host, NULL):
                return vcpu.blocks.find(address, size)
        drop_translations(vcpu, address, address + size)
        vcpu.restart(address)       # re-translate: the code changed, or it has new code hooks
        return NULL
    finally:
        if code != host:
            free(code)


cdef bint decode_into(UcVcpu vcpu, uint64_t address, uint32_t size, const uint8_t *code, uint8_t *host,
                      Block *reuse) noexcept:
    """Decode ``code``, the block at ``address`` (in RAM at ``host``, or NULL), into ``reuse`` or else
    a new entry, which find() gives from now on; returns True if it needed new code hooks (the caller
    restarts the block)."""
    cdef bint hooked = False
    cdef uint64_t a
    cdef Block *b
    cdef BlockDecode d
    cdef int k
    try:
        decode_block_c(code, size, address, vcpu.code_bits(), &d)
        if reuse != NULL:
            b = reuse
            vcpu.blocks.fill(b, d.offsets, d.n, d.flags, code)
        else:
            b = vcpu.blocks.promote(vcpu.blocks.insert(address, size, d.offsets, d.n, d.flags, code))
        classify_loop(b, code, vcpu.code_bits())
        if b.loop_kind:
            vcpu.blocks.unlink(b)
        mark_current(vcpu, b, host)
        for k in range(d.n_hooked):         # (d's arrays stay valid: nothing here decodes)
            a = address + d.hooked[k]
            if a not in vcpu.hooked_insns:
                vcpu.hooked_insns.add(a)
                add_hook(vcpu, HOOK_CODE, <void*> _on_hooked_insn, a, a)
                hooked = True
        return hooked
    except BaseException as e:
        vcpu._fail(f"decoding the block at {address:#x}: {e!r}")
        return False
