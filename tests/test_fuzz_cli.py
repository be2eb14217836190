# SPDX-License-Identifier: GPL-2.0-or-later
"""Command-line fuzzers: no option value can make either front end crash, hang or misreport.

Both command lines -- ``pmu-vmm run`` (vmm/cli.py, vmm/options.py, vmm/run_command.py) and the QEMU
front end (vmm/qemu_cli.py) -- get random and near-valid values for every option: sizes with
suffixes, vCPU counts, CPU models and feature lists, ``-device`` specs with properties, command
lines with quotes, unicode and undecodable bytes, limits, serial destinations, machine types and
accelerators, and kernel and initrd files that do not exist, are directories, are empty, are
garbage or are a truncated ELF.  The contract (:func:`check`):

* no Python exception leaves the front end and no traceback is printed;
* bad input is exactly one line on stderr and status 2 (``run``) or 1 (QEMU, as QEMU does);
* input the strategies know is good runs the guest: a tiny kernel that prints ``k`` and writes 3 to
  isa-debug-exit, so ``run`` exits 3 and the QEMU front end ``(3 << 1) | 1 = 7``, with nothing on
  stderr; other endings (limits, a relocated debug-exit port) are one line on stderr and a
  documented status, never 70 (VMM error: no option may cause one);
* every call ends within :data:`HANG_S` wall-clock seconds.

Strategies mark their values as good, bad or either (near-valid values whose fate the fuzzer does
not predict): the contract is checked for all of them, and good and bad values must end as marked.
Most examples run in-process through :func:`vmm.cli.main` (a machine is built and run for each);
a few run ``python -m vmm`` as a subprocess for the real exit path (argv bytes that are not UTF-8,
status and stderr as a shell sees them).

Hypothesis settings: derandomized and bounded (:data:`FUZZ`); ``PMU_VMM_FUZZ=long`` (as in
tests/test_fuzz_guest.py) runs ``PMU_VMM_FUZZ_EXAMPLES`` random examples per fuzzer instead.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.registry import device_classes
from pmu.config import PmuConfig
from tests.elfgen import Seg, build_elf
from vmm import cli
from vmm.cpu_models import CPU_MODELS
from vmm.cpuid import FEATURES

ROOT = Path(__file__).resolve().parent.parent
HANG_S = 20.0                   # wall-clock seconds any one invocation may take
EXIT_VALUE = 3                  # what the test kernel writes to isa-debug-exit
RUN_OK, QEMU_OK = EXIT_VALUE, EXIT_VALUE << 1 | 1
RUN_BAD, QEMU_BAD = 2, 1
#: Endings of a guest that ran but did not reach debug-exit: limits, reset, triple fault, halted forever.
OTHER_ENDINGS = (124, 123, 125, 126)
#: --smp N: 1 runs; 2 up to this may run (SMP support is on its way) or be refused; from it on, refused.
ABSURD_SMP = 256

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                                     HealthCheck.filter_too_much])
settings.register_profile("cli-fuzz-ci", derandomize=True, max_examples=100, **_COMMON)
settings.register_profile("cli-fuzz-long", max_examples=int(os.environ.get("PMU_VMM_FUZZ_EXAMPLES", "2000")),
                          **_COMMON)
FUZZ = settings.get_profile("cli-fuzz-" + os.environ.get("PMU_VMM_FUZZ", "ci"))

# mov dx, 0x3f8; mov al, 'k'; out dx, al; mov al, '\n'; out dx, al; mov eax, 3; out 0xf4, eax; hlt
KERNEL_CODE = b"\x66\xba\xf8\x03\xb0k\xee\xb0\n\xee\xb8" + EXIT_VALUE.to_bytes(4, "little") + b"\xe7\xf4\xf4"
KERNEL_IMAGE = build_elf([Seg(0x400000, KERNEL_CODE)], entry=0x400000)


# -- the files the fuzzers name ----------------------------------------------------------------
class Files:
    kernel: str                 # the good kernel
    initrd: str                 # a small good initrd
    bad_kernels: tuple[str, ...]    # each refused: missing, a directory, empty, garbage, truncated ELF, ...
    bad_initrds: tuple[str, ...]
    out_dir: str                # where good output files go
    bad_outputs: tuple[str, ...]    # paths no output file can be opened at

    def __init__(self, **paths):
        self.__dict__.update(paths)

    def __repr__(self) -> str:
        return f"Files({os.path.dirname(self.kernel)})"


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Files:
    d = tmp_path_factory.mktemp("cli-fuzz")
    (d / "kernel.elf").write_bytes(KERNEL_IMAGE)
    (d / "initrd").write_bytes(b"KEY=VALUE\n")
    (d / "empty").write_bytes(b"")
    (d / "garbage").write_bytes(bytes(range(256)) * 4)
    (d / "truncated.elf").write_bytes(KERNEL_IMAGE[:70])
    (d / "header-only.elf").write_bytes(KERNEL_IMAGE[:64])
    (d / "dir").mkdir()
    (d / "out").mkdir()
    missing = str(d / "no-such-file")
    return Files(
        kernel=str(d / "kernel.elf"), initrd=str(d / "initrd"),
        bad_kernels=(missing, str(d / "dir"), str(d / "empty"), str(d / "garbage"), str(d / "truncated.elf"),
                     str(d / "header-only.elf"), "/dev/null", "/dev/zero", "", "no-such-bundled-kernel"),
        bad_initrds=(missing, str(d / "dir"), "/dev/zero", ""),
        out_dir=str(d / "out"), bad_outputs=(str(d / "dir"), str(d / "no-such-dir" / "x"), ""),
    )


# -- running a command line in-process ---------------------------------------------------------
@dataclass
class Result:
    argv: list[str]
    status: int
    stdout: bytes
    stderr: str
    wall: float

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.split("\n") if line.strip()]     # a terminal's lines


class Hang(Exception):
    pass


def _alarm(signum, frame):
    raise Hang(f"no end within {HANG_S} s")


def invoke(argv: list[str]) -> Result:
    """``python -m vmm ARGV`` in this process: status, stdout bytes and stderr text; any exception
    that escapes the front end (a Hang included) propagates and fails the test."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="surrogateescape", write_through=True)
    stderr = io.StringIO()
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                status = cli.main(list(argv))
            except SystemExit as e:         # argparse's errors, help and --version
                status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    return Result(list(argv), status, stdout.buffer.getvalue(), stderr.getvalue(), time.monotonic() - start)


def check(result: Result, qemu: bool, expect: str) -> None:
    """The contract: ``expect`` is "good" (the guest runs to debug-exit), "bad" (refused) or "either"."""
    ok, bad = (QEMU_OK, QEMU_BAD) if qemu else (RUN_OK, RUN_BAD)
    where = f"argv {result.argv!r}: status {result.status}, stderr {result.stderr!r}"
    assert "Traceback" not in result.stderr, where
    assert result.wall < HANG_S, where
    if result.status == bad and result.lines:
        assert len(result.lines) == 1, f"refusal is not one line: {where}"
        assert expect != "good", f"good input refused: {where}"
        return
    assert expect != "bad", f"bad input accepted: {where}"
    if result.status == ok:
        assert not result.stderr, where
    elif result.status == 0:                # a help listing (or a guest poweroff): nothing on stderr
        assert not result.stderr and (result.stdout or expect == "either"), where
    else:
        assert result.status in OTHER_ENDINGS and len(result.lines) == 1, f"undocumented ending: {where}"
        assert expect == "either", f"good input did not reach debug-exit: {where}"


def run_argv(files: Files, *options: str, kernel: str | None = None) -> list[str]:
    """A ``run`` command line; limits first, so that fuzzed ones given later override them."""
    return ["run", files.kernel if kernel is None else kernel, "--timeout", "10", "--max-insns", "1000000", *options]


def qemu_argv(files: Files, *options: str, kernel: str | None = None) -> list[str]:
    return ["qemu", "-kernel", files.kernel if kernel is None else kernel, *options]


# -- strategies: (option values, expectation) ----------------------------------------------------
def _tagged(expect: str, strategy):
    return strategy.map(lambda value: (value, expect))


def _worst(*expects: str) -> str:
    """The expectation of several values together: any bad one makes it bad, else any unknown one
    unknown; a help request ("help": it prints and exits while the options are read) makes it unknown."""
    if "help" in expects:
        return "either"
    return "bad" if "bad" in expects else "either" if "either" in expects else "good"


#: Text argv can hold (no NUL), without and with the lone surrogates that stand for undecodable bytes.
unicode_chars = st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\0")
garbage_text = st.one_of(st.text(unicode_chars, max_size=12),
                         st.sampled_from(["a\nb", "\n", "x\r\n", "\x1b[2J", "\u2028", "\t"]))
argv_text = st.text(st.one_of(unicode_chars, st.sampled_from("\udc80\udcff\udce9")), max_size=20)

SIZE_UNITS = ("", "K", "M", "G", "k", "m", "g")
SIZE_SUFFIXES = ("", "B", "iB", "b", "ib")
MIN_MEMORY, MAX_MEMORY = 2 << 20, 3 << 30
KERNEL_END = 0x401000           # the test kernel's page must be in RAM


def _size_expect(number: int, unit: str, suffix: str) -> str:
    size = number * {"": 1 << 20, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[unit.lower()]
    if unit == "" and suffix:
        return "either"         # "64B": bytes or MiB? not predicted
    if not (MIN_MEMORY <= size <= MAX_MEMORY and size % 4096 == 0):
        return "bad"
    return "good" if size >= KERNEL_END else "bad"     # a machine, but the kernel is outside its RAM


memory_sizes = st.one_of(
    st.builds(lambda n, u, s: (f"{n}{u}{s}", _size_expect(n, u, s)),
              st.one_of(st.integers(0, 4096), st.integers(0, 1 << 70)), st.sampled_from(SIZE_UNITS),
              st.sampled_from(SIZE_SUFFIXES)),
    _tagged("good", st.sampled_from(["128M", "64MiB", "1G", "8192K", "3G", " 256 M "])),
    _tagged("bad", st.sampled_from(["", "M", "-5M", "1.5G", "12Q", "1T", "0x10M", "1e3M", "3073M", "1G1",
                                    "\u0663M", "\uff11\uff12\uff18M", "128M\x00"])),
    _tagged("either", garbage_text),
)

smp_counts = st.one_of(
    st.builds(lambda n: (str(n), "good" if n == 1 else "either" if 1 < n < ABSURD_SMP else "bad"),
              st.one_of(st.integers(-5, 40), st.integers(-5, 1 << 70))),
    _tagged("bad", st.sampled_from(["0", "-1", str(1 << 64), "9" * 40, "", "two", "1.0", "0x1p3"])),
    _tagged("either", garbage_text),
)

FEATURE_NAMES = sorted(FEATURES)
PMU_CPUID = ("pdcm", "perfctr_core", "perfmon_v2")     # --cpuid switches the PMU may refuse


def _cpuid_item(kind: str, name: str, sign: str, number: int):
    if kind == "feature":
        spelled = name.replace("_", "-") if number & 1 else name
        return f"{sign}{spelled}", "either" if name in PMU_CPUID else "good"
    field = name
    limit = {"family": 0x10E, "model": 0xFF, "stepping": 0xF}[field]
    return f"{field}={number:#x}" if number >= 0 else f"{field}={number}", "good" if 0 <= number <= limit else "bad"


cpuid_items = st.one_of(
    st.builds(_cpuid_item, st.just("feature"), st.sampled_from(FEATURE_NAMES), st.sampled_from("+-"),
              st.integers(0, 1)),
    st.builds(_cpuid_item, st.just("signature"), st.sampled_from(("family", "model", "stepping")), st.just(""),
              st.one_of(st.integers(0, 0x110), st.integers(-2, 1 << 40))),
    _tagged("bad", st.sampled_from(["+warp-drive", "-", "+", "family", "family=", "model=six", "=5", "x2apic",
                                    "stepping=0x", "+x2apic=on"])),
    _tagged("either", garbage_text),
)
cpuid_specs = st.lists(cpuid_items, min_size=1, max_size=4).map(
    lambda items: (",".join(text for text, _ in items), _worst(*(e for _, e in items))))

PMU_FIELDS = {name: str(PmuConfig.__dataclass_fields__[name].type) for name in PmuConfig.__dataclass_fields__
              if name != "vendor"}
pmu_items = st.one_of(
    st.builds(lambda key, value: (f"{key}={value}", "either"), st.sampled_from(sorted(PMU_FIELDS)),
              st.one_of(st.integers(-2, 70).map(str), st.sampled_from(["on", "off", "seed", "upstream", "0x30",
                                                                       str(1 << 70), str(-(1 << 70)), ""]))),
    _tagged("good", st.sampled_from(["rdpmc_fast=seed", "global_ctrl_reset=seed", "guest_clock_offset_ns=-5",
                                     "guest_clock_offset_ns=0x7fffffffffffffff", "vmware_backdoor=off"])),
    _tagged("bad", st.sampled_from(["bogus=1", "version", "version=x", "tsx=maybe", "vendor=amd", "=1",
                                    "gp_counters=99", "guest_clock_offset_ns=" + str(1 << 64)])),
    _tagged("either", garbage_text),
)
pmu_specs = st.lists(pmu_items, min_size=1, max_size=3).map(
    lambda items: (",".join(text for text, _ in items), _worst(*(e for _, e in items))))

DEVICES = device_classes()
PROP_VALUES = st.one_of(st.integers(-1, 0x10001).map(hex), st.integers(0, 1 << 70).map(str),
                        st.sampled_from(["on", "off", "", "0x", "1e3", "-0", "help"]), garbage_text)

KNOWN_GOOD_DEVICES = ("pc-testdev", "pmu-vmm-test-hooks", "isa-debug-exit,iobase=0xf4,iosize=0x4",
                      "isa-serial,iobase=0x2f8,irq=3", "ioapic,address=0xfec00000")


@st.composite
def device_specs(draw):
    """(spec, expectation): a known device with known or unknown properties, or garbage."""
    kind = draw(st.sampled_from(["known", "known", "good", "unknown", "garbage", "help"]))
    if kind == "good":
        return draw(st.sampled_from(KNOWN_GOOD_DEVICES)), "good"
    if kind == "unknown":
        return draw(st.sampled_from(["no-such-device", "virtio-net-pci", "isa-serial2", ",iobase=1"])), "bad"
    if kind == "garbage":
        return draw(garbage_text), "either"
    name = draw(st.sampled_from(sorted(DEVICES)))
    if kind == "help":
        return f"{name},{draw(st.sampled_from(['help', '?']))}", "help"
    props = DEVICES[name].props
    items, expect = [], "either"
    for _ in range(draw(st.integers(0, 3))):
        if props and draw(st.booleans()):
            items.append(f"{draw(st.sampled_from(props)).name}={draw(PROP_VALUES)}")
        else:
            items.append(draw(st.sampled_from(["bogus=1", "iobase", "=1", "x=y"])))
            expect = "bad"
    return ",".join([name, *items]), expect


append_texts = st.one_of(
    _tagged("good", st.text(unicode_chars, max_size=40)),
    _tagged("good", st.sampled_from(["console=ttyS0 pmu_vmm.run=\"uname -a; /bin/hello\"", "-x", "--", "'\"'",
                                     "a\\\"b", "x" * 3000, "\u00e9\u4e2d\U0001f600", "\t\n\r"])),
    _tagged("bad", st.sampled_from(["\udcff", "abc\udc80def", "\ud800"])),
    _tagged("either", argv_text),
)
timeouts = st.one_of(
    st.builds(lambda x: (repr(x), "good" if x == 0 or x >= 1 else "either"),
              st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False)),
    _tagged("good", st.sampled_from(["0", "5", "1e3", "0.0", "+3", "1e300"])),
    _tagged("bad", st.sampled_from(["-1", "-1e-9", "inf", "-inf", "nan", "1e400", "", "five", "1s", "0x10"])),
    _tagged("either", garbage_text),
)
max_insns = st.one_of(
    st.builds(lambda n, base: ((hex if base == 16 else str)(n), "good" if n == 0 or n >= 1_000_000 else "either"),
              st.one_of(st.integers(0, (1 << 64) - 1), st.integers(0, 100)), st.sampled_from([10, 16])),
    _tagged("bad", st.sampled_from(["-1", str(1 << 64), hex(1 << 64), "1.5", "many", "", "1e6", "0b2"])),
    _tagged("either", garbage_text),
)


# -- pmu-vmm run ------------------------------------------------------------------------------
RUN_OPTIONS = {
    "--memory": memory_sizes, "-m": memory_sizes, "--smp": smp_counts, "--cpuid": cpuid_specs, "--pmu": pmu_specs,
    "--device": device_specs(), "--append": append_texts, "--timeout": timeouts, "--max-insns": max_insns,
    "--cpu": st.one_of(_tagged("good", st.sampled_from(sorted(CPU_MODELS))),
                       _tagged("bad", st.sampled_from(["sparc", "Intel", "", "skylake", "EPYC-Rome"])),
                       _tagged("either", garbage_text)),
    "--trace": st.one_of(_tagged("bad", st.sampled_from(["everything", "", "exit"])), _tagged("either", garbage_text)),
    "--report-format": st.one_of(_tagged("bad", st.sampled_from(["xml", "", "JSON"])),
                                 _tagged("either", garbage_text)),
}


@st.composite
def run_options(draw):
    """A few options of ``run`` with fuzzed values: (argv options, expectation)."""
    argv, expects = [], []
    for name in draw(st.lists(st.sampled_from(sorted(RUN_OPTIONS)), min_size=1, max_size=3, unique=True)):
        value, expect = draw(RUN_OPTIONS[name])
        argv += [name, value]
        expects.append(expect)
    return argv, _worst(*expects)


@FUZZ
@given(run_options())
def test_run_option_values(files, options):
    argv, expect = options
    check(invoke(run_argv(files, *argv)), qemu=False, expect=expect)


@pytest.mark.parametrize("option", ["--serial", "--report-file", "--junit", "--json", "--initrd", "kernel"])
def test_run_file_arguments(files, option):
    """Every file a command line names: good ones run, missing/directory/empty/garbage/truncated ones
    are one line and status 2."""
    if option == "kernel":
        good, bad = [files.kernel, "hello64"], files.bad_kernels
    elif option == "--initrd":
        good, bad = [files.initrd, os.path.join(os.path.dirname(files.kernel), "empty")], files.bad_initrds
    else:
        good, bad = [os.path.join(files.out_dir, option.strip("-")), "/dev/null"], files.bad_outputs
    for path in good:
        argv = run_argv(files, kernel=path) if option == "kernel" else run_argv(files, option, path)
        result = invoke(argv)
        if path == "hello64":
            assert result.status == 0 and not result.stderr, result
        else:
            check(result, qemu=False, expect="good")
    for path in bad:
        argv = run_argv(files, kernel=path) if option == "kernel" else run_argv(files, option, path)
        check(invoke(argv), qemu=False, expect="bad")


@pytest.mark.parametrize("n", [-1, 0, 1, 2, 4, 8, 9, 64, ABSURD_SMP, 1 << 31, 1 << 64])
def test_smp_counts_in_both_front_ends(files, n):
    """N < 1 and absurd N are refused; 1 runs; others are refused with one line or run (SMP is coming)."""
    expect = "good" if n == 1 else "either" if 1 < n < ABSURD_SMP else "bad"
    check(invoke(run_argv(files, "--smp", str(n))), qemu=False, expect=expect)
    check(invoke(qemu_argv(files, "-smp", str(n))), qemu=True, expect=expect)
    check(invoke(qemu_argv(files, "-smp", f"cpus={n},sockets=1")), qemu=True, expect=expect)


# -- the QEMU front end ---------------------------------------------------------------------------
def _qemu_memory(value_expect, form):
    value, expect = value_expect
    return (f"size={value}" if form else value), expect


machine_types = st.one_of(
    _tagged("good", st.sampled_from(["pc", "q35", "pc-i440fx-7.2", "pc-q35-2.0", "type=pc", "pc,accel=kvm:tcg",
                                     "q35,kernel_irqchip=split", "accel=tcg", "pc,kernel-irqchip=on"])),
    _tagged("bad", st.sampled_from(["microvm", "isapc", "pc,vmport=off", "pc,accel=hvf", "", "pc,accel=",
                                    "type=", "pc,=x"])),
    _tagged("either", garbage_text),
)
accelerators = st.one_of(
    _tagged("good", st.sampled_from(["kvm", "tcg", "tcg,thread=single", "kvm,thread=multi"])),
    _tagged("bad", st.sampled_from(["hvf", "", "kvm:tcg", "tcg,tb-size=1", "whpx"])),
    _tagged("either", garbage_text),
)
serials = st.one_of(
    _tagged("good", st.sampled_from(["stdio", "mon:stdio", "null", "none", "file:/dev/null"])),
    _tagged("bad", st.sampled_from(["pty", "tcp::4444", "file:", "file:/no/such/dir/x", "", "vc", "unix:/tmp/x"])),
    _tagged("either", garbage_text),
)
CPU_ITEMS = st.one_of(
    st.builds(lambda sign, name: (f"{sign}{name.replace('_', '-')}", "either"), st.sampled_from("+-"),
              st.sampled_from(FEATURE_NAMES)),
    st.builds(lambda name, on: (f"{name.replace('_', '-')}={on}", "either"), st.sampled_from(FEATURE_NAMES),
              st.sampled_from(["on", "off", "yes", "maybe", ""])),
    _tagged("good", st.sampled_from(["vendor=GenuineIntel", "migratable=no", "pmu=on", "family=6", "model=0x55",
                                     "stepping=4", "tsc-deadline=on", "+ibpb"])),
    _tagged("bad", st.sampled_from(["+vmx", "vendor=CyrixInstead", "family=six", "model=256", "pmu=maybe",
                                    "migratable", "warp-drive=on", "-", "+"])),
    _tagged("either", garbage_text),
)


@st.composite
def cpu_specs(draw):
    model, expect = draw(st.one_of(
        _tagged("good", st.sampled_from(["max", "host", "base", "qemu64", "kvm64"])),
        _tagged("either", st.sampled_from([m.qemu_name for m in CPU_MODELS.values() if m.qemu_name] or ["max"])),
        _tagged("bad", st.sampled_from(["Skylake-Client", "", "pentium", "MAX"])),
        _tagged("either", garbage_text)))
    items = draw(st.lists(CPU_ITEMS, max_size=3))
    return ",".join([model, *(text for text, _ in items)]), _worst(expect, *(e for _, e in items))


QEMU_OPTIONS = {
    "-m": st.builds(_qemu_memory, memory_sizes, st.booleans()),
    "-smp": smp_counts, "-cpu": cpu_specs(), "-device": device_specs(), "-append": append_texts,
    "-serial": serials, "-machine": machine_types, "-M": machine_types, "-accel": accelerators,
    "-display": st.one_of(_tagged("good", st.just("none")), _tagged("bad", st.sampled_from(["gtk", "sdl", ""]))),
    "-name": _tagged("good", garbage_text.filter(lambda s: not s.startswith("-"))),
}
QEMU_FLAGS = ("-enable-kvm", "-no-reboot", "-no-shutdown", "-nodefaults", "-no-user-config", "-nographic")
# -S alone is refused (no monitor could start the guest); -s serves gdb and is not fuzzed here (a
# fixed port): tests/test_gdbstub.py covers it.
QEMU_REFUSED = ("-S", "-drive", "-hda", "-bios", "-netdev", "-snapshot", "-d", "-foo", "--bar", "-",
                "disk.img", "-kernel")      # the last: a second -kernel with no value


@st.composite
def qemu_options(draw):
    argv, expects = [], []
    for name in draw(st.lists(st.sampled_from(sorted(QEMU_OPTIONS)), min_size=1, max_size=3, unique=True)):
        value, expect = draw(QEMU_OPTIONS[name])
        argv += [name.replace("-", "--", 1) if draw(st.booleans()) and name != "-M" else name, value]
        expects.append(expect)
    argv += draw(st.lists(st.sampled_from(QEMU_FLAGS), max_size=2))
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(QEMU_REFUSED)))
        expects.append("bad")
    return argv, _worst(*expects)


@FUZZ
@given(qemu_options())
def test_qemu_option_values(files, options):
    argv, expect = options
    check(invoke(qemu_argv(files, *argv)), qemu=True, expect=expect)


def test_qemu_file_arguments(files):
    check(invoke(qemu_argv(files, "-initrd", files.initrd)), qemu=True, expect="good")
    check(invoke(qemu_argv(files, "-serial", f"file:{os.path.join(files.out_dir, 'qemu-serial')}")),
          qemu=True, expect="good")
    for path in files.bad_kernels:
        check(invoke(qemu_argv(files, kernel=path)), qemu=True, expect="bad")
    for path in files.bad_initrds:
        check(invoke(qemu_argv(files, "-initrd", path)), qemu=True, expect="bad")
    for path in files.bad_outputs:
        check(invoke(qemu_argv(files, "-serial", f"file:{path}")), qemu=True, expect="bad")


@FUZZ
@given(st.lists(st.one_of(argv_text, st.sampled_from(["-kernel", "-m", "-cpu", "-device", "--", "-", "-help",
                                                        "-version", "-h"])), max_size=6))
def test_qemu_arbitrary_argv(files, argv):
    """Any argv at all: the QEMU front end never crashes; without -kernel nothing runs."""
    result = invoke(["qemu", *argv])
    check(result, qemu=True, expect="either")
    assert result.status in (0, QEMU_BAD, *OTHER_ENDINGS), result


@FUZZ
@given(st.lists(st.one_of(argv_text, st.sampled_from(["run", "list", "--memory", "--cpuid", "--append", "--", "-m",
                                                        "--device", "--help", "--version"])), max_size=6))
def test_run_arbitrary_argv(files, argv):
    """Any argv at all after ``pmu-vmm``: one line and status 2, a listing, or a run."""
    check(invoke(argv), qemu=False, expect="either")


# -- the real exit path ----------------------------------------------------------------------------
def _subprocess(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "vmm", *args], cwd=ROOT, env=env, capture_output=True,
                          timeout=60)


@pytest.mark.parametrize("args, status", [
    (["run", "{kernel}"], RUN_OK),
    (["run", "{kernel}", "--append", b"\xff\xfe".decode("utf-8", "surrogateescape")], RUN_BAD),
    (["run", "{kernel}", "--pmu", "guest_clock_offset_ns=" + str(1 << 70)], RUN_BAD),
    (["run", "{kernel}", "--device", "ioapic,address=0x1000"], RUN_BAD),
    (["run", "{kernel}", "--memory", "\u0663M"], RUN_BAD),
    (["qemu", "-kernel", "{kernel}", "-cpu", "max,-pdcm,+x2apic", "-m", "size=64M"], QEMU_OK),
    (["qemu", "-kernel", "{kernel}", "-device", "ioapic,address=0x1000"], QEMU_BAD),
    (["qemu", "-kernel", "{truncated}"], QEMU_BAD),
])
def test_real_exit_path(files, args, status):
    truncated = os.path.join(os.path.dirname(files.kernel), "truncated.elf")
    argv = [os.fsencode(a.format(kernel=files.kernel, truncated=truncated)) for a in args]
    proc = _subprocess(*argv)
    lines = proc.stderr.decode(errors="replace").splitlines()
    assert proc.returncode == status, (args, proc.stderr)
    assert b"Traceback" not in proc.stderr
    assert len(lines) == (0 if status in (RUN_OK, QEMU_OK) else 1), (args, lines)
    if status in (RUN_OK, QEMU_OK):
        assert proc.stdout == b"k\n"


# -- what these fuzzers found, case by case ------------------------------------------------------
def test_error_lines_show_control_characters_as_escapes(files):
    """An option value with a newline (or an escape sequence) echoed by an error stays one line."""
    cases = [(run_argv(files, "--device", "a\nb"), False), (run_argv(files, "--cpu", "x\ny"), False),
             (qemu_argv(files, "-machine", "a\nb"), True), (qemu_argv(files, "-cpu", "max,+a\x1b[2Jb"), True),
             (qemu_argv(files, kernel="/no/such\ndir/k"), True), (run_argv(files, kernel="/no/such\u2028k"), False)]
    for argv, qemu in cases:
        result = invoke(argv)
        check(result, qemu=qemu, expect="bad")
        assert "\\n" in result.stderr or "\\x1b" in result.stderr or "\\u2028" in result.stderr, result


def test_huge_guest_clock_offset_is_bad_input(files):
    for value in (1 << 63, -(1 << 63) - 1, 1 << 70):
        with pytest.raises(ValueError, match="guest_clock_offset_ns"):
            PmuConfig(guest_clock_offset_ns=value)
        check(invoke(run_argv(files, "--pmu", f"guest_clock_offset_ns={value}")), qemu=False, expect="bad")
    check(invoke(run_argv(files, "--pmu", f"guest_clock_offset_ns={-(1 << 63)}")), qemu=False, expect="good")


def test_ioapic_inside_guest_ram_is_bad_input(files):
    for address in ("0x1000", "0x7fff000"):
        check(invoke(run_argv(files, "--device", f"ioapic,address={address}")), qemu=False, expect="bad")
        check(invoke(qemu_argv(files, "-device", f"ioapic,address={address}")), qemu=True, expect="bad")
    check(invoke(run_argv(files, "-m", "64M", "--device", "ioapic,address=0x4000000")), qemu=False, expect="good")


def test_timeouts_of_any_finite_length_run(files):
    for seconds in ("18446744073710", "1e300"):
        check(invoke(run_argv(files, "--timeout", seconds)), qemu=False, expect="good")


def test_sizes_take_ascii_digits_only(files):
    for text in ("\uff11\uff12\uff18M", "\u0661\u0662\u0668", "128\u2009M"):
        check(invoke(run_argv(files, "--memory", text)), qemu=False, expect="bad")
        check(invoke(qemu_argv(files, "-m", text)), qemu=True, expect="bad")
