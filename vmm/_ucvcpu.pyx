# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# SPDX-License-Identifier: GPL-2.0-or-later
"""The Unicorn vCPU backend: a C-level hook layer over libunicorn 2.1.4.

What it does (all hot paths are C; Python is reached only on cold paths):

* Exact instruction accounting.  A translation block's instructions are *in flight* from
  its block hook until the next block hook or until something leaves the block early (a
  fault, an emulated instruction, an injected interrupt); only then are they committed to
  the retired-instruction total (the virtual clock) and to the PMU, at the CPL the block ran
  at.  Leaving early commits exactly the instructions before the exit point, so nothing is
  ever subtracted.  REP string instructions, which re-enter their own block once per
  iteration, are committed once.
* RDMSR/WRMSR interception: the first time a block is seen it is decoded (vmm.decode); each
  RDMSR/WRMSR gets a per-address code hook, the block is dropped from the translation cache
  and restarted.  MSRs the engine models itself (EFER, STAR/LSTAR/CSTAR/FMASK, FS/GS bases,
  SYSENTER, PAT, TSC_AUX) run natively, with the SDM's canonical-address #GP added; the rest
  are exits, or C fast paths into the PMU core and (x2APIC registers) the LAPIC.  Unknown MSRs
  are a #GP in the guest.  IA32_TSC and IA32_TSC_ADJUST are this vCPU's (tsc_offset, tsc_adjust
  over the machine's one clock), each write moving the other as the SDM says; RDTSCP reads the
  engine's TSC_AUX, which WRMSR sets.
* Exceptions and interrupts are delivered through the guest IDT by the engine's own
  delivery code (IDT gates, TSS.RSP0 stack switch, error codes, CR2, #DF, triple fault),
  called from inside hooks.  RDPMC (which the engine turns into #UD, or a wrong #GP at CPL3),
  SYSCALL, CPUID, RDTSC/RDTSCP, port I/O and MMIO are emulated here; so are VMCALL and VMMCALL
  (#UD in the engine) when the platform offers hypercalls (KVM's ABI, devices/kvm_pv.py).
* Port I/O (IN/OUT) and MOV to/from CR8 are emulated in per-instruction hooks too, so an
  interrupt or NMI they raise is taken right after them; port I/O at CPL > IOPL is checked
  against the TSS I/O bitmap here (the engine does not), VMware backdoor ports exempt.
* Interrupt injection and timers: a block hook checks one attention flag and the pending-
  interrupt flags; NMIs are delivered whatever RFLAGS.IF says (until the guest's IRET
  unmasks the next), maskable interrupts when IF=1 and no STI/MOV SS shadow is active; a
  block that starts in a shadow with an interrupt waiting is cut after its first instruction.
* Zero-skid counter overflow: when an instruction/cycle counter would overflow before the
  block's last instruction, the block is re-translated to end right after the overflowing
  instruction (an engine "exit"), so status and PMI land before the next instruction.
* Bulk retirement of self-loops: a block that is exactly ``loop .`` (either address size),
  ``1: dec reg; jnz 1b`` (any GPR, 16/32/64-bit, jnz rel8/rel32) or ``jmp .`` is recognised when
  first decoded.  At its block hook, once every check found nothing to do, as many iterations as
  run one by one would retire before any hook had something to do are retired at once
  (bulk_retire: up to the iteration before the loop falls through, the deadline, the instruction
  limit or the first counter overflow), the counter register and DEC's flags are set as the engine
  would leave them, and the block restarts, so its hook sees exactly what the one-by-one run saw
  there.  Refused in an interrupt shadow, with TF or DR7 breakpoints, and while a branch-miss or a
  CMASK/INV/EDGE counter runs.  ``bulk_loops = False`` turns it off (tests/test_bulk_loops.py runs
  every form both ways).
* CPUID is answered from a C copy of the handler's CpuidModel (``handler.cpuid``, through
  CpuidModel.entries()), rebuilt whenever the model's generation moves; CPUID.1:ECX.OSXSAVE is
  taken from this vCPU's CR4.  While exits are traced (``handler.trace`` set) CPUID is an exit to
  the handler as before, so traces keep listing it.
* Event models, paid for only while a counter uses them: the LLC model (vmm._uarch) behind a
  memory-access hook that exists only while an LLC event is counted, with CLFLUSH/WBINVD/INVD
  reported to it; the branch predictor model consulted at the next block boundary for the
  previous block's final branch while a branch-miss counter runs.

* No guest state makes the engine abort the process or spin where run() cannot stop it: TR
  starts as a CPU leaves reset (the engine's all-zero TR makes its first stack switch through the
  TSS abort), LTR of a null selector is a #GP(0) (the engine would load a not-present TR), a fault
  while delivering a #DF is a triple fault even when the engine stops by itself, and a run that
  is ending delivers no more exceptions (a delivery that reads unmapped memory would otherwise be
  retried inside the engine for ever).  HLT is the engine's halted state, not a look at the byte
  before RIP.  Reads of guest memory made for the hook layer itself (instruction bytes, the TSS
  I/O bitmap, operands) leave CR2 alone when they fail.
* Physical memory with neither RAM nor a device reads all-ones and drops writes, as on a PC: the
  first access maps the gap around it (at most one aligned GiB) as a "void" MMIO region that only
  counts accesses; ``strict_memory`` ends the run there instead, and an instruction fetch from
  unmapped memory always does.
* Stop requests are kept until reported: one made while the guest is not running (the machine's
  HLT wait, a signal handler) ends the next run() or service().

It relies on private engine internals (the CPU state pointer and field offsets of QEMU 5.0.1
inside unicorn 2.1.4, CPUState.halted); :func:`self_test` checks every one of them at start-up
and fails with a clear message on a mismatch.

Not supported: more than one vCPU per engine, SYSENTER/SYSEXIT from 64-bit user code, executing
from an MMIO window (the run ends with an internal error), self-modifying code that keeps a
block's address and size but changes its instructions (the decoded-block cache is keyed by
address and size: the accounting of that block goes wrong).  An interrupt made pending by an MMIO
access (e.g. a self-IPI through the xAPIC page) is taken at the next block boundary, a few
instructions late; overflows of LLC and branch-miss counters raise their PMI at the next block
boundary (the instruction/cycle/branch counters have zero skid).  SYSCALL loads CS/SS through
the guest's GDT descriptors at STAR (real CPUs use fixed flat values).  SYSCALL outside 64-bit code
is #UD on Intel and goes to CSTAR (compatibility mode) or STAR[31:0] (legacy mode) on AMD.
"""

from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcpy, memset

import ctypes
import time

import unicorn
from unicorn import unicorn_const as ucc
from unicorn import x86_const as uxc
from unicorn.unicorn_py3 import unicorn as _ucmod

from devices.lapic cimport LAPIC_DONE, LAPIC_GP, LAPIC_UNHANDLED, Lapic
from pmu._core cimport PmuCore
from vmm._uarch cimport BranchPredictor, CacheModel

from devices.bus import Fault
cimport cython

cdef extern from *:
    int __builtin_popcountll(unsigned long long x) nogil

from vmm import cpuid as _cpuid
from vmm import decode
from vmm.decode import decode_block, memory_operand
from vmm.exits import Exit, ExitKind

# ---------------------------------------------------------------------------------------
# libunicorn entry points, resolved at run time from the library the Python binding loaded
# (same engine instance, no link-time path to get wrong).

ctypedef int (*fn_hook_add)(void*, size_t*, int, void*, void*, uint64_t, uint64_t, ...) noexcept nogil
ctypedef int (*fn_hook_del)(void*, size_t) noexcept nogil
ctypedef int (*fn_reg)(void*, int, void*) noexcept nogil
ctypedef int (*fn_emu_start)(void*, uint64_t, uint64_t, uint64_t, size_t) noexcept nogil
ctypedef int (*fn_emu_stop)(void*) noexcept nogil
ctypedef int (*fn_ctl)(void*, int, ...) noexcept nogil
ctypedef int (*fn_vmem_read)(void*, uint64_t, int, void*, size_t) noexcept nogil
ctypedef int (*fn_vmem_write)(void*, uint64_t, int, void*, size_t) noexcept nogil
ctypedef int (*fn_mmio_map)(void*, uint64_t, size_t, void*, void*, void*, void*) noexcept nogil
ctypedef int (*fn_mem_unmap)(void*, uint64_t, size_t) noexcept nogil
ctypedef void (*fn_do_interrupt)(void*) noexcept nogil
ctypedef void (*fn_hardirq)(void*, int, int) noexcept nogil
ctypedef void (*fn_load_seg)(void*, int, int) noexcept nogil

cdef fn_hook_add uc_hook_add
cdef fn_hook_del uc_hook_del
cdef fn_reg uc_reg_read
cdef fn_reg uc_reg_write
cdef fn_emu_start uc_emu_start
cdef fn_emu_stop uc_emu_stop
cdef fn_ctl uc_ctl
cdef fn_vmem_read uc_vmem_read
cdef fn_vmem_write uc_vmem_write
cdef fn_mmio_map uc_mmio_map
cdef fn_mem_unmap uc_mem_unmap
cdef fn_do_interrupt x86_do_interrupt
cdef fn_hardirq x86_hardirq
cdef fn_load_seg x86_load_seg


cdef uintptr_t _sym(lib, str name) except 0:
    return <uintptr_t> ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


cdef void _resolve() except *:
    global uc_hook_add, uc_hook_del, uc_reg_read, uc_reg_write, uc_emu_start, uc_emu_stop, uc_ctl
    global uc_vmem_read, uc_vmem_write, uc_mmio_map, uc_mem_unmap, x86_do_interrupt, x86_hardirq, x86_load_seg
    lib = _ucmod.uclib
    uc_hook_add = <fn_hook_add> _sym(lib, "uc_hook_add")
    uc_hook_del = <fn_hook_del> _sym(lib, "uc_hook_del")
    uc_reg_read = <fn_reg> _sym(lib, "uc_reg_read")
    uc_reg_write = <fn_reg> _sym(lib, "uc_reg_write")
    uc_emu_start = <fn_emu_start> _sym(lib, "uc_emu_start")
    uc_emu_stop = <fn_emu_stop> _sym(lib, "uc_emu_stop")
    uc_ctl = <fn_ctl> _sym(lib, "uc_ctl")
    uc_vmem_read = <fn_vmem_read> _sym(lib, "uc_vmem_read")
    uc_vmem_write = <fn_vmem_write> _sym(lib, "uc_vmem_write")
    uc_mmio_map = <fn_mmio_map> _sym(lib, "uc_mmio_map")
    uc_mem_unmap = <fn_mem_unmap> _sym(lib, "uc_mem_unmap")
    x86_do_interrupt = <fn_do_interrupt> _sym(lib, "x86_cpu_do_interrupt_x86_64")
    x86_hardirq = <fn_hardirq> _sym(lib, "do_interrupt_x86_hardirq_x86_64")
    x86_load_seg = <fn_load_seg> _sym(lib, "cpu_x86_load_seg_x86_64")


_resolve()

# ---------------------------------------------------------------------------------------
# Engine constants (from the binding, so a renumbering cannot slip by) and private layout.

cdef int HOOK_INTR = ucc.UC_HOOK_INTR
cdef int HOOK_INSN = ucc.UC_HOOK_INSN
cdef int HOOK_CODE = ucc.UC_HOOK_CODE
cdef int HOOK_BLOCK = ucc.UC_HOOK_BLOCK
cdef int HOOK_MEM_UNMAPPED = ucc.UC_HOOK_MEM_UNMAPPED
cdef int HOOK_MEM_ACCESS = ucc.UC_HOOK_MEM_READ | ucc.UC_HOOK_MEM_WRITE
cdef int CTL_TB_FLUSH = ucc.UC_CTL_TB_FLUSH
cdef int HOOK_INSN_INVALID = ucc.UC_HOOK_INSN_INVALID
cdef int INS_IN = uxc.UC_X86_INS_IN
cdef int INS_OUT = uxc.UC_X86_INS_OUT
cdef int INS_SYSCALL = uxc.UC_X86_INS_SYSCALL
cdef int INS_CPUID = uxc.UC_X86_INS_CPUID
cdef int INS_RDTSC = uxc.UC_X86_INS_RDTSC
cdef int INS_RDTSCP = uxc.UC_X86_INS_RDTSCP
cdef int REG_RIP = uxc.UC_X86_REG_RIP
cdef int REG_RFLAGS = uxc.UC_X86_REG_RFLAGS
cdef int REG_DR7 = uxc.UC_X86_REG_DR7
cdef int REG_MSR = uxc.UC_X86_REG_MSR
cdef int CTL_IO_WRITE = 1
cdef int CTL_TB_REMOVE_CACHE = ucc.UC_CTL_TB_REMOVE_CACHE
cdef int CTL_UC_EXITS = ucc.UC_CTL_UC_EXITS
cdef int CTL_UC_USE_EXITS = ucc.UC_CTL_UC_USE_EXITS
cdef int ERR_FETCH_PROT = ucc.UC_ERR_FETCH_PROT

cdef inline int ctl_write(int ctl, int nargs) noexcept nogil:
    return ctl | (nargs << 26) | (CTL_IO_WRITE << 30)

# Offsets inside CPUX86State (QEMU 5.0.1 in unicorn 2.1.4), verified by self_test().
DEF OFF_REGS = 0
DEF OFF_EIP = 128
DEF OFF_EFLAGS = 136
DEF OFF_HFLAGS = 176
DEF OFF_HFLAGS2 = 180
DEF OFF_SEGS = 184                  # segment caches ES, CS, SS, DS, FS, GS: 24 bytes each, base at +8
DEF SEG_CACHE_SIZE = 24
DEF SEG_BASE = 8
DEF OFF_TR_BASE = 360               # segment cache of TR: base, limit, flags
DEF OFF_TR_LIMIT = 368
DEF OFF_CR = 424
DEF OFF_OLD_EXCEPTION = 5496        # the exception being delivered (-1: none), what turns a second fault into #DF
DEF UC_CPU_SLOT_FROM_REG_READ = 38   # CPUState* is this many pointer slots after reg_read_x86_64
DEF CPU_ENV_SLOT = 37                # CPUState field holding the CPUX86State* (env_ptr)
DEF CPU_HALTED_BEFORE_UC = 16        # CPUState.halted lies this many bytes before CPUState.uc
DEF TR_RESET_LIMIT = 0xFFFF
DEF TR_RESET_FLAGS = 0x8900          # present, available 32-bit TSS

DEF HF_CPL_MASK = 3
DEF HF_INHIBIT_IRQ = 1 << 3
DEF HF_CS32 = 1 << 4
DEF HF_LMA = 1 << 14
DEF HF_CS64 = 1 << 15
DEF CR0_PE = 1
DEF HF2_NMI_MASK = 1 << 2
DEF EFLAGS_IF = 1 << 9
DEF EFLAGS_TF = 1 << 8
DEF EFLAGS_DEC = (1 << 2) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 11)   # PF AF ZF SF OF: what DEC sets
DEF EFLAGS_IOPL_SHIFT = 12
DEF EFLAGS_VM = 1 << 17
DEF EFER_ALLOWED = (1 << 0) | (1 << 8) | (1 << 10) | (1 << 11)   # SCE, LME, LMA, NXE
DEF MSR_EFER = 0xC0000080
DEF R_RAX = 0
DEF R_RCX = 1
DEF R_RDX = 2
DEF R_RBX = 3
DEF R_RSP = 4
DEF R_RSI = 6
DEF SEG_CS = 1
DEF SEG_SS = 2
DEF SEG_FS = 4
DEF PAGE_SIZE = 0x1000
DEF PROT_READ = 1                   # uc_prot for uc_vmem_read: data read, instruction fetch
DEF PROT_WRITE = 2
DEF PROT_EXEC = 4

DEF EXC_UD = 6
DEF EXC_GP = 13
DEF VEC_NMI = 2

# Block flags as C constants (hot paths must not touch Python names); they are vmm.decode's,
# which the check below enforces at import.
DEF ENDS_IN_BRANCH = 1
DEF STARTS_WITH_REP = 2
DEF ENDS_WITH_REP = 4
DEF BRANCH_CONDITIONAL = 8
DEF BRANCH_INDIRECT = 16
DEF BRANCH_RETURN = 32
DEF BRANCH_CALL = 64
if (decode.ENDS_IN_BRANCH, decode.STARTS_WITH_REP, decode.ENDS_WITH_REP, decode.BRANCH_CONDITIONAL,
        decode.BRANCH_INDIRECT, decode.BRANCH_RETURN, decode.BRANCH_CALL) != (1, 2, 4, 8, 16, 32, 64):
    raise ImportError("vmm.decode block flags differ from the hook layer's C constants")

# Generic PMU events (pmu/events.py) the block accounting feeds.
DEF EV_CORE_CYCLES = 0
DEF EV_INSTRUCTIONS = 1
DEF EV_REF_CYCLES = 2
DEF EV_LLC_REFS = 3
DEF EV_LLC_MISSES = 4
DEF EV_BRANCHES = 5
DEF EV_BRANCH_MISSES = 6
DEF EV_COND_BRANCHES = 8
DEF CYCLE_EVENTS = (1 << EV_CORE_CYCLES) | (1 << EV_INSTRUCTIONS) | (1 << EV_REF_CYCLES)
DEF CACHE_EVENTS = (1 << EV_LLC_REFS) | (1 << EV_LLC_MISSES)
DEF NUM_PMU_EVENTS = 9

# Why run() returned.
DEF STOP_NONE = 0
DEF STOP_REQUESTED = 1
DEF STOP_SHUTDOWN = 2
DEF STOP_ERROR = 3
DEF STOP_LIMIT = 4
DEF MAX_ENTRY_S = 86400.0   # seconds of wall-clock timeout one engine entry may have
DEF STOP_YIELD = 5      # the lowest priority: any other reason replaces it

# MSRs the engine models itself; writes of non-canonical addresses to some of them #GP.
DEF MSR_TSC = 0x10
DEF MSR_TSC_ADJUST = 0x3B           # emulated here, with the TSC (CPUID.7:EBX[1] says it exists)
DEF MSR_TSC_AUX = 0xC0000103        # the engine's: RDTSCP reads it from there
DEF MSR_HIGH = 0xC0000000

cdef inline bint msr_is_native(uint32_t index) noexcept nogil:
    cdef uint32_t hi
    if index == 0x174 or index == 0x175 or index == 0x176 or index == 0x277 or index == 0x1A0:
        return True
    hi = index - <uint32_t> MSR_HIGH
    return (hi >= 0x80 and hi <= 0x84) or (hi >= 0x100 and hi <= 0x103)   # EFER..FMASK, FS/GS/KGS_BASE, TSC_AUX


cdef inline bint msr_needs_canonical(uint32_t index) noexcept nogil:
    cdef uint32_t hi = index - <uint32_t> MSR_HIGH
    return index == 0x175 or index == 0x176 or hi == 0x82 or hi == 0x83 or (hi >= 0x100 and hi <= 0x102)


cdef inline bint canonical(uint64_t v) noexcept nogil:
    cdef int64_t s = <int64_t>(v << 16) >> 16
    return <uint64_t>s == v


# CPUID bits that follow the vCPU's state (vmm/cpuid.py's, which the C path copies).
cdef uint32_t CPUID_XSAVE = _cpuid.XSAVE_BIT
cdef uint32_t CPUID_OSXSAVE = _cpuid.OSXSAVE_BIT
cdef uint64_t CR4_OSXSAVE = _cpuid.CR4_OSXSAVE


cdef struct CpuidEntry:
    uint32_t leaf
    uint32_t subleaf
    uint32_t takes_subleaf
    uint32_t regs[4]


# ExitKind members by value: building an enum from an int on every exit costs more than the exit.
cdef tuple EXIT_KINDS = tuple(sorted(ExitKind, key=int))

# ---------------------------------------------------------------------------------------
# Decoded-block cache: open addressing keyed by (address, size).

cdef struct Block:
    uint64_t addr
    uint32_t size
    uint16_t n            # instructions
    uint8_t flags         # vmm.decode flags
    uint8_t used
    uint16_t *offs        # n instruction offsets
    uint8_t loop_kind     # a self-loop bulk_retire() can run many iterations of at once (LOOP_*)
    uint8_t loop_reg      # its counter register (RCX for LOOP, the DEC's register)
    uint8_t loop_bits     # the counter's width: LOOP's address size, DEC's operand size


# Self-loops: blocks that jump to their own first instruction with effects on one register (and
# the flags) only, whose iterations can be retired in bulk (UcVcpu.bulk_retire).
DEF HYPERVISOR_BASE = 0x40000000   # the first hypervisor CPUID leaf (vmm.cpuid)
DEF LOOP_NONE = 0
DEF LOOP_LOOP = 1         # loop .            (E2 FE, or 67 E2 FD: the other address size)
DEF LOOP_DEC_JNZ = 2      # 1: dec reg; jnz 1b (any GPR, 16/32/64-bit; jnz rel8 or rel32)
DEF LOOP_JMP = 3          # jmp .             (EB FE, E9 rel32/rel16 to itself)
DEF BULK_MAX = 1 << 32    # iterations per bulk step: keeps retired far from wrapping in an endless jmp .


cdef void classify_loop(Block *b, const uint8_t *c, int bits) noexcept:
    """Mark ``b`` (decoded from the bytes ``c`` in ``bits``-bit code) if it is one of the exact
    self-loop forms above; anything else (other prefixes, other registers, other targets) is not."""
    cdef uint32_t size = b.size, o
    cdef int i = 0, rel
    cdef uint8_t rex = 0
    cdef bint opsize = False
    b.loop_kind = LOOP_NONE
    if b.n == 1:
        if size == 2 and c[0] == 0xE2 and c[1] == 0xFE:
            b.loop_kind = LOOP_LOOP
            b.loop_reg = R_RCX
            b.loop_bits = bits
        elif size == 3 and c[0] == 0x67 and c[1] == 0xE2 and c[2] == 0xFD:
            b.loop_kind = LOOP_LOOP
            b.loop_reg = R_RCX
            b.loop_bits = 16 if bits == 32 else 32
        elif (size == 2 and c[0] == 0xEB and c[1] == 0xFE) or \
                (bits != 16 and size == 5 and c[0] == 0xE9 and c[1] == 0xFB and c[2] == 0xFF and c[3] == 0xFF
                 and c[4] == 0xFF) or (bits == 16 and size == 3 and c[0] == 0xE9 and c[1] == 0xFD and c[2] == 0xFF):
            b.loop_kind = LOOP_JMP
        return
    if b.n != 2:
        return
    o = b.offs[1]       # jnz back to the dec
    if size - o == 2 and c[o] == 0x75:
        rel = <int8_t> c[o + 1]
    elif bits != 16 and size - o == 6 and c[o] == 0x0F and c[o + 1] == 0x85:
        rel = <int32_t> (c[o + 2] | (c[o + 3] << 8) | (c[o + 4] << 16) | (<uint32_t> c[o + 5] << 24))
    else:
        return
    if rel != -<int> size:
        return
    if c[i] == 0x66:
        opsize = True
        i += 1
    if bits == 64 and (c[i] & 0xF0) == 0x40:
        rex = c[i]
        i += 1
    if bits != 64 and (c[i] & 0xF8) == 0x48 and <uint32_t> (i + 1) == o:
        b.loop_reg = c[i] & 7                               # dec r16/r32 (one byte, not in 64-bit code)
    elif c[i] == 0xFF and (c[i + 1] & 0xF8) == 0xC8 and <uint32_t> (i + 2) == o:
        b.loop_reg = (c[i + 1] & 7) | ((rex & 1) << 3)      # dec r/m16/32/64, register form
    else:
        return
    if rex & 8:
        b.loop_bits = 64
    elif bits == 16:
        b.loop_bits = 32 if opsize else 16
    else:
        b.loop_bits = 16 if opsize else 32
    b.loop_kind = LOOP_DEC_JNZ


@cython.final
cdef class BlockTable:
    cdef Block *slots
    cdef Block *last        # the block found last (slots move when the table grows: reset then)
    cdef size_t cap
    cdef size_t count

    def __cinit__(self):
        self.cap = 1 << 14
        self.slots = <Block*> calloc(self.cap, sizeof(Block))
        if self.slots == NULL:
            raise MemoryError()

    def __dealloc__(self):
        self._free_offs()
        free(self.slots)

    cdef void _free_offs(self) noexcept:
        cdef size_t i
        for i in range(self.cap):
            if self.slots[i].used:
                free(self.slots[i].offs)

    cdef inline size_t _hash(self, uint64_t addr, uint32_t size) noexcept nogil:
        cdef uint64_t h = (addr ^ (<uint64_t>size << 48)) * <uint64_t>0x9E3779B97F4A7C15
        return <size_t>(h >> 20) & (self.cap - 1)

    cdef Block* find(self, uint64_t addr, uint32_t size) noexcept nogil:
        cdef size_t i
        if self.last != NULL and self.last.addr == addr and self.last.size == size:
            return self.last        # loops re-enter the same block: skip the hash
        i = self._hash(addr, size)
        while self.slots[i].used:
            if self.slots[i].addr == addr and self.slots[i].size == size:
                self.last = &self.slots[i]
                return self.last
            i = (i + 1) & (self.cap - 1)
        return NULL

    cdef Block* insert(self, uint64_t addr, uint32_t size, offsets, uint8_t flags) except NULL:
        if (self.count + 1) * 2 > self.cap:
            self._grow()
        cdef size_t i = self._hash(addr, size)
        while self.slots[i].used:
            i = (i + 1) & (self.cap - 1)
        cdef Block *b = &self.slots[i]
        b.addr = addr
        b.size = size
        b.n = len(offsets)
        b.flags = flags
        b.offs = <uint16_t*> malloc(sizeof(uint16_t) * b.n)
        if b.offs == NULL:
            raise MemoryError()
        cdef int k
        for k in range(b.n):
            b.offs[k] = offsets[k]
        b.used = 1
        self.count += 1
        return b

    cdef void _grow(self) except *:
        cdef Block *old = self.slots
        cdef size_t old_cap = self.cap, i, j
        self.last = NULL
        self.cap *= 2
        self.slots = <Block*> calloc(self.cap, sizeof(Block))
        if self.slots == NULL:
            raise MemoryError()
        for i in range(old_cap):
            if old[i].used:
                j = self._hash(old[i].addr, old[i].size)
                while self.slots[j].used:
                    j = (j + 1) & (self.cap - 1)
                self.slots[j] = old[i]
        free(old)


cdef inline int index_in_block(Block *b, uint64_t rip) noexcept nogil:
    """Instructions of ``b`` that lie before ``rip`` (all of them if rip is past the block)."""
    cdef uint64_t off
    cdef int k
    if rip < b.addr or rip >= b.addr + b.size:
        return b.n
    off = rip - b.addr
    for k in range(b.n):
        if b.offs[k] >= off:
            return k
    return b.n


# ---------------------------------------------------------------------------------------
# MMIO windows: the engine calls these with an offset into the mapped region.

cdef struct MmioRegion:
    void *vcpu
    uint64_t base


DEF MAX_MMIO = 8
DEF PHYS_LIMIT = 1 << 52            # the architectural limit of physical addresses (MAXPHYADDR <= 52)
DEF VOID_CHUNK = 1 << 30            # the largest void region (see UcVcpu.map_void)
DEF MAX_VOIDS = 4096


cdef uint64_t _mmio_read(void *uc, uint64_t offset, unsigned size, void *ud) noexcept:
    cdef MmioRegion *r = <MmioRegion*> ud
    return (<UcVcpu> r.vcpu)._py_mmio(ExitKind.MMIO_READ, r.base + offset, size, 0)


cdef void _mmio_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) noexcept:
    cdef MmioRegion *r = <MmioRegion*> ud
    (<UcVcpu> r.vcpu)._py_mmio(ExitKind.MMIO_WRITE, r.base + offset, size, value)


# ---------------------------------------------------------------------------------------
# Hook trampolines: user_data is the UcVcpu.

cdef void _on_block(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    (<UcVcpu> ud).on_block(address, size)

cdef void _on_hooked_insn(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    (<UcVcpu> ud).on_hooked_insn(address)

cdef void _on_intr(void *uc, uint32_t intno, void *ud) noexcept:
    (<UcVcpu> ud).on_intr(intno)

cdef int _on_invalid(void *uc, void *ud) noexcept:
    return (<UcVcpu> ud).on_invalid()

cdef uint32_t _on_in(void *uc, uint32_t port, int size, void *ud) noexcept:
    return (<UcVcpu> ud).on_in(port, size)

cdef void _on_out(void *uc, uint32_t port, int size, uint32_t value, void *ud) noexcept:
    (<UcVcpu> ud).on_out(port, size, value)

cdef void _on_syscall(void *uc, void *ud) noexcept:
    (<UcVcpu> ud).on_syscall()

cdef int _on_cpuid(void *uc, void *ud) noexcept:
    return (<UcVcpu> ud).on_cpuid()

cdef int _on_rdtsc(void *uc, void *ud) noexcept:
    return (<UcVcpu> ud).on_rdtsc(False)

cdef int _on_rdtscp(void *uc, void *ud) noexcept:
    return (<UcVcpu> ud).on_rdtsc(True)

cdef int _on_mem_access(void *uc, int access, uint64_t address, int size, int64_t value, void *ud) noexcept:
    (<UcVcpu> ud).on_mem_access(address, size)
    return 1


cdef int _on_unmapped(void *uc, int access, uint64_t address, int size, int64_t value, void *ud) noexcept:
    return (<UcVcpu> ud).on_unmapped(access, address, size)


# Physical memory with neither RAM nor a device behind it (the platform rule: reads all-ones, writes
# dropped), mapped on first access as "void" MMIO regions whose callbacks only count.
cdef uint64_t _void_read(void *uc, uint64_t offset, unsigned size, void *ud) noexcept:
    (<UcVcpu> ud).unmapped_reads += 1
    return <uint64_t> -1 if size >= 8 else ((<uint64_t> 1 << (8 * size)) - 1)


cdef void _void_write(void *uc, uint64_t offset, unsigned size, uint64_t value, void *ud) noexcept:
    (<UcVcpu> ud).unmapped_writes += 1


cdef struct MsrArg:
    uint32_t rid
    uint64_t value


cdef int _locate(void *uc, void **cpu, char **env, uint32_t **halted) except -1:
    """Find the engine's private CPU state from its handle: the CPUState, its CPUX86State (env) and
    CPUState.halted, which sits just before CPUState's back pointer to the engine."""
    cdef uint64_t rax = 0
    uc_reg_read(uc, uxc.UC_X86_REG_RAX, &rax)   # the engine initialises lazily
    lib = _ucmod.uclib
    cdef uintptr_t rr = _sym(lib, "reg_read_x86_64")
    cdef uintptr_t rw = _sym(lib, "reg_write_x86_64")
    cdef uintptr_t *words = <uintptr_t*> uc
    cdef int i, slot = -1
    for i in range(512):
        if words[i] == rr and words[i + 1] == rw:
            slot = i
            break
    if slot < 0:
        raise RuntimeError("unicorn self-test: reg_read_x86_64 not found in the engine struct "
                           "(not unicorn 2.1.4 x86_64?)")
    cpu[0] = <void*> words[slot + UC_CPU_SLOT_FROM_REG_READ]
    env[0] = <char*> (<uintptr_t*> cpu[0])[CPU_ENV_SLOT]
    if env[0] == NULL or <uintptr_t> env[0] < <uintptr_t> cpu[0] \
            or <uintptr_t> env[0] > <uintptr_t> cpu[0] + 0x20000:
        raise RuntimeError("unicorn self-test: CPUX86State pointer not where unicorn 2.1.4 keeps it")
    # CPUState ends before env (both live in one X86CPU object): its `uc` field is the first
    # pointer back to the engine after env_ptr.
    words = <uintptr_t*> cpu[0]
    for i in range(CPU_ENV_SLOT + 1, (<uintptr_t> env[0] - <uintptr_t> cpu[0]) // sizeof(uintptr_t)):
        if words[i] == <uintptr_t> uc:
            halted[0] = <uint32_t*> (<char*> &words[i] - CPU_HALTED_BEFORE_UC)
            return 0
    raise RuntimeError("unicorn self-test: CPUState.uc not found (not unicorn 2.1.4 x86_64?)")


cdef object _hlt_check = None


cdef bint _halted_flag_tracks_hlt() except -1:
    """On a scratch engine: the halted flag _locate() finds stays clear when a run stops for another
    reason and is set by HLT.  Checked once per process (a scratch engine costs about a millisecond)."""
    global _hlt_check
    cdef void *cpu
    cdef char *env
    cdef uint32_t *halted
    if _hlt_check is None:
        scratch = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
        scratch.mem_map(0x1000, PAGE_SIZE)
        scratch.mem_write(0x1000, b"\x90\xf4")     # nop; hlt
        _locate(<void*> <uintptr_t> scratch._uch.value, &cpu, &env, &halted)
        scratch.emu_start(0x1000, 0x2000, count=1)
        stopped_by_count = halted[0] == 0
        scratch.emu_start(0x1001, 0x2000)
        _hlt_check = stopped_by_count and halted[0] == 1 and scratch.reg_read(uxc.UC_X86_REG_RIP) == 0x1002
    return _hlt_check


# ---------------------------------------------------------------------------------------

@cython.final
cdef class UcVcpu:
    """One vCPU on a unicorn engine.  ``handler`` answers exits (vmm.dispatch.Dispatcher)."""

    cdef void *uc
    cdef char *env
    cdef void *cpu
    cdef uint32_t *engine_halted  # the engine's CPUState.halted: set by HLT, cleared by each emu_start
    cdef object engine           # the binding's Uc, kept alive
    cdef public object handler   # .handle(Exit) -> int | Fault | tuple | None (vmm.dispatch.Dispatcher)
    cdef public object platform  # .backdoor(port, regs), .read_cr8(), .write_cr8(value)
    cdef public object intc      # interrupt source: .next_injection() -> (vector, is_nmi) | None
    cdef public object on_attention  # called on the vCPU side when kick()ed (timers, PMIs, work)
    cdef BlockTable blocks
    cdef set hooked_insns
    cdef list work
    cdef MmioRegion mmio[MAX_MMIO]
    cdef int n_mmio
    cdef list voids                   # [(begin, end)] of the void regions mapped (see map_void)
    cdef public bint strict_memory    # an access to unmapped physical memory ends the run instead
    cdef public uint64_t unmapped_reads    # accesses to void regions (the engine splits wide ones)
    cdef public uint64_t unmapped_writes

    # accounting
    cdef Block *cur
    cdef int cur_done            # instructions of cur already committed
    cdef int cur_cpl
    cdef uint64_t rep_addr       # address of the REP string instruction the last block ended in
    cdef public uint64_t retired
    cdef public uint64_t tsc_offset

    # control
    cdef public bint in_guest
    cdef public bint attention
    cdef public bint irq_pending
    cdef public bint nmi_check        # an NMI may be waiting: deliverable whatever RFLAGS.IF says
    cdef public bint forced_emulation
    cdef public bint sync_translations  # an IRET to itself drops translations (SMP: other vCPUs write code)
    cdef public uint64_t translation_flushes   # how often it did
    cdef public bint others_ran        # another vCPU ran since the last flush (only they can rewrite code unseen)
    cdef public int vcpu_id
    cdef public uint64_t deadline     # virtual ns at which on_attention must run (timers)
    cdef public uint64_t clock_offset # machine time not retired by this vCPU: HLT skips, other vCPUs' work
    cdef public uint64_t max_insns
    cdef int stop_reason
    cdef object stop_text
    cdef bint delivering_df      # set while the engine delivers a #DF; still set later = triple fault
    cdef bint stop_mid_block     # the engine stops before an instruction inside a block (a debugger's break)
    cdef public int64_t tsc_adjust   # IA32_TSC_ADJUST: what WRMSRs to the TSC and to it have added

    # PMU (None when the machine has none): C fast paths for its MSRs, RDPMC and counting
    cdef PmuCore pmu
    cdef Lapic lapic                        # x2APIC MSRs take its C path (None: all through the bus)
    cdef public CacheModel cache            # feeds LLC references/misses while a counter needs them
    cdef public BranchPredictor predictor   # feeds branch misses while a counter needs them
    cdef size_t mem_hook                    # the memory-access hook, 0 while no LLC event is counted
    cdef uint64_t br_addr                   # the last retired branch, waiting for its outcome
    cdef uint64_t br_fallthrough
    cdef uint8_t br_flags
    cdef int br_cpl
    cdef uint64_t trunc_exit          # exit address armed to stop right after an overflowing instruction
    cdef uint64_t cycle_budget        # see stop_at_overflow(); 0 = unknown
    cdef public bint bulk_loops       # retire self-loop iterations in bulk (bulk_retire); off: one by one
    # CPUID's C path: a copy of the handler's CpuidModel (load_cpuid), valid for one generation of it
    cdef object cpuid_model
    cdef object cpuid_generation
    cdef CpuidEntry *cpuid_table
    cdef int cpuid_len
    cdef uint32_t cpuid_max_basic
    cdef uint32_t cpuid_max_hypervisor   # 0: no hypervisor leaves
    cdef uint32_t cpuid_max_ext
    cdef int cpuid_osxsave            # 1: OSXSAVE follows this vCPU's CR4, 0: never set, -1: no C path
    cdef public uint64_t bulk_iterations  # iterations retired in bulk so far (tests, statistics)
    cdef int lapic_status             # status of the last x2APIC access through the LAPIC's C path

    def __cinit__(self):
        self.blocks = BlockTable()
        self.cache = CacheModel()
        self.predictor = BranchPredictor()
        self.hooked_insns = set()
        self.work = []
        self.voids = []
        self.deadline = <uint64_t> -1
        self.max_insns = <uint64_t> -1
        self.bulk_loops = True

    def __dealloc__(self):
        free(self.cpuid_table)

    def __init__(self, engine, handler=None, vcpu_id=0):
        self.engine = engine
        self.uc = <void*> <uintptr_t> engine._uch.value
        self.handler = handler
        self.vcpu_id = vcpu_id
        self._locate_state()
        self._add_hooks()
        # A CPU leaves reset with TR present (selector 0, base 0, limit 0xFFFF).  The engine starts
        # with TR all zero, "not present", on which its first stack switch through the TSS (a
        # privilege change, an IST gate) aborts the whole process.  The type is an available 32-bit
        # TSS: how the engine caches every TSS it loads, and the only form its 32-bit stack switch
        # accepts.  (LTR of a null selector, the other way to a not-present TR, is a #GP here.)
        engine.reg_write(uxc.UC_X86_REG_TR, (0, 0, TR_RESET_LIMIT, TR_RESET_FLAGS))

    # -- engine internals ---------------------------------------------------------------
    cdef void _locate_state(self) except *:
        _locate(self.uc, &self.cpu, &self.env, &self.engine_halted)

    cdef inline uint64_t *regs(self) noexcept nogil:
        return <uint64_t*> (self.env + OFF_REGS)

    cdef inline uint64_t eip(self) noexcept nogil:
        return (<uint64_t*> (self.env + OFF_EIP))[0]

    cdef inline void set_eip(self, uint64_t v) noexcept nogil:
        (<uint64_t*> (self.env + OFF_EIP))[0] = v

    cdef inline uint64_t cs_base(self) noexcept nogil:
        return (<uint64_t*> (self.env + OFF_SEGS + SEG_CS * SEG_CACHE_SIZE + SEG_BASE))[0]

    cdef inline uint64_t pc(self) noexcept nogil:
        """The linear address of the next instruction (CS base + EIP): what the engine's hooks
        report and blocks are keyed by.  Equal to EIP in flat code; real mode is not flat."""
        return self.cs_base() + self.eip()

    cdef inline void set_pc(self, uint64_t linear) noexcept nogil:
        self.set_eip(linear - self.cs_base())

    cdef inline uint32_t hflags(self) noexcept nogil:
        return (<uint32_t*> (self.env + OFF_HFLAGS))[0]

    cdef inline int code_bits(self) noexcept nogil:
        """The code segment's default size: 64 (long mode), 32, or 16 (real, virtual-8086 and
        16-bit protected-mode code)."""
        cdef uint32_t hf = self.hflags()
        return 64 if (hf & HF_CS64) else (32 if (hf & HF_CS32) else 16)

    cdef inline int c_cpl(self) noexcept nogil:
        return (<uint32_t*> (self.env + OFF_HFLAGS))[0] & HF_CPL_MASK

    cdef inline uint64_t c_cr(self, int n) noexcept nogil:
        return (<uint64_t*> (self.env + OFF_CR))[n]

    cdef inline bint c_interruptible(self) noexcept nogil:
        return ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & EFLAGS_IF) != 0 and \
               (self.hflags() & HF_INHIBIT_IRQ) == 0

    cdef bint read_guest(self, uint64_t address, int prot, void *buf, size_t size) noexcept:
        """Read guest memory at a virtual address, through the guest's page tables.  A failed
        translation is no fault of the guest's: the engine's page walk records its address in CR2
        as if the guest had faulted, so CR2 is put back."""
        cdef uint64_t cr2 = self.c_cr(2)
        if uc_vmem_read(self.uc, address, prot, buf, size) == 0:
            return True
        (<uint64_t*> (self.env + OFF_CR))[2] = cr2
        return False

    cdef bint fetch(self, uint64_t address, uint8_t *buf, int n) noexcept:
        """The first ``n`` bytes at the address of an instruction the engine is executing, zero
        past the end of its page when the next page cannot be read (the instruction then ends
        before it); False if nothing can be read."""
        cdef int rest = PAGE_SIZE - <int> (address & (PAGE_SIZE - 1))
        if self.read_guest(address, PROT_EXEC, buf, n):
            return True
        if rest >= n or not self.read_guest(address, PROT_EXEC, buf, rest):
            return False
        memset(buf + rest, 0, n - rest)
        return True

    cdef bint operand_address(self, uint64_t address, uint64_t *linear) noexcept:
        """The linear address of the memory operand of the instruction at ``address`` (its effective
        address from vmm.decode plus its segment's base: only FS and GS have one in 64-bit code).
        False if it has none or the instruction cannot be read.  Cold paths only."""
        cdef uint8_t code[15]
        cdef uint64_t *r = self.regs()
        cdef int bits = self.code_bits()
        cdef bint cs64 = bits == 64
        cdef uint64_t offset, base
        cdef int seg
        if not self.fetch(address, code, 15):
            return False
        try:
            operand = memory_operand((<char*> code)[:15], address, bits, [r[i] for i in range(16)])
        except BaseException as e:
            self._fail(f"decoding the operand at {address:#x}: {e!r}")
            return False
        if operand is None:
            return False
        offset, seg = operand
        base = 0
        if not cs64 or seg >= SEG_FS:
            base = (<uint64_t*> (self.env + OFF_SEGS + seg * SEG_CACHE_SIZE + SEG_BASE))[0]
        linear[0] = (base + offset) if cs64 else <uint32_t> (base + offset)
        return True

    def self_test(self):
        """Check every engine internal this layer relies on; raise RuntimeError on a mismatch."""
        eng = self.engine
        checks = []
        eng.reg_write(uxc.UC_X86_REG_RAX, 0x1122334455667788)
        eng.reg_write(uxc.UC_X86_REG_RCX, 0x99AABBCCDDEEFF00)
        checks.append(("general registers at env+0", self.regs()[0] == 0x1122334455667788
                       and self.regs()[1] == 0x99AABBCCDDEEFF00))
        old_rip = eng.reg_read(uxc.UC_X86_REG_RIP)
        eng.reg_write(uxc.UC_X86_REG_RIP, 0x123456)
        checks.append(("EIP at env+128", self.eip() == 0x123456))
        eng.reg_write(uxc.UC_X86_REG_RIP, old_rip)
        old_flags = eng.reg_read(uxc.UC_X86_REG_RFLAGS)
        eng.reg_write(uxc.UC_X86_REG_RFLAGS, 0x202)
        checks.append(("EFLAGS.IF at env+136", ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & EFLAGS_IF) != 0))
        eng.reg_write(uxc.UC_X86_REG_RFLAGS, old_flags)
        checks.append(("CR0 at env+424", self.c_cr(0) == eng.reg_read(uxc.UC_X86_REG_CR0)))
        checks.append(("CR4 at env+456", self.c_cr(4) == eng.reg_read(uxc.UC_X86_REG_CR4)))
        checks.append(("hflags LMA bit at env+176", (self.hflags() & HF_LMA) != 0))
        checks.append(("no exception in flight at env+5496", (<int*> (self.env + OFF_OLD_EXCEPTION))[0] == -1))
        old_tr = eng.reg_read(uxc.UC_X86_REG_TR)
        eng.reg_write(uxc.UC_X86_REG_TR, (0x28, 0x12345000, 0x2067, 0x8900))
        checks.append(("TR base/limit at env+360/368", (<uint64_t*> (self.env + OFF_TR_BASE))[0] == 0x12345000
                       and (<uint32_t*> (self.env + OFF_TR_LIMIT))[0] == 0x2067))
        eng.reg_write(uxc.UC_X86_REG_TR, old_tr)
        eng.reg_write(uxc.UC_X86_REG_RAX, 0)
        eng.reg_write(uxc.UC_X86_REG_RCX, 0)
        checks.append(("CPUState.halted set by HLT, not by other stops", _halted_flag_tracks_hlt()))
        bad = [name for name, ok in checks if not ok]
        if bad:
            raise RuntimeError("unicorn self-test failed (engine is not the unicorn 2.1.4 layout this VMM "
                               "was built for): " + ", ".join(bad))
        return [name for name, _ in checks]

    cdef void _hook(self, int kind, void *cb, uint64_t begin, uint64_t end, int insn=-1) except *:
        cdef size_t h = 0
        cdef int err
        if insn >= 0:
            err = uc_hook_add(self.uc, &h, kind, cb, <void*> self, begin, end, insn)
        else:
            err = uc_hook_add(self.uc, &h, kind, cb, <void*> self, begin, end)
        if err:
            raise RuntimeError(f"uc_hook_add({kind}) failed: {err}")

    cdef void _add_hooks(self) except *:
        self._hook(HOOK_BLOCK, <void*> _on_block, 1, 0)
        self._hook(HOOK_INTR, <void*> _on_intr, 1, 0)
        self._hook(HOOK_INSN_INVALID, <void*> _on_invalid, 1, 0)
        self._hook(HOOK_MEM_UNMAPPED, <void*> _on_unmapped, 1, 0)
        self._hook(HOOK_INSN, <void*> _on_in, 1, 0, INS_IN)
        self._hook(HOOK_INSN, <void*> _on_out, 1, 0, INS_OUT)
        self._hook(HOOK_INSN, <void*> _on_syscall, 1, 0, INS_SYSCALL)
        self._hook(HOOK_INSN, <void*> _on_cpuid, 1, 0, INS_CPUID)
        self._hook(HOOK_INSN, <void*> _on_rdtsc, 1, 0, INS_RDTSC)
        self._hook(HOOK_INSN, <void*> _on_rdtscp, 1, 0, INS_RDTSCP)
        # Exits mode with an empty list: emu_start's `until` would otherwise walk the page
        # tables after every run and clobber CR2.
        uc_ctl(self.uc, ctl_write(CTL_UC_USE_EXITS, 1), <int> 1)
        cdef uint64_t none = 0
        uc_ctl(self.uc, ctl_write(CTL_UC_EXITS, 2), &none, <size_t> 0)

    # -- accounting -----------------------------------------------------------------------
    cdef inline void commit(self, int upto) noexcept:
        """Retire instructions [cur_done, upto) of the current block."""
        cdef Block *b = self.cur
        cdef int k
        if b == NULL or upto <= self.cur_done:
            return
        k = upto - self.cur_done
        if self.cur_done == 0 and (b.flags & STARTS_WITH_REP) and b.addr == self.rep_addr:
            k -= 1      # another iteration of the REP instruction that already retired
        cdef uint64_t branch = 0, conditional = 0
        self.retired += k
        if upto == b.n:
            if b.flags & ENDS_IN_BRANCH:
                branch = 1
                conditional = 1 if (b.flags & BRANCH_CONDITIONAL) else 0
            self.rep_addr = (b.addr + b.offs[b.n - 1]) if (b.flags & ENDS_WITH_REP) else <uint64_t> -1
        self.cur_done = upto
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(k, branch, self.cur_cpl, conditional)
            self.cycle_budget = self.cycle_budget - k if self.cycle_budget > <uint64_t> k else 0
            if branch and (self.pmu.active_events & (1 << EV_BRANCH_MISSES)):
                # its outcome is known at the next block boundary (resolve_branch)
                self.br_addr = b.addr + b.offs[b.n - 1]
                self.br_fallthrough = b.addr + b.size
                self.br_flags = b.flags
                self.br_cpl = self.cur_cpl
            if self.pmu.pmi_requested:
                self.attention = True

    cdef void retire_one(self) noexcept:
        """An instruction emulated outside any block (RDPMC in the engine's #UD/#GP path) retires."""
        cdef int cpl = self.c_cpl()
        self.retired += 1
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(1, 0, cpl)
            self.cycle_budget = 0
            if self.pmu.pmi_requested:
                self.attention = True

    cdef inline void commit_before(self, uint64_t rip) noexcept:
        if self.cur != NULL:
            self.commit(index_in_block(self.cur, rip))

    cdef inline void leave_block(self) noexcept:
        """The current block is abandoned at this point: later instructions never ran."""
        self.cur = NULL
        self.cur_done = 0

    cdef void finish_block(self) noexcept:
        if self.cur != NULL:
            self.commit(self.cur.n)
            self.leave_block()

    def now(self):
        """The machine's virtual ns as this vCPU sees it: its committed instructions plus its clock
        offset (which the machine sets when it switches vCPUs, so every vCPU reads one clock)."""
        return self.retired + self.clock_offset

    # -- block hook ---------------------------------------------------------------------
    cdef void on_block(self, uint64_t address, uint32_t size) noexcept:
        cdef Block *b
        if self.delivering_df and self.triple_faulted():
            return
        if self.cur != NULL:
            self.commit(self.cur.n)
        self.cur = NULL
        self.cur_done = 0
        if self.br_flags:
            self.resolve_branch(address)
        if self.pmu is not None and ((self.pmu.active_events & CACHE_EVENTS) != 0) != (self.mem_hook != 0):
            self.switch_memory_hook()
            self.restart(address)       # re-translate with (or without) memory-access callbacks
            return
        b = self.blocks.find(address, size)
        if b == NULL:
            if self._learn_block(address, size):
                self.restart(address)       # re-translate with the new MSR code hooks
                return
            b = self.blocks.find(address, size)
            if b == NULL:
                return
        if self.attention or (self.retired + self.clock_offset) >= self.deadline:
            self.attention = False
            self._py_attention()
            if self.stop_reason != STOP_NONE:
                # The engine stops before this block runs: it is not in flight (the next run()
                # starts with it), so it must not be committed now.
                uc_emu_stop(self.uc)
                return
        if self.nmi_check and not self.c_nmi_masked():
            self.nmi_check = False
            if self.inject_pending(False):
                return
        if self.irq_pending:
            if self.c_interruptible():
                if self.inject_pending(True):
                    return
            elif (self.hflags() & HF_INHIBIT_IRQ) and b.n > 1 and \
                    ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & EFLAGS_IF):
                # STI (or MOV SS) shadow: an interrupt that is waiting is taken right after the
                # shadowed instruction, not at the end of this block.
                self.truncate_after(b, 1)
                return
        if self.retired >= self.max_insns and self.check_limit():
            return      # stopped before this block runs, as above
        if b.loop_kind and self.bulk_loops and self.bulk_retire(b):
            return
        self.cur = b
        self.cur_cpl = self.c_cpl()
        if self.pmu is not None and (self.pmu.active_events & CYCLE_EVENTS) and self.cycle_budget <= b.n:
            self.stop_at_overflow(b)    # (it returns at once while the budget exceeds the block)

    cdef bint bulk_retire(self, Block *b) noexcept:
        """At the entry of a self-loop block whose checks above found nothing to do: retire at once
        the iterations that run one by one would retire before any block hook had something to do,
        and restart the block (its hook then runs those checks as after the last of them).

        Iteration j ends at the hook of j+1, which sees the clock j*n later (n = b.n) and the counters
        j*n instructions/cycles and j branches further.  So K iterations are taken at once where the
        hooks of iterations 2..K would all be idle: the loop branch is taken in each (its counter does
        not reach 0), no counter overflows (an overflow, its PMI and zero-skid stop happen in an
        iteration run normally), the vCPU's deadline (timers, end of an SMP slice) and instruction
        limit are not reached before hook K+1.  Nothing else that hooks look at changes in a
        register-only loop: no interrupt becomes deliverable (RFLAGS.IF and the NMI mask do not
        change; a pending one was taken or is blocked), and no Python code runs.  Refused (0
        iterations) in an interrupt shadow, with RFLAGS.TF or a DR7 breakpoint enabled, while a
        branch-miss counter (predictor state) or a CMASK/INV/EDGE counter (not linear in a block's
        counts) runs, while a PMI request is outstanding, or with a truncation exit armed.  Returns
        True if it retired iterations (the engine restarts at the block)."""
        cdef uint64_t *r = self.regs()
        cdef uint64_t n = b.n, k, c = 0, mask = 0, res = 0, d, now, rflags = 0, dr7 = 0
        cdef uint64_t branch = 1 if (b.flags & ENDS_IN_BRANCH) else 0
        cdef uint64_t conditional = 1 if (b.flags & BRANCH_CONDITIONAL) else 0
        cdef int cpl = self.c_cpl(), ring = 1 if cpl else 0, ev
        if self.trunc_exit or self.attention or self.stop_reason != STOP_NONE or self.br_flags \
                or (self.hflags() & HF_INHIBIT_IRQ) or ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & EFLAGS_TF):
            return False
        if b.loop_kind == LOOP_JMP:
            k = BULK_MAX
        else:
            mask = <uint64_t> -1 if b.loop_bits == 64 else ((<uint64_t> 1 << b.loop_bits) - 1)
            c = r[b.loop_reg] & mask
            k = (c - 1) & mask      # iterations whose branch is taken (the counter is not yet 0)
            if k > BULK_MAX:
                k = BULK_MAX
        now = self.retired + self.clock_offset
        if self.deadline != <uint64_t> -1:
            if self.deadline <= now:
                return False
            d = (self.deadline - now - 1) // n + 1
            k = d if d < k else k
        if self.max_insns != <uint64_t> -1:
            if self.max_insns <= self.retired:
                return False
            d = (self.max_insns - self.retired - 1) // n + 1
            k = d if d < k else k
        if self.pmu is not None and self.pmu.active_events:
            if (self.pmu.active_events & (1 << EV_BRANCH_MISSES)) or self.pmu.pmi_requested:
                return False
            for ev in range(NUM_PMU_EVENTS):
                if self.pmu.special[ev][ring]:
                    return False
            d = self.cycle_events_to_overflow(cpl)
            d = (d - 1) // n        # whole iterations that stay below the first overflow
            k = d if d < k else k
            if branch:
                d = self.pmu.events_to_overflow(EV_BRANCHES, cpl) - 1
                k = d if d < k else k
            if conditional:
                d = self.pmu.events_to_overflow(EV_COND_BRANCHES, cpl) - 1
                k = d if d < k else k
        if k == 0:
            return False
        uc_reg_read(self.uc, REG_DR7, &dr7)
        if dr7 & 0xFF:
            return False
        if b.loop_kind != LOOP_JMP:
            res = (c - k) & mask
            if b.loop_bits == 16:
                r[b.loop_reg] = (r[b.loop_reg] & ~<uint64_t> 0xFFFF) | res
            else:
                r[b.loop_reg] = res     # 32-bit results zero-extend, as the engine writes them
        if b.loop_kind == LOOP_DEC_JNZ:
            # The flags of the last DEC (res != 0: ZF clear); CF is DEC's to keep.
            uc_reg_read(self.uc, REG_RFLAGS, &rflags)
            rflags &= ~<uint64_t> EFLAGS_DEC
            if (res >> (b.loop_bits - 1)) & 1:
                rflags |= 1 << 7
            if res == mask >> 1:
                rflags |= 1 << 11       # from the most negative value to the most positive
            if (res & 0xF) == 0xF:
                rflags |= 1 << 4        # borrow out of bit 3
            if not (__builtin_popcountll(res & 0xFF) & 1):
                rflags |= 1 << 2
            uc_reg_write(self.uc, REG_RFLAGS, &rflags)
        self.retired += k * n
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(k * n, k * branch, cpl, k * conditional)
            if self.pmu.pmi_requested:
                self.attention = True
        self.rep_addr = <uint64_t> -1
        self.cycle_budget = 0
        self.bulk_iterations += k
        self.restart(b.addr)
        return True

    cdef inline bint check_limit(self) noexcept:
        """Stop at the instruction limit; True if this stopped the engine."""
        if self.retired >= self.max_insns and (self.stop_reason == STOP_NONE or self.stop_reason == STOP_YIELD):
            self.stop_reason = STOP_LIMIT
            self.stop_text = f"instruction limit of {self.max_insns} reached"
            uc_emu_stop(self.uc)
            return True
        return False

    cdef void resolve_branch(self, uint64_t target) noexcept:
        """The last branch went to ``target``: ask the predictor whether it saw that coming."""
        cdef uint8_t kind = self.br_flags
        cdef bint miss = False
        self.br_flags = 0
        if kind & BRANCH_CONDITIONAL:
            miss = self.predictor.conditional(self.br_addr, target != self.br_fallthrough)
        elif kind & BRANCH_RETURN:
            miss = self.predictor.ret(target)
        elif kind & BRANCH_INDIRECT:
            miss = self.predictor.indirect(self.br_addr, target)
        if kind & BRANCH_CALL:
            self.predictor.call(self.br_fallthrough)
        if miss:
            self.pmu.count(EV_BRANCH_MISSES, 1, self.br_cpl)
            if self.pmu.pmi_requested:
                self.attention = True

    cdef void switch_memory_hook(self) noexcept:
        """Memory-access callbacks only while an LLC event is counted (they cost on every access)."""
        if self.mem_hook:
            uc_hook_del(self.uc, self.mem_hook)
            self.mem_hook = 0
        elif uc_hook_add(self.uc, &self.mem_hook, HOOK_MEM_ACCESS, <void*> _on_mem_access, <void*> self, 1, 0):
            self.mem_hook = 0
        uc_ctl(self.uc, ctl_write(CTL_TB_FLUSH, 0))
        self.leave_block()

    cdef void on_mem_access(self, uint64_t address, int size) noexcept:
        cdef uint64_t refs = self.cache.references, misses = self.cache.misses
        cdef int cpl = self.c_cpl()
        self.cache.access(address, size)
        if self.cache.references != refs:
            self.pmu.count(EV_LLC_REFS, self.cache.references - refs, cpl)
        if self.cache.misses != misses:
            self.pmu.count(EV_LLC_MISSES, self.cache.misses - misses, cpl)
        if self.pmu.pmi_requested:
            self.attention = True

    cdef uint64_t cycle_events_to_overflow(self, int cpl) noexcept:
        cdef uint64_t budget = self.pmu.events_to_overflow(EV_INSTRUCTIONS, cpl)
        cdef uint64_t d = self.pmu.events_to_overflow(EV_CORE_CYCLES, cpl)
        if d < budget:
            budget = d
        d = self.pmu.events_to_overflow(EV_REF_CYCLES, cpl)
        return d if d < budget else budget

    cdef void stop_at_overflow(self, Block *b) noexcept:
        """If a counter of instructions/cycles overflows before the block's last instruction,
        re-translate the block to end right after the overflowing one (zero skid).  An overflow on
        the last instruction needs nothing: the next block hook commits it before anything runs.

        ``cycle_budget`` caches a lower bound, valid at any CPL, of the cycle-type events left
        before any overflow: commits lower it, and anything outside the hook layer that may touch
        the PMU (an exit, device work, a PMU MSR write, run()) clears it.  The exact distance is
        computed only when a block could reach the bound."""
        cdef int skip = 1 if ((b.flags & STARTS_WITH_REP) and b.addr == self.rep_addr) else 0
        cdef uint64_t need = b.n - skip, budget, other
        if self.cycle_budget > need:
            return
        budget = self.cycle_events_to_overflow(self.cur_cpl)
        if budget < need:
            self.truncate_after(b, <int> budget + skip)
            return
        other = self.cycle_events_to_overflow(3 if self.cur_cpl == 0 else 0)
        self.cycle_budget = other if other < budget else budget

    cdef void truncate_after(self, Block *b, int k) noexcept:
        """Re-translate ``b`` so that execution stops (back in run()) after its first k instructions."""
        self.trunc_exit = b.addr + b.offs[k]
        uc_ctl(self.uc, ctl_write(CTL_UC_EXITS, 2), &self.trunc_exit, <size_t> 1)
        uc_ctl(self.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), b.addr, b.addr + b.size)
        self.leave_block()
        self.restart(b.addr)

    cdef void disarm_truncation(self) noexcept:
        cdef uint64_t none = 0
        uc_ctl(self.uc, ctl_write(CTL_UC_EXITS, 2), &none, <size_t> 0)
        # The truncated translation must not be reused once the counter state changes.
        uc_ctl(self.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), self.trunc_exit - 1, self.trunc_exit)
        self.trunc_exit = 0

    cdef bint triple_faulted(self) noexcept:
        """True if a #DF delivery never completed: a fault while delivering it.  The engine then
        either stops (run() sees the flag still set) or retries the faulting instruction, so the
        next hook we see is where a CPU would have shut down."""
        if not self.delivering_df:
            return False
        self.delivering_df = False
        self.leave_block()
        self.stop_reason = STOP_SHUTDOWN
        self.stop_text = f"triple fault at RIP {self.eip():#x}"
        uc_emu_stop(self.uc)
        return True

    cdef void step_over(self, uint64_t next_rip) noexcept:
        """An instruction emulated here retires and execution continues after it, in a new block.
        Like any executed instruction it ends an STI/MOV SS interrupt shadow."""
        self.commit_before(next_rip)
        self.leave_block()
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        self.restart(next_rip)

    cdef void restart(self, uint64_t linear) noexcept:
        """Abandon the current translation block and continue at the linear address ``linear``."""
        cdef uint64_t eip = linear - self.cs_base()
        uc_reg_write(self.uc, REG_RIP, &eip)

    cdef bint _learn_block(self, uint64_t address, uint32_t size) noexcept:
        """Decode a new block; returns True if it needed new code hooks (caller restarts it)."""
        cdef bytes code
        cdef char *buf = <char*> malloc(size)
        cdef bint hooked = False
        cdef uint64_t a
        if buf == NULL:
            return False
        try:
            if not self.read_guest(address, PROT_EXEC, buf, size):
                return False
            code = buf[:size]
            d = decode_block(code, address, self.code_bits())
            classify_loop(self.blocks.insert(address, size, d.offsets, d.flags), <const uint8_t*> buf,
                          self.code_bits())
            for off in d.hooked_offsets:
                a = address + off
                if a not in self.hooked_insns:
                    self.hooked_insns.add(a)
                    self._hook(HOOK_CODE, <void*> _on_hooked_insn, a, a)
                    hooked = True
            if hooked:
                uc_ctl(self.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), address, address + size)
            return hooked
        except BaseException as e:
            self._fail(f"decoding the block at {address:#x}: {e!r}")
            return False
        finally:
            free(buf)

    # -- interrupts -----------------------------------------------------------------------
    cdef bint inject_pending(self, bint interrupts) noexcept:
        """Deliver the interrupt source's next NMI (or, if ``interrupts``, maskable interrupt)
        through the IDT; True if one was."""
        cdef int vector
        cdef bint nmi
        try:
            got = self.intc.next_injection(interrupts) if self.intc is not None else None
            if got is None:
                if interrupts:
                    self.irq_pending = False
                return False
            vector, nmi = got
        except BaseException as e:
            self._fail(f"interrupt controller: {e!r}")
            return False
        self.deliver_external(vector, nmi)
        return True

    cdef void deliver_external(self, int vector, bint nmi) noexcept:
        if nmi:
            (<uint32_t*> (self.env + OFF_HFLAGS2))[0] |= HF2_NMI_MASK   # cleared by the guest's IRET
        x86_hardirq(self.env, vector, 1)
        self.leave_block()
        self.restart(self.pc())

    cdef void raise_fault(self, int vector) noexcept:
        """Deliver a fault whose frame points at the current instruction (error code 0)."""
        self.leave_block()
        x86_hardirq(self.env, vector, 0)
        self.restart(self.pc())

    cdef inline bint c_nmi_masked(self) noexcept nogil:
        """NMIs are blocked from one NMI's delivery until the guest's next IRET."""
        return ((<uint32_t*> (self.env + OFF_HFLAGS2))[0] & HF2_NMI_MASK) != 0

    def nmi_blocked(self):
        return self.c_nmi_masked()

    cdef void on_intr(self, uint32_t intno) noexcept:
        cdef uint64_t rip = self.pc()
        cdef uint8_t op[2]
        cdef uint64_t insn
        if self.triple_faulted() or self.stop_reason != STOP_NONE:
            # A run that is ending delivers nothing: a delivery that read unmapped memory (an IDT
            # beyond RAM) leaves the engine's exception pending, and delivering it again would
            # loop inside the engine for ever.
            return
        # Exceptions report RIP at the faulting instruction (which did not retire); INT n,
        # INT3 and INTO report RIP after it (it did).  Either way: retire what lies before RIP.
        insn = self.software_interrupt_at(rip, intno)
        self.commit_before(rip)
        self.leave_block()
        if insn:
            # The engine moved RIP past INT n before this hook; the return address it pushes
            # comes from its next-EIP, but a fault while delivering (not-present gate, DPL)
            # must point at the INT instruction itself.
            self.set_pc(insn)
        if intno == EXC_GP and self.c_cpl() > 0 and self.fetch(rip, op, 2):
            if op[0] == 0x0F and op[1] == 0x33:
                # The engine's RDPMC raises #GP at CPL>0 when CR4.PCE=1 (its check is inverted).
                # It has already recorded that #GP as the exception in flight: forget it, or the
                # guest's next contributory fault would become a #DF.
                (<int*> (self.env + OFF_OLD_EXCEPTION))[0] = -1
                self.emulate_rdpmc(rip)
                return
        self.delivering_df = intno == 8
        x86_do_interrupt(self.cpu)
        self.delivering_df = False
        if (intno == 11 or intno == 13) and (self.hflags() & HF_LMA):
            self.fix_idt_error_code()

    cdef uint64_t software_interrupt_at(self, uint64_t rip, uint32_t intno) noexcept:
        """Address of the INT n / INT3 / INTO / INT1 that raised ``intno`` just before ``rip``, or 0."""
        cdef Block *b = self.cur
        cdef int k
        cdef uint64_t at
        cdef uint8_t op[2]
        if b == NULL:
            return 0
        k = index_in_block(b, rip)
        if k == 0 or (k < b.n and b.addr + b.offs[k] != rip) or (k == b.n and rip != b.addr + b.size):
            return 0
        at = b.addr + b.offs[k - 1]
        if not self.fetch(at, op, 2):
            return 0
        if (op[0] == 0xCD and op[1] == intno) or (op[0] == 0xCC and intno == 3) or \
                (op[0] == 0xCE and intno == 4) or (op[0] == 0xF1 and intno == 1):
            return at
        return 0

    cdef void fix_idt_error_code(self) noexcept:
        """The engine's 64-bit IDT checks push vector*16+2 as the error code of the #GP/#NP
        they raise; the SDM says vector*8+2 (selector index into the IDT, IDT bit set).  In long
        mode only those checks produce IDT error codes, so any with the IDT bit is rewritten."""
        cdef uint64_t rsp = self.regs()[R_RSP], ec = 0
        if not self.read_guest(rsp, PROT_READ, &ec, 8) or (ec & 3) != 2:
            return
        ec = ((ec >> 4) << 3) | 2
        uc_vmem_write(self.uc, rsp, PROT_WRITE, &ec, 8)

    cdef int on_invalid(self) noexcept:
        cdef uint64_t rip = self.pc()
        cdef uint8_t op[5]
        if self.triple_faulted():
            return 0
        if self.stop_reason != STOP_NONE:
            return 1        # as in on_intr: the run is ending, deliver nothing
        self.commit_before(rip)
        self.leave_block()
        if self.fetch(rip, op, 3) and op[0] == 0x0F:
            if op[1] == 0x33:
                self.emulate_rdpmc(rip)
                return 1
            if op[1] == 0x01 and (op[2] == 0xC1 or op[2] == 0xD9) and self.emulate_hypercall(rip):
                return 1
            if op[1] == 0x0B and self.forced_emulation and self.fetch(rip, op, 5) \
                    and op[2] == 0x6B and op[3] == 0x76 and op[4] == 0x6D:
                self.set_pc(rip + 5)    # "ud2; .ascii kvm": run the next instruction as if emulated
                return 1
        x86_hardirq(self.env, EXC_UD, 0)
        return 1

    cdef bint emulate_hypercall(self, uint64_t rip) noexcept:
        """VMCALL or VMMCALL (the engine's #UD) with KVM's hypercall ABI: the platform answers
        (vmm.machine.Machine.hypercall, devices/kvm_pv.py) and the result goes to RAX.  False when
        the platform offers no hypercalls: the caller raises the #UD."""
        cdef uint64_t *r = self.regs()
        self.cycle_budget = 0       # a hypercall may reach other devices (IPIs)
        try:
            if self.platform is None or not hasattr(self.platform, "hypercall"):
                return False
            regs = {"rax": r[R_RAX], "rbx": r[R_RBX], "rcx": r[R_RCX], "rdx": r[R_RDX], "rsi": r[R_RSI]}
            result = self.platform.hypercall(regs, self.c_cpl(), self.code_bits() == 64)
            if result is None:
                return False
            r[R_RAX] = <uint64_t> result
        except BaseException as e:
            self._fail(f"hypercall: {e!r}")
            return True
        self.retire_one()
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        self.set_pc(rip + 3)
        return True

    cdef void emulate_rdpmc(self, uint64_t rip) noexcept:
        """RDPMC outside any translation block: answer it, retire it, step over it."""
        cdef uint64_t *r = self.regs()
        cdef uint64_t v = 0
        cdef bint fault
        if self.pmu is not None:
            fault = self.pmu.rdpmc(r[R_RCX] & 0xFFFFFFFF, self.c_cpl(), self.c_cr(0), self.c_cr(4), &v) != 0
        else:
            res = self._py_exit(ExitKind.RDPMC, r[R_RCX] & 0xFFFFFFFF, 4, 0)
            fault = res is None or isinstance(res, Fault)
            if not fault:
                v = res
        if fault:
            x86_hardirq(self.env, EXC_GP, 0)
            return
        r[R_RAX] = v & 0xFFFFFFFF
        r[R_RDX] = v >> 32
        self.retire_one()
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        self.set_pc(rip + 2)

    # -- intercepted instructions: MSR accesses, port I/O, CR8, LTR -----------------------
    cdef void on_hooked_insn(self, uint64_t address) noexcept:
        cdef uint8_t op[15]
        cdef int i = 0
        cdef uint8_t rex = 0
        cdef bint opsize = False          # 0x66: 16-bit operands in 32/64-bit code, 32-bit ones in 16-bit code
        cdef int bits = self.code_bits()
        cdef bint cs64 = bits == 64
        cdef uint32_t port, size
        if not self.fetch(address, op, 15):
            return
        if op[0] == 0x0F and (op[1] == 0x30 or op[1] == 0x32):
            self.on_msr_insn(address, op[1] == 0x30)
            return
        if self.mem_hook and ((op[0] == 0x0F and (op[1] == 0x08 or op[1] == 0x09 or op[1] == 0xAE))
                              or (op[0] == 0x66 and op[1] == 0x0F and op[2] == 0xAE)):
            self.cache_maintenance(address, op)
            return
        # Prefixes: operand size, REP, segment overrides, address size, LOCK and (64-bit code, last
        # before the opcode) REX.
        while i < 12 and (op[i] == 0x66 or op[i] == 0xF3 or op[i] == 0xF2 or op[i] == 0x26 or op[i] == 0x2E
                          or op[i] == 0x36 or op[i] == 0x3E or op[i] == 0x64 or op[i] == 0x65 or op[i] == 0x67
                          or op[i] == 0xF0 or (cs64 and (op[i] & 0xF0) == 0x40)):
            if op[i] == 0x66:
                opsize = True
            rex = op[i] if (op[i] & 0xF0) == 0x40 else 0
            i += 1
        if op[i] == 0x0F and op[i + 1] == 0x00 and ((op[i + 2] >> 3) & 7) == 3:
            self.check_ltr(address, op[i + 2], rex)
            return
        if op[i] == 0xCF:
            if self.sync_translations:
                self.sync_on_iret_to_self(address + i + 1, 8 if (rex & 8) else (2 if opsize != (bits == 16) else 4))
            return
        if op[i] == 0x0F and (op[i + 1] == 0x20 or op[i + 1] == 0x22) and (rex & 4) and (op[i + 2] & 0x38) == 0:
            self.emulate_cr8(address, address + i + 3, op[i + 1] == 0x22, (op[i + 2] & 7) | ((rex & 1) << 3))
            return
        if (op[i] >= 0xE4 and op[i] <= 0xE7) or (op[i] >= 0xEC and op[i] <= 0xEF) or \
                (op[i] >= 0x6C and op[i] <= 0x6F):
            port = op[i + 1] if (op[i] >= 0xE4 and op[i] <= 0xE7) else (self.regs()[R_RDX] & 0xFFFF)
            size = 1 if (op[i] & 1) == 0 else (2 if opsize != (bits == 16) else 4)
            if not self.io_permitted(port, size):
                self.commit_before(address)
                self.raise_fault(EXC_GP)
            elif op[i] >= 0xE4:     # not INS/OUTS: the engine runs those through its I/O hooks
                self.emulate_port_io(address, address + i + (2 if op[i] <= 0xE7 else 1), port, size,
                                     (op[i] & 2) != 0)

    cdef void sync_on_iret_to_self(self, uint64_t next_pc, int width) noexcept:
        """An IRET that returns to the instruction right after it is how software serializes itself
        after another CPU rewrote code (Linux's sync_core; the SDM's cross-modifying-code rule asks
        for a serializing instruction).  Each vCPU's engine keeps its own translations and sees no
        other vCPU's writes, so such an IRET drops all of this vCPU's translations (their cost is
        paid once, at this idiom only: other IRETs keep them).  Nothing is dropped when no other vCPU
        has run since the last time (``others_ran``, set by the machine): this engine saw every write
        made since, its own (early boot patches all code before the APs start, with one such IRET
        per patch)."""
        cdef uint64_t ret = 0
        cdef uint64_t sp = self.regs()[R_RSP]
        if width != 8:
            sp = <uint32_t> (sp + (<uint64_t*> (self.env + OFF_SEGS + SEG_SS * SEG_CACHE_SIZE + SEG_BASE))[0])
        if not self.read_guest(sp, PROT_READ, &ret, width):
            return      # the engine's IRET faults on its frame itself
        if width < 8:
            ret &= (<uint64_t> 1 << (8 * width)) - 1
        if ret == next_pc - self.cs_base() and self.others_ran:
            uc_ctl(self.uc, ctl_write(CTL_TB_FLUSH, 0))
            self.translation_flushes += 1
            self.others_ran = False

    cdef void check_ltr(self, uint64_t address, uint8_t modrm, uint8_t rex) noexcept:
        """LTR of a null selector is a #GP(0) (SDM: LTR).  The engine would load a not-present TR
        instead, and abort the whole process at the next stack switch through the TSS.  Other
        selectors, and LTR outside protected mode at CPL0, are the engine's to check."""
        cdef uint16_t selector = 0
        cdef uint64_t linear = 0
        if self.c_cpl() != 0 or not (self.c_cr(0) & CR0_PE):
            return
        if (modrm >> 6) == 3:
            selector = <uint16_t> self.regs()[(modrm & 7) | ((rex & 1) << 3)]
        elif not (self.operand_address(address, &linear) and self.read_guest(linear, PROT_READ, &selector, 2)):
            return      # the engine faults on the operand itself
        if (selector & 0xFFFC) == 0:
            self.commit_before(address)
            self.raise_fault(EXC_GP)

    cdef void cache_maintenance(self, uint64_t address, uint8_t *op) noexcept:
        """CLFLUSH/CLFLUSHOPT evict a line of the cache model, WBINVD/INVD empty it (the engine
        itself treats them as no-ops, so they still execute normally afterwards)."""
        cdef uint64_t line = 0
        if op[0] == 0x0F and op[1] != 0xAE:
            self.cache.invalidate()
        elif self.operand_address(address, &line):
            self.cache.flush_line(line)

    def flush_branch_predictor(self):
        """IBPB: later branches cannot be steered by earlier ones."""
        self.predictor.flush()

    cdef bint io_permitted(self, uint32_t port, uint32_t size) noexcept:
        """Port I/O at CPL > IOPL, and any in virtual-8086 mode, must be allowed by the TSS I/O
        bitmap, or it is a #GP (SDM vol. 1 19.5.2, vol. 3 20.2.8.1).  The VMware backdoor ports are
        exempt, as KVM makes them."""
        cdef uint64_t eflags = (<uint64_t*> (self.env + OFF_EFLAGS))[0]
        cdef uint32_t limit, bits = 0
        cdef uint64_t base
        cdef uint16_t map_base = 0
        if port == 0x5658 or port == 0x5659 or \
                (not (eflags & EFLAGS_VM) and <uint64_t> self.c_cpl() <= ((eflags >> EFLAGS_IOPL_SHIFT) & 3)):
            return True
        base = (<uint64_t*> (self.env + OFF_TR_BASE))[0]
        limit = (<uint32_t*> (self.env + OFF_TR_LIMIT))[0]
        return limit >= 103 and self.read_guest(base + 0x66, PROT_READ, &map_base, 2) \
            and map_base + (port >> 3) + 1 <= limit \
            and self.read_guest(base + map_base + (port >> 3), PROT_READ, &bits, 2) \
            and ((bits >> (port & 7)) & ((1 << size) - 1)) == 0

    cdef void emulate_port_io(self, uint64_t address, uint64_t next_rip, uint32_t port, uint32_t size,
                              bint write) noexcept:
        """IN/OUT answered here, before the instruction, then stepped over: an interrupt or NMI the
        access raised is taken right after it (the next instruction starts a new block)."""
        cdef uint64_t *r = self.regs()
        cdef uint64_t mask = (<uint64_t> 1 << (8 * size)) - 1
        cdef uint64_t value
        self.commit_before(address)
        if write:
            self._py_exit(ExitKind.IO_OUT, port, size, r[R_RAX] & mask)
        else:
            value = self._py_port_in(port, size) if (port == 0x5658 or port == 0x5659) else \
                self._py_in(port, size)
            # A 32-bit IN zero-extends into RAX; 8- and 16-bit INs keep the rest of RAX.
            r[R_RAX] = (value & mask) if size == 4 else ((r[R_RAX] & ~mask) | (value & mask))
        if self.stop_reason != STOP_NONE:
            uc_emu_stop(self.uc)
        self.step_over(next_rip)

    cdef void emulate_cr8(self, uint64_t address, uint64_t next_rip, bint write, int gpr) noexcept:
        """MOV to/from CR8 is the LAPIC's TPR[7:4] (the engine keeps a private copy instead)."""
        cdef uint64_t *r = self.regs()
        self.commit_before(address)
        self.cycle_budget = 0
        if write and (r[gpr] >> 4):
            self.raise_fault(EXC_GP)        # CR8 bits 63:4 are reserved
            return
        try:
            if write:
                self.platform.write_cr8(r[gpr])
            else:
                r[gpr] = self.platform.read_cr8()
        except BaseException as e:
            self._fail(f"CR8: {e!r}")
        self.step_over(next_rip)
    cdef void on_msr_insn(self, uint64_t address, bint write) noexcept:
        cdef uint64_t *r = self.regs()
        cdef uint32_t index = r[R_RCX] & 0xFFFFFFFF
        cdef uint64_t value = (r[R_RDX] << 32) | (r[R_RAX] & 0xFFFFFFFF)
        cdef uint64_t delta
        if msr_is_native(index):
            if write and ((msr_needs_canonical(index) and not canonical(value))
                          or (index == MSR_EFER and (value & ~<uint64_t>EFER_ALLOWED))
                          or (index == MSR_TSC_AUX and (value >> 32))):     # TSC_AUX[63:32] reserved
                self.commit_before(address)
                self.raise_fault(EXC_GP)
            return      # the engine executes it
        self.commit_before(address)
        if index == MSR_TSC:
            # SDM (IA32_TSC_ADJUST): a write to the TSC that moves it by X adds X to TSC_ADJUST too.
            if write:
                delta = value - (self.retired + self.clock_offset + self.tsc_offset)
                self.tsc_offset += delta
                self.tsc_adjust += <int64_t> delta
            else:
                value = self.retired + self.clock_offset + self.tsc_offset
        elif index == MSR_TSC_ADJUST:
            # ... and a write to TSC_ADJUST that changes it by X moves the TSC by X.
            if not self._has_feature("tsc_adjust"):
                self.raise_fault(EXC_GP)
                return
            if write:
                delta = value - <uint64_t> self.tsc_adjust
                self.tsc_adjust = <int64_t> value
                self.tsc_offset += delta
            else:
                value = <uint64_t> self.tsc_adjust
        elif self.pmu is not None and self.pmu.owns_msr(index):
            self.cycle_budget = 0
            if (self.pmu.wrmsr(index, value, False) if write else self.pmu.rdmsr(index, &value, False)) != 0:
                self.raise_fault(EXC_GP)
                return
        elif self.lapic is not None and (index >> 8) == 0x8 and \
                self.x2apic_access(index, write, &value) != LAPIC_UNHANDLED:
            if self.lapic_status == LAPIC_GP:
                self.raise_fault(EXC_GP)
                return
        else:
            res = self._py_exit(ExitKind.MSR_WRITE if write else ExitKind.MSR_READ, index, 8, value)
            if res is None and not write or isinstance(res, Fault):
                self.raise_fault(EXC_GP)
                return
            if not write:
                value = res
        if not write:
            r[R_RAX] = value & 0xFFFFFFFF
            r[R_RDX] = value >> 32
        # The MSR instruction retires now, under the state it just set.
        self.step_over(address + 2)

    cdef int x2apic_access(self, uint32_t index, bint write, uint64_t *value) noexcept:
        """An x2APIC MSR through the LAPIC's C path: LAPIC_DONE (a read fills ``value``),
        LAPIC_GP, or LAPIC_UNHANDLED (not in x2APIC mode: use the bus).  The status is also kept
        in lapic_status.  After a write the timer deadline and pending interrupts are re-read,
        as the machine does after a bus access (on_write), since the C path calls no Python."""
        cdef uint64_t now = self.retired + self.clock_offset, deadline
        cdef int res = self.lapic.x2apic_write(index, value[0], now) if write else \
            self.lapic.x2apic_read(index, value, now)
        self.lapic_status = res
        if res == LAPIC_DONE and write:
            # The vCPU's deadline is the earliest of every timer the machine has, not only this
            # LAPIC's: an earlier LAPIC deadline moves it; a later one costs one early attention,
            # at which the machine recomputes it.
            deadline = self.lapic.c_next_deadline()
            if deadline < self.deadline:
                self.deadline = deadline
            if self.lapic.c_interrupt_pending() or self.lapic.wake_pending:
                self.lapic.wake_pending = False
                self.irq_pending = True
                self.nmi_check = True
            if self.lapic.bus is not None and self.lapic.bus.remote_events:
                self.attention = True   # another vCPU has something new: the machine ends this slice
        return res

    # -- other instructions ---------------------------------------------------------------
    cdef uint32_t on_in(self, uint32_t port, int size) noexcept:
        """The engine's own I/O path: only INS reaches it (IN is emulated in on_hooked_insn)."""
        return self._py_in(port, size)

    cdef uint32_t _py_in(self, uint32_t port, int size) noexcept:
        res = self._py_exit(ExitKind.IO_IN, port, size, 0)
        return 0xFFFFFFFF if res is None else <uint32_t> res

    cdef uint32_t _py_port_in(self, uint32_t port, int size) noexcept:
        """Port reads that need the guest's registers (the VMware backdoor)."""
        cdef uint64_t *r = self.regs()
        self.cycle_budget = 0
        try:
            regs = {"rax": r[R_RAX], "rbx": r[R_RBX], "rcx": r[R_RCX], "rdx": r[R_RDX]}
            self.platform.backdoor(port, regs)
            r[R_RBX] = regs["rbx"]
            r[R_RCX] = regs["rcx"]
            r[R_RDX] = regs["rdx"]
            return regs["rax"] & 0xFFFFFFFF
        except BaseException as e:
            self._fail(f"VMware backdoor: {e!r}")
            return 0xFFFFFFFF

    cdef void on_out(self, uint32_t port, int size, uint32_t value) noexcept:
        self._py_exit(ExitKind.IO_OUT, port, size, value)
        if self.stop_reason != STOP_NONE:
            uc_emu_stop(self.uc)

    cdef int on_cpuid(self) noexcept:
        """CPUID from a C copy of the handler's CpuidModel (``handler.cpuid``), rebuilt whenever
        its generation moves; through the handler (a CPUID exit) while exits are traced
        (``handler.trace``), or when the handler has no model or its model reads another vCPU."""
        cdef uint64_t *r = self.regs()
        try:
            h = self.handler
            if getattr(h, "trace", None) is None:
                model = getattr(h, "cpuid", None)
                if model is not None:
                    if model is not self.cpuid_model or model.generation != self.cpuid_generation:
                        self.load_cpuid(model)
                    if self.cpuid_osxsave >= 0:
                        self.cpuid_answer(r)
                        return 1
        except BaseException as e:
            self._fail(f"CPUID: {e!r}")
            return 0
        res = self._py_exit(ExitKind.CPUID, r[R_RAX] & 0xFFFFFFFF, 0, r[R_RCX] & 0xFFFFFFFF)
        if res is None:
            return 0
        for i in range(4):
            r[(R_RAX, R_RBX, R_RCX, R_RDX)[i]] = <uint32_t> res[i]
        return 1

    cdef void load_cpuid(self, model) except *:
        """Copy ``model`` (vmm.cpuid.CpuidModel.entries()) into the C table."""
        cdef CpuidEntry *table
        cdef int i
        generation = model.generation
        owner = model.vcpu
        max_basic, max_hypervisor, max_ext, rows = model.entries()
        table = <CpuidEntry*> malloc(sizeof(CpuidEntry) * (len(rows) + 1))
        if table == NULL:
            raise MemoryError()
        for i, (leaf, subleaf, takes_subleaf, eax, ebx, ecx, edx) in enumerate(rows):
            table[i].leaf = leaf
            table[i].subleaf = subleaf
            table[i].takes_subleaf = 1 if takes_subleaf else 0
            table[i].regs[0] = eax
            table[i].regs[1] = ebx
            table[i].regs[2] = ecx
            table[i].regs[3] = edx
        free(self.cpuid_table)
        self.cpuid_table = table
        self.cpuid_len = len(rows)
        self.cpuid_max_basic = max_basic
        self.cpuid_max_hypervisor = max_hypervisor
        self.cpuid_max_ext = max_ext
        self.cpuid_osxsave = 1 if owner is self else (0 if owner is None else -1)
        self.cpuid_model = model
        self.cpuid_generation = generation

    cdef void cpuid_answer(self, uint64_t *r) noexcept:
        """What CpuidModel.query() answers for EAX/ECX, from the C table, into RAX..RDX."""
        cdef uint32_t leaf = <uint32_t> r[R_RAX], subleaf = <uint32_t> r[R_RCX], eff = leaf
        cdef uint32_t out[4]
        cdef CpuidEntry *e
        cdef int i
        if (self.cpuid_max_basic < eff < 0x80000000 and not (HYPERVISOR_BASE <= eff <= self.cpuid_max_hypervisor)) \
                or eff > self.cpuid_max_ext:
            eff = self.cpuid_max_basic      # Intel: out-of-range leaves answer as the highest basic leaf
        memset(out, 0, sizeof(out))
        for i in range(self.cpuid_len):
            e = &self.cpuid_table[i]
            if e.leaf == eff and (e.subleaf == subleaf or not e.takes_subleaf):
                memcpy(out, e.regs, sizeof(out))
                break
        if leaf == 1 and (out[2] & CPUID_XSAVE) and self.cpuid_osxsave == 1 and (self.c_cr(4) & CR4_OSXSAVE):
            out[2] |= CPUID_OSXSAVE
        r[R_RAX] = out[0]
        r[R_RBX] = out[1]
        r[R_RCX] = out[2]
        r[R_RDX] = out[3]

    def cpuid(self, uint32_t leaf, uint32_t subleaf=0):
        """The C path's answer for (leaf, subleaf) as a tuple, or None if there is no C path (tests).
        Leaves the guest's registers as they were."""
        cdef uint64_t saved[4]
        cdef uint64_t *r = self.regs()
        model = getattr(self.handler, "cpuid", None)
        if model is None:
            return None
        if model is not self.cpuid_model or model.generation != self.cpuid_generation:
            self.load_cpuid(model)
        if self.cpuid_osxsave < 0:
            return None
        saved[0], saved[1], saved[2], saved[3] = r[R_RAX], r[R_RBX], r[R_RCX], r[R_RDX]
        r[R_RAX] = leaf
        r[R_RCX] = subleaf
        self.cpuid_answer(r)
        res = (<uint32_t> r[R_RAX], <uint32_t> r[R_RBX], <uint32_t> r[R_RCX], <uint32_t> r[R_RDX])
        r[R_RAX], r[R_RBX], r[R_RCX], r[R_RDX] = saved[0], saved[1], saved[2], saved[3]
        return res

    cdef int on_rdtsc(self, bint rdtscp) noexcept:
        cdef uint64_t *r = self.regs()
        self.commit_before(self.pc())
        cdef uint64_t tsc = self.retired + self.clock_offset + self.tsc_offset
        r[R_RAX] = tsc & 0xFFFFFFFF
        r[R_RDX] = tsc >> 32
        if rdtscp:
            r[R_RCX] = self.c_tsc_aux()     # as last written by WRMSR (the engine's copy)
        return 1

    cdef uint64_t c_tsc_aux(self) noexcept:
        cdef MsrArg m
        m.rid = MSR_TSC_AUX
        m.value = 0
        uc_reg_read(self.uc, REG_MSR, &m)
        return m.value & 0xFFFFFFFF

    @property
    def tsc_aux(self):
        """IA32_TSC_AUX, which RDTSCP returns in ECX: the engine's MSR, which WRMSR sets."""
        return self.c_tsc_aux()

    @tsc_aux.setter
    def tsc_aux(self, value):
        cdef MsrArg m
        m.rid = MSR_TSC_AUX
        m.value = value & 0xFFFFFFFF
        uc_reg_write(self.uc, REG_MSR, &m)

    cdef bint _has_feature(self, str name) noexcept:
        """Whether this vCPU's CPUID model advertises ``name`` (cold paths; True without a model)."""
        try:
            cpuid = getattr(self.handler, "cpuid", None)
            return cpuid is None or cpuid.has(name)
        except BaseException as e:
            self._fail(f"CPUID model: {e!r}")
            return False

    cdef void on_syscall(self) noexcept:
        """SYSCALL: RCX=return RIP, R11=RFLAGS, CS/SS from STAR, RIP=LSTAR (64-bit code).  Outside
        64-bit code Intel CPUs raise #UD; AMD ones go to CSTAR from compatibility mode and, in legacy
        mode, to STAR[31:0] with ECX = return EIP and IF/VM/RF cleared (no FMASK, R11 untouched)."""
        cdef uint64_t *r = self.regs()
        cdef MsrArg m
        cdef uint64_t rflags = 0, star, target, fmask, rip = self.eip()
        cdef uint32_t hf = self.hflags()
        cdef bint legacy = False
        m.rid = 0xC0000080
        uc_reg_read(self.uc, REG_MSR, &m)
        if not (m.value & 1) or (not (hf & HF_CS64) and not self._vendor_is_amd()):
            # EFER.SCE clear, or (Intel) not in 64-bit mode
            self.commit_before(self.pc())
            self.raise_fault(EXC_UD)
            self.set_eip(self.eip() - 2)    # the engine adds SYSCALL's length to the handler's RIP
            return
        m.rid = 0xC0000081
        uc_reg_read(self.uc, REG_MSR, &m)
        star = m.value
        if hf & HF_CS64:
            m.rid = 0xC0000082         # LSTAR
        elif hf & HF_LMA:
            m.rid = 0xC0000083         # CSTAR: compatibility mode (AMD)
        else:
            legacy = True
        if legacy:
            target = star & 0xFFFFFFFF
            fmask = EFLAGS_IF | EFLAGS_VM | 0x10000
        else:
            uc_reg_read(self.uc, REG_MSR, &m)
            target = m.value
            m.rid = 0xC0000084
            uc_reg_read(self.uc, REG_MSR, &m)
            fmask = m.value
        uc_reg_read(self.uc, REG_RFLAGS, &rflags)
        if legacy:
            r[R_RCX] = (r[R_RCX] & ~<uint64_t>0xFFFFFFFF) | <uint32_t> (rip + 2)
        else:
            r[R_RCX] = rip + 2
            r[11] = rflags & ~<uint64_t>0x10000     # RF reads as 0 in the saved image
        rflags &= ~(fmask | 0x10000)
        uc_reg_write(self.uc, REG_RFLAGS, &rflags)
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_CPL_MASK
        x86_load_seg(self.env, SEG_CS, (star >> 32) & 0xFFFC)
        x86_load_seg(self.env, SEG_SS, ((star >> 32) & 0xFFFC) + 8)
        self.set_eip(target - 2)     # the engine adds the instruction length afterwards

    cdef bint _vendor_is_amd(self) noexcept:
        """This vCPU's CPUID vendor is AMD (cold paths; Intel without a CPUID model)."""
        try:
            return getattr(getattr(self.handler, "cpuid", None), "vendor", "intel") == "amd"
        except BaseException as e:
            self._fail(f"CPUID model: {e!r}")
            return False

    cdef bint on_unmapped(self, int access, uint64_t address, int size) noexcept:
        """A data access to physical memory with no RAM and no device follows the platform rule
        (reads all-ones, writes dropped): the gap it is in becomes a void region and the access goes
        on.  Under strict_memory it ends the run instead; an instruction fetch from there always
        does (as one from an MMIO window).  ``address`` is physical (the engine reports it after
        translation)."""
        if access == ucc.UC_MEM_FETCH_UNMAPPED:
            self.stop_reason = STOP_ERROR
            self.stop_text = f"guest fetched an instruction from unmapped physical memory at {address:#x}"
            return False
        if self.strict_memory or self.stop_reason == STOP_ERROR or not self.map_void(address):
            if self.stop_reason != STOP_ERROR:
                self.stop_reason = STOP_ERROR
                self.stop_text = f"guest accessed unmapped physical memory at {address:#x} (size {size})"
            return False
        return True

    cdef bint map_void(self, uint64_t address) noexcept:
        """Map the unmapped range around ``address`` as a void region: the gap between the mappings
        on either side, clipped to the naturally aligned VOID_CHUNK that holds ``address``.  Chunks
        keep the regions few (one per chunk a guest touches: the engine's 40-bit physical space has
        1024) and cheap to carve up again (unmapping costs the engine a TLB flush per page)."""
        cdef uint64_t lo = address & ~<uint64_t>(VOID_CHUNK - 1)
        cdef uint64_t hi = lo + VOID_CHUNK
        cdef int err
        if address >= PHYS_LIMIT:
            return False
        if len(self.voids) >= MAX_VOIDS:
            self._fail(f"guest accessed unmapped physical memory in more than {MAX_VOIDS} places")
            return False
        try:
            for begin, last, _ in self.engine.mem_regions():
                if last < address:
                    lo = max(lo, last + 1)
                elif begin > address:
                    hi = min(hi, begin)
                else:
                    return False        # mapped after all: not ours to change
            err = uc_mmio_map(self.uc, lo, hi - lo, <void*> _void_read, <void*> self, <void*> _void_write,
                              <void*> self)
            if err:
                self._fail(f"mapping unmapped physical memory {lo:#x}-{hi - 1:#x}: {unicorn.UcError(err)}")
                return False
            self.voids.append((lo, hi))
            return True
        except BaseException as e:
            self._fail(f"unmapped physical memory at {address:#x}: {e!r}")
            return False

    cdef void carve_voids(self, uint64_t base, uint64_t size) except *:
        """Make room for a mapping at [base, base + size): void regions there shrink around it."""
        cdef uint64_t end = base + size
        for begin, last in list(self.voids):
            if begin < end and base < last:
                uc_mem_unmap(self.uc, begin, last - begin)
                self.voids.remove((begin, last))
                for b, e in ((begin, base), (end, last)):
                    if b < e:
                        if uc_mmio_map(self.uc, b, e - b, <void*> _void_read, <void*> self, <void*> _void_write,
                                       <void*> self):
                            raise RuntimeError(f"remapping unmapped physical memory {b:#x}-{e - 1:#x}")
                        self.voids.append((b, e))

    def void_regions(self):
        """The physical ranges [begin, end) mapped as reads-all-ones/writes-dropped so far."""
        return sorted(self.voids)

    # -- Python side (cold paths) ---------------------------------------------------------
    cdef object _py_exit(self, int kind, uint64_t address, int size, uint64_t value):
        self.cycle_budget = 0       # a device may reach the PMU (host-side calls)
        try:
            return self.handler.handle(Exit(EXIT_KINDS[kind], address, size, value, self.vcpu_id))
        except BaseException as e:
            self._fail(f"{EXIT_KINDS[kind].name} {address:#x}: {e!r}")
            return None

    cdef uint64_t _py_mmio(self, int kind, uint64_t address, unsigned size, uint64_t value) noexcept:
        res = self._py_exit(kind, address, size, value)
        if self.stop_reason != STOP_NONE:
            uc_emu_stop(self.uc)
        if kind == ExitKind.MMIO_READ:
            return 0 if (res is None or isinstance(res, Fault)) else <uint64_t> res
        return 0

    cdef void _py_attention(self) noexcept:
        """Queued work, on_attention, then the work that queued: all of it before the guest goes on
        (or, in the HLT wait, before the machine decides whether anything can wake the vCPU)."""
        self.cycle_budget = 0
        try:
            self._run_work()
            if self.on_attention is not None:
                self.on_attention()
            self._run_work()
        except BaseException as e:
            self._fail(f"device work on the vCPU: {e!r}")

    cdef void _run_work(self) except *:
        while self.work:
            self.work.pop(0)()

    cdef void _fail(self, str text) noexcept:
        self.stop_reason = STOP_ERROR
        self.stop_text = text
        uc_emu_stop(self.uc)

    # -- the view devices use (docs/design.md) -------------------------------------------
    def cpl(self):
        return self.c_cpl()

    def cr0(self):
        return self.c_cr(0)

    def cr4(self):
        return self.c_cr(4)

    def interrupts_enabled(self):
        return self.c_interruptible()

    def kick(self):
        """Something changed for this vCPU (interrupt, timer, deferred work): look at it soon."""
        self.attention = True
        self.irq_pending = True
        self.nmi_check = True

    def queue_work(self, fn):
        self.work.append(fn)
        self.kick()

    def request_stop(self, str text="stopped by the VMM"):
        if self.stop_reason == STOP_NONE or self.stop_reason == STOP_YIELD:
            self.stop_reason = STOP_REQUESTED
            self.stop_text = text
        uc_emu_stop(self.uc)

    def stop_before_this_instruction(self, str text):
        """From a code hook (a debugger's breakpoint): end run() before the instruction the hook
        fires for, which does not retire (the engine checks for a stop right after code hooks)."""
        self.stop_mid_block = True
        self.request_stop(text)

    def read_virtual(self, uint64_t address, size_t size):
        """Guest memory at a virtual address through the guest's page tables (CR2 untouched), or
        None if some byte is not mapped.  For debuggers; cold path."""
        cdef bytearray buf = bytearray(size)
        if size and not self.read_guest(address, PROT_READ, <char*> buf, size):
            return None
        return bytes(buf)

    def write_virtual(self, uint64_t address, bytes data):
        """Write guest memory at a virtual address (CR2 untouched) and drop translations of code
        there; False if some byte is not mapped.  For debuggers; cold path."""
        cdef uint64_t cr2 = self.c_cr(2)
        if not data:
            return True
        if uc_vmem_write(self.uc, address, PROT_WRITE, <char*> data, len(data)) != 0:
            (<uint64_t*> (self.env + OFF_CR))[2] = cr2
            return False
        uc_ctl(self.uc, ctl_write(CTL_TB_REMOVE_CACHE, 2), address, address + len(data))
        return True

    def request_yield(self):
        """End this run() at the next block boundary with a YIELD exit (the end of an SMP time
        slice); any other stop reason takes precedence."""
        if self.stop_reason == STOP_NONE:
            self.stop_reason = STOP_YIELD
            self.stop_text = "time slice ended"
        uc_emu_stop(self.uc)

    def load_real_mode_segments(self, int cs_selector):
        """Start real-mode execution state (INIT/SIPI): CS = ``cs_selector`` with base selector*16,
        the data segments 0, and nothing of the hook layer's in-flight state kept.  CR0.PE must
        already be clear.  The binding's register write only sets a selector in a 64-bit engine,
        so the engine's own segment load is used (in real mode it derives base and limit)."""
        if self.c_cr(0) & CR0_PE:
            raise ValueError("load_real_mode_segments: CR0.PE is set")
        if not 0 <= cs_selector <= 0xFFFF:
            raise ValueError(f"selector {cs_selector:#x} is not 16 bits")
        cdef int seg
        for seg in range(6):        # ES, CS, SS, DS, FS, GS
            x86_load_seg(self.env, seg, cs_selector if seg == SEG_CS else 0)
        if self.trunc_exit:
            self.disarm_truncation()
        self.leave_block()
        self.rep_addr = <uint64_t> -1
        self.br_flags = 0
        self.delivering_df = False
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        (<uint32_t*> (self.env + OFF_HFLAGS2))[0] &= ~<uint32_t>HF2_NMI_MASK

    def map_mmio(self, uint64_t base, uint64_t size):
        if self.n_mmio >= MAX_MMIO:
            raise RuntimeError("too many MMIO windows")
        self.carve_voids(base, size)
        cdef MmioRegion *reg = &self.mmio[self.n_mmio]
        reg.vcpu = <void*> self
        reg.base = base
        err = uc_mmio_map(self.uc, base, size, <void*> _mmio_read, reg, <void*> _mmio_write, reg)
        if err:
            raise RuntimeError(f"mapping MMIO at {base:#x}: {unicorn.UcError(err)}")
        self.n_mmio += 1

    def unmap_mmio(self, uint64_t base, uint64_t size):
        cdef int i
        for i in range(self.n_mmio):
            if self.mmio[i].base == base:
                uc_mem_unmap(self.uc, base, size)
                self.mmio[i] = self.mmio[self.n_mmio - 1]
                self.n_mmio -= 1
                return
        raise KeyError(f"no MMIO window at {base:#x}")

    def attach_lapic(self, Lapic lapic):
        """Route x2APIC MSR accesses through this LAPIC's C path."""
        self.lapic = lapic

    def attach_pmu(self, PmuCore core):
        """Route this PMU core's MSRs, RDPMC and event counts through the C fast paths."""
        self.pmu = core

    # -- running --------------------------------------------------------------------------
    def run(self, double timeout=0.0, uint64_t steps=0):
        """Run until a terminal exit: HLT, SHUTDOWN, STOPPED, YIELD or INTERNAL_ERROR.  A stop
        requested while the guest was not running (from the machine's HLT wait, a signal handler)
        ends the call before the guest runs.  ``steps`` > 0: execute at most that many
        instructions (the engine's own count) and return STOPPED "step" unless something else
        ended the run first; the instructions retire exactly as they would have in a free run
        (one by one: no self-loop is retired in bulk while stepping)."""
        cdef bint bulk = self.bulk_loops
        if steps:
            self.bulk_loops = False
            # The engine counts instructions with a code hook compiled into each translation:
            # translations made during a free run have none and would run on uncounted (a `jmp .`
            # chained to itself forever).  Returning to a free run drops them again by itself.
            uc_ctl(self.uc, ctl_write(CTL_TB_FLUSH, 0))
        try:
            return self._run(timeout, steps)
        finally:
            self.bulk_loops = bulk

    cdef object _run(self, double timeout, uint64_t steps):
        cdef uint64_t rip = 0
        cdef int err
        cdef size_t timeout_us
        cdef double end = time.monotonic() + timeout if timeout > 0 else 0.0
        while True:
            if self.stop_reason == STOP_NONE and \
                    (self.work or self.attention or self.deadline <= self.retired + self.clock_offset):
                self.attention = False
                self._py_attention()
            if self.stop_reason != STOP_NONE:
                return self._terminal()
            uc_reg_read(self.uc, REG_RIP, &rip)
            timeout_us = 0
            if end:
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return Exit(ExitKind.STOPPED, reason="timeout", vcpu_id=self.vcpu_id)
                # At most a day per entry (run() comes back and goes on): a size_t of microseconds
                # cannot hold every timeout a caller may give.
                timeout_us = <size_t> (min(remaining, MAX_ENTRY_S) * 1e6) + 1
            self.cycle_budget = 0       # the host may have changed the PMU between runs
            self.in_guest = True
            err = uc_emu_start(self.uc, rip, 0, timeout_us, steps)
            self.in_guest = False
            if steps or self.stop_mid_block:
                # Stopped before an instruction, maybe inside the block: what lies before it retired.
                self.stop_mid_block = False
                self.commit_before(self.pc())
                self.leave_block()
            else:
                self.finish_block()
            if self.delivering_df:
                self.triple_faulted()   # a fault while delivering the #DF: the engine gave up and stopped
            rip = self.pc()
            if self.trunc_exit and rip == self.trunc_exit:
                self.disarm_truncation()
                if self.stop_reason == STOP_NONE and not err and not steps:
                    continue        # stopped where a counter overflowed or a shadow ended
            if self.stop_reason != STOP_NONE:
                return self._terminal()
            if err == ERR_FETCH_PROT:     # RAM is executable: this is a jump into an MMIO window
                return Exit(ExitKind.INTERNAL_ERROR, reason=f"guest fetched an instruction from MMIO at {rip:#x}",
                            vcpu_id=self.vcpu_id)
            if err:
                return Exit(ExitKind.INTERNAL_ERROR, reason=f"engine error: {unicorn.UcError(err)}",
                            vcpu_id=self.vcpu_id)
            # The engine's own halted state says HLT ran (RIP is after it); a stop at an exit
            # address sets it too, but those were taken above.
            if self.engine_halted[0]:
                return Exit(ExitKind.HLT, address=rip, vcpu_id=self.vcpu_id)
            if steps:
                return Exit(ExitKind.STOPPED, reason="step", address=rip, vcpu_id=self.vcpu_id)
            if end and time.monotonic() >= end:
                return Exit(ExitKind.STOPPED, reason="timeout", vcpu_id=self.vcpu_id)

    def service(self):
        """Run queued work and ``on_attention`` while the guest is not running (the machine's HLT
        wait does this instead of run()).  Returns the terminal exit of a stop requested by now,
        or of the instruction limit, else None."""
        self.attention = False
        self._py_attention()
        self.check_limit()
        return self._terminal() if self.stop_reason != STOP_NONE else None

    cdef object _terminal(self):
        """The terminal exit of ``stop_reason``, which it consumes."""
        kinds = {STOP_REQUESTED: ExitKind.STOPPED, STOP_LIMIT: ExitKind.STOPPED,
                 STOP_SHUTDOWN: ExitKind.SHUTDOWN, STOP_ERROR: ExitKind.INTERNAL_ERROR, STOP_YIELD: ExitKind.YIELD}
        ex = Exit(kinds[self.stop_reason], reason=self.stop_text or "", vcpu_id=self.vcpu_id)
        self.stop_reason = STOP_NONE
        self.stop_text = None
        return ex
