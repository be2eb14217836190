# SPDX-License-Identifier: GPL-2.0-or-later
"""Boot-to-exit time of hello64 and hello32: the CLI process, in-process, and QEMU TCG side by side.

* CLI: ``python -m vmm run firmware/bin/helloNN.elf`` as a child process, from spawn to exit
  (interpreter start-up, imports, machine set-up, boot, the kernel, exit): its wall time, and its
  CPU time (user + system, from the child's rusage), which a loaded machine disturbs less.
* start-up alone: ``python -c "import vmm.machine"`` as a child process (interpreter plus the
  imports a machine needs; the CLI's own modules and the run are not in it).
* in-process: ``Machine(MachineConfig(serial=BytesIO()))``, ``load``, ``run`` in this process.
* QEMU: ``qemu-system-x86_64 -accel tcg -kernel firmware/bin/hello32.elf -device
  isa-debug-exit,iobase=0xf4,iosize=0x4 -serial stdio -display none`` (hello32 only: QEMU's
  -kernel loads multiboot ELF32 images, not plain ELF64), skipped when qemu-system-x86_64 is
  not on PATH.  Its time includes QEMU's own firmware (SeaBIOS) boot.  Each repetition runs the
  hello32 CLI and QEMU one right after the other, so both see the same load; the CPU-time ratio
  VMM/QEMU is taken per repetition (target <= 1.0, issue 10).

Every CLI run must end with status 0 (the guest's debug-exit value 0, all passed); under QEMU any
debug-exit status is accepted (hello32 checks mem_lower == 640 KiB, which SeaBIOS reports as 639).

Before timing, the project's bytecode is brought up to date (``bench.common.ensure_bytecode``,
compileall of the installed packages): a child process then starts as it would from an installed
package, not paying to compile stale modules on every run when PYTHONDONTWRITEBYTECODE is set.

Run: ``python -m bench.bench_boot [--quick]``.
"""

from __future__ import annotations

import io
import resource
import shutil
import subprocess
import sys
import time

from bench.common import FIRMWARE, ROOT, Figure, Stat, ensure_bytecode, verdict

KERNELS = ("hello64", "hello32")


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _timed(cmd: list[str], any_exit: bool = False) -> tuple[float, float]:
    """(wall, CPU) seconds of cmd; it must end with status 0 (or, any_exit, any QEMU debug-exit status: odd)."""
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    wall = time.perf_counter() - start
    if proc.returncode != 0 and not (any_exit and proc.returncode & 1):
        raise RuntimeError(f"{' '.join(cmd)}: status {proc.returncode}\n{proc.stderr.decode(errors='replace')}")
    return wall, _children_cpu() - cpu


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


def _cli(kernel: str) -> list[str]:
    return [sys.executable, "-m", "vmm", "run", str(FIRMWARE / "bin" / f"{kernel}.elf")]


def figures(quick: bool = False) -> list[Figure]:
    reps = 3 if quick else 5
    qemu_cmd = qemu_command("hello32")
    ensure_bytecode()
    startup = [_timed([sys.executable, "-c", "import vmm.machine"]) for _ in range(reps)]
    runs: dict[str, list[tuple[float, float]]] = {"hello64": [], "hello32": [], "qemu": []}
    for _ in range(reps):
        runs["hello64"].append(_timed(_cli("hello64")))
        runs["hello32"].append(_timed(_cli("hello32")))
        if qemu_cmd is not None:
            runs["qemu"].append(_timed(qemu_cmd, any_exit=True))
    out = [Figure("python start-up + import vmm.machine, ms", Stat([w for w, _ in startup]).fmt(1e3, 0), "", "info"),
           Figure("python start-up + import vmm.machine, CPU ms", Stat([c for _, c in startup]).fmt(1e3, 0), "",
                  "info")]
    for kernel in KERNELS:
        inproc = Stat([_in_process(kernel) for _ in range(reps)])
        out.append(Figure(f"{kernel}: CLI process boot-to-exit, ms", Stat([w for w, _ in runs[kernel]]).fmt(1e3, 0),
                          "", "info"))
        out.append(Figure(f"{kernel}: CLI process boot-to-exit, CPU ms",
                          Stat([c for _, c in runs[kernel]]).fmt(1e3, 0), "", "info"))
        out.append(Figure(f"{kernel}: in-process Machine+load+run, ms", inproc.fmt(1e3, 1), "", "info"))
    if qemu_cmd is None:
        out.append(Figure("hello32: qemu-system-x86_64 -accel tcg, ms", "not on PATH", "", "skip"))
        return out
    out.append(Figure("hello32: qemu-system-x86_64 -accel tcg, ms", Stat([w for w, _ in runs["qemu"]]).fmt(1e3, 0),
                      "", "info"))
    out.append(Figure("hello32: qemu-system-x86_64 -accel tcg, CPU ms",
                      Stat([c for _, c in runs["qemu"]]).fmt(1e3, 0), "", "info"))
    ratio = Stat([vmm[1] / qemu[1] for vmm, qemu in zip(runs["hello32"], runs["qemu"], strict=True)])
    out.append(Figure("hello32 boot-to-exit CPU time, VMM CLI / QEMU TCG", ratio.fmt(1.0, 2), "<= 1.0",
                      verdict(ratio.median <= 1.0)))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
