# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side LAPIC tests: firmware/kernels/lapic_*.c on the real machine, both vendors."""

from __future__ import annotations

import pytest

from devices.registry import DeviceSpec
from tests.guest import assert_all_pass, boot


@pytest.mark.parametrize("cpu", ["intel", "amd"])
@pytest.mark.parametrize("kernel", ["lapic_xapic", "lapic_x2apic", "lapic_timer"])
def test_lapic_kernel(kernel, cpu):
    assert_all_pass(*boot(kernel, cpu=cpu))


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_lapic_irq(cpu):
    # hooks=1: the PMI-style LVTPC delivery through the test hook port must work
    assert_all_pass(*boot("lapic_irq", cpu=cpu, devices=[DeviceSpec("pmu-vmm-test-hooks")], cmdline="hooks=1"))


def test_lapic_irq_without_hooks_skips_the_hook_part():
    result, serial = boot("lapic_irq")
    assert "SKIP: PMI test hook" in serial, serial
    assert_all_pass(result, serial)


def test_lapic_kernels_without_x2apic_and_tsc_deadline():
    """CPUID without x2APIC / TSC-deadline: those modes are refused (#GP) and the kernels skip them."""
    features = {"x2apic": False, "tsc_deadline": False}
    for kernel in ("lapic_xapic", "lapic_x2apic", "lapic_timer"):
        result, serial = boot(kernel, cpuid_features=features)
        assert_all_pass(result, serial)
        if kernel == "lapic_x2apic":
            assert "SKIP: x2APIC not advertised" in serial, serial
        if kernel == "lapic_timer":
            assert "SKIP: TSC-deadline timer not advertised" in serial, serial


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_lapic_enable(cpu):
    assert_all_pass(*boot("lapic_enable", cpu=cpu))


def test_lapic_enable_without_x2apic_skips_the_x2apic_part():
    result, serial = boot("lapic_enable", cpuid_features={"x2apic": False, "tsc_deadline": False})
    assert_all_pass(result, serial)
    assert "SKIP: from x2APIC: x2APIC not advertised" in serial and "TSC_DEADLINE" not in serial, serial
