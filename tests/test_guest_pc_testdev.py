# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side pc-testdev test: firmware/kernels/pc_testdev.c with and without -device pc-testdev."""

from __future__ import annotations

from devices.registry import DeviceSpec
from tests.guest import assert_all_pass, boot


def test_pc_testdev_kernel():
    assert_all_pass(*boot("pc_testdev", devices=[DeviceSpec("pc-testdev")]))


def test_pc_testdev_kernel_with_an_x2apic():
    """Level-triggered EOIs through the x2APIC EOI MSR reach the I/O APIC as through the xAPIC page."""
    result, serial = boot("pc_testdev", devices=[DeviceSpec("pc-testdev")], cmdline="x2apic=1")
    assert_all_pass(result, serial)
    assert "PASS: x2APIC mode for the IRQ tests" in serial
    assert "PASS: irq: EOI with the line high delivers again" in serial


def test_pc_testdev_with_the_test_hooks_too():
    assert_all_pass(*boot("pc_testdev", devices=[DeviceSpec("pc-testdev"), DeviceSpec("pmu-vmm-test-hooks")]))


def test_without_the_device_the_ports_read_all_ones():
    """Its ports read all-ones and so does its memory (unmapped physical memory, as on a PC): the
    data and memory checks fail, and the run ends with the kernel's failure status."""
    result, serial = boot("pc_testdev")
    assert "FAIL: data: 32-bit round trip" in serial, serial
    assert "FAIL: iomem: quadword written" in serial, serial
    assert (result.reason, result.status) == ("debug-exit", 3), (result, serial)


def test_without_the_device_its_memory_stops_a_strict_memory_run():
    result, serial = boot("pc_testdev", strict_memory=True)
    assert "FAIL: data: 32-bit round trip" in serial, serial
    assert result.reason == "error" and "unmapped physical memory at 0xff000" in result.detail, result
