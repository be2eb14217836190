# SPDX-License-Identifier: GPL-2.0-or-later
"""Booting Debian 12's cloud kernel with our initramfs: the VMM against QEMU TCG, side by side.

Both run the same bzImage and initramfs (firmware/linux/assets.py) with the same command line,
``console=ttyS0 pmu_vmm.run="true"``: /init prints ``pmu-vmm: init started``, runs ``true`` and
powers off through ACPI S5.  Figures, each over the same repetitions, interleaved VMM/QEMU:

* wall time to the initramfs's first line and to poweroff, and CPU time (user + system of the
  child) to poweroff, for ``python -m vmm run`` and for ``qemu-system-x86_64 -accel tcg -m 256
  -nodefaults -nographic -no-reboot`` (skipped when QEMU is not on PATH); the ratio VMM/QEMU of
  the medians;
* guest instructions of the whole boot and MIPS (in-process run, instruction count from the vCPU);
* determinism: the serial output of three in-process runs, byte for byte.

The assets must be there (``python -m firmware.linux.assets fetch``); without them the figures are
skipped with the reason.

Before timing, the project's bytecode is brought up to date (``bench.common.ensure_bytecode``,
compileall of the installed packages): a child process then starts as it would from an installed
package, not paying to compile stale modules on every run when PYTHONDONTWRITEBYTECODE is set.

Run: ``python -m bench.bench_linux [--quick]``.
"""

from __future__ import annotations

import io
import os
import resource
import shutil
import subprocess
import sys
import time

from bench.common import ROOT, Figure, Stat, ensure_bytecode

COMMAND_LINE = 'console=ttyS0 pmu_vmm.run="true"'
INIT_LINE = b"pmu-vmm: init started"
MEMORY = "256M"
TIMEOUT = 600


def _assets():
    from firmware.linux.assets import AssetsUnavailable, ensure_assets

    try:
        return ensure_assets(), None
    except AssetsUnavailable as reason:
        return None, str(reason)


def _timed_boot(cmd: list[str]) -> tuple[float, float, float]:
    """(wall to the init line, wall to exit, child CPU seconds) of one boot; it must power off (status 0)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    first_line = None
    with subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          stdin=subprocess.DEVNULL) as proc:
        for line in proc.stdout:
            if first_line is None and INIT_LINE in line:
                first_line = time.perf_counter() - start
        status = proc.wait(timeout=TIMEOUT)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if status != 0 or first_line is None:
        raise RuntimeError(f"{' '.join(cmd)}: status {status}, init line {'seen' if first_line else 'not seen'}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return first_line, wall, cpu


def vmm_command(assets) -> list[str]:
    return [sys.executable, "-m", "vmm", "run", str(assets.kernel), "--memory", MEMORY,
            "--initrd", str(assets.initramfs), "--append", COMMAND_LINE, "--timeout", str(TIMEOUT)]


def qemu_command(assets) -> list[str] | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return None
    return [qemu, "-accel", "tcg", "-m", MEMORY, "-nodefaults", "-nographic", "-no-reboot", "-serial", "stdio",
            "-kernel", str(assets.kernel), "-initrd", str(assets.initramfs), "-append", COMMAND_LINE]


def _in_process(assets) -> tuple[bytes, int, float]:
    from vmm.machine import Machine, MachineConfig

    start = time.perf_counter()
    machine = Machine(MachineConfig(memory=256 << 20, serial=io.BytesIO(), cmdline=COMMAND_LINE,
                                    initrd=assets.initramfs.read_bytes(), timeout=TIMEOUT))
    machine.load(str(assets.kernel))
    result = machine.run()
    wall = time.perf_counter() - start
    if result.reason != "poweroff":
        raise RuntimeError(f"in-process boot ended with {result}")
    return result.serial, result.instructions, wall


def figures(quick: bool = False) -> list[Figure]:
    assets, reason = _assets()
    if assets is None:
        return [Figure("Linux boot", f"no assets: {reason}", "", "skip")]
    reps = 1 if quick else 3
    qemu_cmd = qemu_command(assets)
    ensure_bytecode()
    runs: dict[str, list[tuple[float, float, float]]] = {"vmm": [], "qemu": []}
    for _ in range(reps):
        runs["vmm"].append(_timed_boot(vmm_command(assets)))
        if qemu_cmd is not None:
            runs["qemu"].append(_timed_boot(qemu_cmd))
    out = []
    medians = {}
    for who, label in (("vmm", "VMM (python -m vmm run)"), ("qemu", "qemu-system-x86_64 -accel tcg")):
        if not runs[who]:
            out.append(Figure(f"Linux boot, {label}", "not on PATH", "", "skip"))
            continue
        init, wall, cpu = (Stat([r[i] for r in runs[who]]) for i in range(3))
        medians[who] = (init.median, wall.median, cpu.median)
        out.append(Figure(f"Linux boot, {label}: wall to /init's first line, s", init.fmt(1, 2), "", "info"))
        out.append(Figure(f"Linux boot, {label}: wall to poweroff, s", wall.fmt(1, 2), "", "info"))
        out.append(Figure(f"Linux boot, {label}: CPU time to poweroff, s", cpu.fmt(1, 2), "", "info"))
    if len(medians) == 2:
        ratios = [v / q for v, q in zip(medians["vmm"], medians["qemu"], strict=True)]
        out.append(Figure("Linux boot VMM/QEMU ratio: to /init, to poweroff (wall), CPU",
                          " / ".join(f"{r:.2f}" for r in ratios), "<= 1.0",
                          "ok" if ratios[2] <= 1.0 else "MISS"))
    serials, instructions, walls = zip(*(_in_process(assets) for _ in range(3)), strict=True)
    out.append(Figure("Linux boot: guest instructions to poweroff", f"{instructions[0]:,}", "", "info"))
    out.append(Figure("Linux boot: guest MIPS (in-process)", Stat([instructions[0] / w / 1e6 for w in walls]).fmt(1, 1),
                      "", "info"))
    identical = len(set(serials)) == 1 and len(set(instructions)) == 1
    out.append(Figure("Linux boot determinism: 3 runs, serial bytes and instruction counts identical",
                      "yes" if identical else "NO", "yes", "ok" if identical else "MISS"))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    os.environ.setdefault("PYTHONPATH", str(ROOT))
    module_main(figures, __doc__)
