# SPDX-License-Identifier: GPL-2.0-or-later
"""The stock Debian kernel on several vCPUs: bring-up, work on every vCPU, determinism, perf.

Linux starts the application processors itself, as on a PC: it reads them from the MADT, sends
INIT and SIPIs through its LAPIC, and its real-mode trampoline takes each AP to long mode; then
IPIs (reschedule, call-function, TLB shootdowns), per-CPU LAPIC timers and the TSC clocksource run
across vCPUs.  A run is deterministic: the serial output (timestamps included) is the same bytes
every time.  In CI the assets must be there (tests/linux_guest.py).
"""

from __future__ import annotations

import io

import pytest

from devices.registry import DeviceSpec
from firmware.linux import programs
from firmware.linux.initramfs import INIT_STARTED, exit_status, run_parameter
from vmm.machine import STATUS_POWEROFF, Machine, MachineConfig

TIMEOUT = 600
#: What a healthy SMP guest never prints (a stale translation of code another vCPU patched showed up
#: as a perf-core WARNING before IRET-to-self dropped translations).
FORBIDDEN = ("Call Trace", "Kernel panic", "BUG:", "WARNING:", "stall", "TSC synchronization", "unstable")
#: Runs hello pinned to each vCPU in turn and shows what the kernel brought up.
COMMAND = ("cat /sys/devices/system/cpu/online; nproc; "
           "for c in $(seq 0 $(($(nproc) - 1))); do taskset -c $c /bin/hello && echo ran on $c; done")


def boot(assets, cpu: str, smp: int, command: str, initrd: bytes | None = None, devices=()):
    machine = Machine(MachineConfig(memory=256 << 20, cpu=cpu, smp=smp, serial=io.BytesIO(), timeout=TIMEOUT,
                                    cmdline=f"console=ttyS0 {run_parameter(command)}",
                                    initrd=initrd or assets.initramfs.read_bytes(), devices=list(devices)))
    machine.load(str(assets.kernel))
    result = machine.run()
    return result, result.serial.decode(errors="replace")


def assert_brought_up(result, serial: str, smp: int) -> None:
    assert (result.reason, result.status) == ("poweroff", STATUS_POWEROFF), (result, serial[-3000:])
    assert INIT_STARTED in serial and exit_status(serial) == 0, serial[-3000:]
    assert f"smp: Brought up 1 node, {smp} CPUs" in serial
    assert f"smpboot: Total of {smp} processors activated" in serial
    for text in FORBIDDEN:
        assert text not in serial, serial
    lines = serial.splitlines()
    assert f"0-{smp - 1}" in lines and str(smp) in lines
    for c in range(smp):
        assert f"ran on {c}" in lines


@pytest.fixture(scope="module")
def intel_two(linux_assets):
    return boot(linux_assets, "intel", 2, COMMAND)


def test_linux_brings_up_two_vcpus_and_runs_on_each(intel_two):
    assert_brought_up(*intel_two, 2)


def test_an_smp_boot_is_byte_identical_every_time(linux_assets, intel_two):
    _, again = boot(linux_assets, "intel", 2, COMMAND)
    assert again == intel_two[1]


def test_amd_guest_brings_up_four_vcpus(linux_assets):
    assert_brought_up(*boot(linux_assets, "amd", 4, COMMAND), 4)


def test_linux_as_a_kvm_guest_sends_ipis_by_hypercall(linux_assets):
    """With --kvm-pv Linux detects KVM and sends its IPIs (reschedule, call-function, TLB
    shootdowns) through KVM_HC_SEND_IPI: the work still runs on every vCPU."""
    result, serial = boot(linux_assets, "intel", 2, COMMAND, devices=[DeviceSpec("kvm-pv")])
    assert_brought_up(result, serial, 2)
    assert "Hypervisor detected: KVM" in serial and "kvm-guest: setup PV IPIs" in serial, serial[:5000]


def test_perf_counts_a_task_exactly_on_an_smp_guest(linux_assets):
    """A per-task counter follows the workload across context switches and vCPUs: the counts are
    the exact ones of the one-vCPU guest (tests/test_linux_perf.py)."""
    n = 100_000
    command = f"perf stat -x';' -e instructions:u,branches:u workload {n}; " \
              f"taskset -c 1 perf stat -x';' -e instructions:u workload {n}"
    result, serial = boot(linux_assets, "intel", 2, command, linux_assets.perf_initramfs.read_bytes())
    assert (result.reason, exit_status(serial)) == ("poweroff", 0), serial[-3000:]
    assert not [text for text in FORBIDDEN if text in serial], serial
    _, whole = programs.workload_counts(n)
    instructions, branches = whole.instructions + whole.syscalls, whole.branches + whole.syscalls  # SYSCALL is user
    rows = [line.split(";") for line in serial.splitlines()]
    counts = [(int(row[0]), row[2]) for row in rows if len(row) > 2 and row[0].isdigit() and row[2].endswith(":u")]
    assert counts == [(instructions, "instructions:u"), (branches, "branches:u"), (instructions, "instructions:u")], \
        serial[-3000:]
