# SPDX-License-Identifier: GPL-2.0-or-later
"""The SMP benchmark's kernel (firmware/kernels/bench_smp.c) and runner (bench/bench_smp.py) at tiny
sizes, so neither rots between benchmark runs: every op completes with --smp 2 and the kernel's
checks pass; the runner sees its two markers and a deterministic instruction count."""

from __future__ import annotations

import pytest

from tests.guest import assert_all_pass, boot

OPS = ["op=alu n=1000", "op=alu n=1001 workers=1", "op=ipi n=5", "op=ipi n=5 wait=hlt", "op=ipi_x2apic n=5",
       "op=ipi_x2apic n=5 wait=hlt"]


@pytest.mark.parametrize("cmdline", OPS)
def test_bench_smp_ops(cmdline):
    result, serial = boot("bench_smp", smp=2, cmdline=cmdline)
    assert_all_pass(result, serial)
    assert "PASS: 2 of 2 CPUs online" in serial, serial
    if "op=alu" in cmdline:
        workers = 1 if "workers=1" in cmdline else 2
        n = 1001 if workers == 1 else 1000
        assert f"PASS: alu: {n} iterations on {workers} CPUs ({workers - 1} APs kicked, {workers - 1} done)" \
            in serial, serial
    else:
        wait = "hlt" if "wait=hlt" in cmdline else "spinning"
        op = cmdline.split()[0].removeprefix("op=")
        assert f"PASS: {op}: 5/5 round trips with CPU 1 (BSP waits by {wait})" in serial, serial
        assert "INFO: tsc_delta=" in serial and "pings=5 pongs=5" in serial, serial


def test_bench_smp_one_cpu():
    """--smp 1: the ALU work runs on the BSP alone; a ping-pong is skipped, not failed."""
    result, serial = boot("bench_smp", smp=1, cmdline="op=alu n=1000")
    assert_all_pass(result, serial)
    assert "PASS: alu: 1000 iterations on 1 CPUs (0 APs kicked, 0 done)" in serial, serial
    result, serial = boot("bench_smp", smp=1, cmdline="op=ipi n=5")
    assert_all_pass(result, serial)
    assert "SKIP: ipi: needs two CPUs" in serial, serial


def test_bench_smp_runner():
    from bench.bench_smp import run_smp

    first = run_smp("ipi_x2apic", 20, 2)
    again = run_smp("ipi_x2apic", 20, 2)
    assert first.insns == again.insns > 20 and first.clock == again.clock, (first, again)
    assert first.switches == again.switches == 40, first      # two per round trip: BSP -> CPU 1 -> BSP
    assert first.info["tsc_delta"] <= first.clock, first
    alu = run_smp("alu", 20_000, 2, quantum=10_000)
    assert alu.insns >= 200_000 and alu.per_cpu[1] >= 100_000 and alu.slices >= 20, alu
