# SPDX-License-Identifier: GPL-2.0-or-later
"""Counting: event decode, CPL selection, CMASK/INV/EDGE, overflow exactness, RDPMC."""

import pytest

from devices.bus import GP
from pmu import PmuConfig, events
from tests.pmu_fixtures import (
    BRANCHES_SEL,
    CYCLES_SEL,
    EDGE,
    EN,
    INSTRUCTIONS_SEL,
    INT,
    INV,
    OS,
    USR,
    cmask,
    make_pmu,
)

MASK48 = (1 << 48) - 1


def program(pmu, n, eventsel):
    assert pmu.core.write_msr(0x186 + n, eventsel)


def value(pmu, n):
    return pmu.core.read_msr(0xC1 + n)


@pytest.mark.parametrize("sel, umask, generic", [
    (0x3C, 0, events.CORE_CYCLES), (0xC0, 0, events.INSTRUCTIONS), (0x3C, 1, events.REF_CYCLES),
    (0x2E, 0x4F, events.LLC_REFS), (0x2E, 0x41, events.LLC_MISSES), (0xC4, 0, events.BRANCHES),
    (0xC5, 0, events.BRANCH_MISSES), (0x00, 0x03, events.REF_CYCLES), (0xD0, 0, -1),
])
def test_intel_arch_event_decode(sel, umask, generic):
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | umask << 8 | sel)
    assert pmu.counters()[0]["generic"] == generic
    assert pmu.core.active_events == (0 if generic < 0 else 1 << generic)


def test_unavailable_intel_event_counts_nothing():
    pmu, _, _ = make_pmu(PmuConfig(events_mask=1 << 1))  # instructions unavailable
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    pmu.feed_block(5, 0, cpl=0)
    assert value(pmu, 0) == 0
    assert pmu.counters()[0]["generic"] == -1


@pytest.mark.parametrize("sel, umask, generic", [
    (0x76, 0, events.CORE_CYCLES), (0xC0, 0, events.INSTRUCTIONS), (0x7D, 7, events.LLC_REFS),
    (0x7E, 7, events.LLC_MISSES), (0xC2, 0, events.BRANCHES), (0xC3, 0, events.BRANCH_MISSES),
    (0xD0, 0, events.STALLED), (0xD1, 0, events.STALLED), (0x3C, 0, -1),
])
def test_amd_event_decode(sel, umask, generic):
    pmu, _, _ = make_pmu(PmuConfig(vendor="amd"))
    assert pmu.core.write_msr(0xC0010000, EN | OS | umask << 8 | sel)
    assert pmu.counters()[0]["generic"] == generic


def test_fixed_counters_count_instructions_cycles_and_ref_cycles_by_ring():
    pmu, _, _ = make_pmu()
    pmu.core.write_msr(0x38D, 0x1 | 0x2 << 4 | 0x3 << 8)  # fixed0 OS, fixed1 USR, fixed2 both
    pmu.core.write_msr(0x38F, 7 << 32)
    pmu.feed_block(10, 1, cpl=0)
    pmu.feed_block(7, 0, cpl=3)
    assert [pmu.core.read_msr(0x309 + i) for i in range(3)] == [10, 7, 17]


def test_usr_os_select_cpl():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | USR | INSTRUCTIONS_SEL)
    program(pmu, 1, EN | OS | INSTRUCTIONS_SEL)
    program(pmu, 2, EN | OS | USR | BRANCHES_SEL)
    program(pmu, 3, EN | INSTRUCTIONS_SEL)  # neither ring: counts nothing
    pmu.feed_block(4, 1, cpl=3)
    pmu.feed_block(6, 1, cpl=0)
    pmu.feed_block(2, 0, cpl=1)
    assert [value(pmu, i) for i in range(4)] == [6, 6, 2, 0]


def test_global_ctrl_and_enable_gate_counting_and_the_enabling_wrmsr_counts():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x38F, 0)
    pmu.feed_block(5, 0, cpl=0)
    assert value(pmu, 0) == 0
    # The hook layer emulates WRMSR(GLOBAL_CTRL) and then retires it: the enabling WRMSR counts.
    pmu.core.write_msr(0x38F, 1)
    pmu.feed_block(1, 0, cpl=0)
    pmu.feed_block(3, 0, cpl=0)
    pmu.core.write_msr(0x38F, 0)  # the disabling WRMSR does not count
    pmu.feed_block(1, 0, cpl=0)
    assert value(pmu, 0) == 4


def test_pause_resume_does_not_reprogram_but_config_change_does():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    base = pmu.core.reprograms
    for _ in range(3):
        pmu.core.write_msr(0x38F, 0)
        pmu.core.write_msr(0x38F, 0xFF)
    assert pmu.core.reprograms == base
    program(pmu, 0, EN | OS | USR | INSTRUCTIONS_SEL)
    assert pmu.core.reprograms == base + 1
    program(pmu, 0, OS | USR | INSTRUCTIONS_SEL)
    program(pmu, 0, EN | OS | USR | INSTRUCTIONS_SEL)
    assert pmu.core.reprograms == base + 1


@pytest.mark.parametrize("cpl", [0, 3])
def test_overflow_exactness_preset_minus_k(cpl):
    pmu, _, _ = make_pmu()
    ring = OS if cpl == 0 else USR
    program(pmu, 0, EN | ring | INT | INSTRUCTIONS_SEL)
    k = 37
    pmu.core.write_msr(0x4C1, (-k) & MASK48)
    assert pmu.events_to_overflow(events.INSTRUCTIONS, cpl) == k
    pmu.feed_block(k - 1, 0, cpl=cpl)
    assert pmu.core.global_status == 0 and not pmu.core.pmi_requested
    assert pmu.events_to_overflow(events.INSTRUCTIONS, cpl) == 1
    pmu.feed_block(1, 0, cpl=cpl)
    assert pmu.core.global_status == 1 and pmu.core.pmi_requested
    assert value(pmu, 0) == 0
    assert pmu.events_to_overflow(events.INSTRUCTIONS, cpl) == MASK48 + 1


def test_overflow_sets_status_without_pmi_when_int_clear_and_keeps_counting():
    pmu, _, _ = make_pmu()
    program(pmu, 2, EN | OS | BRANCHES_SEL)
    pmu.core.write_msr(0xC3, 0xFFFFFFFF)  # sign-extends to all-ones of the width
    pmu.feed_block(10, 1, cpl=0)
    assert pmu.core.global_status == 1 << 2 and not pmu.core.pmi_requested
    pmu.feed_block(10, 1, cpl=0)
    assert value(pmu, 2) == 1


def test_fixed_counter_overflow_sets_bit_32_plus_n():
    pmu, _, _ = make_pmu()
    pmu.core.write_msr(0x38D, 0xB << 4)  # fixed1: OS, PMI
    pmu.core.write_msr(0x38F, 1 << 33)
    pmu.core.write_msr(0x30A, MASK48 - 1)
    pmu.feed_block(2, 0, cpl=0)
    assert pmu.core.global_status == 1 << 33 and pmu.core.pmi_requested


def test_feeding_more_than_one_wrap_sets_one_status_bit_and_wraps_modulo():
    pmu, _, _ = make_pmu(PmuConfig(gp_width=32, full_width_writes=True))
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    pmu.feed(events.INSTRUCTIONS, (1 << 32) * 2 + 5, cpl=0)
    assert value(pmu, 0) == 5 and pmu.core.global_status == 1


def test_64_bit_counter_distance_saturates():
    pmu, _, _ = make_pmu(PmuConfig(gp_width=64))
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    assert pmu.events_to_overflow(events.INSTRUCTIONS, 0) == (1 << 64) - 1
    pmu.core.write_msr(0x4C1, (1 << 64) - 1)
    assert pmu.events_to_overflow(events.INSTRUCTIONS, 0) == 1
    pmu.feed(events.INSTRUCTIONS, 1, cpl=0)
    assert pmu.core.global_status == 1 and value(pmu, 0) == 0


def test_events_to_overflow_takes_min_and_ignores_other_rings():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    program(pmu, 1, EN | USR | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x4C1, MASK48 - 99)
    pmu.core.write_msr(0x4C2, MASK48 - 9)
    assert pmu.events_to_overflow(events.INSTRUCTIONS, 0) == 100
    assert pmu.events_to_overflow(events.INSTRUCTIONS, 3) == 10
    assert pmu.events_to_overflow(events.LLC_REFS, 0) == (1 << 64) - 1


# ------------------------------------------------------------------ CMASK / INV / EDGE
@pytest.mark.parametrize("extra, insns_expected, branches_expected", [
    (0, 10, 2),                       # raw counts
    (INV, 10, 2),                     # INV is ignored with CMASK 0
    (cmask(1), 10, 2),                # cycles with >= 1: every instruction; every branch cycle
    (cmask(2), 0, 0),                 # never 2 in one cycle
    (cmask(1) | INV, 0, 8),           # cycles with < 1: no instruction cycle; 8 non-branch cycles
    (cmask(2) | INV, 10, 10),         # cycles with < 2: every cycle
    (EDGE, 1, 2),                     # 0->1 transitions: one run of instructions; each branch
    (EDGE | cmask(1) | INV, 0, 2),    # non-branch runs start twice
    (EDGE | cmask(2), 0, 0),
    (EDGE | cmask(2) | INV, 1, 1),
])
def test_cmask_inv_edge_on_two_blocks(extra, insns_expected, branches_expected):
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | extra | INSTRUCTIONS_SEL)
    program(pmu, 1, EN | OS | extra | BRANCHES_SEL)
    pmu.feed_block(5, 1, cpl=0)  # cycles: 0 0 0 0 B
    pmu.feed_block(5, 1, cpl=0)  # cycles: 0 0 0 0 B
    assert (value(pmu, 0), value(pmu, 1)) == (insns_expected, branches_expected)


def test_edge_state_survives_pause_resume_but_not_reprogram():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | EDGE | INSTRUCTIONS_SEL)
    pmu.feed_block(3, 0, cpl=0)
    pmu.core.write_msr(0x38F, 0)
    pmu.core.write_msr(0x38F, 1)
    pmu.feed_block(3, 0, cpl=0)
    assert value(pmu, 0) == 1  # still inside the same asserted run
    program(pmu, 0, EN | OS | USR | EDGE | INSTRUCTIONS_SEL)
    pmu.feed_block(3, 0, cpl=0)
    assert value(pmu, 0) == 2


def test_cmask_counter_on_count_feed_sees_consecutive_busy_cycles():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | cmask(1) | 0x4F00 | 0x2E)  # LLC references, CMASK 1
    program(pmu, 1, EN | OS | EDGE | 0x4F00 | 0x2E)
    pmu.feed(events.LLC_REFS, 4, cpl=0)
    pmu.feed(events.LLC_REFS, 2, cpl=0)
    assert (value(pmu, 0), value(pmu, 1)) == (6, 1)


def test_events_to_overflow_is_a_lower_bound_for_inverted_branch_counter():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | cmask(1) | INV | BRANCHES_SEL)  # counts non-branch cycles
    pmu.core.write_msr(0x4C1, MASK48 - 2)
    assert pmu.events_to_overflow(events.BRANCHES, 0) == (1 << 64) - 1
    assert pmu.events_to_overflow(events.INSTRUCTIONS, 0) == 3
    pmu.feed_block(3, 0, cpl=0)
    assert pmu.core.global_status == 1


def test_cycles_follow_instructions_in_the_cycle_model():
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | CYCLES_SEL)
    program(pmu, 1, EN | OS | 0x100 | CYCLES_SEL)  # reference cycles
    pmu.feed_block(9, 1, cpl=0)
    assert (value(pmu, 0), value(pmu, 1)) == (9, 9)


def test_active_events_mask_follows_running_counters():
    pmu, _, _ = make_pmu()
    assert pmu.core.active_events == 0
    program(pmu, 0, EN | OS | BRANCHES_SEL)
    pmu.core.write_msr(0x38D, 0x1)
    pmu.core.write_msr(0x38F, 1 | 1 << 32)
    assert pmu.core.active_events == 1 << events.BRANCHES | 1 << events.INSTRUCTIONS
    pmu.core.write_msr(0x38F, 0)
    assert pmu.core.active_events == 0


def test_reference_loop_exact_figures():
    """The loop of the notes, N iterations: 10*N+17 instructions and N+2 branches."""
    pmu, _, _ = make_pmu()
    program(pmu, 0, EN | OS | INSTRUCTIONS_SEL)
    program(pmu, 1, EN | OS | BRANCHES_SEL)
    pmu.core.write_msr(0x38F, 0)
    n = 1000
    pmu.core.write_msr(0x38F, 3)
    pmu.feed_block(1, 0, cpl=0)  # the enabling WRMSR itself
    pmu.feed_block(5, 0, cpl=0)  # set-up instructions before the loop
    for _ in range(n):
        pmu.feed_block(10, 1, cpl=0)  # mov, add, 7 x nop, loop
    pmu.feed_block(2, 1, cpl=0)  # ...; call 1f
    pmu.feed_block(3, 1, cpl=0)  # 1: pop; add; jmp *rax
    pmu.feed_block(6, 0, cpl=0)  # tail up to the disabling WRMSR
    pmu.core.write_msr(0x38F, 0)
    pmu.feed_block(1, 0, cpl=0)  # the disabling WRMSR is not counted
    assert value(pmu, 0) == 10 * n + 17
    assert value(pmu, 1) == n + 2


# ------------------------------------------------------------------ RDPMC
def rdpmc(pmu, vcpu, ecx, cpl=0, cr0=1, cr4=0):
    vcpu.set_cpl(cpl)
    vcpu.set_cr0(cr0)
    vcpu.set_cr4(cr4)
    return pmu.rdpmc(ecx)


def test_rdpmc_version_0_faults_even_for_pseudo_pmcs():
    pmu, vcpu, _ = make_pmu(PmuConfig(version=0, pdcm=False, full_width_writes=False, vmware_backdoor=True))
    assert rdpmc(pmu, vcpu, 0) is GP
    assert rdpmc(pmu, vcpu, 0x10000) is GP


def test_rdpmc_vmware_pseudo_pmcs_at_cpl3_without_pce():
    pmu, vcpu, _ = make_pmu(PmuConfig(vmware_backdoor=True, guest_clock_offset_ns=250))
    assert rdpmc(pmu, vcpu, 0x10000, cpl=3) == 1000  # the virtual clock (TSC)
    assert rdpmc(pmu, vcpu, 0x10001, cpl=3) == 5000  # the injected real-time clock
    assert rdpmc(pmu, vcpu, 0x10002, cpl=3) == 5250
    assert rdpmc(pmu, vcpu, 0x10003, cpl=3) is GP
    off, vcpu2, _ = make_pmu(PmuConfig(vmware_backdoor=False))
    assert rdpmc(off, vcpu2, 0x10000, cpl=0) is GP


def test_rdpmc_pce_and_cpl_and_pe_rule():
    pmu, vcpu, _ = make_pmu()
    pmu.core.write_msr(0xC1, 42)
    assert rdpmc(pmu, vcpu, 0, cpl=0) == 42
    assert rdpmc(pmu, vcpu, 0, cpl=3) is GP
    assert rdpmc(pmu, vcpu, 0, cpl=3, cr4=1 << 8) == 42
    assert rdpmc(pmu, vcpu, 0, cpl=3, cr0=0) == 42  # real mode: no protection check
    assert rdpmc(pmu, vcpu, 99, cpl=3, cr4=1 << 8) is GP  # invalid index


def test_rdpmc_intel_fixed_and_width_mask_upstream_policy():
    pmu, vcpu, _ = make_pmu(PmuConfig(fixed_width=40))
    pmu.core.write_msr(0x30A, (1 << 40) - 1)
    pmu.core.write_msr(0xC1, 0xFFFF_FFFF)
    assert rdpmc(pmu, vcpu, 0x4000_0001) == (1 << 40) - 1
    assert rdpmc(pmu, vcpu, 0x4000_0003) is GP
    assert rdpmc(pmu, vcpu, 0) == MASK48
    assert rdpmc(pmu, vcpu, 0x8000_0000) is GP  # fast read rejected
    assert rdpmc(pmu, vcpu, 0x0001_0000) is GP  # unknown type


def test_rdpmc_intel_fast_read_seed_policy():
    pmu, vcpu, _ = make_pmu(PmuConfig(rdpmc_fast="seed"))
    pmu.core.write_msr(0xC1, 0xFFFF_FFFF)
    pmu.core.write_msr(0x309, 0x1_2345_6789, host=True)
    assert rdpmc(pmu, vcpu, 0x8000_0000) == 0xFFFF_FFFF
    assert rdpmc(pmu, vcpu, 0) == MASK48
    assert rdpmc(pmu, vcpu, 0xC000_0000) == 0x2345_6789
    assert rdpmc(pmu, vcpu, 0x4000_0000) == 0x1_2345_6789


def test_rdpmc_amd_index_rules():
    up, vcpu, _ = make_pmu(PmuConfig(vendor="amd", perfctr_core=True))
    up.core.write_msr(0xC001020B, 0x1_0000_0007)
    assert rdpmc(up, vcpu, 5) == 0x1_0000_0007
    assert rdpmc(up, vcpu, 6) is GP
    assert rdpmc(up, vcpu, 0x8000_0005) is GP
    seed, vcpu2, _ = make_pmu(PmuConfig(vendor="amd", perfctr_core=True, rdpmc_fast="seed"))
    seed.core.write_msr(0xC001020B, 0x1_0000_0007)
    assert rdpmc(seed, vcpu2, 0x8000_0005) == 7
    assert rdpmc(seed, vcpu2, 0x4000_0005) == 0x1_0000_0007
