# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot-to-exit wall time of hello64 and hello32: the CLI process, in-process, and QEMU TCG.

* CLI: ``python -m vmm run firmware/bin/helloNN.elf`` as a child process, wall time from spawn
  to exit (interpreter start-up, imports, machine set-up, boot, the kernel, exit).
* start-up alone: ``python -c "import vmm.machine"`` as a child process (interpreter plus the
  imports the CLI needs before it builds a machine).
* in-process: ``Machine(MachineConfig(serial=BytesIO()))``, ``load``, ``run`` in this process.
* QEMU: ``qemu-system-x86_64 -accel tcg -kernel firmware/bin/hello32.elf -device
  isa-debug-exit,iobase=0xf4,iosize=0x4 -serial stdio -display none`` (hello32 only: QEMU's
  -kernel loads multiboot ELF32 images, not plain ELF64), skipped when qemu-system-x86_64 is
  not on PATH.  Its time includes QEMU's own firmware (SeaBIOS) boot.

Every CLI run must end with status 0 (the guest's debug-exit value 0, all passed); under QEMU any
debug-exit status is accepted (hello32 checks mem_lower == 640 KiB, which SeaBIOS reports as 639).

Run: ``python -m bench.bench_boot [--quick]``.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
import time

from bench.common import FIRMWARE, ROOT, Figure, Stat

KERNELS = ("hello64", "hello32")


def _timed(cmd: list[str], any_exit: bool = False) -> float:
    """Wall time of cmd; it must end with status 0 (or, any_exit, any QEMU debug-exit status: odd)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    wall = time.perf_counter() - start
    if proc.returncode != 0 and not (any_exit and proc.returncode & 1):
        raise RuntimeError(f"{' '.join(cmd)}: status {proc.returncode}\n{proc.stderr.decode(errors='replace')}")
    return wall


def _startup() -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import vmm.machine"], cwd=ROOT, check=True, timeout=60)
    return time.perf_counter() - start


def _in_process(kernel: str) -> float:
    from vmm.machine import Machine, MachineConfig

    start = time.perf_counter()
    machine = Machine(MachineConfig(serial=io.BytesIO()))
    machine.load(str(FIRMWARE / "bin" / f"{kernel}.elf"))
    result = machine.run()
    wall = time.perf_counter() - start
    assert result.status == 1, result
    return wall


def qemu_command(kernel: str) -> list[str] | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return None
    return [qemu, "-accel", "tcg", "-kernel", str(FIRMWARE / "bin" / f"{kernel}.elf"),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "stdio", "-display", "none"]


def figures(quick: bool = False) -> list[Figure]:
    reps = 3 if quick else 5
    out = [Figure("python start-up + import vmm.machine, ms", Stat([_startup() for _ in range(reps)]).fmt(1e3, 0),
                  "", "info")]
    for kernel in KERNELS:
        elf = str(FIRMWARE / "bin" / f"{kernel}.elf")
        cli = Stat([_timed([sys.executable, "-m", "vmm", "run", elf]) for _ in range(reps)])
        inproc = Stat([_in_process(kernel) for _ in range(reps)])
        out.append(Figure(f"{kernel}: CLI process boot-to-exit, ms", cli.fmt(1e3, 0), "", "info"))
        out.append(Figure(f"{kernel}: in-process Machine+load+run, ms", inproc.fmt(1e3, 1), "", "info"))
    cmd = qemu_command("hello32")
    if cmd is None:
        out.append(Figure("hello32: qemu-system-x86_64 -accel tcg, ms", "not on PATH", "", "skip"))
    else:
        qemu = Stat([_timed(cmd, any_exit=True) for _ in range(reps)])
        out.append(Figure("hello32: qemu-system-x86_64 -accel tcg, ms", qemu.fmt(1e3, 0), "", "info"))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
