# SPDX-License-Identifier: GPL-2.0-or-later
"""x86 corners test kernels check (issue 11): TSC, unmapped physical memory, SYSCALL/SYSENTER, CR/EFER checks,
#DB around emulated instructions."""

from __future__ import annotations

import io

import pytest

import firmware
from devices.registry import DeviceSpec
from tests.guest import assert_all_pass, boot
from vmm.machine import Machine, MachineConfig

# -- TSC: RDTSCP/TSC_AUX, IA32_TSC writes and IA32_TSC_ADJUST ----------------------------------------
TSC_CHECKS = ["RDTSCP returns TSC_AUX", "RDTSCP follows a new TSC_AUX", "TSC_AUX bit 32 -> #GP",
              "TSC_AUX unchanged by the faulting write"]
ADJUST_CHECKS = ["TSC_ADJUST reads 0 before any TSC write", "TSC write forward by ~2^44 adds it to TSC_ADJUST",
                 "TSC write back by ~2^40 subtracts it", "TSC_ADJUST += 2^36 moves the TSC by it",
                 "TSC_ADJUST -= 2^37 moves the TSC back by it", "TSC_ADJUST = 0 takes every adjustment back"]
NO_ADJUST_CHECKS = ["no CPUID TSC_ADJUST: RDMSR 0x3b -> #GP", "no CPUID TSC_ADJUST: WRMSR 0x3b -> #GP"]


def _passed(serial: str, checks: list[str]) -> None:
    for check in checks:
        assert f"PASS: {check}" in serial, (check, serial)


def test_tsc_adjust_and_tsc_aux_on_intel():
    result, serial = boot("msr")
    assert_all_pass(result, serial)
    _passed(serial, TSC_CHECKS + ADJUST_CHECKS)


@pytest.mark.parametrize("config", [{"cpu": "amd"}, {"cpuid_features": {"tsc_adjust": False}}])
def test_tsc_adjust_is_a_gp_without_its_cpuid_bit(config):
    result, serial = boot("msr", **config)
    assert_all_pass(result, serial)
    _passed(serial, TSC_CHECKS + NO_ADJUST_CHECKS)


def test_each_vcpu_has_its_own_tsc_offset_and_adjust():
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, smp=2))
    machine.load(str(firmware.image("msr")))
    result = machine.run()
    assert_all_pass(result, result.serial.decode())
    bsp, ap = (cpu.vcpu for cpu in machine.cpus)
    # Every TSC offset comes from a write to the TSC or to TSC_ADJUST, each moving both by the same
    # amount; msr.c ends with TSC_ADJUST = 0.  The AP (never started) saw none of the BSP's writes.
    assert bsp.tsc_adjust == bsp.tsc_offset == 0
    assert ap.tsc_adjust == ap.tsc_offset == 0
    bsp.tsc_adjust = 5
    assert ap.tsc_adjust == 0
    assert machine.cpus[0].cpuid.has("tsc_adjust") and machine.cpus[1].cpuid.has("tsc_adjust")


def test_tsc_aux_is_the_engines_msr():
    machine = Machine(MachineConfig(serial=io.BytesIO()))
    vcpu = machine.vcpu
    vcpu.tsc_aux = 0x1_2345_6789
    assert vcpu.tsc_aux == 0x2345_6789
    assert machine.engine.msr_read(0xC0000103) == 0x2345_6789
    machine.engine.msr_write(0xC0000103, 7)
    assert vcpu.tsc_aux == 7


# -- unmapped physical memory: reads all-ones, writes dropped (or --strict-memory) -------------------
@pytest.mark.parametrize("config", [{}, {"smp": 2}, {"cpu": "amd", "smp": 3}])
def test_unmapped_memory_reads_all_ones_and_drops_writes(config):
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, **config))
    machine.load(str(firmware.image("unmapped")))
    result = machine.run()
    serial = result.serial.decode()
    assert_all_pass(result, serial)
    assert ("SKIP: AP: one CPU" in serial) == (config.get("smp", 1) == 1)
    for cpu in machine.cpus[:2]:
        vcpu = cpu.vcpu
        assert vcpu.unmapped_reads > 0 and vcpu.unmapped_writes > 0
        # sweeps over thousands of pages below and above 4 GiB: a few chunk-sized regions
        regions = vcpu.void_regions()
        assert 0 < len(regions) < 128, regions      # 64 GiB above 4 GiB: 64 of them
        assert all(end - begin <= 1 << 30 for begin, end in regions)
        for a, b in zip(regions, regions[1:], strict=False):
            assert a[1] <= b[0]
        if cpu.index == 0:
            assert (0x8000000, 0x40000000) in regions


def test_strict_memory_ends_the_run_at_the_first_unmapped_access():
    result, serial = boot("unmapped", strict_memory=True)
    assert (result.reason, result.status) == ("error", 70), result
    assert "guest accessed unmapped physical memory at 0xc0000000 (size 8)" in result.detail
    assert "PASS: RAM below 3 GiB" in serial and "8-byte read" not in serial


@pytest.mark.parametrize("cmdline,detail", [
    ("fetch", "guest fetched an instruction from unmapped physical memory at 0xc0000000"),
    ("fetch-read", "guest fetched an instruction from MMIO at 0xc0000000")])
def test_fetching_from_unmapped_memory_ends_the_run(cmdline, detail):
    result, serial = boot("unmapped", cmdline=cmdline)
    assert (result.reason, result.status) == ("error", 70), result
    assert detail in result.detail
    assert "calling into unmapped memory" in serial and "FAIL" not in serial


def test_strict_memory_on_the_command_line():
    from tests.guest import run_cli

    assert run_cli("run", "unmapped").returncode == 0
    proc = run_cli("run", "--strict-memory", "unmapped")
    assert proc.returncode == 70 and b"unmapped physical memory at 0xc0000000" in proc.stderr, proc.stderr


# -- SYSCALL outside 64-bit code -----------------------------------------------------------------------
@pytest.mark.parametrize("cpu,checks", [
    ("intel", ["compatibility-mode SYSCALL -> #UD (vector 6)"]),
    ("amd", ["compatibility-mode SYSCALL enters at CSTAR", "RCX = the next instruction", "R11 = RFLAGS",
             "CS/SS from STAR[47:32]"])])
def test_syscall_from_compatibility_mode(cpu, checks):
    result, serial = boot("syscall_modes", cpu=cpu)
    assert_all_pass(result, serial)
    _passed(serial, checks + ["64-bit SYSCALL at CPL3 enters at LSTAR", "SYSCALL with EFER.SCE clear -> #UD"])


# -- MOV to CR0/CR3/CR4 and WRMSR to EFER: what the SDM refuses is a #GP(0); SYSENTER/SYSEXIT in
# legacy protected mode (cr_checks' trip out of long mode) ------------------------------------------
CR_CHECKS = [
    "CR0 bit 32 (CR0[63:32] reserved) -> #GP(0)", "CR0.PG without CR0.PE -> #GP(0)", "CR0.NW without CR0.CD -> #GP(0)",
    "clearing CR0.PG in 64-bit mode -> #GP(0)", "clearing CR0.PG and CR0.PE in 64-bit mode -> #GP(0)",
    "CR0.CD with CR0.NW is accepted", "CR3 bit 63 with CR4.PCIDE clear -> #GP(0)", "CR3 bit MAXPHYADDR -> #GP(0)",
    "CR3 with PWT and PCD is accepted", "CR4 bit 15 (reserved) -> #GP(0)", "CR4 bit 40 (reserved) -> #GP(0)",
    "clearing CR4.PAE in long mode -> #GP(0)", "toggling CR4.PCE is accepted", "CR4.VMXE without CPUID VMXE -> #GP(0)",
    "CR4.SMAP without CPUID SMAP -> #GP(0)", "CR4.PKE without CPUID PKE -> #GP(0)",
    "CR4.CET without CPUID CET -> #GP(0)",
    "EFER bit 1 (reserved) -> #GP(0)", "EFER.LMSLE -> #GP(0)", "EFER.SVME without its CPUID bit -> #GP(0)",
    "EFER.FFXSR without its CPUID bit -> #GP(0)", "clearing EFER.LME while CR0.PG = 1 -> #GP(0)",
    "EFER.LMA = 0 (ignored) is accepted", "back in long mode",
    "legacy mode: CR0.PG without CR0.PE -> #GP(0)", "legacy mode: CR0.NW without CR0.CD -> #GP(0)",
    "clearing CR4.PAE outside long mode is accepted", "CR0.PG with EFER.LME and CR4.PAE clear -> #GP(0)",
    "32-bit paging on is accepted", "setting EFER.LME while CR0.PG = 1 -> #GP(0)",
    "legacy mode: SYSEXIT to CPL3 and SYSENTER back is accepted",
    "legacy mode SYSEXIT: CS/SS = SYSENTER_CS + 16/24, RPL 3, ESP = ECX",
    "legacy mode SYSENTER: CS/SS = SYSENTER_CS/+8, ESP = SYSENTER_ESP", "legacy mode SYSENTER clears IF",
    *(f"{insn} at CPL3 -> #GP" for insn in ("MOV to CR0", "MOV to CR3", "MOV to CR4", "MOV to CR8", "MOV from CR0",
                                            "MOV from CR8")),
]


@pytest.mark.parametrize("config,checks", [
    ({"cpu": "intel"}, ["CR4.OSXSAVE without CPUID OSXSAVE -> #GP(0)", "CR4.SMEP without CPUID SMEP -> #GP(0)",
                        "CR4.PCIDE without CPUID PCID -> #GP(0)", "CR4.LA57 without CPUID LA57 -> #GP(0)",
                        "CR4.FSGSBASE without CPUID FSGSBASE -> #GP(0)", "CR4.UMIP without CPUID UMIP -> #GP(0)",
                        "toggling EFER.NXE with its CPUID bit is accepted"]),
    ({"cpu": "amd"}, ["CR4.OSXSAVE without CPUID OSXSAVE -> #GP(0)", "CR4.PCIDE without CPUID PCID -> #GP(0)",
                      "toggling EFER.SCE with its CPUID bit is accepted"]),
    ({"cpu": "skylake-server"}, ["CR4.OSXSAVE with CPUID OSXSAVE is accepted"]),
    ({"cpuid_features": {"pcid": True, "la57": True, "umip": True, "fsgsbase": True}},
     ["CR4.UMIP with CPUID UMIP is accepted", "CR4.FSGSBASE with CPUID FSGSBASE is accepted",
      "setting CR4.LA57 in long mode -> #GP(0)", "CR4.PCIDE with CR3[11:0] != 0 -> #GP(0)",
      "CR4.PCIDE with CR3[11:0] = 0 is accepted", "CR3 bit 63 with CR4.PCIDE set is accepted",
      "CR3 bit 63 is not stored", "CR3 with PCID 5 is accepted", "clearing CR4.PCIDE is accepted",
      "CR4.PCIDE outside long mode -> #GP(0)"]),
    ({"cpu": "epyc-rome", "cpuid_features": {"nx": False, "syscall": False}},
     ["EFER.SCE without its CPUID bit -> #GP(0)", "EFER.NXE without its CPUID bit -> #GP(0)"]),
], ids=["intel", "amd", "skylake-server", "pcid-la57-umip-fsgsbase", "amd-no-nx-no-syscall"])
def test_control_register_and_efer_loads(config, checks):
    result, serial = boot("cr_checks", **config)
    assert_all_pass(result, serial)
    _passed(serial, CR_CHECKS + checks)


def test_reserved_bits_follow_the_cpuid_model():
    from vmm.cpuid import CpuidModel

    model = CpuidModel("intel")
    cr4, efer, maxphyaddr = model.reserved_bits()
    assert (cr4, efer, maxphyaddr) == (~0x7FF & (1 << 64) - 1, ~0xD01 & (1 << 64) - 1, 48)
    generation = model.generation
    model.set_feature("smep", True)
    model.set_feature("nx", False)
    cr4, efer, _ = model.reserved_bits()
    assert not cr4 & 1 << 20 and efer & 1 << 11 and model.generation > generation
    assert not CpuidModel("skylake-server").reserved_bits()[0] & (1 << 18 | 1 << 20)   # OSXSAVE, SMEP


# -- SYSENTER/SYSEXIT in IA-32e mode ---------------------------------------------------------------------
@pytest.mark.parametrize("cpu,checks", [
    ("intel", ["SYSENTER from 64-bit code enters at SYSENTER_EIP", "CS = SYSENTER_CS, SS = CS + 8",
               "RSP = SYSENTER_ESP", "RFLAGS.IF cleared, IOPL kept", "RCX and RDX untouched",
               "SYSEXIT with REX.W returns to 64-bit code at RDX", "CS = SYSENTER_CS + 32, SS = + 40, RPL 3",
               "RSP = RCX", "SYSEXIT returns to compatibility mode: CS/SS 0x1b/0x23",
               "SYSENTER from compatibility mode enters 64-bit code", "SYSEXIT at CPL3 -> #GP",
               "SYSEXIT to a non-canonical RDX -> #GP", "SYSEXIT with a non-canonical RCX -> #GP",
               "SYSENTER with SYSENTER_CS = 0 -> #GP", "SYSEXIT with SYSENTER_CS = 0 -> #GP",
               "SYSENTER with SYSENTER_CS = 3 -> #GP", "SYSEXIT with SYSENTER_CS = 3 -> #GP"]),
    ("amd", ["AMD: SYSENTER from 64-bit code -> #UD", "AMD: SYSENTER from compatibility mode -> #UD (vector 6)",
             "AMD: SYSEXIT in long mode -> #UD", "AMD: SYSEXIT at CPL3 in long mode -> #UD",
             "the entry point never ran"])])
def test_sysenter_and_sysexit_in_long_mode(cpu, checks):
    result, serial = boot("sysenter", cpu=cpu)
    assert_all_pass(result, serial)
    _passed(serial, ["CPUID.1:EDX.SEP", *checks])


# -- #DB around the instructions the VMM emulates: single-step, instruction, data and I/O breakpoints -----------
DEBUG_CHECKS = [
    "TF: NOP: one #DB at the next instruction", "TF: CPUID: one #DB at the next instruction",
    "TF: OUT imm8: one #DB at the next instruction", "TF: IN dx: one #DB at the next instruction",
    "TF: RDMSR of APIC_BASE (an exit): one #DB", "TF: RDMSR of a PMU event select (the PMU's C path): one #DB",
    "TF: RDMSR of the TSC: one #DB", "... and WRMSR of the value back: one #DB at the next instruction",
    "TF: RDPMC: one #DB at the next instruction", "TF: MOV from CR8: one #DB", "TF: MOV to CR8: one #DB",
    "TF: RDTSC: one #DB", "TF: RDTSCP: one #DB", "TF: SYSCALL with FMASK keeping TF: #DB at the target, then after",
    "TF: SYSCALL with FMASK clearing TF: no #DB at the target: one #DB at the next instruction",
    "TF: RDMSR of an unknown MSR is #GP with no #DB of its own",
    "TF: MOV SS then CPUID: one #DB at the next instruction", "TF: MOV SS then OUT: one #DB at the next instruction",
    "DR0 execute: CPUID: one #DB at the instruction, DR6 0x1", "DR0 execute: OUT: one #DB at the instruction",
    "DR0 execute: RDMSR (an exit): one #DB at the instruction", "DR0 execute: RDPMC: one #DB at the instruction",
    "DR0 execute: MOV from CR8: one #DB at the instruction", "DR0 on OUT, DR1 on the next instruction: two #DB faults",
    "DR1 data write: trap after the store", "DR1 data write: a read does not trap",
    "DR1 data write before OUT: trap before the OUT, which then runs once",
    "TF and DR1 data write: one #DB with BS and B1", "DR1 data read/write: an 8-byte read overlapping it traps",
    "DR7 cleared: no more data traps", "DR0 data write in REP STOSB: one trap after the 9th iteration",
    "DR2 I/O port 0x80: trap after OUT", "DR2 I/O port 0x80: OUT to 0x81 does not trap",
    "TF and DR2 I/O: one #DB with BS and B2 after IN"]
DEBUG_VENDOR_CHECKS = {"intel": ["TF: SYSENTER (TF kept): one #DB at the target"],
                       "amd": ["AMD: TF: SYSENTER in long mode is #UD and raises no #DB of its own"]}


@pytest.mark.parametrize("kvm", [False, True], ids=["no-hypercalls", "kvm-pv"])
@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_debug_exceptions_around_emulated_instructions(cpu, kvm):
    """One #DB after each emulated instruction run with TF (DR6.BS, RIP after it), none of its own when it
    faults; instruction breakpoints fault before it, data and I/O breakpoints trap after their instruction."""
    config = {"cmdline": "kvm", "devices": [DeviceSpec("kvm-pv")]} if kvm else {}
    result, serial = boot("debug_traps", cpu=cpu, **config)
    assert_all_pass(result, serial)
    hypercalls = [f"TF: {name} hypercall: one #DB after it" for name in ("VMCALL", "VMMCALL")] + \
        ["DR0 execute: VMCALL: one #DB at the instruction"] if kvm else \
        [f"TF: {name} without hypercalls is #UD with no #DB of its own" for name in ("VMCALL", "VMMCALL")]
    _passed(serial, DEBUG_CHECKS + DEBUG_VENDOR_CHECKS[cpu] + hypercalls)
