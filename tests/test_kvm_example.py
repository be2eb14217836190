# SPDX-License-Identifier: GPL-2.0-or-later
"""The KVM embedding example (examples/kvm): our PMU, LAPIC, buses and dispatcher behind a
minimal /dev/kvm VMM boot our test kernels to their PASS summary.

Runs only where KVM is usable: /dev/kvm opens read-write, KVM_GET_API_VERSION is 12 and
KVM_CAP_X86_USER_SPACE_MSR and KVM_CAP_X86_MSR_FILTER are offered; elsewhere every test skips
with the reason.  The typing check (KvmVcpu provides devices.vcpu.Vcpu) needs only mypy.
"""

from __future__ import annotations

import errno
import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.dev_tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "kvm"
KVM_GET_API_VERSION = 0xAE00
KVM_CHECK_EXTENSION = 0xAE03
CAPS = {188: "KVM_CAP_X86_USER_SPACE_MSR", 189: "KVM_CAP_X86_MSR_FILTER", 23: "KVM_CAP_SET_GUEST_DEBUG"}


def kvm_unusable_reason() -> str | None:
    """Why the example cannot run here, or None when it can."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return "no /dev/kvm"
    except PermissionError:
        return "/dev/kvm: permission denied"
    except OSError as error:
        return f"/dev/kvm: {os.strerror(error.errno or errno.EIO)}"
    try:
        version = fcntl.ioctl(fd, KVM_GET_API_VERSION, 0)
        if version != 12:
            return f"KVM_GET_API_VERSION is {version}, not 12"
        for cap, name in CAPS.items():
            if fcntl.ioctl(fd, KVM_CHECK_EXTENSION, cap) <= 0:
                return f"{name} missing"
    finally:
        os.close(fd)
    return None


needs_kvm = pytest.mark.skipif(kvm_unusable_reason() is not None, reason=str(kvm_unusable_reason()))


def run_example(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(EXAMPLE), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "pmu_kvm", *args, "--stats"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def fails(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("FAIL")]


@needs_kvm
@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_pmu_msr_kernel_passes_under_kvm(cpu):
    proc = run_example("pmu_msr", "--cpu", cpu)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert re.search(r"^SUMMARY: \d+ tests$", proc.stdout, re.M), out
    assert not fails(proc.stdout), out
    # the PMU MSRs really went through user space (filtered), not KVM
    assert re.search(r"'X86_RDMSR': \d+", proc.stderr) and re.search(r"'X86_WRMSR': \d+", proc.stderr), out


@needs_kvm
@pytest.mark.parametrize("kernel", ["lapic_x2apic", "lapic_xapic"])
def test_lapic_kernels_pass_under_kvm(kernel):
    """x2APIC MSRs (INVAL exits), xAPIC MMIO exits, self-IPIs injected with KVM_INTERRUPT."""
    proc = run_example(kernel)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and not fails(proc.stdout), out
    assert "SUMMARY:" in proc.stdout


@needs_kvm
def test_pmu_count_is_exact_by_single_stepping():
    """10N+17 instructions and N+2 branches on every counter, overflow at exactly 1, one PMI at
    STI.  Known failures under KVM: the LLC ranges (no cache model) and the CPL3 round trip (user
    mode does not work under the example, see examples/kvm/README.md)."""
    proc = run_example("pmu_count", "--append", "n=300")
    out = proc.stdout + proc.stderr
    for check in ("GP0 instructions 3017 == 10N+17 = 3017", "GP7 instructions 3017 == 10N+17 = 3017",
                  "fixed 0 (instructions) 3017 == 3017", "every counter ends at 1",
                  "exactly one PMI taken at STI"):
        assert f"PASS: {check}" in proc.stdout, out
    assert "PASS: branches 302 == N+2 = 302" in proc.stdout, out
    expected = ("FAIL: USR-only counter", "FAIL: LLC references", "FAIL: LLC misses")
    assert all(line.startswith(expected) for line in fails(proc.stdout)), out
    assert re.search(r"stepped instructions [1-9]\d*", proc.stderr), out


@needs_kvm
def test_msr_filter_covers_every_pmu_and_lapic_msr():
    sys.path.insert(0, str(EXAMPLE))
    try:
        from pmu_kvm.machine import KvmMachine
    finally:
        sys.path.remove(str(EXAMPLE))
    machine = KvmMachine(cpu="intel")
    try:
        owned = {(base, size, owner) for base, size, owner in machine.filtered}
        assert {(b, s) for b, s, o in owned if o == "pmu"} == set(machine.pmu.msr_ranges())
        assert {(0x1B, 1, "lapic"), (0x800, 0x100, "lapic")} <= owned
        leaf_a = [e for e in machine.cpuid_entries() if e[0] == 0xA]
        assert leaf_a and leaf_a[0][3] & 0xFF == machine.pmu.config.version
    finally:
        machine.close()


def test_kvm_vcpu_provides_the_vcpu_protocol(tmp_path):
    require_tool("mypy", "lint")
    env = {**os.environ, "MYPYPATH": str(EXAMPLE)}
    mypy = [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache"), "--follow-imports=silent",
            "--check-untyped-defs"]
    proc = subprocess.run([*mypy, "examples/kvm/typing_check.py"], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    broken = tmp_path / "broken_kvm_vcpu.py"
    broken.write_text("from devices.vcpu import Vcpu\nfrom pmu_kvm.vcpu import KvmVcpu\n"
                      "class NoKick(KvmVcpu):\n    kick = None  # type: ignore[assignment]\n"
                      "def f(v: NoKick) -> Vcpu:\n    return v\n")
    proc = subprocess.run([*mypy, str(broken)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and "Incompatible return value type" in proc.stdout, proc.stdout + proc.stderr
