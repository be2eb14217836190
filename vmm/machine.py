# SPDX-License-Identifier: GPL-2.0-or-later
"""A machine: guest RAM, vCPUs on Unicorn, the buses, the devices and the run loop.

Assembly: each vCPU and the parts it has its own of (CPUID, local APIC, PMU, MSRs) is a
vmm.cpu.Cpu; every other device comes from a board description (vmm/board.py) plus the user's
``-device`` list, through the device registry (devices/registry.py).  A device is reached by
declaring its bus ranges: the machine registers them, and maps MMIO ranges into every vCPU.
Devices see the machine only through vmm/platform.py.

Boot: the VMM writes its boot structures and the ACPI tables describing the board (a MADT entry
per vCPU) into the firmware area 0xE0000-0xFFFFF (vmm/firmware_area.py), loads the kernel with
vmm.loader (multiboot, plain ELF64, Linux bzImage or PVH, chosen from the file), and starts the
BSP at the trampoline, which enters the kernel in long mode (plain ELF64, Linux's 64-bit boot
protocol) or 32-bit protected mode (multiboot, PVH).  Application processors wait for INIT and
SIPI from the guest, as on a PC (vmm/cpu.py).

SMP scheduling (deterministic by construction): one host thread runs the vCPUs round robin, each
for a time slice of ``quantum`` guest instructions (MachineConfig.quantum, ``--quantum``), ended
early when it halts or when it makes something pending at another vCPU's LAPIC (an IPI, or a
timer or IOAPIC message while it runs), so the target runs soon.  Slices end only at translation
block boundaries: other vCPUs' memory writes are seen between blocks, never inside one, so locked
instructions (and any single block) are atomic; this is sequentially consistent memory, stronger
than x86-TSO.  One virtual clock serves every vCPU (vmm/clock.py): the instructions of whichever
vCPU runs advance it.  Nothing depends on the host's timing except the wall-clock timeout, so a
run's output, counts and interleaving are the same every time.

The run loop turns terminal exits into a :class:`RunResult`: the guest's debug-exit status, a
poweroff or reset asked for by the guest, a clean "guest shut down" on a triple fault (of any
vCPU), "halted forever" when no vCPU can ever be woken, a wall-clock timeout (for the whole run)
or an instruction limit (on all vCPUs' instructions together).  When no vCPU can run, the clock
skips to the next deadline of a timer that could wake one, never sleeps, and the wait ends on a
stop request, the instruction limit or the timeout like the guest's own run does.  "Halted
forever" is decided from state, not from time passing; for each halted vCPU:

* with interrupts disabled only an NMI wakes it, and none can while NMIs are blocked (only the
  guest's IRET unblocks them); the LAPIC timer raises no NMI, so only the I/O APIC (an unmasked
  NMI entry) or a device we know nothing about could;
* with interrupts enabled, a pending interrupt above the task priority wakes it; its LAPIC timer
  can raise one unless its LVT entry is masked or the LAPIC is disabled;
* the board's own timers (PIT, RTC, ACPI PM timer) act only on their IRQ lines, which reach a vCPU
  only through an unmasked I/O APIC entry (the 8259s have no path to it); a timer of any other
  device may do anything, so its deadline always counts.
A vCPU waiting for a SIPI is woken only by another vCPU.

A guest whose only timers are of that last kind, and never wake it, waits until the timeout or a
stop request.

Not supported: more than :data:`MAX_SMP` vCPUs, RAM above 3 GiB, PCI devices, device hot-plug,
rebooting (a guest reset ends the run), save/restore of the whole machine (the LAPIC and PMU have
their own state).  Code one vCPU rewrites after another vCPU ran it is seen by that one once it
serializes with an IRET to itself (vmm/_ucvcpu.pyx, sync_on_iret_to_self); until then it may run
its old translation, which the SDM allows.
"""

from __future__ import annotations

import ctypes
import functools
import mmap
import sys
import time
from dataclasses import dataclass, field

import firmware
from devices.acpi_pm import AcpiPm
from devices.bus import Bus, BusError
from devices.device import PropertyError
from devices.ioapic import DELIVERY_MODE, DELIVERY_MODE_SHIFT, MASKED, Ioapic
from devices.kvm_pv import KVM_ENOSYS, KVM_EPERM
from devices.lapic import LVT_MASKED, ApicBus, DeliveryMode, Lvt
from devices.pic import I8259
from devices.pit import Pit
from devices.registry import DeviceSpec, device_class
from devices.rtc import Rtc
from devices.uart import Uart16550
from pmu.config import PmuConfig
from vmm.acpi import build_acpi_tables
from vmm.board import PC_BOARD, acpi_platform, with_user_devices
from vmm.clock import VirtualClock
from vmm.cpu import MMIO_PAGE, Cpu, CpuState
from vmm.engine import UC_X86_REG_RIP
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
from vmm.options import DEFAULT_QUANTUM, MAX_SMP
from vmm.platform import Platform

MAX_RAM = 3 << 30
NO_DEADLINE = (1 << 64) - 1
DEBUG_BREAKPOINT = "breakpoint"         # STOPPED reasons that stop the guest for gdb, not the run
DEBUG_INTERRUPT = "interrupted by gdb"
SIGINT, SIGTRAP = 2, 5                  # what gdb hears a stop was
#: Board timers whose ticks act on the vCPUs only through their IRQ lines (tests/test_fuzz_guest.py
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
STATUS_KILLED = 137         # gdb's kill: as a process killed by SIGKILL


@dataclass
class MachineConfig:
    memory: int = 128 << 20
    cpu: str = "intel"              # a vmm/cpu_models.py model: intel, amd, skylake-server, epyc-rome, ...
    smp: int = 1
    quantum: int = DEFAULT_QUANTUM   # guest instructions per time slice when smp > 1
    cmdline: str = ""
    initrd: bytes | None = None
    serial: object = None            # binary sink for COM1; None = stdout
    timeout: float = 0.0             # wall-clock seconds, 0 = none
    max_insns: int = 0               # 0 = none
    trace_exits: bool = False        # the same as "exits" in trace
    trace: tuple[str, ...] = ()      # vmm/trace.py categories: pmu, msr, rdpmc, pmi, io, mmio, irq, exc, exits
    trace_file: object = None        # text stream for trace lines; None = stderr
    forced_emulation: bool = False
    # An access to physical memory with no RAM and no device ends the run (status 70) instead of the
    # platform rule (reads all-ones, writes dropped).  Instruction fetches from there always end it.
    strict_memory: bool = False
    pmu: PmuConfig | None = None     # None = derived from the CPU vendor's defaults
    cpu_signature: tuple[int, int, int] | None = None   # (family, model, stepping); None = vendor default
    cpuid_features: dict[str, bool] = field(default_factory=dict)   # vmm.cpuid.FEATURES name -> on/off
    devices: list[DeviceSpec] = field(default_factory=list)   # -device NAME,prop=val (vmm/board.py)

    @property
    def exits_traced(self) -> bool:
        """Every exit is traced: the vCPU layer's C answers (unowned ports, UARTs, the xAPIC page)
        are exits then, so the trace lists them."""
        return self.trace_exits or "exits" in self.trace


@dataclass
class RunResult:
    status: int                      # process exit status
    reason: str     # "debug-exit", "poweroff", "reset", "shutdown", "halted", "timeout", "limit", "error",
                    # "killed" (gdb)
    detail: str = ""
    instructions: int = 0
    serial: bytes = field(default=b"", repr=False)


class Machine:
    def __init__(self, config: MachineConfig | None = None):
        self.config = config = config or MachineConfig()
        if not 1 <= config.smp <= MAX_SMP:
            raise VmmError(f"--smp {config.smp}: must be 1 to {MAX_SMP}")
        if config.quantum < 1:
            raise VmmError(f"--quantum {config.quantum}: must be at least 1 instruction")
        if not (2 << 20) <= config.memory <= MAX_RAM or config.memory % 0x1000:
            raise VmmError(f"memory size {config.memory:#x}: must be a multiple of 4 KiB between 2 MiB and 3 GiB")
        self.boot = None
        self.halted_ns = 0                        # virtual time skipped while no vCPU could run
        self.exit_status: int | None = None
        self.exit_reason = ""
        self._stop_text: str | None = None       # a stop asked for from outside the run (signals)

        self.ram_buffer = mmap.mmap(-1, config.memory)
        self.ram = memoryview(self.ram_buffer)
        ram_address = ctypes.addressof(ctypes.c_char.from_buffer(self.ram_buffer))
        self.clock = VirtualClock()
        self.pio = Bus("pio", 0x10000, (1, 2, 4))
        self.mmio = Bus("mmio", 1 << 52)
        self.hypercalls = Bus("hypercall", 1 << 64, (8,), indexed=True)    # hypercall numbers (KVM's ABI)
        self.apic_bus = ApicBus()
        self.platform = Platform(self.clock, config.memory, config.serial, self._stop_requested, self.sync_timers,
                                 self.apic_bus)
        self.cpus: list[Cpu] = []
        for index in range(config.smp):
            cpu = Cpu(self, index, ram_address)
            cpu.lapic.on_wakeup = functools.partial(self._woken, cpu)
            self.apic_bus.attach(cpu.lapic)
            self.cpus.append(cpu)
        bsp = self.cpus[0]
        # The BSP's parts, by their single-CPU names (tools and tests look at these).
        self.vcpu, self.cpuid, self.lapic, self.pmu = bsp.vcpu, bsp.cpuid, bsp.lapic, bsp.pmu
        self.msr, self.dispatcher = bsp.msr, bsp.dispatcher
        self.current = bsp
        self.clock.switch_to(bsp.vcpu)
        if config.max_insns:
            self.vcpu.max_insns = config.max_insns
        self.slice_end = NO_DEADLINE
        self._last_index = len(self.cpus) - 1     # round robin starts at the BSP
        self._in_slice = False
        self._in_guest_run = False
        self._remote_wake = False
        self._debug_break = False           # gdb's Ctrl-C: stop the running vCPU for the debugger
        self._step_cpu: Cpu | None = None   # the vCPU gdb asked to step

        self.devices: list = []
        self._mapped_pages: set[int] = set()
        # Port I/O no device owns is answered in the vCPU layer (all-ones, writes dropped) with no
        # exit, and so are a UART's ports (its C core); the bus tells every vCPU what is owned.
        # Traced exits keep every access an exit.
        for cpu in self.cpus:
            cpu.vcpu.set_port_exits(0, self.pio.limit, config.exits_traced)
        self.pio.on_change = self._ports_changed
        try:
            for spec in with_user_devices(PC_BOARD, config.devices):
                self.add_device(spec)
        except PropertyError as e:
            raise VmmError(str(e)) from None
        self.timers = [d for d in self.devices if hasattr(d, "next_deadline")]
        self.uarts = [d for d in self.devices if isinstance(d, Uart16550)]
        self.uart = self.uarts[0]       # the console: RunResult.serial is its transcript
        self.tracer = None
        categories = (*config.trace, *(("exits",) if config.trace_exits else ()))
        if categories:
            from vmm.trace import Tracer

            self.tracer = Tracer(dict.fromkeys(categories), config.trace_file or sys.stderr)
            for cpu in self.cpus:
                self.tracer.attach(cpu.vcpu)
                if self.tracer.exits:
                    cpu.dispatcher.trace = functools.partial(self.tracer.exit, cpu.vcpu)
            self.tracer.clock_follows(bsp.vcpu)
        write_boot_structures(self.ram, firmware.trampoline())
        try:
            self.acpi = build_acpi_tables(acpi_platform(self.devices, self.platform.nb_cpus), ACPI_ADDRESS, ACPI_LIMIT)
        except ValueError as e:     # a device configured so the tables cannot describe it
            raise VmmError(str(e)) from None
        self.ram[ACPI_ADDRESS:self.acpi.end] = self.acpi.blob
        self.e820 = build_e820(config.memory, acpi=(ACPI_ADDRESS, self.acpi.end))
        self.debugger = None

    # -- assembly ---------------------------------------------------------------------
    @staticmethod
    def default_pmu_config(vendor: str) -> PmuConfig:
        return PmuConfig(vendor=vendor, vmware_backdoor=True)

    def add_device(self, spec: DeviceSpec):
        """Create a device from the registry, claim its ranges and wire its optional hooks.

        Port I/O and MMIO ranges go on the board's buses (every vCPU reaches them); MSR ranges on
        every vCPU's MSR bus (one device serves them all; ``access.vcpu_id`` tells them apart)."""
        cls = device_class(spec.name)
        device = cls(self.platform, **cls.parse_props(spec.props))
        try:
            for r in device.bus_ranges():
                if r.bus == "pio":
                    self.pio.register(r.base, r.size, device)
                elif r.bus == "mmio":
                    self._claim_mmio(r.base, r.size, device)
                elif r.bus == "msr":
                    for cpu in self.cpus:
                        cpu.msr.register(r.base, r.size, device)
                elif r.bus == "hypercall":
                    self.hypercalls.register(r.base, r.size, device)
                else:
                    raise PropertyError(f"device {spec.name}: unknown bus {r.bus!r}")
        except BusError as e:       # overlap, bad range
            raise PropertyError(f"device {spec.name}: {e}") from None
        if hasattr(device, "set_irq"):
            self.platform.controllers.append(device)
        if hasattr(device, "advertise"):
            for cpu in self.cpus:
                device.advertise(cpu.cpuid)
        self.devices.append(device)
        return device

    def _ports_changed(self, base: int, size: int, owned: bool) -> None:
        # A UART's ports are answered by its C core in the vCPU layer, except when exits are traced.
        owner = self.pio.lookup(base) if owned else None
        uart = owner[1].core if owner is not None and isinstance(owner[1], Uart16550) else None
        for cpu in self.cpus:
            cpu.vcpu.set_port_exits(base, size, owned or self.config.exits_traced)
            cpu.vcpu.set_uart(base, None if self.config.exits_traced else uart)

    def _claim_mmio(self, base: int, size: int, device) -> None:
        if base < self.config.memory:
            raise BusError(f"range {base:#x}+{size:#x} overlaps guest RAM (0-{self.config.memory - 1:#x})")
        for cpu in self.cpus:
            apic = cpu.lapic.base
            if base < apic + MMIO_PAGE and apic < base + size:
                raise BusError(f"range {base:#x}+{size:#x} overlaps the local APIC page at {apic:#x}")
        self.mmio.register(base, size, device)
        self._map_mmio(base, size)

    def _map_mmio(self, base: int, size: int) -> None:
        """Route the pages under an MMIO range to the bus in every vCPU (the engine maps whole pages)."""
        first, last = base // MMIO_PAGE, (base + size - 1) // MMIO_PAGE
        page = first
        while page <= last:
            if page in self._mapped_pages:
                page += 1
                continue
            end = page
            while end + 1 <= last and end + 1 not in self._mapped_pages:
                end += 1
            for cpu in self.cpus:
                cpu.vcpu.map_mmio(page * MMIO_PAGE, (end - page + 1) * MMIO_PAGE)
            self._mapped_pages.update(range(page, end + 1))
            page = end + 1

    @property
    def engine(self):
        """The unicorn binding's ``Uc`` over the BSP's engine (made on first use: Cpu.engine)."""
        return self.cpus[0].engine

    # -- loading ----------------------------------------------------------------------
    def load(self, kernel) -> object:
        """Load a kernel file (or bytes); raises vmm.errors.LoadError with a one-line reason."""
        windows = [w for w in bus_windows(self.mmio)]
        windows.append(Window(self.lapic.base, self.lapic.base + MMIO_PAGE, "LAPIC"))
        boot = load_kernel(kernel, self.ram, cmdline=self.config.cmdline, module=self.config.initrd,
                           reserved=windows, e820=self.e820, rsdp_address=self.acpi.rsdp_address)
        mode = {"elf64": MODE_ELF64, "linux64": MODE_LINUX64}.get(boot.kind, MODE_PROTECTED32)
        write_entry_parameters(self.ram, entry=boot.entry, boot_info=boot.boot_info_address, mode=mode)
        self.cpus[0].uc_engine.reg_write(UC_X86_REG_RIP, TRAMPOLINE_ADDRESS)
        self.boot = boot
        if self.tracer is not None:
            self.tracer.load_symbols(kernel)
        return boot

    # -- what the vCPUs ask of the machine (on the run loop's thread) -------------------------
    def backdoor(self, port: int, regs: dict) -> None:
        """A 32-bit IN from a backdoor port: the device owning it reads and writes the registers."""
        owner = self.pio.lookup(port)
        if owner is not None and hasattr(owner[1], "handle_in"):
            owner[1].handle_in(regs)
        else:
            regs["rax"] = 0xFFFFFFFF

    def hypercall(self, cpu: Cpu, regs: dict, cpl: int, long_mode: bool) -> int | None:
        """A VMCALL/VMMCALL with KVM's ABI (devices/kvm_pv.py): the value for RAX, or None when the
        machine offers no hypercalls (the instruction is then #UD, as on a CPU without a hypervisor)."""
        if not self.hypercalls.ranges():
            return None
        mask = (1 << 64) - 1 if long_mode else 0xFFFFFFFF
        if cpl > 0:
            return -KVM_EPERM & mask
        nr = regs["rax"] & mask
        owner = self.hypercalls.lookup(nr)
        if owner is None:
            return -KVM_ENOSYS & mask
        args = tuple(regs[name] & mask for name in ("rbx", "rcx", "rdx", "rsi"))
        return owner[1].hypercall(nr, args, cpu.index, long_mode) & mask

    def service(self, cpu: Cpu) -> None:
        """Work before ``cpu``'s next guest instruction: its PMIs, every timer due, level EOIs, a
        stop asked for from outside, and the end of its time slice.  (The vCPU itself looks at the
        run's timeout: vmm/_ucvcpu_timeout.pxi.)"""
        cpu.pmu.service_pmi()
        now = self.clock.now()
        for each in self.cpus:
            each.lapic.tick(now)
        for device in self.timers:
            deadline = device.next_deadline()
            if deadline is not None and deadline <= now:
                device.tick(now)
        self.sync_timers()
        if self._stop_text is not None:
            cpu.vcpu.request_stop(self._stop_text)
        elif self._debug_break and self._in_guest_run:
            self._debug_break = False
            cpu.vcpu.request_stop(DEBUG_INTERRUPT)
        elif self._in_slice and cpu is self.current and \
                (now >= self.slice_end or self._remote_wake or self.apic_bus.remote_events):
            if self._others_can_run(cpu):
                cpu.vcpu.request_yield()
            else:       # nobody else could run: the slice goes on (a wake-up will end it)
                self._remote_wake = False
                self.apic_bus.remote_events = 0
                if now >= self.slice_end:
                    self.slice_end = now + self.config.quantum
                    self.sync_timers()

    def _others_can_run(self, cpu: Cpu) -> bool:
        return any(self._could_run(other) for other in self.cpus if other is not cpu)

    def _next_deadline(self):
        """The earliest deadline of the LAPIC timers and the platform timers, None if none is armed.
        (Plain loops: it runs at every timer sync, twice per SMP time slice.)"""
        earliest = None
        for cpu in self.cpus:
            deadline = cpu.lapic.next_deadline()
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        for device in self.timers:
            deadline = device.next_deadline()
            if deadline is not None and (earliest is None or deadline < earliest):
                earliest = deadline
        return earliest

    def sync_timers(self) -> None:
        """Something changed timers or interrupt state: pass level EOIs to the devices and re-arm
        the running vCPU's deadline (the earliest timer, or the end of its time slice)."""
        for cpu in self.cpus:
            for vector in cpu.lapic.take_level_eois():
                for device in self.devices:
                    if hasattr(device, "eoi"):
                        device.eoi(vector)
        deadline = self._next_deadline()
        deadline = NO_DEADLINE if deadline is None else deadline
        vcpu = self.current.vcpu
        vcpu.deadline = min(deadline, self.slice_end) if self._in_slice else deadline
        vcpu.irq_pending = True

    def _woken(self, cpu: Cpu) -> None:
        """``cpu``'s LAPIC has something newly pending: look at it soon, and if another vCPU is
        running, end that one's slice so this one runs (an IPI, a timer or an IOAPIC message)."""
        cpu.vcpu.kick()
        if cpu is not self.current:
            self._remote_wake = True
            self.current.vcpu.kick()

    def _stop_requested(self, reason: str, status: int) -> None:
        """A device ends the run: debug-exit with its status, poweroff or reset."""
        if self.exit_status is not None:
            return
        statuses = {"poweroff": STATUS_POWEROFF, "reset": STATUS_RESET}
        self.exit_status, self.exit_reason = statuses.get(reason, status), reason
        self.current.vcpu.request_stop(reason)

    def attach_debugger(self, server) -> None:
        """Answer gdb through ``server`` (a vmm.gdbstub.GdbServer) during run()."""
        self.debugger = server
        server.attach(self)

    def debug_break(self) -> None:
        """The debugger wants the guest stopped (gdb's Ctrl-C): before the running vCPU's next block."""
        self._debug_break = True
        self.current.vcpu.kick()

    def kill(self, text: str) -> None:
        """End the run at once with status 137 (gdb's kill)."""
        self.exit_status, self.exit_reason = STATUS_KILLED, "killed"
        self.request_stop(text)

    def request_stop(self, text: str) -> None:
        """End the run before the guest's next block (safe from a signal handler: it only sets
        flags); a request made while no vCPU runs ends the next run or HLT wait."""
        self._stop_text = text
        self.current.vcpu.kick()

    @property
    def retired(self) -> int:
        """Instructions every vCPU has retired."""
        return sum(cpu.vcpu.retired for cpu in self.cpus)

    # -- running ----------------------------------------------------------------------
    def run(self) -> RunResult:
        if self.boot is None:
            raise VmmError("Machine.run() before Machine.load(): no kernel to run")
        try:
            return self._run()
        finally:
            self._flush_serial()
            if self.tracer is not None:
                self.tracer.finish()

    def _run(self) -> RunResult:
        end = time.monotonic() + self.config.timeout if self.config.timeout else 0.0
        if self.debugger is not None and self.debugger.wait_at_start():
            self._debugger_stopped(self.cpus[0], report=False)
        while True:
            cpu = self._pick()
            if cpu is None:
                ex = self._wait_all_halted(end)
                if ex is None:
                    continue
                return self._ending(ex)
            if end and time.monotonic() >= end:
                return self._ending(Exit(ExitKind.STOPPED, reason="timeout"))
            stepping = cpu is self._step_cpu
            ex = self._run_slice(cpu, end, steps=1 if stepping else 0)
            if self.tracer is not None:
                self.tracer.flush()
            cpu.dispatcher.counts[ex.kind] += 1
            if ex.kind is ExitKind.HLT:
                cpu.state = CpuState.HALTED
            # (No slice ends during a step: _run_slice() does not time-slice it.)
            if stepping and (ex.kind is ExitKind.HLT or (ex.kind is ExitKind.STOPPED and ex.reason == "step")):
                self._debugger_stopped(cpu)
                continue
            if ex.kind is ExitKind.STOPPED and ex.reason in (DEBUG_BREAKPOINT, DEBUG_INTERRUPT) and \
                    self.debugger is not None:
                self._debugger_stopped(cpu, interrupted=ex.reason == DEBUG_INTERRUPT)
                continue
            if ex.kind in (ExitKind.YIELD, ExitKind.HLT):
                continue
            return self._ending(ex)

    def _debugger_stopped(self, cpu: Cpu, report: bool = True, interrupted: bool = False) -> None:
        """The guest is stopped for gdb: nothing runs until it continues or steps one vCPU."""
        signal = SIGINT if interrupted else SIGTRAP
        action, index = self.debugger.stopped(cpu.index, signal, report)
        self._step_cpu = self.cpus[index] if action == "step" and 0 <= index < len(self.cpus) else None
        if self._step_cpu is not None:
            self._last_index = (index - 1) % len(self.cpus)     # _pick() starts at the stepped vCPU

    def _pick(self) -> Cpu | None:
        """The next vCPU to run, round robin after the last one: runnable, or halted with an
        interrupt it can take; INIT and SIPI messages are taken on the way.  None: none can run.
        While gdb steps a vCPU, only that one runs (and one that cannot run ends the step)."""
        if self._step_cpu is not None:
            cpu = self._step_cpu
            if self._make_ready(cpu):
                return cpu
            self._debugger_stopped(cpu)     # a halted or waiting vCPU does not move
            if self._step_cpu is not None:
                return self._pick()
        n = len(self.cpus)
        for k in range(1, n + 1):
            cpu = self.cpus[(self._last_index + k) % n]
            if self._make_ready(cpu):
                return cpu
        return None

    def _make_ready(self, cpu: Cpu) -> bool:
        """Take ``cpu``'s INIT/SIPI, wake it if halted with something it can take; True if it can run."""
        self._take_startup(cpu)
        if cpu.state is CpuState.HALTED and cpu.can_wake():
            cpu.state = CpuState.RUNNABLE
        return cpu.state is CpuState.RUNNABLE

    @staticmethod
    def _could_run(cpu: Cpu) -> bool:
        """What _make_ready() would say, without taking anything."""
        return cpu.state is CpuState.RUNNABLE or cpu.lapic.init_pending or cpu.lapic.sipi_vector >= 0 or \
            (cpu.state is CpuState.HALTED and cpu.can_wake())

    @staticmethod
    def _take_startup(cpu: Cpu) -> None:
        """INIT puts a vCPU in wait-for-SIPI; a SIPI starts one that waits (and is lost otherwise)."""
        if cpu.lapic.take_init():
            cpu.state = CpuState.WAIT_FOR_SIPI
        vector = cpu.lapic.take_sipi()
        if vector is not None and cpu.state is CpuState.WAIT_FOR_SIPI:
            cpu.start_at_sipi(vector)

    def _run_slice(self, cpu: Cpu, end: float, steps: int = 0) -> Exit:
        """Run ``cpu`` until its slice ends (one vCPU: until a terminal exit) or it halts; ``steps``:
        at most that many instructions (a debugger's step), which no slice end interrupts."""
        vcpu = cpu.vcpu
        if cpu is not self.current:
            vcpu.others_ran = True      # their code writes are not in this engine's translations
        self.current = cpu
        self._last_index = cpu.index
        self.clock.switch_to(vcpu)
        if self.tracer is not None:
            self.tracer.clock_follows(vcpu)
        vcpu.kick()         # other vCPUs and devices may have made interrupts pending meanwhile
        if self.config.max_insns:       # the limit is on the machine's total
            vcpu.max_insns = vcpu.retired + max(self.config.max_insns - self.retired, 0)
        self._in_slice = len(self.cpus) > 1 and not steps
        self._in_guest_run = True
        self._remote_wake = False
        self.apic_bus.remote_events = 0
        self.slice_end = vcpu.now() + self.config.quantum if self._in_slice else NO_DEADLINE
        cpu.pmu.sched_in()
        cpu.pmu.before_guest_entry()
        # (kick() made the first thing run() does a service(): it sets the deadline.)
        # The timeout is for the whole run: the vCPU enforces what is left of it (at least a moment,
        # so an expired one ends the run at once instead of meaning "no timeout").
        timeout = max(end - time.monotonic(), 1e-9) if end else 0.0
        try:
            return vcpu.run(timeout=timeout, steps=steps)
        finally:
            self._in_slice = self._in_guest_run = False

    def _ending(self, ex: Exit) -> RunResult:
        """The RunResult of a terminal exit (HLT here means halted forever)."""
        where = f" (vCPU {ex.vcpu_id})" if len(self.cpus) > 1 else ""
        if ex.kind is ExitKind.HLT:
            return self._result(STATUS_HALTED, "halted", f"guest halted forever: {ex.reason}")
        if ex.kind is ExitKind.STOPPED:
            if self.exit_status is not None:
                return self._result(self.exit_status, self.exit_reason)
            if ex.reason == "timeout":
                return self._result(STATUS_TIMEOUT, "timeout", f"timed out after {self.config.timeout:g} s")
            return self._result(STATUS_LIMIT, "limit", ex.reason)
        if ex.kind is ExitKind.SHUTDOWN:
            return self._result(STATUS_SHUTDOWN, "shutdown", f"guest shut down: {ex.reason}{where}")
        return self._result(STATUS_INTERNAL, "error", ex.reason + where)

    def _wait_all_halted(self, end: float) -> Exit | None:
        """No vCPU can run: None once something wakes one (virtual time has moved to it), else the
        exit that ends the run: a stop request or the instruction limit, the wall-clock ``end``
        (monotonic seconds, 0 = none), or HLT when nothing can ever wake any."""
        while True:
            for cpu in self.cpus:
                stop = cpu.vcpu.service()      # queued work, timers due by now, PMIs
                if stop is not None:
                    return stop
            if self.tracer is not None:
                self.tracer.flush()
            if self._debug_break and self.debugger is not None:
                self._debug_break = False
                self._debugger_stopped(self.current, interrupted=True)
            if self._pick_possible():
                return None
            if end and time.monotonic() >= end:
                return Exit(ExitKind.STOPPED, reason="timeout")
            deadline = self._wake_deadline()
            if deadline is None:
                return Exit(ExitKind.HLT, reason=self._why_halted_forever())
            self.halted_ns += max(deadline - self.clock.now(), 0)
            self.clock.skip_to(deadline)

    def _pick_possible(self) -> bool:
        return any([self._make_ready(cpu) for cpu in self.cpus])     # every vCPU takes its INIT/SIPI

    def _why_halted_forever(self) -> str:
        whys = []
        for cpu in self.cpus:
            if cpu.state is CpuState.WAIT_FOR_SIPI:
                why = "waiting for a SIPI"
            else:
                interrupts, nmis = cpu.vcpu.interrupts_enabled(), not cpu.vcpu.nmi_blocked()
                why = "no interrupt is pending and no timer can raise one" if interrupts else \
                    "interrupts are disabled and nothing can raise an NMI" if nmis else \
                    "interrupts are disabled and NMIs blocked"
            whys.append(why if len(self.cpus) == 1 else f"vCPU {cpu.index}: {why}")
        return "; ".join(whys)

    def _wake_deadline(self) -> int | None:
        """The earliest deadline of a timer whose tick could wake a halted vCPU, or None (the
        rules are in the module docstring)."""
        deadlines = []
        halted = [c for c in self.cpus if c.state is CpuState.HALTED]
        any_interrupts = any_nmis = False
        for cpu in halted:
            interrupts, nmis = cpu.vcpu.interrupts_enabled(), not cpu.vcpu.nmi_blocked()
            any_interrupts |= interrupts
            any_nmis |= nmis
            lapic_deadline = cpu.lapic.next_deadline()
            if lapic_deadline is not None and interrupts and cpu.lapic.hardware_enabled and \
                    not cpu.lapic.get_state()["lvt"][Lvt.TIMER] & LVT_MASKED:
                deadlines.append(lapic_deadline)
        if not any_interrupts and not any_nmis:
            return None
        lines_reach_vcpu = None     # worked out for the first IRQ-line timer that is armed
        for timer in self.timers:
            deadline = timer.next_deadline()
            if deadline is None:
                continue
            if isinstance(timer, IRQ_LINE_TIMERS):
                if lines_reach_vcpu is None:
                    lines_reach_vcpu = self._irq_lines_reach_vcpu(any_interrupts, any_nmis)
                if not lines_reach_vcpu:
                    continue
            deadlines.append(deadline)
        return min(deadlines, default=None)

    def _irq_lines_reach_vcpu(self, interrupts: bool, nmis: bool) -> bool:
        """Whether an IRQ line change could make a maskable interrupt (if ``interrupts``) or an NMI
        (if ``nmis``) pending at a LAPIC."""
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

    def _flush_serial(self) -> None:
        """Every UART hands what it holds (a partial line) to the sink, however the run ends."""
        for uart in self.uarts:
            uart.flush()

    def _result(self, status: int, reason: str, detail: str = "") -> RunResult:
        self._flush_serial()
        if self.debugger is not None:
            self.debugger.ended(status)
        return RunResult(status, reason, detail, self.retired, bytes(self.uart.output))

