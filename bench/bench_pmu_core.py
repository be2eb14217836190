# SPDX-License-Identifier: GPL-2.0-or-later
"""Benchmark: 100k PMU MSR operations through the compiled core versus the pure-Python reference model.

The same fixed, seeded sequence (event-select writes, counter reads and writes, GLOBAL_CTRL
toggles, a few reserved-bit writes that fault) is replayed on ``pmu._core.PmuCore`` through its
Python-level wrappers (read_msr / write_msr: what the MSR-bus facade calls, so each operation
still pays one Python call) and on ``pmu.reference.ReferencePmu``.  Both end in the same state,
which is checked.  The vCPU hook layer calls the C methods directly and pays less than measured here.

Run: ``python -m bench.bench_pmu_core``.
"""

from __future__ import annotations

import random
import time

from pmu import PmuConfig
from pmu._core import PmuCore
from pmu.reference import ReferencePmu

OPS = 100_000
EN_OS_USR = (1 << 22) | (3 << 16)


def make_ops(n: int = OPS, seed: int = 1) -> list[tuple[bool, int, int]]:
    """``(is_write, msr, value)`` for an Intel v2 PMU with 8 GP and 3 fixed counters."""
    rng = random.Random(seed)
    ops = []
    for _ in range(n):
        r = rng.random()
        i = rng.randrange(8)
        if r < 0.25:
            code = rng.choice([0xC0, 0x3C, 0xC4, 0x4F2E])
            junk = (1 << 21) if rng.random() < 0.02 else 0
            ops.append((True, 0x186 + i, EN_OS_USR | code | junk | (rng.random() < 0.5) << 20))
        elif r < 0.45:
            ops.append((True, 0xC1 + i, rng.getrandbits(32)))
        elif r < 0.70:
            ops.append((False, rng.choice([0xC1 + i, 0x4C1 + i, 0x309 + i % 3, 0x38E]), 0))
        elif r < 0.85:
            ops.append((True, 0x38F, rng.getrandbits(8) | (rng.getrandbits(3) << 32)))
        elif r < 0.95:
            ops.append((True, 0x38D, rng.choice([0, 0x333, 0xBBB, 0x111])))
        else:
            ops.append((True, 0x390, rng.getrandbits(8)))
    return ops


def run(model, ops) -> float:
    read, write = model.read_msr, model.write_msr
    start = time.perf_counter()
    for is_write, msr, value in ops:
        if is_write:
            write(msr, value, False)
        else:
            read(msr, False)
    return time.perf_counter() - start


def measure(ops) -> tuple[float, float]:
    """Seconds for ops on (the compiled core, the reference model), after checking they agree."""
    config = PmuConfig()
    core = PmuCore()
    core.configure(config)
    ref = ReferencePmu(config)
    t_core = run(core, ops)
    t_ref = run(ref, ops)
    for msr in [*range(0xC1, 0xC9), *range(0x186, 0x18E), 0x38D, 0x38E, 0x38F]:
        assert core.read_msr(msr) == ref.read_msr(msr), f"models disagree on MSR {msr:#x}"
    return t_core, t_ref


def figures(quick: bool = False) -> list:
    """For ``python -m bench``: the speed-up, median of a few repetitions."""
    from bench.common import Figure, Stat

    ops = make_ops(OPS // 5 if quick else OPS)
    times = [measure(ops) for _ in range(3 if quick else 5)]
    core = Stat([len(ops) / t for t, _ in times])
    speedup = Stat([r / c for c, r in times])
    return [Figure("PMU core MSR ops/s, compiled (Python-level wrappers)", core.fmt(1e-6, 2, " M"), "", "info"),
            Figure("  compiled core vs pure-Python reference, x faster", speedup.fmt(digits=1), "", "info")]


def main() -> None:
    ops = make_ops()
    t_core, t_ref = measure(ops)
    print(f"{len(ops)} MSR operations, Intel v2 PMU (8 GP + 3 fixed counters)")
    print(f"compiled core (Python-level wrappers): {len(ops) / t_core:12,.0f} ops/s")
    print(f"pure-Python reference model:           {len(ops) / t_ref:12,.0f} ops/s")
    print(f"speed-up: {t_ref / t_core:.1f}x")


if __name__ == "__main__":
    main()
