# SPDX-License-Identifier: GPL-2.0-or-later
"""A machine: guest RAM, one vCPU on Unicorn, the buses, the devices and the run loop.

Boot: the VMM writes a flat GDT, identity page tables for the first 4 GiB and the boot
trampoline (firmware/trampoline.S) into its boot area (docs/design.md), loads the kernel with
vmm.loader, and starts the vCPU at the trampoline, which enters the kernel in long mode (plain
ELF64) or 32-bit protected mode (multiboot).

The run loop turns terminal exits into a :class:`RunResult`: the guest's debug-exit status, a
clean "guest shut down" on a triple fault, "halted forever" when HLT can never be woken (no
interrupt pending or possible, no timer armed), a wall-clock timeout or an instruction limit.
HLT waits on virtual time: the clock skips to the next timer deadline, never sleeps.

Not supported: more than one vCPU (``smp`` must be 1), RAM above 3 GiB, PCI, ACPI, device
hot-plug, save/restore of the whole machine (the LAPIC and PMU have their own state).
"""

from __future__ import annotations

import ctypes
import mmap
import struct
import sys
from dataclasses import dataclass, field

import unicorn
from unicorn import x86_const as uxc

import firmware
from devices.bochs import BochsShutdown
from devices.bus import Bus
from devices.debug_exit import DebugExit
from devices.fw_cfg import FwCfg
from devices.lapic import Lapic, Lvt
from devices.pic import register_pics
from devices.speculation import SpeculationControl
from devices.test_hooks import TestHooks
from devices.uart import Uart16550
from devices.vmware import VMWARE_PORT, VmwareBackdoor
from pmu.config import PmuConfig
from pmu.pmu import Pmu
from vmm._ucvcpu import UcVcpu
from vmm.clock import VirtualClock
from vmm.cpuid import CpuidError, CpuidModel
from vmm.dispatch import Dispatcher
from vmm.errors import VmmError
from vmm.exits import ExitKind
from vmm.loader import Window, bus_windows, load_kernel

GDT_ADDRESS = 0x1000
GDTR_ADDRESS = 0x1080
PARAMS_ADDRESS = 0x1100
TRAMPOLINE_ADDRESS = 0x8000
PML4_ADDRESS = 0x10000
BOOT_STACK_TOP = 0x9F000
MAX_RAM = 3 << 30
GDT = (0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00CF9A000000FFFF)  # null, code64, data, code32
IBPB_FEATURE = {"intel": "spec_ctrl", "amd": "amd_ibpb"}   # the CPUID bit that advertises PRED_CMD.IBPB

# Process exit statuses for endings that are not the guest's own debug-exit status.
STATUS_TIMEOUT = 124        # as `timeout(1)` and test runners report it
STATUS_SHUTDOWN = 125       # triple fault
STATUS_HALTED = 126         # HLT that nothing can ever wake
STATUS_LIMIT = 124          # instruction limit: reported like a timeout
STATUS_INTERNAL = 70        # EX_SOFTWARE: the VMM or the engine could not go on


@dataclass
class MachineConfig:
    memory: int = 128 << 20
    cpu: str = "intel"
    smp: int = 1
    cmdline: str = ""
    initrd: bytes | None = None
    serial: object = None            # binary sink for COM1; None = stdout
    timeout: float = 0.0             # wall-clock seconds, 0 = none
    max_insns: int = 0               # 0 = none
    trace_exits: bool = False
    forced_emulation: bool = False
    pmu: PmuConfig | None = None     # None = derived from the CPU vendor's defaults
    cpu_signature: tuple[int, int, int] | None = None   # (family, model, stepping); None = vendor default
    cpuid_features: dict[str, bool] = field(default_factory=dict)   # vmm.cpuid.FEATURES name -> on/off
    test_hooks: bool = False         # devices/test_hooks.py on port 0xE0


@dataclass
class RunResult:
    status: int                      # process exit status
    reason: str                      # "debug-exit", "poweroff", "shutdown", "halted", "timeout", "limit", "error"
    detail: str = ""
    instructions: int = 0
    serial: bytes = field(default=b"", repr=False)


class Machine:
    def __init__(self, config: MachineConfig | None = None):
        self.config = config = config or MachineConfig()
        if config.smp != 1:
            raise VmmError(f"--smp {config.smp}: only one vCPU is supported")
        if not (2 << 20) <= config.memory <= MAX_RAM or config.memory % 0x1000:
            raise VmmError(f"memory size {config.memory:#x}: must be a multiple of 4 KiB between 2 MiB and 3 GiB")
        self.boot = None
        self.exit_status: int | None = None
        self.exit_reason = ""

        self.engine = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        self.ram_buffer = mmap.mmap(-1, config.memory)
        self.ram = memoryview(self.ram_buffer)
        address = ctypes.addressof(ctypes.c_char.from_buffer(self.ram_buffer))
        self.engine.mem_map_ptr(0, config.memory, unicorn.UC_PROT_ALL, address)
        self.vcpu = UcVcpu(self.engine)
        self.vcpu.self_test()
        self.vcpu.forced_emulation = config.forced_emulation
        if config.max_insns:
            self.vcpu.max_insns = config.max_insns

        self.clock = VirtualClock(self.vcpu)
        try:
            self.cpuid = CpuidModel(config.cpu, *(config.cpu_signature or ()))
            self.cpuid.set_feature(IBPB_FEATURE[config.cpu], True)
            for name, on in config.cpuid_features.items():
                self.cpuid.set_feature(name, on)
        except CpuidError as e:
            raise VmmError(str(e)) from None
        self.pio = Bus("pio", 0x10000, (1, 2, 4))
        self.mmio = Bus("mmio", 1 << 52)
        self.msr = Bus("msr", 1 << 32, (8,), indexed=True)
        self._build_devices()
        self.dispatcher = Dispatcher(self.pio, self.mmio, self.msr, self.cpuid, self.pmu.rdpmc)
        if config.trace_exits:
            self.dispatcher.trace = _trace_exit
        self.vcpu.handler = self.dispatcher
        self.vcpu.platform = self
        self.vcpu.intc = self
        self.vcpu.on_attention = self._service
        self._write_boot_area()

    # -- assembly ---------------------------------------------------------------------
    def _build_devices(self) -> None:
        cfg = self.config
        self.uart = Uart16550(cfg.serial)
        self.uart.register(self.pio)
        DebugExit(self._guest_exit).register(self.pio)
        BochsShutdown(self._guest_poweroff).register(self.pio)
        FwCfg(cfg.memory, nb_cpus=cfg.smp).register(self.pio)
        register_pics(self.pio)
        self.vmware = VmwareBackdoor()
        self.vmware.register(self.pio)
        self.lapic = Lapic(self.clock, self.cpuid, self.vcpu)
        self.lapic.on_base_change = self._move_apic_window
        self.lapic.on_write = self._sync_timers
        self.lapic.attach(self.mmio, self.msr)
        self.vcpu.attach_lapic(self.lapic)
        self.vcpu.map_mmio(self.lapic.base, 0x1000)
        # The VMware pseudo-PMCs are on by default, like the backdoor port.  Their "real time" is
        # virtual time too, so every counter the guest can read stays deterministic.
        pmu_config = cfg.pmu or PmuConfig(vendor=cfg.cpu, vmware_backdoor=True)
        if pmu_config.vendor != cfg.cpu:
            raise VmmError(f"PMU vendor {pmu_config.vendor!r} does not match the CPU vendor {cfg.cpu!r}")
        pmu_config.apply_to_cpuid(self.cpuid)
        self.pmu = Pmu(self.cpuid, self.vcpu, self.lapic, self.clock, pmu_config, real_clock=self.clock)
        self.pmu.attach(self.msr)
        self.vcpu.attach_pmu(self.pmu.core)
        if self.cpuid.has(IBPB_FEATURE[cfg.cpu]):
            SpeculationControl(self.vcpu.flush_branch_predictor).register(self.msr)
        if cfg.test_hooks:
            TestHooks(self.lapic, Lvt.PMC).register(self.pio)

    def _move_apic_window(self, old: int, new: int) -> None:
        self.vcpu.unmap_mmio(old, 0x1000)
        self.vcpu.map_mmio(new, 0x1000)

    def _write_boot_area(self) -> None:
        ram = self.ram
        struct.pack_into("<4Q", ram, GDT_ADDRESS, *GDT)
        struct.pack_into("<HQ", ram, GDTR_ADDRESS, len(GDT) * 8 - 1, GDT_ADDRESS)
        pdpt, pds = PML4_ADDRESS + 0x1000, PML4_ADDRESS + 0x2000
        struct.pack_into("<Q", ram, PML4_ADDRESS, pdpt | 3)
        for i in range(4):
            struct.pack_into("<Q", ram, pdpt + 8 * i, (pds + 0x1000 * i) | 3)
        struct.pack_into("<2048Q", ram, pds, *(((i << 21) | 0x83) for i in range(2048)))
        code = firmware.trampoline()
        ram[TRAMPOLINE_ADDRESS:TRAMPOLINE_ADDRESS + len(code)] = code

    # -- loading ----------------------------------------------------------------------
    def load(self, kernel) -> object:
        """Load a kernel file (or bytes); raises vmm.errors.LoadError with a one-line reason."""
        windows = [w for w in bus_windows(self.mmio)]
        windows.append(Window(self.lapic.base, self.lapic.base + 0x1000, "LAPIC"))
        boot = load_kernel(kernel, self.ram, cmdline=self.config.cmdline, module=self.config.initrd,
                           reserved=windows)
        mode = 64 if boot.kind == "elf64" else 32
        struct.pack_into("<QQQI", self.ram, PARAMS_ADDRESS, boot.entry, boot.mbi_address, BOOT_STACK_TOP, mode)
        self.engine.reg_write(uxc.UC_X86_REG_RIP, TRAMPOLINE_ADDRESS)
        self.boot = boot
        return boot

    # -- what the vCPU asks of the platform beyond exits (on its own thread) ----------------
    def backdoor(self, port: int, regs: dict) -> None:
        if port == VMWARE_PORT:
            self.vmware.handle_in(regs)
        else:
            regs["rax"] = 0xFFFFFFFF

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

    def _service(self) -> None:
        """Work on the vCPU side before the next guest instruction: PMIs, timers."""
        self.pmu.service_pmi()
        self.lapic.tick(self.clock.now())
        self._sync_timers()

    def _sync_timers(self) -> None:
        deadline = self.lapic.next_deadline()
        self.vcpu.deadline = (1 << 64) - 1 if deadline is None else deadline
        self.vcpu.irq_pending = True

    def _guest_exit(self, status: int) -> None:
        self.exit_status, self.exit_reason = status, "debug-exit"
        self.vcpu.request_stop("debug-exit")

    def _guest_poweroff(self, status: int) -> None:
        self.exit_status, self.exit_reason = status, "poweroff"
        self.vcpu.request_stop("poweroff")

    # -- running ----------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.boot is None:
            raise VmmError("Machine.run() before Machine.load(): no kernel to run")
        try:
            return self._run()
        finally:
            self.uart.flush()

    def _run(self) -> RunResult:
        while True:
            self.pmu.sched_in()
            self.pmu.before_guest_entry()
            ex = self.vcpu.run(timeout=self.config.timeout)
            if ex.kind is ExitKind.HLT:
                if self._wait_in_hlt():
                    continue
                return self._result(STATUS_HALTED, "halted", "guest halted forever: nothing can wake it")
            if ex.kind is ExitKind.STOPPED:
                if self.exit_status is not None:
                    return self._result(self.exit_status, self.exit_reason)
                if ex.reason == "timeout":
                    return self._result(STATUS_TIMEOUT, "timeout", f"timed out after {self.config.timeout:g} s")
                return self._result(STATUS_LIMIT, "limit", ex.reason)
            if ex.kind is ExitKind.SHUTDOWN:
                return self._result(STATUS_SHUTDOWN, "shutdown", f"guest shut down: {ex.reason}")
            return self._result(STATUS_INTERNAL, "error", ex.reason)

    def _wait_in_hlt(self) -> bool:
        """HLT: True when something will wake the vCPU (the clock is moved to it)."""
        while True:
            self._service()
            if self.lapic.nmi_pending or (self.lapic.has_wakeup() and self.vcpu.interrupts_enabled()):
                self.vcpu.kick()
                return True
            deadline = self.lapic.next_deadline()
            if deadline is None:
                return False
            self.clock.skip_to(deadline)
            self._service()

    def _result(self, status: int, reason: str, detail: str = "") -> RunResult:
        self.uart.flush()
        return RunResult(status, reason, detail, self.vcpu.retired, bytes(self.uart.output))


def _trace_exit(exit, result) -> None:
    print(f"exit {exit.kind.name} addr={exit.address:#x} size={exit.size} value={exit.value:#x} -> {result!r}",
          file=sys.stderr)
