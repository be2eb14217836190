# SPDX-License-Identifier: GPL-2.0-or-later
"""KVM's paravirtual interface (issue 11 item 10): the kvm-pv device on a fake context, the
machine's hypercall ABI, our kvm_pv kernel with and without it, and the QEMU front end's mapping."""

from __future__ import annotations

import pytest

from devices.device import BusRange
from devices.kvm_pv import KVM_ENOSYS, KVM_EPERM, KVM_HC_SEND_IPI, KvmPv
from devices.registry import DeviceSpec
from tests.fake_context import FakeContext
from tests.guest import assert_all_pass, boot, run_cli
from vmm.cpuid import CpuidModel
from vmm.machine import Machine, MachineConfig

FIXED, NMI = 0, 4
U64 = (1 << 64) - 1


def test_send_ipi_walks_the_bitmap_from_its_first_id():
    ctx = FakeContext(nb_cpus=8)
    device = KvmPv(ctx)
    assert device.hypercall(KVM_HC_SEND_IPI, (0b1011, 0, 2, 0x4030), 0, True) == 3
    assert ctx.messages == [(2, False, FIXED, 0x30, True), (3, False, FIXED, 0x30, True),
                            (5, False, FIXED, 0x30, True)]


def test_send_ipi_high_word_continues_after_the_low_one_by_mode_width():
    ctx = FakeContext(nb_cpus=64)
    device = KvmPv(ctx)
    # 32-bit code: 32 ids per word, so a1 bit 0 is id first+32; bits above 31 are not part of the word.
    assert device.hypercall(KVM_HC_SEND_IPI, (1 << 32, 1, 1, NMI << 8 | 2), 0, False) == 1
    assert ctx.messages == [(33, False, NMI, 2, False)]
    ctx.messages.clear()
    # 64-bit code: a1 bit 0 is id first+64, past the last CPU: nobody.
    assert device.hypercall(KVM_HC_SEND_IPI, (0, 1, 0, 0x30), 0, True) == 0
    assert ctx.messages == []


def test_send_ipi_counts_only_the_apics_that_accept():
    ctx = FakeContext(nb_cpus=4)
    ctx.refusing = {1}
    assert KvmPv(ctx).hypercall(KVM_HC_SEND_IPI, (0b111, 0, 0, 0x30), 0, True) == 2
    assert [m[0] for m in ctx.messages] == [0, 1, 2]


def test_advertises_the_signature_and_only_modelled_features():
    cpuid = CpuidModel("intel")
    before = cpuid.query(0x40000000)
    assert before == cpuid.query(cpuid.query(0)[0])     # out of range: the highest basic leaf
    KvmPv(FakeContext()).advertise(cpuid)
    eax, ebx, ecx, edx = cpuid.query(0x40000000)
    assert eax == 0x40000001
    assert b"".join(r.to_bytes(4, "little") for r in (ebx, ecx, edx)) == b"KVMKVMKVM\0\0\0"
    assert cpuid.query(0x40000001) == ((1 << 1) | (1 << 11), 0, 0, 0)
    assert cpuid.query(0x40000002) == cpuid.query(cpuid.query(0)[0])    # above the highest hypervisor leaf
    assert KvmPv(FakeContext()).bus_ranges() == [BusRange("hypercall", 1, 1), BusRange("hypercall", 10, 1)]


def _regs(rax, rbx=0, rcx=0, rdx=0, rsi=0):
    return {"rax": rax, "rbx": rbx, "rcx": rcx, "rdx": rdx, "rsi": rsi}


def test_machine_hypercall_abi():
    machine = Machine(MachineConfig())
    cpu = machine.cpus[0]
    assert machine.hypercall(cpu, _regs(1), 0, True) is None        # no device: the caller raises #UD
    machine.add_device(DeviceSpec("kvm-pv"))
    assert machine.hypercall(cpu, _regs(1), 0, True) == 0
    assert machine.hypercall(cpu, _regs(1), 3, True) == -KVM_EPERM & U64
    assert machine.hypercall(cpu, _regs(2), 0, True) == -KVM_ENOSYS & U64
    assert machine.hypercall(cpu, _regs(2), 0, False) == -KVM_ENOSYS & 0xFFFFFFFF
    # Outside 64-bit code the number is 32 bits: 1 << 32 | 1 is KVM_HC_VAPIC_POLL_IRQ there, unknown in 64-bit code.
    assert machine.hypercall(cpu, _regs(1 << 32 | 1), 0, False) == 0
    assert machine.hypercall(cpu, _regs(1 << 32 | 1), 0, True) == -KVM_ENOSYS & U64
    # The CPUID leaves reach every vCPU's C path too.
    assert machine.cpus[0].vcpu.cpuid(0x40000000)[0] == 0x40000001


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_kernel_without_kvm_pv_sees_no_hypervisor(cpu):
    result, serial = boot("kvm_pv", cpu=cpu, cmdline="expect=none")
    assert_all_pass(result, serial)
    assert serial.count("PASS: ") == (3 if cpu == "intel" else 2), serial


@pytest.mark.parametrize("cpu,smp", [("intel", 1), ("amd", 1), ("intel", 3), ("amd", 4)])
def test_kernel_with_kvm_pv(cpu, smp):
    result, serial = boot("kvm_pv", cpu=cpu, smp=smp, cmdline="expect=pv", devices=[DeviceSpec("kvm-pv")])
    assert_all_pass(result, serial)
    assert "PASS: VMCALL at CPL3 returns -KVM_EPERM" in serial
    assert "PASS: VMMCALL of an unknown hypercall returns -KVM_ENOSYS (-1000)" in serial
    if smp > 1:
        assert f"PASS: SEND_IPI fixed to every AP: returns {smp - 1}, each AP took it once" in serial


def test_kvm_pv_runs_are_identical():
    outputs = {boot("kvm_pv", smp=3, cmdline="expect=pv", devices=[DeviceSpec("kvm-pv")])[1] for _ in range(3)}
    assert len(outputs) == 1


@pytest.mark.parametrize("options,expect", [
    (["--kvm-pv"], "pv"),
    ([], "none"),
])
def test_cli_option(options, expect):
    proc = run_cli("run", "kvm_pv", "--append", f"expect={expect}", "--smp", "2", *options)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert b"FAIL" not in proc.stdout


@pytest.mark.parametrize("options,expect", [
    (["-accel", "kvm"], "pv"),
    (["-enable-kvm"], "pv"),
    (["-machine", "accel=kvm:tcg"], "pv"),
    (["-accel", "kvm", "-cpu", "max,kvm=off"], "none"),
    (["-accel", "tcg"], "none"),
    (["-machine", "accel=tcg:kvm"], "none"),
])
def test_qemu_front_end_gives_kvm_guests_the_kvm_interface(options, expect):
    import firmware

    proc = run_cli("qemu", "-kernel", str(firmware.image("kvm_pv")), "-append", f"expect={expect}", "-smp", "2",
                   "-device", "isa-debug-exit,iobase=0xf4,iosize=0x4", "-serial", "stdio", "-nodefaults", *options)
    assert proc.returncode == 1, proc.stdout + proc.stderr     # (0 << 1) | 1: every check passed
    assert b"FAIL" not in proc.stdout and b"SUMMARY" in proc.stdout
