# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest MIPS of a tight ALU loop: the whole VMM versus bare Unicorn running the same bytes.

The loop is ``bench_alu_loop`` in firmware/lib/alu_loop.S: 8 register ALU instructions plus
``dec %rcx; jnz`` = 10 instructions per iteration, one translation block.  Measured:

* bare Unicorn: the loop's bytes (``bench_alu_loop`` .. ``bench_alu_loop_end``, read from the
  built ELF with pyelftools) mapped into a fresh ``Uc(UC_ARCH_X86, UC_MODE_64)`` with no hooks,
  RCX = 5 * N (it is that much faster), ``emu_start(loop, loop_end)``;
* the VMM: the bench kernel booted in-process with ``op=alu n=N``, timed between the kernel's
  two marker OUTs (so boot and exit are excluded), with no counter, with the instructions and
  branches counters programmed, and with all 8 GP counters (cycles, instructions, reference
  cycles, LLC references/misses, branches, branch misses) plus the 3 fixed counters.

MIPS = 10 * N / wall time.  Repetitions alternate bare and VMM runs; a ratio is computed per
repetition.  With counters on, the kernel's counted instructions minus 10 * N (the instructions
of the set-up around the loop) is reported as an exactness check: it must be the same constant
every time.

Run: ``python -m bench.bench_mips [--quick]``.
"""

from __future__ import annotations

import time

import unicorn
from elftools.elf.elffile import ELFFile
from unicorn import x86_const as uxc

from bench.common import Figure, Stat, ensure_bench_kernel, run_bench, verdict

INSNS_PER_ITER = 10


def alu_loop_bytes() -> tuple[int, bytes]:
    """(address, code) of bench_alu_loop .. bench_alu_loop_end in the built bench kernel."""
    with open(ensure_bench_kernel(), "rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        start = symtab.get_symbol_by_name("bench_alu_loop")[0]["st_value"]
        end = symtab.get_symbol_by_name("bench_alu_loop_end")[0]["st_value"]
        for seg in elf.iter_segments():
            base = seg["p_vaddr"]
            if seg["p_type"] == "PT_LOAD" and base <= start and end <= base + seg["p_filesz"]:
                return start, seg.data()[start - base:end - base]
    raise RuntimeError("bench_alu_loop not found in a loaded segment")


def bare_mips(address: int, code: bytes, n: int) -> float:
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    page = address & ~0xFFF
    uc.mem_map(page, (address + len(code) - page + 0xFFF) & ~0xFFF)
    uc.mem_write(address, code)
    uc.reg_write(uxc.UC_X86_REG_RCX, n)
    start = time.perf_counter()
    uc.emu_start(address, address + len(code))
    wall = time.perf_counter() - start
    assert uc.reg_read(uxc.UC_X86_REG_RCX) == 0
    return INSNS_PER_ITER * n / wall / 1e6


def figures(quick: bool = False) -> list[Figure]:
    n = 2_000_000 if quick else 10_000_000
    reps = 3 if quick else 5
    address, code = alu_loop_bytes()
    bare: list[float] = []
    vmm: dict[str, list[float]] = {"none": [], "insn_branch": [], "all": []}
    extra: dict[str, set[int]] = {"insn_branch": set(), "all": set()}
    for _ in range(reps):
        bare.append(bare_mips(address, code, 5 * n))     # ~20x faster: 5x the work keeps it timeable
        for counters, values in vmm.items():
            loop = run_bench("alu", n, counters)
            values.append(INSNS_PER_ITER * n / loop.wall / 1e6)
            if counters in extra:
                extra[counters].add(loop.info["pmc1" if counters == "all" else "pmc0"] - INSNS_PER_ITER * n)

    out = [Figure("ALU loop MIPS, bare Unicorn (no hooks)", Stat(bare).fmt(digits=0), "", "info")]
    labels = {"none": "no counter", "insn_branch": "instructions+branches counters", "all": "all 8 GP + 3 fixed"}
    targets = {"none": 0.65, "insn_branch": 0.5, "all": None}     # issue 10's
    for counters, values in vmm.items():
        ratios = Stat([v / b for v, b in zip(values, bare, strict=True)])
        target = targets[counters]
        out.append(Figure(f"ALU loop MIPS, VMM, {labels[counters]}", Stat(values).fmt(digits=0), "", "info"))
        out.append(Figure(f"  ratio VMM/bare, {labels[counters]}", ratios.fmt(digits=3),
                          f">= {target}" if target else "", verdict(ratios.median >= target) if target else "info"))
    for counters, values in extra.items():
        exact = len(values) == 1
        out.append(Figure(f"  counted instructions - 10N, {counters} (every rep)",
                          ", ".join(str(v) for v in sorted(values)), "one constant", verdict(exact)))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
