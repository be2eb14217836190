# SPDX-License-Identifier: GPL-2.0-or-later
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""Deterministic micro-architecture models behind the LLC and branch-miss PMU events.

Both models are plain C state (arrays allocated once in ``__cinit__``) driven by the vCPU hook
layer through the C methods declared in _uarch.pxd, which touch no Python object and run
without the GIL.  Their state depends only on the sequence of calls, never on time or host
state, so the same guest run gives the same counts.  The ``*_py`` methods, ``reset()`` and
``geometry`` exist for tests and tools.

CacheModel: an L1 data cache in front of a last-level cache
===========================================================

Geometry (constructor defaults): 64-byte lines for both levels;

* L1D: 32 KiB, 8-way set associative, 64 sets;
* LLC: 2 MiB, 16-way set associative, 2048 sets.

The set of a line is ``line & (sets - 1)`` with ``line = address >> 6``; whole line numbers are
stored.  Replacement in every set is true LRU: a set keeps its entries in recency order, a hit
moves its line to the front, and a fill inserts at the front and drops the last entry (an
invalid way if the set has one, since invalid ways are kept last, else the least recently used
line).  The levels are non-inclusive: every L1D miss fills both levels, and an LLC eviction
leaves the L1D alone.  Writes are treated like reads (write-allocate); dirtiness and
write-backs are not modelled.

``access(address, size)`` looks up every line the bytes ``[address, address + size)`` touch (a
line-crossing access is two lookups, as a split load is on hardware; size 0 touches nothing).
A lookup that hits the L1D is not counted.  An L1D miss is an **LLC reference**; an LLC
reference that also misses the LLC is an **LLC miss**.  Without the L1D every access would be
an LLC reference, and a loop that keeps touching the same few lines would report as many LLC
references as loads, which no real part does; with it, LLC references are the core's requests
that reach the LLC, which is what the architectural event (0x2E, 0x4F) counts.

Next-line prefetcher.  A tagged next-line prefetcher fetches into the LLC: an LLC miss, or the
first demand hit on a line the prefetcher brought in, prefetches the following line unless that
line is already in the LLC or lies in the next 4 KiB page (like the hardware prefetchers, it
does not cross a page, since the next page need not be contiguous).  A prefetched line is
inserted as most recently used and marked; the mark is cleared by its first demand use.  Its
fill is neither an LLC reference nor an LLC miss: the SDM lets both architectural LLC events
exclude fills by prefetchers other than the L1D's, and this one stands for those (the L2
streamer).  Why model it at all: with LRU and no prefetcher, every line a streaming loop
reaches is an LLC miss and the stream evicts everything else, so the reference loop the PMU
tests measure (N loads with stride 64 over a fresh buffer, then ``call; pop`` on the stack)
touches N + 1 cold lines and gives N + 1 LLC misses, above the accepted maximum of N.  With the
prefetcher a stream misses once per 4 KiB page: that loop gives N + 1 LLC references and
N/64 + 1 LLC misses.  Run again over a buffer that stayed in the LLC it misses only where the
loop flushed a line first (the CLFLUSH the tests issue so that the miss count is at least 1).
``CacheModel(next_line_prefetch=False)`` turns it off.

``flush_line(address)`` (CLFLUSH) removes the line from both levels; ``invalidate()`` (WBINVD,
INVD) empties both.  Neither counts anything nor clears the counters; ``reset()`` does both.

Not modelled: L2, instruction fetches (the hook layer feeds data accesses only), the TLB,
address spaces (the caller passes physical or virtual addresses, whichever it has; with
virtual addresses two address spaces that use the same address share lines), other bus
masters (DMA) and other CPUs, memory types (UC/WC accesses are cached like WB ones),
non-temporal hints, software PREFETCH instructions, and any timing.

BranchPredictor: direction, indirect-target and return predictors
=================================================================

Conditional branches: gshare.  A pattern table of 4096 (constructor default; a power of two)
2-bit saturating counters is indexed by ``(branch_address ^ history) & (entries - 1)``, where
``history`` holds the outcomes of the latest log2(entries) conditional branches (newest in bit
0, 1 = taken).  A counter of 2 or 3 predicts taken.  The branch mispredicts when the prediction
differs from the outcome; then the counter steps toward the outcome (saturating at 0 and 3) and
the outcome is shifted into the history.  Initial state: every counter 2 (weakly taken),
history 0.  A loop branch taken N - 1 times and then not taken mispredicts once, at the exit;
a strictly alternating branch mispredicts only while its history warms up.

Indirect branches (JMP/CALL through a register or memory): a direct-mapped branch target
buffer of 1024 entries (constructor default; a power of two), indexed by
``branch_address & (entries - 1)`` and tagged with the full branch address.  The prediction is
the target the entry last recorded for that branch; a branch with no entry (never seen, or
displaced by another branch with the same index) mispredicts.  Every execution records its
target.  A branch with one stable target mispredicts once.

Returns: a return stack buffer of 16 entries (constructor default; a power of two).  ``call``
pushes the return address; when the buffer is full the oldest entry is overwritten.  ``ret``
pops the newest entry and mispredicts if it differs from the actual target, or if the buffer
is empty (returns deeper than 16 frames, or a RET without its CALL).

Direct JMP and direct CALL never mispredict: their target is in the instruction, so no call
exists for them (a direct CALL still calls ``call`` to push its return address).  ``flush()``
(IBPB) restores the initial state of all three structures; ``mispredicts`` keeps counting.

Not modelled: a loop predictor, path history or TAGE-style tables, history-indexed indirect
prediction, the BTB's role in predicting that a direct branch exists (fetch redirections),
RSB underflow falling back to the BTB, speculation and any timing, and SMT sharing.
"""

from libc.stdint cimport uint8_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

cdef extern from *:
    """
    #define UARCH_MAX_WAYS 64
    #define UARCH_LINE_SHIFT 6
    #define UARCH_LINE_SIZE (1 << UARCH_LINE_SHIFT)
    #define UARCH_LINES_PER_PAGE (4096 / UARCH_LINE_SIZE)
    #define UARCH_LINE_NUMBER_MASK (UINT64_MAX >> UARCH_LINE_SHIFT)
    #define UARCH_PREFETCHED (UINT64_C(1) << 62)
    #define UARCH_NO_LINE UINT64_MAX
    #define UARCH_WEAKLY_TAKEN 2
    """
    const int MAX_WAYS "UARCH_MAX_WAYS"                       # a set is scanned and shifted per access
    const int LINE_SHIFT "UARCH_LINE_SHIFT"                   # 64-byte lines
    const int LINE_SIZE "UARCH_LINE_SIZE"
    const int LINES_PER_PAGE "UARCH_LINES_PER_PAGE"           # the prefetcher stays inside a 4 KiB page
    const uint64_t LINE_NUMBER_MASK "UARCH_LINE_NUMBER_MASK"  # line numbers have 64 - 6 bits
    const uint64_t PREFETCHED "UARCH_PREFETCHED"              # entry flag: prefetched, not yet used
    const uint64_t NO_LINE "UARCH_NO_LINE"                    # an invalid way (matches no line)
    const uint8_t WEAKLY_TAKEN "UARCH_WEAKLY_TAKEN"           # initial pattern-table counter


# ---------------------------------------------------------------------------------------
# One set-associative level with true LRU: each set lists its entries in recency order.

cdef int level_init(CacheLevel *level, uint64_t size, uint32_t ways) except -1:
    if ways == 0 or ways > MAX_WAYS:
        raise ValueError(f"a cache has 1 to {MAX_WAYS} ways, not {ways}")
    if size == 0 or size % (<uint64_t> ways * LINE_SIZE):
        raise ValueError(f"a {size}-byte cache cannot have {ways} ways of {LINE_SIZE}-byte lines")
    cdef uint64_t sets = size // (<uint64_t> ways * LINE_SIZE)
    if sets & (sets - 1):
        raise ValueError(f"a {size}-byte {ways}-way cache would have {sets} sets, not a power of two")
    level.set_mask = sets - 1
    level.ways = ways
    level.entry = <uint64_t *> malloc(sets * ways * sizeof(uint64_t))
    if level.entry == NULL:
        raise MemoryError()
    level_clear(level)
    return 0


cdef inline uint64_t level_entries(const CacheLevel *level) noexcept nogil:
    return (level.set_mask + 1) * level.ways


cdef void level_clear(CacheLevel *level) noexcept nogil:
    memset(level.entry, 0xFF, level_entries(level) * sizeof(uint64_t))   # every entry NO_LINE


cdef inline uint64_t *set_of(const CacheLevel *level, uint64_t line) noexcept nogil:
    return level.entry + (line & level.set_mask) * level.ways


cdef inline int find(const uint64_t *entries, uint32_t ways, uint64_t line) noexcept nogil:
    """The position of ``line`` in a set (0 = most recently used), or -1."""
    cdef int position
    for position in range(<int> ways):
        if (entries[position] & ~PREFETCHED) == line:
            return position
    return -1


cdef inline void move_to_front(uint64_t *entries, int position, uint64_t entry) noexcept nogil:
    """Drop the entry at ``position`` and put ``entry`` first: a hit, or (position = ways - 1) a
    fill that evicts the least recently used line or takes an invalid way."""
    cdef int i
    for i in range(position, 0, -1):
        entries[i] = entries[i - 1]
    entries[0] = entry


cdef inline void evict(uint64_t *entries, uint32_t ways, uint64_t line) noexcept nogil:
    """Remove ``line`` from its set if present; the freed way goes last, as invalid."""
    cdef int position = find(entries, ways, line)
    cdef int i
    if position < 0:
        return
    for i in range(position, <int> ways - 1):
        entries[i] = entries[i + 1]
    entries[ways - 1] = NO_LINE


cdef dict level_geometry(const CacheLevel *level):
    return {
        "size": level_entries(level) * LINE_SIZE,
        "ways": level.ways,
        "sets": level.set_mask + 1,
    }


cdef class CacheModel:
    """L1D + LLC with true LRU and a page-bounded next-line prefetcher (see the module doc)."""

    def __cinit__(self, uint64_t llc_size=2 << 20, uint32_t llc_ways=16,
                  uint64_t l1d_size=32 << 10, uint32_t l1d_ways=8, bint next_line_prefetch=True):
        level_init(&self.l1d, l1d_size, l1d_ways)
        level_init(&self.llc, llc_size, llc_ways)
        self.next_line_prefetch = next_line_prefetch

    def __dealloc__(self):
        free(self.l1d.entry)
        free(self.llc.entry)

    # -- the C API --

    cdef void access(self, uint64_t address, uint32_t size) noexcept nogil:
        """A data access to the bytes [address, address + size): one lookup per line touched."""
        cdef uint64_t first = address >> LINE_SHIFT
        cdef uint64_t lines = ((address & (LINE_SIZE - 1)) + size + LINE_SIZE - 1) >> LINE_SHIFT
        cdef uint64_t i
        if size == 0:
            return
        for i in range(lines):
            self.access_line((first + i) & LINE_NUMBER_MASK)

    cdef void flush_line(self, uint64_t address) noexcept nogil:
        """CLFLUSH: the line holding ``address`` leaves both levels."""
        cdef uint64_t line = address >> LINE_SHIFT
        evict(set_of(&self.l1d, line), self.l1d.ways, line)
        evict(set_of(&self.llc, line), self.llc.ways, line)

    cdef void invalidate(self) noexcept nogil:
        """WBINVD / INVD: both levels become empty; the counters are kept."""
        level_clear(&self.l1d)
        level_clear(&self.llc)

    # -- internals --

    cdef void access_line(self, uint64_t line) noexcept nogil:
        cdef uint64_t *entries = set_of(&self.l1d, line)
        cdef int position = find(entries, self.l1d.ways, line)
        cdef bint prefetch_next
        if position >= 0:
            move_to_front(entries, position, line)
            return
        move_to_front(entries, self.l1d.ways - 1, line)
        self.references += 1
        entries = set_of(&self.llc, line)
        position = find(entries, self.llc.ways, line)
        if position >= 0:
            prefetch_next = (entries[position] & PREFETCHED) != 0
        else:
            self.misses += 1
            prefetch_next = True
            position = self.llc.ways - 1
        move_to_front(entries, position, line)
        if prefetch_next and self.next_line_prefetch and (line + 1) % LINES_PER_PAGE:
            self.prefetch_line(line + 1)

    cdef void prefetch_line(self, uint64_t line) noexcept nogil:
        cdef uint64_t *entries = set_of(&self.llc, line)
        if find(entries, self.llc.ways, line) < 0:
            move_to_front(entries, self.llc.ways - 1, line | PREFETCHED)

    # -- Python wrappers (tests, tools) --

    def access_py(self, uint64_t address, uint32_t size):
        self.access(address, size)

    def flush_line_py(self, uint64_t address):
        self.flush_line(address)

    def invalidate_py(self):
        self.invalidate()

    def reset(self):
        """Empty both levels and zero the counters: the state of a new model."""
        self.invalidate()
        self.references = 0
        self.misses = 0

    @property
    def geometry(self):
        return {
            "line_size": LINE_SIZE,
            "l1d": level_geometry(&self.l1d),
            "llc": level_geometry(&self.llc),
            "next_line_prefetch": self.next_line_prefetch,
        }


# ---------------------------------------------------------------------------------------
# The branch predictor.

cdef int check_power_of_two(str what, uint32_t value) except -1:
    if value == 0 or value & (value - 1):
        raise ValueError(f"{what} must be a power of two, not {value}")
    return 0


cdef class BranchPredictor:
    """gshare direction predictor, direct-mapped BTB and return stack buffer (see the module doc)."""

    def __cinit__(self, uint32_t pattern_entries=4096, uint32_t btb_entries=1024, uint32_t rsb_depth=16):
        check_power_of_two("pattern_entries", pattern_entries)
        check_power_of_two("btb_entries", btb_entries)
        check_power_of_two("rsb_depth", rsb_depth)
        self.pattern_table = <uint8_t *> calloc(pattern_entries, sizeof(uint8_t))
        self.btb_valid = <uint8_t *> calloc(btb_entries, sizeof(uint8_t))
        self.btb_branch = <uint64_t *> calloc(btb_entries, sizeof(uint64_t))
        self.btb_target = <uint64_t *> calloc(btb_entries, sizeof(uint64_t))
        self.rsb = <uint64_t *> calloc(rsb_depth, sizeof(uint64_t))
        if (self.pattern_table == NULL or self.btb_valid == NULL or self.btb_branch == NULL
                or self.btb_target == NULL or self.rsb == NULL):
            raise MemoryError()
        self.pattern_mask = pattern_entries - 1
        self.btb_mask = btb_entries - 1
        self.rsb_mask = rsb_depth - 1
        self.flush()

    def __dealloc__(self):
        free(self.pattern_table)
        free(self.btb_valid)
        free(self.btb_branch)
        free(self.btb_target)
        free(self.rsb)

    # -- the C API --

    cdef bint conditional(self, uint64_t branch_address, bint taken) noexcept nogil:
        """A conditional branch resolved as ``taken``; True if it was mispredicted."""
        cdef uint32_t index = (<uint32_t> branch_address ^ self.history) & self.pattern_mask
        cdef uint8_t counter = self.pattern_table[index]
        cdef bint outcome = taken != 0
        cdef bint mispredicted = (counter >= WEAKLY_TAKEN) != outcome
        if outcome:
            if counter < 3:
                self.pattern_table[index] = counter + 1
        elif counter > 0:
            self.pattern_table[index] = counter - 1
        self.history = ((self.history << 1) | outcome) & self.pattern_mask
        self.mispredicts += mispredicted
        return mispredicted

    cdef bint indirect(self, uint64_t branch_address, uint64_t target) noexcept nogil:
        """An indirect JMP/CALL at ``branch_address`` went to ``target``; True if mispredicted."""
        cdef uint32_t entry = <uint32_t> branch_address & self.btb_mask
        cdef bint mispredicted = not (self.btb_valid[entry] and self.btb_branch[entry] == branch_address
                                      and self.btb_target[entry] == target)
        self.btb_valid[entry] = 1
        self.btb_branch[entry] = branch_address
        self.btb_target[entry] = target
        self.mispredicts += mispredicted
        return mispredicted

    cdef void call(self, uint64_t return_address) noexcept nogil:
        """Any CALL: push its return address (the oldest entry goes when the buffer is full)."""
        self.rsb_top = (self.rsb_top + 1) & self.rsb_mask
        self.rsb[self.rsb_top] = return_address
        if self.rsb_count <= self.rsb_mask:
            self.rsb_count += 1

    cdef bint ret(self, uint64_t target) noexcept nogil:
        """A RET that went to ``target``; True if mispredicted (also when the buffer is empty)."""
        cdef bint mispredicted = True
        if self.rsb_count:
            mispredicted = self.rsb[self.rsb_top] != target
            self.rsb_top = (self.rsb_top - 1) & self.rsb_mask
            self.rsb_count -= 1
        self.mispredicts += mispredicted
        return mispredicted

    cdef void flush(self) noexcept nogil:
        """IBPB: every structure back to its initial state; ``mispredicts`` is kept."""
        memset(self.pattern_table, WEAKLY_TAKEN, self.pattern_mask + 1)
        self.history = 0
        memset(self.btb_valid, 0, self.btb_mask + 1)
        memset(self.btb_branch, 0, (self.btb_mask + 1) * sizeof(uint64_t))
        memset(self.btb_target, 0, (self.btb_mask + 1) * sizeof(uint64_t))
        memset(self.rsb, 0, (self.rsb_mask + 1) * sizeof(uint64_t))
        self.rsb_top = 0
        self.rsb_count = 0

    # -- Python wrappers (tests, tools) --

    def conditional_py(self, uint64_t branch_address, bint taken):
        return self.conditional(branch_address, taken)

    def indirect_py(self, uint64_t branch_address, uint64_t target):
        return self.indirect(branch_address, target)

    def call_py(self, uint64_t return_address):
        self.call(return_address)

    def ret_py(self, uint64_t target):
        return self.ret(target)

    def flush_py(self):
        self.flush()

    def reset(self):
        """Initial predictor state and a zero ``mispredicts``: the state of a new predictor."""
        self.flush()
        self.mispredicts = 0

    @property
    def geometry(self):
        return {
            "pattern_entries": self.pattern_mask + 1,
            "history_bits": (self.pattern_mask + 1).bit_length() - 1,
            "btb_entries": self.btb_mask + 1,
            "rsb_depth": self.rsb_mask + 1,
        }
