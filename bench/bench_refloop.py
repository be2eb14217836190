# SPDX-License-Identifier: GPL-2.0-or-later
"""The reference-loop kernel (firmware/bin/pmu_count.elf, n=1000000): wall time and determinism.

The kernel runs the reference loop of shared/notes/pmu-semantics.md (10 * N + 17 instructions,
N + 2 branches) many times over: on each GP counter, on all counters at once, from overflow
presets, with a PMI.  Measured in-process: wall time of ``Machine() + load + run`` and
``RunResult.instructions`` (guest instructions of the whole run).  Determinism: the kernel is run
5 times; reported are the spread (max - min) of ``RunResult.instructions`` and the number of
kernel output lines (PASS/FAIL/INFO, which carry every PMU count the kernel read) that are not
identical in all runs.  Both must be 0.

Skipped with a note when pmu_count.elf has not been built.

Run: ``python -m bench.bench_refloop [--quick]``.
"""

from __future__ import annotations

import io
import time

from bench.common import FIRMWARE, Figure, Stat, verdict

KERNEL = FIRMWARE / "bin" / "pmu_count.elf"
N = 1_000_000
RUNS = 5


def run_once() -> tuple[float, int, list[str], int]:
    from vmm.machine import Machine, MachineConfig

    start = time.perf_counter()
    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=f"n={N}"))
    machine.load(str(KERNEL))
    result = machine.run()
    wall = time.perf_counter() - start
    lines = [x for x in result.serial.decode(errors="replace").splitlines() if x.startswith(("PASS", "FAIL", "INFO"))]
    return wall, result.instructions, lines, result.status


def figures(quick: bool = False) -> list[Figure]:
    if not KERNEL.exists():
        return [Figure("reference loop (pmu_count.elf)", "not built", "", "skip")]
    runs = [run_once() for _ in range(RUNS)]
    walls = Stat([r[0] for r in runs])
    insns = [r[1] for r in runs]
    outputs = [r[2] for r in runs]
    differing = sum(len(set(lines)) > 1 for lines in zip(*outputs, strict=False))
    differing += max(len(o) for o in outputs) - min(len(o) for o in outputs)
    passed = sum(line.startswith("PASS") for line in outputs[0])
    failed = sum(line.startswith("FAIL") for line in outputs[0])
    return [
        Figure(f"pmu_count n={N}: in-process wall, s", walls.fmt(digits=3), "", "info"),
        Figure(f"pmu_count n={N}: guest instructions", f"{insns[0]:,}", "", "info"),
        Figure(f"  spread of RunResult.instructions over {RUNS} runs", str(max(insns) - min(insns)), "0",
               verdict(max(insns) == min(insns))),
        Figure(f"  output lines (PMU counts) differing over {RUNS} runs", str(differing), "0", verdict(differing == 0)),
        Figure("  kernel checks (PASS/FAIL)", f"{passed} PASS, {failed} FAIL", "0 FAIL",
               verdict(failed == 0 and all(r[3] == 1 for r in runs))),
    ]


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
