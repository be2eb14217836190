# SPDX-License-Identifier: GPL-2.0-or-later
"""``pmu-vmm run``: exit statuses, options and their help, one-line errors for bad options."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from pmu.config import PmuConfig
from tests.elfgen import Seg, build_elf
from tests.guest import run_cli
from vmm import __version__
from vmm.cli import build_parser
from vmm.options import PMU_FIELD_HELP, CpuidSpec, cpu_setup, parse_cpuid, parse_size


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.strip()]


def _debug_exit_kernel(tmp_path, value: int):
    """A plain ELF64 that writes ``value`` to isa-debug-exit at once (mov eax, value; out 0xf4, eax; hlt)."""
    code = b"\xb8" + value.to_bytes(4, "little") + b"\xe7\xf4\xf4"
    image = tmp_path / f"exit{value}.elf"
    image.write_bytes(build_elf([Seg(0x400000, code)], entry=0x400000))
    return str(image)


def test_passing_guest_exits_0_and_failing_guest_with_its_value():
    passed = run_cli("run", "hello64")
    assert passed.returncode == 0, passed.stderr
    assert b"SUMMARY: 1 tests" in passed.stdout and not passed.stderr
    failed = run_cli("run", "plugin_port")        # its device is not there: FAIL lines, value 1
    assert failed.returncode == 1
    assert b"FAIL:" in failed.stdout and not failed.stderr


@pytest.mark.parametrize("value, status", [(0, 0), (3, 3), (0x80, 0x80), (0x100, 255), (0xFFFFFFFF, 255)])
def test_exit_status_is_the_debug_exit_value(tmp_path, value, status):
    proc = run_cli("run", _debug_exit_kernel(tmp_path, value))
    assert proc.returncode == status, proc.stderr


def test_qemu_front_end_keeps_the_qemu_formula(tmp_path):
    proc = run_cli("qemu", "-kernel", _debug_exit_kernel(tmp_path, 3))
    assert proc.returncode == 7


def test_serial_to_file(tmp_path):
    out = tmp_path / "serial.txt"
    proc = run_cli("run", "hello64", "--serial", str(out))
    assert proc.returncode == 0
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


@pytest.mark.parametrize("args", [
    ["--memory", "12Q"], ["--cpu", "sparc"], ["--smp", "0"], ["--smp", "65"],
    ["--smp", "two"], ["--quantum", "0"], ["--timeout", "-1"], ["--timeout", "inf"],
    ["--timeout", "nan"], ["--max-insns", "-1"], ["--max-insns", str(1 << 64)], ["--max-insns", "many"],
    ["--trace", "everything"], ["--report-format", "xml"], ["--device", "no-such-device,help"],
    ["--device", "no-such-device"], ["--device", ",iobase=1"], ["--serial", "/no/such/dir/out"],
    ["--junit", "/no/such/dir/junit.xml"],
])
def test_bad_option_values_are_one_line_status_2(args):
    proc = run_cli("run", "hello64", *args)
    assert proc.returncode == 2, (args, proc.stderr)
    assert len(_error_lines(proc)) == 1, (args, proc.stderr)
    assert b"Traceback" not in proc.stderr


def test_unknown_command():
    proc = run_cli("frobnicate")
    assert proc.returncode == 2 and len(_error_lines(proc)) == 1


def test_missing_kernel_file():
    proc = run_cli("run", "/no/such/kernel.elf")
    assert proc.returncode == 2
    assert "No such file" in proc.stderr.decode() and len(_error_lines(proc)) == 1


def test_triple_fault_and_halted_forever():
    proc = run_cli("run", "shutdown")
    assert proc.returncode == 125
    assert b"about to triple fault" in proc.stdout
    assert "guest shut down" in proc.stderr.decode()
    halted = run_cli("run", "shutdown", "--append", "halt")
    assert halted.returncode == 126
    assert "halted forever" in halted.stderr.decode()


def test_instruction_limit():
    proc = run_cli("run", "spin", "--max-insns", "100000")
    assert proc.returncode == 124
    assert "instruction limit" in proc.stderr.decode()


def test_list_names_bundled_kernels():
    proc = run_cli("list")
    assert proc.returncode == 0
    assert {b"hello64", b"spin"} <= set(proc.stdout.split())


def test_version():
    proc = run_cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().split()[-1] == __version__


def test_help_lists_every_exit_status():
    text = run_cli("run", "--help").stdout.decode()
    for status in ("0", "2", "70", "74", "123", "124", "125", "126", "130/143", "141"):
        assert f"\n  {status} " in text, status


def test_every_option_has_help_text():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for action in subparsers.choices["run"]._actions:
        assert action.help, action.option_strings or action.dest


def test_pmu_and_cpuid_help():
    pmu = run_cli("run", "--pmu", "help")
    assert pmu.returncode == 0
    listed = {line.split()[0] for line in pmu.stdout.decode().splitlines() if line.startswith("  ")}
    assert listed == {f.name for f in dataclasses.fields(PmuConfig)} - {"vendor"}
    cpuid = run_cli("run", "--cpuid", "help")
    assert cpuid.returncode == 0
    assert b"x2apic" in cpuid.stdout and b"family=" in cpuid.stdout
    devices = run_cli("run", "--device", "help")
    assert devices.returncode == 0 and b'"isa-debug-exit"' in devices.stdout
    props = run_cli("run", "--device", "isa-debug-exit,help")
    assert props.returncode == 0 and b"iobase" in props.stdout


def test_every_pmu_field_has_a_description():
    assert set(PMU_FIELD_HELP) == {f.name for f in dataclasses.fields(PmuConfig)} - {"vendor"}


def test_pmu_option_shapes_the_guest_pmu():
    proc = run_cli("run", "pmu_msr", "--pmu", "version=1,gp_counters=4,fixed_counters=0")
    assert proc.returncode == 0, proc.stdout
    assert b"Intel PMU: version 1, 4 GP" in proc.stdout


@pytest.mark.parametrize("spec", ["gp_counters=12", "bogus=1", "version=x", "tsx=maybe"])
def test_bad_pmu_option_is_one_line(spec):
    proc = run_cli("run", "pmu_msr", "--pmu", spec)
    assert proc.returncode == 2, spec
    assert len(_error_lines(proc)) == 1, (spec, proc.stderr)


def test_cpuid_option():
    proc = run_cli("run", "msr", "--cpu", "amd", "--cpuid", "family=0x19,model=0x21,stepping=1,-x2apic")
    assert proc.returncode == 0, proc.stdout
    for spec in ("+warp_drive", "family", "model=abc"):
        proc = run_cli("run", "msr", "--cpuid", spec)
        assert proc.returncode == 2, spec
        assert len(_error_lines(proc)) == 1, (spec, proc.stderr)


def test_cpuid_and_append_values_may_begin_with_a_dash():
    proc = run_cli("run", "hello64", "--cpuid", "-x2apic", "--append", "-v --foo")
    assert proc.returncode == 0, proc.stderr
    assert b"cmdline: 'hello64.elf -v --foo'" in proc.stdout


def test_cpuid_pdcm_switch_reaches_the_pmu():
    proc = run_cli("run", "pmu_msr", "--cpuid", "-pdcm")
    assert proc.returncode == 0, proc.stdout
    assert b"PDCM 0, PERF_CAPABILITIES 0x0" in proc.stdout


@pytest.mark.parametrize("args", [
    ["--cpuid", "-pdcm", "--pmu", "pdcm=1"],          # contradiction
    ["--cpu", "amd", "--cpuid", "+pdcm"],             # the AMD PMU would drop it
    ["--cpuid", "+perfctr_core"],                     # an AMD feature on an Intel PMU
])
def test_cpuid_switch_the_pmu_cannot_honour_is_refused(args):
    proc = run_cli("run", "pmu_msr", *args)
    assert proc.returncode == 2, (args, proc.stdout)
    assert len(_error_lines(proc)) == 1 and "--cpuid/--pmu" in proc.stderr.decode(), proc.stderr


def test_cpu_setup_merges_pmu_features():
    setup = cpu_setup("amd", parse_cpuid("+perfctr_core,+perfmon_v2,-x2apic"), {"gp_counters": 5})
    assert (setup.pmu.perfctr_core, setup.pmu.perfmon_v2, setup.pmu.gp_counters) == (True, True, 5)
    assert setup.features == {"x2apic": False}      # the PMU's bits are not passed twice
    assert cpu_setup("intel", CpuidSpec(signature={"model": 0x8F}, features={})).signature == (6, 0x8F, 4)
    assert cpu_setup("intel").pmu is None


@pytest.mark.parametrize("text, size", [("128M", 128 << 20), ("128", 128 << 20), ("1G", 1 << 30),
                                        ("512k", 512 << 10), ("64MiB", 64 << 20), ("2 G", 2 << 30)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "12Q", "-5M", "1.5G", "M"])
def test_parse_size_refuses(text):
    with pytest.raises(ValueError):
        parse_size(text)
