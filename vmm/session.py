# SPDX-License-Identifier: GPL-2.0-or-later
"""One run of the VMM as a process: checked inputs in, a machine run, an :class:`Outcome` out.

Both command lines (vmm/cli.py, vmm/qemu_cli.py) build a :class:`RunRequest`, call :func:`prepare`
(which refuses bad input with an :class:`InputError` before the guest runs) and :func:`execute`; they
differ only in wording and exit statuses.

Inputs are checked before anything is read whole: the kernel must be a regular file of at most
vmm.loader.MAX_KERNEL_BYTES, the initrd a regular file no larger than guest RAM (so ``/dev/zero``
or a FIFO is refused, not read), the command line and the kernel's file name (the guest's argv[0])
valid UTF-8.  Files are opened without blocking, so a FIFO with no writer cannot hang the start.

While the guest runs:

* SIGINT and SIGTERM stop it before its next instruction block (a second one acts at once); every
  byte of serial output is kept, and the outcome says which signal ended the run.
* ``timeout`` is the machine's wall-clock limit for the whole run (MachineConfig.timeout); any
  finite value is taken, those above :data:`MAX_TIMEOUT_S` (about 31 years) as that.
* The serial console never raises into the machine: a write error (``/dev/full``, a closed pipe)
  stops the guest and is reported in the outcome.
* ``on_tick`` (the progress line) is called about every millisecond of virtual time.

These need the run loop to come back to Python while a guest spins with no exit at all.  Until the
machine offers a periodic hook, a :class:`_Ticker` joins the machine's timer list: it fires at
virtual times fixed in advance, like a device timer, so the guest cannot tell (tests/test_cli_run.py
checks that counts are unchanged).  The vCPU's C paths (the LAPIC's x2APIC MSRs and xAPIC page,
the UART) only ever move its deadline earlier, so they never drop the ticker's; a halted guest
disarms the ticker, which re-arms at the wake-up (see :class:`_Ticker`).
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import os
import signal
import stat
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import NamedTuple

import firmware
from devices.debug_exit import DebugExit
from vmm.errors import VmmError
from vmm.options import DEFAULT_QUANTUM, CpuSetup

TICK_NS = 1 << 20                   # virtual ns between ticks: about 1 M instructions
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: Longer timeouts are this one: no run can tell the difference, and the vCPU's C timer takes microseconds
#: in 64 bits (a timeout of 1.9e13 s or more overflowed it).
MAX_TIMEOUT_S = 1e9


class InputError(VmmError):
    """Bad input found before the guest ran.

    ``kind`` is "kernel-open" / "initrd-open" (the file cannot be opened: ``reason`` is the OS's
    words), "kernel-load" / "initrd-load" (it is not loadable), or "input" (anything else).
    """

    def __init__(self, message: str, kind: str = "input", path: str = "", reason: str = ""):
        super().__init__(message)
        self.kind, self.path, self.reason = kind, path, reason


# RunRequest and Outcome are NamedTuples, not dataclasses: Python 3.11 compiles a dataclass's methods
# from source text when the class is created, ~1.4% of a command-line run for these two.
class RunRequest(NamedTuple):
    """What to run and how: one per run, built by a front end (the QEMU one option by option, with
    ``_replace``)."""

    kernel: str                       # a path, or a bundled kernel's name (``python -m vmm list``)
    cmdline: str = ""
    initrd: str | None = None
    memory: int = 128 << 20
    cpu: str = "intel"
    smp: int = 1
    quantum: int = DEFAULT_QUANTUM    # guest instructions per vCPU time slice when smp > 1
    gdb: str | None = None            # [tcp:][HOST]:PORT for a gdb server (vmm/gdbstub.py), or None
    gdb_wait: bool = False            # the guest waits for gdb before its first instruction
    cpu_setup: CpuSetup | None = None   # None: the CPU model's own (vmm.options.cpu_setup)
    timeout: float = 0.0              # wall-clock seconds for the whole run, 0 = none
    max_insns: int = 0
    serial: object = None             # a binary file for the guest's serial output; None = stdout
    trace_exits: bool = False
    trace: tuple[str, ...] = ()       # vmm/trace.py categories (exits included)
    trace_file: object = None         # a text file for the trace; None = stderr
    forced_emulation: bool = False
    strict_memory: bool = False       # unmapped physical memory ends the run (MachineConfig.strict_memory)
    devices: Sequence[str] = ()       # -device texts


class Outcome(NamedTuple):
    """How a run ended (:func:`execute`)."""

    result: object                    # vmm.machine.RunResult
    machine: object                   # vmm.machine.Machine, for reports
    wall_s: float
    debug_value: int | None = None    # what the guest wrote to isa-debug-exit (reason "debug-exit")
    signal: int | None = None         # the signal that stopped the run
    output_error: OSError | None = None   # the serial console could not be written

    @property
    def reason(self) -> str:
        """The machine's reason, or this run's own endings: "signal", "output-error"."""
        if self.signal is not None:
            return "signal"
        if self.output_error is not None:
            return "output-error"
        return self.result.reason


def resolve_kernel(name: str) -> str:
    """A bundled kernel's path for a bare name (no '/', no .elf); anything else is a path."""
    if "/" in name or name.endswith(".elf"):
        return name
    try:
        return str(firmware.image(name))
    except FileNotFoundError:
        return name     # the kernel check says the file does not exist


def _open_regular(path: str, what: str, limit: int, limit_name: str, kind: str) -> int:
    """An open descriptor of a regular file of at most ``limit`` bytes, or InputError."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise InputError(f"cannot open {what} {path}: {e.strerror}", kind + "-open", path, e.strerror) from None
    info = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(info.st_mode):
        problem = "not a regular file"
    elif info.st_size > limit:
        problem = f"{info.st_size} bytes, larger than {limit_name} ({limit >> 20} MiB)"
    if problem:
        os.close(fd)
        raise InputError(f"{what} {path}: {problem}", kind + "-load", path, problem)
    return fd


def read_initrd(path: str, memory: int) -> bytes:
    with os.fdopen(_open_regular(path, "initrd", memory, "guest RAM", "initrd"), "rb") as f:
        return f.read(memory + 1)       # bounded even if the file grew since fstat (the loader refuses it)


def check_kernel(path: str) -> None:
    from vmm.loader import MAX_KERNEL_BYTES

    try:
        os.path.basename(path).encode()
    except UnicodeEncodeError:
        raise InputError(f"kernel file name {path!r} is not valid UTF-8 (it is the guest's argv[0])") from None
    os.close(_open_regular(path, "kernel", MAX_KERNEL_BYTES, "the kernel size limit", "kernel"))


def prepare(request: RunRequest, sink) -> object:
    """A Machine with the kernel loaded, ``sink`` as its serial console; InputError for bad input."""
    from devices.device import PropertyError
    from devices.registry import parse_device_spec
    from vmm.machine import Machine, MachineConfig  # imports the engine: keep `--help` fast

    try:
        request.cmdline.encode()
    except UnicodeEncodeError:
        raise InputError("the kernel command line is not valid UTF-8") from None
    initrd = read_initrd(request.initrd, request.memory) if request.initrd is not None else None
    try:
        devices = [parse_device_spec(text) for text in request.devices]
    except PropertyError as e:
        raise InputError(str(e)) from None
    setup = request.cpu_setup or CpuSetup(None, {}, None)
    config = MachineConfig(memory=request.memory, cpu=request.cpu, smp=request.smp, quantum=request.quantum,
                           cmdline=request.cmdline,
                           pmu=setup.pmu, cpu_signature=setup.signature, cpuid_features=setup.features,
                           initrd=initrd, serial=sink, timeout=min(request.timeout, MAX_TIMEOUT_S),
                           max_insns=request.max_insns,
                           trace_exits=request.trace_exits, trace=request.trace, trace_file=request.trace_file,
                           forced_emulation=request.forced_emulation,
                           strict_memory=request.strict_memory, devices=devices)
    try:
        machine = Machine(config)
    except VmmError as e:
        raise InputError(str(e)) from None
    path = resolve_kernel(request.kernel)
    check_kernel(path)
    try:
        machine.load(path)
    except VmmError as e:
        raise InputError(str(e), "kernel-load", path, str(e)) from None
    if request.gdb is not None:
        from vmm.gdbstub import GdbServer

        try:
            machine.attach_debugger(GdbServer(request.gdb, start_stopped=request.gdb_wait))
        except (VmmError, ValueError) as e:
            raise InputError(str(e)) from None
    return machine


class SerialSink:
    """The guest's serial console: a binary file that never raises into the machine.

    The first write error is kept in ``error`` and reported through ``on_error``; later output is
    dropped.  ``before_write`` runs before each write (the progress line erases itself there).
    """

    def __init__(self, stream, on_error: Callable[[OSError], None] | None = None,
                 before_write: Callable[[], None] | None = None):
        self.stream = stream
        self.on_error = on_error
        self.before_write = before_write
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        if self.error is None:
            if self.before_write is not None:
                self.before_write()
            self._guard(self.stream.write, data)
        return len(data)

    def flush(self) -> None:
        if self.error is None:
            self._guard(self.stream.flush)

    def _guard(self, call, *args) -> None:
        try:
            call(*args)
        except OSError as e:
            self.error = e
            if self.on_error is not None:
                self.on_error(e)


class _Ticker:
    """Calls ``on_tick`` every ``period`` ns of virtual time while the vCPU runs (see the module doc).

    A tick finding no instruction retired since the previous one means the vCPU is halted: the
    ticker then disarms until it runs again, so it never keeps a halted guest "waiting" for it.
    It re-arms when the machine next looks at its timers with a vCPU able to run (a wake-up):
    the guest may make no exit after that (its LAPIC and UART accesses are answered in C).
    """

    def __init__(self, machine, period: int, on_tick: Callable[[], None]):
        self.machine = machine
        self.period = period
        self.on_tick = on_tick
        self.next: int | None = 0
        self.retired = -1
        machine.timers.append(self)

    def next_deadline(self) -> int | None:
        if self.next is None and (self.machine.retired != self.retired or self._runnable()):
            self.next = self.machine.clock.now() + self.period
        return self.next

    def _runnable(self) -> bool:
        from vmm.cpu import CpuState  # (the machine has imported it: no cost)

        return any(cpu.state is CpuState.RUNNABLE for cpu in self.machine.cpus)

    def tick(self, now: int) -> None:
        halted = self.machine.retired == self.retired
        self.retired = self.machine.retired
        self.next = None if halted else now + self.period
        self.on_tick()


class _Run:
    """The guest running under signal handlers and the ticker."""

    def __init__(self, machine, sink: SerialSink, on_tick: Callable[[], None] | None):
        self.machine = machine
        self.on_tick = on_tick
        self.signal: int | None = None
        sink.on_error = lambda error: self.stop("serial output failed")

    def stop(self, text: str) -> None:
        """End the run before the guest's next block; safe from a signal handler, sticky outside the run loop."""
        self.machine.request_stop(text)

    def _on_signal(self, signum, frame) -> None:
        if self.signal is not None:         # asked twice: do what the signal does by default, now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.signal = signum
        self.stop(f"stopped by {signal.Signals(signum).name}")

    def _tick(self) -> None:
        if self.on_tick is not None:
            self.on_tick()

    @contextmanager
    def _signals(self):
        previous = {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def run(self):
        _Ticker(self.machine, TICK_NS, self._tick)
        with self._signals():
            return self.machine.run()


def execute(machine, sink: SerialSink, on_tick: Callable[[], None] | None = None) -> Outcome:
    """Run a prepared machine to its end; ``on_tick`` is called about every ms of virtual time."""
    run = _Run(machine, sink, on_tick)
    start = time.monotonic()
    result = run.run()
    wall_s = time.monotonic() - start
    debug_value = None
    if result.reason == "debug-exit":
        debug_value = next(d.exit_value for d in machine.devices
                           if isinstance(d, DebugExit) and d.exit_value is not None)
    return Outcome(result, machine, wall_s, debug_value, run.signal, sink.error)


def detach_stdout() -> None:
    """After a write error on stdout (EPIPE, ENOSPC): point it at /dev/null, so the interpreter's
    last flush of what is still buffered stays quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
