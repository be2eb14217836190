# SPDX-License-Identifier: GPL-2.0-or-later
"""SMP machine mechanics with real vCPUs: the per-vCPU parts, the state a SIPI starts an AP in,
round-robin time slices on one clock, and endings that belong to the whole machine.

An application processor is started here with Cpu.start_at_sipi() directly, on hand-assembled
real-mode code, so these tests need no IPI; guest kernels that bring APs up through the LAPIC are
in tests/test_guest_smp.py.
"""

from __future__ import annotations

import io
import struct

import firmware
from tests.acpi_parse import Memory, parse_madt, parse_rsdp, root_entries
from vmm.cpu import CpuState
from vmm.machine import Machine, MachineConfig

AP_VECTOR = 8                      # the AP's code at 0x8000
AP_CODE = 0x8000
RESULTS = 0x100                    # where the AP's real-mode code leaves what it saw (DS = 0)

# Real-mode code: record CS, EDX, CR0, CPUID.1:EBX and the TSC, then count in [0x114] forever.
AP_RECORD_AND_COUNT = bytes([
    0x8C, 0xC8,                                 # mov ax, cs
    0xA3, 0x00, 0x01,                           # mov [0x100], ax
    0x66, 0x89, 0x16, 0x04, 0x01,               # mov [0x104], edx
    0x0F, 0x20, 0xC0,                           # mov eax, cr0
    0x66, 0xA3, 0x08, 0x01,                     # mov [0x108], eax
    0x0F, 0x31,                                 # rdtsc
    0x66, 0xA3, 0x10, 0x01,                     # mov [0x110], eax
    0x66, 0xB8, 0x01, 0x00, 0x00, 0x00,         # mov eax, 1
    0x0F, 0xA2,                                 # cpuid
    0x66, 0x89, 0x1E, 0x0C, 0x01,               # mov [0x10c], ebx
    0x66, 0xFF, 0x06, 0x14, 0x01,               # 1: inc dword [0x114]
    0xEB, 0xF9,                                 # jmp 1b
])
AP_DEBUG_EXIT = bytes([0xB0, 0x21, 0xE6, 0xF4, 0xF4])          # mov al, 0x21; out 0xf4, al; hlt
AP_TRIPLE_FAULT = bytes([0x0F, 0x01, 0x1E, 0x20, 0x01, 0xCC])  # lidt [0x120] (limit 0); int3


def _machine(smp: int, kernel: str = "spin", ap_code: bytes | None = None, **config) -> Machine:
    config.setdefault("timeout", 60)
    machine = Machine(MachineConfig(smp=smp, serial=io.BytesIO(), **config))
    machine.load(str(firmware.image(kernel)))
    if ap_code is not None:
        machine.ram[AP_CODE:AP_CODE + len(ap_code)] = ap_code
        machine.cpus[1].start_at_sipi(AP_VECTOR)
    return machine


def _u32(machine: Machine, address: int) -> int:
    return struct.unpack_from("<I", machine.ram, address)[0]


def test_each_vcpu_has_its_own_lapic_pmu_and_cpuid():
    machine = _machine(4)
    assert [cpu.lapic.apic_id for cpu in machine.cpus] == [0, 1, 2, 3]
    assert [bool(cpu.msr.read(0x1B, 8) & 0x100) for cpu in machine.cpus] == [True, False, False, False]
    assert len({id(cpu.pmu) for cpu in machine.cpus}) == 4 and len({id(cpu.engine) for cpu in machine.cpus}) == 4
    for cpu in machine.cpus:
        assert cpu.cpuid.query(1)[1] >> 24 == cpu.index
        assert cpu.cpuid.query(1)[1] >> 16 & 0xFF == 4 and cpu.cpuid.query(1)[3] >> 28 & 1   # HTT, 4 ids
        assert cpu.cpuid.query(0xB, 1)[1:] == (4, 0x201, cpu.index)      # 4 cores at the core level
    assert [cpu.state for cpu in machine.cpus] == [CpuState.RUNNABLE] + [CpuState.WAIT_FOR_SIPI] * 3


def test_madt_and_fw_cfg_count_every_vcpu():
    machine = _machine(3)
    memory = Memory(0xE0000, bytes(machine.ram[0xE0000:0x100000]))
    rsdp = parse_rsdp(memory.read(machine.acpi.rsdp_address, 36))
    tables = [memory.table(a) for a in root_entries(memory.table(rsdp.xsdt_address), 8)]
    madt = parse_madt(next(t for t in tables if t[:4] == b"APIC"))
    assert madt.local_apics == [(i, i, 1) for i in range(3)]
    assert machine.platform.nb_cpus == 3


def test_aps_wait_for_sipi_and_never_run_without_one():
    machine = _machine(2, "hello64")
    result = machine.run()
    assert (result.reason, result.status) == ("debug-exit", 1)
    assert machine.cpus[1].vcpu.retired == 0 and machine.cpus[1].state is CpuState.WAIT_FOR_SIPI


def test_sipi_starts_an_ap_in_real_mode_with_the_init_state():
    machine = _machine(2, ap_code=AP_RECORD_AND_COUNT, quantum=5000, max_insns=40_000)
    result = machine.run()
    assert result.reason == "limit"
    ap = machine.cpus[1]
    assert _u32(machine, RESULTS) & 0xFFFF == AP_VECTOR << 8                  # CS = vector << 8
    assert _u32(machine, RESULTS + 4) == ap.cpuid.signature()                  # EDX after INIT
    assert _u32(machine, RESULTS + 8) == 0x60000010                            # CR0 after INIT
    assert _u32(machine, RESULTS + 12) >> 24 == 1                              # its own APIC id
    # One clock: the BSP's first slice (5000 instructions) ran before the AP's first instruction.
    assert 5000 <= _u32(machine, RESULTS + 16) < 5000 + 100
    assert _u32(machine, RESULTS + 20) > 1000


def test_round_robin_slices_share_the_instruction_limit_evenly_and_deterministically():
    runs = []
    for _ in range(2):
        machine = _machine(2, ap_code=AP_RECORD_AND_COUNT, quantum=1000, max_insns=100_000)
        result = machine.run()
        assert result.reason == "limit" and result.instructions >= 100_000
        bsp, ap = (cpu.vcpu.retired for cpu in machine.cpus)
        assert abs(bsp - ap) <= 2 * 1000, (bsp, ap)
        runs.append((bsp, ap, _u32(machine, RESULTS + 20), machine.clock.now()))
    assert runs[0] == runs[1]


def test_a_quantum_longer_than_the_run_lets_the_bsp_run_alone():
    machine = _machine(2, ap_code=AP_RECORD_AND_COUNT, quantum=1 << 40, max_insns=50_000)
    assert machine.run().reason == "limit"
    assert machine.cpus[1].vcpu.retired == 0


def test_an_ap_ends_the_run_through_debug_exit():
    machine = _machine(2, ap_code=AP_DEBUG_EXIT)
    result = machine.run()
    assert (result.reason, result.status) == ("debug-exit", (0x21 << 1) | 1)


def test_a_triple_fault_on_an_ap_shuts_the_machine_down_and_says_which_vcpu():
    machine = _machine(2, ap_code=AP_TRIPLE_FAULT)
    result = machine.run()
    assert result.reason == "shutdown" and result.detail.endswith("(vCPU 1)"), result


def test_halted_forever_names_every_vcpu():
    result = _machine(2, "shutdown", cmdline="halt").run()
    assert result.reason == "halted"
    assert result.detail == ("guest halted forever: vCPU 0: interrupts are disabled and nothing can raise "
                             "an NMI; vCPU 1: waiting for a SIPI")


def test_one_vcpu_keeps_the_single_cpu_wording():
    result = _machine(1, "shutdown", cmdline="halt").run()
    assert result.detail == "guest halted forever: interrupts are disabled and nothing can raise an NMI"
