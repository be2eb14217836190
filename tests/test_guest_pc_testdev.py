# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side pc-testdev test: firmware/kernels/pc_testdev.c with and without -device pc-testdev."""

from __future__ import annotations

from devices.registry import DeviceSpec
from tests.guest import assert_all_pass, boot


def test_pc_testdev_kernel():
    assert_all_pass(*boot("pc_testdev", devices=[DeviceSpec("pc-testdev")]))


def test_pc_testdev_with_the_test_hooks_too():
    assert_all_pass(*boot("pc_testdev", devices=[DeviceSpec("pc-testdev"), DeviceSpec("pmu-vmm-test-hooks")]))


def test_without_the_device_the_ports_read_all_ones():
    result, serial = boot("pc_testdev")
    assert "FAIL: data: 32-bit round trip" in serial, serial
    assert "PASS" not in serial and result.reason == "error", (result, serial)
