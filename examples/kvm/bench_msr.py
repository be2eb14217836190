# SPDX-License-Identifier: GPL-2.0-or-later
"""MSR exit round trip: the KVM example against our emulated (Unicorn) path; and the cost of a
single-stepped instruction.

Both VMMs boot firmware/bin/bench.elf (firmware/kernels/bench.c): ``op; dec %rsi; jnz`` N times,
timed in-process between the kernel's two OUTs to the marker port 0x4F0; the same loop with
``mov %rax, %rdx`` in place of the op is the baseline.  Per-op cost = (wall(op loop) - wall(plain
loop)) / N.  Ops: RDMSR 0xC1 (PERFCTR0: our PMU; under KVM a filtered MSR -> KVM_EXIT_X86_RDMSR ->
Dispatcher -> MSR bus -> Pmu) and RDMSR 0x1B (APIC_BASE: our LAPIC, same path).  The emulated
numbers come from bench.common.run_bench (the PMU's C fast path in the hook layer for 0xC1, the
Python MSR bus for 0x1B).

"stepped insn" is the plain loop with counters=insn_branch (instructions and branches counted),
so under KVM every guest instruction is single-stepped: wall / (3 N) per instruction.

Run from the repository root: ``PYTHONPATH=examples/kvm .venv/bin/python examples/kvm/bench_msr.py [--quick]``.
Prints one table row per figure: median (min-max) over the repetitions.
"""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(Path(__file__).resolve().parent)]

from pmu_kvm.machine import KvmMachine  # noqa: E402

from bench.common import MARK_PORT, Stat, ensure_bench_kernel, run_bench  # noqa: E402

OPS = {"rdmsr_pmc": "RDMSR 0xC1 PERFCTR0 (PMU)", "rdmsr_apicbase": "RDMSR 0x1B APIC_BASE (LAPIC)"}


class Marker:
    def __init__(self) -> None:
        self.marks: list[float] = []

    def read(self, access):
        return 0

    def write(self, access, value):
        self.marks.append(time.perf_counter())


def kvm_loop(op: str, n: int, counters: str = "none") -> float:
    """Wall seconds of the bench kernel's measured loop under the KVM example."""
    machine = KvmMachine(cmdline=f"op={op} n={n} counters={counters}", console=io.BytesIO())
    try:
        marker = Marker()
        machine.pio.register(MARK_PORT, 1, marker)
        machine.load(str(ensure_bench_kernel()))
        result = machine.run(600)
        if result.reason != "debug-exit" or result.status != 0 or len(marker.marks) != 2:
            raise RuntimeError(f"bench op={op} under KVM: {result}")
        return marker.marks[1] - marker.marks[0]
    finally:
        machine.close()


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    reps = 3 if quick else 7
    n_kvm, n_emu, n_step = (5_000, 30_000, 2_000) if quick else (20_000, 200_000, 10_000)
    rows = []
    for op, what in OPS.items():
        kvm = Stat([(kvm_loop(op, n_kvm) - kvm_loop("plain", n_kvm)) / n_kvm for _ in range(reps)])
        emu = Stat([(run_bench(op, n_emu).wall - run_bench("plain", n_emu).wall) / n_emu for _ in range(reps)])
        rows.append((f"{what}, us/op", kvm.fmt(1e6, 2), emu.fmt(1e6, 3), f"{kvm.median / emu.median:.0f}x"))
    step_kvm = Stat([kvm_loop("plain", n_step, "insn_branch") / (3 * n_step) for _ in range(reps)])
    step_emu = Stat([run_bench("plain", n_emu, "insn_branch").wall / (3 * n_emu) for _ in range(reps)])
    free_kvm = Stat([kvm_loop("plain", n_emu) / (3 * n_emu) for _ in range(reps)])
    rows.append(("counted insn (single-stepped under KVM), us/insn", step_kvm.fmt(1e6, 2), step_emu.fmt(1e6, 4),
                 f"{step_kvm.median / step_emu.median:.0f}x"))
    rows.append(("uncounted insn (KVM runs free), us/insn", free_kvm.fmt(1e6, 5), "", ""))
    header = ("figure", "KVM example", "emulated (Unicorn)", "KVM / emulated")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(4)]
    for k, row in enumerate([header, *rows]):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))
    print(f"({reps} repetitions; KVM N={n_kvm}, stepped N={n_step}, emulated N={n_emu})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
