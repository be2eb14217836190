# SPDX-License-Identifier: GPL-2.0-or-later
"""Bulk retirement of self-loops (vmm/_ucvcpu_counting.pxi, bulk_retire) against one-by-one runs.

Each case runs the same loop on a bare 64-bit engine twice, with ``bulk_loops`` on and off, and
compares everything observable: the counter register, RFLAGS, RIP and the retired count where the
run stops (HLT after the loop, the instruction limit mid-loop), the state seen at every attention
(timer deadlines, PMIs, stops) and the PMU's counters and overflow status.  The bulk run must also
have retired iterations in bulk (else the comparison would prove nothing).
"""

from __future__ import annotations

import pytest
import unicorn
from unicorn import x86_const as uxc

from pmu import PmuConfig
from pmu._core import PmuCore
from vmm._ucvcpu import UcVcpu

CODE = 0x1000
HLT = b"\xf4"
EN, INT, USR, OS = 1 << 22, 1 << 20, 1 << 16, 1 << 17
PERFEVTSEL0, PMC0, FIXED_CTR0, FIXED_CTR_CTRL, GLOBAL_STATUS, GLOBAL_CTRL = 0x186, 0x4C1, 0x309, 0x38D, 0x38E, 0x38F
GLOBAL_OVF_CTRL = 0x390
REGS = ("RAX", "RCX", "RDX", "R9", "RIP", "RFLAGS")
UPPER = 0xDEAD_BEEF_0000_0000

#: name -> (loop bytes, instructions per iteration, counter register, its width)
LOOPS = {
    "loop": (b"\xe2\xfe", 1, "RCX", 64),
    "loop_ecx": (b"\x67\xe2\xfd", 1, "RCX", 32),
    "dec_rcx_jnz": (b"\x48\xff\xc9\x75\xfb", 2, "RCX", 64),
    "dec_ecx_jnz": (b"\xff\xc9\x75\xfc", 2, "RCX", 32),
    "dec_cx_jnz": (b"\x66\xff\xc9\x75\xfb", 2, "RCX", 16),
    "dec_r9_jnz32": (b"\x49\xff\xc9\x0f\x85\xf7\xff\xff\xff", 2, "R9", 64),
}


def upper(bits: int) -> int:
    """Bits above a narrower counter: the loop must keep (16-bit) or clear (32-bit) them as the engine does."""
    return UPPER if bits < 64 else 0


class Run:
    """One engine with the hook layer; ``trace`` collects what every attention saw."""

    def __init__(self, code: bytes, bulk: bool, regs: dict[str, int], pmu: PmuCore | None = None):
        self.uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.uc.mem_map(0, 0x10000)
        self.uc.mem_write(CODE, code + HLT)
        self.vcpu = UcVcpu(self.uc)
        self.vcpu.bulk_loops = bulk
        self.pmu = pmu
        if pmu is not None:
            self.vcpu.attach_pmu(pmu)
        for name, value in regs.items():
            self.uc.reg_write(getattr(uxc, f"UC_X86_REG_{name}"), value)
        self.uc.reg_write(uxc.UC_X86_REG_RIP, CODE)
        self.trace: list[tuple] = []
        self.step = 0
        self.attentions = 0
        self.stop_after = 0
        self.rearm: dict[int, int] = {}       # PMI: counter MSR -> value written back
        self.vcpu.on_attention = self._attention

    def state(self) -> tuple:
        regs = tuple(self.uc.reg_read(getattr(uxc, f"UC_X86_REG_{r}")) for r in REGS)
        counters = ()
        if self.pmu is not None:
            counters = tuple(self.pmu.read_msr(m) for m in (PMC0, PMC0 + 1, FIXED_CTR0, FIXED_CTR0 + 1, GLOBAL_STATUS))
        return (self.vcpu.retired, *regs, *counters)

    def _attention(self) -> None:
        pmi = self.pmu is not None and self.pmu.take_pmi_request()
        self.trace.append(("attention", pmi, self.vcpu.now(), *self.state()))
        self.attentions += 1
        if pmi:
            # a sampling handler: re-arm the counters that overflowed and clear the status
            status = self.pmu.read_msr(GLOBAL_STATUS)
            for msr, value in self.rearm.items():
                self.pmu.write_msr(msr, value)
            self.pmu.write_msr(GLOBAL_OVF_CTRL, status)
        while self.step and self.vcpu.deadline <= self.vcpu.now():
            self.vcpu.deadline += self.step
        if self.stop_after and self.attentions >= self.stop_after:
            self.vcpu.request_stop("enough")

    def run(self) -> list[tuple]:
        ex = self.vcpu.run(timeout=60)
        self.trace.append((ex.kind.name, *self.state()))
        return self.trace


def both(code: bytes, regs: dict[str, int], setup=None, pmu_setup=None) -> tuple[list, list, int]:
    """Run ``code`` one by one and in bulk; returns both traces and the bulk run's bulk iterations."""
    traces = []
    for bulk in (False, True):
        pmu = None
        if pmu_setup is not None:
            pmu = PmuCore()
            pmu.configure(PmuConfig(vendor="intel"))
        run = Run(code, bulk, regs, pmu)
        if pmu_setup is not None:
            pmu_setup(run)
        if setup is not None:
            setup(run)
        traces.append(run.run())
        if not bulk:
            assert run.vcpu.bulk_iterations == 0
    return traces[0], traces[1], run.vcpu.bulk_iterations


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("count", [1, 2, 3, 0x8005, 100_000])
def test_loop_to_completion_matches(name, count):
    code, _, reg, bits = LOOPS[name]
    regs = {reg: upper(bits) | count, "RFLAGS": 0x3}        # CF set: DEC must keep it
    one, bulk, k = both(code, regs)
    assert one == bulk
    assert one[-1][0] == "HLT"
    assert k == (count & ((1 << bits) - 1)) - 1       # 100000 does not fit in CX


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("limit", [1, 2, 5, 9, 10, 11, 12, 2 * 0x8000 - 3, 2 * 0x8000, 2 * 0x8000 + 1, 77_777])
def test_instruction_limit_mid_loop_matches(name, limit):
    code, per_iter, reg, bits = LOOPS[name]
    regs = {reg: upper(bits) | 0x8005, "RFLAGS": 0x3}

    def setup(run):
        run.vcpu.max_insns = limit

    one, bulk, k = both(code, regs, setup)
    assert one == bulk
    if limit < 0x8005 * per_iter:
        assert one[-1][0] == "STOPPED"
        assert limit <= one[-1][1] < limit + per_iter      # the limit is checked at block boundaries
    else:
        assert one[-1][0] == "HLT"
    if limit > 12:
        assert k > 0


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("step", [1, 3, 1000, 4099])
def test_timer_deadlines_mid_loop_match(name, step):
    """Every deadline (a timer, the end of an SMP time slice) is seen at the same instruction with
    the same registers."""
    code, _, reg, _ = LOOPS[name]
    regs = {reg: 5000 if step < 10 else 50_000, "RFLAGS": 0x2}

    def setup(run):
        run.step = step
        run.vcpu.deadline = step + 7

    one, bulk, k = both(code, regs, setup)
    assert one == bulk
    assert len(one) > 10
    if step > 3:
        assert k > 0


def test_jmp_self_stops_at_deadlines_and_limit():
    def setup(run):
        run.step = 997
        run.vcpu.deadline = 1000
        run.vcpu.max_insns = 123_457

    one, bulk, k = both(b"\xeb\xfe", {"RCX": 5}, setup)
    assert one == bulk
    assert one[-1][0] == "STOPPED" and one[-1][1] == 123_457
    assert k > 100_000


def program(run, sel0: int, preset0: int, sel1: int = 0, preset1: int = 0, fixed_preset: int = 0):
    """GP0 and GP1 with event selects and presets; fixed counter 1 (instructions) with a PMI."""
    pmu = run.pmu
    pmu.write_msr(PERFEVTSEL0, EN | USR | OS | INT | sel0)
    pmu.write_msr(PMC0, preset0)
    run.rearm = {PMC0: preset0}
    if sel1:
        pmu.write_msr(PERFEVTSEL0 + 1, EN | USR | OS | INT | sel1)
        pmu.write_msr(PMC0 + 1, preset1)
        run.rearm[PMC0 + 1] = preset1
    if fixed_preset:
        pmu.write_msr(FIXED_CTR_CTRL, 0xB << 4)      # fixed 1: OS, USR, PMI
        pmu.write_msr(FIXED_CTR0 + 1, fixed_preset)
        run.rearm[FIXED_CTR0 + 1] = fixed_preset
    pmu.write_msr(GLOBAL_CTRL, 3 | (1 << 33))


WIDTH48 = (1 << 48) - 1


@pytest.mark.parametrize("name", LOOPS)
@pytest.mark.parametrize("period", [1, 2, 7, 1000, 33_333])
def test_counter_overflows_and_pmis_mid_loop_match(name, period):
    """Instructions (GP0, zero skid), branches (GP1) and fixed instructions counters overflow
    mid-loop again and again (a sampling handler re-arms them at each PMI): every PMI is seen at the
    same instruction, with the same registers and counts."""
    code, _, reg, _ = LOOPS[name]

    def pmu_setup(run):
        program(run, 0xC0, (WIDTH48 + 1 - period) & WIDTH48, 0xC4, (WIDTH48 + 1 - 3 * period - 1) & WIDTH48,
                fixed_preset=(WIDTH48 + 1 - 2 * period - 3) & WIDTH48)

    count = min(60_000, 100 * period + 500)     # fits in CX
    one, bulk, k = both(code, {reg: count, "RFLAGS": 0x3}, pmu_setup=pmu_setup)
    assert one == bulk
    assert one[-1][0] == "HLT"
    assert sum(1 for t in one if t[0] == "attention" and t[1]) >= min(count // period // 3, 10)
    if period >= 1000:
        assert k > 0


def test_conditional_branch_counter_overflow_matches():
    def pmu_setup(run):
        program(run, 0x1C4, (WIDTH48 + 1 - 12_345) & WIDTH48)       # BR_INST_RETIRED.CONDITIONAL

    one, bulk, k = both(LOOPS["dec_ecx_jnz"][0], {"RCX": 100_000}, pmu_setup=pmu_setup)
    assert one == bulk
    assert [t[0] for t in one].count("attention") == 100_000 // 12_345
    assert k > 0


def test_no_bulk_while_a_cmask_counter_or_branch_misses_run():
    for sel in (0xC0 | (2 << 24), 0xC5):        # instructions with CMASK=2; branch misses
        def pmu_setup(run, sel=sel):
            program(run, sel, 0)

        one, bulk, k = both(LOOPS["loop"][0], {"RCX": 5000}, pmu_setup=pmu_setup)
        assert one == bulk
        assert k == 0


def test_other_loop_shapes_are_not_bulk_retired():
    """A self-loop with anything else in it, or a LOOP with another prefix, runs one by one."""
    for code in (b"\x90\xe2\xfd",                 # 1: nop; loop 1b  (the loop goes to the nop)
                 b"\x48\xe2\xfd",                 # REX.W loop
                 b"\x48\x83\xe9\x01\x75\xfa"):    # sub $1, %rcx; jnz
        one, bulk, k = both(code, {"RCX": 3000})
        assert one == bulk
        assert k == 0


def run_bench_kernel(op: str, bulk: bool, cmdline: str, **config) -> tuple:
    import io

    import firmware
    from vmm.machine import Machine, MachineConfig

    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=f"op={op} {cmdline}", timeout=120, **config))
    for cpu in machine.cpus:
        cpu.vcpu.bulk_loops = bulk
    machine.load(str(firmware.image("bench")))
    result = machine.run()
    lines = [line for line in result.serial.decode().splitlines() if line.startswith(("INFO", "PASS", "FAIL"))]
    return (result.status, result.instructions, lines), sum(cpu.vcpu.bulk_iterations for cpu in machine.cpus)


@pytest.mark.parametrize("op", ["loopdelay", "decloop"])
@pytest.mark.parametrize("smp", [1, 2])
def test_guest_sampling_pmis_and_time_slices_match(op, smp):
    """The bench kernel samples a delay loop (instructions and branches counters with PMIs through
    the LAPIC, re-armed by the guest's handler, IF=1): every PMI lands at the same instruction (its
    checksum folds the interrupted RIP, RCX, the TSC and GLOBAL_STATUS), with 2 vCPUs the time
    slices (10007 instructions) end mid-loop, and the final counts and instruction totals agree."""
    config = {"smp": smp, "quantum": 10007} if smp > 1 else {}
    one, k_one = run_bench_kernel(op, False, "n=300000 counters=sample period=7777", **config)
    bulk, k = run_bench_kernel(op, True, "n=300000 counters=sample period=7777", **config)
    assert one == bulk
    assert k_one == 0 and k > 250_000
    assert one[0] == 1 and any(line.startswith("PASS") for line in one[2])
    pmis = int(next(line for line in one[2] if "pmis=" in line).split("pmis=")[1].split()[0])
    assert pmis > 50


@pytest.mark.parametrize("counters", ["insn_branch", "all"])
def test_guest_delay_loop_counts_match(counters):
    """With every counter running (a branch-miss counter among them) nothing is retired in bulk."""
    one, _ = run_bench_kernel("loopdelay", False, f"n=200000 counters={counters}")
    bulk, k = run_bench_kernel("loopdelay", True, f"n=200000 counters={counters}")
    assert one == bulk
    assert k > 190_000 if counters == "insn_branch" else k == 0


# 32-bit protected-mode code (a multiboot ELF32 entered as a PC boot loader enters it): the one-byte
# DEC, LOOP with 32- and (0x67) 16-bit address size, and a 16-bit DEC, which keep or clear the
# upper bits of RCX as the engine does.
CODE32 = bytes.fromhex(
    "b9 05 80 00 00"      # mov $0x8005, %ecx
    "e2 fe"               # 1: loop 1b            (ECX)
    "b9 05 80 01 00"      # mov $0x18005, %ecx
    "49 75 fd"            # 1: dec %ecx; jnz 1b
    "b9 05 00 cd ab"      # mov $0xabcd0005, %ecx
    "67 e2 fd"            # 1: addr16 loop 1b     (CX)
    "66 b9 03 80"         # mov $0x8003, %cx
    "66 49 75 fc"         # 1: dec %cx; jnz 1b
    "b0 00 e6 f4"         # mov $0, %al; out %al, $0xf4 (debug-exit)
)


def run_code32(bulk: bool, limit: int, tmp_path) -> tuple:
    import io

    from tests.elfgen import Seg, build_elf, multiboot_header
    from vmm.machine import Machine, MachineConfig

    header = multiboot_header()
    image = tmp_path / "loops32.elf"
    image.write_bytes(build_elf([Seg(0x100000, header + CODE32)], entry=0x100000 + len(header), bits=32))
    machine = Machine(MachineConfig(serial=io.BytesIO(), max_insns=limit, timeout=60))
    machine.vcpu.bulk_loops = bulk
    machine.load(str(image))
    result = machine.run()
    engine = machine.cpus[0].engine
    regs = tuple(engine.reg_read(getattr(uxc, f"UC_X86_REG_{r}")) for r in ("RCX", "EFLAGS", "EIP"))
    return (result.reason, result.instructions, *regs), machine.vcpu.bulk_iterations


def test_loops_in_32_bit_code_match(tmp_path):
    _, k_full = run_code32(True, 0, tmp_path)
    assert k_full > 0x8000 + 0x18000
    done = run_code32(False, 0, tmp_path)[0][1]
    for limit in (done - 0x18005 * 2 - 0x8005 - 40, done - 0x18005 * 2 + 7, done - 0x8003 * 2 - 8, done - 2 * 0x7FFF,
                  done - 2 * 0x7FFC + 1, done - 9, done + 5):
        one, _ = run_code32(False, limit, tmp_path)
        bulk, k = run_code32(True, limit, tmp_path)
        assert one == bulk, hex(limit)
