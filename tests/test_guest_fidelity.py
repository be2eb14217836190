# SPDX-License-Identifier: GPL-2.0-or-later
"""x86 corners test kernels check (issue 11): TSC, unmapped physical memory, SYSCALL/SYSENTER, CR/EFER checks."""

from __future__ import annotations

import io

import pytest

import firmware
from tests.guest import assert_all_pass, boot
from vmm.machine import Machine, MachineConfig

# -- TSC: RDTSCP/TSC_AUX, IA32_TSC writes and IA32_TSC_ADJUST ----------------------------------------
TSC_CHECKS = ["RDTSCP returns TSC_AUX", "RDTSCP follows a new TSC_AUX", "TSC_AUX bit 32 -> #GP",
              "TSC_AUX unchanged by the faulting write"]
ADJUST_CHECKS = ["TSC_ADJUST reads 0 before any TSC write", "TSC write forward by ~2^44 adds it to TSC_ADJUST",
                 "TSC write back by ~2^40 subtracts it", "TSC_ADJUST += 2^36 moves the TSC by it",
                 "TSC_ADJUST -= 2^37 moves the TSC back by it", "TSC_ADJUST = 0 takes every adjustment back"]
NO_ADJUST_CHECKS = ["no CPUID TSC_ADJUST: RDMSR 0x3b -> #GP", "no CPUID TSC_ADJUST: WRMSR 0x3b -> #GP"]


def _passed(serial: str, checks: list[str]) -> None:
    for check in checks:
        assert f"PASS: {check}" in serial, (check, serial)


def test_tsc_adjust_and_tsc_aux_on_intel():
    result, serial = boot("msr")
    assert_all_pass(result, serial)
    _passed(serial, TSC_CHECKS + ADJUST_CHECKS)


@pytest.mark.parametrize("config", [{"cpu": "amd"}, {"cpuid_features": {"tsc_adjust": False}}])
def test_tsc_adjust_is_a_gp_without_its_cpuid_bit(config):
    result, serial = boot("msr", **config)
    assert_all_pass(result, serial)
    _passed(serial, TSC_CHECKS + NO_ADJUST_CHECKS)


def test_each_vcpu_has_its_own_tsc_offset_and_adjust():
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, smp=2))
    machine.load(str(firmware.image("msr")))
    result = machine.run()
    assert_all_pass(result, result.serial.decode())
    bsp, ap = (cpu.vcpu for cpu in machine.cpus)
    # Every TSC offset comes from a write to the TSC or to TSC_ADJUST, each moving both by the same
    # amount; msr.c ends with TSC_ADJUST = 0.  The AP (never started) saw none of the BSP's writes.
    assert bsp.tsc_adjust == bsp.tsc_offset == 0
    assert ap.tsc_adjust == ap.tsc_offset == 0
    bsp.tsc_adjust = 5
    assert ap.tsc_adjust == 0
    assert machine.cpus[0].cpuid.has("tsc_adjust") and machine.cpus[1].cpuid.has("tsc_adjust")


def test_tsc_aux_is_the_engines_msr():
    machine = Machine(MachineConfig(serial=io.BytesIO()))
    vcpu = machine.vcpu
    vcpu.tsc_aux = 0x1_2345_6789
    assert vcpu.tsc_aux == 0x2345_6789
    assert machine.engine.msr_read(0xC0000103) == 0x2345_6789
    machine.engine.msr_write(0xC0000103, 7)
    assert vcpu.tsc_aux == 7
