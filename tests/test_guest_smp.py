# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side SMP tests: firmware/kernels/smp_*.c with 1 to 8 vCPUs, both vendors.

smp_boot brings the APs up with INIT + SIPI through its own real-mode trampoline and checks what
each AP saw; smp_ipi checks IPI delivery between the vCPUs' LAPICs; smp_pmu checks that every vCPU
has its own PMU (exact counts on each CPU while the others run, PMIs to the right LAPIC); smp_cmc
checks cross-modifying code (a vCPU runs another's rewritten code after serializing).  The
kernels decide pass/fail; these tests also check the lines that show the run covered every CPU,
and that runs are deterministic.
"""

from __future__ import annotations

import re

import pytest

from pmu.config import PmuConfig
from tests.guest import assert_all_pass, boot


def _lines(serial: str, pattern: str) -> list[str]:
    return [line for line in serial.splitlines() if re.match(pattern, line)]


@pytest.mark.parametrize("cpu", ["intel", "amd"])
@pytest.mark.parametrize("smp", [1, 2, 4, 8])
def test_smp_boot(smp, cpu):
    result, serial = boot("smp_boot", smp=smp, cpu=cpu)
    assert_all_pass(result, serial)
    assert f"PASS: MADT: {smp} enabled local APICs == fw_cfg NB_CPUS {smp}" in serial, serial
    assert f"PASS: MADT: APIC IDs are 0..{smp - 1}" in serial, serial
    assert "PASS: BSP: LAPIC ID 0, CPUID.1 APIC ID 0, both 0" in serial, serial
    if smp == 1:
        assert "SKIP: AP start-up: one CPU" in serial, serial
        return
    for ap in range(1, smp):
        assert f"PASS: CPU {ap} (APIC ID {ap}) online after INIT, SIPI, SIPI" in serial, serial
        assert f"PASS: CPU {ap} first start: started 1 time(s), expected 1" in serial, serial
        assert f"PASS: CPU {ap} first start: real mode at CS 0x800 (want 0x800)" in serial, serial
        assert re.search(rf"^PASS: CPU {ap} after broadcast: started \d+ time\(s\)", serial, re.M), serial
    assert "PASS: SIPI to a running CPU is ignored" in serial, serial
    assert "PASS: INIT stops a running CPU" in serial, serial
    assert "PASS: SIPI vector 0x9 restarts the CPU after INIT" in serial, serial
    assert "PASS: CPU 1 after INIT: real mode at CS 0x900 (want 0x900)" in serial, serial
    assert "PASS: all-but-self INIT + SIPI vector 0xa: every AP online again" in serial, serial


def test_smp_boot_with_polling_aps():
    """APs that poll their mailbox instead of sleeping in HLT: the same checks pass."""
    result, serial = boot("smp_boot", smp=4, cmdline="poll=1")
    assert_all_pass(result, serial)
    assert "INFO: 4 CPUs, APs idle by polling" in serial, serial


@pytest.mark.parametrize("cpu", ["intel", "amd"])
@pytest.mark.parametrize("smp", [1, 2, 4])
def test_smp_ipi(smp, cpu):
    result, serial = boot("smp_ipi", smp=smp, cpu=cpu)
    assert_all_pass(result, serial)
    assert f"PASS: {smp} of {smp} CPUs online" in serial, serial
    everyone = ",".join(str(i) for i in range(smp))
    assert f"PASS: BSP all-including-self shorthand: vector 0x33 taken by CPUs {{{everyone}}}" in serial, serial
    assert f"PASS: NMI all-including-self: NMI taken by CPUs {{{everyone}}}" in serial, serial
    assert len(_lines(serial, r"PASS: xAPIC ping-pong with CPU \d+: 50/50 round trips")) == smp - 1, serial
    assert len(_lines(serial, r"PASS: x2APIC ping-pong with CPU \d+: 10/10 round trips")) == smp - 1, serial
    assert len(_lines(serial, r"PASS: CPU \d+ sleeps in sti; hlt \(1\) until a fixed IPI wakes it")) == smp - 1
    assert "PASS: x2APIC physical destination 0x100 + ID (not truncated to 8 bits)" in serial, serial
    if smp > 1:
        assert "PASS: NMI reaches CPU 1 spinning with IF=0" in serial, serial
        assert "PASS: BSP in sti; hlt woken by CPU 1's IPI (IPI 1, timer 0)" in serial, serial


def test_smp_ipi_without_x2apic_and_polling():
    result, serial = boot("smp_ipi", smp=4, cmdline="poll=1 rounds=20", cpuid_features={"x2apic": False})
    assert_all_pass(result, serial)
    assert "SKIP: x2APIC IPIs: x2APIC not advertised" in serial, serial
    assert len(_lines(serial, r"PASS: xAPIC ping-pong with CPU \d+: 20/20 round trips")) == 3, serial


PMU_SHAPES = {
    "intel": PmuConfig(vendor="intel"),
    "intel-v1": PmuConfig(vendor="intel", version=1, fixed_counters=0),
    "amd": PmuConfig(vendor="amd"),
    "amd-perfmon-v2": PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True),
}


@pytest.mark.parametrize("shape", list(PMU_SHAPES))
@pytest.mark.parametrize("smp", [1, 2, 4])
def test_smp_pmu(smp, shape):
    config = PMU_SHAPES[shape]
    result, serial = boot("smp_pmu", smp=smp, cpu=config.vendor, pmu=config, cmdline="n=200000")
    assert_all_pass(result, serial)
    assert f"PASS: {smp} of {smp} CPUs online" in serial, serial
    exact = _lines(serial, r"PASS: CPU \d+: N \d+: instructions (\d+) == 9N\+6 = \1, branches (\d+) == N")
    assert len(exact) == smp, serial
    assert len(_lines(serial, r"PASS: every CPU overflows: CPU \d+ .* 1 PMI\(s\) \(want 1\)")) == smp, serial
    if smp > 1:
        assert len(_lines(serial, r"PASS: CPU \d+'s run \[\d+, \d+\] overlaps the BSP's")) == smp - 1, serial
        only_last = re.findall(r"^PASS: only the last CPU overflows: CPU (\d+) .*, (\d) PMI\(s\)", serial, re.M)
        assert len(only_last) == smp and [cpu for cpu, pmis in only_last if pmis == "1"] == [str(smp - 1)], serial
        assert re.search(r"^PASS: CPU \d+'s counter across sti; hlt while the BSP retires", serial, re.M), serial
        assert re.search(r"^PASS: BSP counts exactly .* while CPU \d+ toggles its own", serial, re.M), serial


@pytest.mark.parametrize("kernel, cmdline", [("smp_boot", ""), ("smp_ipi", "rounds=20"), ("smp_pmu", "n=100000")])
@pytest.mark.parametrize("smp", [2, 4])
def test_smp_runs_are_deterministic(kernel, cmdline, smp):
    """Five runs with the same configuration give byte-identical serial output (TSC values, the
    CPU lowest-priority IPIs chose, PMU counts and all)."""
    outputs = []
    for _ in range(5):
        result, serial = boot(kernel, smp=smp, cmdline=cmdline)
        assert_all_pass(result, serial)
        outputs.append(serial)
    assert all(out == outputs[0] for out in outputs[1:]), [out for out in outputs if out != outputs[0]][:1]


@pytest.mark.parametrize("smp, cpu", [(1, "intel"), (2, "intel"), (4, "amd")])
def test_smp_cmc_cross_modifying_code_is_seen_after_an_iret_to_itself(smp, cpu):
    """One vCPU rewrites code another already ran; the other runs the new code once it serializes
    (the IRET-to-itself idiom of Linux's sync_core), as the SDM's cross-modifying-code rule asks."""
    result, serial = boot("smp_cmc", smp=smp, cpu=cpu)
    assert_all_pass(result, serial)
    assert "PASS: self-modifying code: the writer runs its new code at once" in serial
    for ap in range(1, smp):
        assert f"PASS: CPU {ap} after an IRET to itself runs the new code ({20 + ap})" in serial, serial
    if smp == 1:
        assert "SKIP: cross-modifying code: needs a second CPU" in serial
