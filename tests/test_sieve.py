# SPDX-License-Identifier: GPL-2.0-or-later
"""The compute kernel of bench/bench_compute.py (firmware/kernels/sieve.c): its primes and checksum are
Python's, every run prints the same and retires the same instructions, and it runs with the paging it
claims (EFER.NXE, CR0.WP, its code read-only and executable, its array writable and NX)."""

from __future__ import annotations

import io
import struct

import pytest
from elftools.elf.elffile import ELFFile
from unicorn import x86_const as uxc

import firmware
from tests.guest import assert_all_pass
from vmm.machine import Machine, MachineConfig

MSR_EFER, EFER_NXE, CR0_WP = 0xC0000080, 1 << 11, 1 << 16
PRESENT, WRITABLE, LARGE, NX = 1 << 0, 1 << 1, 1 << 7, 1 << 63
ADDRESS = 0x000F_FFFF_FFFF_F000


def expected(n: int) -> str:
    """The kernel's INFO values for n: the primes below n and FNV-1a over them."""
    composite = bytearray(n)
    for i in range(2, n):
        if i * i >= n:
            break
        if not composite[i]:
            composite[i * i::i] = b"\x01" * len(range(i * i, n, i))
    h, count = 0xCBF29CE484222325, 0
    for i in range(2, n):
        if not composite[i]:
            count += 1
            h = ((h ^ i) * 0x100000001B3) & (1 << 64) - 1
    return f"primes={count} checksum={h:#x}"


def run(cmdline: str):
    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=cmdline, timeout=60))
    machine.load(str(firmware.image("sieve")))
    result = machine.run()
    return machine, result, result.serial.decode()


@pytest.mark.parametrize("n", [2, 3, 100, 65_537])
def test_primes_and_checksum_are_pythons(n):
    _, result, serial = run(f"n={n} reps=2")
    assert_all_pass(result, serial)
    assert f"INFO: sieve n={n} reps=2 {expected(n)}\n" in serial


def test_every_run_is_the_same():
    first, second = run("n=200000 reps=3")[1:], run("n=200000 reps=3")[1:]
    assert first[1] == second[1] and first[0].instructions == second[0].instructions
    assert expected(200_000) in first[1]


def leaf_entry(engine, address: int) -> int:
    """The page-table entry that maps ``address`` (4-level paging; 2 MiB or 4 KiB pages)."""
    table = engine.reg_read(uxc.UC_X86_REG_CR3) & ADDRESS
    for level in (3, 2, 1, 0):
        entry = struct.unpack("<Q", engine.mem_read(table + 8 * ((address >> (12 + 9 * level)) & 511), 8))[0]
        assert entry & PRESENT, (hex(address), level)
        if level == 0 or (level < 3 and entry & LARGE):
            return entry
        table = entry & ADDRESS
    raise AssertionError("unreachable")


def test_it_runs_with_nx_data_and_read_only_code():
    machine, result, serial = run("n=1000 reps=1")
    assert_all_pass(result, serial)
    engine = machine.cpus[0].engine
    assert engine.reg_read(uxc.UC_X86_REG_MSR, MSR_EFER) & EFER_NXE
    assert engine.reg_read(uxc.UC_X86_REG_CR0) & CR0_WP
    with open(firmware.image("sieve"), "rb") as f:
        symbols = {s.name: s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols()}
    code, data = leaf_entry(engine, symbols["main"]), leaf_entry(engine, symbols["composite"] + (4 << 20))
    assert not code & NX and not code & WRITABLE
    assert data & NX and data & WRITABLE


def test_a_size_out_of_range_fails():
    _, result, serial = run("n=1 reps=1")
    assert "FAIL: n=1" in serial and (result.reason, result.status) == ("debug-exit", 3), serial
