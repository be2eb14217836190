# SPDX-License-Identifier: GPL-2.0-or-later
"""The engine's stop checks inside translation blocks (vmm/_ucvcpu_exitchecks.pxi): off by default.

With them off no guest load or store carries a stop check, and no code hook either: this layer's
code hooks (every emulated instruction: port I/O, MSRs, CR writes, data breakpoints' traps) leave
the block themselves.  Each case boots a kernel with ``engine_exit_checks`` off and on and compares
everything observable: the serial output (every count, overflow, PMI and fault the kernel saw),
the exit status and the retired instructions.  An emulated instruction the engine also ran natively
would show twice (an OUT's byte on the serial port, a WRMSR's effect).  The one difference is
documented: a stop asked for by an MMIO access ends the run at its block's end with the checks off.
"""

from __future__ import annotations

import io

import pytest

import firmware
from devices.registry import DeviceSpec
from vmm.machine import Machine, MachineConfig


def boot(image: str, checks: bool, cmdline: str = "", **config) -> tuple[Machine, tuple]:
    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=cmdline, timeout=120, **config))
    for cpu in machine.cpus:
        assert cpu.vcpu.engine_exit_checks is False       # the default
        cpu.vcpu.engine_exit_checks = checks
    machine.load(image)
    result = machine.run()
    return machine, (result.status, result.reason, result.instructions, result.serial)


def both(kernel: str, cmdline: str = "", **config) -> tuple:
    image = str(firmware.image(kernel))
    _, off = boot(image, False, cmdline, **config)
    _, on = boot(image, True, cmdline, **config)
    assert off == on
    return off


@pytest.mark.parametrize("kernel", ["pmu_count", "pmu_msr", "usermode", "syscall_modes", "lapic_timer", "lapic_irq",
                                    "uart_irq", "code_patch", "debug_traps", "exceptions", "pc_testdev"])
def test_kernels_run_the_same_without_the_checks(kernel):
    out = both(kernel, devices=[DeviceSpec("pc-testdev")] if kernel == "pc_testdev" else [])
    assert out[:2] == (1, "debug-exit"), out[3].decode(errors="replace")


def test_sampling_pmis_with_time_slices_run_the_same():
    out = both("bench", "op=alu n=100000 counters=sample period=7777", smp=2, quantum=10007)
    assert out[0] == 1 and b"pmis=" in out[3]


def test_smp_and_paging_kernels_run_the_same():
    assert both("smp_pmu", smp=4)[0] == 1
    assert b"PASS" in both("sieve", "n=65536 reps=2")[3]
