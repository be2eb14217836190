# SPDX-License-Identifier: GPL-2.0-or-later
"""One vCPU of the machine and the parts every x86 CPU has its own of.

A :class:`Cpu` is an engine (its own Unicorn instance over the machine's one guest RAM), the hook
layer on it (vmm._ucvcpu.UcVcpu), and its CPUID model (its APIC id and the package topology), local
APIC, PMU, speculation-control and architectural MSRs.  It has its own MSR bus and its own view of
MMIO: its LAPIC page over the board's bus (:class:`CpuMmio`), so each vCPU reaches its own LAPIC at
the same address, as on a PC.  The board's devices (port I/O, MMIO windows, MSR devices) are shared.

Life cycle of a vCPU (:class:`CpuState`): the BSP (index 0) is RUNNABLE from the start; application
processors wait for a start-up IPI (WAIT_FOR_SIPI) as on a PC.  A SIPI with vector V starts a
waiting CPU in real mode at V*4 KiB with the register state INIT leaves (:meth:`Cpu.start_at_sipi`);
an INIT sends any CPU, the BSP included, back to WAIT_FOR_SIPI (there is no BIOS to run at the
reset vector).  HLT makes a CPU HALTED until an interrupt or NMI it can take is pending.

Not modelled: the reset vector (0xFFFFFFF0) and a BIOS, SMM and SMI, the x87/SSE state an INIT
keeps (it keeps everything it had), INIT deassert (a no-op on P4 and later CPUs).
"""

from __future__ import annotations

import enum

from devices.bus import Bus
from devices.cpu_msrs import CpuMsrs
from devices.lapic import Lapic
from devices.speculation import SpeculationControl
from pmu.pmu import Pmu
from vmm import engine as ucapi
from vmm._ucvcpu import UcVcpu
from vmm.cpuid import CpuidError, CpuidModel
from vmm.dispatch import Dispatcher
from vmm.errors import VmmError

MMIO_PAGE = 0x1000
IBPB_FEATURE = {"intel": "spec_ctrl", "amd": "amd_ibpb"}   # the CPUID bit that advertises PRED_CMD.IBPB

# The register state INIT leaves (Intel SDM vol. 3, "Processor state following power-up, reset or
# INIT"), as the SIPI starts it: paging and protection off, caches disabled (CD/NW), ET set.
INIT_CR0 = 0x60000010
CR0_PE = 1 << 0
CR0_PG = 1 << 31
INIT_RFLAGS = 0x2
INIT_DR6 = 0xFFFF0FF0
INIT_DR7 = 0x400
REAL_MODE_TABLE = (0, 0, 0xFFFF, 0)          # GDTR/IDTR: base 0, limit 0xFFFF
INIT_LDTR = (0, 0, 0xFFFF, 0x8200)           # present LDT, base 0, limit 0xFFFF
INIT_TR = (0, 0, 0xFFFF, 0x8900)             # as the hook layer starts TR (see UcVcpu.__init__)
GENERAL_REGISTERS = (ucapi.UC_X86_REG_RAX, ucapi.UC_X86_REG_RBX, ucapi.UC_X86_REG_RCX, ucapi.UC_X86_REG_RSI,
                     ucapi.UC_X86_REG_RDI, ucapi.UC_X86_REG_RBP, ucapi.UC_X86_REG_RSP, ucapi.UC_X86_REG_R8,
                     ucapi.UC_X86_REG_R9, ucapi.UC_X86_REG_R10, ucapi.UC_X86_REG_R11, ucapi.UC_X86_REG_R12,
                     ucapi.UC_X86_REG_R13, ucapi.UC_X86_REG_R14, ucapi.UC_X86_REG_R15)
MSR_EFER = 0xC0000080


class CpuState(enum.Enum):
    RUNNABLE = "runnable"
    HALTED = "halted"
    WAIT_FOR_SIPI = "wait-for-SIPI"


class CpuMmio:
    """The MMIO a vCPU sees: its own devices (its LAPIC page) over the board's bus.  An access is
    routed by its first byte (the LAPIC page is 4 KiB aligned; nothing straddles into it in practice)."""

    def __init__(self, local: Bus, shared: Bus):
        self.local = local
        self.shared = shared

    def _bus(self, address: int) -> Bus:
        return self.local if self.local.lookup(address) is not None else self.shared

    def read(self, address: int, size: int, vcpu_id: int = 0, host: bool = False):
        return self._bus(address).read(address, size, vcpu_id, host)

    def write(self, address: int, size: int, value: int, vcpu_id: int = 0, host: bool = False):
        return self._bus(address).write(address, size, value, vcpu_id, host)

    def lookup(self, address: int, size: int = 1):
        return self._bus(address).lookup(address, size)


class Cpu:
    """vCPU ``index`` (= its APIC id) of ``machine``; the machine maps the board's MMIO windows.

    ``uc_engine`` is its unicorn engine (:class:`vmm.engine.Engine`, libunicorn driven directly);
    ``engine`` the unicorn binding's ``Uc`` over that engine, made on first use (the binding's import
    is a quarter of a short command-line run, which never needs it)."""

    def __init__(self, machine, index: int, ram_address: int):
        config = machine.config
        self.machine = machine
        self.index = index
        self.state = CpuState.RUNNABLE if index == 0 else CpuState.WAIT_FOR_SIPI
        self.uc_engine = ucapi.Engine()
        self._ram_address = ram_address
        self.uc_engine.mem_map_ptr(0, config.memory, ucapi.UC_PROT_ALL, ram_address)
        self.vcpu = UcVcpu(self.uc_engine, vcpu_id=index)
        self.vcpu.self_test()
        self.vcpu.forced_emulation = config.forced_emulation
        self.vcpu.sync_translations = config.smp > 1
        self.vcpu.strict_memory = config.strict_memory
        try:
            self.cpuid = CpuidModel(config.cpu, *(config.cpu_signature or ()), vcpu=self.vcpu)
            self.cpuid.set_feature(IBPB_FEATURE[self.cpuid.vendor], True)
            if self.cpuid.vendor == "intel":
                self.cpuid.set_feature("tsc_adjust", True)     # the hook layer serves MSR 0x3B
            CpuMsrs.advertise(self.cpuid)
            for name, on in config.cpuid_features.items():
                self.cpuid.set_feature(name, on)
            self.cpuid.set_topology(index, config.smp)
        except CpuidError as e:
            raise VmmError(str(e)) from None
        self.msr = Bus("msr", 1 << 32, (8,), indexed=True)
        self.local_mmio = Bus("mmio", 1 << 52)
        self.mmio = CpuMmio(self.local_mmio, machine.mmio)
        self._build_parts(machine)
        self.dispatcher = Dispatcher(machine.pio, self.mmio, self.msr, self.cpuid, self.pmu.rdpmc)
        self.vcpu.handler = self.dispatcher
        self.vcpu.platform = self
        self.vcpu.intc = self
        self.vcpu.on_attention = self._attention

    @property
    def engine(self):
        """The unicorn binding's ``Uc`` over this vCPU's engine (hooks with Python callbacks, the
        binding's whole API)."""
        return self.uc_engine.uc

    def _build_parts(self, machine) -> None:
        """The local APIC, PMU, speculation-control and architectural MSRs of this vCPU."""
        self.lapic = Lapic(machine.clock, self.cpuid, self.vcpu, apic_id=self.index, bsp=self.index == 0)
        self.lapic.on_base_change = self._move_apic_window
        self.lapic.on_write = machine.sync_timers
        self.lapic.attach(self.local_mmio, self.msr)
        # Its xAPIC page is answered in the vCPU layer, except when exits are traced (each is one then).
        self.vcpu.attach_lapic(self.lapic, xapic_page=not machine.config.exits_traced)
        self.vcpu.map_mmio(self.lapic.base, MMIO_PAGE)
        # The VMware pseudo-PMCs are on by default, like the backdoor port.  Their "real time" is
        # virtual time too, so every counter the guest can read stays deterministic.
        config = machine.config.pmu or machine.default_pmu_config(self.cpuid.vendor)
        if config.vendor != self.cpuid.vendor:
            raise VmmError(f"PMU vendor {config.vendor!r} does not match the CPU vendor {self.cpuid.vendor!r}")
        config.apply_to_cpuid(self.cpuid)
        self.pmu = Pmu(self.cpuid, self.vcpu, self.lapic, machine.clock, config, real_clock=machine.clock)
        self.pmu.attach(self.msr)
        self.vcpu.attach_pmu(self.pmu.core)
        if self.cpuid.has(IBPB_FEATURE[self.cpuid.vendor]):
            SpeculationControl(self.vcpu.flush_branch_predictor).register(self.msr)
        CpuMsrs(machine.platform, cpuid=self.cpuid).register(self.msr)

    def _move_apic_window(self, old: int, new: int) -> None:
        """This vCPU's xAPIC page moved: as on a PC it shadows the RAM under its new place, and the
        RAM under its old place is seen again (by this vCPU only: the page is its own)."""
        ram_size = self.machine.config.memory
        self.vcpu.unmap_mmio(old, MMIO_PAGE)
        if old < ram_size:
            self.uc_engine.mem_map_ptr(old, MMIO_PAGE, ucapi.UC_PROT_ALL, self._ram_address + old)
        if new < ram_size:
            self.uc_engine.mem_unmap(new, MMIO_PAGE)
        self.vcpu.map_mmio(new, MMIO_PAGE)

    # -- what the hook layer asks of its platform and interrupt source -----------------------
    def _attention(self) -> None:
        self.machine.service(self)

    def backdoor(self, port: int, regs: dict) -> None:
        self.machine.backdoor(port, regs)

    def hypercall(self, regs: dict, cpl: int, long_mode: bool) -> int | None:
        return self.machine.hypercall(self, regs, cpl, long_mode)

    def read_cr8(self) -> int:
        return self.lapic.get_cr8()

    def write_cr8(self, value: int) -> None:
        self.lapic.set_cr8(value)

    def next_injection(self, interrupts: bool):
        """The NMI or (if ``interrupts``) maskable interrupt to deliver now, as (vector, is_nmi), or None."""
        if not self.vcpu.nmi_blocked() and self.lapic.take_nmi():
            return 2, True
        if not interrupts:
            return None
        vector = self.lapic.interrupt_for(self.vcpu)
        if vector is None:
            return None
        return self.lapic.accept_interrupt(vector), False

    # -- scheduling state ----------------------------------------------------------------------
    def can_wake(self) -> bool:
        """A halted vCPU has an NMI or an interrupt it can take now."""
        if not self.vcpu.nmi_blocked() and self.lapic.nmi_pending:
            return True
        return self.vcpu.interrupts_enabled() and self.lapic.pending_interrupt() is not None

    def start_at_sipi(self, vector: int) -> None:
        """Start a CPU waiting for SIPI in real mode at ``vector`` * 4 KiB (CS = vector << 8, IP 0)
        with the register state INIT leaves; EDX holds the CPU signature."""
        eng = self.uc_engine
        # Leave long mode first.  The engine clears EFER.LMA (read-only to WRMSR) only when CR0.PG
        # goes from 1 to 0, and a 64-bit engine starts with LMA set and PG clear: so PG is set
        # for a moment (nothing is fetched in between) and then cleared with the rest of CR0.
        eng.reg_write(ucapi.UC_X86_REG_CR0, eng.reg_read(ucapi.UC_X86_REG_CR0) | CR0_PG | CR0_PE)
        eng.reg_write(ucapi.UC_X86_REG_CR0, INIT_CR0)
        eng.reg_write(ucapi.UC_X86_REG_MSR, (MSR_EFER, 0))
        for reg in (ucapi.UC_X86_REG_CR4, ucapi.UC_X86_REG_CR3, ucapi.UC_X86_REG_CR2):
            eng.reg_write(reg, 0)
        for reg in GENERAL_REGISTERS:
            eng.reg_write(reg, 0)
        eng.reg_write(ucapi.UC_X86_REG_RDX, self.cpuid.signature())
        eng.reg_write(ucapi.UC_X86_REG_RFLAGS, INIT_RFLAGS)
        eng.reg_write(ucapi.UC_X86_REG_GDTR, REAL_MODE_TABLE)
        eng.reg_write(ucapi.UC_X86_REG_IDTR, REAL_MODE_TABLE)
        eng.reg_write(ucapi.UC_X86_REG_LDTR, INIT_LDTR)
        eng.reg_write(ucapi.UC_X86_REG_TR, INIT_TR)
        eng.reg_write(ucapi.UC_X86_REG_DR6, INIT_DR6)
        eng.reg_write(ucapi.UC_X86_REG_DR7, INIT_DR7)
        self.vcpu.load_real_mode_segments(vector << 8)
        eng.reg_write(ucapi.UC_X86_REG_RIP, 0)
        self.state = CpuState.RUNNABLE
