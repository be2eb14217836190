# SPDX-License-Identifier: GPL-2.0-or-later
"""The QEMU-compatible front end (``pmu-vmm-qemu``, ``python -m vmm qemu``) for test-suite runners.

A runner that drives qemu-system-x86_64 (kvm-unit-tests' run_tests.sh, for one) can be pointed at
this command: it answers the probes runners make the way QEMU 7.2 does (``--help`` starts with
"QEMU emulator version 7.2.0 (pmu-vmm V)", ``-version``, ``-device help``/``-device '?'``, ``-cpu help``,
``-machine help``), prints QEMU's words where runners parse them ("qemu: could not open kernel file
'X': ...", "PROG: -foo: invalid option", "PROG: terminating on signal N"), exits 1 on every startup
error as QEMU does, and otherwise exits with the debug-exit status ``(value << 1) | 1``.

Every option is either honoured, accepted because it means nothing here, or refused with an error
(never silently dropped); docs/cli.md has the table.  All options are checked, and the machine
built, before the kernel is opened, so a runner probing with a missing kernel learns whether the
rest of its command line would work, as with QEMU.

gdb: ``-s`` (tcp::1234) or ``-gdb tcp:[HOST]:PORT`` starts vmm/gdbstub.py's server; with ``-S``
the guest waits for gdb before its first instruction, without it the guest runs and gdb may attach
at any time.  ``-S`` alone is refused (QEMU would wait for its monitor, which we do not have).

Not supported: disk images, drives, networks, chardevs, monitors and QMP, more than one serial
port, CPU models beyond those of ``-cpu help``, and rebooting (a guest reset ends the run, status
123).
"""

from __future__ import annotations

import os
import sys
from contextlib import ExitStack

from vmm import __version__
from vmm.cli import one_line
from vmm.cpu_models import CPU_MODELS, cpu_model_for_qemu
from vmm.cpuid import FEATURES
from vmm.options import CpuidSpec, cpu_setup, parse_bool, parse_cpus, parse_size
from vmm.run_command import ending_line, exit_status
from vmm.session import InputError, RunRequest, SerialSink, detach_stdout, execute, prepare
from vmm.trace import CATEGORIES, parse_trace

QEMU_COMPAT_VERSION = "7.2.0"       # the QEMU whose interface and wording this front end follows
EXIT_QEMU_ERROR = 1                 # QEMU's status for every error before the guest runs
HELP_WORDS = ("help", "?")
ACCELERATORS = ("tcg", "kvm")       # both run our own vCPU (pmu-vmm has no KVM backend)
MACHINE_TYPES = ("pc", "q35")       # and pc-i440fx-*/pc-q35-*: all mean pmu-vmm's one board
GENERIC_MODELS = ("max", "host", "base", "qemu64", "kvm64")      # our generic CPU, vendor= picks AMD
VENDORS = {"GenuineIntel": "intel", "AuthenticAMD": "amd"}
FEATURE_ALIASES = {"ibpb": "amd_ibpb"}      # QEMU's spelling -> vmm/cpuid.py's
TOPOLOGY_KEYS = ("maxcpus", "sockets", "dies", "clusters", "cores", "threads")
ONLY_NONE = ("display", "vga", "vnc", "monitor", "net", "parallel")
ACCEPTED_FLAGS = ("enable-kvm", "no-reboot", "no-shutdown", "nodefaults", "no-user-config", "nographic", "s", "S")
DEFAULT_GDB = "tcp::1234"           # what -s means
#: QEMU options we know and refuse (anything else is an "invalid option", as in QEMU).
REFUSED = ("drive", "hda", "hdb", "cdrom", "fda", "boot", "bios", "pflash", "netdev", "nic", "chardev", "mon", "qmp",
           "global", "object", "numa", "icount", "rtc", "incoming", "loadvm", "snapshot", "daemonize", "pidfile",
           "trace", "L", "fw_cfg", "usb", "usbdevice", "audiodev", "smbios", "acpitable", "overcommit",
           "sandbox", "runas", "chroot", "debugcon", "k", "option-rom", "plugin", "semihosting", "virtfs", "watchdog")
TAKES_VALUE = ("kernel", "append", "initrd", "m", "smp", "cpu", "serial", "device", "machine", "M", "accel", "name",
               "gdb", "d", "D", *ONLY_NONE)
#: -d items: QEMU's "int" as the trace categories that show interrupts and exceptions; pmu-vmm's own too.
LOG_ALIASES = {"int": ("irq", "exc", "pmi")}


class QemuError(Exception):
    """A startup error, already worded as QEMU words it (without the program name)."""


def banner() -> str:
    return f"QEMU emulator version {QEMU_COMPAT_VERSION} (pmu-vmm {__version__})"


def usage(prog: str) -> str:
    return f"""{banner()}
usage: {prog} [options]

pmu-vmm's QEMU-compatible front end: the options test runners use, mapped onto pmu-vmm.
Other QEMU options are refused; docs/cli.md says what each one means here.

-h, -help            display this help and exit
-version             display version information and exit
-kernel FILE         the kernel: multiboot ELF32/ELF64, plain ELF64, Linux bzImage or PVH
-append TEXT         the kernel command line
-initrd FILE         the multiboot module (kvm-unit-tests' environment) or Linux initrd
-m [size=]SIZE       guest RAM; a bare number is MiB (default 128)
-smp [cpus=]N[,cores=N,sockets=1,threads=1,dies=1,clusters=1,maxcpus=N]
                     N vCPUs (1-64): one package of N single-threaded cores
-cpu MODEL[,...]     max, host, base, qemu64, kvm64; vendor=GenuineIntel|AuthenticAMD,
                     +FEATURE, -FEATURE, FEATURE=on|off, pmu=on|off, family=, model=, stepping=,
                     migratable=on|off, kvm=on|off (-cpu help lists the features)
-device NAME[,...]   a device of -device help (NAME,help lists its properties)
-serial DEV          stdio, mon:stdio (no monitor), file:PATH, null, none (one serial port)
-machine [type=]pc|q35[,accel=kvm|tcg][,kernel_irqchip=...]   pmu-vmm has one board
-accel kvm|tcg, -enable-kvm   the vCPU is always pmu-vmm's own; kvm adds KVM's paravirtual CPUID
                     leaves and hypercalls (-device kvm-pv) unless -cpu ...,kvm=off
-no-reboot           what pmu-vmm always does: a guest reset ends the run (status 123)
-no-shutdown         accepted: a guest poweroff ends the run (status 0), there is no monitor
-nodefaults, -no-user-config, -nographic, -name NAME   accepted, nothing to change here
-display none, -vga none, -vnc none, -monitor none, -net none, -parallel none   accepted
-s, -gdb tcp:[HOST]:PORT   a gdb server (-s: tcp::1234); -S: wait for gdb before the first instruction
-d ITEM[,...]        trace: int (interrupts, exceptions, PMIs) or pmu-vmm's --trace categories (-d help)
-D FILE              write the trace to FILE instead of stderr

Exit status: (value << 1) | 1 for a debug-exit write of value; 0 guest poweroff; 1 startup error;
70 VMM error; 74 serial output error; 123 guest reset; 125 triple fault; 126 halted forever;
128+N stopped by signal N ("terminating on signal N" on stderr, where QEMU exits 0).
"""


def cpu_help() -> str:
    names = sorted(name.replace("_", "-") for name in FEATURES)
    models = [f"x86 {model:<20} pmu-vmm's CPU (Intel unless vendor=AuthenticAMD)" for model in GENERIC_MODELS]
    models += [f"x86 {m.qemu_name:<20} {m.brand}" for m in CPU_MODELS.values() if m.qemu_name]
    flags = [f"  {' '.join(names[i:i + 8])}" for i in range(0, len(names), 8)]
    return "\n".join(["Available CPUs:", *models, "", "Recognized CPUID flags:", *flags])


def log_help() -> str:
    lines = [f"{'int':<15} show interrupts, exceptions and PMIs (pmu-vmm: {','.join(LOG_ALIASES['int'])})"]
    lines += [f"{name:<15} {text}" for name, (_, text) in CATEGORIES.items()]
    return "\n".join(["Log items (comma separated):", *lines])


def machine_help() -> str:
    return ("Supported machines are:\n"
            "pc                   pmu-vmm PC: LAPIC per vCPU, IOAPIC, 8259, PIT, RTC, ACPI, no PCI devices (default)\n"
            "q35                  the same board (pmu-vmm has one; pc-i440fx-* and pc-q35-* too)")


def _props(value: str) -> list[tuple[str, str | None]]:
    return [(k, v if sep else None) for k, sep, v in (item.partition("=") for item in value.split(",") if item)]


class _Command:
    """What the options ask for, filled option by option."""

    def __init__(self):
        self.request = RunRequest(kernel="")
        self.kernel: str | None = None
        self.serial: str | None = None      # None: stdout
        self.serial_given = False
        self.cpu = "intel"                  # a vmm/cpu_models.py model
        self.cpuid = CpuidSpec({}, {})
        self.pmu: dict = {}
        self.kvm_accel = False              # -accel kvm, -enable-kvm, -machine accel=kvm
        self.kvm_signature = True           # -cpu ...,kvm=off hides KVM's CPUID leaves
        self.log_file: str | None = None    # -D; None: stderr

    def _set(self, **fields) -> None:
        self.request = self.request._replace(**fields)

    def option(self, name: str, value: str | None) -> str | None:
        """Apply one option; returns text to print (a help listing) and stop, or None."""
        if name == "kernel":
            self.kernel = value
        elif name == "append":
            self._set(cmdline=value)
        elif name == "initrd":
            self._set(initrd=value)
        elif name == "m":
            self._memory(value)
        elif name == "smp":
            self._smp(value)
        elif name == "cpu":
            return cpu_help() if value in HELP_WORDS else self._cpu(value)
        elif name == "serial":
            self._serial(value)
        elif name == "device":
            return self._device(value)
        elif name in ("machine", "M"):
            return machine_help() if value in HELP_WORDS else self._machine(value)
        elif name == "accel":
            self._accel(value)
        elif name == "enable-kvm":
            self.kvm_accel = True
        elif name in ("s", "gdb"):
            self._gdb(DEFAULT_GDB if name == "s" else value)
        elif name == "S":
            self._set(gdb_wait=True)
        elif name == "d":
            return log_help() if value in HELP_WORDS else self._log(value)
        elif name == "D":
            self.log_file = value
        elif name in ONLY_NONE and value != "none":
            raise QemuError(f"-{name} {value}: not supported by pmu-vmm (only 'none')")
        return None

    def _log(self, value: str) -> None:
        words = [word for item in value.split(",") for word in LOG_ALIASES.get(item, (item,))]
        try:
            self._set(trace=tuple(dict.fromkeys((*self.request.trace, *parse_trace(",".join(words))))))
        except ValueError:
            bad = next(item for item in value.split(",") if item not in LOG_ALIASES and item not in CATEGORIES)
            raise QemuError(f"-d {value}: log item '{bad}' not supported by pmu-vmm (-d help lists them)") from None

    def _gdb(self, value: str) -> None:
        from vmm.gdbstub import parse_listen_address

        if not value.startswith("tcp:"):
            raise QemuError(f"-gdb {value}: only tcp:[HOST]:PORT is supported by pmu-vmm")
        try:
            parse_listen_address(value)
        except ValueError as e:
            raise QemuError(f"-gdb {value}: {e}") from None
        self._set(gdb=value)

    def _memory(self, value: str) -> None:
        size, *rest = value.split(",")
        if rest:
            raise QemuError(f"-m {value}: slots and maxmem are not supported by pmu-vmm")
        try:
            self._set(memory=parse_size(size.removeprefix("size=")))
        except ValueError as e:
            raise QemuError(f"-m {value}: {e}") from None

    def _smp(self, value: str) -> None:
        counts = {}
        for key, number in _props(value):
            key, number = ("cpus", key) if number is None else (key, number)
            if key not in ("cpus", *TOPOLOGY_KEYS) or not number.isdigit():
                raise QemuError(f"-smp {value}: expected [cpus=]N and {', '.join(TOPOLOGY_KEYS)}")
            counts[key] = int(number)
        for key in ("sockets", "dies", "clusters", "threads"):
            if counts.get(key, 1) != 1:
                raise QemuError(f"-smp {value}: pmu-vmm has one package of single-threaded cores ({key} must be 1)")
        cpus = counts.get("cpus", counts.get("cores", 1))
        for key in ("cores", "maxcpus"):
            if counts.get(key, cpus) != cpus:
                raise QemuError(f"-smp {value}: {key} must equal the number of CPUs ({cpus}): "
                                "no CPU hot-plug, one core per CPU")
        try:
            self._set(smp=parse_cpus(str(cpus)))
        except ValueError as e:
            raise QemuError(f"-smp {value}: {e}") from None

    def _cpu(self, value: str) -> None:
        model, *items = value.split(",")
        named = cpu_model_for_qemu(model)
        if named is None and model not in GENERIC_MODELS:
            known = [*GENERIC_MODELS, *(m.qemu_name for m in CPU_MODELS.values() if m.qemu_name)]
            raise QemuError(f"unable to find CPU model '{model}' (pmu-vmm has {', '.join(known)})")
        self.cpu = named or "intel"
        for item in filter(None, items):
            try:
                self._cpu_prop(item)
            except ValueError as e:
                raise QemuError(f"-cpu {value}: {e}") from None

    def _cpu_prop(self, item: str) -> None:
        """One -cpu item: +FEATURE, -FEATURE, FEATURE=on|off or a property; ValueError if unknown."""
        if item[0] in "+-":
            name, on = item[1:], item[0] == "+"
        else:
            name, sep, text = item.partition("=")
            if name == "vendor":
                if text not in VENDORS:
                    raise ValueError(f"vendor={text}: pmu-vmm has {' and '.join(VENDORS)}")
                if self.cpu not in ("intel", "amd"):
                    raise ValueError(f"vendor={text}: the named model {self.cpu} has its own vendor")
                self.cpu = VENDORS[text]
                return
            if name in ("family", "model", "stepping"):
                try:
                    self.cpuid.signature[name] = int(text, 0)
                except ValueError:
                    raise ValueError(f"{name}={text}: not a number") from None
                return
            if name == "pmu":
                if not parse_bool(name, text):
                    self.pmu.update(version=0, pdcm=False)
                return
            if name == "kvm":               # KVM's paravirtual leaves, with -accel kvm
                self.kvm_signature = parse_bool(name, text)
                return
            if name == "migratable":        # only migration cares, and there is none
                parse_bool(name, text)
                return
            on = parse_bool(name, text) if sep else None
        feature = FEATURE_ALIASES.get(name, name.replace("-", "_"))
        if feature not in FEATURES or on is None:
            raise ValueError(f"CPU property or feature '{name}' not found (see -cpu help)")
        self.cpuid.features[feature] = on

    def _serial(self, value: str) -> None:
        if self.serial_given:
            raise QemuError(f"-serial {value}: pmu-vmm has one serial port")
        self.serial_given = True
        if value in ("stdio", "mon:stdio"):
            self.serial = None
        elif value in ("null", "none"):
            self.serial = os.devnull
        elif value.startswith("file:"):
            self.serial = value.removeprefix("file:")
        else:
            raise QemuError(f"-serial {value}: not supported by pmu-vmm (stdio, mon:stdio, file:PATH, null, none)")

    def _device(self, value: str) -> str | None:
        from devices.registry import device_class, device_help

        if value in HELP_WORDS:
            return device_help()
        if value.endswith(tuple("," + word for word in HELP_WORDS)):
            try:
                return device_class(value.split(",")[0]).help_text()
            except ValueError as e:     # devices.device.PropertyError: no such device
                raise QemuError(f"-device {value}: {e}") from None
        self._set(devices=(*self.request.devices, value))
        return None

    def _machine(self, value: str) -> None:
        for key, text in _props(value):
            key, text = ("type", key) if text is None else (key, text)
            if key == "type" and not (text in MACHINE_TYPES or text.startswith(("pc-i440fx-", "pc-q35-"))):
                raise QemuError(f"unsupported machine type \"{text}\" (use -machine help to list supported machines)")
            if key == "accel" and not set(text.split(":")) <= set(ACCELERATORS):
                raise QemuError(f"-machine {value}: accelerator '{text}' not supported by pmu-vmm (kvm, tcg)")
            if key == "accel":
                self.kvm_accel = text.split(":")[0] == "kvm"     # QEMU uses the first that works
            if key not in ("type", "accel", "kernel_irqchip", "kernel-irqchip"):
                raise QemuError(f"-machine {value}: property '{key}' not supported by pmu-vmm")

    def _accel(self, value: str) -> None:
        name, *items = value.split(",")
        if name not in ACCELERATORS:
            raise QemuError(f"-accel {value}: accelerator '{name}' not supported by pmu-vmm (kvm, tcg)")
        if any(not item.startswith("thread=") for item in items):
            raise QemuError(f"-accel {value}: only the thread= property is accepted")
        self.kvm_accel = name == "kvm"


def parse(argv: list[str], prog: str) -> tuple[_Command | None, str | None]:
    """(the command, None) to run, or (None, text) to print and exit 0; QemuError for a bad option."""
    command = _Command()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-") or arg == "-":
            raise QemuError(f"{arg}: disk images are not supported by pmu-vmm (use -kernel)")
        name = arg.lstrip("-") if arg.startswith("--") else arg[1:]
        if name in ("h", "help"):
            return None, usage(prog)
        if name == "version":
            return None, banner() + "\nThis is pmu-vmm's QEMU-compatible front end, not QEMU."
        if name in REFUSED:
            raise QemuError(f"{arg}: not supported by pmu-vmm")
        if name not in TAKES_VALUE and name not in ACCEPTED_FLAGS:
            raise QemuError(f"{arg}: invalid option")
        value = None
        if name in TAKES_VALUE:
            if i + 1 >= len(argv):
                raise QemuError(f"{arg}: requires an argument")
            i += 1
            value = argv[i]
        text = command.option(name, value)
        if text is not None:
            return None, text
        i += 1
    if command.kernel is None:
        raise QemuError("-kernel is required (pmu-vmm boots kernels, not disks)")
    return command, None


def _input_error_line(e: InputError, prog: str) -> str:
    if e.kind == "kernel-open":
        return f"qemu: could not open kernel file '{e.path}': {e.reason}"
    if e.kind == "kernel-load":
        return f"qemu: could not load kernel '{e.path}': {e.reason}"
    if e.kind == "initrd-open":
        return f"{prog}: Failed to open file '{e.path}'"
    return f"{prog}: {e}"


def _say(line: str) -> None:
    """One line on stderr, whatever the option values it quotes hold (see vmm.cli.one_line)."""
    print(one_line(line), file=sys.stderr)


def run_qemu(argv: list[str], prog: str) -> int:
    """Parse QEMU options, run, and return the exit status (``prog`` names us in messages)."""
    try:
        command, text = parse(argv, prog)
        if text is not None:
            print(text, flush=True)
            return 0
        request = command.request._replace(kernel=command.kernel, cpu=command.cpu)
        if command.kvm_accel and command.kvm_signature and \
                not any(text.split(",")[0] == "kvm-pv" for text in request.devices):
            # what a guest of QEMU/KVM sees (devices/kvm_pv.py)
            request = request._replace(devices=(*request.devices, "kvm-pv"))
        try:
            request = request._replace(cpu_setup=cpu_setup(command.cpu, command.cpuid, command.pmu or None))
        except ValueError as e:
            raise QemuError(f"-cpu: {e}") from None
        if command.serial is None and sys.stdout is None:
            raise QemuError("-serial stdio: standard output is closed")
        if request.gdb_wait and request.gdb is None:
            raise QemuError("-S: without -s or -gdb nothing could start the guest (pmu-vmm has no monitor)")
    except QemuError as e:
        _say(f"{prog}: {e}")
        return EXIT_QEMU_ERROR
    with ExitStack() as files:
        try:
            serial = sys.stdout.buffer if command.serial is None else \
                files.enter_context(open(command.serial, "wb", buffering=0))
        except OSError as e:
            _say(f"{prog}: -serial file:{command.serial}: {e.strerror}")
            return EXIT_QEMU_ERROR
        sink = SerialSink(serial)
        if command.log_file is not None:
            try:
                request = request._replace(trace_file=files.enter_context(open(command.log_file, "w",
                                                                                encoding="utf-8")))
            except OSError as e:
                _say(f"{prog}: -D {command.log_file}: {e.strerror}")
                return EXIT_QEMU_ERROR
        try:
            machine = prepare(request, sink)
        except InputError as e:
            _say(_input_error_line(e, prog))
            return EXIT_QEMU_ERROR
        outcome = execute(machine, sink)
    if outcome.output_error is not None and command.serial is None:
        detach_stdout()
    if outcome.signal is not None:
        _say(f"{prog}: terminating on signal {outcome.signal}")
        return 128 + outcome.signal
    line = ending_line(outcome)
    if line:
        _say(f"{prog}: {line}")
    return outcome.result.status if outcome.reason == "debug-exit" else exit_status(outcome)
