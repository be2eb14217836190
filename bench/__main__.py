# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench [--quick] [--only NAME ...]``: run every benchmark and print one table.

Each row is a figure: its value as the median of the repetitions with their spread (min-max),
the target it is held to (if any) and the verdict (ok / MISS against the target; info when
there is no target; skip when the measurement could not be made here).  The modules, in order:

* bench_mips     guest MIPS of an ALU loop, VMM vs bare Unicorn (no counter / 2 / all counters)
* bench_exits    OUT, PMU MSRs, a Python-bus MSR, RDPMC and CPUID, per-op cost vs a register insn
* bench_loops    `loop .` and `dec; jnz` delay loops with counters: wall time per 1e9 iterations, exactness
* bench_lapic    EOI / TPR / timer writes via xAPIC MMIO and x2APIC MSRs vs a store; self-IPIs
* bench_boot     hello64 / hello32 boot-to-exit: CLI process, in-process, QEMU TCG
* bench_compute  a sieve kernel of ours (stores and loads, NX data pages): CPU time, VMM CLI vs QEMU TCG
* bench_refloop  the reference-loop kernel: wall time, instruction count, determinism
* bench_pmu_core the compiled PMU core vs the pure-Python reference model
* bench_linux    Debian's kernel to /init and poweroff: VMM vs QEMU TCG, MIPS, determinism
* bench_linux_perf perf in that guest: exact perf stat counts over 5 runs, wall time with perf off /
                 perf stat / perf record, samples per second of guest time, wall time per PMI
* bench_smp      --smp N: aggregate guest MIPS at N = 1, 2, 4 on the same total work, the cost of a
                 vCPU switch, the quantum's effect, IPI ping-pong round trips between two vCPUs

``--quick`` uses fewer iterations and repetitions (about half a minute in all); the default run
takes a few minutes.  The numbers of this machine are in docs/figures.md.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time

from bench.common import Figure, print_table

MODULES = ("bench_mips", "bench_exits", "bench_loops", "bench_lapic", "bench_boot", "bench_compute", "bench_refloop",
           "bench_pmu_core", "bench_linux", "bench_linux_perf", "bench_smp")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="Run the benchmarks and print a table.")
    parser.add_argument("--quick", action="store_true", help="fewer iterations and repetitions")
    parser.add_argument("--only", nargs="+", choices=MODULES, metavar="NAME", help=f"some of: {', '.join(MODULES)}")
    args = parser.parse_args(argv)

    import unicorn

    print(f"# {platform.node()}: {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"unicorn {unicorn.__version__}, {'quick' if args.quick else 'full'} run", flush=True)
    figures: list[Figure] = []
    for name in args.only or MODULES:
        start = time.perf_counter()
        module = importlib.import_module(f"bench.{name}")
        got = module.figures(args.quick)
        figures += got
        print(f"# {name}: {len(got)} figures in {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print_table(figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
