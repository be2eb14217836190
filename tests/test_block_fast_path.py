# SPDX-License-Identifier: GPL-2.0-or-later
"""The block hook's fast path (vmm/_ucvcpu.pyx, UcVcpu.on_block) against every block the slow way.

Each case boots a guest twice, with ``fast_blocks`` on and off, and compares everything it can
observe: the serial output (which carries every count, overflow, PMI checksum and TSC reading the
kernels take), the exit status and the retired instruction total.  The fast run must also have
left most blocks to the fast path (else the comparison would prove nothing).
"""

from __future__ import annotations

import pytest

from tests.guest import boot_both_ways


def both(kernel: str, cmdline: str = "", **config) -> tuple[tuple, int, int]:
    return boot_both_ways(kernel, "fast_blocks", cmdline, **config)


@pytest.mark.parametrize("counters", ["none", "insn_branch", "all"])
def test_alu_loop_counts_match(counters):
    """The ALU loop, one 10-instruction block per iteration: the fast path takes nearly every
    block, except with all counters (a branch-miss counter runs: every block the slow way)."""
    out, slow_fast, slow_all = both("bench", f"op=alu n=100000 counters={counters}")
    assert out[0] == 1
    assert slow_all > 100_000
    assert slow_fast < slow_all // 10 if counters != "all" else slow_fast > 100_000


@pytest.mark.parametrize("op", ["alu", "plain"])
@pytest.mark.parametrize("smp", [1, 2])
def test_sampling_pmis_and_time_slices_match(op, smp):
    """Instructions and branches counters sampled with PMIs through the LAPIC, re-armed by the
    guest's handler (IF=1): every PMI lands on the same instruction (the kernel's checksum folds
    the interrupted RIP, the TSC and GLOBAL_STATUS); with 2 vCPUs time slices end mid-loop."""
    config = {"smp": smp, "quantum": 10007} if smp > 1 else {}
    out, slow_fast, slow_all = both("bench", f"op={op} n=200000 counters=sample period=7777", **config)
    assert out[0] == 1 and b"pmis=" in out[3]
    assert slow_fast < slow_all // 4


@pytest.mark.parametrize("kernel", ["pmu_count", "pmu_rdpmc", "pmu_msr", "usermode", "syscall_modes",
                                    "lapic_timer", "lapic_irq", "code_patch", "debug_traps", "exceptions"])
def test_test_kernels_match(kernel):
    """Counting and overflows at both CPLs, RDPMC, counter MSRs, timers, self-modifying code, data
    breakpoints and faults: the same output either way."""
    out, _, _ = both(kernel)
    assert out[0] == 1, out[3].decode(errors="replace")


def test_smp_pmu_matches():
    out, _, _ = both("smp_pmu", smp=4)
    assert out[0] == 1, out[3].decode(errors="replace")


def test_blocks_with_two_successors_stay_on_the_fast_path():
    """The sieve's inner loops end in conditional branches taken both ways; each block keeps both
    successors (next and alt), so under 3% of its blocks take the slow path (with one link ~6%)."""
    out, slow_fast, slow_all = both("sieve", "n=65536 reps=1")
    assert out[0] == 1 and b"PASS" in out[3]
    assert slow_fast * 33 < slow_all
