# SPDX-License-Identifier: GPL-2.0-or-later
"""The micro-architecture models: cache geometry, LRU, prefetching, flushes, the branch predictor,
and the counts both give for the reference loop of the PMU tests."""

import random

import pytest

from vmm._uarch import BranchPredictor, CacheModel

LINE = 64
PAGE = 4096
L1D_SET_STRIDE = 64 * LINE            # addresses this far apart share an L1D set
LLC_SET_STRIDE = 2048 * LINE          # ... an LLC set (and so an L1D set too)
BUFFER = 0x4000000                    # page aligned, far from the stack
STACK_TOP = 0x9F000


def counts(cache):
    return cache.references, cache.misses


# ---------------------------------------------------------------------------------------
# CacheModel


def test_default_geometry():
    assert CacheModel().geometry == {
        "line_size": 64,
        "l1d": {"size": 32 << 10, "ways": 8, "sets": 64},
        "llc": {"size": 2 << 20, "ways": 16, "sets": 2048},
        "next_line_prefetch": True,
    }


@pytest.mark.parametrize("kwargs", [
    {"llc_size": 3 << 20},               # 3072 sets
    {"llc_ways": 0},
    {"llc_ways": 128, "llc_size": 128 * 64},
    {"l1d_size": 1000},                  # not a whole number of lines per way
])
def test_geometry_must_give_a_power_of_two_sets(kwargs):
    with pytest.raises(ValueError):
        CacheModel(**kwargs)


def test_l1d_hits_are_not_llc_references():
    cache = CacheModel()
    for _ in range(100):
        cache.access_py(0x1234, 8)
    assert counts(cache) == (1, 1)


def test_llc_set_evicts_its_least_recently_used_line():
    cache = CacheModel(next_line_prefetch=False)
    lines = [k * LLC_SET_STRIDE for k in range(18)]   # one LLC set, one L1D set
    for address in lines[:16]:
        cache.access_py(address, 8)
    assert counts(cache) == (16, 16)
    cache.access_py(lines[0], 8)          # out of the 8-way L1D, still in the LLC: now its MRU
    assert counts(cache) == (17, 16)
    cache.access_py(lines[16], 8)         # a 17th line evicts the LRU one, lines[1]
    assert counts(cache) == (18, 17)
    cache.access_py(lines[1], 8)          # gone: a miss, which evicts lines[2]
    assert counts(cache) == (19, 18)
    cache.access_py(lines[3], 8)          # still there
    assert counts(cache) == (20, 18)
    cache.access_py(lines[2], 8)
    assert counts(cache) == (21, 19)


def test_l1d_set_evicts_its_least_recently_used_line():
    cache = CacheModel(next_line_prefetch=False)
    lines = [k * L1D_SET_STRIDE for k in range(9)]    # one L1D set, nine LLC sets
    for address in lines[:8]:
        cache.access_py(address, 8)
    cache.access_py(lines[0], 8)          # L1D hit: lines[1] becomes the LRU line
    assert counts(cache) == (8, 8)
    cache.access_py(lines[8], 8)
    assert counts(cache) == (9, 9)
    cache.access_py(lines[0], 8)
    assert counts(cache) == (9, 9)
    cache.access_py(lines[1], 8)          # evicted from the L1D only: an LLC hit
    assert counts(cache) == (10, 9)


def test_line_crossing_access_touches_both_lines():
    cache = CacheModel(next_line_prefetch=False)
    cache.access_py(0x1000 + 60, 8)
    assert counts(cache) == (2, 2)
    cache.access_py(0x1000, 1)
    cache.access_py(0x1000 + LINE, 1)
    assert counts(cache) == (2, 2)


def test_access_of_many_lines_and_at_the_top_of_the_address_space():
    cache = CacheModel(next_line_prefetch=False)
    cache.access_py(0x2000 + 1, 3 * LINE)                # four lines
    assert counts(cache) == (4, 4)
    cache.access_py(2**64 - 4, 8)                        # the last line, then line 0
    assert counts(cache) == (6, 6)
    cache.access_py(0, 1)
    assert counts(cache) == (6, 6)


def test_size_zero_touches_nothing():
    cache = CacheModel()
    cache.access_py(0x1000, 0)
    assert counts(cache) == (0, 0)


def test_flush_line_makes_the_next_access_miss():
    cache = CacheModel()
    cache.access_py(0x5000, 8)
    cache.access_py(0x5000, 8)
    assert counts(cache) == (1, 1)
    cache.flush_line_py(0x5000 + 17)      # any byte of the line
    cache.access_py(0x5000, 8)
    assert counts(cache) == (2, 2)
    cache.flush_line_py(0x9000)           # absent: nothing happens
    cache.access_py(0x5000, 8)
    assert counts(cache) == (2, 2)


def test_flushed_way_is_refilled_before_any_line_is_evicted():
    cache = CacheModel(next_line_prefetch=False)
    lines = [k * LLC_SET_STRIDE for k in range(17)]
    for address in lines[:16]:
        cache.access_py(address, 8)
    cache.flush_line_py(lines[5])
    cache.access_py(lines[16], 8)         # takes the freed way
    before = counts(cache)
    for address in lines[:5] + lines[6:16]:
        cache.access_py(address, 8)
    assert counts(cache) == (before[0] + 15, before[1])       # all L1D misses, all LLC hits


def test_invalidate_empties_both_levels_and_keeps_the_counters():
    cache = CacheModel()
    for k in range(3):
        cache.access_py(k * PAGE, 8)
    cache.invalidate_py()
    assert counts(cache) == (3, 3)
    for k in range(3):
        cache.access_py(k * PAGE, 8)
    assert counts(cache) == (6, 6)


def test_reset_gives_a_new_model():
    cache = CacheModel()
    cache.access_py(0x1000, 8)
    cache.reset()
    assert counts(cache) == (0, 0)
    cache.access_py(0x1000, 8)
    assert counts(cache) == (1, 1)


def test_prefetcher_streams_within_a_page():
    cache = CacheModel()
    for address in range(BUFFER, BUFFER + 2 * PAGE, LINE):
        cache.access_py(address, 8)
    assert counts(cache) == (128, 2)      # one miss per page


def test_prefetcher_off_misses_every_new_line():
    cache = CacheModel(next_line_prefetch=False)
    for address in range(BUFFER, BUFFER + 2 * PAGE, LINE):
        cache.access_py(address, 8)
    assert counts(cache) == (128, 128)


def test_prefetcher_does_not_cross_a_page():
    cache = CacheModel()
    cache.access_py(BUFFER + PAGE - 4, 8)     # last line of one page, first of the next
    assert counts(cache) == (2, 2)
    cache.access_py(BUFFER + 2 * PAGE + 60, 8)   # inside a page: the second line was prefetched
    assert counts(cache) == (4, 3)


def test_prefetch_is_triggered_once_per_prefetched_line():
    cache = CacheModel()
    cache.access_py(BUFFER, 8)                # miss: prefetches line 1
    cache.flush_line_py(BUFFER)
    cache.access_py(BUFFER, 8)                # miss again: line 1 is already in the LLC
    cache.access_py(BUFFER + LINE, 8)         # first use of line 1: prefetches line 2
    cache.access_py(BUFFER + 2 * LINE, 8)
    assert counts(cache) == (4, 2)


def reference_loop(cache, n, clflush):
    """The data accesses of the measured sequence: [CLFLUSH buf;] N x `mov (buf),reg; add $64,buf`,
    then `call 1f; 1: pop` on a stack line that was in use before.  Returns the counts it adds."""
    before = counts(cache)
    if clflush:
        cache.flush_line_py(BUFFER)
    for i in range(n):
        cache.access_py(BUFFER + i * LINE, 8)
    cache.access_py(STACK_TOP - 8, 8)         # the CALL's push
    cache.access_py(STACK_TOP - 8, 8)         # the POP
    return cache.references - before[0], cache.misses - before[1]


@pytest.mark.parametrize("n, expected", [
    (1_000_000, (1_000_001, 15_626)),   # one miss per page, and the push: the stream evicted the stack
    (1000, (1001, 16)),                 # the stack line stays in the LLC
])
@pytest.mark.parametrize("clflush", [False, True])
def test_reference_loop_counts_are_in_the_accepted_ranges(n, expected, clflush):
    cache = CacheModel()
    cache.access_py(STACK_TOP - 8, 8)         # the stack is warm before the window opens
    references, misses = reference_loop(cache, n, clflush)
    assert (references, misses) == expected
    assert 1 <= references <= 2.5 * n
    assert 1 <= misses <= n

    references, misses = reference_loop(cache, n, clflush)   # again, over what stayed cached
    assert references <= 2.5 * n
    assert misses <= n
    if clflush:
        assert references >= 1 and misses >= 1


def test_reference_loop_without_the_prefetcher_exceeds_the_miss_bound():
    n = 1_000_000
    cache = CacheModel(next_line_prefetch=False)
    cache.access_py(STACK_TOP - 8, 8)
    assert reference_loop(cache, n, clflush=True) == (n + 1, n + 1)   # why the prefetcher is modelled


def test_cache_is_deterministic():
    rng = random.Random(1234)
    ops = [(rng.randrange(4), rng.randrange(1 << 24), rng.choice([1, 2, 4, 8, 16])) for _ in range(20000)]
    results = []
    for _ in range(2):
        cache = CacheModel()
        trace = []
        for kind, address, size in ops:
            if kind == 0:
                cache.flush_line_py(address)
            else:
                cache.access_py(address, size)
            trace.append(counts(cache))
        results.append(trace)
    assert results[0] == results[1]
    assert results[0][-1][1] > 0


# ---------------------------------------------------------------------------------------
# BranchPredictor

LOOP_BRANCH = 0x401234


def test_default_predictor_geometry():
    assert BranchPredictor().geometry == {
        "pattern_entries": 4096, "history_bits": 12, "btb_entries": 1024, "rsb_depth": 16,
    }


@pytest.mark.parametrize("kwargs", [{"pattern_entries": 3000}, {"btb_entries": 0}, {"rsb_depth": 12}])
def test_predictor_sizes_must_be_powers_of_two(kwargs):
    with pytest.raises(ValueError):
        BranchPredictor(**kwargs)


def run_loop_branch(predictor, n):
    before = predictor.mispredicts
    for i in range(n):
        predictor.conditional_py(LOOP_BRANCH, i < n - 1)
    return predictor.mispredicts - before


@pytest.mark.parametrize("n", [10, 1000, 1_000_000])
def test_loop_branch_mispredicts_only_at_the_exit(n):
    predictor = BranchPredictor()
    assert run_loop_branch(predictor, n) == 1
    assert run_loop_branch(predictor, n) == 1     # warm, no IBPB
    predictor.flush_py()
    assert run_loop_branch(predictor, n) == 1     # after IBPB


@pytest.mark.parametrize("n", [100, 1_000_000])
def test_reference_loop_branch_misses_are_in_the_accepted_range(n):
    predictor = BranchPredictor()
    predictor.flush_py()                                  # IBPB before the window
    before = predictor.mispredicts
    for i in range(n):
        predictor.conditional_py(LOOP_BRANCH, i < n - 1)  # LOOP 1b
    predictor.call_py(LOOP_BRANCH + 7)                    # call 1f: direct, pushes the RSB only
    predictor.indirect_py(LOOP_BRANCH + 12, 0x400100)     # jmp *%rax, first time seen
    misses = predictor.mispredicts - before
    assert misses == 2
    assert 1 <= misses <= 0.1 * n


def test_alternating_branch_is_learned():
    predictor = BranchPredictor()
    outcomes = [predictor.conditional_py(LOOP_BRANCH, i % 2 == 0) for i in range(2000)]
    assert sum(outcomes) <= 12
    assert not any(outcomes[100:])


def test_period_three_pattern_is_learned():
    predictor = BranchPredictor()
    outcomes = [predictor.conditional_py(LOOP_BRANCH, i % 3 != 2) for i in range(3000)]
    assert not any(outcomes[100:])


def test_strongly_trained_branch_needs_two_flips_to_change_its_prediction():
    predictor = BranchPredictor(pattern_entries=1)    # one counter, no history: bimodal
    assert predictor.conditional_py(LOOP_BRANCH, True) is False
    assert predictor.conditional_py(LOOP_BRANCH, True) is False    # counter saturates at 3
    assert predictor.conditional_py(LOOP_BRANCH, False) is True    # 3 -> 2, still predicts taken
    assert predictor.conditional_py(LOOP_BRANCH, False) is True    # 2 -> 1
    assert predictor.conditional_py(LOOP_BRANCH, False) is False
    assert predictor.mispredicts == 2


def test_btb_learns_a_stable_target():
    predictor = BranchPredictor()
    results = [predictor.indirect_py(0x402000, 0x403000) for _ in range(100)]
    assert results == [True] + [False] * 99
    assert predictor.indirect_py(0x402000, 0x404000) is True       # target changed
    assert predictor.indirect_py(0x402000, 0x404000) is False
    assert predictor.mispredicts == 2


def test_btb_entries_alias_by_low_address_bits():
    predictor = BranchPredictor(btb_entries=1024)
    for _ in range(10):
        assert predictor.indirect_py(0x402000, 0x403000) is True
        assert predictor.indirect_py(0x402000 + 1024, 0x403000) is True
    other = BranchPredictor(btb_entries=1024)
    for _ in range(10):
        other.indirect_py(0x402000, 0x403000)
        other.indirect_py(0x402001, 0x403000)
    assert other.mispredicts == 2


def test_rsb_predicts_matched_calls_and_returns():
    predictor = BranchPredictor()
    returns = [0x500000 + 5 * k for k in range(16)]
    for address in returns:
        predictor.call_py(address)
    assert [predictor.ret_py(address) for address in reversed(returns)] == [False] * 16
    assert predictor.mispredicts == 0


def test_rsb_overflow_loses_the_oldest_return():
    predictor = BranchPredictor()
    returns = [0x500000 + 5 * k for k in range(17)]
    for address in returns:
        predictor.call_py(address)
    results = [predictor.ret_py(address) for address in reversed(returns)]
    assert results == [False] * 16 + [True]        # the buffer is empty at the outermost RET


def test_rsb_mispredicts_an_unmatched_return():
    predictor = BranchPredictor()
    assert predictor.ret_py(0x500000) is True      # empty
    predictor.call_py(0x500000)
    assert predictor.ret_py(0x600000) is True      # went elsewhere (e.g. a longjmp)
    assert predictor.mispredicts == 2


def train(predictor):
    for i in range(50):
        predictor.conditional_py(LOOP_BRANCH, False)
        predictor.indirect_py(0x402000, 0x403000 + (i & 1))
    predictor.call_py(0x500000)


def probe(predictor):
    return [
        predictor.conditional_py(LOOP_BRANCH, True),
        predictor.indirect_py(0x402000, 0x403001),
        predictor.ret_py(0x500000),
    ]


def test_flush_restores_the_initial_state():
    fresh = BranchPredictor()
    expected = probe(fresh)
    assert expected == [False, True, True]
    predictor = BranchPredictor()
    train(predictor)
    predictor.flush_py()
    kept = predictor.mispredicts
    assert probe(predictor) == expected
    assert predictor.mispredicts == kept + sum(expected)
    predictor.reset()
    assert predictor.mispredicts == 0


def test_trained_state_differs_from_the_initial_one():
    predictor = BranchPredictor()
    train(predictor)
    assert probe(predictor) != probe(BranchPredictor())


def test_predictor_is_deterministic():
    rng = random.Random(99)
    ops = [(rng.randrange(4), 0x400000 + rng.randrange(1 << 16), rng.randrange(2)) for _ in range(50000)]
    traces = []
    for _ in range(2):
        predictor = BranchPredictor()
        trace = []
        for kind, address, bit in ops:
            if kind == 0:
                trace.append(predictor.conditional_py(address, bit))
            elif kind == 1:
                trace.append(predictor.indirect_py(address, 0x700000 + bit))
            elif kind == 2:
                predictor.call_py(address)
            else:
                trace.append(predictor.ret_py(address))
        traces.append((trace, predictor.mispredicts))
    assert traces[0] == traces[1]
    assert 0 < traces[0][1] < len(ops)
