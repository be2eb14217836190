# SPDX-License-Identifier: GPL-2.0-or-later
"""Command line: boot an ELF test kernel and exit with the guest's status.

    python -m vmm run KERNEL [--append TEXT] [--initrd FILE] [--memory 128M] [--cpu intel|amd]
                             [--cpuid SPEC] [--pmu SPEC] [--smp 1] [--timeout S] [--max-insns N]
                             [--serial FILE] [--trace exits] [--forced-emulation] [--test-hooks]
                             [--device NAME[,PROP=VAL...]] [--device help]
    python -m vmm list                     # the bundled test kernels
    python -m vmm qemu -kernel X ...       # QEMU-compatible options (for test-suite runners);
    pmu-vmm-qemu -kernel X ...             # the same as a command, e.g. QEMU=pmu-vmm-qemu for a runner

KERNEL is a path, or the name of a bundled kernel (``python -m vmm list``).  The exit status
mirrors the guest's debug-exit write, (value << 1) | 1; other endings: 124 timeout or
instruction limit, 125 guest shut down (triple fault), 126 halted forever, 70 VMM error,
2 bad input (bad option, unreadable or malformed kernel) with one line on stderr.

``--device NAME[,PROP=VAL...]`` (also spelt ``-device``) adds or configures a device of the board
(vmm/board.py); ``--device help`` lists the devices, ``--device NAME,help`` a device's properties.

The QEMU mode understands -kernel, -append, -initrd, -m, -smp, -cpu (vendor only: a model
name containing "amd"/"epyc"/"opteron" selects AMD), -serial stdio|file:PATH|none, and
-device (every device of ``-device help``, e.g. isa-debug-exit,iobase=0xf4,iosize=4); every other
option (-machine, -accel, -display, -vga, -no-reboot, -nodefaults, -name, -enable-kvm, ...) is accepted and ignored.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import firmware
from vmm.cpuid import DEFAULT_SIGNATURE
from vmm.errors import VmmError

EXIT_BAD_INPUT = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message}\n")


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    try:
        if t and t[-1] in units:
            return int(t[:-1]) * units[t[-1]]
        return int(t) << 20 if len(t) <= 5 else int(t)   # QEMU: a bare -m number is MiB
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad memory size {text!r} (e.g. 128M, 1G)") from None


def parse_pmu(text: str) -> dict:
    """``--pmu version=1,gp_counters=4,fixed_counters=0,rdpmc_fast=seed`` -> PmuConfig fields."""
    from pmu.config import PmuConfig

    fields = {f.name: f for f in dataclasses.fields(PmuConfig) if f.name != "vendor"}
    spec = {}
    for item in filter(None, text.split(",")):
        key, sep, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key not in fields or not sep:
            raise argparse.ArgumentTypeError(f"{item!r}: expected KEY=VALUE with KEY one of {', '.join(fields)}")
        kind = str(fields[key].type)
        try:
            if "bool" in kind:
                if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError(value)
                spec[key] = value.lower() in ("1", "true", "yes", "on")
            elif "int" in kind:
                spec[key] = int(value, 0)
            else:
                spec[key] = value
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: bad value for {key}") from None
    return spec


def parse_cpuid(text: str) -> dict:
    """``--cpuid family=6,model=0x55,stepping=4,-x2apic,+pdcm`` -> signature and feature switches."""
    spec: dict = {"signature": {}, "features": {}}
    for item in filter(None, (i.strip() for i in text.split(","))):
        if item[0] in "+-":
            spec["features"][item[1:]] = item[0] == "+"
            continue
        key, sep, value = item.partition("=")
        if key not in ("family", "model", "stepping") or not sep:
            raise argparse.ArgumentTypeError(f"{item!r}: expected family=/model=/stepping= or +FEATURE/-FEATURE")
        try:
            spec["signature"][key] = int(value, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{item!r}: bad number") from None
    return spec


def _positive_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m vmm", description="Boot ELF test kernels on a VMM with an exact virtual PMU.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="boot a kernel")
    run.add_argument("kernel", help="ELF kernel file, or a bundled kernel name")
    run.add_argument("--append", default="", help="kernel command line")
    run.add_argument("--initrd", help="file passed as the multiboot module (KEY=VALUE environment)")
    run.add_argument("--memory", "-m", type=parse_size, default=128 << 20, help="guest RAM (default 128M)")
    run.add_argument("--cpu", choices=("intel", "amd"), default="intel")
    run.add_argument("--smp", type=int, default=1)
    run.add_argument("--cpuid", type=parse_cpuid, default=None, metavar="SPEC",
                     help="CPU signature and features (vmm/cpuid.py), e.g. family=6,model=0x55,-x2apic,+pdcm")
    run.add_argument("--pmu", type=parse_pmu, default=None, metavar="KEY=VAL,...",
                     help="PMU shape and policies (pmu/config.py), e.g. version=1,gp_counters=4,fixed_counters=0")
    run.add_argument("--timeout", type=_positive_float, default=0.0, help="wall-clock limit in seconds")
    run.add_argument("--max-insns", type=int, default=0, help="stop after N guest instructions")
    run.add_argument("--serial", help="write the guest's serial output to FILE instead of stdout")
    run.add_argument("--trace", choices=("exits",), action="append", default=[])
    run.add_argument("--forced-emulation", action="store_true",
                     help='honour the "ud2; kvm" forced emulation prefix')
    run.add_argument("--device", "-device", action="append", default=[], metavar="NAME[,PROP=VAL...]",
                     help="add or configure a device (vmm/board.py); `--device help` lists them, "
                          "`--device NAME,help` lists a device's properties")
    run.add_argument("--test-hooks", action="store_true",
                     help="VMM test hook port 0xE0 (the same as --device pmu-vmm-test-hooks)")
    sub.add_parser("list", help="list the bundled test kernels")
    sub.add_parser("qemu", help="QEMU-compatible options", add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["qemu"]:
        return _run_qemu(argv[1:])
    if argv[:1] == ["run"] and _device_help_asked(argv):
        return _print_device_help(_device_help_asked(argv))
    args = build_parser().parse_args(argv)
    if args.command == "list":
        print("\n".join(firmware.kernels()))
        return 0
    devices = args.device + (["pmu-vmm-test-hooks"] if args.test_hooks else [])
    return boot(args.kernel, cmdline=args.append, initrd=args.initrd, memory=args.memory, cpu=args.cpu,
                smp=args.smp, timeout=args.timeout, max_insns=args.max_insns, serial=args.serial,
                trace_exits="exits" in args.trace, forced_emulation=args.forced_emulation,
                devices=devices, pmu=args.pmu, cpuid=args.cpuid)


def _device_help_asked(argv: list[str]) -> str | None:
    """The ``-device`` value that asks for help (``help``, ``?`` or ``NAME,help``), if any."""
    for flag, value in zip(argv, argv[1:], strict=False):
        if flag.lstrip("-") == "device" and (value in ("help", "?") or value.endswith((",help", ",?"))):
            return value
    return None


def _print_device_help(value: str) -> int:
    from devices.device import PropertyError
    from devices.registry import device_class, device_help

    if value in ("help", "?"):
        print(device_help())
        return 0
    try:
        print(device_class(value.split(",")[0]).help_text())
    except PropertyError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def qemu_main() -> int:
    """Entry point of the ``pmu-vmm-qemu`` command: point a runner's QEMU variable at it."""
    return _run_qemu(sys.argv[1:])


def _resolve_kernel(name: str) -> str:
    if "/" in name or name.endswith(".elf"):
        return name
    try:
        return str(firmware.image(name))
    except FileNotFoundError:
        return name     # let the loader say the file does not exist


def boot(kernel: str, *, cmdline="", initrd=None, memory=128 << 20, cpu="intel", smp=1, timeout=0.0,
         max_insns=0, serial=None, trace_exits=False, forced_emulation=False, devices: list[str] = (),
         pmu: dict | None = None, cpuid: dict | None = None) -> int:
    from devices.device import PropertyError
    from devices.registry import parse_device_spec
    from vmm.machine import Machine, MachineConfig  # imports the engine: keep `--help` fast

    sink = None
    try:
        path = _resolve_kernel(kernel)
        module = _read_file(initrd, "initrd") if initrd else None
        if serial:
            try:
                sink = open(serial, "wb")
            except OSError as e:
                raise VmmError(f"cannot open serial output {serial}: {e.strerror}") from None
        pmu_config = None
        if pmu is not None:
            from pmu.config import PmuConfig
            try:
                pmu_config = PmuConfig(**{"vendor": cpu, "vmware_backdoor": True, **pmu})
            except ValueError as e:
                raise VmmError(f"--pmu: {e}") from None
        signature = None
        if cpuid and cpuid["signature"]:
            family, model, stepping = DEFAULT_SIGNATURE[cpu]
            sig = cpuid["signature"]
            signature = (sig.get("family", family), sig.get("model", model), sig.get("stepping", stepping))
        try:
            device_specs = [parse_device_spec(text) for text in devices]
        except PropertyError as e:
            raise VmmError(str(e)) from None
        config = MachineConfig(memory=memory, cpu=cpu, smp=smp, cmdline=cmdline, pmu=pmu_config,
                               cpu_signature=signature, cpuid_features=(cpuid or {}).get("features", {}),
                               initrd=module, serial=sink, timeout=timeout, max_insns=max_insns,
                               trace_exits=trace_exits, forced_emulation=forced_emulation, devices=device_specs)
        machine = Machine(config)
        machine.load(path)
        result = machine.run()
    except VmmError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    finally:
        if sink is not None:
            sink.close()
    if result.reason not in ("debug-exit", "poweroff"):
        print(f"vmm: {result.detail or result.reason} (after {result.instructions} instructions)", file=sys.stderr)
    return result.status


def _read_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise VmmError(f"cannot read {what} {path}: {e.strerror}") from None


def _run_qemu(argv: list[str]) -> int:
    """Translate the QEMU options test runners use; ignore the ones that do not apply."""
    takes_value = {"-kernel", "-append", "-initrd", "-m", "-smp", "-cpu", "-serial", "-device", "-machine", "-M",
                   "-accel", "-display", "-vga", "-name", "-chardev", "-mon", "-monitor", "-global", "-boot",
                   "-drive", "-netdev", "-net", "-rtc", "-object", "-numa", "-d", "-D", "-bios", "-L"}
    help_value = _device_help_asked(argv)
    if help_value:
        return _print_device_help(help_value)
    opts: dict[str, str] = {}
    devices: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        key = "-" + arg.lstrip("-")
        if key in takes_value:
            if i + 1 >= len(argv):
                print(f"qemu: option {arg} needs a value", file=sys.stderr)
                return EXIT_BAD_INPUT
            if key == "-device":
                devices.append(argv[i + 1])
            opts[key] = argv[i + 1]
            i += 2
        else:
            i += 1      # flags such as -nographic, -no-reboot, -enable-kvm, -S are ignored
    if "-kernel" not in opts:
        print("qemu: -kernel is required", file=sys.stderr)
        return EXIT_BAD_INPUT
    serial = opts.get("-serial", "stdio")
    serial_path = serial[len("file:"):] if serial.startswith("file:") else (os.devnull if serial == "none" else None)
    cpu = "amd" if any(w in opts.get("-cpu", "").lower() for w in ("amd", "epyc", "opteron")) else "intel"
    try:
        memory = parse_size(opts.get("-m", "128").split(",")[0].removeprefix("size="))
        smp = int(opts.get("-smp", "1").split(",")[0].removeprefix("cpus="))
    except (argparse.ArgumentTypeError, ValueError) as e:
        print(f"qemu: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return boot(opts["-kernel"], cmdline=opts.get("-append", ""), initrd=opts.get("-initrd"), memory=memory,
                cpu=cpu, smp=smp, serial=serial_path, devices=devices)
