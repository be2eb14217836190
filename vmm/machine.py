# SPDX-License-Identifier: GPL-2.0-or-later
"""A machine: guest RAM, one vCPU on Unicorn, the buses, the devices and the run loop.

Assembly: the vCPU's own parts (local APIC, PMU, speculation-control MSRs) are made here; every
other device comes from a board description (vmm/board.py) plus the user's ``-device`` list,
through the device registry (devices/registry.py).  A device is reached by declaring its bus
ranges: the machine registers them, and maps MMIO ranges into the vCPU.  Devices see the machine
only through vmm/platform.py.

Boot: the VMM writes its boot structures and the ACPI tables describing the board into the
firmware area 0xE0000-0xFFFFF (vmm/firmware_area.py), loads the kernel with vmm.loader (multiboot,
plain ELF64, Linux bzImage or PVH, chosen from the file), and starts the vCPU at the trampoline,
which enters the kernel in long mode (plain ELF64, Linux's 64-bit boot protocol) or 32-bit
protected mode (multiboot, PVH).

The run loop turns terminal exits into a :class:`RunResult`: the guest's debug-exit status, a
poweroff or reset asked for by the guest, a clean "guest shut down" on a triple fault, "halted
forever" when HLT can never be woken, a wall-clock timeout (for the whole run) or an instruction
limit.  HLT waits on virtual time: the clock skips to the next deadline of a timer that could wake
the vCPU, never sleeps, and the wait ends on a stop request, the instruction limit or the timeout
like the guest's own run does.  "Halted forever" is decided from state, not from time passing:

* with interrupts disabled only an NMI wakes the vCPU, and none can while NMIs are blocked (only
  the guest's IRET unblocks them); the LAPIC timer raises no NMI, so only the I/O APIC (an unmasked
  NMI entry) or a device we know nothing about could;
* with interrupts enabled, a pending interrupt above the task priority wakes it; the LAPIC timer
  can raise one unless its LVT entry is masked or the LAPIC is disabled;
* the board's own timers (PIT, RTC, ACPI PM timer) act only on their IRQ lines, which reach the vCPU
  only through an unmasked I/O APIC entry (the 8259s have no path to it); a timer of any other
  device may do anything, so its deadline always counts.

A guest whose only timers are of that last kind, and never wake it, waits until the timeout or a
stop request.

Not supported: more than one vCPU (``smp`` must be 1), RAM above 3 GiB, PCI devices, device
hot-plug, rebooting (a guest reset ends the run), save/restore of the whole machine (the LAPIC and
PMU have their own state).
"""

from __future__ import annotations

import ctypes
import mmap
import sys
import time
from dataclasses import dataclass, field

import unicorn
from unicorn import x86_const as uxc

import firmware
from devices.acpi_pm import AcpiPm
from devices.bus import Bus, BusError
from devices.cpu_msrs import CpuMsrs
from devices.device import PropertyError
from devices.ioapic import DELIVERY_MODE, DELIVERY_MODE_SHIFT, MASKED, Ioapic
from devices.lapic import LVT_MASKED, DeliveryMode, Lapic, Lvt
from devices.pic import I8259
from devices.pit import Pit
from devices.registry import DeviceSpec, device_class
from devices.rtc import Rtc
from devices.speculation import SpeculationControl
from devices.uart import Uart16550
from pmu.config import PmuConfig
from pmu.pmu import Pmu
from vmm._ucvcpu import UcVcpu
from vmm.acpi import build_acpi_tables
from vmm.board import PC_BOARD, acpi_platform, with_user_devices
from vmm.clock import VirtualClock
from vmm.cpuid import CpuidError, CpuidModel
from vmm.dispatch import Dispatcher
from vmm.errors import VmmError
from vmm.exits import Exit, ExitKind
from vmm.firmware_area import (
    ACPI_ADDRESS,
    ACPI_LIMIT,
    MODE_ELF64,
    MODE_LINUX64,
    MODE_PROTECTED32,
    TRAMPOLINE_ADDRESS,
    write_boot_structures,
    write_entry_parameters,
)
from vmm.linux_boot import build_e820
from vmm.loader import Window, bus_windows, load_kernel
from vmm.platform import Platform

MAX_RAM = 3 << 30
MMIO_PAGE = 0x1000
IBPB_FEATURE = {"intel": "spec_ctrl", "amd": "amd_ibpb"}   # the CPUID bit that advertises PRED_CMD.IBPB
#: Board timers whose ticks act on the vCPU only through their IRQ lines (tests/test_fuzz_guest.py
#: checks that every built-in device with a timer is one of these).
IRQ_LINE_TIMERS = (Pit, Rtc, AcpiPm)

# Process exit statuses for endings that are not the guest's own debug-exit status.
STATUS_POWEROFF = 0         # the guest powered off (ACPI S5, Bochs port): as QEMU exits
STATUS_RESET = 123          # the guest asked for a reset (8042, 0xCF9, ACPI reset register): not rebooted
STATUS_TIMEOUT = 124        # as `timeout(1)` and test runners report it
STATUS_SHUTDOWN = 125       # triple fault
STATUS_HALTED = 126         # HLT that nothing can ever wake
STATUS_LIMIT = 124          # instruction limit: reported like a timeout
STATUS_INTERNAL = 70        # EX_SOFTWARE: the VMM or the engine could not go on


@dataclass
class MachineConfig:
    memory: int = 128 << 20
    cpu: str = "intel"              # a vmm/cpu_models.py model: intel, amd, skylake-server, epyc-rome, ...
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
    devices: list[DeviceSpec] = field(default_factory=list)   # -device NAME,prop=val (vmm/board.py)


@dataclass
class RunResult:
    status: int                      # process exit status
    reason: str     # "debug-exit", "poweroff", "reset", "shutdown", "halted", "timeout", "limit", "error"
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
            self.cpuid = CpuidModel(config.cpu, *(config.cpu_signature or ()), vcpu=self.vcpu)
            self.cpuid.set_feature(IBPB_FEATURE[self.cpuid.vendor], True)
            CpuMsrs.advertise(self.cpuid)
            for name, on in config.cpuid_features.items():
                self.cpuid.set_feature(name, on)
        except CpuidError as e:
            raise VmmError(str(e)) from None
        self.pio = Bus("pio", 0x10000, (1, 2, 4))
        self.mmio = Bus("mmio", 1 << 52)
        self.msr = Bus("msr", 1 << 32, (8,), indexed=True)
        self.platform = Platform(self.clock, config.memory, config.serial, self._stop_requested, self._sync_timers)
        self._build_cpu_parts()
        self.devices: list = []
        self._mapped_pages: set[int] = set()
        try:
            for spec in with_user_devices(PC_BOARD, config.devices):
                self.add_device(spec)
        except PropertyError as e:
            raise VmmError(str(e)) from None
        self.timers = [d for d in self.devices if hasattr(d, "next_deadline")]
        self.uart = next(d for d in self.devices if isinstance(d, Uart16550))
        self.dispatcher = Dispatcher(self.pio, self.mmio, self.msr, self.cpuid, self.pmu.rdpmc)
        if config.trace_exits:
            self.dispatcher.trace = _trace_exit
        self.vcpu.handler = self.dispatcher
        self.vcpu.platform = self
        self.vcpu.intc = self
        self.vcpu.on_attention = self._service
        write_boot_structures(self.ram, firmware.trampoline())
        try:
            self.acpi = build_acpi_tables(acpi_platform(self.devices, self.platform.nb_cpus), ACPI_ADDRESS, ACPI_LIMIT)
        except ValueError as e:     # a device configured so the tables cannot describe it
            raise VmmError(str(e)) from None
        self.ram[ACPI_ADDRESS:self.acpi.end] = self.acpi.blob
        self.e820 = build_e820(config.memory, acpi=(ACPI_ADDRESS, self.acpi.end))

    # -- assembly ---------------------------------------------------------------------
    def _build_cpu_parts(self) -> None:
        """The vCPU's local APIC, PMU, speculation-control and architectural MSRs."""
        cfg = self.config
        self.lapic = Lapic(self.clock, self.cpuid, self.vcpu)
        self.lapic.on_base_change = self._move_apic_window
        self.lapic.on_write = self._sync_timers
        self.lapic.attach(self.mmio, self.msr)
        self.platform.lapics.append(self.lapic)
        self.vcpu.attach_lapic(self.lapic)
        self.vcpu.map_mmio(self.lapic.base, MMIO_PAGE)
        # The VMware pseudo-PMCs are on by default, like the backdoor port.  Their "real time" is
        # virtual time too, so every counter the guest can read stays deterministic.
        pmu_config = cfg.pmu or PmuConfig(vendor=self.cpuid.vendor, vmware_backdoor=True)
        if pmu_config.vendor != self.cpuid.vendor:
            raise VmmError(f"PMU vendor {pmu_config.vendor!r} does not match the CPU vendor {self.cpuid.vendor!r}")
        pmu_config.apply_to_cpuid(self.cpuid)
        self.pmu = Pmu(self.cpuid, self.vcpu, self.lapic, self.clock, pmu_config, real_clock=self.clock)
        self.pmu.attach(self.msr)
        self.vcpu.attach_pmu(self.pmu.core)
        if self.cpuid.has(IBPB_FEATURE[self.cpuid.vendor]):
            SpeculationControl(self.vcpu.flush_branch_predictor).register(self.msr)
        CpuMsrs(self.platform, cpuid=self.cpuid).register(self.msr)

    def add_device(self, spec: DeviceSpec):
        """Create a device from the registry, claim its ranges and wire its optional hooks."""
        cls = device_class(spec.name)
        device = cls(self.platform, **cls.parse_props(spec.props))
        buses = {"pio": self.pio, "mmio": self.mmio, "msr": self.msr}
        try:
            for r in device.bus_ranges():
                if r.bus not in buses:
                    raise PropertyError(f"device {spec.name}: unknown bus {r.bus!r}")
                buses[r.bus].register(r.base, r.size, device)
                if r.bus == "mmio":
                    self._map_mmio(r.base, r.size)
        except BusError as e:       # overlap, bad range
            raise PropertyError(f"device {spec.name}: {e}") from None
        if hasattr(device, "set_irq"):
            self.platform.controllers.append(device)
        self.devices.append(device)
        return device

    def _map_mmio(self, base: int, size: int) -> None:
        """Route the pages under an MMIO range to the bus (the engine maps whole pages)."""
        first, last = base // MMIO_PAGE, (base + size - 1) // MMIO_PAGE
        page = first
        while page <= last:
            if page in self._mapped_pages:
                page += 1
                continue
            end = page
            while end + 1 <= last and end + 1 not in self._mapped_pages:
                end += 1
            self.vcpu.map_mmio(page * MMIO_PAGE, (end - page + 1) * MMIO_PAGE)
            self._mapped_pages.update(range(page, end + 1))
            page = end + 1

    def _move_apic_window(self, old: int, new: int) -> None:
        """The xAPIC page moved: as on a PC it shadows the RAM under its new place, and the RAM
        under its old place is seen again."""
        self.vcpu.unmap_mmio(old, MMIO_PAGE)
        if old < self.config.memory:
            ram = ctypes.addressof(ctypes.c_char.from_buffer(self.ram_buffer))
            self.engine.mem_map_ptr(old, MMIO_PAGE, unicorn.UC_PROT_ALL, ram + old)
        if new < self.config.memory:
            self.engine.mem_unmap(new, MMIO_PAGE)
        self.vcpu.map_mmio(new, MMIO_PAGE)

    # -- loading ----------------------------------------------------------------------
    def load(self, kernel) -> object:
        """Load a kernel file (or bytes); raises vmm.errors.LoadError with a one-line reason."""
        windows = [w for w in bus_windows(self.mmio)]
        windows.append(Window(self.lapic.base, self.lapic.base + 0x1000, "LAPIC"))
        boot = load_kernel(kernel, self.ram, cmdline=self.config.cmdline, module=self.config.initrd,
                           reserved=windows, e820=self.e820, rsdp_address=self.acpi.rsdp_address)
        mode = {"elf64": MODE_ELF64, "linux64": MODE_LINUX64}.get(boot.kind, MODE_PROTECTED32)
        write_entry_parameters(self.ram, entry=boot.entry, boot_info=boot.boot_info_address, mode=mode)
        self.engine.reg_write(uxc.UC_X86_REG_RIP, TRAMPOLINE_ADDRESS)
        self.boot = boot
        return boot

    # -- what the vCPU asks of the platform beyond exits (on its own thread) ----------------
    def backdoor(self, port: int, regs: dict) -> None:
        """A 32-bit IN from a backdoor port: the device owning it reads and writes the registers."""
        owner = self.pio.lookup(port)
        if owner is not None and hasattr(owner[1], "handle_in"):
            owner[1].handle_in(regs)
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
        """Work on the vCPU side before the next guest instruction: PMIs, timers, level EOIs."""
        self.pmu.service_pmi()
        now = self.clock.now()
        self.lapic.tick(now)
        for device in self.timers:
            deadline = device.next_deadline()
            if deadline is not None and deadline <= now:
                device.tick(now)
        self._sync_timers()

    def _next_deadline(self):
        deadlines = [d for d in (self.lapic.next_deadline(), *(t.next_deadline() for t in self.timers))
                     if d is not None]
        return min(deadlines) if deadlines else None

    def _sync_timers(self) -> None:
        for vector in self.lapic.take_level_eois():
            for device in self.devices:
                if hasattr(device, "eoi"):
                    device.eoi(vector)
        deadline = self._next_deadline()
        self.vcpu.deadline = (1 << 64) - 1 if deadline is None else deadline
        self.vcpu.irq_pending = True

    def _stop_requested(self, reason: str, status: int) -> None:
        """A device ends the run: debug-exit with its status, poweroff or reset."""
        if self.exit_status is not None:
            return
        statuses = {"poweroff": STATUS_POWEROFF, "reset": STATUS_RESET}
        self.exit_status, self.exit_reason = statuses.get(reason, status), reason
        self.vcpu.request_stop(reason)

    # -- running ----------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.boot is None:
            raise VmmError("Machine.run() before Machine.load(): no kernel to run")
        try:
            return self._run()
        finally:
            self.uart.flush()

    def _run(self) -> RunResult:
        end = time.monotonic() + self.config.timeout if self.config.timeout else 0.0
        while True:
            self.pmu.sched_in()
            self.pmu.before_guest_entry()
            # The timeout is for the whole run: each entry gets what is left of it (at least a
            # moment, so an expired one ends the run at once instead of meaning "no timeout").
            ex = self.vcpu.run(timeout=max(end - time.monotonic(), 1e-9) if end else 0.0)
            if ex.kind is ExitKind.HLT:
                ex = self._wait_in_hlt(end)
                if ex is None:
                    continue
            return self._ending(ex)

    def _ending(self, ex: Exit) -> RunResult:
        """The RunResult of a terminal exit (HLT here means halted forever)."""
        if ex.kind is ExitKind.HLT:
            return self._result(STATUS_HALTED, "halted", f"guest halted forever: {ex.reason}")
        if ex.kind is ExitKind.STOPPED:
            if self.exit_status is not None:
                return self._result(self.exit_status, self.exit_reason)
            if ex.reason == "timeout":
                return self._result(STATUS_TIMEOUT, "timeout", f"timed out after {self.config.timeout:g} s")
            return self._result(STATUS_LIMIT, "limit", ex.reason)
        if ex.kind is ExitKind.SHUTDOWN:
            return self._result(STATUS_SHUTDOWN, "shutdown", f"guest shut down: {ex.reason}")
        return self._result(STATUS_INTERNAL, "error", ex.reason)

    def _wait_in_hlt(self, end: float) -> Exit | None:
        """HLT: None once something wakes the vCPU (virtual time has moved to it), else the exit
        that ends the run: a stop request or the instruction limit, the wall-clock ``end``
        (monotonic seconds, 0 = none), or HLT when nothing can ever wake it."""
        while True:
            stop = self.vcpu.service()      # queued work, timers due by now, PMIs
            if stop is not None:
                return stop
            interrupts, nmis = self.vcpu.interrupts_enabled(), not self.vcpu.nmi_blocked()
            if (nmis and self.lapic.nmi_pending) or (interrupts and self.lapic.pending_interrupt() is not None):
                self.vcpu.kick()
                return None
            if end and time.monotonic() >= end:
                return Exit(ExitKind.STOPPED, reason="timeout")
            deadline = self._wake_deadline(interrupts, nmis) if interrupts or nmis else None
            if deadline is None:
                why = "no interrupt is pending and no timer can raise one" if interrupts else \
                    "interrupts are disabled and nothing can raise an NMI" if nmis else \
                    "interrupts are disabled and NMIs blocked"
                return Exit(ExitKind.HLT, reason=why)
            self.clock.skip_to(deadline)

    def _wake_deadline(self, interrupts: bool, nmis: bool) -> int | None:
        """The earliest deadline of a timer whose tick could wake the halted vCPU, which takes
        maskable interrupts if ``interrupts`` and NMIs if ``nmis``, or None (the rules are in the
        module docstring)."""
        deadlines = []
        lapic_deadline = self.lapic.next_deadline()
        if lapic_deadline is not None and interrupts and self.lapic.hardware_enabled and \
                not self.lapic.get_state()["lvt"][Lvt.TIMER] & LVT_MASKED:
            deadlines.append(lapic_deadline)
        lines_reach_vcpu = None     # worked out for the first IRQ-line timer that is armed
        for timer in self.timers:
            deadline = timer.next_deadline()
            if deadline is None:
                continue
            if isinstance(timer, IRQ_LINE_TIMERS):
                if lines_reach_vcpu is None:
                    lines_reach_vcpu = self._irq_lines_reach_vcpu(interrupts, nmis)
                if not lines_reach_vcpu:
                    continue
            deadlines.append(deadline)
        return min(deadlines, default=None)

    def _irq_lines_reach_vcpu(self, interrupts: bool, nmis: bool) -> bool:
        """Whether an IRQ line change could make a maskable interrupt (if ``interrupts``) or an NMI
        (if ``nmis``) pending at the vCPU's LAPIC."""
        modes = {*((DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY) if interrupts else ()),
                 *((DeliveryMode.NMI,) if nmis else ())}
        for controller in self.platform.controllers:
            if isinstance(controller, I8259):
                continue        # no output to the CPU (devices/pic.py)
            if not isinstance(controller, Ioapic) or any(
                    not entry & MASKED and (entry & DELIVERY_MODE) >> DELIVERY_MODE_SHIFT in modes
                    for entry in controller.redirection):
                return True
        return False

    def _result(self, status: int, reason: str, detail: str = "") -> RunResult:
        self.uart.flush()
        return RunResult(status, reason, detail, self.vcpu.retired, bytes(self.uart.output))


def _trace_exit(exit, result) -> None:
    print(f"exit {exit.kind.name} addr={exit.address:#x} size={exit.size} value={exit.value:#x} -> {result!r}",
          file=sys.stderr)
