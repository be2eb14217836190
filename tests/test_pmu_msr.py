# SPDX-License-Identifier: GPL-2.0-or-later
"""MSR rules of the PMU, Intel and AMD, through the facade's bus protocol and the core."""

import pytest

from devices.bus import GP, Access, Bus
from pmu import PmuConfig
from tests.pmu_fixtures import EN, INSTRUCTIONS_SEL, OS, USR, make_pmu


def rd(pmu, index, host=False):
    return pmu.read(Access(index, 0, 8, 0, host))


def wr(pmu, index, value, host=False):
    return pmu.write(Access(index, 0, 8, 0, host), value)


# ---------------------------------------------------------------- Intel
def test_perfctr_guest_write_sign_extends_low_32_bits_and_masks_to_width():
    pmu, _, _ = make_pmu(PmuConfig(gp_width=40))
    assert wr(pmu, 0xC1, 0x1_8000_0000) is None
    assert rd(pmu, 0xC1) == (1 << 40) - (1 << 31)
    assert wr(pmu, 0xC1, 0x1234_7FFF_FFFF) is None
    assert rd(pmu, 0xC1) == 0x7FFF_FFFF


def test_perfctr_host_write_keeps_full_value_masked_to_width():
    pmu, _, _ = make_pmu(PmuConfig(gp_width=40))
    assert wr(pmu, 0xC1, 0xFF_1234_5678_9A, host=True) is None
    assert rd(pmu, 0xC1) == 0xFF_1234_5678_9A & ((1 << 40) - 1)


def test_full_width_alias_exists_only_with_perf_capabilities_bit_13():
    pmu, _, _ = make_pmu(PmuConfig(gp_width=48))
    assert wr(pmu, 0x4C1, 0x8000_0000_0000) is None
    assert rd(pmu, 0x4C1) == 0x8000_0000_0000 == rd(pmu, 0xC1)
    assert wr(pmu, 0x4C1, 1 << 48) is GP  # above the width
    pmu2, _, _ = make_pmu(PmuConfig(full_width_writes=False))
    assert rd(pmu2, 0x4C1) is GP and wr(pmu2, 0x4C1, 1) is GP
    assert wr(pmu2, 0x345, 1 << 13, host=True) is None
    assert wr(pmu2, 0x4C1, 5) is None and rd(pmu2, 0xC1) == 5


def test_perf_capabilities_read_only_to_guest_and_needs_pdcm():
    pmu, _, _ = make_pmu(PmuConfig())
    assert rd(pmu, 0x345) == 1 << 13
    assert wr(pmu, 0x345, 0) is GP
    assert wr(pmu, 0x345, 1 << 5, host=True) is GP  # a capability we do not model
    assert wr(pmu, 0x345, 0, host=True) is None and rd(pmu, 0x345) == 0
    nopdcm, _, _ = make_pmu(PmuConfig(pdcm=False, full_width_writes=False))
    assert rd(nopdcm, 0x345) is GP
    assert (0x345, 1) not in nopdcm.msr_ranges()


def test_evtsel_reserved_bits_fault_without_tsx_and_are_allowed_with_it():
    pmu, _, _ = make_pmu(PmuConfig())
    for bit in (21, 32, 33, 40, 63):
        assert wr(pmu, 0x186, EN | 1 << bit) is GP
    assert rd(pmu, 0x186) == 0
    assert wr(pmu, 0x186, EN | OS | USR | (1 << 19) | INSTRUCTIONS_SEL) is None  # pin control accepted
    tsx, _, _ = make_pmu(PmuConfig(tsx=True))
    assert wr(tsx, 0x186, 3 << 32) is None
    assert wr(tsx, 0x186, 1 << 34) is GP


def test_fixed_ctr_ctrl_reserved_bits_include_anythread():
    pmu, _, _ = make_pmu(PmuConfig(fixed_counters=2))
    assert wr(pmu, 0x38D, 0xBB) is None
    assert wr(pmu, 0x38D, 0x4) is GP  # AnyThread of fixed 0
    assert wr(pmu, 0x38D, 0xB00) is GP  # fixed counter 2 absent
    assert rd(pmu, 0x38D) == 0xBB


def test_fixed_counter_writes_are_modulo_width_and_absent_counters_fault():
    pmu, _, _ = make_pmu(PmuConfig(fixed_counters=2, fixed_width=36))
    assert wr(pmu, 0x309, (1 << 40) | 7) is None
    assert rd(pmu, 0x309) == 7
    assert rd(pmu, 0x30B) is GP and wr(pmu, 0x30B, 0) is GP


def test_global_status_guest_write_faults_host_write_sets():
    pmu, _, _ = make_pmu()
    assert wr(pmu, 0x38E, 1) is GP
    assert wr(pmu, 0x38E, 0x5 | 1 << 33, host=True) is None
    assert rd(pmu, 0x38E) == 0x5 | 1 << 33
    assert wr(pmu, 0x38E, 1 << 20, host=True) is GP


def test_global_ctrl_reserved_bits_fault():
    pmu, _, _ = make_pmu(PmuConfig(gp_counters=4, fixed_counters=3))
    assert wr(pmu, 0x38F, 0xF | 7 << 32) is None
    assert wr(pmu, 0x38F, 1 << 4) is GP
    assert wr(pmu, 0x38F, 1 << 35) is GP
    assert rd(pmu, 0x38F) == 0xF | 7 << 32


def test_global_ovf_ctrl_clears_status_reads_zero_and_faults_on_reserved_bits():
    pmu, _, _ = make_pmu(PmuConfig(gp_counters=4))
    wr(pmu, 0x38E, 0xF | 1 << 32, host=True)
    assert wr(pmu, 0x390, 0x5) is None
    assert rd(pmu, 0x38E) == 0xA | 1 << 32
    assert rd(pmu, 0x390) == 0
    assert wr(pmu, 0x390, 3 << 62) is None  # OvfBuf / CondChgd are writable
    assert wr(pmu, 0x390, 1 << 8) is GP
    assert wr(pmu, 0x390, 0xA, host=True) is None and rd(pmu, 0x38E) == 0xA | 1 << 32  # host: no clear


@pytest.mark.parametrize("policy, expected", [("upstream", 0xFF), ("seed", 0xFF | 7 << 32)])
def test_global_ctrl_after_reset_and_refresh(policy, expected):
    pmu, _, _ = make_pmu(PmuConfig(global_ctrl_reset=policy))
    assert rd(pmu, 0x38F) == expected
    wr(pmu, 0x38F, 0)
    pmu.reset()
    assert rd(pmu, 0x38F) == expected
    wr(pmu, 0x38F, 0)
    pmu.refresh()
    assert rd(pmu, 0x38F) == expected


def test_version_1_has_no_global_msrs_and_counters_are_globally_enabled():
    pmu, _, _ = make_pmu(PmuConfig(version=1, fixed_counters=0))
    for msr in (0x38D, 0x38E, 0x38F, 0x390, 0x309):
        assert rd(pmu, msr) is GP
    wr(pmu, 0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.feed_block(5, 0, cpl=0)
    assert rd(pmu, 0xC1) == 5


def test_version_0_has_no_msrs_at_all():
    pmu, _, _ = make_pmu(PmuConfig(version=0, pdcm=False, full_width_writes=False))
    assert pmu.msr_ranges() == []
    assert rd(pmu, 0xC1) is GP and rd(pmu, 0x186) is GP and rd(pmu, 0x345) is GP


def test_absent_gp_counters_fault():
    pmu, _, _ = make_pmu(PmuConfig(gp_counters=2))
    assert rd(pmu, 0xC3) is GP and wr(pmu, 0x188, 0) is GP and rd(pmu, 0x4C3) is GP


def test_attach_registers_exactly_the_configured_ranges():
    pmu, _, _ = make_pmu(PmuConfig(gp_counters=4, fixed_counters=2))
    bus = Bus("msr", 1 << 32, sizes=(8,), indexed=True)
    pmu.attach(bus)
    assert [(b, s) for b, s, _ in bus.ranges()] == [(0xC1, 4), (0x186, 4), (0x309, 2), (0x345, 1), (0x38D, 4),
                                                     (0x4C1, 4)]
    assert bus.read(0x38F, 8) == 0xF
    assert bus.read(0xC5, 8) is None  # counter 4 is nobody's MSR
    for base, size in pmu.msr_ranges():
        assert all(pmu.core.msr_owned(i) for i in range(base, base + size))
    assert not pmu.core.msr_owned(0xC5) and not pmu.core.msr_owned(0x391)
    pmu.destroy()
    assert bus.ranges() == []


def test_write_to_running_counter_takes_effect_at_once():
    pmu, _, _ = make_pmu()
    wr(pmu, 0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.feed_block(10, 0, cpl=0)
    assert pmu.events_to_overflow(1, 0) == (1 << 48) - 10
    wr(pmu, 0x4C1, (1 << 48) - 3)
    assert pmu.events_to_overflow(1, 0) == 3
    pmu.feed_block(3, 0, cpl=0)
    assert rd(pmu, 0x38E) == 1


# ---------------------------------------------------------------- AMD
def amd(**kw):
    return make_pmu(PmuConfig(vendor="amd", **kw))


def test_amd_legacy_msrs_four_counters():
    pmu, _, _ = amd()
    assert pmu.msr_ranges() == [(0xC0010000, 4), (0xC0010004, 4)]
    assert wr(pmu, 0xC0010007, (1 << 50) | 9) is None
    assert rd(pmu, 0xC0010007) == 9  # 48-bit counter
    assert rd(pmu, 0xC0010200) is GP and rd(pmu, 0xC0000300) is GP


def test_amd_reserved_evtsel_bits_are_dropped_not_faulted():
    pmu, _, _ = amd()
    value = EN | OS | (0xF << 32) | (3 << 40) | (1 << 21) | (1 << 19) | (1 << 63) | 0x76
    assert wr(pmu, 0xC0010000, value) is None
    assert rd(pmu, 0xC0010000) == EN | OS | (0xF << 32) | (3 << 40) | 0x76


def test_amd_perfctr_core_six_counters_alias_legacy():
    pmu, _, _ = amd(perfctr_core=True)
    assert pmu.msr_ranges() == [(0xC0010000, 4), (0xC0010004, 4), (0xC0010200, 12)]
    assert wr(pmu, 0xC0010202, EN | USR | 0xC0) is None
    assert rd(pmu, 0xC0010001) == EN | USR | 0xC0
    assert wr(pmu, 0xC0010005, 77) is None
    assert rd(pmu, 0xC0010203) == 77
    assert wr(pmu, 0xC001020B, 5) is None and rd(pmu, 0xC001020B) == 5
    assert rd(pmu, 0xC001020C) is GP


def test_amd_perfmon_v2_global_msrs():
    pmu, _, _ = amd(perfctr_core=True, perfmon_v2=True, gp_counters=3)
    assert (0xC0000300, 4) in pmu.msr_ranges()
    assert rd(pmu, 0xC0000301) == 0x7  # all GP enables after reset
    assert wr(pmu, 0xC0000301, 1 << 3) is GP
    assert wr(pmu, 0xC0000300, 0x7) is None and rd(pmu, 0xC0000300) == 0  # guest writes ignored
    assert wr(pmu, 0xC0000303, 0x5) is None and rd(pmu, 0xC0000300) == 0x5  # STATUS_SET
    assert wr(pmu, 0xC0000302, 0x1) is None and rd(pmu, 0xC0000300) == 0x4  # STATUS_CLR
    assert rd(pmu, 0xC0000302) == 0 and rd(pmu, 0xC0000303) == 0
    assert wr(pmu, 0xC0000302, ~0 & (2**64 - 1)) is None and rd(pmu, 0xC0000300) == 0  # no #GP: as on AMD parts
    assert wr(pmu, 0xC0000300, 0x3, host=True) is None and rd(pmu, 0xC0000300) == 0x3
    assert rd(pmu, 0xC0010206) is GP  # counter 3 absent
    assert rd(pmu, 0xC0010003) is GP  # legacy alias of counter 3 absent too


def test_amd_v2_global_ctrl_gates_counting():
    pmu, _, _ = amd(perfctr_core=True, perfmon_v2=True)
    wr(pmu, 0xC0010200, EN | OS | 0xC0)
    wr(pmu, 0xC0000301, 0)
    pmu.feed_block(4, 1, cpl=0)
    assert rd(pmu, 0xC0010201) == 0
    wr(pmu, 0xC0000301, 1)
    pmu.feed_block(4, 1, cpl=0)
    assert rd(pmu, 0xC0010201) == 4


def test_amd_extended_event_select_bits_take_part_in_decode():
    pmu, _, _ = amd()
    wr(pmu, 0xC0010000, EN | OS | (1 << 32) | 0xC0)  # event 0x1C0 is not "instructions"
    pmu.feed_block(4, 0, cpl=0)
    assert rd(pmu, 0xC0010004) == 0
    assert pmu.counters()[0]["generic"] == -1


def test_amd_host_guest_bits_are_stored_and_ignored():
    pmu, _, _ = amd()
    wr(pmu, 0xC0010000, EN | OS | (1 << 41) | 0xC0)  # HostOnly: ignored without nested SVM
    pmu.feed_block(4, 0, cpl=0)
    assert rd(pmu, 0xC0010004) == 4
