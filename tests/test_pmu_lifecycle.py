# SPDX-License-Identifier: GPL-2.0-or-later
"""PMI delivery paths, housekeeping, refresh/reset/init, config from CPUID, state round trip."""

import pytest

from pmu import PMC_LVT, Pmu, PmuConfig, PmuRefreshError, events
from tests.pmu_fixtures import EN, INSTRUCTIONS_SEL, INT, OS, FakeLapic, make_pmu
from vmm.clock import FakeClock
from vmm.cpuid import CpuidModel
from vmm.fake_vcpu import FakeVcpu

MASK48 = (1 << 48) - 1


def armed(k=1, **kw):
    """A PMU whose GP counter 0 overflows with a PMI after k instructions at CPL0."""
    pmu, vcpu, lapic = make_pmu(**kw)
    pmu.core.write_msr(0x186, EN | OS | INT | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x4C1, (-k) & MASK48)
    return pmu, vcpu, lapic


# ------------------------------------------------------------------ PMI
def test_overflow_in_guest_records_a_request_serviced_by_the_hook_layer():
    pmu, vcpu, lapic = armed()
    vcpu.enter_guest()
    pmu.feed_block(1, 0, cpl=0)
    assert pmu.core.pmi_requested and vcpu.work == [] and lapic.delivered == []
    assert pmu.has_wakeup()
    assert pmu.service_pmi() is True  # what the hook layer does before the next instruction
    assert lapic.delivered == [PMC_LVT]
    assert pmu.service_pmi() is False and lapic.delivered == [PMC_LVT]


def test_overflow_outside_guest_queues_deferred_work_and_wakes_hlt():
    pmu, vcpu, lapic = armed()
    vcpu.halted = True
    kicks = vcpu.kicks
    pmu.feed_block(1, 0, cpl=0)
    assert len(vcpu.work) == 1 and vcpu.kicks == kicks + 1 and not vcpu.halted
    assert lapic.delivered == []
    vcpu.enter_guest()
    assert lapic.delivered == [PMC_LVT]


def test_no_double_pmi_when_request_and_deferred_work_both_exist():
    pmu, vcpu, lapic = armed()
    vcpu.enter_guest()
    pmu.feed_block(1, 0, cpl=0)  # request recorded in guest
    vcpu.exit_guest()
    pmu.notice_overflow()  # a host-side path notices the same pending overflow
    assert len(vcpu.work) == 1
    assert pmu.service_pmi()  # the hook layer services the request first...
    vcpu.enter_guest()  # ...then the deferred work runs and finds nothing
    assert lapic.delivered == [PMC_LVT]


def test_no_double_pmi_when_deferred_work_runs_before_the_poll():
    pmu, vcpu, lapic = armed()
    pmu.feed_block(1, 0, cpl=0)  # outside the guest: work queued
    pmu.feed_block(1, 0, cpl=0)  # a second feed does not queue twice
    assert len(vcpu.work) == 1
    vcpu.enter_guest()  # work runs first
    assert not pmu.service_pmi()  # the hook layer's poll finds nothing
    assert lapic.delivered == [PMC_LVT]


def test_two_overflows_before_service_give_one_pmi_and_later_overflow_another():
    pmu, vcpu, lapic = armed(k=2)
    pmu.core.write_msr(0x187, EN | OS | INT | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x4C2, MASK48)
    vcpu.enter_guest()
    pmu.feed_block(2, 0, cpl=0)
    assert pmu.core.global_status == 0b11
    pmu.service_pmi()
    pmu.core.write_msr(0x4C1, MASK48)
    pmu.feed_block(1, 0, cpl=0)
    pmu.service_pmi()
    assert lapic.delivered == [PMC_LVT, PMC_LVT]


def test_reset_cancels_pending_deferred_work():
    pmu, vcpu, lapic = armed()
    pmu.feed_block(1, 0, cpl=0)
    assert len(vcpu.work) == 1
    pmu.reset()
    assert not pmu.core.pmi_requested and pmu.core.global_status == 0
    vcpu.run_work()
    assert lapic.delivered == []
    # after the reset a new overflow still gets its PMI
    pmu.core.write_msr(0x186, EN | OS | INT | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x4C1, MASK48)
    pmu.feed_block(1, 0, cpl=0)
    vcpu.run_work()
    assert lapic.delivered == [PMC_LVT]


def test_no_pmi_without_int():
    pmu, vcpu, lapic = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x4C1, MASK48)
    pmu.feed_block(1, 0, cpl=0)
    vcpu.run_work()
    assert pmu.core.global_status == 1 and lapic.delivered == [] and vcpu.work == []


# ------------------------------------------------------------------ housekeeping
def test_unused_counters_are_released_after_a_time_slice():
    pmu, vcpu, _ = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x187, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x187, OS | INSTRUCTIONS_SEL)  # counter 1 disabled again
    pmu.core.write_msr(0x38D, 0x1)
    pmu.core.write_msr(0x38F, 1 << 32 | 3)
    pmu.core.write_msr(0x38F, 0)  # fixed 0 globally off but still enabled by its own field
    pmu.sched_in()
    assert pmu.before_guest_entry() == 0  # counters were touched in this slice
    pmu.sched_in()
    assert pmu.before_guest_entry() == 0b10  # counter 1: untouched, not enabled
    assert [c["programmed"] for c in pmu.counters()[:2]] == [True, False]
    assert pmu.counters()[8]["programmed"]
    assert pmu.before_guest_entry() == 0  # nothing more until the next sched_in
    base = pmu.core.reprograms
    pmu.core.write_msr(0x38F, 3)
    pmu.core.write_msr(0x187, EN | OS | INSTRUCTIONS_SEL)
    assert pmu.core.reprograms == base + 1  # counter 1 is reprogrammed, counter 0 resumed


def test_refresh_refused_after_the_vcpu_ran():
    pmu, _, _ = make_pmu()
    pmu.before_guest_entry()
    with pytest.raises(PmuRefreshError):
        pmu.refresh()


def test_refresh_rederives_from_cpuid_keeping_policy_and_bus_ranges():
    from devices.bus import Bus
    pmu, _, _ = make_pmu(PmuConfig(gp_counters=8, rdpmc_fast="seed"))
    bus = Bus("msr", 1 << 32, sizes=(8,), indexed=True)
    pmu.attach(bus)
    PmuConfig(gp_counters=2, fixed_counters=1).apply_to_cpuid(pmu.cpuid)
    pmu.refresh()
    assert (pmu.config.gp_counters, pmu.config.fixed_counters, pmu.config.rdpmc_fast) == (2, 1, "seed")
    assert bus.read(0xC3, 8) is None and bus.read(0xC2, 8) == 0
    assert pmu.core.read_msr(0x38F) == 0x3


def test_reset_clears_counters_selects_and_status_but_not_capabilities():
    pmu, _, _ = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    pmu.core.write_msr(0x38D, 0x3)
    pmu.feed_block(5, 0, cpl=0)
    pmu.core.write_msr(0x38E, 5, host=True)
    pmu.core.write_msr(0x345, 0, host=True)
    pmu.reset()
    assert [pmu.core.read_msr(m) for m in (0xC1, 0x186, 0x38D, 0x38E, 0x345)] == [0, 0, 0, 0, 0]
    assert pmu.core.running == 0 and pmu.core.active_events == 0


def test_init_builds_pmu_from_cpuid_when_no_config():
    cpuid = CpuidModel("intel")
    PmuConfig(gp_counters=4, fixed_counters=2, fixed_width=40).apply_to_cpuid(cpuid)
    pmu = Pmu(cpuid, FakeVcpu(), FakeLapic(), FakeClock(), global_ctrl_reset="seed")
    assert (pmu.config.gp_counters, pmu.config.fixed_counters, pmu.config.fixed_width) == (4, 2, 40)
    assert pmu.core.read_msr(0x38F) == 0xF | 3 << 32
    assert len(pmu.counters()) == 6


def test_state_round_trip():
    pmu, vcpu, _ = armed(k=3)
    pmu.core.write_msr(0x38D, 0xB)
    pmu.core.write_msr(0x38F, 1 | 1 << 32)
    pmu.feed_block(2, 0, cpl=0)
    state = pmu.get_state()
    other, vcpu2, lapic2 = make_pmu()
    other.set_state(state)
    assert other.get_state() == state
    assert other.counters() == pmu.counters()
    other.feed_block(1, 0, cpl=0)
    assert other.core.global_status == 1 and other.core.pmi_requested
    vcpu2.run_work()
    assert lapic2.delivered == [PMC_LVT]
    with pytest.raises(ValueError, match="gp_counters"):
        make_pmu(PmuConfig(gp_counters=4))[0].set_state(state)
    with pytest.raises(ValueError, match="version"):
        other.set_state({**state, "version": 99})


def test_feed_defaults_to_the_vcpu_cpl():
    pmu, vcpu, _ = make_pmu()
    pmu.core.write_msr(0x186, EN | OS | INSTRUCTIONS_SEL)
    vcpu.set_cpl(3)
    pmu.feed(events.INSTRUCTIONS, 5)
    vcpu.set_cpl(0)
    pmu.feed(events.INSTRUCTIONS, 2)
    assert pmu.core.read_msr(0xC1) == 2


# ------------------------------------------------------------------ config
@pytest.mark.parametrize("kwargs, message", [
    ({"gp_counters": 0}, "1..8 GP"), ({"gp_counters": 9}, "1..8 GP"), ({"fixed_counters": 4}, "0..3 fixed"),
    ({"version": 3}, "version"), ({"version": 1, "fixed_counters": 3}, "version 2"),
    ({"gp_width": 70}, "width"), ({"vendor": "via"}, "vendor"), ({"global_ctrl_reset": "x"}, "global_ctrl"),
    ({"rdpmc_fast": "x"}, "rdpmc_fast"), ({"pdcm": False}, "pdcm"),
    ({"vendor": "amd", "gp_counters": 6}, "4 counters"), ({"vendor": "amd", "perfmon_v2": True}, "PerfCtrExtCore"),
    ({"vendor": "amd", "perfctr_core": True, "perfmon_v2": True, "gp_counters": 7}, "1..6"),
    ({"perfctr_core": True}, "AMD"),
])
def test_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PmuConfig(**kwargs)


def test_config_cpuid_round_trip_intel_and_amd():
    for config in (PmuConfig(gp_counters=3, gp_width=40, fixed_counters=2, fixed_width=44, events_mask=0x24),
                   PmuConfig(version=1, fixed_counters=0, pdcm=False, full_width_writes=False),
                   PmuConfig(vendor="amd"), PmuConfig(vendor="amd", perfctr_core=True),
                   PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True, gp_counters=5)):
        cpuid = CpuidModel(config.vendor)
        config.apply_to_cpuid(cpuid)
        assert PmuConfig.from_cpuid(cpuid) == config


def test_apply_to_cpuid_writes_the_leaves():
    cpuid = CpuidModel("intel")
    PmuConfig(gp_counters=4, gp_width=48, fixed_counters=3, fixed_width=48).apply_to_cpuid(cpuid)
    assert cpuid.query(0xA) == (0x07300402, 0, 0, 0x603)
    assert cpuid.has("pdcm")
    amd = CpuidModel("amd")
    PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True, gp_counters=6).apply_to_cpuid(amd)
    assert amd.has("perfctr_core") and amd.has("perfmon_v2") and amd.query(0x80000022)[1] & 0xF == 6
    with pytest.raises(ValueError, match="cannot be described"):
        PmuConfig().apply_to_cpuid(amd)


def test_from_cpuid_clamps_to_what_we_emulate():
    cpuid = CpuidModel("intel")
    cpuid.set_leaf(0xA, 0, 0x07_30_10_05, 0, 0, 0x30 << 5 | 7)
    config = PmuConfig.from_cpuid(cpuid)
    assert (config.version, config.gp_counters, config.fixed_counters) == (2, 8, 3)
    with pytest.raises(ValueError, match="unknown PMU policy"):
        PmuConfig.from_cpuid(cpuid, bogus=1)


def test_default_cpuid_without_leaf_a_means_no_pmu():
    pmu = Pmu(CpuidModel("intel"), FakeVcpu(), FakeLapic(), FakeClock())
    assert pmu.config.version == 0 and pmu.msr_ranges() == [] and pmu.counters() == []


def test_readme_device_snippet_runs():
    """The README's 'Devices without a guest' example stays true."""
    import contextlib
    import io
    import pathlib
    import re

    readme = (pathlib.Path(__file__).resolve().parent.parent / "README.md").read_text()
    code = re.search(r"## Devices without a guest.*?```python\n(.*?)```", readme, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})
    assert out.getvalue().split() == ["2", "0x1", "1"]


def test_counters_of_a_version_0_pmu_is_empty():
    """Version 0 means no architectural PMU: no GP and no fixed counters, whatever the config lists."""
    from pmu import PmuConfig
    from tests.pmu_fixtures import make_pmu

    pmu, _, _ = make_pmu(PmuConfig(vendor="intel", version=0))
    assert pmu.counters() == []
    assert len(make_pmu(PmuConfig(vendor="intel", version=2))[0].counters()) == 8 + 3
