# SPDX-License-Identifier: GPL-2.0-or-later
"""The event filter: validation, plain and masked matching, fixed counters, gating, explain."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmu import ALLOW, DENY, MASKED_EVENTS, EventFilter, PmuConfig, PmuFilterError, PmuFilterTooBigError, events
from tests.pmu_fixtures import BRANCHES_SEL, EN, INSTRUCTIONS_SEL, OS, make_pmu


def masked(sel, match, mask, exclude=False):
    return (sel & 0xFF) | ((sel >> 8) << 32) | match << 8 | mask << 56 | (1 << 55 if exclude else 0)


def test_bad_action_and_flags_are_invalid_arguments():
    with pytest.raises(PmuFilterError, match="invalid argument"):
        EventFilter(action=2)
    with pytest.raises(PmuFilterError, match="invalid argument"):
        EventFilter(flags=2)
    assert not issubclass(PmuFilterError, PmuFilterTooBigError)
    assert issubclass(PmuFilterError, ValueError)


def test_too_many_events_is_too_big():
    EventFilter(ALLOW, [0xC0] * 300)
    with pytest.raises(PmuFilterTooBigError, match="too big"):
        EventFilter(ALLOW, [0xC0] * 301)


def test_masked_entry_with_reserved_bits_is_invalid():
    with pytest.raises(PmuFilterError):
        EventFilter(ALLOW, [1 << 40], flags=MASKED_EVENTS)


def test_plain_allow_and_deny_match_event_select_and_umask():
    allow = EventFilter(ALLOW, [0x4F2E, 0x1_0000_00C0])
    assert allow.allows(0x4F2E | EN) and not allow.allows(0x412E)
    assert allow.allows(0x1_0000_00C0) and not allow.allows(0xC0)  # AMD bits 35:32 take part
    deny = EventFilter(DENY, [0x4F2E])
    assert not deny.allows(0x4F2E) and deny.allows(0x412E)


def test_plain_entries_with_bits_outside_the_event_are_ignored():
    f = EventFilter(ALLOW, [EN | 0xC0])
    assert not f.allows(0xC0)


def test_fixed_counters_use_only_the_bitmap():
    assert EventFilter(ALLOW, [], fixed_counter_bitmap=0b010).allows_fixed(1)
    assert not EventFilter(ALLOW, [], fixed_counter_bitmap=0b010).allows_fixed(0)
    assert not EventFilter(DENY, [], fixed_counter_bitmap=0b010).allows_fixed(1)
    assert EventFilter(DENY, [], fixed_counter_bitmap=0b010).allows_fixed(0)


def test_masked_entries_include_and_exclude():
    f = EventFilter(ALLOW, [masked(0x2E, 0x40, 0xF0), masked(0x2E, 0x41, 0xFF, exclude=True)], flags=MASKED_EVENTS)
    assert f.allows(0x4F2E)
    assert not f.allows(0x412E)  # excluded
    assert not f.allows(0x3F2E)  # umask & 0xF0 != 0x40
    assert not f.allows(0x4F2F)
    d = EventFilter(DENY, [masked(0x1C0, 0, 0)], flags=MASKED_EVENTS)
    assert not d.allows(0x1_0000_55C0) and d.allows(0x55C0)


def test_from_kvm_bytes_round_trip_and_bounds():
    f = EventFilter(DENY, [0xC0, 0x4F2E], fixed_counter_bitmap=5)
    g = EventFilter.from_kvm_bytes(f.to_kvm_bytes())
    assert (g.action, g.events, g.fixed_counter_bitmap, g.flags) == (DENY, (0xC0, 0x4F2E), 5, 0)
    with pytest.raises(PmuFilterError, match="shorter"):
        EventFilter.from_kvm_bytes(b"\0" * 31)
    with pytest.raises(PmuFilterError, match="holds"):
        EventFilter.from_kvm_bytes(struct.pack("<8I", 0, 2, 0, 0, 0, 0, 0, 0) + b"\0" * 8)
    with pytest.raises(PmuFilterTooBigError):
        EventFilter.from_kvm_bytes(struct.pack("<8I", 0, 301, 0, 0, 0, 0, 0, 0))
    with pytest.raises(PmuFilterError):
        EventFilter.from_kvm_bytes(struct.pack("<8I", 7, 0, 0, 0, 0, 0, 0, 0))


def test_filter_gates_counting_and_is_reevaluated_at_once():
    pmu, _, _ = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x187, EN | OS | BRANCHES_SEL)
    pmu.core.write_msr(0x38D, 0x1)
    pmu.core.write_msr(0x38F, 0x3 | 1 << 32)
    pmu.set_event_filter(EventFilter(DENY, [INSTRUCTIONS_SEL], fixed_counter_bitmap=1))
    pmu.feed_block(4, 1, cpl=0)  # includes instructions the VMM itself emulates
    assert [pmu.core.read_msr(m) for m in (0xC1, 0xC2, 0x309)] == [0, 1, 0]
    assert not pmu.counters()[0]["running"]
    pmu.set_event_filter(None)
    pmu.feed_block(4, 1, cpl=0)
    assert [pmu.core.read_msr(m) for m in (0xC1, 0xC2, 0x309)] == [4, 2, 4]


@pytest.mark.parametrize("compiled", [
    (0, 1, [(0xC0, 0, 0xFF, False), (0x1_0000, 0, 0, False)]),      # second entry's select too wide
    (0, 1, [(0xC0, 0, 0xFF, False), (0xC4, 0x100, 0, True)]),       # match does not fit a byte
    (0, 1, [(0xC0, 0, 0xFF, False), ("x", 0, 0, False)]),            # not a number
    (0, 1 << 32, [(0xC0, 0, 0xFF, False)]),                          # fixed bitmap too wide
])
def test_a_refused_core_filter_leaves_the_installed_one(compiled):
    pmu, _, _ = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.set_event_filter(EventFilter(DENY, [INSTRUCTIONS_SEL]))
    before = (pmu.core.filter_action, pmu.counters())
    with pytest.raises((ValueError, TypeError)):
        pmu.core.set_filter(compiled)
    assert (pmu.core.filter_action, pmu.counters()) == before
    pmu.feed_block(4, 0, cpl=0)
    assert pmu.core.read_msr(0xC1) == 0         # still denied by the old filter


def test_filter_applies_to_counters_programmed_later():
    pmu, _, _ = make_pmu(PmuConfig(vendor="amd"))
    pmu.set_event_filter(EventFilter(ALLOW, [0xC2]))
    pmu.core.write_msr(0xC0010000, EN | OS | 0xC0)
    pmu.core.write_msr(0xC0010001, EN | OS | 0xC2)
    pmu.feed_block(4, 1, cpl=0)
    assert pmu.core.read_msr(0xC0010004) == 0 and pmu.core.read_msr(0xC0010005) == 1
    assert pmu.core.active_events == 1 << events.BRANCHES


def test_explain_event():
    pmu, _, _ = make_pmu()
    assert "no event filter" in pmu.explain_event(INSTRUCTIONS_SEL)
    pmu.set_event_filter(EventFilter(ALLOW, [masked(0xC0, 0, 0xFF)], flags=MASKED_EVENTS))
    text = pmu.explain_event(INSTRUCTIONS_SEL)
    assert "is listed" in text and "allowed" in text and "instructions" in text
    assert "denied" in pmu.explain_event(BRANCHES_SEL)


entry = st.builds(lambda sel, match, mask, exc: masked(sel, match, mask, exc),
                  st.integers(0, 0xFFF), st.integers(0, 0xFF), st.integers(0, 0xFF), st.booleans())


@given(action=st.sampled_from([ALLOW, DENY]), entries=st.lists(entry, max_size=8),
       probes=st.lists(st.integers(0, 0xF_0000_FFFF), min_size=1, max_size=20))
def test_core_filter_agrees_with_python_filter(action, entries, probes):
    pmu, _, _ = make_pmu(PmuConfig(vendor="amd"))
    f = EventFilter(action, entries, flags=MASKED_EVENTS)
    pmu.set_event_filter(f)
    sels = probes + [e & 0xF_0000_FFFF for e in entries]
    for sel in sels:
        assert pmu.core.filter_allows_eventsel(sel) == f.allows(sel)
