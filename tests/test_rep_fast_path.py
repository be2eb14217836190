# SPDX-License-Identifier: GPL-2.0-or-later
"""The block hook's case for REP string iterations (vmm/_ucvcpu.pyx, UcVcpu.on_block) against the
slow path.

A REP string instruction re-enters its own one-instruction block once per iteration and retires
once.  With ``fast_rep`` on, those re-entries take a short case of the fast path; off, each goes
through on_block_slow as before.  Each case boots a guest both ways and compares everything it can
observe: exit status and reason, the retired instruction total and the serial output, which carries
every count, the PMI checksum (interrupted RIP and RCX, TSC, GLOBAL_STATUS), how many PMIs came
between two iterations of a REP and a checksum of the buffers the REPs wrote.  The run with the case
on must also have left the REP iterations to it (else the comparison would prove nothing).
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

from devices.registry import DeviceSpec
from tests.guest import boot_both_ways, boot_with


def run(kernel: str, fast_rep: bool, cmdline: str = "", **config) -> tuple[tuple, int]:
    return boot_with(kernel, "fast_rep", fast_rep, cmdline, **config)


def both(kernel: str, cmdline: str = "", **config) -> tuple[tuple, int, int]:
    return boot_both_ways(kernel, "fast_rep", cmdline, **config)


def info(out: tuple, name: str) -> int:
    return int(re.search(rf"\b{name}=(\d+)", out[3].decode()).group(1))


@pytest.mark.parametrize("op", ["rep_stosb", "rep_movsb"])
@pytest.mark.parametrize("counters", ["none", "insn_branch", "all"])
def test_rep_loops_match(op, counters):
    """200 REPs of 1000 iterations each: with no counter and with instructions and branches counted
    (their counts pending across the iterations) the case takes nearly every iteration; with all
    counters (a branch-miss counter: the PMU needs every block as it retires) none of the loop's."""
    out, slow_fast, slow_all = both("bench", f"op={op} n=200 len=1000 counters={counters}")
    assert out[0] == 1, out[3].decode(errors="replace")
    assert slow_all > 200 * 999
    assert slow_fast < slow_all // 10 if counters != "all" else slow_fast > 200 * 999


@pytest.mark.parametrize("op", ["rep_stosb", "rep_movsb"])
@pytest.mark.parametrize("smp", [1, 2])
def test_instruction_pmis_in_rep_loops_match(op, smp):
    """Instructions and branches counters sampled with PMIs (IF=1), overflowing in the middle of the
    REP loop: on the REP itself, whose PMI then comes between its first two iterations, and on the
    instructions around it; with 2 vCPUs time slices end mid-loop."""
    config = {"smp": smp, "quantum": 10007} if smp > 1 else {}
    out, slow_fast, slow_all = both("bench", f"op={op} n=3000 len=300 counters=sample period=401", **config)
    assert out[0] == 1, out[3].decode(errors="replace")
    assert info(out, "pmis") > 20 and info(out, "pmis_mid_rep") > 0
    assert slow_fast < slow_all // 10


@pytest.mark.parametrize("op", ["rep_stosb", "rep_movsb"])
def test_llc_pmis_between_rep_iterations_match(op):
    """An LLC-reference counter's PMI is raised at the next block boundary, which inside a REP is
    the next iteration's re-entry: the case must leave that one to the slow path (the attention
    flag), so each PMI lands between the same two iterations (RCX in the checksum)."""
    out, slow_fast, slow_all = both("bench", f"op={op} n=20 len=65536 counters=sample_llc period=401")
    assert out[0] == 1, out[3].decode(errors="replace")
    assert info(out, "pmis_mid_rep") > 50
    assert slow_fast < slow_all // 10


@pytest.mark.parametrize("counters", ["none", "insn_branch"])
def test_instruction_limit_in_a_rep_loop_matches(counters):
    """The instruction limit reached in the middle of a loop of REPs (a few neighbouring limits, so
    that some fall on the REP itself): the budget bounds the case as it bounds the fast path."""
    base, _ = run("bench", False, f"op=rep_stosb n=100000 len=50 counters={counters}")
    for extra in range(6):
        limit = base[2] - 200_000 + extra
        fast, _ = run("bench", True, f"op=rep_stosb n=100000 len=50 counters={counters}", max_insns=limit)
        slow, _ = run("bench", False, f"op=rep_stosb n=100000 len=50 counters={counters}", max_insns=limit)
        assert fast == slow
        assert fast[1] == "limit" and limit <= fast[2] < limit + 6, fast[:3]     # (it ends at a block boundary)


@pytest.mark.parametrize("kernel, config", [
    ("pmu_count", {}), ("cpu_features", {"cpu": "skylake-server"}), ("debug_traps", {}),
    ("pc_testdev", {"devices": [DeviceSpec("pc-testdev")]})])
def test_test_kernels_with_reps_match(kernel, config):
    """Test kernels with REP string instructions: REP STOSB counted once among counted instructions
    (pmu_count), forward and backward REP MOVSB (cpu_features), a data breakpoint hit inside a REP
    STOSB (debug_traps), REP OUTSB (pc_testdev)."""
    out, _, _ = both(kernel, **config)
    assert out[0] == 1, out[3].decode(errors="replace")


@pytest.mark.parametrize("bits", [64, 32])
def test_a_timeout_still_ends_a_rep_of_hours_through_the_case(bits):
    """`rep stosb` with RCX = 2^40 (2^32 - 1 in 32-bit code) ends at the run's timeout with the case
    taking its iterations (timed_out_while_still is looked at there too).  In a child process, so a
    regression fails instead of hanging the session."""
    script = textwrap.dedent(f"""
        import io
        from tests import guest_fuzz
        from tests.guest_fuzz import Op
        from vmm.machine import Machine, MachineConfig
        asm = guest_fuzz.Asm({bits})
        count = (1 << 40) if {bits} == 64 else 0xFFFFFFFF
        code = asm.mov_imm(1, count) + asm.mov_imm(7, 0x200000) + b"\\xF3\\xAA"     # rep stosb
        image = guest_fuzz.kernel({bits}, [[Op("raw", (code,))]])
        machine = Machine(MachineConfig(memory=16 << 20, serial=io.BytesIO(), timeout=0.5))
        machine.load(image)
        result = machine.run()
        print(result.reason, result.status, machine.vcpu.slow_blocks)
    """)
    root = pathlib.Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, (str(root), os.environ.get("PYTHONPATH"))))}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=root, env=env)
    assert done.returncode == 0, done.stderr
    reason, status, slow_blocks = done.stdout.split()
    assert (reason, status) == ("timeout", "124")
    assert int(slow_blocks) < 10_000      # the iterations (millions) took the case
