# SPDX-License-Identifier: GPL-2.0-or-later
"""The engine's stop checks inside translation blocks (vmm/_ucvcpu_exitchecks.pxi): off by default.

With them off no guest load or store carries a stop check, and no code hook either: this layer's
code hooks (every emulated instruction: port I/O, MSRs, CR writes, data breakpoints' traps) leave
the block themselves.  Each case boots a kernel with ``engine_exit_checks`` off and on and compares
everything observable: the serial output (every count, overflow, PMI and fault the kernel saw),
the exit status and the retired instructions.  An emulated instruction the engine also ran natively
would show twice (an OUT's byte on the serial port, a WRMSR's effect).  The one difference is
documented: a stop asked for by an MMIO access ends the run at its block's end with the checks off.
"""

from __future__ import annotations

import io

import pytest
from unicorn import x86_const as uxc

from devices.pc_testdev import IOMEM_BASE, PcTestdev
from devices.registry import DeviceSpec
from tests.elfgen import Seg, build_elf
from tests.guest import boot_both_ways
from vmm.machine import Machine, MachineConfig


def both(kernel: str, cmdline: str = "", **config) -> tuple:
    return boot_both_ways(kernel, "engine_exit_checks", cmdline, **config)[0]


def test_the_checks_are_off_by_default():
    assert Machine(MachineConfig()).cpus[0].vcpu.engine_exit_checks is False


@pytest.mark.parametrize("kernel", ["pmu_count", "pmu_msr", "usermode", "syscall_modes", "lapic_timer", "lapic_irq",
                                    "uart_irq", "code_patch", "debug_traps", "exceptions", "pc_testdev"])
def test_kernels_run_the_same_without_the_checks(kernel):
    out = both(kernel, devices=[DeviceSpec("pc-testdev")] if kernel == "pc_testdev" else [])
    assert out[:2] == (1, "debug-exit"), out[3].decode(errors="replace")


def test_sampling_pmis_with_time_slices_run_the_same():
    out = both("bench", "op=alu n=100000 counters=sample period=7777", smp=2, quantum=10007)
    assert out[0] == 1 and b"pmis=" in out[3]


def test_smp_and_paging_kernels_run_the_same():
    assert both("smp_pmu", smp=4)[0] == 1
    assert b"PASS" in both("sieve", "n=65536 reps=2")[3]


STORE_INC_INC = b"\xa2" + IOMEM_BASE.to_bytes(8, "little") + b"\x48\xff\xc3" * 2   # movabs %al; inc %rbx x2
HLT = b"\xf4"
JMP_BACK = b"\xeb" + bytes([-(len(STORE_INC_INC) + 2) & 0xFF])    # to the store


def run_stores(tmp_path, code: bytes, checks: bool, stop_at: int) -> tuple[str, int, int, int]:
    """(reason, RIP, RBX, instructions) of ``code`` at 0x400000, the pc-testdev's ``stop_at``-th
    write (0: none) ending the run."""
    image = tmp_path / "stores.elf"
    image.write_bytes(build_elf([Seg(0x400000, code)], entry=0x400000))
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, devices=[DeviceSpec("pc-testdev")]))
    machine.cpus[0].vcpu.engine_exit_checks = checks
    testdev = next(d for d in machine.devices if isinstance(d, PcTestdev))
    writes = []

    def write(access, value):
        writes.append(value)
        if len(writes) == stop_at:
            machine.platform.stop("debug-exit", 3)

    testdev.write = write
    machine.load(str(image))
    result = machine.run()
    return (result.reason, machine.engine.reg_read(uxc.UC_X86_REG_RIP), machine.engine.reg_read(uxc.UC_X86_REG_RBX),
            result.instructions)


def test_a_stop_asked_for_by_an_mmio_store_ends_the_run_at_the_end_of_its_block(tmp_path):
    """Store, INC, INC, HLT; the store ends the run.  With the checks off the block runs on to its
    end: RIP, RBX and the count are those of a run whose store stops nothing (which ends halted).
    With them on the engine stops at the store and rolls back to it: nothing of the block retired."""
    code = STORE_INC_INC + HLT
    reason, rip, rbx, halted_count = run_stores(tmp_path, code, False, 0)
    assert (reason, rip, rbx) == ("halted", 0x400000 + len(code), 2)
    assert run_stores(tmp_path, code, False, 1) == ("debug-exit", rip, 2, halted_count)
    assert run_stores(tmp_path, code, True, 1) == ("debug-exit", 0x400000, 0, halted_count - 4)


def test_a_stop_asked_for_by_an_mmio_store_in_a_loop_counts_what_ran(tmp_path):
    """loop: store, INC, INC, JMP loop; the fifth store ends the run.  Off: the fifth iteration
    runs to its end (RBX 10) and the block hook of the sixth, which the fast path takes, commits
    nothing of it.  On: the fifth store is rolled back (RBX 8), none of its iteration retires."""
    before_loop = run_stores(tmp_path, STORE_INC_INC + HLT, False, 0)[3] - 4     # the entry code's
    assert run_stores(tmp_path, STORE_INC_INC + JMP_BACK, False, 5) == ("debug-exit", 0x400000, 10, before_loop + 20)
    assert run_stores(tmp_path, STORE_INC_INC + JMP_BACK, True, 5) == ("debug-exit", 0x400000, 8, before_loop + 16)
