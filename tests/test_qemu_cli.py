# SPDX-License-Identifier: GPL-2.0-or-later
"""The QEMU front end: a runner's probes, QEMU's wording and statuses, every option honoured or refused."""

from __future__ import annotations

import subprocess
import sys

import pytest

import firmware
from tests.elfgen import Seg, build_elf
from tests.guest import ROOT, run_cli
from vmm import __version__

PROG = "pmu-vmm-qemu"
#: What a kvm-unit-tests-style runner asks of $QEMU, in the order it asks (our own script).
RUNNER = r"""
QEMU=$1 KERNEL=$2 ENV=$3
$QEMU --help 2>/dev/null | grep -q 'QEMU' || { echo "no QEMU found"; exit 2; }
$QEMU -device '?' 2>&1 | grep -F -q '"isa-debug-exit"' || { echo "no debug-exit device"; exit 2; }
IFS='[ .]' read -r _ _ _ major minor micro _ <<<"$($QEMU -h | head -1)"
echo "QEMU version $major.$minor.$micro"
opts="--no-reboot -nodefaults -device isa-debug-exit,iobase=0xf4,iosize=0x4 -vnc none -serial stdio
      -machine accel=kvm -smp 1 -cpu max,vendor=GenuineIntel"
log=$($QEMU $opts $EXTRA -kernel _NO_FILE_4Uhere_ 2>&1)
if ! grep _NO_FILE_4Uhere_ <<<"$log" | grep -q -e "[Cc]ould not \(load\|open\) kernel"; then
    echo "premature failure: $log"; exit 3
fi
errors=$($QEMU $opts $EXTRA -kernel "$KERNEL" -initrd "$ENV" 2>&1 >/dev/null)
ret=$?
if [ $ret -eq 1 ] && [ -z "$errors" ]; then echo PASS; else echo "FAIL ($ret): $errors"; fi
"""


def qemu(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return run_cli("qemu", *args, timeout=timeout)


def _lines(stream: bytes) -> list[str]:
    return [line for line in stream.decode().splitlines() if line.strip()]


@pytest.fixture
def qemu_command(tmp_path):
    """An executable standing in for qemu-system-x86_64, as a runner's QEMU variable would name it."""
    script = tmp_path / "qemu-system-x86_64"
    script.write_text(f'#!/bin/sh\nPYTHONPATH={ROOT} exec {sys.executable} -m vmm qemu "$@"\n')
    script.chmod(0o755)
    return str(script)


def _runner(qemu_command, tmp_path, extra=""):
    env = tmp_path / "env"
    env.write_text("NR_CPUS=1\n")
    return subprocess.run(["bash", "-c", RUNNER, "runner", qemu_command, str(firmware.image("hello32")), str(env)],
                          capture_output=True, timeout=120, env={"PATH": "/usr/bin:/bin", "EXTRA": extra})


def test_runner_probes_then_runs_a_test(qemu_command, tmp_path):
    proc = _runner(qemu_command, tmp_path)
    assert proc.stdout.decode().splitlines() == ["QEMU version 7.2.0", "PASS"], proc.stdout


def test_runner_sees_a_bad_option_before_the_missing_kernel(qemu_command, tmp_path):
    proc = _runner(qemu_command, tmp_path, extra="-cpu max,+vmx")
    assert proc.returncode == 3 and b"premature failure" in proc.stdout
    assert b"'vmx' not found" in proc.stdout


def test_help_and_version_banner():
    for flag in ("--help", "-help", "-h"):
        proc = qemu(flag)
        assert proc.returncode == 0
        first, second = proc.stdout.decode().splitlines()[:2]
        assert first == f"QEMU emulator version 7.2.0 (pmu-vmm {__version__})"
        assert second.startswith(f"usage: {PROG}")
    for flag in ("-version", "--version"):
        proc = qemu(flag)
        assert proc.returncode == 0 and proc.stdout.startswith(b"QEMU emulator version 7.2.0 (pmu-vmm ")


def test_device_listing_probes():
    listings = [qemu("-device", value) for value in ("?", "help")]
    assert all(p.returncode == 0 for p in listings)
    assert listings[0].stdout == listings[1].stdout
    assert b'name "isa-debug-exit"' in listings[0].stdout
    props = qemu("-device", "isa-debug-exit,help")
    assert props.returncode == 0 and b"iosize" in props.stdout
    assert qemu("-device", "nonesuch,help").returncode == 1


def test_cpu_and_machine_listings():
    cpus = qemu("-cpu", "help")
    assert cpus.returncode == 0 and b"x86 max" in cpus.stdout and b"tsc-deadline" in cpus.stdout
    machines = qemu("-machine", "help")
    assert machines.returncode == 0 and machines.stdout.startswith(b"Supported machines are:")


def test_kernel_file_errors_in_qemu_words(tmp_path):
    proc = qemu("-kernel", "/nonexistent")
    assert proc.returncode == 1
    assert _lines(proc.stderr) == ["qemu: could not open kernel file '/nonexistent': No such file or directory"]
    garbage = tmp_path / "garbage"
    garbage.write_bytes(b"\0" * 64)
    proc = qemu("-kernel", str(garbage))
    assert proc.returncode == 1
    assert _lines(proc.stderr)[0].startswith(f"qemu: could not load kernel '{garbage}': ")


@pytest.mark.parametrize("args, message", [
    (["-foo"], "-foo: invalid option"),
    (["--foo"], "--foo: invalid option"),
    (["-kernel"], "-kernel: requires an argument"),
    (["-S"], "-S: without -s or -gdb nothing could start the guest"),
    (["-gdb", "udp::1234"], "-gdb udp::1234: only tcp:[HOST]:PORT is supported"),
    (["-gdb", "tcp::99999"], "-gdb tcp::99999: 'tcp::99999': expected [tcp:][HOST]:PORT"),
    (["-drive", "file=x.img"], "-drive: not supported by pmu-vmm"),
    (["disk.img"], "disk.img: disk images are not supported by pmu-vmm (use -kernel)"),
    (["-display", "gtk"], "-display gtk: not supported by pmu-vmm (only 'none')"),
    (["-cpu", "Skylake-Client"], "unable to find CPU model 'Skylake-Client'"),
    (["-cpu", "max,+warp-drive"], "-cpu max,+warp-drive: CPU property or feature 'warp-drive' not found"),
    (["-cpu", "max,vendor=CyrixInstead"], "-cpu max,vendor=CyrixInstead: vendor=CyrixInstead: pmu-vmm has"),
    (["-cpu", "max,family=six"], "-cpu max,family=six: family=six: not a number"),
    (["-cpu", "max,vendor=AuthenticAMD,pmu=off"], "-cpu: "),
    (["-cpu", "max,pmu=off,+pdcm"], "-cpu: +pdcm contradicts"),
    (["-serial", "pty"], "-serial pty: not supported by pmu-vmm"),
    (["-serial", "stdio", "-serial", "null"], "-serial null: pmu-vmm has one serial port"),
    (["-m", "64,slots=2,maxmem=1G"], "-m 64,slots=2,maxmem=1G: slots and maxmem are not supported"),
    (["-m", "lots"], "-m lots: bad size"),
    (["-smp", "1,sockets=2"], "-smp 1,sockets=2: pmu-vmm has one package of single-threaded cores"),
    (["-smp", "2,threads=2"], "-smp 2,threads=2: pmu-vmm has one package of single-threaded cores"),
    (["-smp", "2,cores=4"], "-smp 2,cores=4: cores must equal the number of CPUs (2)"),
    (["-smp", "2,maxcpus=4"], "-smp 2,maxcpus=4: maxcpus must equal the number of CPUs (2)"),
    (["-smp", "0"], "-smp 0: 0 vCPUs: give 1 to 64"),
    (["-smp", "65"], "-smp 65: 65 vCPUs: give 1 to 64"),
    (["-machine", "microvm"], 'unsupported machine type "microvm"'),
    (["-machine", "pc,vmport=off"], "-machine pc,vmport=off: property 'vmport' not supported"),
    (["-accel", "hvf"], "-accel hvf: accelerator 'hvf' not supported"),
    ([], "-kernel is required"),
])
def test_refused_options_are_one_qemu_style_line(args, message):
    proc = qemu(*(["-kernel", "/nonexistent"] if args else []), *args)
    assert proc.returncode == 1, proc.stderr
    lines = _lines(proc.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"{PROG}: {message}"), lines


def test_machine_errors_are_refused_before_the_kernel_is_opened():
    for args in (["-smp", "99"], ["-m", "8G"], ["-device", "no-such-device"]):
        proc = qemu(*args, "-kernel", "/nonexistent")
        assert proc.returncode == 1
        assert "could not open kernel" not in proc.stderr.decode() and len(_lines(proc.stderr)) == 1, args


def test_accepted_options_run_the_guest(tmp_path):
    env = tmp_path / "env"
    env.write_text("NR_CPUS=1\n")
    proc = qemu("-machine", "q35,accel=kvm:tcg,kernel_irqchip=split", "-accel", "tcg", "-enable-kvm",
                "-display", "none", "-vga", "none", "-vnc", "none", "-monitor", "none", "-net", "none",
                "-nodefaults", "-no-user-config", "-name", "guest", "-no-reboot", "-no-shutdown", "-nographic",
                "-kernel", str(firmware.image("hello32")), "-append", "x=1", "-initrd", str(env),
                "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "mon:stdio",
                "-smp", "cpus=1,sockets=1,cores=1,threads=1", "-cpu", "max,migratable=no", "-m", "size=256")
    assert proc.returncode == 1, proc.stderr
    assert b"NR_CPUS=1" in proc.stdout and not proc.stderr


def test_cpu_options_reach_the_guest():
    no_pmu = qemu("-kernel", str(firmware.image("pmu_msr")), "-cpu", "max,pmu=off")
    assert no_pmu.returncode == 1, no_pmu.stdout
    assert b"Intel PMU: version 0" in no_pmu.stdout and b"PDCM 0" in no_pmu.stdout
    amd = qemu("-kernel", str(firmware.image("msr")), "-cpu", "max,vendor=AuthenticAMD,x2apic=off,-pdcm")
    assert amd.returncode == 1, amd.stdout
    assert b"CPUID vendor 'AuthenticAMD'" in amd.stdout


def test_named_cpu_models_in_both_front_ends():
    """QEMU's model names (with versions) and ours select vmm/cpu_models.py's parts."""
    assert b"x86 EPYC-Rome" in qemu("-cpu", "help").stdout
    rome = qemu("-kernel", str(firmware.image("cpu_features")), "-cpu", "EPYC-Rome-v2")
    assert b"AuthenticAMD" in rome.stdout and b"AMD EPYC" in rome.stdout, rome.stdout
    assert qemu("-kernel", str(firmware.image("hello32")), "-cpu", "EPYC-Rome,vendor=GenuineIntel").returncode == 1
    skylake = run_cli("run", "cpu_features", "--cpu", "skylake-server")
    assert skylake.returncode == 0 and b"GenuineIntel" in skylake.stdout and b"Skylake" in skylake.stdout, skylake
    assert run_cli("run", "hello64", "--cpu", "pentium").returncode == 2


def test_serial_destinations(tmp_path):
    out = tmp_path / "serial.log"
    proc = qemu("-kernel", str(firmware.image("hello64")), "-serial", f"file:{out}")
    assert proc.returncode == 1 and b"Hello from hello64" in out.read_bytes() and not proc.stdout
    quiet = qemu("-kernel", str(firmware.image("hello64")), "-serial", "null")
    assert quiet.returncode == 1 and not quiet.stdout


def test_guest_reset_ends_the_run_with_or_without_no_reboot(tmp_path):
    image = tmp_path / "reset.elf"      # mov al, 0xfe; out 0x64, al (8042 pulses the reset line); hlt
    image.write_bytes(build_elf([Seg(0x400000, b"\xb0\xfe\xe6\x64\xf4")], entry=0x400000))
    for extra in ([], ["-no-reboot"]):
        proc = qemu(*extra, "-kernel", str(image))
        assert proc.returncode == 123, proc.stderr
        assert "does not reboot" in proc.stderr.decode()
    assert run_cli("run", str(image)).returncode == 123
