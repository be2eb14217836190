# SPDX-License-Identifier: GPL-2.0-or-later
"""KvmMachine: a minimal KVM VMM built around pmu-vmm's devices.

What it assembles (one vCPU, no in-kernel irqchip):

* guest RAM (one anonymous mmap, one memory slot at 0) with our firmware area and kernel loaded by
  vmm/firmware_area.py and vmm/loader.py, entered through firmware/trampoline.S exactly as our
  own VMM does (the vCPU starts in long mode at the trampoline over the identity map);
* CPUID from vmm/cpuid.py's model with the PMU leaves from PmuConfig.apply_to_cpuid, given to
  KVM with KVM_SET_CPUID2;
* our LAPIC (devices/lapic.pyx) and PMU (pmu.Pmu) on our MSR and MMIO buses, the UART,
  isa-debug-exit and the Bochs shutdown port on our port bus, all reached through our Dispatcher
  (vmm/dispatch.py) from KVM's IO, MMIO and MSR exits;
* KVM_CAP_X86_USER_SPACE_MSR (INVAL | UNKNOWN | FILTER) and a default-allow MSR filter that
  denies exactly the MSRs our PMU and LAPIC registered on the MSR bus, so KVM forwards them to
  user space (KVM_EXIT_X86_RDMSR/WRMSR).  The x2APIC MSRs (0x800-0x8FF) cannot be filtered; with
  no in-kernel LAPIC KVM finds them invalid and forwards them as INVAL exits instead;
* interrupts from the LAPIC injected with KVM_INTERRUPT when KVM says the guest is ready
  (``request_interrupt_window`` otherwise), NMIs with KVM_NMI;
* exact PMU counts by single-stepping while a counter needs them (pmu_kvm.counting).

Time: the clock the LAPIC and the PMU see is host time (monotonic ns since the machine was made):
under KVM the guest runs natively and its TSC is the host's, so our virtual-time model (one
instruction = 1 ns) does not hold; timer deadlines are looked at between exits and while halted.

Not supported: more than one vCPU, the PC board beyond COM1/debug-exit/shutdown ports (no IOAPIC,
PIT, RTC, ACPI tables, fw_cfg), CR8 as the LAPIC's TPR (KVM keeps CR8 itself without an in-kernel
LAPIC), moving the xAPIC page, timers firing while the guest runs without exits, Linux kernels,
save/restore, RDPMC (never reaches user space under KVM: see README.md).
"""

from __future__ import annotations

import ctypes
import mmap
import time
from dataclasses import dataclass

import firmware
from devices.bus import Bus, Fault
from devices.lapic import ApicBus, Lapic
from devices.registry import device_class
from pmu.config import PmuConfig
from pmu.pmu import Pmu
from pmu_kvm import kvmapi
from pmu_kvm.counting import StepCounter
from pmu_kvm.vcpu import KvmVcpu
from vmm.cpuid import SUBLEAF_LEAVES, CpuidModel
from vmm.dispatch import Dispatcher
from vmm.exits import Exit, ExitKind
from vmm.firmware_area import (
    BOOT_STACK_TOP,
    GDT_ADDRESS,
    MODE_ELF64,
    MODE_PROTECTED32,
    PML4_ADDRESS,
    TRAMPOLINE_ADDRESS,
    write_boot_structures,
    write_entry_parameters,
)
from vmm.loader import BootInfo, Window, bus_windows, load_kernel
from vmm.platform import Platform

APIC_BASE_MSR = 0x1B
APIC_BASE_DEFAULT = 0xFEE00000 | (1 << 11) | (1 << 8)     # enabled, BSP
DEVICES = ("isa-serial", "isa-debug-exit", "bochs-shutdown")
MSR_FILTER_MAX_NMSRS = 0x600 * 8      # KVM_MSR_FILTER_MAX_BITMAP_SIZE bytes of bits
#: Every architectural PMU MSR of both vendors (largest shapes PmuConfig allows).  Those our PMU does
#: not own for this configuration are denied too, so that the guest gets what our MSR bus answers
#: (#GP) instead of what KVM does with them (on an AMD host with enable_pmu=N, KVM reads the K7
#: counters 0xC0010000-7 as 0 even for an Intel guest).
PMU_MSR_RANGES = (
    (0xC1, 8), (0x186, 8), (0x309, 4), (0x345, 1), (0x38D, 4), (0x4C1, 8),     # Intel
    (0xC0010000, 8), (0xC0010200, 12), (0xC0000300, 4),                        # AMD
)
EFER_LME, EFER_LMA = 1 << 8, 1 << 10
CR0_PE, CR0_ET, CR0_NE, CR0_PG = 1, 1 << 4, 1 << 5, 1 << 31
CR4_PAE = 1 << 5


class HostClock:
    """Host monotonic time in ns since the machine was made: what the LAPIC and PMU see under KVM."""

    def __init__(self) -> None:
        self._start = time.monotonic_ns()

    def now(self) -> int:
        return time.monotonic_ns() - self._start


@dataclass
class KvmResult:
    status: int          # the guest's debug-exit status, 0 on poweroff, 124 timeout, 125 shutdown, 126 halted
    reason: str          # "debug-exit", "poweroff", "timeout", "shutdown", "halted", "error"
    detail: str = ""
    exits: dict | None = None
    stepped: int = 0


class KvmMachine:
    def __init__(self, cpu: str = "intel", memory: int = 128 << 20, cmdline: str = "", console=None,
                 pmu_config: PmuConfig | None = None, disable_kvm_pmu: bool = True):
        self.kvm = kvmapi.Kvm()
        if self.kvm.api_version() != kvmapi.API_VERSION:
            raise RuntimeError(f"KVM API version {self.kvm.api_version()}, expected {kvmapi.API_VERSION}")
        for cap, name in ((kvmapi.CAP_X86_USER_SPACE_MSR, "KVM_CAP_X86_USER_SPACE_MSR"),
                          (kvmapi.CAP_X86_MSR_FILTER, "KVM_CAP_X86_MSR_FILTER"),
                          (kvmapi.CAP_SET_GUEST_DEBUG, "KVM_CAP_SET_GUEST_DEBUG")):
            if not self.kvm.check_extension(cap):
                raise RuntimeError(f"{name} is missing")
        self.memory = memory
        self.cmdline = cmdline
        self.vm = self.kvm.create_vm()
        # KVM's own PMU: disabled for this VM where the host offers KVM_CAP_PMU_CAPABILITY (it must
        # be done before the vCPU exists).  Our PMU serves every PMU MSR either way.
        self.kvm_pmu = "host has no KVM PMU (enable_pmu=N)" if not self.vm.check_extension(
            kvmapi.CAP_PMU_CAPABILITY) else "enabled"
        if disable_kvm_pmu and self.vm.check_extension(kvmapi.CAP_PMU_CAPABILITY):
            self.vm.enable_cap(kvmapi.CAP_PMU_CAPABILITY, kvmapi.PMU_CAP_DISABLE)
            self.kvm_pmu = "disabled (KVM_PMU_CAP_DISABLE)"
        self.ram_buffer = mmap.mmap(-1, memory, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        self.ram = memoryview(self.ram_buffer)
        host = ctypes.addressof(ctypes.c_char.from_buffer(self.ram_buffer))
        self.vm.set_user_memory_region(0, 0, memory, host)
        self.vm.enable_cap(kvmapi.CAP_X86_USER_SPACE_MSR, kvmapi.MSR_EXIT_REASON_INVAL
                           | kvmapi.MSR_EXIT_REASON_UNKNOWN | kvmapi.MSR_EXIT_REASON_FILTER)

        self.vcpu = KvmVcpu(self.vm.create_vcpu(0))
        self.clock = HostClock()
        self.cpuid = CpuidModel(cpu, vcpu=self.vcpu)
        config = pmu_config or PmuConfig(vendor=self.cpuid.vendor)
        config.apply_to_cpuid(self.cpuid)
        self.pio = Bus("pio", 0x10000, (1, 2, 4))
        self.mmio = Bus("mmio", 1 << 52)
        self.msr = Bus("msr", 1 << 32, (8,), indexed=True)
        self.lapic = Lapic(self.clock, self.cpuid, self.vcpu)
        self.lapic.attach(self.mmio, self.msr)
        self.pmu = Pmu(self.cpuid, self.vcpu, self.lapic, self.clock, config)
        self.pmu.attach(self.msr)
        self.stop: tuple[str, int] | None = None
        self.apic_bus = ApicBus()
        self.apic_bus.attach(self.lapic)
        self.platform = Platform(self.clock, memory, console, self._stop_requested, lambda: None, self.apic_bus)
        self.devices = []
        for name in DEVICES:
            cls = device_class(name)
            device = cls(self.platform, **cls.parse_props({}))
            device.register(self.pio)
            self.devices.append(device)
        self.uart = self.devices[0]
        self.dispatcher = Dispatcher(self.pio, self.mmio, self.msr, self.cpuid, self.pmu.rdpmc)
        self.filtered = self.install_msr_filter()
        self.vcpu.fd.set_cpuid2(self.cpuid_entries())
        self.counter = StepCounter(self.vcpu, self.pmu, self.ram)
        self.exits: dict[str, int] = {}
        self.boot: BootInfo | None = None

    # -- configuration -----------------------------------------------------------------------------
    def owned_msr_ranges(self) -> list[tuple[int, int, str]]:
        """``(base, size, owner)`` of every MSR range our PMU or LAPIC registered on the MSR bus."""
        owners = {id(self.pmu): "pmu", id(self.lapic): "lapic"}
        return [(base, size, owners[id(dev)]) for base, size, dev in self.msr.ranges() if id(dev) in owners]

    def install_msr_filter(self) -> list[tuple[int, int, str]]:
        """Deny (= send to user space) every MSR our PMU and LAPIC own and every PMU MSR of either
        vendor; KVM keeps all the others.  Returns the MSR ranges our devices own."""
        ranges = []
        spans = sorted(set((base, size) for base, size, _ in self.owned_msr_ranges()) | set(PMU_MSR_RANGES))
        merged: list[list[int]] = []
        for base, size in spans:        # one filter range per run of overlapping spans
            if merged and base <= merged[-1][0] + merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], base + size - merged[-1][0])
            else:
                merged.append([base, size])
        for base, size in merged:
            if size > MSR_FILTER_MAX_NMSRS:
                raise ValueError(f"MSR range {base:#x}+{size:#x} is too large for one filter range")
            ranges.append((kvmapi.MSR_FILTER_READ | kvmapi.MSR_FILTER_WRITE, base, size, bytes((size + 7) // 8)))
        self._filter_buffers = self.vm.set_msr_filter(ranges)
        return self.owned_msr_ranges()

    def cpuid_entries(self) -> list[tuple[int, int, int, int, int, int, int]]:
        """Every leaf of our CPUID model as KVM_SET_CPUID2 entries (subleaves 0-7 where they matter)."""
        entries = []
        for first in (0, 0x80000000):
            top = self.cpuid.query(first)[0]
            for leaf in range(first, top + 1):
                if leaf in SUBLEAF_LEAVES:
                    for sub in range(8):
                        regs = self.cpuid.query(leaf, sub)
                        if sub == 0 or any(regs):
                            entries.append((leaf, sub, kvmapi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX, *regs))
                else:
                    entries.append((leaf, 0, 0, *self.cpuid.query(leaf)))
        return entries

    # -- boot --------------------------------------------------------------------------------------
    def load(self, kernel) -> BootInfo:
        """Load a test kernel and point the vCPU at firmware/trampoline.S, in long mode."""
        write_boot_structures(self.ram, firmware.trampoline())
        windows = bus_windows(self.mmio)
        windows.append(Window(self.lapic.base, self.lapic.base + 0x1000, "LAPIC"))
        boot = load_kernel(kernel, self.ram, cmdline=self.cmdline, reserved=windows)
        if boot.kind == "linux64" or boot.kind == "pvh":
            raise ValueError(f"{boot.kind} kernels are not supported by this example")
        mode = MODE_ELF64 if boot.kind == "elf64" else MODE_PROTECTED32
        write_entry_parameters(self.ram, entry=boot.entry, boot_info=boot.boot_info_address, mode=mode)
        self._enter_long_mode()
        self.boot = boot
        return boot

    def _enter_long_mode(self) -> None:
        """The state the trampoline expects: 64-bit code at CS 0x08 over the identity map.  (Our
        Unicorn backend starts in the engine's synthetic long mode; hardware needs paging on.)"""
        sregs = self.vcpu.sregs()

        def segment(seg, selector: int, code: bool) -> None:
            seg.base, seg.limit, seg.selector = 0, 0xFFFFFFFF, selector
            seg.type = 0xB if code else 0x3
            seg.present, seg.dpl, seg.s, seg.g, seg.avl, seg.unusable = 1, 0, 1, 1, 0, 0
            seg.l, seg.db = (1, 0) if code else (0, 1)

        segment(sregs.cs, 0x08, True)
        for seg in (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss):
            segment(seg, 0x10, False)
        sregs.tr.base, sregs.tr.limit, sregs.tr.selector, sregs.tr.type = 0, 0x67, 0, 0xB
        sregs.tr.present, sregs.tr.s, sregs.tr.unusable = 1, 0, 0
        sregs.gdt.base, sregs.gdt.limit = GDT_ADDRESS, 4 * 8 - 1
        sregs.cr3 = PML4_ADDRESS
        sregs.cr4 = CR4_PAE
        sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG
        sregs.efer = EFER_LME | EFER_LMA
        sregs.apic_base = APIC_BASE_DEFAULT
        self.vcpu.set_sregs(sregs)
        regs = kvmapi.KvmRegs()
        regs.rip, regs.rsp, regs.rflags = TRAMPOLINE_ADDRESS, BOOT_STACK_TOP, 0x2
        self.vcpu.set_regs(regs)

    # -- run loop ----------------------------------------------------------------------------------
    def _stop_requested(self, reason: str, status: int) -> None:
        if self.stop is None:
            # isa-debug-exit's status is QEMU's (value << 1) | 1; report the guest's value, as
            # `python -m vmm run` does (0 = every check passed).
            value = getattr(self.devices[1], "exit_value", None) if reason == "debug-exit" else None
            self.stop = (reason, 0 if reason == "poweroff" else status if value is None else value)

    def run(self, timeout: float = 60.0) -> KvmResult:
        try:
            return self._run(timeout)
        finally:
            self.uart.flush()

    def _run(self, timeout: float) -> KvmResult:
        deadline = time.monotonic() + timeout
        run = self.vcpu.fd.run
        while True:
            self.vcpu.run_work()
            self._tick_timers()
            if self.stop is not None:
                return self._result(self.stop[1], self.stop[0])
            if time.monotonic() > deadline:
                return self._result(124, "timeout", f"no end after {timeout:g} s")
            injected = self._inject(run)
            self.counter.prepare(injected)
            reason = self.vcpu.run_once()
            name = kvmapi.EXIT_NAMES.get(reason, str(reason))
            self.exits[name] = self.exits.get(name, 0) + 1
            if reason != kvmapi.EXIT_DEBUG:
                self.counter.on_exit()
            if reason == kvmapi.EXIT_IO:
                self._io(run)
            elif reason == kvmapi.EXIT_MMIO:
                self._mmio(run)
            elif reason in (kvmapi.EXIT_X86_RDMSR, kvmapi.EXIT_X86_WRMSR):
                self._msr(run, reason == kvmapi.EXIT_X86_WRMSR)
            elif reason == kvmapi.EXIT_DEBUG:
                if not self.counter.on_debug_exit(run.u.debug.dr6):
                    return self._result(70, "error", f"unexpected debug exit dr6={run.u.debug.dr6:#x} "
                                                     f"at {run.u.debug.pc:#x}")
            elif reason == kvmapi.EXIT_HLT:
                ending = self._halt(deadline)
                if ending is not None:
                    return ending
            elif reason in (kvmapi.EXIT_IRQ_WINDOW_OPEN, kvmapi.EXIT_INTR):
                pass
            elif reason == kvmapi.EXIT_SHUTDOWN:
                return self._result(125, "shutdown", "triple fault")
            elif reason == kvmapi.EXIT_INTERNAL_ERROR:
                return self._result(70, "error", f"KVM internal error, suberror {run.u.internal.suberror}")
            elif reason == kvmapi.EXIT_FAIL_ENTRY:
                return self._result(70, "error", f"VM entry failed, reason {run.u.fail_entry.reason:#x}")
            else:
                return self._result(70, "error", f"unhandled KVM exit {name}")

    def _inject(self, run) -> int | None:
        """Give KVM the LAPIC's NMI or highest interrupt; returns the vector injected, if any."""
        if self.lapic.take_nmi():
            self.vcpu.inject_nmi()
            return 2
        if self.lapic.pending_interrupt() is None:
            run.request_interrupt_window = 0
            self.counter.window_wanted = False
            return None
        if run.ready_for_interrupt_injection and run.if_flag:
            vector = self.lapic.accept_interrupt(self.lapic.pending_interrupt())
            self.vcpu.inject_interrupt(vector)
            run.request_interrupt_window = 0
            self.counter.window_wanted = False
            return vector
        # Ask KVM for an IRQ_WINDOW_OPEN exit, and also single-step until the window opens: on the
        # nested AMD host this was written on, no window exit came for a one-instruction window
        # (sti; nop; cli), so stepping is what finds it.
        run.request_interrupt_window = 1
        self.counter.window_wanted = True
        return None

    def _tick_timers(self) -> None:
        due = self.lapic.next_deadline()
        if due is not None and due <= self.clock.now():
            self.lapic.tick(self.clock.now())

    def _halt(self, deadline: float) -> KvmResult | None:
        """HLT (exits to us without an in-kernel irqchip): wait for the LAPIC's next event."""
        while not self.lapic.has_wakeup() and not self.vcpu.work and self.stop is None:
            due = self.lapic.next_deadline()
            if due is None:
                return self._result(126, "halted", "HLT with nothing that can wake the vCPU")
            wait = (due - self.clock.now()) / 1e9
            if time.monotonic() + max(wait, 0) > deadline:
                return self._result(124, "timeout", "halted past the timeout")
            if wait > 0:
                time.sleep(wait)
            self._tick_timers()
        return None

    # -- exits ---------------------------------------------------------------------------------------
    def _io(self, run) -> None:
        io = run.u.io
        page = self.vcpu.fd.run_page
        for i in range(io.count):
            at = io.data_offset + i * io.size
            if io.direction == kvmapi.IO_OUT:
                value = int.from_bytes(page[at:at + io.size], "little")
                self.dispatcher.handle(Exit(ExitKind.IO_OUT, io.port, io.size, value))
            else:
                value = self.dispatcher.handle(Exit(ExitKind.IO_IN, io.port, io.size))
                page[at:at + io.size] = (value & ((1 << 8 * io.size) - 1)).to_bytes(io.size, "little")

    def _mmio(self, run) -> None:
        mmio = run.u.mmio
        size = mmio.len
        if mmio.is_write:
            value = int.from_bytes(bytes(mmio.data)[:size], "little")
            self.dispatcher.handle(Exit(ExitKind.MMIO_WRITE, mmio.phys_addr, size, value))
        else:
            value = self.dispatcher.handle(Exit(ExitKind.MMIO_READ, mmio.phys_addr, size))
            ctypes.memmove(mmio.data, (value & ((1 << 8 * size) - 1)).to_bytes(size, "little"), size)

    def _msr(self, run, write: bool) -> None:
        msr = run.u.msr
        if write:
            result = self.dispatcher.handle(Exit(ExitKind.MSR_WRITE, msr.index, 8, msr.data))
        else:
            result = self.dispatcher.handle(Exit(ExitKind.MSR_READ, msr.index, 8))
        if isinstance(result, Fault):
            msr.error = 1                       # KVM injects #GP when it completes the access
            self.counter.fault_injected(13)
            return
        msr.error = 0
        if not write:
            msr.data = result
        elif msr.index == APIC_BASE_MSR:
            # KVM keeps CPUID.1:EDX.APIC (and x2APIC checks) from its own copy of APIC_BASE.
            sregs = self.vcpu.sregs()
            sregs.apic_base = self.msr.read(APIC_BASE_MSR, 8, host=True)
            self.vcpu.set_sregs(sregs)

    def _result(self, status: int, reason: str, detail: str = "") -> KvmResult:
        return KvmResult(status, reason, detail, dict(self.exits), self.counter.steps)

    def close(self) -> None:
        self.vcpu.fd.close()
        self.vm.close()
        self.kvm.close()
