# SPDX-License-Identifier: GPL-2.0-or-later
"""PMU behaviour that Linux's perf driver relies on, at the device level (no guest).

* BR_INST_RETIRED.CONDITIONAL (Intel event 0xC4, umask 0x01): decoded, counted from the block
  feed's conditional branches, exact overflow on the branch itself, CMASK/INV/EDGE like any event,
  the event filter, and the C core agreeing with the reference model.
* AMD PerfMonV2's STATUS_CLR: Linux 6.1 writes bits without a counter there (LbrFreeze at CPU
  reset, ~status after each PMI); they are ignored, never a #GP.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmu import ALLOW, DENY, EventFilter, PmuConfig, events
from pmu._core import PmuCore
from pmu.reference import ReferencePmu
from tests.pmu_fixtures import BRANCHES_SEL as BRANCHES
from tests.pmu_fixtures import EDGE, EN, INT, INV, OS, USR, cmask, make_pmu

COND = 0x01C4  # BR_INST_RETIRED.CONDITIONAL


def intel(**config):
    return PmuConfig(vendor="intel", **config)


def programmed(select: int, preset: int = 0, config: PmuConfig | None = None) -> PmuCore:
    core = PmuCore()
    core.configure(config or intel())
    assert core.write_msr(0x186, select)
    assert core.write_msr(0xC1, preset, True)
    return core


def counter(core: PmuCore) -> int:
    return core.read_msr(0xC1)


@pytest.mark.parametrize("vendor, eventsel, generic", [
    ("intel", COND, events.COND_BRANCHES),
    ("intel", BRANCHES, events.BRANCHES),
    ("intel", 0x02C4, events.NOTHING),  # other BR_INST_RETIRED umasks are not modelled
    ("amd", COND, events.NOTHING),  # Intel's encoding means nothing on AMD
])
def test_decode(vendor, eventsel, generic):
    assert events.decode(vendor, eventsel) == generic


def test_cpuid_cannot_hide_the_model_specific_event():
    # EBX bit 5 marks the architectural branch event unavailable; the conditional one stays.
    config = intel(events_mask=1 << 5)
    assert events.decode("intel", BRANCHES, config.unavailable_events) == events.NOTHING
    core = programmed(EN | USR | OS | COND, config=config)
    core.feed_block(3, 1, 0, 1)
    assert counter(core) == 1


def test_counts_only_conditional_branches_at_the_selected_rings():
    core = programmed(EN | USR | COND)
    core.feed_block(5, 1, 3, 1)  # ends in a Jcc: counted
    core.feed_block(5, 1, 3)  # ends in a jmp/call/ret: not
    core.feed_block(4, 0, 3)  # no branch
    core.feed_block(6, 1, 0, 1)  # kernel mode: not with USR only
    assert counter(core) == 1


def test_conditional_is_a_subset_of_branches():
    core = programmed(EN | OS | COND)
    core.feed_block(3, 0, 0, 1)  # a conditional branch that is not a branch is no branch at all
    assert counter(core) == 0


def test_overflow_lands_on_the_branch_and_requests_a_pmi():
    core = programmed(EN | OS | INT | COND, preset=(1 << 48) - 2)
    core.feed_block(7, 1, 0, 1)
    assert (counter(core), core.global_status, core.pmi_requested) == ((1 << 48) - 1, 0, False)
    core.feed_block(7, 1, 0, 1)
    assert (counter(core), core.global_status, core.pmi_requested) == (0, 1, True)


@pytest.mark.parametrize("modifiers, expected", [
    (cmask(1), 2),  # cycles with a conditional branch
    (cmask(1) | INV, 10),  # cycles without one
    (EDGE, 2),  # each conditional branch starts a new run
    (cmask(2), 0),  # never two in one cycle
])
def test_cmask_inv_edge(modifiers, expected):
    core = programmed(EN | OS | COND | modifiers)
    core.feed_block(6, 1, 0, 1)
    core.feed_block(6, 1, 0, 1)
    assert counter(core) == expected


def test_overflow_distance_of_a_cycle_counting_conditional_counter():
    # INV + CMASK counts cycles, so the hook layer must stop instruction blocks in time for it.
    core = programmed(EN | OS | COND | cmask(1) | INV, preset=(1 << 48) - 5)
    assert core.overflow_distance(events.INSTRUCTIONS, 0) == 5
    assert core.overflow_distance(events.COND_BRANCHES, 0) == 2**64 - 1  # its own event never brings it closer


@pytest.mark.parametrize("action, listed, counts", [(ALLOW, [COND], 1), (ALLOW, [BRANCHES], 0),
                                                    (DENY, [COND], 0), (DENY, [BRANCHES], 1)])
def test_event_filter_matches_the_umask(action, listed, counts):
    pmu, _, _ = make_pmu()
    pmu.set_event_filter(EventFilter(action, listed))
    assert pmu.core.write_msr(0x186, EN | OS | COND)
    pmu.feed_block(4, 1, cpl=0, conditional=1)
    assert pmu.core.read_msr(0xC1) == counts


@settings(max_examples=150, deadline=None)
@given(select=st.sampled_from([COND, BRANCHES, 0xC0]), modifiers=st.sampled_from([0, cmask(1), cmask(1) | INV, EDGE,
                                                                                   EDGE | cmask(1) | INV]),
       blocks=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 2), st.integers(0, 2), st.sampled_from([0, 3])),
                       max_size=12))
def test_core_agrees_with_the_reference_model(select, modifiers, blocks):
    config = intel(gp_counters=2, gp_width=32)
    core, reference = PmuCore(), ReferencePmu(config)
    core.configure(config)
    for model in (core, reference):
        model.write_msr(0x186, EN | OS | USR | INT | select | modifiers, False)
        model.write_msr(0xC1, (1 << 32) - 3, True)
    for insns, branches, conditional, cpl in blocks:
        core.feed_block(insns, branches, cpl, conditional)
        reference.feed_block(insns, branches, cpl, conditional)
    assert core.read_msr(0xC1) == reference.read_msr(0xC1)
    assert core.global_status == reference.global_status


def test_amd_status_clear_ignores_bits_without_a_counter():
    for model in (PmuCore(), ReferencePmu(PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True))):
        if isinstance(model, PmuCore):
            model.configure(PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True))
        assert model.write_msr(0xC0000303, 0x21, False)  # STATUS_SET: counters 0 and 5
        assert model.write_msr(0xC0000302, 1 << 58 | 0x3F, False)  # Linux's reset: LbrFreeze | counters
        assert model.read_msr(0xC0000300, False) == 0
        assert model.write_msr(0xC0000302, 2**64 - 1, False)  # Linux's ack after a PMI: ~0
        assert not model.write_msr(0xC0000303, 1 << 58, False)  # STATUS_SET still refuses them


def test_intel_overflow_clear_still_refuses_reserved_bits():
    core = programmed(0)
    assert not core.write_msr(0x390, 1 << 40)
