# SPDX-License-Identifier: GPL-2.0-or-later
"""``--trace`` (vmm/trace.py, vmm/_trace.pyx): the ring, the formatting, symbols, the options of both
front ends, and the exact records the trace_events kernel makes on the C paths.  The same run must
give the same trace byte for byte, and tracing must not change what the guest sees."""

from __future__ import annotations

import io
import re
import subprocess

import pytest

import firmware
from tests.guest import run_cli
from vmm import trace as tr
from vmm._trace import TraceBuffer
from vmm.machine import Machine, MachineConfig

PMU_AND_EVENTS = ("pmu", "msr", "rdpmc", "pmi", "irq", "exc")


# -- the ring ----------------------------------------------------------------------------------
def test_records_leave_in_order_and_a_full_ring_drains_through_its_consumer():
    got: list = []
    buffer = TraceBuffer(3, consumer=got.extend)
    for i in range(7):
        buffer.emit(1, 1, 0x38F, i, time=100 + i, rip=0x400000 + i, vcpu=i % 2)
    assert buffer.count == 1 and buffer.dropped == 0
    assert len(got) == 6
    buffer.flush()
    assert got == [(100 + i, i % 2, 0x400000 + i, 1, 1, 0x38F, i, 0) for i in range(7)]
    assert buffer.count == 0 and buffer.take() == []


def test_a_failing_consumer_loses_records_and_says_how_many():
    def broken(records):
        raise OSError(28, "No space left on device")

    buffer = TraceBuffer(2, consumer=broken)
    for i in range(5):
        buffer.emit(4, 0, 0x80, i, 1)
    # two full rings went to the consumer and were lost; one record waits
    assert buffer.dropped == 4 and buffer.count == 1
    assert isinstance(buffer.error, OSError)
    with pytest.raises(OSError):
        buffer.flush()
    assert buffer.dropped == 5


def test_without_a_consumer_a_full_ring_counts_what_it_cannot_keep():
    buffer = TraceBuffer(2)
    for _ in range(5):
        buffer.emit(6, 0, 0x20)
    assert buffer.count == 2 and buffer.dropped == 3
    with pytest.raises(ValueError):
        TraceBuffer(0)


# -- categories, formatting, symbols -----------------------------------------------------------
def test_categories():
    assert tr.parse_trace("pmu,msr") == ("pmu", "msr")
    assert tr.parse_trace("all") == PMU_AND_EVENTS[:3] + ("pmi", "io", "mmio", "irq", "exc")
    assert tr.parse_trace("exits,exits") == ("exits",)
    with pytest.raises(ValueError, match="unknown trace category 'bogus'"):
        tr.parse_trace("pmu,bogus")
    assert tr.category_mask(["pmu", "exits"]) == 1
    assert tr.category_mask(tr.parse_trace("all")) == 0xFF
    help_text = tr.trace_help()
    for name in (*tr.CATEGORIES, "all"):
        assert re.search(rf"^  {name} ", help_text, re.M), name


@pytest.mark.parametrize("record, text", [
    ((7, 0, 0x10, 0, 0, 2, 0x5300C0, 0), "pmu start GP2 evtsel=0x5300c0 value=0x0"),
    ((7, 0, 0x10, 0, 1, 8, 0xB, 0x42), "pmu stop FIXED0 ctrl=0xb value=0x42"),
    ((7, 0, 0x10, 0, 6, 0, 0x5300C0, 0), "pmu overflow GP0 evtsel=0x5300c0 value=0x0 PMI"),
    ((7, 0, 0x10, 0, 2, 9, 0x2, 0), "pmu overflow FIXED1 ctrl=0x2 value=0x0 no PMI"),
    ((7, 0, 0x10, 1, 1, 0x38F, 3, 0), "msr wrmsr 0x38f IA32_PERF_GLOBAL_CTRL = 0x3"),
    ((7, 0, 0x10, 1, 0, 0x834, 0xE0, 0), "msr rdmsr 0x834 IA32_X2APIC_LVT_PMI -> 0xe0"),
    ((7, 0, 0x10, 1, 3, 0x12345678, 0x42, 0), "msr wrmsr 0x12345678 = 0x42 -> #GP"),
    ((7, 0, 0x10, 1, 2, 0xC0010201, 0, 0), "msr rdmsr 0xc0010201 PERF_CTR0 -> #GP"),
    ((7, 0, 0x10, 2, 0, 0x40000000, 0x1234, 0), "rdpmc ecx=0x40000000 -> 0x1234"),
    ((7, 0, 0x10, 2, 2, 0x9, 0, 0), "rdpmc ecx=0x9 -> #GP"),
    ((7, 0, 0x10, 3, 1, 0x100000001, 0xE0, 0), "pmi status=0x100000001 (GP0,FIXED0) lvtpc=0xe0 -> vector 0xe0"),
    ((7, 0, 0x10, 3, 5, 0x2, 0x400, 0), "pmi status=0x2 (GP1) lvtpc=0x400 -> NMI"),
    ((7, 0, 0x10, 3, 0, 0x1, 0x100E0, 0),
     "pmi status=0x1 (GP0) lvtpc=0x100e0 -> not delivered (masked or APIC disabled)"),
    ((7, 0, 0x10, 4, 1, 0x3F8, 0x41, 1), "io out 0x3f8 size=1 value=0x41"),
    ((7, 0, 0x10, 4, 0, 0xCFC, 0xFFFFFFFF, 4), "io in 0xcfc size=4 -> 0xffffffff"),
    ((7, 0, 0x10, 5, 1, 0xFEE000B0, 0, 4), "mmio write 0xfee000b0 size=4 value=0x0"),
    ((7, 0, 0x10, 5, 0, 0xFEC00010, 0x170011, 4), "mmio read 0xfec00010 size=4 -> 0x170011"),
    ((7, 0, 0x10, 6, 0, 0x20, 0, 0), "irq vector 0x20"),
    ((7, 0, 0x10, 6, 4, 2, 0, 0), "irq NMI"),
    ((7, 0, 0x10, 7, 8 | 16, 14, 0x2, 0xDEAD000), "exc #PF (14) error=0x2 cr2=0xdead000"),
    ((7, 0, 0x10, 7, 0, 6, 0, 0), "exc #UD (6)"),
    ((7, 0, 0x10, 7, 32, 0x80, 0, 0), "exc INT 0x80"),
])
def test_each_kind_of_record_is_one_line(record, text):
    assert tr.format_record(record, tr.Symbols()) == f"7 cpu=0 rip=0x10 {text}"


def test_symbols_are_the_nearest_one_that_holds_the_address():
    symbols = tr.Symbols([(0x1000, 0x10, "f"), (0x1000, 0, "f_alias"), (0x1020, 0, "label"), (0x2000, 8, "g")],
                         ranges=[(0x1000, 0x3000)])
    assert symbols.lookup(0x1000) == "f"
    assert symbols.lookup(0x100F) == "f+0xf"
    assert symbols.lookup(0x1010) == "f_alias+0x10"     # past f's end: the label at the same address
    assert symbols.lookup(0x1FFF) == "label+0xfdf"
    assert symbols.lookup(0x2008) is None                # past g's end
    assert symbols.lookup(0x3000) is None and symbols.lookup(0xFFF) is None     # outside the image
    assert tr.Symbols.from_elf(b"not an ELF").lookup(0x1000) is None


def test_symbols_of_a_kernel():
    symbols = tr.Symbols.from_elf(firmware.image("trace_events").read_bytes())
    program = symbols.lookup(_address_of("trace_program"))
    assert program == "trace_program"
    assert symbols.lookup(_address_of("trace_program") + 3) == "trace_program+0x3"
    assert symbols.lookup(0xF1000) is None       # the VMM's trampoline


def _address_of(name: str) -> int:
    from elftools.elf.elffile import ELFFile

    with open(firmware.image("trace_events"), "rb") as f:
        return next(s["st_value"] for s in ELFFile(f).get_section_by_name(".symtab").iter_symbols() if s.name == name)


def test_a_tracer_that_cannot_write_says_so():
    class Full(io.StringIO):
        def write(self, text):
            raise OSError(28, "No space left on device")

    tracer = tr.Tracer(["irq"], Full(), capacity=2)
    for _ in range(3):
        tracer.buffer.emit(6, 0, 0x20)
    tracer.finish()
    assert tracer.dropped == 3 and isinstance(tracer.error, OSError)


# -- records from a vCPU (a bare engine, host-side MSR writes) ---------------------------------
def test_pmu_records_carry_the_vcpu_its_time_and_rip():
    out = io.StringIO()
    machine = Machine(MachineConfig(trace=("pmu",), trace_file=out))
    cpu = machine.cpus[0]
    cpu.vcpu.retired = 1234
    cpu.pmu.write(_access(0xC1), 0xFFFFFFFFFFF0)
    cpu.pmu.write(_access(0x186), 0x4300C0)         # EN|OS|USR, instructions: starts (GLOBAL_CTRL resets to on)
    cpu.pmu.write(_access(0x186), 0x0300C0)
    machine.tracer.finish()
    rip = cpu.vcpu.trace_point()[1]
    assert out.getvalue() == (f"1234 cpu=0 rip={rip:#x} pmu start GP0 evtsel=0x4300c0 value=0xfffffffffff0\n"
                              f"1234 cpu=0 rip={rip:#x} pmu stop GP0 evtsel=0x300c0 value=0xfffffffffff0\n")


def _access(index: int):
    from devices.bus import Access

    return Access(index, 0, 8, 0, True)


# -- the trace_events kernel -------------------------------------------------------------------
def _traced(kernel: str = "trace_events", categories=PMU_AND_EVENTS, **config) -> tuple[list[str], object, str]:
    out = io.StringIO()
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, trace=tuple(categories), trace_file=out, **config))
    machine.load(str(firmware.image(kernel)))
    result = machine.run()
    return out.getvalue().splitlines(), result, result.serial.decode()


LINE = re.compile(r"^(\d+) cpu=(\d+) rip=(0x[0-9a-f]+)(?: <([^>+]+)(?:\+0x[0-9a-f]+)?>)? (\w+) (.*)$")


def _parse(lines: list[str]) -> list[tuple]:
    parsed = []
    for line in lines:
        m = LINE.match(line)
        assert m, line
        parsed.append((int(m[1]), int(m[2]), int(m[3], 16), m[4], m[5], m[6]))
    return parsed


def test_trace_events_gives_exactly_the_records_of_each_step():
    lines, result, serial = _traced()
    assert result.reason == "debug-exit" and "FAIL" not in serial, serial
    records = _parse(lines)
    steps = [(symbol, category, detail) for _, _, _, symbol, category, detail in records
             if symbol and symbol.startswith("trace_") or category in ("pmi", "irq")]
    assert steps == [
        ("trace_program", "msr", "wrmsr 0xc1 IA32_PERFCTR0 = 0xffffff9c"),
        # GLOBAL_CTRL's reset value enables GP0 already: the event select starts it
        ("trace_program", "pmu", "start GP0 evtsel=0x5300c0 value=0xffffffffff9c"),
        ("trace_program", "msr", "wrmsr 0x186 IA32_PERFEVTSEL0 = 0x5300c0"),
        ("trace_program", "msr", "wrmsr 0x38f IA32_PERF_GLOBAL_CTRL = 0x1"),
        ("trace_spin", "pmu", "overflow GP0 evtsel=0x5300c0 value=0x0 PMI"),
        ("trace_spin", "pmi", "status=0x1 (GP0) lvtpc=0xe0 -> vector 0xe0"),
        ("trace_take_pmi", "irq", "vector 0xe0"),
        ("trace_stop", "pmu", "stop GP0 evtsel=0x5300c0 value=0x973"),
        ("trace_stop", "msr", "wrmsr 0x38f IA32_PERF_GLOBAL_CTRL = 0x0"),
        ("trace_bad_msr", "msr", "wrmsr 0x12345678 = 0x42 -> #GP"),
        ("trace_bad_msr", "exc", "#GP (13) error=0x0"),
        ("trace_int3", "exc", "INT 0x3"),
    ]
    by_detail = {(category, detail): (time, rip) for time, _, rip, _, category, detail in records}
    start = by_detail["pmu", "start GP0 evtsel=0x5300c0 value=0xffffffffff9c"][0]
    overflow = by_detail["pmu", "overflow GP0 evtsel=0x5300c0 value=0x0 PMI"][0]
    # The enabling WRMSR retires counted, then 99 more: the 100th overflows, with zero skid.
    assert overflow - start == 100
    assert by_detail["pmi", "status=0x1 (GP0) lvtpc=0xe0 -> vector 0xe0"][0] == overflow
    # the handler reads and clears the status; RDPMC (inlined rdpmc_safe) reads the stopped counter
    pmi_handler = [(category, detail) for _, _, _, symbol, category, detail in records if symbol == "pmi_handler"]
    assert pmi_handler == [("msr", "rdmsr 0x38e IA32_PERF_GLOBAL_STATUS -> 0x1"),
                           ("msr", "wrmsr 0x390 IA32_PERF_GLOBAL_OVF_CTRL = 0x1")]
    rdpmc = [(category, detail) for _, _, _, symbol, category, detail in records
             if category == "rdpmc" or (category == "exc" and symbol == "rdpmc_safe")]
    assert rdpmc == [("rdpmc", "ecx=0x0 -> 0x973"), ("rdpmc", "ecx=0x1234 -> #GP"), ("exc", "#GP (13) error=0x0")]
    # one vCPU, times never go back
    assert {cpu for _, cpu, *_ in records} == {0}
    assert [time for time, *_ in records] == sorted(time for time, *_ in records)


def test_io_and_mmio_records():
    lines, _, _ = _traced(categories=("io", "mmio"))
    records = _parse(lines)
    assert [(c, d) for _, _, _, s, c, d in records if s == "trace_io"] == \
        [("io", "out 0x80 size=1 value=0x5a"), ("io", "in 0x80 size=1 -> 0xff")]
    assert ("mmio", "write 0xfee00340 size=4 value=0xe0") in [(c, d) for *_, c, d in records]
    assert records[-1][4:] == ("io", "out 0xf4 size=4 value=0x0")       # the debug-exit write


def test_exceptions_carry_their_error_codes_and_cr2():
    lines, result, serial = _traced("exceptions", ("exc",))
    assert result.reason == "debug-exit" and "FAIL" not in serial, serial
    details = [detail for *_, category, detail in _parse(lines)]
    page_faults = [d for d in details if d.startswith("#PF")]
    # read of a not-present page, write to it, write to a read-only page, then the retried read
    assert [re.sub(r" cr2=0x[0-9a-f]+", "", d) for d in page_faults] == \
        ["#PF (14) error=0x0", "#PF (14) error=0x2", "#PF (14) error=0x3", "#PF (14) error=0x0"]
    assert len({re.search(r"cr2=(0x[0-9a-f]+)", d)[1] for d in page_faults}) == 2    # pf_page and pf_page+1
    assert details[-2:] == ["INT 0x99", "#NP (11) error=0x4ca"]    # not-present gate: vector*8+2
    assert "#UD (6)" in details and "#DE (0)" in details and "#GP (13) error=0x1000" in details


def test_tracing_changes_nothing_the_guest_sees_and_a_small_ring_changes_nothing_in_the_trace(monkeypatch):
    lines, result, serial = _traced(categories=tr.parse_trace("all"))
    untraced = Machine(MachineConfig(serial=io.BytesIO(), timeout=60))
    untraced.load(str(firmware.image("trace_events")))
    plain = untraced.run()
    assert (plain.instructions, plain.serial) == (result.instructions, result.serial)
    import vmm._trace

    monkeypatch.setattr(vmm._trace, "DEFAULT_CAPACITY", 3)      # drained from C every 3 records
    small, _, _ = _traced(categories=tr.parse_trace("all"))
    assert small == lines


def test_smp_records_of_every_vcpu_in_order():
    lines, result, serial = _traced("smp_pmu", ("pmu", "pmi", "irq"), smp=2, cmdline="n=2000", quantum=5000)
    assert result.reason == "debug-exit" and "FAIL" not in serial, serial
    records = _parse(lines)
    assert {cpu for _, cpu, *_ in records} == {0, 1}
    assert [time for time, *_ in records] == sorted(time for time, *_ in records)


def test_the_same_run_gives_the_same_trace_file_byte_for_byte(tmp_path):
    files = []
    for n in range(2):
        path = tmp_path / f"trace{n}.txt"
        proc = run_cli("run", "trace_events", "--trace", "all", "--trace", "exits", "--trace-file", str(path))
        assert proc.returncode == 0, proc.stderr
        assert proc.stderr == b""
        files.append(path.read_bytes())
    assert files[0] == files[1] and len(files[0].splitlines()) > 400
    smp = []
    for n in range(2):
        path = tmp_path / f"smp{n}.txt"
        proc = run_cli("run", "smp_ipi", "--smp", "2", "--append", "rounds=3", "--trace", "all",
                       "--trace-file", str(path))
        assert proc.returncode == 0, proc.stderr
        smp.append(path.read_bytes())
    assert smp[0] == smp[1] and b" cpu=1 " in smp[0]


def test_exits_still_trace_on_stderr():
    proc = run_cli("run", "hello64", "--trace", "exits")
    assert proc.returncode == 0
    lines = proc.stderr.decode().splitlines()
    assert lines and all(" exits " in line for line in lines)
    assert any(re.search(r" exits IO_OUT addr=0x3f8 size=1 value=0x48 -> None$", line) for line in lines)


def test_trace_options():
    proc = run_cli("run", "--trace", "help")
    assert proc.returncode == 0 and b"  pmi " in proc.stdout
    proc = run_cli("run", "hello64", "--trace", "pmu,bogus")
    assert proc.returncode == 2 and b"unknown trace category 'bogus'" in proc.stderr
    proc = run_cli("run", "hello64", "--trace", "irq", "--trace-file", "/nonexistent/trace.txt")
    assert proc.returncode == 2 and b"cannot open trace file /nonexistent/trace.txt" in proc.stderr
    proc = run_cli("run", "hello64", "--trace", "io", "--trace-file", "/dev/full")
    assert proc.returncode == 74 and b"cannot write the trace" in proc.stderr, proc.stderr
    help_text = run_cli("run", "--help").stdout.decode()
    assert "--trace LIST" in help_text and "--trace-file FILE" in help_text


def test_qemu_front_end_maps_d_and_capital_d(tmp_path):
    path = tmp_path / "qemu.log"
    proc = _qemu("-kernel", str(firmware.image("trace_events")), "-d", "int,rdpmc", "-D", str(path))
    assert proc.returncode == 1, proc.stderr     # (0 << 1) | 1
    text = path.read_text()
    assert re.search(r"<trace_take_pmi\+0x[0-9a-f]+> irq vector 0xe0$", text, re.M), text
    assert " rdpmc ecx=0x0 -> " in text and " pmi status=0x1 " in text and " msr " not in text
    proc = _qemu("-kernel", "x", "-d", "in_asm")
    assert proc.returncode == 1
    assert proc.stderr.decode().strip().endswith("-d in_asm: log item 'in_asm' not supported by pmu-vmm "
                                                 "(-d help lists them)")
    assert b"int " in _qemu("-d", "help").stdout


def _qemu(*args: str) -> subprocess.CompletedProcess:
    return run_cli("qemu", *args)
