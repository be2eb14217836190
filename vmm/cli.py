# SPDX-License-Identifier: GPL-2.0-or-later
"""The ``pmu-vmm`` command line (``python -m vmm``): boot a test kernel, exit with its own status.

    pmu-vmm run KERNEL [options]      # `pmu-vmm run --help` lists every option and exit status
    pmu-vmm list                      # the bundled test kernels
    pmu-vmm qemu -kernel X ...        # the QEMU-compatible front end (vmm/qemu_cli.py), also `pmu-vmm-qemu`

``run`` exits with the value the guest wrote to isa-debug-exit (0 = passed), so ``&&`` and ``set -e``
work; the QEMU front end keeps QEMU's ``(value << 1) | 1``.  Other endings have their own statuses
(:data:`EXIT_STATUSES`, docs/cli.md).  Bad input (an option, the kernel, the initrd, an output file)
is one line on stderr and status 2, never a traceback.  ``--report``, ``--junit`` and ``--json``
describe the run afterwards (vmm/report.py, vmm/results.py); on a terminal a status line shows
progress during long runs.

Not supported: a kernel from stdin or a pipe (it must be a regular file),
serial input, and option values beginning with '-' except for ``--cpuid`` and ``--append``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import unicodedata

import firmware
from vmm import __version__
from vmm.cpu_models import CPU_MODELS
from vmm.options import (
    DEFAULT_QUANTUM,
    MAX_SMP,
    cpuid_help,
    parse_count,
    parse_cpuid,
    parse_cpus,
    parse_pmu,
    parse_quantum,
    parse_seconds,
    parse_size,
    pmu_help,
)
from vmm.trace import parse_trace, trace_help

EXIT_BAD_INPUT = 2
EXIT_OUTPUT = 74                                # EX_IOERR: serial output, report or results not written
EXIT_BROKEN_PIPE = 128 + signal.SIGPIPE         # its reader went away, as a shell shows SIGPIPE
EXIT_STATUSES = """\
exit status:
  N        the guest wrote N to isa-debug-exit: 0 = passed (values above 255 exit 255)
  0        the guest powered off (ACPI S5, Bochs shutdown port)
  2        bad input: an option, the kernel, the initrd, an output file (one line on stderr)
  70       VMM error
  74       the serial output, report or results could not be written (a full disk, stdout closed)
  123      the guest asked for a reset (pmu-vmm never reboots)
  124      --timeout or --max-insns reached
  125      the guest shut down (triple fault)
  126      the guest halted forever (HLT that nothing can wake)
  130/143  stopped by SIGINT/SIGTERM (serial output kept, report written)
  137      killed from gdb (--gdb)
  141      the serial output's reader went away (broken pipe)
"""
HELP_WORDS = ("help", "?")
GLUED_OPTIONS = ("--cpuid", "--append")     # their values may begin with '-'


def one_line(text: str) -> str:
    """``text`` as one terminal line: control characters and line separators (a newline in an
    option value echoed by an error message) are shown as escapes; tabs stay."""
    return "".join(ch.encode("unicode_escape").decode() if ch != "\t" and unicodedata.category(ch) in ("Cc", "Zl", "Zp")
                   else ch for ch in text)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {one_line(message)}\n")


def _gdb_address(text: str) -> str:
    from vmm.gdbstub import parse_listen_address

    parse_listen_address(text)
    return text


def _typed(parse):
    """An argparse type from a parser raising ValueError (argparse would hide the message)."""
    def convert(text):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    convert.__name__ = parse.__name__
    return convert


class _SpecAction(argparse.Action):
    """Stores (or appends) ``parse(value)``; a value for which ``reference`` gives text prints it and exits 0."""

    def __init__(self, option_strings, dest, reference, parse=str, append=False, **kwargs):
        super().__init__(option_strings, dest, **kwargs)
        self.parse, self.reference, self.append = parse, reference, append

    def __call__(self, parser, namespace, values, option_string=None):
        try:
            text = self.reference(values)
            if text is not None:
                print(text, flush=True)
                parser.exit(0)
            value = self.parse(values)
        except ValueError as e:
            parser.error(f"argument {option_string}: {e}")
        if self.append:
            value = [*(getattr(namespace, self.dest) or []), value]
        setattr(namespace, self.dest, value)


def _device_reference(value: str) -> str | None:
    from devices.registry import device_class, device_help

    if value in HELP_WORDS:
        return device_help()
    if value.endswith(tuple("," + word for word in HELP_WORDS)):
        return device_class(value.split(",")[0]).help_text()   # PropertyError is a ValueError
    return None


def build_parser(prog: str = "pmu-vmm") -> argparse.ArgumentParser:
    parser = _Parser(prog=prog, description="Boot ELF test kernels on a VMM with an exact virtual PMU.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="boot a kernel", epilog=EXIT_STATUSES,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("kernel", help="ELF or bzImage kernel file, or a bundled kernel's name (see `list`)")
    run.add_argument("--append", default="", metavar="TEXT", help="kernel command line (may begin with '-')")
    run.add_argument("--initrd", metavar="FILE", help="file passed as the multiboot module / Linux initrd")
    run.add_argument("--memory", "-m", type=_typed(parse_size), default=128 << 20, metavar="SIZE",
                     help="guest RAM, e.g. 256M or 1G; a bare number is MiB (default 128M)")
    run.add_argument("--cpu", choices=tuple(CPU_MODELS), default="intel",
                     help="CPU model: intel, amd or a named part (vmm/cpu_models.py; default intel)")
    run.add_argument("--smp", type=_typed(parse_cpus), default=1, metavar="N",
                     help=f"number of vCPUs, 1 to {MAX_SMP} (default 1)")
    run.add_argument("--quantum", type=_typed(parse_quantum), default=DEFAULT_QUANTUM, metavar="N",
                     help=f"with --smp: guest instructions per vCPU time slice (default {DEFAULT_QUANTUM})")
    run.add_argument("--cpuid", action=_SpecAction, parse=parse_cpuid, metavar="SPEC",
                     reference=lambda v: cpuid_help() if v in HELP_WORDS else None,
                     help="CPU signature and features, e.g. family=6,model=0x55,-x2apic,+pdcm (`--cpuid help`)")
    run.add_argument("--pmu", action=_SpecAction, parse=parse_pmu, metavar="KEY=VAL,...",
                     reference=lambda v: pmu_help() if v in HELP_WORDS else None,
                     help="PMU shape and policies, e.g. version=1,gp_counters=4,fixed_counters=0 (`--pmu help`)")
    run.add_argument("--device", "-device", action=_SpecAction, append=True, reference=_device_reference,
                     default=[], metavar="NAME[,PROP=VAL...]",
                     help="add or configure a device (`--device help` lists them, `--device NAME,help` its properties)")
    run.add_argument("--test-hooks", action="store_true",
                     help="the VMM's test hook port (the same as --device pmu-vmm-test-hooks)")
    run.add_argument("--kvm-pv", action="store_true",
                     help="KVM's paravirtual interface: CPUID 0x40000000 leaves and VMCALL/VMMCALL hypercalls "
                          "(the same as --device kvm-pv)")
    run.add_argument("--timeout", type=_typed(parse_seconds), default=0.0, metavar="SECONDS",
                     help="wall-clock limit for the run, status 124 (default 0: none)")
    run.add_argument("--max-insns", type=_typed(parse_count), default=0, metavar="N",
                     help="stop after N guest instructions, status 124 (default 0: none)")
    run.add_argument("--serial", metavar="FILE", help="write the guest's serial output to FILE instead of stdout")
    run.add_argument("--trace", action=_SpecAction, parse=parse_trace, append=True, default=[], metavar="LIST",
                     reference=lambda v: trace_help() if v in HELP_WORDS else None,
                     help="trace events, one line each with virtual time, vCPU, RIP and symbol: comma-separated "
                          "categories pmu,msr,rdpmc,pmi,io,mmio,irq,exc,exits or all (`--trace help`); repeatable")
    run.add_argument("--trace-file", metavar="FILE", help="write the trace to FILE instead of stderr")
    run.add_argument("--gdb", metavar="[HOST:]PORT", type=_typed(_gdb_address),
                     help="serve gdb on this TCP port (target remote :PORT); the guest waits for gdb to connect")
    run.add_argument("--forced-emulation", action="store_true",
                     help='honour the "ud2; kvm" forced emulation prefix')
    run.add_argument("--strict-memory", action="store_true",
                     help="end the run (status 70) when the guest accesses physical memory with no RAM or "
                          "device behind it, instead of reading all-ones and dropping writes")
    run.add_argument("--report", action="store_true",
                     help="at the end, print PMU counters, PMIs, instructions, virtual/wall time and MIPS on stderr")
    run.add_argument("--report-format", choices=("text", "json"), metavar="text|json",
                     help="the report's format (implies --report; default text)")
    run.add_argument("--report-file", metavar="FILE", help="write the report to FILE (implies --report)")
    run.add_argument("--junit", metavar="FILE", help="write the guest's PASS/FAIL/SKIP lines as JUnit XML")
    run.add_argument("--json", metavar="FILE", help="write the guest's PASS/FAIL/SKIP lines and SUMMARY as JSON")
    sub.add_parser("list", help="list the bundled test kernels")
    sub.add_parser("qemu", help="QEMU-compatible options (`qemu -help`)", add_help=False)
    return parser


def _glue(argv: list[str]) -> list[str]:
    """``--cpuid -x2apic`` -> ``--cpuid=-x2apic``: argparse would take ``-x2apic`` for an option."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] == "--":
            return out + argv[i:]
        if argv[i] in GLUED_OPTIONS and i + 1 < len(argv) and argv[i + 1].startswith("-"):
            out.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def _prog() -> str:
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    return "python -m vmm" if name in ("", "__main__.py", "-m") else name


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["qemu"]:
        from vmm.qemu_cli import run_qemu

        return _guarded(run_qemu, argv[1:], "pmu-vmm-qemu")
    return _guarded(_main, argv, _prog())


def qemu_main() -> int:
    """Entry point of the ``pmu-vmm-qemu`` command: point a runner's QEMU variable at it."""
    from vmm.qemu_cli import run_qemu

    return _guarded(run_qemu, sys.argv[1:], os.path.basename(sys.argv[0]) or "pmu-vmm-qemu")


def _main(argv: list[str], prog: str) -> int:
    args = build_parser(prog).parse_args(_glue(argv))
    if args.command == "list":
        print("\n".join(firmware.kernels()), flush=True)
        return 0
    from vmm.run_command import run_command

    return run_command(args, prog)


def _guarded(command, argv: list[str], prog: str) -> int:
    """Run a front end; a reader that went away or a Ctrl-C before the guest ran is a status, not a traceback."""
    try:
        return command(argv, prog)
    except BrokenPipeError:                 # e.g. `pmu-vmm list | head -1`
        from vmm.session import detach_stdout

        detach_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:               # before the guest ran (the run handles its own)
        return 128 + signal.SIGINT
