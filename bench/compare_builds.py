# SPDX-License-Identifier: GPL-2.0-or-later
"""The ALU loop of bench/bench_mips.py in two built trees, interleaved: does a change cost anything?

    python -m bench.compare_builds OTHER_TREE [--n N] [--reps R]

    python -m bench.compare_builds OTHER_TREE --clock cpu    # CPU time: robust to other processes

    python -m bench.compare_builds OTHER_TREE --split         # one process per counters setting

Each repetition runs, in a fresh process per tree and alternating which tree goes first, bare
Unicorn and then the VMM on the bench kernel's ALU loop (no counter, then instructions+branches
counters), and takes the ratio VMM/bare within that process, so load that changes between
processes cancels out.  A second VMM run in one process tends to be a few per cent slower than the
first, whichever it is; ``--split`` gives each counters setting a process of its own (bare Unicorn
measured again in each).  Printed: each tree's ratios as median (min-max) and the median of the
per-repetition quotients this tree / other tree (1.00 = no cost).  Both trees must be built
(``setup.py build_ext --inplace``, ``make -C firmware``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from bench.common import Stat

HERE = Path(__file__).resolve().parent.parent
COUNTERS = ("none", "insn_branch")
_MEASURE = """
import json, sys, time
if sys.argv[2] == "cpu":    # time the loops in this thread's CPU time: other processes' load does not count
    time.perf_counter = time.thread_time
from bench.bench_mips import INSNS_PER_ITER, alu_loop_bytes, bare_mips
from bench.common import run_bench
n = int(sys.argv[1])
address, code = alu_loop_bytes()
bare = bare_mips(address, code, 5 * n)
out = {}
for counters in sys.argv[3].split(","):
    loop = run_bench("alu", n, counters)
    mips = INSNS_PER_ITER * n / loop.wall / 1e6
    out[counters] = (mips, mips / bare)
print(json.dumps(out))
"""


def measure(tree: Path, n: int, clock: str, counters: tuple[str, ...]) -> dict[str, list[float]]:
    """{counters: [VMM MIPS, VMM/bare]} of one process in ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    proc = subprocess.run([sys.executable, "-c", _MEASURE, str(n), clock, ",".join(counters)], cwd=tree, env=env,
                          capture_output=True, text=True, timeout=600, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("other", type=Path, help="the other built tree (e.g. a worktree of the base commit)")
    parser.add_argument("--n", type=int, default=5_000_000, help="loop iterations per run (10 instructions each)")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="time the loops in wall time (as bench_mips) or in the thread's CPU time")
    parser.add_argument("--split", action="store_true", help="one process per counters setting")
    args = parser.parse_args(argv)
    trees = {"this": HERE, "other": args.other.resolve()}
    runs: dict[str, dict[str, list[list[float]]]] = {t: {c: [] for c in COUNTERS} for t in trees}
    for rep in range(args.reps):
        order = list(trees) if rep % 2 == 0 else list(reversed(trees))
        for name in order:
            for group in ([(c,) for c in COUNTERS] if args.split else [COUNTERS]):
                for counters, value in measure(trees[name], args.n, args.clock, group).items():
                    runs[name][counters].append(value)
    print(f"{args.reps} interleaved repetitions, N={args.n:g}, {args.clock} time{', split' if args.split else ''}; "
          "median (min-max)")
    for counters in COUNTERS:
        for k, what in ((0, "VMM MIPS"), (1, "VMM/bare")):
            this = [run[k] for run in runs["this"][counters]]
            other = [run[k] for run in runs["other"][counters]]
            quotient = Stat([a / b for a, b in zip(this, other, strict=True)])
            print(f"ALU loop {what}, counters={counters}: this {Stat(this).fmt(digits=3)}, "
                  f"other {Stat(other).fmt(digits=3)}, this/other {quotient.fmt(digits=3)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
