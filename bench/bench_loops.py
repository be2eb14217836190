# SPDX-License-Identifier: GPL-2.0-or-later
"""Self-looping delay loops with an instructions counter running: wall time and exact counts.

The bench kernel (firmware/kernels/bench.c) runs ``1: loop 1b`` (op ``loopdelay``) or
``1: dec %rcx; jnz 1b`` (op ``decloop``) with RCX = N, the instructions and branches counters
programmed (``counters=insn_branch``), timed in-process between its two marker OUTs.  Reported:
wall seconds scaled to 1e9 iterations, and the counted instructions and branches minus their
loop's share (instructions per iteration x N, N branches), which must be one constant on every
repetition (exactness).

Run: ``python -m bench.bench_loops [--quick]``.
"""

from __future__ import annotations

from bench.common import Figure, Stat, run_bench, verdict

#: op -> (description, instructions per iteration)
LOOPS = {
    "loopdelay": ("loop .", 1),
    "decloop": ("dec %rcx; jnz", 2),
}


def figures(quick: bool = False, n: int | None = None) -> list[Figure]:
    n = n or (10_000_000 if quick else 1_000_000_000)
    reps = 3
    out = []
    for op, (what, per_iter) in LOOPS.items():
        walls: list[float] = []
        extra: set[tuple[int, int]] = set()
        for _ in range(reps):
            loop = run_bench(op, n, "insn_branch")
            walls.append(loop.wall * 1e9 / n)
            extra.add((loop.info["pmc0"] - per_iter * n, loop.info["pmc1"] - n))
        target = "< 1" if op == "loopdelay" else ""
        wall = Stat(walls)
        out.append(Figure(f"1e9-iteration `{what}`, instructions+branches counted, s (N={n:.0e})", wall.fmt(digits=4),
                          target, verdict(wall.median < 1) if target else "info"))
        out.append(Figure(f"  counted instructions - {per_iter}N, branches - N (every rep)",
                          ", ".join(f"{a}/{b}" for a, b in sorted(extra)), "one constant", verdict(len(extra) == 1)))
    return out


if __name__ == "__main__":
    import argparse

    from bench.common import print_table

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("-n", type=int, help="iterations per loop (default 1e9; 1e7 with --quick)")
    args = parser.parse_args()
    print_table(figures(args.quick, args.n))
