# SPDX-License-Identifier: GPL-2.0-or-later
"""A stock Debian 12 kernel on the VMM: boot to user space, run a command, power off.

The kernel and busybox come from Debian packages fetched by firmware/linux/assets.py (never
committed); the initramfs holds our /init and static test programs.  Each test boots the real
kernel through its bzImage entry with ACPI, the IOAPIC, the PIT, the RTC and the UART's interrupts,
so a failure anywhere in the platform shows here.  In CI the assets must be there (tests/linux_guest.py).
"""

from __future__ import annotations

import io
import subprocess
import sys

import pytest

from firmware.linux.initramfs import INIT_STARTED, exit_status, run_parameter
from tests.guest import ROOT
from vmm.machine import STATUS_POWEROFF, Machine, MachineConfig

COMMAND = "uname -sr; /bin/hello; grep -m1 vendor_id /proc/cpuinfo"
TIMEOUT = 300


def cmdline(command: str) -> str:
    return f"console=ttyS0 {run_parameter(command)}"


def boot_linux(assets, cpu: str, command: str = COMMAND):
    machine = Machine(MachineConfig(memory=256 << 20, cpu=cpu, serial=io.BytesIO(), timeout=TIMEOUT,
                                    cmdline=cmdline(command), initrd=assets.initramfs.read_bytes()))
    machine.load(str(assets.kernel))
    result = machine.run()
    return result, result.serial.decode(errors="replace")


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_linux_boots_to_user_space_runs_a_command_and_powers_off(linux_assets, cpu):
    result, serial = boot_linux(linux_assets, cpu)
    assert (result.reason, result.status) == ("poweroff", STATUS_POWEROFF), (result, serial[-3000:])
    assert INIT_STARTED in serial
    assert "Linux 6.1." in serial and "hello: static glibc program running" in serial
    assert exit_status(serial) == 0
    vendor = {"intel": "GenuineIntel", "amd": "AuthenticAMD"}[cpu]
    assert f"vendor_id\t: {vendor}" in serial
    assert "ACPI: PM: Preparing to enter system sleep state S5" in serial
    # The platform Linux found: ACPI tables, the IOAPIC timer path, the UART on IRQ 4, our RTC epoch.
    assert "ACPI: Using IOAPIC for interrupt routing" in serial
    assert "..MP-BIOS bug" not in serial and "Kernel panic" not in serial
    assert "ttyS0 at I/O 0x3f8 (irq = 4" in serial
    assert "setting system clock to 2026-01-01T00:00:" in serial


def test_intel_guest_knows_its_tsc_frequency_and_sees_the_pmu(linux_assets):
    result, serial = boot_linux(linux_assets, "intel", "dmesg | grep -E 'tsc:|Performance Events|perfmon'")
    assert result.reason == "poweroff", serial[-3000:]
    assert "tsc: Detected 1000.000 MHz processor" in serial
    assert "Performance Events:" in serial and "Intel PMU driver" in serial
    # CPUID 0x15/0x16 give the TSC and crystal: no PIT/HPET calibration, no delay-loop calibration.
    assert "TSC calibration" not in serial and "Fast TSC calibration" not in serial
    assert "Calibrating delay loop (skipped)" in serial


def test_a_failing_command_reports_its_status(linux_assets):
    result, serial = boot_linux(linux_assets, "intel", "exit 7")
    assert result.reason == "poweroff"
    assert exit_status(serial) == 7


def test_the_same_kernel_boots_through_its_pvh_entry(linux_assets, tmp_path_factory):
    """The vmlinux inside the bzImage, loaded as an ELF: the PVH note's 32-bit entry with hvm_start_info."""
    from firmware.linux.vmlinux import vmlinux_file
    from vmm.linux_boot import find_pvh_entry

    vmlinux = vmlinux_file(linux_assets.kernel, tmp_path_factory.mktemp("pvh") / "vmlinux")
    assert find_pvh_entry(vmlinux.read_bytes()) is not None
    machine = Machine(MachineConfig(memory=256 << 20, serial=io.BytesIO(), timeout=TIMEOUT,
                                    cmdline=cmdline("cat /proc/cmdline"), initrd=linux_assets.initramfs.read_bytes()))
    boot = machine.load(str(vmlinux))
    assert boot.kind == "pvh"
    result = machine.run()
    serial = result.serial.decode(errors="replace")
    assert (result.reason, exit_status(serial)) == ("poweroff", 0), serial[-3000:]
    # The command line arrives exactly as given (no multiboot-style argv[0]), in the log and in /proc/cmdline.
    assert f"Command line: {cmdline('cat /proc/cmdline')}\r\n" in serial
    assert f"\n{cmdline('cat /proc/cmdline')}\r\n" in serial


def test_boot_is_byte_identical_in_process_and_through_the_cli(linux_assets):
    """Determinism: the same kernel, initrd and options give the same serial bytes, timestamps included."""
    _, serial = boot_linux(linux_assets, "intel")
    cli = subprocess.run([sys.executable, "-m", "vmm", "run", str(linux_assets.kernel), "--memory", "256M",
                          "--initrd", str(linux_assets.initramfs), "--append", cmdline(COMMAND),
                          "--timeout", str(TIMEOUT)], cwd=ROOT, capture_output=True, timeout=TIMEOUT + 60)
    assert cli.returncode == STATUS_POWEROFF, cli.stderr.decode()
    assert cli.stdout.decode(errors="replace") == serial
