# SPDX-License-Identifier: GPL-2.0-or-later
"""perf inside the Debian guest: the kernel's perf driver on our PMU, exact counts, exact samples.

Each module-scoped fixture boots the guest once with the perf initramfs (firmware/linux/assets.py)
and runs a script of perf commands (firmware/linux/perf_output.py cuts its output into sections);
the tests read the sections.  Three boots in all: the Intel model, the AMD model with
PerfCtrExtCore and PerfMonV2, and the legacy AMD model (four counters, no global MSRs).  The
kernel runs with ``watchdog_thresh=1``, so the NMI watchdog's cycles counter overflows (an NMI
through LVTPC) about every 10**9 unhalted cycles, during the boot already.  With ``panic=-1`` a
kernel panic resets the machine, which ends the run at once instead of at the timeout.

Expected values come from the workload's exact counts (firmware/linux/programs.py) and, for
samples, from running the same workload executable in Unicorn here and recording the address of
every instruction it retires.  Conventions of our PMU that the expectations rely on:

* SYSCALL retires in user mode: ``instructions:u`` and ``branches:u`` include each SYSCALL once
  (it is a far branch); the kernel's SYSRET counts in kernel mode.
* One instruction per cycle: ``cycles:u`` and ``ref-cycles:u`` equal ``instructions:u``; CMASK 1
  on instructions counts every cycle, CMASK 2 none, INV inverts that, and EDGE counts the cycles
  where the condition becomes true (once for instructions, once per branch for branches, since
  the workload never retires two branches in a row).
* A PMI is taken right after the overflowing instruction (zero skid), so with ``-c N`` the k-th
  sample's address is that of the instruction following the (k*N)-th.

In CI the assets must be there (tests/linux_guest.py).
"""

from __future__ import annotations

import io
import re
import shutil
import struct
import subprocess
from pathlib import Path, PurePosixPath

import pytest
from capstone import CS_ARCH_X86, CS_MODE_64, Cs
from capstone import x86_const as cx
from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn import x86_const as uxc

from firmware.linux import programs
from firmware.linux.initramfs import Libraries, build_initramfs, exit_status, initramfs_entries, run_parameter
from firmware.linux.libraries import LibraryError, interpreter, needed_libraries, resolve
from firmware.linux.perf_output import StatRow, report_rows, sectioned_command, sections, stat_rows
from pmu.config import PmuConfig
from vmm.machine import Machine, MachineConfig

TIMEOUT = 600
STAT = "$S"  # perf stat with ';'-separated output, set up by the script's first section
# perf throttles an event that overflows more than perf_event_max_sample_rate / HZ times in a tick (400
# by default) and lowers that rate when its NMI handler seems slow: both would cost exact samples.
# (The rate can only be written while that adjustment is on.)  perf record skips what costs seconds of
# emulation and the tests do not need: build ids (-B) and BPF program events.
SETUP = ("cd /tmp; S='perf stat -x; -e'; R='perf record -q -B --no-bpf-event'; I=instructions:u; "
         "K=/proc/sys/kernel/perf_; echo 1000000 > ${K}event_max_sample_rate && echo 0 > ${K}cpu_time_max_percent")
EXACT_N = 100000
SMALL_N = 1000
MUX_N = 10**7
MUX_EVENTS = 12  # instructions:u twelve times: more than the counters that can count it
RECORD_N, RECORD_PERIOD = 2000, 17
COND_PERIOD = 97
RDPMC_N1, RDPMC_N2 = 1000, 2000
PMU_CONFIGS = {
    "intel": PmuConfig(vendor="intel", vmware_backdoor=True),
    "amd-v2": PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True, vmware_backdoor=True),
    "amd": PmuConfig(vendor="amd", vmware_backdoor=True),
}
RAW_EVENTS = ("cpu/event=0xc0,cmask=1/u", "cpu/event=0xc0,cmask=2/u", "cpu/event=0xc0,cmask=2,inv/u",
              "cpu/event=0xc0,cmask=1,inv/u", "cpu/event=0xc4,edge/u", "cpu/event=0xc0,edge,cmask=1/u",
              "cpu/event=0xc0,umask=1/u")
COND_EVENT = "cpu/event=0xc4,umask=1/u"  # BR_INST_RETIRED.CONDITIONAL
SECTIONS = {
    "setup": SETUP,
    "dmesg": "dmesg | grep -E 'Performance Events|[.]{3} |NMI watchdog|unchecked MSR|LOCKUP|lockup' | "
             "grep -v pmu_vmm; cat /proc/sys/kernel/nmi_watchdog; grep NMI: /proc/interrupts",
    "list": "perf list hw",
    "exact": f"for i in 1 2; do {STAT} $I,branches:u workload {EXACT_N}; done",
    # u, k and both; then (Intel) two groups: seven counters, no multiplexing.
    "rings": f"{STAT} $I,instructions:k,instructions workload {SMALL_N}",
    "rings_groups": f"{STAT} $I,instructions:k,instructions,{{$I,branches:u}},{{cycles:u,ref-cycles:u}} "
                    f"workload {SMALL_N}",
    # The raw events and the conditional-branch one fill the eight GP counters.
    "raw": f"{STAT} {','.join(RAW_EVENTS)},{COND_EVENT} workload {SMALL_N}",
    "mux": f"{STAT} {','.join(['$I'] * MUX_EVENTS)} workload {MUX_N}",
    "record": f"for i in 1 2; do $R -e $I -c {RECORD_PERIOD} -o r$i workload {RECORD_N}; done; "
              "perf script -i r1 -F period,ip,sym",
    "record_again": "perf script -i r2 -F period,ip,sym",
    "report": "perf report -i r1 --stdio -q --sort sym | cat",
    "rdpmc": f"rdpmc {RDPMC_N1} {RDPMC_N2} instructions branches",
    "cond": f"$R -e {COND_EVENT} -c {COND_PERIOD} -o c workload {RECORD_N}; perf script -i c -F ip; "
            f"rdpmc {RDPMC_N1} {RDPMC_N2} r1c4",
    # Last: (grep -c exits 1 when it counts 0, which is what we want to see.)
    "end": "grep -E 'NMI|PMI' /proc/interrupts; dmesg | grep -v pmu_vmm | grep -ciE 'lockup|unchecked MSR' || true",
}
SCRIPTS = {
    "intel": ("setup", "dmesg", "list", "exact", "rings_groups", "raw", "mux", "record", "record_again", "report",
              "rdpmc", "cond", "end"),
    "amd-v2": ("setup", "dmesg", "exact", "rings", "record", "record_again", "report", "rdpmc", "end"),
    "amd": ("setup", "dmesg", "exact", "rdpmc", "end"),
}


def boot(assets, model: str) -> dict[str, str]:
    config = PMU_CONFIGS[model]
    command = sectioned_command({name: SECTIONS[name] for name in SCRIPTS[model]})
    machine = Machine(MachineConfig(memory=256 << 20, cpu=config.vendor, pmu=config, serial=io.BytesIO(),
                                    timeout=TIMEOUT, initrd=assets.perf_initramfs.read_bytes(),
                                    cmdline=f"console=ttyS0 quiet panic=-1 watchdog_thresh=1 {run_parameter(command)}"))
    machine.load(str(assets.kernel))
    result = machine.run()
    console = result.serial.decode(errors="replace")
    assert result.reason == "poweroff" and exit_status(console) == 0, (result, console[-3000:])
    return sections(console)


@pytest.fixture(scope="module")
def intel(linux_assets):
    return boot(linux_assets, "intel")


@pytest.fixture(scope="module")
def amd_v2(linux_assets):
    return boot(linux_assets, "amd-v2")


@pytest.fixture(scope="module")
def amd(linux_assets):
    return boot(linux_assets, "amd")


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    """The workload executable, built exactly as for the initramfs (same bytes)."""
    return programs.build_programs(tmp_path_factory.mktemp("programs"))["workload"]


# --- the workload, run here ---------------------------------------------------------------------------------


class Trace:
    """Every user-mode instruction ``workload N`` retires, in order, and its symbols."""

    def __init__(self, executable, iterations: int):
        with open(executable, "rb") as file:
            elf = ELFFile(file)
            self.segments = [(s["p_vaddr"], s.data()) for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            self.symbols = sorted((sym["st_value"], sym["st_value"] + sym["st_size"], sym.name)
                                  for sym in elf.get_section_by_name(".symtab").iter_symbols()
                                  if sym["st_info"]["type"] == "STT_FUNC")
            entry = elf["e_entry"]
        self.addresses: list[int] = []
        self.conditional: list[int] = []  # indices (into addresses) of conditional branches
        self.syscalls: list[int] = []
        emulator = Uc(UC_ARCH_X86, UC_MODE_64)
        for address, data in self.segments:
            start = address & ~0xFFF
            emulator.mem_map(start, (address + len(data) - start + 0xFFF) & ~0xFFF)
            emulator.mem_write(address, data)
        stack = 0x7FFF0000
        emulator.mem_map(stack, 0x10000)
        strings = stack + 0xFF00
        emulator.mem_write(strings, b"workload\0" + str(iterations).encode() + b"\0")
        emulator.mem_write(stack + 0xFE00, struct.pack("<6Q", 2, strings, strings + 9, 0, 0, 0))
        emulator.reg_write(uxc.UC_X86_REG_RSP, stack + 0xFE00)
        disassembler = Cs(CS_ARCH_X86, CS_MODE_64)
        disassembler.detail = True
        conditional: dict[int, bool] = {}

        def on_code(uc, address, size, _):
            if address not in conditional:
                insn = next(disassembler.disasm(bytes(uc.mem_read(address, size)), address))
                conditional[address] = insn.group(cx.X86_GRP_JUMP) and insn.id != cx.X86_INS_JMP
            if conditional[address]:
                self.conditional.append(len(self.addresses))
            self.addresses.append(address)

        def on_syscall(uc, _):
            self.syscalls.append(len(self.addresses) - 1)
            if uc.reg_read(uxc.UC_X86_REG_RAX) == 60:
                uc.emu_stop()
            else:
                uc.reg_write(uxc.UC_X86_REG_RAX, uc.reg_read(uxc.UC_X86_REG_RDX))  # write() wrote it all

        emulator.hook_add(UC_HOOK_CODE, on_code)
        emulator.hook_add(UC_HOOK_INSN, on_syscall, None, 1, 0, uxc.UC_X86_INS_SYSCALL)
        emulator.emu_start(entry, 0)

    def symbol(self, address: int) -> str:
        return next(name for start, end, name in self.symbols if start <= address < end)

    def samples(self, period: int, retired: list[int] | None = None) -> list[tuple[int, str]]:
        """(address, symbol) of each sample of a counter of period ``period`` over the instructions whose
        indices are ``retired`` (default: all): the instruction after every period-th of them."""
        retired = list(range(len(self.addresses))) if retired is None else retired
        overflows = retired[period - 1::period]
        # A sample taken on a SYSCALL would land in the kernel: the parameters must avoid it.
        assert not set(overflows) & set(self.syscalls), "a sample falls on a SYSCALL: change the period"
        return [(self.addresses[i + 1], self.symbol(self.addresses[i + 1])) for i in overflows]


@pytest.fixture(scope="module")
def trace(workload):
    return Trace(workload, RECORD_N)


def user_counts(iterations: int) -> tuple[int, int]:
    """``instructions:u`` and ``branches:u`` of the whole workload process: SYSCALL counts in user mode."""
    _, whole = programs.workload_counts(iterations)
    return whole.instructions + whole.syscalls, whole.branches + whole.syscalls


def values(rows) -> list[int | None]:
    return [row.value for row in rows]


def perf_script_samples(output: str) -> list[tuple[int, str]]:
    found = re.findall(r"^\s*(\d+)\s+([0-9a-f]+)\s+(\S+)\s*$", output, re.MULTILINE)
    periods = {int(period) for period, _, _ in found}
    assert periods == {RECORD_PERIOD}, periods
    return [(int(ip, 16), symbol) for _, ip, symbol in found]


# --- the trace itself --------------------------------------------------------------------------------------


def test_trace_agrees_with_the_workload_formulas(trace):
    between, whole = programs.workload_counts(RECORD_N)
    assert len(trace.addresses) == whole.instructions + whole.syscalls
    assert len(trace.conditional) == whole.conditional == between.conditional + 4 * len(str(RECORD_N)) + 3
    assert tuple(name for _, _, name in trace.symbols) == programs.WORKLOAD_FUNCTIONS
    assert {trace.symbol(a) for a in trace.addresses} == {"_start", "spin", "finish"}


# --- 1. the driver sees the whole PMU; the NMI watchdog -----------------------------------------------------


def test_intel_driver_reports_what_we_advertise(intel):
    dmesg = intel["dmesg"]
    assert "Performance Events: Skylake events, full-width counters, Intel PMU driver." in dmesg
    for field, value in (("version", "2"), ("bit width", "48"), ("generic registers", "8"),
                         ("value mask", "0000ffffffffffff"), ("fixed-purpose events", "3"),
                         ("event mask", "00000007000000ff")):
        assert re.search(rf"\.\.\. {field}:\s+{value}$", dmesg, re.MULTILINE), field
    assert "NMI watchdog: Enabled. Permanently consumes one hw-PMU counter." in dmesg
    assert "unchecked MSR" not in dmesg


@pytest.mark.parametrize("model, driver, counters, version", [
    ("amd_v2", "Fam17h+ core perfctr, AMD PMU driver.", 6, 2),
    ("amd", "AMD PMU driver.", 4, 0),  # Linux prints version 0 for AMD PMUs without PerfMonV2
])
def test_amd_driver_reports_what_we_advertise(request, model, driver, counters, version):
    dmesg = request.getfixturevalue(model)["dmesg"]
    assert f"Performance Events: {driver}" in dmesg
    assert re.search(rf"\.\.\. generic registers:\s+{counters}$", dmesg, re.MULTILINE)
    assert re.search(rf"\.\.\. version:\s+{version}$", dmesg, re.MULTILINE)
    assert re.search(r"\.\.\. fixed-purpose events:\s+0$", dmesg, re.MULTILINE)
    assert "NMI watchdog: Enabled" in dmesg
    assert "unchecked MSR" not in dmesg  # e.g. PerfMonV2's STATUS_CLR write at CPU reset


@pytest.mark.parametrize("model", ["intel", "amd_v2", "amd"])
def test_nmi_watchdog_fires_without_lockup_reports(request, model):
    output = request.getfixturevalue(model)
    before = re.search(r"^\s*1\nNMI:\s+(\d+)", output["dmesg"], re.MULTILINE)
    assert before and int(before.group(1)) >= 1, output["dmesg"]  # enabled, and fired during the boot
    counts = re.search(r"^NMI:\s+(\d+).*\nPMI:\s+(\d+).*\n(\d+)$", output["end"], re.MULTILINE)
    nmis, pmis, reports = (int(n) for n in counts.groups())
    assert nmis == pmis >= int(before.group(1))  # every NMI was a PMI
    assert reports == 0  # no lockup report, no MSR access error


def test_perf_list_shows_the_hardware_events(intel):
    listed = intel["list"]
    for event in ("branch-instructions OR branches", "branch-misses", "bus-cycles", "cache-misses",
                  "cache-references", "cpu-cycles OR cycles", "instructions", "ref-cycles"):
        assert re.search(rf"^\s+{re.escape(event)}\s+\[Hardware event\]$", listed, re.MULTILINE), event


# --- 2. perf stat ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["intel", "amd_v2", "amd"])
def test_perf_stat_user_counts_are_exact_on_every_run(request, model):
    rows = stat_rows(request.getfixturevalue(model)["exact"])
    instructions, branches = user_counts(EXACT_N)
    assert values(rows) == [instructions, branches] * 2
    assert [row.running_percent for row in rows] == [100.0] * 4


@pytest.mark.parametrize("model", ["intel", "amd_v2"])
def test_user_plus_kernel_is_everything(request, model):
    """With global enable MSRs all counters start and stop at the same WRMSR, so u + k == all, exactly."""
    output = request.getfixturevalue(model)
    user, kernel, both = values(stat_rows(output.get("rings") or output["rings_groups"]))[:3]
    assert user == user_counts(SMALL_N)[0]
    assert kernel > 10 * user  # exec, page faults, write() and exit
    assert user + kernel == both


def test_groups_count_together(intel):
    instructions, branches = user_counts(SMALL_N)
    assert values(stat_rows(intel["rings_groups"]))[3:] == [instructions, branches, instructions, instructions]


def test_raw_events_with_cmask_inv_edge_and_umask(intel):
    instructions, branches = user_counts(SMALL_N)
    rows = stat_rows(intel["raw"])[:len(RAW_EVENTS)]
    assert [row.event for row in rows] == list(RAW_EVENTS)
    # cmask=1: every cycle retires one; cmask=2: none; inv flips both; edge: once for a run of
    # instructions, once per branch; an umask we do not model counts nothing.
    assert values(rows) == [instructions, 0, instructions, 0, branches, 1, 0]


def test_more_events_than_counters_are_multiplexed_and_scaled(intel):
    rows = stat_rows(intel["mux"])
    exact = user_counts(MUX_N)[0]
    assert len(rows) == MUX_EVENTS
    assert all(row.running_percent is not None and 50 <= row.running_percent < 100 for row in rows), rows
    # perf scales each count by enabled/running time; the loop is uniform, so every estimate is close.
    assert all(abs(row.value - exact) <= exact // 100 for row in rows), (exact, rows)


# --- 3. perf record / report -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["intel", "amd_v2"])
def test_each_sample_is_on_the_instruction_after_the_period_th(request, model, trace):
    output = request.getfixturevalue(model)
    assert output["setup"].strip() == ""  # the sysctls that keep perf from throttling were accepted
    expected = trace.samples(RECORD_PERIOD)
    assert len(expected) == len(trace.addresses) // RECORD_PERIOD
    assert perf_script_samples(output["record"]) == expected
    assert perf_script_samples(output["record_again"]) == expected  # every run


@pytest.mark.parametrize("model", ["intel", "amd_v2"])
def test_report_attributes_samples_to_the_workload_functions(request, model, trace):
    expected = trace.samples(RECORD_PERIOD)
    shares = {symbol: round(100 * sum(s == symbol for _, s in expected) / len(expected), 2)
              for symbol in {s for _, s in expected}}
    assert set(shares) == {"_start", "spin"}  # finish is shorter than the period
    assert report_rows(request.getfixturevalue(model)["report"]) == shares


# --- 4. RDPMC through perf's mmap page ---------------------------------------------------------------------


def rdpmc_lines(output: str) -> dict[tuple[str, int], tuple[int, int, int, int]]:
    found = re.findall(r"^rdpmc: (\S+) (\d+) index=(0x[0-9a-f]+) width=(\d+) rdpmc=(\d+) read=(\d+)$", output,
                       re.MULTILINE)
    return {(event, int(n)): (int(index, 16), int(width), int(by_rdpmc), int(by_read))
            for event, n, index, width, by_rdpmc, by_read in found}


@pytest.mark.parametrize("model, instructions_counter", [("intel", "fixed"), ("amd_v2", "gp"), ("amd", "gp")])
def test_rdpmc_reads_what_read_reads(request, model, instructions_counter):
    output = request.getfixturevalue(model)["rdpmc"]
    assert "rdpmc: without a perf mmap: SIGSEGV" in output  # CR4.PCE clear: #GP at CPL3
    lines = rdpmc_lines(output)
    for event, per_iteration in (("instructions", 5), ("branches", 2)):
        (index, width1, rdpmc1, read1), (_, width2, rdpmc2, read2) = lines[event, RDPMC_N1], lines[event, RDPMC_N2]
        assert (rdpmc1, rdpmc2) == (read1, read2)
        assert rdpmc2 - rdpmc1 == per_iteration * (RDPMC_N2 - RDPMC_N1)
        assert width1 == width2 == 48
        fixed = bool(index & 0x40000000)
        assert fixed == (event == "instructions" and instructions_counter == "fixed"), hex(index)


# --- 5. retired conditional branches (Intel BR_INST_RETIRED.CONDITIONAL) -----------------------------------


def test_conditional_branches_are_counted_and_sampled_exactly(intel, trace):
    output = intel["cond"]
    _, whole = programs.workload_counts(SMALL_N)
    assert values(stat_rows(intel["raw"]))[len(RAW_EVENTS):] == [whole.conditional]
    ips = [int(ip, 16) for ip in re.findall(r"^\s*([0-9a-f]+)\s*$", output, re.MULTILINE)]
    assert ips == [address for address, _ in trace.samples(COND_PERIOD, trace.conditional)]
    lines = rdpmc_lines(output)
    (_, _, rdpmc1, read1), (_, _, rdpmc2, read2) = lines["r1c4", RDPMC_N1], lines["r1c4", RDPMC_N2]
    assert (rdpmc1, rdpmc2) == (read1, read2) and rdpmc2 - rdpmc1 == RDPMC_N2 - RDPMC_N1


# --- the pieces that put perf into the guest and read its output (no guest) ---------------------------------


def compile_elf(tmp_path, name: str, *flags: str) -> Path:
    """A tiny x86-64 ELF file (never run): ``flags`` give its soname, DT_NEEDED entries, interpreter."""
    source = tmp_path / f"{name}.c"
    source.write_text("int symbol(void) { return 0; }\n")
    output = tmp_path / name
    subprocess.run(["gcc", "-nostdlib", "-fPIC", "-Wl,--no-as-needed", "-o", str(output), str(source), *flags],
                   check=True, capture_output=True)
    return output


@pytest.fixture
def library_tree(tmp_path):
    """root/ with liba.so.1 (needs libb.so.1) behind a relative link, and libb.so.1 behind an absolute one."""
    build = tmp_path / "build"
    build.mkdir()
    libb = compile_elf(build, "libb.so.1", "-shared", "-Wl,-soname,libb.so.1")
    liba = compile_elf(build, "liba.so.1", "-shared", "-Wl,-soname,liba.so.1", str(libb))
    program = compile_elf(build, "program", "-Wl,-e,symbol", "-Wl,--dynamic-linker=/lib64/ld-linux-x86-64.so.2",
                          str(liba))
    root = tmp_path / "root"
    multiarch = root / "lib/x86_64-linux-gnu"
    usr_multiarch = root / "usr/lib/x86_64-linux-gnu"
    multiarch.mkdir(parents=True)
    usr_multiarch.mkdir(parents=True)
    shutil.copy(liba, multiarch / "liba.so.1.0")
    (multiarch / "liba.so.1").symlink_to("liba.so.1.0")
    shutil.copy(libb, usr_multiarch / "libb.so.1.2")
    (multiarch / "libb.so.1").symlink_to("/usr/lib/x86_64-linux-gnu/libb.so.1.2")  # absolute: inside root
    return root, program


def test_needed_libraries_follow_dependencies_and_links_inside_the_tree(library_tree):
    root, program = library_tree
    assert needed_libraries(program, root) == {"liba.so.1": root / "lib/x86_64-linux-gnu/liba.so.1.0",
                                               "libb.so.1": root / "usr/lib/x86_64-linux-gnu/libb.so.1.2"}
    assert interpreter(program) == "/lib64/ld-linux-x86-64.so.2"
    assert interpreter(root / "lib/x86_64-linux-gnu/liba.so.1.0") is None


def test_a_missing_library_is_named(library_tree):
    root, program = library_tree
    (root / "usr/lib/x86_64-linux-gnu/libb.so.1.2").unlink()
    with pytest.raises(LibraryError, match=r"liba\.so\.1\.0 needs libb\.so\.1, which is not in lib/x86_64"):
        needed_libraries(program, root)


def test_links_cannot_leave_the_tree_or_loop(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib/up").symlink_to("../../../../etc/hostname")
    (tmp_path / "lib/loop").symlink_to("loop")
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/hostname").write_text("guest")
    assert resolve(PurePosixPath("/lib/up"), tmp_path) == tmp_path / "etc/hostname"  # ".." stops at the root
    assert resolve(PurePosixPath("/lib/loop"), tmp_path) is None


def test_initramfs_with_libraries_links_the_loader():
    libraries = Libraries({"libc.so.6": b"libc", "ld-linux-x86-64.so.2": b"loader"}, "/lib64/ld-linux-x86-64.so.2")
    archive = build_initramfs(b"busybox", {"perf": b"perf"}, libraries, compress=False)
    assert archive.startswith(b"070701")  # not compressed
    entries = {entry.path: entry for entry in initramfs_entries(b"busybox", {"perf": b"perf"}, libraries)}
    assert entries["lib/x86_64-linux-gnu/libc.so.6"].data == b"libc"
    assert entries["lib64/ld-linux-x86-64.so.2"].data == b"/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2"
    assert entries["bin/perf"].data == b"perf"
    with pytest.raises(ValueError, match="not an absolute path to one of the libraries"):
        Libraries({"libc.so.6": b"libc"}, "/lib64/ld-linux-x86-64.so.2").entries()


def test_sections_start_after_the_running_line():
    command = sectioned_command({"one": "echo a", "two": "true"})
    assert command == "echo == one; echo a; echo == two; true"
    console = (f"[    0.0] Kernel command line: pmu_vmm.run=\"{command}\"\r\n== one\r\npmu-vmm: running {command}\r\n"
               "== one\r\na\r\n== two\r\npmu-vmm: exit status 0\r\n")
    assert sections(console) == {"one": "a\n", "two": "pmu-vmm: exit status 0\n"}
    with pytest.raises(ValueError):
        sectioned_command({"not a word": "true"})
    with pytest.raises(ValueError):
        sectioned_command({"quote": 'echo "x"'})


def test_stat_and_report_rows():
    output = ("workload: start\n5075;;cpu/event=0xc0,cmask=1/u;1700;100.00;;\n"
              "<not counted>;;instructions:u;0;0.00;;\n49998030;;instructions:u;36382963;71.00;;\n")
    assert stat_rows(output) == [StatRow(5075, "cpu/event=0xc0,cmask=1/u", 100.0),
                                 StatRow(None, "instructions:u", None), StatRow(49998030, "instructions:u", 71.0)]
    assert report_rows("  \x1b[31m  99.49%\x1b[m  [.] spin\n     0.51%  [.] _start\n\n") == {"spin": 99.49,
                                                                                             "_start": 0.51}
