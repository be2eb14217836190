# SPDX-License-Identifier: GPL-2.0-or-later
"""``--trace``: what the guest asked of the VMM and what the VMM did to it, one line per event.

Categories (:data:`CATEGORIES`, ``--trace help``) are chosen per run.  All but ``exits`` are
recorded where the event happens, C fast paths included: the vCPU hook layer (MSR, RDPMC, port
I/O, MMIO, interrupt injection, exception delivery) and the PMU core (counters starting, stopping,
overflowing) append fixed-size records to a C ring (vmm/_tracering.pxd, vmm/_trace.pyx) shared by
the machine's vCPUs.  The ring is drained here, formatted and written: whenever the run loop gets
control back (the end of each vCPU's run or time slice, the HLT wait, the end of the run), before
an ``exits`` line, and from C when it is full.  With tracing off each writer's cost is one test of
a per-vCPU mask on its own (cold) path; the per-block path has no test at all.

Order: one host thread runs the vCPUs in turn and they all write one ring, so records are in the
order the events happened, every vCPU's together.  A line reads

    TIME cpu=N rip=0xADDR [<symbol+0xoff>] CATEGORY DETAILS

TIME is virtual ns (vmm/clock.py; one instruction = 1 ns), RIP the linear address of the
instruction the event belongs to (for ``pmu`` overflows and ``pmi``, where the vCPU was when the
VMM saw them; for ``mmio``, where the engine reports it: the start of the access's translation block
in code that is not cut at device accesses).  The symbol comes from the kernel's own ELF symbol
table (pyelftools), the nearest symbol at or below RIP within its size; a bzImage or a stripped
kernel has none and the bracket is left out.  Nothing in a line depends on the host, so one run
gives the same trace byte for byte every time.

A record is lost only if the trace file cannot be written: :attr:`Tracer.error` and
:attr:`Tracer.dropped` say so, and the run's last trace line counts them.

Not traced: CPUID (``exits`` shows it, then through the handler), RDTSC, CR8, SYSCALL, and the
engine's own MSRs' side effects.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

#: name -> (record kind, one line of help).  Kinds are vmm/_tracering.pxd's TK_* numbers.
CATEGORIES = {
    "pmu": (0, "PMU counters starting, stopping and overflowing (slot, select/control, value)"),
    "msr": (1, "RDMSR/WRMSR: index, name of PMU/APIC MSRs, value; #GP"),
    "rdpmc": (2, "RDPMC: ECX and value; #GP"),
    "pmi": (3, "PMIs: overflowed counters (GLOBAL_STATUS) and the LVTPC entry delivering them"),
    "io": (4, "port I/O: IN/OUT/INS/OUTS port, size, value"),
    "mmio": (5, "MMIO: physical address, size, value (LAPIC page, devices)"),
    "irq": (6, "interrupts and NMIs injected into the guest: vector"),
    "exc": (7, "exceptions delivered through the IDT: vector, error code, CR2; INT n"),
    "exits": (None, "every exit to the Python device model and its answer (the old --trace exits)"),
}
ALL = "all"                 # every category but exits
KIND_NAMES = {kind: name for name, (kind, _) in CATEGORIES.items() if kind is not None}

# record flags (vmm/_tracering.pxd)
TF_WRITE = TF_DELIVERED = 1
TF_FAULT = 2
TF_NMI = 4
TF_ERROR_CODE = 8
TF_CR2 = 16
TF_SOFTWARE = 32
TP_START, TP_STOP, TP_OVERFLOW, TP_PMI = 0, 1, 2, 4
FIXED_SLOT = 8              # pmu/_core.pxd: GP counters in slots 0-7, fixed counters from 8


def trace_help() -> str:
    lines = [f"  {name:<6} {text}" for name, (_, text) in CATEGORIES.items()]
    return "\n".join(["--trace categories (comma-separated, repeatable):", *lines,
                      f"  {ALL:<6} every category but exits"])


def parse_trace(text: str) -> tuple[str, ...]:
    """``pmu,msr`` -> ("pmu", "msr"); ``all`` stands for every category but exits."""
    names: list[str] = []
    for word in text.split(","):
        word = word.strip()
        if word == ALL:
            names += [name for name, (kind, _) in CATEGORIES.items() if kind is not None]
        elif word in CATEGORIES:
            names.append(word)
        else:
            raise ValueError(f"unknown trace category {word!r} (`--trace help` lists them)")
    return tuple(dict.fromkeys(names))


def category_mask(categories: Iterable[str]) -> int:
    """The C mask of the recorded categories (``exits`` is not one of them)."""
    mask = 0
    for name in categories:
        kind = CATEGORIES[name][0]
        if kind is not None:
            mask |= 1 << kind
    return mask


# -- MSR names ---------------------------------------------------------------------------------
def _msr_names() -> dict[int, str]:
    names = {0x10: "IA32_TSC", 0x1B: "IA32_APIC_BASE", 0x3B: "IA32_TSC_ADJUST", 0x48: "IA32_SPEC_CTRL",
             0x49: "IA32_PRED_CMD", 0x174: "IA32_SYSENTER_CS", 0x175: "IA32_SYSENTER_ESP",
             0x176: "IA32_SYSENTER_EIP", 0x277: "IA32_PAT", 0x345: "IA32_PERF_CAPABILITIES",
             0x38D: "IA32_FIXED_CTR_CTRL", 0x38E: "IA32_PERF_GLOBAL_STATUS", 0x38F: "IA32_PERF_GLOBAL_CTRL",
             0x390: "IA32_PERF_GLOBAL_OVF_CTRL", 0x6E0: "IA32_TSC_DEADLINE",
             0xC0000080: "IA32_EFER", 0xC0000081: "IA32_STAR", 0xC0000082: "IA32_LSTAR", 0xC0000083: "IA32_CSTAR",
             0xC0000084: "IA32_FMASK", 0xC0000100: "IA32_FS_BASE", 0xC0000101: "IA32_GS_BASE",
             0xC0000102: "IA32_KERNEL_GS_BASE", 0xC0000103: "IA32_TSC_AUX",
             0xC0000300: "PERF_CNTR_GLOBAL_STATUS", 0xC0000301: "PERF_CNTR_GLOBAL_CTL",
             0xC0000302: "PERF_CNTR_GLOBAL_STATUS_CLR", 0xC0000303: "PERF_CNTR_GLOBAL_STATUS_SET"}
    for n in range(8):
        names[0xC1 + n] = f"IA32_PERFCTR{n}"
        names[0x4C1 + n] = f"IA32_PMC{n}"
        names[0x186 + n] = f"IA32_PERFEVTSEL{n}"
    for n in range(4):
        names[0x309 + n] = f"IA32_FIXED_CTR{n}"
        names[0xC0010000 + n] = f"PERF_CTL{n}"      # AMD legacy (K7) counters
        names[0xC0010004 + n] = f"PERF_CTR{n}"
    for n in range(6):
        names[0xC0010200 + 2 * n] = f"PERF_CTL{n}"      # AMD PerfCtrExtCore
        names[0xC0010201 + 2 * n] = f"PERF_CTR{n}"
    x2apic = {0x02: "ID", 0x03: "VERSION", 0x08: "TPR", 0x0A: "PPR", 0x0B: "EOI", 0x0D: "LDR", 0x0F: "SIVR",
              0x28: "ESR", 0x2F: "LVT_CMCI", 0x30: "ICR", 0x32: "LVT_TIMER", 0x33: "LVT_THERMAL", 0x34: "LVT_PMI",
              0x35: "LVT_LINT0", 0x36: "LVT_LINT1", 0x37: "LVT_ERROR", 0x38: "INIT_COUNT", 0x39: "CUR_COUNT",
              0x3E: "DIV_CONF", 0x3F: "SELF_IPI"}
    for n in range(8):
        x2apic[0x10 + n], x2apic[0x18 + n], x2apic[0x20 + n] = f"ISR{n}", f"TMR{n}", f"IRR{n}"
    names.update({0x800 + offset: f"IA32_X2APIC_{name}" for offset, name in x2apic.items()})
    return names


MSR_NAMES = _msr_names()
EXCEPTION_NAMES = {0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD", 7: "#NM", 8: "#DF",
                   10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP", 14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC",
                   19: "#XM", 20: "#VE", 21: "#CP"}


# -- symbols -----------------------------------------------------------------------------------
class Symbols:
    """Address -> ``name+0xoff`` from an ELF symbol table; lookups are cached.

    Only addresses inside ``ranges`` (the image's allocated sections, [begin, end)) have symbols:
    the VMM's trampoline and the guest's own page mappings elsewhere get none."""

    def __init__(self, symbols: Iterable[tuple[int, int, str]] = (), ranges: Iterable[tuple[int, int]] = ()):
        entries = sorted({(addr, -size, name) for addr, size, name in symbols})
        self._addrs = [addr for addr, _, _ in entries]
        self._entries = [(addr, -neg, name) for addr, neg, name in entries]
        self._ranges = sorted(ranges)
        self._cache: dict[int, str | None] = {}

    @classmethod
    def from_elf(cls, data: bytes) -> Symbols:
        """The functions and objects of an ELF image's .symtab; no symbols for anything else."""
        import io

        from elftools.common.exceptions import ELFError
        from elftools.elf.constants import SH_FLAGS
        from elftools.elf.elffile import ELFFile
        from elftools.elf.sections import SymbolTableSection

        if not data.startswith(b"\x7fELF"):
            return cls()
        alloc = SH_FLAGS.SHF_ALLOC
        try:
            elf = ELFFile(io.BytesIO(data))
            found, ranges = [], []
            for section in elf.iter_sections():
                if section["sh_flags"] & alloc and section["sh_size"]:
                    ranges.append((section["sh_addr"], section["sh_addr"] + section["sh_size"]))
                if not isinstance(section, SymbolTableSection):
                    continue
                for sym in section.iter_symbols():
                    kind = sym["st_info"]["type"]
                    if sym.name and isinstance(sym["st_shndx"], int) and \
                            kind in ("STT_FUNC", "STT_OBJECT", "STT_NOTYPE"):
                        found.append((sym["st_value"], sym["st_size"], sym.name))
        except (ELFError, ValueError, KeyError, OSError):
            return cls()
        return cls(found, ranges)

    def lookup(self, address: int) -> str | None:
        try:
            return self._cache[address]
        except KeyError:
            pass
        text = None
        k = bisect.bisect_right(self._ranges, (address, 1 << 64)) - 1
        i = bisect.bisect_right(self._addrs, address) - 1 if k >= 0 and address < self._ranges[k][1] else -1
        if i >= 0:
            # The nearest symbol at or below the address; of several there, the largest holding it,
            # else a label (size 0).  Past the end of a sized symbol there is none.
            addr = self._addrs[i]
            for _, size, name in self._entries[bisect.bisect_left(self._addrs, addr):i + 1]:
                if size == 0 or address < addr + size:
                    text = name if address == addr else f"{name}+{address - addr:#x}"
                    break
        if len(self._cache) < 1 << 16:
            self._cache[address] = text
        return text


# -- formatting --------------------------------------------------------------------------------
def _counter(slot: int) -> str:
    return f"GP{slot}" if slot < FIXED_SLOT else f"FIXED{slot - FIXED_SLOT}"


def _status_bits(status: int) -> str:
    bits = [f"GP{n}" for n in range(32) if status >> n & 1] + \
        [f"FIXED{n}" for n in range(30) if status >> (32 + n) & 1]
    return ",".join(bits) or "none"


def _msr(index: int) -> str:
    name = MSR_NAMES.get(index)
    return f"{index:#x} {name}" if name else f"{index:#x}"


def _detail(kind: int, flags: int, a: int, b: int, c: int) -> str:
    if kind == 0:       # pmu
        event = flags & 3
        what = ("start", "stop", "overflow")[event] if event < 3 else f"event{event}"
        config = "evtsel" if a < FIXED_SLOT else "ctrl"
        pmi = (" PMI" if flags & TP_PMI else " no PMI") if event == TP_OVERFLOW else ""
        return f"{what} {_counter(a)} {config}={b:#x} value={c:#x}{pmi}"
    if kind == 1:       # msr
        if flags & TF_WRITE:
            return f"wrmsr {_msr(a)} = {b:#x}" + (" -> #GP" if flags & TF_FAULT else "")
        return f"rdmsr {_msr(a)} -> " + ("#GP" if flags & TF_FAULT else f"{b:#x}")
    if kind == 2:       # rdpmc
        return f"ecx={a:#x} -> " + ("#GP" if flags & TF_FAULT else f"{b:#x}")
    if kind == 3:       # pmi
        if not flags & TF_DELIVERED:
            to = "not delivered (masked or APIC disabled)"
        else:
            to = "NMI" if flags & TF_NMI else f"vector {b & 0xFF:#x}"
        return f"status={a:#x} ({_status_bits(a)}) lvtpc={b:#x} -> {to}"
    if kind == 4:       # io
        if flags & TF_WRITE:
            return f"out {a:#x} size={c} value={b:#x}"
        return f"in {a:#x} size={c} -> {b:#x}"
    if kind == 5:       # mmio
        if flags & TF_WRITE:
            return f"write {a:#x} size={c} value={b:#x}"
        return f"read {a:#x} size={c} -> {b:#x}"
    if kind == 6:       # irq
        return "NMI" if flags & TF_NMI else f"vector {a:#x}"
    if kind == 7:       # exc
        if flags & TF_SOFTWARE:
            text = f"INT {a:#x}"
        else:
            text = f"{EXCEPTION_NAMES.get(a, 'vector')} ({a})"
        if flags & TF_ERROR_CODE:
            text += f" error={b:#x}"
        if flags & TF_CR2:
            text += f" cr2={c:#x}"
        return text
    return f"kind={kind} flags={flags:#x} a={a:#x} b={b:#x} c={c:#x}"


def where(time: int, vcpu: int, rip: int, symbols: Symbols) -> str:
    symbol = symbols.lookup(rip)
    return f"{time} cpu={vcpu} rip={rip:#x}" + (f" <{symbol}>" if symbol else "")


def format_record(record: tuple, symbols: Symbols) -> str:
    """One line (no newline) for a ring record ``(time, vcpu, rip, kind, flags, a, b, c)``."""
    time, vcpu, rip, kind, flags, a, b, c = record
    return f"{where(time, vcpu, rip, symbols)} {KIND_NAMES.get(kind, '?')} {_detail(kind, flags, a, b, c)}"


def format_exit(time: int, vcpu: int, rip: int, exit, result, symbols: Symbols) -> str:
    return (f"{where(time, vcpu, rip, symbols)} exits {exit.kind.name} addr={exit.address:#x} size={exit.size} "
            f"value={exit.value:#x} -> {result!r}")


# -- the machine's tracer ---------------------------------------------------------------------
class Tracer:
    """Owns the ring, attaches vCPUs to it and writes their records to ``stream`` (text)."""

    def __init__(self, categories: Iterable[str], stream, capacity: int | None = None):
        from vmm._trace import DEFAULT_CAPACITY, TraceBuffer

        self.categories = tuple(categories)
        self.mask = category_mask(self.categories)
        self.exits = "exits" in self.categories
        self.stream = stream
        self.symbols = Symbols()
        self.error: OSError | None = None
        self.lines = 0
        self.buffer = TraceBuffer(capacity or DEFAULT_CAPACITY, consumer=self._write_records)

    @property
    def dropped(self) -> int:
        return self.buffer.dropped

    def attach(self, vcpu) -> None:
        """Trace ``vcpu`` (its hook layer and its PMU core) into the ring."""
        if self.mask:
            vcpu.attach_trace(self.buffer, self.mask)

    def clock_follows(self, vcpu) -> None:
        """``vcpu`` runs the machine's clock now (after VirtualClock.switch_to): records are stamped
        with its time, whichever vCPU makes them."""
        if self.mask:
            vcpu.trace_clock()

    def load_symbols(self, kernel) -> None:
        """Symbols of the kernel (a path or the image's bytes); none unless it is an ELF with a symtab."""
        if isinstance(kernel, (bytes, bytearray, memoryview)):
            data = bytes(kernel)
        else:
            with open(kernel, "rb") as f:
                data = f.read()
        self.symbols = Symbols.from_elf(data)

    def flush(self) -> None:
        """Write what the ring holds (a write error is kept, not raised)."""
        try:
            self.buffer.flush()
        except OSError as e:
            self.error = self.error or e

    def exit(self, vcpu, exit, result) -> None:
        """A Dispatcher trace hook (``functools.partial(tracer.exit, vcpu)``): the exit as one line."""
        self.flush()
        time, rip = vcpu.trace_point()
        try:
            self._write([format_exit(time, exit.vcpu_id, rip, exit, result, self.symbols)])
        except OSError as e:
            self.error = self.error or e

    def finish(self) -> None:
        """The end of the run: the rest of the ring, and a last line if records were lost."""
        self.flush()
        if self.buffer.error is not None and self.error is None and isinstance(self.buffer.error, OSError):
            self.error = self.buffer.error
        if self.dropped:
            try:
                self._write([f"trace: {self.dropped} records lost ({self.error or self.buffer.error})"])
            except OSError:
                pass
        try:
            self.stream.flush()
        except OSError as e:
            self.error = self.error or e

    def _write_records(self, records: list) -> None:
        symbols = self.symbols
        self._write([format_record(record, symbols) for record in records])

    def _write(self, lines: list[str]) -> None:
        if self.error is not None:
            raise self.error
        self.stream.write("".join(line + "\n" for line in lines))
        self.lines += len(lines)
