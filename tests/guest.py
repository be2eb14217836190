# SPDX-License-Identifier: GPL-2.0-or-later
"""Helpers for guest-level tests: boot one of our firmware kernels in-process or through the CLI."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import firmware
from vmm.machine import Machine, MachineConfig

ROOT = Path(__file__).resolve().parent.parent
SUMMARY = re.compile(rb"^SUMMARY: (\d+) tests(?:, (\d+) unexpected failures)?(?:, (\d+) skipped)?", re.M)


def boot(kernel: str, **config):
    """Run a bundled kernel in-process; returns (RunResult, serial text)."""
    config.setdefault("timeout", 60)
    machine = Machine(MachineConfig(serial=io.BytesIO(), **config))
    machine.load(str(firmware.image(kernel)))
    result = machine.run()
    return result, result.serial.decode(errors="replace")


def boot_with(kernel: str, switch: str, on: bool, cmdline: str = "", **config) -> tuple[tuple, int]:
    """((status, reason, instructions, serial), slow-path block hooks) of one in-process boot with
    every vCPU's attribute ``switch`` (a vCPU-layer switch: fast_blocks, fast_rep, ...) set to ``on``."""
    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=cmdline, timeout=120, **config))
    for cpu in machine.cpus:
        setattr(cpu.vcpu, switch, on)
    machine.load(str(firmware.image(kernel)))
    result = machine.run()
    return (result.status, result.reason, result.instructions, result.serial), \
        sum(cpu.vcpu.slow_blocks for cpu in machine.cpus)


def boot_both_ways(kernel: str, switch: str, cmdline: str = "", **config) -> tuple[tuple, int, int]:
    """Boot ``kernel`` with ``switch`` on and off; everything observable must be the same.  Returns
    (status, reason, instructions, serial) and the slow-path block hooks of each run (on, off)."""
    on, slow_on = boot_with(kernel, switch, True, cmdline, **config)
    off, slow_off = boot_with(kernel, switch, False, cmdline, **config)
    assert on == off
    return on, slow_on, slow_off


def assert_all_pass(result, serial: str) -> None:
    """The kernel ran to SUMMARY with no failures and exited through debug-exit with status 0."""
    failures = [line for line in serial.splitlines() if line.startswith(("FAIL", "XPASS"))]
    assert not failures, serial
    assert SUMMARY.search(serial.encode()), serial
    assert (result.reason, result.status) == ("debug-exit", 1), (result, serial)


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vmm", *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=timeout)
