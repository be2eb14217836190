# SPDX-License-Identifier: GPL-2.0-or-later
"""The command line: exit statuses, one-line errors for bad input, the QEMU-compatible mode."""

from __future__ import annotations

import firmware
from tests.elfgen import Seg, build_elf
from tests.guest import run_cli


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.strip()]


def test_run_bundled_kernel_exit_status_mirrors_debug_exit():
    proc = run_cli("run", "hello64")
    assert proc.returncode == 1
    assert b"SUMMARY: 1 tests" in proc.stdout


def test_serial_to_file(tmp_path):
    out = tmp_path / "serial.txt"
    proc = run_cli("run", "hello64", "--serial", str(out))
    assert proc.returncode == 1
    assert b"Hello from hello64" in out.read_bytes()
    assert b"Hello" not in proc.stdout


def test_not_an_elf_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.elf"
    bad.write_bytes(b"this is not an ELF file at all")
    proc = run_cli("run", str(bad))
    assert proc.returncode == 2
    lines = _error_lines(proc)
    assert len(lines) == 1 and "ELF" in lines[0], lines


def test_segment_outside_ram(tmp_path):
    image = tmp_path / "big.elf"
    image.write_bytes(build_elf([Seg(0x7F00000, b"\xf4" * 16, memsz=0x200000)], entry=0x7F00000))
    proc = run_cli("run", str(image), "--memory", "128M")
    assert proc.returncode == 2
    assert len(_error_lines(proc)) == 1


def test_bad_option_values():
    for args in (["run", "hello64", "--memory", "12Q"], ["run", "hello64", "--cpu", "sparc"],
                 ["run", "hello64", "--smp", "2"], ["run", "hello64", "--timeout", "-1"], ["frobnicate"]):
        proc = run_cli(*args)
        assert proc.returncode == 2, args
        assert len(_error_lines(proc)) == 1, (args, proc.stderr)


def test_missing_kernel_file():
    proc = run_cli("run", "/no/such/kernel.elf")
    assert proc.returncode == 2
    assert "No such file" in proc.stderr.decode()


def test_triple_fault_report():
    proc = run_cli("run", "shutdown")
    assert proc.returncode == 125
    assert b"about to triple fault" in proc.stdout
    assert "guest shut down" in proc.stderr.decode()


def test_qemu_compatible_mode(tmp_path):
    env = tmp_path / "env"
    env.write_text("NR_CPUS=1\n")
    proc = run_cli("qemu", "-machine", "q35", "-accel", "tcg", "-display", "none", "-vga", "none",
                   "-kernel", str(firmware.image("hello32")), "-append", "x=1", "-initrd", str(env),
                   "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "stdio", "-smp", "1",
                   "-cpu", "max", "-m", "256", "-no-reboot", "-nographic")
    assert proc.returncode == 1, proc.stderr
    assert b"NR_CPUS=1" in proc.stdout


def test_list_names_bundled_kernels():
    proc = run_cli("list")
    assert proc.returncode == 0
    assert b"hello64" in proc.stdout.split()


def test_pmu_option_shapes_the_guest_pmu():
    proc = run_cli("run", "pmu_msr", "--pmu", "version=1,gp_counters=4,fixed_counters=0")
    assert proc.returncode == 1, proc.stdout
    assert b"Intel PMU: version 1, 4 GP" in proc.stdout


def test_bad_pmu_option_is_one_line():
    for spec in ("gp_counters=12", "bogus=1", "version=x"):
        proc = run_cli("run", "pmu_msr", "--pmu", spec)
        assert proc.returncode == 2, spec
        assert len(_error_lines(proc)) == 1, (spec, proc.stderr)


def test_cpuid_option():
    proc = run_cli("run", "msr", "--cpu", "amd", "--cpuid", "family=0x19,model=0x21,stepping=1,-x2apic")
    assert proc.returncode == 1, proc.stdout
    for spec in ("+warp_drive", "family", "model=abc"):
        proc = run_cli("run", "msr", "--cpuid", spec)
        assert proc.returncode == 2, spec
        assert len(_error_lines(proc)) == 1, (spec, proc.stderr)
