# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest fuzzing: random kernels, and a worker process that runs them through a Machine.

A fuzz kernel is a fixed frame around random *steps*.  The frame sets up what a kernel has (a GDT
with user segments and a TSS, an IDT for all 256 vectors, user-accessible pages in long mode),
writes a marker to the serial port, then runs the steps in order and ends through debug-exit.
An exception anywhere goes to a handler that logs it (vector and the two words above it: error
code and RIP, or RIP and CS), resets the stack and goes on with the next step; any other vector
(timer interrupts, INT n >= 32, NMIs) is counted, sends an xAPIC EOI and returns.  So one boot
runs many steps even when most of them fault, and tests can read what the guest saw
(:meth:`Outcome.exceptions`, :meth:`Outcome.interrupts`, :meth:`Outcome.results`).

Steps are random bytes (:func:`random_code`) or sequences of privileged and odd instructions
(:func:`operations`): MSRs, RDPMC, CPUID, port and APIC accesses, descriptor tables and segment
loads, the task register, control registers, far transfers and gates, SYSCALL/SYSRET, timers with
HLT, self-modifying code.  Everything is encoded here, by hand, for a fixed layout (no assembler
needed); 64-bit kernels are plain ELF64 (entered in long mode), 32-bit ones multiboot ELF32
(entered in protected mode, paging off).

:class:`Runner` runs kernels in a worker process (``python -m tests.guest_fuzz``), so an engine
abort or a hang is a reported failure instead of the end of the test session; :func:`problems`
says what is wrong with an :class:`Outcome`.

Not covered: SMP, starting in real or virtual-8086 mode (steps may still get there), and any check
of what the guest computed: the fuzzers check the VMM's behaviour, not the guest's.
"""

from __future__ import annotations

import gc
import io
import os
import pickle
import select
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from hypothesis import strategies as st

from tests.elfgen import Seg, build_elf, multiboot_header

ROOT = Path(__file__).resolve().parent.parent

# -- layout of a fuzz kernel (identical for both modes; addresses below 4 GiB, identity-mapped) ----
BASE = 0x100000                 # a multiboot header here in 32-bit kernels
ENTRY = BASE + 0x20             # the frame's set-up code
STUBS = BASE + 0x1000           # 256 handler stubs of STUB_SIZE bytes
STUB_SIZE = 32
NEXT_STEP = BASE + 0x3000       # exception handler: log, reset the stack, run the next step
DONE = BASE + 0x3400            # end marker and debug-exit
IDT = BASE + 0x4000
GDT = BASE + 0x5000             # 16 descriptors; 0x30 is the TSS (16 bytes in long mode)
GDT_ENTRIES = 16
TSS = BASE + 0x5100             # 0x68 bytes, then the I/O bitmap (all ports allowed) and its end byte
TSS_LIMIT = 0x68 + 0x2000
POINTERS = BASE + 0x7200        # descriptor-table and far pointers the steps build
STATE = BASE + 0x7300           # what the worker sends back: from here to LOG + LOG_SIZE
STEP = STATE                    # index of the step running now (u32)
LOG_COUNT = STATE + 4           # exceptions logged (u32)
RESULTS = STATE + 0x80          # 16 u64 slots the "save" operation stores registers in
STEP_TABLE = BASE + 0x7400      # address of each step, 8 bytes each
COUNTS = BASE + 0x7800          # interrupts taken, per vector (u32)
LOG = BASE + 0x8000             # the last LOG_ENTRIES exceptions: vector and the two words above it
LOG_ENTRIES = 64
LOG_SIZE = LOG_ENTRIES * 24
IST_STACK = BASE + 0xA000
KERNEL_STACK = BASE + 0xC000
USER_STACK = BASE + 0xE000
STEPS = BASE + 0x10000          # the steps, one after the other
SCRATCH = BASE + 0x80000        # memory the steps may point registers at
IMAGE_END = BASE + 0x90000
MAX_STEPS = 96

CODE64, DATA, CODE32, USER_CODE, USER_DATA, TSS_SELECTOR = 0x08, 0x10, 0x18, 0x20, 0x28, 0x30
LAPIC, IOAPIC = 0xFEE00000, 0xFEC00000
MARKER = b"fuzz:"                 # written first, without a newline: a partial line must survive
DEBUG_EXIT = 0xF4


# -- encoding ------------------------------------------------------------------------------------
def u8(v: int) -> bytes:
    return struct.pack("<B", v & 0xFF)


def u16(v: int) -> bytes:
    return struct.pack("<H", v & 0xFFFF)


def u32(v: int) -> bytes:
    return struct.pack("<I", v & 0xFFFFFFFF)


def u64(v: int) -> bytes:
    return struct.pack("<Q", v & 0xFFFFFFFFFFFFFFFF)


class Asm:
    """Encoders for one mode (``bits`` 64 or 32).  Registers by x86 number (0 = RAX ... 7 = RDI);
    memory operands are absolute 32-bit addresses."""

    def __init__(self, bits: int):
        self.bits = bits

    def absolute(self, reg_field: int, address: int) -> bytes:
        """ModRM (and SIB) for [address] (in 64-bit mode, not RIP-relative)."""
        if self.bits == 64:
            return bytes([0x04 | (reg_field << 3), 0x25]) + u32(address)
        return bytes([0x05 | (reg_field << 3)]) + u32(address)

    def mov_imm(self, reg: int, value: int) -> bytes:
        """``mov $value, reg``: 64-bit immediate in long mode."""
        if self.bits == 64:
            return bytes([0x48, 0xB8 + reg]) + u64(value)
        return bytes([0xB8 + reg]) + u32(value)

    def store_imm32(self, address: int, value: int) -> bytes:
        return b"\xC7" + self.absolute(0, address) + u32(value)

    def store_imm64(self, address: int, value: int) -> bytes:
        return self.store_imm32(address, value) + self.store_imm32(address + 4, value >> 32)

    def store_reg(self, address: int, reg: int) -> bytes:
        return b"\x89" + self.absolute(reg, address)

    def load_reg(self, reg: int, address: int) -> bytes:
        return b"\x8B" + self.absolute(reg, address)

    def jump(self, at: int, target: int) -> bytes:
        return b"\xE9" + u32(target - (at + 5))

    def wide(self, opcode: bytes) -> bytes:
        """``opcode`` with REX.W in long mode (IRETQ, LRETQ, SYSRETQ, far pointers m16:64)."""
        return (b"\x48" if self.bits == 64 else b"") + opcode

    def out(self, port: int, value: int, size: int) -> bytes:
        return self.mov_imm(2, port) + self.mov_imm(0, value) + {1: b"\xEE", 2: b"\x66\xEF", 4: b"\xEF"}[size]

    def inp(self, port: int, size: int) -> bytes:
        return self.mov_imm(2, port) + {1: b"\xEC", 2: b"\x66\xED", 4: b"\xED"}[size]

    def wrmsr(self, index: int, value: int) -> bytes:
        return self.mov_imm(1, index) + self.mov_imm(0, value & 0xFFFFFFFF) + self.mov_imm(2, value >> 32) + b"\x0F\x30"

    def mmio_write(self, address: int, value: int) -> bytes:
        return self.mov_imm(0, address) + self.mov_imm(1, value) + b"\x89\x08"     # mov %ecx, (%rax)

    def mmio_read(self, address: int) -> bytes:
        return self.mov_imm(0, address) + b"\x8B\x08"                               # mov (%rax), %ecx


# -- the frame -------------------------------------------------------------------------------------
def descriptor(base: int, limit: int, access: int, flags: int) -> int:
    """An 8-byte segment descriptor: ``access`` = P DPL S type, ``flags`` = G D/B L AVL."""
    return ((limit & 0xFFFF) | (base & 0xFFFFFF) << 16 | access << 40 | ((limit >> 16) & 0xF) << 48
            | flags << 52 | ((base >> 24) & 0xFF) << 56)


def _gdt(bits: int) -> bytes:
    entries = [0] * GDT_ENTRIES
    entries[CODE64 >> 3] = descriptor(0, 0xFFFFF, 0x9A, 0xA)
    entries[DATA >> 3] = descriptor(0, 0xFFFFF, 0x92, 0xC)
    entries[CODE32 >> 3] = descriptor(0, 0xFFFFF, 0x9A, 0xC)
    entries[USER_CODE >> 3] = descriptor(0, 0xFFFFF, 0xFA, 0xA if bits == 64 else 0xC)
    entries[USER_DATA >> 3] = descriptor(0, 0xFFFFF, 0xF2, 0xC)
    entries[TSS_SELECTOR >> 3] = descriptor(TSS, TSS_LIMIT, 0x89, 0)     # upper half (long mode): base 63:32 = 0
    return b"".join(u64(e) for e in entries)


def _tss(bits: int) -> bytes:
    tss = bytearray(TSS_LIMIT + 1)
    if bits == 64:
        struct.pack_into("<Q", tss, 4, KERNEL_STACK)          # RSP0
        struct.pack_into("<Q", tss, 0x24, IST_STACK)          # IST1
        struct.pack_into("<H", tss, 0x66, 0x68)               # I/O map base
    else:
        struct.pack_into("<II", tss, 4, KERNEL_STACK, DATA)   # ESP0, SS0
        struct.pack_into("<H", tss, 0x66, 0x68)
    tss[-1] = 0xFF                                            # the bitmap's terminating byte
    return bytes(tss)


def _idt(bits: int) -> bytes:
    gates = []
    for vector in range(256):
        handler = STUBS + vector * STUB_SIZE
        code = CODE64 if bits == 64 else CODE32
        low = (handler & 0xFFFF) | code << 16 | 0xEE << 40 | ((handler >> 16) & 0xFFFF) << 48  # DPL3 interrupt gate
        if bits == 64:
            ist = 1 if vector in (2, 8, 18) else 0                                          # NMI, #DF, #MC
            gates.append(u64(low | ist << 32) + u64(0))
        else:
            gates.append(u64(low))
    return b"".join(gates)


def _stubs(asm: Asm) -> bytes:
    """Exceptions (vectors 0-31 but NMI) go to NEXT_STEP with their vector pushed; the rest count
    themselves, EOI the xAPIC and return."""
    out = bytearray()
    for vector in range(256):
        at = STUBS + vector * STUB_SIZE
        if vector < 32 and vector != 2:
            stub = b"\x6A" + u8(vector) + asm.jump(at + 2, NEXT_STEP)
        else:
            # incl counts[vector]; push %rax; mov $EOI, %eax; movl $0, (%rax); pop %rax; iret
            stub = (b"\xFF" + asm.absolute(0, COUNTS + 4 * vector) + b"\x50\xB8" + u32(LAPIC + 0xB0)
                    + b"\xC7\x00" + u32(0) + b"\x58" + asm.wide(b"\xCF"))
        assert len(stub) <= STUB_SIZE
        out += stub.ljust(STUB_SIZE, b"\x90")
    return bytes(out)


def _next_step(asm: Asm) -> bytes:
    """Log the exception, reset the stack and flat data segments, then run step STEP + 1 (or finish)."""
    word = 8 if asm.bits == 64 else 4
    code = asm.load_reg(1, LOG_COUNT) + b"\x83\xE1" + u8(LOG_ENTRIES - 1) + b"\x6B\xC9\x18"   # and; imul $24
    for slot in range(3):
        # mov slot*word(%rsp), %rax; mov %rax, LOG+8*slot(%rcx)
        code += asm.wide(b"\x8B\x44\x24" + u8(slot * word)) + asm.wide(b"\x89\x81" + u32(LOG + 8 * slot))
    code += b"\xFF" + asm.absolute(0, LOG_COUNT)                                       # incl
    code += asm.mov_imm(4, KERNEL_STACK) + asm.mov_imm(0, DATA) + b"\x8E\xD8\x8E\xD0"    # ds, ss
    code += asm.load_reg(0, STEP) + b"\xFF\xC0" + asm.store_reg(STEP, 0)               # inc %eax
    code += b"\x3D" + u32(MAX_STEPS) + b"\x0F\x83" + u32(DONE - (NEXT_STEP + len(code) + 11))   # cmp; jae
    code += b"\x8B\x04\xC5" + u32(STEP_TABLE) + b"\xFF\xE0"     # mov step_table(,%eax,8), %eax; jmp *%rax
    return code


def _done(asm: Asm) -> bytes:
    return asm.out(0x3F8, ord("\n"), 1) + asm.out(DEBUG_EXIT, 0, 4) + b"\xFA\xF4"


def _entry(asm: Asm, load_tr: bool) -> bytes:
    code = b"".join(asm.out(0x3F8, c, 1) for c in MARKER)
    code += asm.store_imm32(POINTERS, (GDT_ENTRIES * 8 - 1) | (GDT << 16)) + asm.store_imm32(POINTERS + 4, GDT >> 16)
    code += b"\x0F\x01" + asm.absolute(2, POINTERS)                                    # lgdt
    code += asm.store_imm32(POINTERS, (IDT_SIZE[asm.bits] - 1) | (IDT << 16)) + asm.store_imm32(POINTERS + 4, IDT >> 16)
    code += b"\x0F\x01" + asm.absolute(3, POINTERS)                                    # lidt
    if load_tr:
        code += asm.mov_imm(0, TSS_SELECTOR) + b"\x0F\x00\xD8"                         # ltr %ax
    code += asm.mov_imm(4, KERNEL_STACK)
    if asm.bits == 64:
        # Make the identity map user-accessible (U bit in PML4[0], PDPT[0..3] and every PD entry).
        code += b"\x0F\x20\xD8" + b"\x48\x83\x08\x04"                                   # mov %cr3,%rax; orq $4,(%rax)
        code += b"\x48\x8B\x18\x48\x81\xE3" + u32(0xFFFFF000)                           # mov (%rax),%rbx; and $~0xfff
        code += b"\x31\xC9" + b"\x48\x83\x0C\xCB\x04" + b"\xFF\xC1" + b"\x81\xF9" + u32(4) + b"\x75\xF1"  # PDPT loop
        code += b"\x48\x8B\x1B\x48\x81\xE3" + u32(0xFFFFF000)                           # PD of the first GiB
        code += b"\x31\xC9" + b"\x48\x83\x0C\xCB\x04" + b"\xFF\xC1" + b"\x81\xF9" + u32(2048) + b"\x75\xF1"  # 4 PDs
        code += b"\x0F\x20\xD8\x0F\x22\xD8"                                             # flush the TLB
    code += asm.store_imm32(STEP, 0) + asm.load_reg(0, STEP_TABLE) + b"\xFF\xE0"       # jmp *step_table[0]
    return code


IDT_SIZE = {64: 256 * 16, 32: 256 * 8}


def kernel(bits: int, plan: list[list[Op]], load_tr: bool = True) -> bytes:
    """A fuzz kernel (ELF image) for ``plan``: one step per list of operations.  ``load_tr`` False
    leaves the task register as the vCPU comes out of reset (no TSS of the frame's)."""
    asm = Asm(bits)
    image = bytearray(IMAGE_END - BASE)

    def put(address: int, data: bytes) -> None:
        image[address - BASE:address - BASE + len(data)] = data

    if bits == 32:
        put(BASE, multiboot_header())
    put(ENTRY, _entry(asm, load_tr))
    put(STUBS, _stubs(asm))
    put(NEXT_STEP, _next_step(asm))
    put(DONE, _done(asm))
    put(IDT, _idt(bits))
    put(GDT, _gdt(bits))
    put(TSS, _tss(bits))
    at, table = STEPS, []
    for ops in plan[:MAX_STEPS]:
        table.append(at)
        code = asm.store_imm32(STEP, len(table) - 1)
        for op in ops:
            code += op.encode(asm, at + len(code))
        put(at, code)
        at += len(code)
    put(at, asm.jump(at, DONE))
    assert at < SCRATCH, "the steps overflow into the scratch area"
    table += [DONE] * (MAX_STEPS + 1 - len(table))
    put(STEP_TABLE, b"".join(u64(a) for a in table))
    return build_elf([Seg(BASE, bytes(image))], entry=ENTRY, bits=bits)


# -- operations ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Op:
    """One operation of a step: ``encode(asm, at)`` gives its bytes at address ``at`` (some
    operations refer to the address right after themselves)."""

    name: str
    args: tuple = ()

    def encode(self, asm: Asm, at: int) -> bytes:
        return ENCODERS[self.name](asm, at, *self.args)

    def __repr__(self) -> str:
        return f"{self.name}{tuple(hex(a) if isinstance(a, int) else a for a in self.args)}"


def _far_pointer(asm: Asm, offset: int, selector: int) -> bytes:
    """Store a far pointer at POINTERS (m16:32, or m16:64 in long mode)."""
    if asm.bits == 64:
        return asm.store_imm64(POINTERS, offset) + asm.store_imm32(POINTERS + 8, selector)
    return asm.store_imm32(POINTERS, offset) + asm.store_imm32(POINTERS + 4, selector)


def _with_next(asm: Asm, at: int, build) -> bytes:
    """Code whose tail needs the address right after it: ``build(next)`` must keep its length."""
    return build(at + len(build(0)))


#: Instructions worth trying anywhere, by name; memory operands are at RAX (see the "regs" operation).
ODD_INSNS = {
    "hlt": b"\xF4", "sti": b"\xFB", "cli": b"\xFA", "sti; hlt": b"\xFB\xF4", "cli; hlt": b"\xFA\xF4",
    "sti; nop; hlt": b"\xFB\x90\xF4",
    "ud2": b"\x0F\x0B", "int3": b"\xCC", "int1": b"\xF1", "into": b"\xCE", "int 0x80": b"\xCD\x80",
    "int 2": b"\xCD\x02", "int 8": b"\xCD\x08", "int 13": b"\xCD\x0D", "int 14": b"\xCD\x0E", "int 255": b"\xCD\xFF",
    "div by 0": b"\x31\xC9\xF7\xF1", "bound": b"\x62\x00", "arpl/movsxd": b"\x63\xC0",
    "syscall": b"\x0F\x05", "sysret": b"\x0F\x07", "sysretq": b"\x48\x0F\x07", "sysenter": b"\x0F\x34",
    "sysexit": b"\x0F\x35", "swapgs": b"\x0F\x01\xF8", "rdtsc": b"\x0F\x31", "rdtscp": b"\x0F\x01\xF9",
    "rdrand": b"\x0F\xC7\xF0", "wbinvd": b"\x0F\x09", "invd": b"\x0F\x08", "clts": b"\x0F\x06",
    "monitor": b"\x0F\x01\xC8", "mwait": b"\x0F\x01\xC9", "xgetbv": b"\x0F\x01\xD0", "xsetbv": b"\x0F\x01\xD1",
    "vmcall": b"\x0F\x01\xC1", "vmmcall": b"\x0F\x01\xD9", "vmrun": b"\x0F\x01\xD8", "vmload": b"\x0F\x01\xDA",
    "stgi": b"\x0F\x01\xDC", "skinit": b"\x0F\x01\xDE", "rsm": b"\x0F\xAA", "str": b"\x0F\x00\xC8",
    "sldt": b"\x0F\x00\xC0", "smsw": b"\x0F\x01\xE0", "lmsw": b"\x0F\x01\xF0", "mov cr2": b"\x0F\x20\xD0",
    "mov dr0": b"\x0F\x21\xC0", "mov dr7": b"\x0F\x23\xF8", "pushf; pop": b"\x9C\x58",
    "popf IF": b"\x68\x00\x02\x00\x00\x9D", "popf TF": b"\x68\x00\x01\x00\x00\x9D",
    "popf AC NT": b"\x68\x00\x40\x04\x00\x9D", "popf IOPL3 ID": b"\x68\x00\x30\x20\x00\x9D",
    "clflush": b"\x0F\xAE\x38", "invlpg": b"\x0F\x01\x38", "mfence": b"\x0F\xAE\xF0", "pause": b"\xF3\x90",
    "prefetch": b"\x0F\x18\x00", "prefetchw": b"\x0F\x0D\x08", "lock cmpxchg8b": b"\xF0\x0F\xC7\x08",
    "cmpxchg16b": b"\x48\x0F\xC7\x08", "fldz; fistp": b"\xD9\xEE\xDF\x38", "fxsave": b"\x0F\xAE\x00",
    "fxrstor": b"\x0F\xAE\x08", "xsave": b"\x0F\xAE\x20", "lgdt": b"\x0F\x01\x10", "lidt": b"\x0F\x01\x18",
    "lldt": b"\x0F\x00\x10", "ltr": b"\x0F\x00\x18", "mov ds": b"\x8E\x18", "mov ss": b"\x8E\x10",
    "call far": b"\xFF\x18", "jmp far": b"\xFF\x28", "call far m16:64": b"\x48\xFF\x18", "iret": b"\xCF",
    "iretq": b"\x48\xCF", "retf": b"\xCB", "retf 8": b"\xCA\x08\x00", "ret 8": b"\xC2\x08\x00",
    "call far imm": b"\x9A\x00\x00\x00\x00\x08\x00", "jmp far imm": b"\xEA\x00\x00\x10\x00\x18\x00",
}
#: What to do right after pointing the stack somewhere odd.
STACK_USERS = {"push": b"\x50", "call": b"\xE8\x00\x00\x00\x00", "int 0x80": b"\xCD\x80", "int3": b"\xCC",
               "pushf": b"\x9C", "ud2": b"\x0F\x0B", "ret": b"\xC3", "iret": b"\xCF"}


def _enc_raw(asm, at, data):
    return data


def _enc_regs(asm, at, values):
    """Point RAX, RCX, RDX, RBX, RBP, RSI and RDI at ``values``."""
    return b"".join(asm.mov_imm(reg, value) for reg, value in zip((0, 1, 2, 3, 5, 6, 7), values, strict=True))


def _enc_wrmsr(asm, at, index, value):
    return asm.wrmsr(index, value)


def _enc_rdmsr(asm, at, index):
    return asm.mov_imm(1, index) + b"\x0F\x32"


def _enc_rdpmc(asm, at, ecx):
    return asm.mov_imm(1, ecx) + b"\x0F\x33"


def _enc_cpuid(asm, at, leaf, subleaf):
    return asm.mov_imm(0, leaf) + asm.mov_imm(1, subleaf) + b"\x0F\xA2"


def _enc_port(asm, at, port, size, value, write):
    return asm.out(port, value, size) if write else asm.inp(port, size)


def _enc_string_io(asm, at, port, size, count, write):
    """REP INS/OUTS of ``count`` items between ``port`` and the scratch area."""
    op = ({1: b"\x6E", 2: b"\x66\x6F", 4: b"\x6F"} if write else {1: b"\x6C", 2: b"\x66\x6D", 4: b"\x6D"})[size]
    registers = asm.mov_imm(2, port) + asm.mov_imm(1, count) + asm.mov_imm(6, SCRATCH) + asm.mov_imm(7, SCRATCH)
    return registers + b"\xF3" + op


def _enc_mmio(asm, at, address, value, write):
    return asm.mmio_write(address, value) if write else asm.mmio_read(address)


def _enc_insn(asm, at, name):
    return ODD_INSNS[name]


def _enc_load_table(asm, at, which, limit, base):
    """LGDT (which 2) or LIDT (3) of a pseudo-descriptor at POINTERS."""
    return (asm.store_imm32(POINTERS, limit | (base << 16)) + asm.store_imm64(POINTERS + 4, base >> 16)
            + b"\x0F\x01" + asm.absolute(which, POINTERS))


def _enc_descriptor(asm, at, index, value):
    return asm.store_imm64(GDT + 8 * index, value)


def _enc_selector(asm, at, kind, selector):
    """Load ``selector`` into a segment register, the task register or the LDT register."""
    load = {"ds": b"\x8E\xD8", "es": b"\x8E\xC0", "fs": b"\x8E\xE0", "gs": b"\x8E\xE8", "ss": b"\x8E\xD0",
            "ltr": b"\x0F\x00\xD8", "lldt": b"\x0F\x00\xD0", "verr": b"\x0F\x00\xE0", "lar": b"\x0F\x02\xC0",
            "lsl": b"\x0F\x03\xC0"}[kind]
    return asm.mov_imm(0, selector) + load


def _enc_ltr_memory(asm, at, selector):
    return asm.store_imm32(POINTERS, selector) + b"\x0F\x00" + asm.absolute(3, POINTERS)


def _enc_far(asm, at, kind, selector, to_next):
    """Far JMP/CALL through a pointer (to the next instruction, or to 0) or far RET to it."""
    def build(nxt):
        target = nxt if to_next else 0
        if kind == "ret":
            return asm.mov_imm(0, selector) + b"\x50" + asm.mov_imm(0, target) + b"\x50" + asm.wide(b"\xCB")
        modrm = 5 if kind == "jmp" else 3
        return _far_pointer(asm, target, selector) + asm.wide(b"\xFF" + asm.absolute(modrm, POINTERS))
    return _with_next(asm, at, build)


def _enc_iret(asm, at, cs, ss, flags, stack, to_next):
    """IRET with a made-up frame; RIP is the next instruction (or 0)."""
    def build(nxt):
        code = asm.mov_imm(0, ss) + b"\x50" + asm.mov_imm(0, stack) + b"\x50"   # popped on a privilege change
        code += asm.mov_imm(0, flags) + b"\x50" + asm.mov_imm(0, cs) + b"\x50"
        code += asm.mov_imm(0, nxt if to_next else 0) + b"\x50" + asm.wide(b"\xCF")
        return code
    return _with_next(asm, at, build)


def _enc_control(asm, at, cr, value):
    """MOV to CR0/3/4/8 (``value`` XORed into the current CR0/CR4: flips chosen bits)."""
    if cr in (0, 4):
        return bytes([0x0F, 0x20, 0xC0 | cr << 3]) + asm.mov_imm(1, value) + asm.wide(b"\x31\xC8") \
            + bytes([0x0F, 0x22, 0xC0 | cr << 3])
    if cr == 8:
        return (asm.mov_imm(0, value) + b"\x44\x0F\x22\xC0") if asm.bits == 64 else b""
    return asm.mov_imm(0, value) + b"\x0F\x22\xD8"


def _enc_stack(asm, at, rsp, then):
    return asm.mov_imm(4, rsp) + STACK_USERS[then]


def _enc_self_modify(asm, at, offset, value):
    """Overwrite 4 bytes ``offset`` bytes past this step's own code, then run on into them."""
    def build(nxt):
        return asm.mov_imm(0, value) + asm.store_reg(nxt + offset, 0)
    return _with_next(asm, at, build) + b"\x90" * 8


def _enc_lapic_timer(asm, at, lvt, divide, count):
    return (asm.mmio_write(LAPIC + 0xF0, 0x1FF) + asm.mmio_write(LAPIC + 0x3E0, divide)
            + asm.mmio_write(LAPIC + 0x320, lvt) + asm.mmio_write(LAPIC + 0x380, count))


def _enc_pit(asm, at, mode, count):
    return asm.out(0x43, 0x30 | mode << 1, 1) + asm.out(0x40, count, 1) + asm.out(0x40, count >> 8, 1)


def _enc_rtc(asm, at, reg_b, rate):
    return asm.out(0x70, 0x0A, 1) + asm.out(0x71, 0x20 | rate, 1) + asm.out(0x70, 0x0B, 1) + asm.out(0x71, reg_b, 1)


def _enc_ioapic(asm, at, pin, entry):
    return (asm.mmio_write(IOAPIC, 0x10 + 2 * pin) + asm.mmio_write(IOAPIC + 0x10, entry)
            + asm.mmio_write(IOAPIC, 0x11 + 2 * pin) + asm.mmio_write(IOAPIC + 0x10, 0))


def _enc_pmi(asm, at, counter, lvt):
    """Arm general counter 0 to overflow after ``counter`` instructions with its PMI in LVTPC."""
    return (asm.mmio_write(LAPIC + 0xF0, 0x1FF) + asm.mmio_write(LAPIC + 0x340, lvt)
            + asm.wrmsr(0x186, 0x5300C0) + asm.wrmsr(0xC1, -counter) + asm.wrmsr(0x38F, 1))


def _enc_call_gate(asm, at, dpl):
    """A call gate (GDT entry 8, selector 0x43) to the frame's end at CPL0, and a far call through it."""
    low = (DONE & 0xFFFF) | (CODE64 if asm.bits == 64 else CODE32) << 16 | (0x8C | dpl << 5) << 40 \
        | (DONE >> 16) << 48
    gate = asm.store_imm64(GDT + 8 * 8, low) + (asm.store_imm64(GDT + 9 * 8, 0) if asm.bits == 64 else b"")
    return gate + _far_pointer(asm, 0, 8 * 8 | 3) + asm.wide(b"\xFF" + asm.absolute(3, POINTERS))


def _enc_gate(asm, at, vector):
    """Point IDT entry ``vector`` at the code right after this operation."""
    def build(nxt):
        code = CODE64 if asm.bits == 64 else CODE32
        low = (nxt & 0xFFFF) | code << 16 | 0xEE << 40 | ((nxt >> 16) & 0xFFFF) << 48
        return asm.store_imm64(IDT + vector * (16 if asm.bits == 64 else 8), low)
    return _with_next(asm, at, build)


def _enc_save(asm, at, reg, slot):
    """Store register ``reg`` (0 RAX, 1 RCX) in RESULTS slot ``slot``."""
    return asm.wide(b"\x89" + asm.absolute(reg, RESULTS + 8 * slot))


def _enc_user(asm, at, flags):
    """IRET to CPL3 at the next instruction: the rest of the step runs in user mode."""
    return _enc_iret(asm, at, USER_CODE | 3, USER_DATA | 3, flags, USER_STACK, True)


ENCODERS = {
    "raw": _enc_raw, "regs": _enc_regs, "wrmsr": _enc_wrmsr, "rdmsr": _enc_rdmsr, "rdpmc": _enc_rdpmc,
    "cpuid": _enc_cpuid, "port": _enc_port, "string_io": _enc_string_io, "mmio": _enc_mmio, "insn": _enc_insn,
    "load_table": _enc_load_table, "descriptor": _enc_descriptor, "selector": _enc_selector,
    "ltr_memory": _enc_ltr_memory, "far": _enc_far, "iret": _enc_iret, "control": _enc_control,
    "stack": _enc_stack, "self_modify": _enc_self_modify, "lapic_timer": _enc_lapic_timer, "pit": _enc_pit,
    "rtc": _enc_rtc, "ioapic": _enc_ioapic, "pmi": _enc_pmi, "user": _enc_user,
    "call_gate": _enc_call_gate, "save": _enc_save, "gate": _enc_gate,
}

# -- strategies ------------------------------------------------------------------------------------
u32s = st.integers(0, 2**32 - 1)
u64s = st.integers(0, 2**64 - 1)

#: Register values that make random memory operands land somewhere interesting.
ADDRESSES = st.one_of(st.integers(SCRATCH, SCRATCH + 0x8000), st.sampled_from([0, LAPIC, LAPIC + 0x300, IOAPIC,
                      0xFFFFFFFF, 0x8000000000000000, 0x00007FFFFFFFF000, 2**64 - 8]), u64s)
MSRS = st.one_of(st.sampled_from([
    0x10, 0x1B, 0x3A, 0x48, 0x49, 0x8B, 0xC1, 0xC2, 0xC7, 0xE7, 0xE8, 0x174, 0x175, 0x176, 0x186, 0x187, 0x1A0,
    0x1D9, 0x277, 0x309, 0x30A, 0x30B, 0x345, 0x38D, 0x38E, 0x38F, 0x390, 0x6E0, 0x802, 0x808, 0x80B, 0x80F,
    0x830, 0x832, 0x838, 0x83E, 0x83F, 0xC0000080, 0xC0000081, 0xC0000082, 0xC0000084, 0xC0000100, 0xC0000101,
    0xC0000102, 0xC0000103, 0xC0010000, 0xC0010004, 0xC0010200, 0xC001001F, 0x40000000]), u32s)
MSR_VALUES = st.one_of(st.sampled_from([0, 1, 0xFEE00900, 0xFEE00D00, 0xFEE00800, 0x200900, 0x100, 0x500, 0xD01,
                                        0x8000000000000000, 0x0000800000000000, 2**64 - 1, 0x4300C0, 0x5300C0]),
                       u64s)
PORTS = st.one_of(st.sampled_from([
    0x20, 0x21, 0x22, 0x40, 0x43, 0x60, 0x61, 0x64, 0x70, 0x71, 0x80, 0x92, 0xA0, 0xA1, 0xF3, 0xF4, 0xF5, 0xF7,
    0x3F6, 0x3F7, 0x3F8, 0x3F9, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF, 0x400, 0x4CF, 0x4D0, 0x4D1, 0x50F, 0x510,
    0x511, 0x512, 0x514, 0x518, 0x5FF, 0x600, 0x603, 0x604, 0x607, 0x608, 0x60B, 0xCF8, 0xCF9, 0xCFB, 0xCFC,
    0xCFF, 0x5657, 0x5658, 0x5659, 0x88FF, 0x8900, 0xFFFE, 0xFFFF]), st.integers(0, 0xFFFF))
LAPIC_REGS = st.sampled_from([0x20, 0x30, 0x80, 0xB0, 0xD0, 0xE0, 0xF0, 0x280, 0x300, 0x310, 0x320, 0x330, 0x340,
                              0x350, 0x360, 0x370, 0x380, 0x390, 0x3E0, 0x3F0, 0xFF0, 0xFFC])
LAPIC_VALUES = st.one_of(st.sampled_from([0, 0x1FF, 0x10000, 0x20040, 0x30040, 0x40040, 0x400, 0x4400, 0x700,
                                          0x4040, 0x44040, 0xC4040, 0xB, 0x3, 100, 0xFFFFFFFF]), u32s)
SELECTORS = st.one_of(st.sampled_from([0, 1, 3, 8, 0x10, 0x13, 0x18, 0x20, 0x23, 0x28, 0x2B, 0x30, 0x33, 0x38, 0x40,
                                       0x78, 0x7B, 0xFFFC, 0xFFFF]), st.integers(0, 0xFFFF))
DESCRIPTORS = st.one_of(
    st.builds(descriptor, st.sampled_from([0, TSS, SCRATCH, 0xFFFFF000]), st.sampled_from([0, 0x67, 0xFFFF, 0xFFFFF]),
              st.integers(0, 255), st.integers(0, 15)),
    u64s)
REGISTER_VALUES = st.tuples(*[ADDRESSES] * 7)


def _op(name: str, *args) -> st.SearchStrategy[Op]:
    return st.tuples(*args).map(lambda values: Op(name, values))


def operations() -> st.SearchStrategy[Op]:
    """One privileged or odd operation."""
    return st.one_of(
        _op("regs", REGISTER_VALUES),
        _op("wrmsr", MSRS, MSR_VALUES), _op("rdmsr", MSRS),
        _op("rdpmc", st.one_of(st.integers(0, 9), st.integers(0x40000000, 0x40000003), u32s)),
        _op("cpuid", st.one_of(st.sampled_from([0, 1, 4, 6, 7, 0xA, 0xB, 0xD, 0x40000000, 0x80000000, 0x80000001,
                                                0x80000008, 0x8000001F]), u32s), st.integers(0, 3)),
        _op("port", PORTS, st.sampled_from([1, 2, 4]), u32s, st.booleans()),
        _op("string_io", PORTS.filter(lambda p: p not in (0xF4, 0xF5, 0xF7)), st.sampled_from([1, 2, 4]),
            st.integers(0, 4), st.booleans()),
        _op("mmio", st.one_of(LAPIC_REGS.map(lambda r: LAPIC + r), st.sampled_from([IOAPIC, IOAPIC + 0x10,
                                                                                    IOAPIC + 0x40])),
            LAPIC_VALUES, st.booleans()),
        _op("insn", st.sampled_from(sorted(ODD_INSNS))),
        _op("load_table", st.sampled_from([2, 3]), st.sampled_from([0, 7, 0x27, 0x7F, 0xFF, 0xFFF, 0xFFFF]),
            st.sampled_from([GDT, IDT, SCRATCH, 0, 0xFFFFFFF0, 0x8000000000000000])),
        _op("descriptor", st.integers(1, GDT_ENTRIES - 1), DESCRIPTORS),
        _op("selector", st.sampled_from(["ds", "es", "fs", "gs", "ss", "ltr", "lldt", "verr", "lar", "lsl"]),
            SELECTORS),
        _op("ltr_memory", SELECTORS),
        _op("far", st.sampled_from(["jmp", "call", "ret"]), SELECTORS, st.booleans()),
        _op("iret", SELECTORS, SELECTORS, st.one_of(st.sampled_from([2, 0x202, 0x3002, 0x20202, 0x4002, 0x102]), u32s),
            st.one_of(st.just(USER_STACK), ADDRESSES), st.booleans()),
        _op("control", st.sampled_from([0, 3, 4, 8]),
            st.one_of(st.sampled_from([1 << 16, 1 << 18, 1 << 5, 1 << 7, 1 << 8, 1 << 9, 1 << 10, 1 << 3, 1 << 2,
                                       1 << 1, 1 << 30, 1 << 29, 1 << 17, 1 << 12, 0]), u32s)),
        _op("stack", st.sampled_from([0, 0x8000000000000000, 0x0000800000000008, 2**64 - 8, 0xFEE00100, 0x3,
                                      SCRATCH + 1]),
            st.sampled_from(sorted(STACK_USERS))),
        _op("self_modify", st.integers(0, 4), u32s),
        _op("lapic_timer", st.builds(lambda masked, mode, vector: masked << 16 | mode << 17 | vector, st.booleans(),
                                     st.integers(0, 3), st.integers(0, 255)),
            st.sampled_from([0, 1, 3, 0xB, 0xA]), st.one_of(st.integers(1, 5000), u32s)),
        _op("pit", st.integers(0, 5), st.integers(0, 0xFFFF)),
        _op("rtc", st.sampled_from([0x02, 0x42, 0x22, 0x12, 0x72, 0x40]), st.integers(0, 15)),
        _op("ioapic", st.integers(0, 24), st.builds(lambda masked, mode, vector: masked << 16 | mode << 8 | vector,
                                                    st.booleans(), st.integers(0, 7), st.integers(0, 255))),
        _op("pmi", st.integers(1, 500), st.sampled_from([0x40, 0x400, 0x10040, 0x700, 0x4])),
        _op("user", st.sampled_from([2, 0x202, 0x3202, 0x102])),
        _op("call_gate", st.integers(0, 3)),
    )


def random_code() -> st.SearchStrategy[Op]:
    """Random bytes, after registers pointed at interesting places."""
    return st.one_of(_op("raw", st.binary(min_size=1, max_size=24)), _op("regs", REGISTER_VALUES))


def plans(op: st.SearchStrategy[Op]) -> st.SearchStrategy[list[list[Op]]]:
    """Kernels' steps: lists of operations drawn from ``op``."""
    return st.lists(st.lists(op, min_size=1, max_size=8), min_size=1, max_size=24)


# -- running ---------------------------------------------------------------------------------------
#: Endings a run may have (vmm/machine.py); "error" only with one of ERROR_DETAILS.
REASONS = {"debug-exit", "poweroff", "reset", "shutdown", "halted", "timeout", "limit", "error"}
ERROR_DETAILS = ("guest fetched an instruction from MMIO", "guest fetched an instruction from unmapped physical memory")


@dataclass
class Outcome:
    status: int | None = None
    reason: str = ""
    detail: str = ""
    serial: bytes = b""
    instructions: int = 0
    wall: float = 0.0           # seconds from creating the Machine to the end of its run
    cpu: float = 0.0            # CPU seconds the worker spent on it (all threads)
    state: bytes = b""          # guest memory from STATE to the end of LOG
    crash: str = ""             # the worker died (signal / exit status and its stderr) or hung

    def _u32(self, address: int) -> int:
        return struct.unpack_from("<I", self.state, address - STATE)[0]

    @property
    def step(self) -> int:
        """The step that ran last."""
        return self._u32(STEP)

    def exceptions(self) -> list[tuple[int, int, int]]:
        """The exceptions the guest took, oldest first (the last LOG_ENTRIES): ``(vector, word1,
        word2)``, the words above the vector on the handler's stack (error code and RIP, or RIP
        and CS; 32-bit words in a 32-bit kernel)."""
        count = self._u32(LOG_COUNT)
        slots = range(max(0, count - LOG_ENTRIES), count)
        return [struct.unpack_from("<QQQ", self.state, LOG - STATE + 24 * (i % LOG_ENTRIES)) for i in slots]

    def results(self) -> list[int]:
        """The RESULTS slots ("save" operations)."""
        return list(struct.unpack_from("<16Q", self.state, RESULTS - STATE))

    def interrupts(self) -> dict[int, int]:
        """How many times each vector other than an exception (NMI 2, 32-255) was taken."""
        counts = struct.unpack_from("<256I", self.state, COUNTS - STATE)
        return {vector: n for vector, n in enumerate(counts) if n}


@dataclass
class Stats:
    """What a fuzzer did: inputs tried, failures, the longest run against its timeout."""

    runs: int = 0
    failures: int = 0
    longest: float = 0.0        # wall-clock seconds
    longest_cpu: float = 0.0
    timeout: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def note(self, outcome: Outcome, failed: bool) -> None:
        self.runs += 1
        self.failures += failed
        self.longest = max(self.longest, outcome.wall)
        self.longest_cpu = max(self.longest_cpu, outcome.cpu)
        self.reasons[outcome.reason or "crash"] = self.reasons.get(outcome.reason or "crash", 0) + 1


def problems(outcome: Outcome, timeout: float, max_insns: int) -> list[str]:
    """Everything wrong with how a run ended (empty when it ended in a documented way)."""
    found = []
    if outcome.crash:
        return [f"the VMM process died or hung: {outcome.crash}"]
    if outcome.reason not in REASONS:
        found.append(f"undocumented ending {outcome.reason!r} ({outcome.detail})")
    if outcome.reason == "error" and not outcome.detail.startswith(ERROR_DETAILS):
        found.append(f"VMM error: {outcome.detail}")
    if not outcome.serial.startswith(MARKER):
        found.append(f"serial output lost: {outcome.serial[:40]!r}")
    # A run past its timeout both in wall-clock and in CPU time: one that only waited for a CPU
    # (a loaded test machine) is not the VMM's doing.
    if outcome.wall > timeout + 2.0 and outcome.cpu > timeout + 1.0:
        found.append(f"ran {outcome.wall:.1f} s ({outcome.cpu:.1f} s of CPU) with a {timeout} s timeout")
    if max_insns and outcome.instructions > max_insns + 1000:        # a block's worth past the limit at most
        found.append(f"{outcome.instructions} instructions with a limit of {max_insns}")
    return found


class Runner:
    """Runs kernels in a worker process; a worker that dies or hangs is replaced."""

    def __init__(self, grace: float = 20.0):
        self.grace = grace          # seconds past a run's own timeout before it counts as hung
        self.proc: subprocess.Popen | None = None
        self.stderr = None          # a file, not a pipe: a worker must never block on a full pipe

    def _start(self) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.stderr = tempfile.TemporaryFile()
        return subprocess.Popen([sys.executable, "-m", "tests.guest_fuzz"], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=self.stderr)

    def run(self, image: bytes, timeout: float, max_insns: int) -> Outcome:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        request = pickle.dumps((image, timeout, max_insns))
        self.proc.stdin.write(struct.pack("<I", len(request)) + request)
        self.proc.stdin.flush()
        reply = self._read(timeout + self.grace)
        if reply is None:
            return self._lost(timeout)
        return Outcome(**pickle.loads(reply))

    def _read(self, limit: float) -> bytes | None:
        data, need, end = b"", None, time.monotonic() + limit
        out = self.proc.stdout
        while need is None or len(data) < need:
            wait = end - time.monotonic()
            if wait <= 0 or not select.select([out], [], [], wait)[0]:
                return None
            chunk = os.read(out.fileno(), 1 << 16)
            if not chunk:
                return None
            data += chunk
            if need is None and len(data) >= 4:
                need = 4 + struct.unpack_from("<I", data)[0]
        return data[4:need]

    def _lost(self, timeout: float) -> Outcome:
        proc, self.proc = self.proc, None
        hung = proc.poll() is None
        if hung:
            proc.kill()
        proc.wait()
        self.stderr.seek(0)
        stderr = self.stderr.read().decode(errors="replace")[-2000:]
        self.stderr.close()
        what = f"no answer within {timeout + self.grace:g} s" if hung else f"exit status {proc.returncode}"
        return Outcome(crash=f"{what}; stderr: {stderr}")

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
            self.stderr.close()
            self.proc = None


def _serve() -> None:
    """The worker: run each kernel it is sent, answer with its Outcome's fields."""
    from vmm.machine import Machine, MachineConfig

    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    while header := stdin.read(4):
        image, timeout, max_insns = pickle.loads(stdin.read(struct.unpack("<I", header)[0]))
        start, start_cpu = time.monotonic(), time.process_time()
        machine = Machine(MachineConfig(memory=16 << 20, serial=io.BytesIO(), timeout=timeout, max_insns=max_insns))
        machine.load(image)
        result = machine.run()
        answer = pickle.dumps(dict(status=result.status, reason=result.reason, detail=result.detail,
                                   serial=result.serial, instructions=result.instructions,
                                   wall=time.monotonic() - start, cpu=time.process_time() - start_cpu,
                                   state=bytes(machine.ram[STATE:LOG + LOG_SIZE])))
        stdout.write(struct.pack("<I", len(answer)) + answer)
        stdout.flush()
        # A machine and its engine are a reference cycle: free them now, not in a collection that
        # would land in (and lengthen) a later run.
        del machine, result
        gc.collect()


if __name__ == "__main__":
    _serve()
