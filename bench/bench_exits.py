# SPDX-License-Identifier: GPL-2.0-or-later
"""Exit round trips: OUT, intercepted MSRs and RDPMC, each versus a plain register instruction.

Each op is one loop of the bench kernel (firmware/kernels/bench.c): ``op; dec %rsi; jnz`` run N
times, timed in-process between the kernel's two marker OUTs.  In the same repetition the same
loop runs with ``mov %rax, %rdx`` in place of the op (``plain``).  Per-op cost =
(wall(op loop) - wall(plain loop)) / N, in microseconds; "x plain" is wall(op loop) / wall(plain
loop), the loop with the op against the same loop with a register instruction.

Ops: OUT to the unowned port 0x80 (answered in the vCPU layer: no device owns it) and to the UART
scratch register 0x3FF (through the Python bus to the UART), RDMSR of IA32_PERFCTR0 (0xC1) and
WRMSR of IA32_PERFEVTSEL0 (0x186) (the PMU's C fast path), RDMSR of IA32_APIC_BASE (0x1B, read
from the LAPIC's C field), RDPMC 0 (the
engine's #UD path, emulated in C) and CPUID leaf 1 (its loop also sets EAX and ECX each
iteration: two more register instructions than ``plain``).

Run: ``python -m bench.bench_exits [--quick]``.
"""

from __future__ import annotations

from bench.common import Figure, loop_costs, verdict

#: op -> (description, target per-op cost in us)
OPS = {
    "out": ("OUT port 0x80 (unowned)", 1.0),
    "out_uart": ("OUT UART scratch 0x3FF", 1.0),
    "rdmsr_pmc": ("RDMSR 0xC1 PERFCTR0 (PMU)", 0.5),
    "wrmsr_evtsel": ("WRMSR 0x186 EVTSEL0 (PMU)", 0.5),
    "rdmsr_apicbase": ("RDMSR 0x1B APIC_BASE (LAPIC C path)", 1.0),
    "rdpmc": ("RDPMC 0", 0.2),
    "cpuid": ("CPUID leaf 1", 0.3),
}


def figures(quick: bool = False) -> list[Figure]:
    n = 30_000 if quick else 200_000
    per_iter, cost, _ = loop_costs(list(OPS), n, 3 if quick else 5)
    plain = per_iter["plain"].median
    out = [Figure("plain register insn loop, us/iteration", per_iter["plain"].fmt(1e6, 3), "", "info")]
    for op, (what, target) in OPS.items():
        c = cost[op]
        out.append(Figure(f"{what}, us/op (x plain)",
                          f"{c.fmt(1e6, 3)} ({per_iter[op].median / plain:.0f}x)",
                          f"<= {target}", verdict(c.median * 1e6 <= target)))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
