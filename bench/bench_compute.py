# SPDX-License-Identifier: GPL-2.0-or-later
"""A compute-bound kernel of ours, firmware/kernels/sieve.c, under the VMM's CLI and QEMU TCG, side by side.

The kernel sieves a byte array of 8 MiB (``n=8388608``), mostly byte stores and loads, with paging
as a real kernel has it (its code on read-only executable pages, everything else NX).  Both run the
same image (ELF32 holding 64-bit code, so QEMU's -kernel loads it):

* VMM: ``python -m vmm run firmware/bin/sieve.elf --append "n=... reps=R"``;
* QEMU: ``qemu-system-x86_64 -accel tcg -kernel firmware/bin/sieve.elf -append ... -device
  isa-debug-exit,iobase=0xf4,iosize=0x4 -serial stdio -display none`` (skipped when it is not on PATH).

Figures, from the CPU time (user + system of the child) of whole processes, each repetition running
VMM reps=1, QEMU reps=1, VMM reps=R, QEMU reps=R one right after the other (so both see the same
load):

* CPU time of a run with R repetitions, each front end, and the ratio VMM/QEMU per repetition
  (target <= 1.5, issue 10);
* CPU time per sieve repetition, (CPU(R) - CPU(1)) / (R - 1): start-up, boot and exit cancel out,
  and its ratio VMM/QEMU;
* the guest's instructions for one sieve repetition (in-process, RunResult.instructions of R and 1).

Every run must print the same ``INFO: sieve ...`` line (count and checksum) and pass.

Before timing, the project's bytecode is brought up to date (``bench.common.ensure_bytecode``,
compileall of the installed packages): a child process then starts as it would from an installed
package, not paying to compile stale modules on every run when PYTHONDONTWRITEBYTECODE is set.
Run: ``python -m bench.bench_compute [--quick]``.
"""

from __future__ import annotations

import io
import re
import resource
import shutil
import subprocess
import sys

from bench.common import FIRMWARE, ROOT, Figure, Stat, ensure_bytecode, verdict

KERNEL = FIRMWARE / "bin" / "sieve.elf"
N = 8 << 20
REPS = 4
TARGET = 1.5


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _cmdline(reps: int) -> str:
    return f"n={N} reps={reps}"


def vmm_command(reps: int) -> list[str]:
    return [sys.executable, "-m", "vmm", "run", str(KERNEL), "--append", _cmdline(reps)]


def qemu_command(reps: int) -> list[str] | None:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        return None
    return [qemu, "-accel", "tcg", "-kernel", str(KERNEL), "-append", _cmdline(reps),
            "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "stdio", "-display", "none"]


def _timed(cmd: list[str], status: int) -> tuple[float, bytes]:
    """(CPU seconds, the INFO line) of cmd, which must exit with ``status`` and pass."""
    cpu = _children_cpu()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL, timeout=600)
    cpu = _children_cpu() - cpu
    info = [line for line in proc.stdout.splitlines() if line.startswith(b"INFO: sieve")]
    if proc.returncode != status or len(info) != 1 or b"PASS:" not in proc.stdout:
        raise RuntimeError(f"{' '.join(cmd)}: status {proc.returncode}\n{proc.stdout.decode(errors='replace')}")
    return cpu, re.sub(rb" reps=\d+", b"", info[0])


def _guest_instructions(reps: int) -> int:
    from vmm.machine import Machine, MachineConfig

    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=_cmdline(reps)))
    machine.load(str(KERNEL))
    result = machine.run()
    assert result.reason == "debug-exit" and result.status == 1, result     # the guest's 0, as (0 << 1) | 1
    return result.instructions


def figures(quick: bool = False) -> list[Figure]:
    if not KERNEL.exists():
        subprocess.run(["make", "-s", "-C", str(FIRMWARE), "bin/sieve.elf"], check=True)
    reps = 3 if quick else 5
    qemu = qemu_command(1) is not None
    ensure_bytecode()
    cpu: dict[tuple[str, int], list[float]] = {(who, r): [] for who in ("vmm", "qemu") for r in (1, REPS)}
    outputs = set()
    for _ in range(reps):
        for r in (1, REPS):
            got, line = _timed(vmm_command(r), 0)
            cpu["vmm", r].append(got)
            outputs.add(line)
            if qemu:
                got, line = _timed(qemu_command(r), 1)      # QEMU's (0 << 1) | 1
                cpu["qemu", r].append(got)
                outputs.add(line)
    per_rep = {who: [(big - one) / (REPS - 1) for one, big in zip(cpu[who, 1], cpu[who, REPS], strict=True)]
               for who in ("vmm", "qemu")}
    insns = _guest_instructions(REPS) - _guest_instructions(1)
    out = [Figure(f"sieve n={N} reps={REPS}: VMM CLI CPU time, s", Stat(cpu["vmm", REPS]).fmt(1, 2), "", "info"),
           Figure("sieve: VMM CPU time per sieve repetition, s", Stat(per_rep["vmm"]).fmt(1, 3), "", "info"),
           Figure("sieve: guest instructions per sieve repetition", f"{insns // (REPS - 1):,}", "", "info")]
    if not qemu:
        out.append(Figure("sieve: qemu-system-x86_64 -accel tcg", "not on PATH", "", "skip"))
    else:
        whole = Stat([v / q for v, q in zip(cpu["vmm", REPS], cpu["qemu", REPS], strict=True)])
        each = Stat([v / q for v, q in zip(per_rep["vmm"], per_rep["qemu"], strict=True)])
        out += [Figure(f"sieve n={N} reps={REPS}: QEMU TCG CPU time, s", Stat(cpu["qemu", REPS]).fmt(1, 2), "", "info"),
                Figure("sieve: QEMU TCG CPU time per sieve repetition, s", Stat(per_rep["qemu"]).fmt(1, 3), "", "info"),
                Figure(f"sieve reps={REPS} CPU time, VMM CLI / QEMU TCG", whole.fmt(1, 2), f"<= {TARGET}",
                       verdict(whole.median <= TARGET)),
                Figure("sieve CPU time per repetition, VMM / QEMU TCG", each.fmt(1, 2), f"<= {TARGET}",
                       verdict(each.median <= TARGET))]
    out.append(Figure("sieve: count and checksum the same in every run (both front ends)",
                      "yes" if len(outputs) == 1 else "NO", "yes", verdict(len(outputs) == 1)))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
