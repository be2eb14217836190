# SPDX-License-Identifier: GPL-2.0-or-later
"""LAPIC costs from guest code: EOI, TPR and timer writes via xAPIC MMIO and x2APIC MSRs, self-IPIs.

Same method as bench_exits: each op is a loop of the bench kernel, ``op; dec %rsi; jnz`` run N
times, timed between the kernel's marker OUTs; per-op cost = (wall(op loop) - wall(plain loop)) / N
with the ``mov %rax, %rdx`` loop of the same repetition.  The register writes are EOI (0xB0 / MSR
0x80B), TPR (0x80 / 0x808) and the timer initial count (0x380 / 0x838, LVT timer masked, a count
far beyond the loop).  The comparison is a plain 32-bit store to a RAM page without code in it:
"x store" = wall(op loop) / wall(store loop), the same loop shape with the store in place of the
LAPIC write.

Self-IPI: with IF=1 the kernel writes the ICR (xAPIC, destination self) or SELF_IPI (x2APIC),
spins until its handler (a bare asm stub: RDTSC, note, EOI, IRETQ) has run, and sums the TSC
deltas between an RDTSC before the write and the handler's RDTSC.  The TSC ticks once per retired
instruction, so delta - (the instructions of the fixed sequence) = guest instructions run after
the write before the handler's first instruction.  Wall per interrupt = per-op cost of the loop
(write, delivery, handler with EOI, IRETQ, the spin and bookkeeping).

Run: ``python -m bench.bench_lapic [--quick]``.
"""

from __future__ import annotations

from bench.common import Figure, loop_costs, verdict

WRITES = {"eoi": "EOI", "tpr": "TPR", "timer": "timer initial count"}


def figures(quick: bool = False) -> list[Figure]:
    n = 30_000 if quick else 200_000
    ops = ["store"] + [f"{w}_{mode}" for w in WRITES for mode in ("mmio", "x2apic")] + ["selfipi", "selfipi_x2apic"]
    per_iter, cost, last = loop_costs(ops, n, 3 if quick else 5)
    store = per_iter["store"].median
    out = [Figure("plain store, us/op (loop us/iteration)",
                  f"{cost['store'].fmt(1e6, 3)} ({per_iter['store'].median * 1e6:.3f})", "", "info")]
    for w, what in WRITES.items():
        for mode, label in (("mmio", "xAPIC MMIO"), ("x2apic", "x2APIC WRMSR")):
            op = f"{w}_{mode}"
            ratio = per_iter[op].median / store
            target, ok = ("<= 10x store", ratio <= 10) if mode == "x2apic" else ("", None)
            out.append(Figure(f"{what} via {label}, us/op (x store)",
                              f"{cost[op].fmt(1e6, 3)} ({ratio:.0f}x)", target,
                              "info" if ok is None else verdict(ok)))
    for op, label in (("selfipi", "xAPIC ICR"), ("selfipi_x2apic", "x2APIC SELF_IPI")):
        info = last[op].info
        gap = info["tsc_sum"] / info["n"] - info["fixed_insns"]
        out.append(Figure(f"self-IPI ({label}) -> handler, guest insns after the write", f"{gap:g}",
                          "", "info"))
        out.append(Figure(f"self-IPI ({label}) round trip, us/interrupt", cost[op].fmt(1e6, 2), "", "info"))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
