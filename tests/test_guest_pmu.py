# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side PMU tests: firmware/kernels/pmu_*.c on the real machine, both vendors."""

from __future__ import annotations

import pytest

from pmu.config import PmuConfig
from tests.guest import assert_all_pass, boot


@pytest.mark.parametrize("cpu", ["intel", "amd"])
@pytest.mark.parametrize("kernel", ["pmu_msr", "pmu_rdpmc"])
def test_pmu_kernel(kernel, cpu):
    assert_all_pass(*boot(kernel, cpu=cpu))


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_pmu_count_small(cpu):
    result, serial = boot("pmu_count", cpu=cpu, cmdline="n=1000")
    assert_all_pass(result, serial)
    assert "expect 10017 instructions, 1002 branches" in serial


def test_pmu_count_reference_n():
    """The reference measurement: N = 1,000,000 -> exactly 10000017 instructions, 1000002 branches."""
    result, serial = boot("pmu_count", cmdline="n=1000000", timeout=120)
    assert_all_pass(result, serial)
    assert "GP0 instructions 10000017 == 10N+17 = 10000017" in serial
    assert "branches 1000002 == N+2 = 1000002" in serial


def test_pmu_count_is_deterministic():
    """Same kernel, same counts and same instruction total on every run (the spread is 0)."""
    runs = [boot("pmu_count", cmdline="n=20000") for _ in range(3)]
    assert len({r.instructions for r, _ in runs}) == 1
    assert len({s for _, s in runs}) == 1


@pytest.mark.parametrize("cpu,spec", [
    ("intel", dict(version=1, gp_counters=4, fixed_counters=0)),
    ("intel", dict(version=2, gp_counters=2, fixed_counters=1, rdpmc_fast="seed", global_ctrl_reset="seed")),
    ("intel", dict(version=2, pdcm=False, full_width_writes=False)),
    ("amd", dict(perfctr_core=True)),
    ("amd", dict(perfctr_core=True, perfmon_v2=True)),
])
@pytest.mark.parametrize("kernel", ["pmu_msr", "pmu_rdpmc", "pmu_count"])
def test_pmu_kernels_on_other_pmu_shapes(kernel, cpu, spec):
    """The guest sees exactly the configured PMU (CPUID) and every MSR/RDPMC rule holds for it."""
    config = PmuConfig(vendor=cpu, vmware_backdoor=True, **spec)
    result, serial = boot(kernel, cpu=cpu, pmu=config, cmdline="n=1000")
    if kernel == "pmu_count" and spec.get("version") == 1:
        # the reference loop is bracketed by GLOBAL_CTRL writes: everything skipped -> status 38
        assert result.status == 77 and "SKIP: reference loop needs arch perfmon v2" in serial, serial
        return
    assert_all_pass(result, serial)


@pytest.mark.parametrize("cpu,spec", [("intel", {}), ("amd", dict(perfctr_core=True, perfmon_v2=True))])
def test_emulated_and_rep_instructions_count_once_with_forced_emulation(cpu, spec):
    config = PmuConfig(vendor=cpu, vmware_backdoor=True, **spec)
    result, serial = boot("pmu_count", cpu=cpu, pmu=config, cmdline="n=1000 fep=1", forced_emulation=True)
    assert_all_pass(result, serial)
    assert "retire once each (forced emulation prefix): 12 == 12" in serial
