# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot-contract kernels from firmware/ on the real machine: every check inside must pass."""

from __future__ import annotations

import pytest

from tests.guest import assert_all_pass, boot

BOOT_KERNELS = ["hello64", "hello32", "boot64", "exceptions", "usermode", "iobitmap", "fwcfg", "serial",
                "msr", "vmware"]


@pytest.mark.parametrize("kernel", BOOT_KERNELS)
def test_kernel_passes(kernel):
    result, serial = boot(kernel, cmdline="test=1")
    assert_all_pass(result, serial)


@pytest.mark.parametrize("kernel", ["msr", "exceptions", "usermode"])
def test_kernel_passes_on_amd(kernel):
    result, serial = boot(kernel, cpu="amd")
    assert_all_pass(result, serial)


def test_hello64_sees_command_line_and_module():
    result, serial = boot("hello32", cmdline="alpha beta", initrd=b"NR_CPUS=1\nFOO=bar\n")
    assert_all_pass(result, serial)
    assert "hello32.elf alpha beta" in serial
    assert "FOO=bar" in serial


def test_same_kernel_same_instruction_count_every_run():
    counts = {boot("exceptions")[0].instructions for _ in range(3)}
    assert len(counts) == 1


def test_triple_fault_is_a_clean_shutdown_with_serial_intact():
    result, serial = boot("shutdown")
    assert result.reason == "shutdown"
    assert result.status == 125
    assert "triple fault" in result.detail
    assert "about to triple fault" in serial


def test_hlt_with_interrupts_off_is_halted_forever():
    result, serial = boot("shutdown", cmdline="halt")
    assert (result.reason, result.status) == ("halted", 126)
    assert "halting with interrupts off" in serial


def test_instruction_limit_stops_the_guest():
    result, _ = boot("serial", max_insns=20_000)
    assert result.reason == "limit"
    assert 20_000 <= result.instructions < 21_000


@pytest.mark.parametrize("enabled,expected", [(False, "#UD (not supported)"), (True, "honoured")])
def test_forced_emulation_prefix(enabled, expected):
    result, serial = boot("exceptions", forced_emulation=enabled)
    assert_all_pass(result, serial)
    assert f"INFO: forced emulation prefix: {expected}" in serial


def test_run_before_load_is_a_clear_error():
    from vmm.errors import VmmError
    from vmm.machine import Machine

    with pytest.raises(VmmError, match="before Machine.load"):
        Machine().run()


def test_bad_machine_config_is_a_clear_error():
    from vmm.errors import VmmError
    from vmm.machine import Machine, MachineConfig

    for config in (MachineConfig(memory=1 << 20), MachineConfig(memory=(3 << 30) + 4096), MachineConfig(smp=0),
                   MachineConfig(smp=65), MachineConfig(smp=2, quantum=0)):
        with pytest.raises(VmmError):
            Machine(config)


def test_access_beyond_ram_under_strict_memory_is_a_clean_vmm_error_with_serial_intact():
    result, serial = boot("shutdown", cmdline="wild", strict_memory=True)
    assert (result.reason, result.status) == ("error", 70)
    assert "unmapped physical memory at 0xc0000000" in result.detail
    assert "reading beyond RAM" in serial


def test_access_beyond_ram_reads_all_ones():
    result, serial = boot("shutdown", cmdline="wild")
    assert "read 0xffffffff beyond RAM" in serial and "FAIL: still running" in serial
    assert (result.reason, result.status) == ("debug-exit", 3)


def test_a_timeout_too_long_for_one_engine_entry_still_runs():
    result, serial = boot("hello64", timeout=1e300)
    assert (result.reason, result.status) == ("debug-exit", 1), serial


def test_an_mmio_device_over_guest_ram_is_refused_with_a_clear_error(monkeypatch):
    import vmm.board
    import vmm.machine
    from devices.device import BusRange, Device
    from devices.registry import DeviceSpec
    from vmm.errors import VmmError
    from vmm.machine import Machine, MachineConfig

    class OnRam(Device):
        name = "on-ram"

        def __init__(self, ctx):
            self.ctx = ctx

        def bus_ranges(self):
            return [BusRange("mmio", 0x100000, 0x1000)]

    real = vmm.machine.device_class
    lookup = lambda name: OnRam if name == "on-ram" else real(name)     # noqa: E731
    monkeypatch.setattr(vmm.machine, "device_class", lookup)
    monkeypatch.setattr(vmm.board, "device_class", lookup)
    with pytest.raises(VmmError, match="on-ram: range 0x100000\\+0x1000 overlaps guest RAM"):
        Machine(MachineConfig(devices=[DeviceSpec("on-ram", {})]))
