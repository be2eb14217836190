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
* The block hook's fast path (on_block): when the block that ran goes on to a block it went on to
  before and nothing needs a look, the hook commits it to the clock and leaves its PMU counts
  pending, ~32 host instructions in all: one word holds every reason to look (the holds, with
  RFLAGS.IF against a pending interrupt), one compare says the next block's decode is current, one
  its CPL is unchanged (a byte of the engine's hflags), one bound stands for the deadline and the
  budget.  The PMU gets them (settle) before anything can see or change its counters or the CPL
  they belong to: at every other commit, when a block is left, before any Python code, at the end
  of a run; they can never overflow a counter meanwhile (the budget of stop_at_overflow), so
  counts, overflow points and PMIs are those of block-by-block counting.  A REP string
  instruction's block re-entered for its next iteration, after the instruction retired, has its
  own case there: nothing to commit, only the timeout's look every so many iterations.  Everything
  else goes through on_block_slow.
* Decoded blocks follow the code: each block's decode (instruction offsets, flags) is compared
  with the code at its address again at its first entry after anything that can change that code
  (a store the engine saw into translated code, a TLB flush or paging change, a translation
  flush); patched code and other code mapped at the same linear address are decoded anew (or a
  decode kept from before is taken), so no block is ever counted by a stale decode.  On the hot
  path this costs one compare per block (the block's generation against the sum of the generation
  and the engine's count of dropped translations).  Code compares as the engine's TLB maps it, and
  a changed block's translation is dropped with its decode, so what is counted is always what the
  engine runs; where the SDM leaves open which code runs (another vCPU's store before this one
  serializes, a page-table entry changed without a TLB flush) that is the old code until a block
  there is compared again.
* Interrupt injection and timers: a block hook checks the attention and NMI flags (in the holds
  word) and the pending-interrupt flag against RFLAGS.IF; a block that starts in a shadow with an
  interrupt waiting is cut after its first instruction.
* Stop requests are kept until reported: one made while the guest is not running (the machine's
  HLT wait, a signal handler) ends the next run() or service().  HLT is the engine's halted state,
  not a look at the byte before RIP.  Reads of guest memory made for the hook layer itself
  (instruction bytes, the TSS I/O bitmap, operands) leave CR2 alone when they fail.
* Trace (vmm/trace.py): where an MSR access, RDPMC, port I/O, MMIO access, injected interrupt or
  delivered exception is handled, a record goes into the machine's trace ring when ``tap.mask``
  (this vCPU's categories) says so; the PMU core writes through the same tap.  Nothing on the
  block path tests it.

This file holds :class:`UcVcpu`: its state, the accessors of the engine's CPU state every part
uses, the accounting and the block hook, the Python side and the public API.  Each other concern
is a file of plain C functions over a ``UcVcpu``, included here (each says what it does and does
not do):

* ``_ucvcpu_engine.pxi``      libunicorn's entry points, constants, the private CPU-state layout
                              and its self-test, hook registration
* ``_ucvcpu_blocks.pxi``      the decoded-block cache and how it follows the code; which blocks
                              are self-loops
* ``_ucvcpu_counting.pxi``    bulk retirement of self-loops, zero-skid overflow stops, the
                              instruction limit, the LLC and branch-predictor event models
* ``_ucvcpu_interrupts.pxi``  exception and interrupt delivery through the guest IDT, #DF and
                              triple fault, RDPMC from the engine's #UD/#GP
* ``_ucvcpu_debug.pxi``       the #DB traps the engine does not raise: single-step after emulated
                              instructions, I/O and data breakpoints
* ``_ucvcpu_lapic.pxi``       the LAPIC's C paths: x2APIC MSRs and the xAPIC page
* ``_ucvcpu_msr.pxi``         RDMSR/WRMSR: native MSRs, the PMU's and x2APIC's C paths, TSC and
                              TSC_ADJUST, exits
* ``_ucvcpu_insns.pxi``       port I/O (the TSS I/O bitmap, UARTs' C cores), CR8, LTR, IRET to
                              itself, cache maintenance
* ``_ucvcpu_cpuid.pxi``       CPUID (C copy of the CPUID model), RDTSC/RDTSCP, SYSCALL
* ``_ucvcpu_control.pxi``     the SDM's #GP checks of MOV to CR0/CR3/CR4 and WRMSR to EFER,
                              SYSENTER (emulated) and SYSEXIT (checked)
* ``_ucvcpu_memory.pxi``      MMIO windows; unmapped physical memory as void regions
* ``_ucvcpu_stores.pxi``      which guest stores take the engine's fast path: the unmapped hook
                              over what is not RAM, marker hooks over pages with translated code
* ``_ucvcpu_exitchecks.pxi``  the engine's stop checks after memory accesses and code hooks: off;
                              code-hook trampolines leave the block themselves
* ``_ucvcpu_timeout.pxi``     run()'s wall-clock timeout, read at virtual-time checks, exception
                              deliveries and REP iterations (never the engine's timeout thread)

It relies on private engine internals (the CPU state pointer and field offsets of QEMU 5.0.1
inside unicorn 2.1.4, CPUState.halted, the TCGContext's count of dropped translations);
:func:`self_test` checks every one of them at start-up and fails with a clear message on a
mismatch.

Not supported: more than one vCPU per engine, executing from an MMIO window (the run ends with
an internal error).  An interrupt made pending by an MMIO
access (e.g. a self-IPI through the xAPIC page) is taken at the next block boundary, a few
instructions late; overflows of LLC and branch-miss counters raise their PMI at the next block
boundary (the instruction/cycle/branch counters have zero skid).  SYSCALL loads CS/SS through
the guest's GDT descriptors at STAR (real CPUs use fixed flat values).  SYSCALL outside 64-bit code
is #UD on Intel and goes to CSTAR (compatibility mode) or STAR[31:0] (legacy mode) on AMD.
Debug exceptions not raised: I/O breakpoints on INS/OUTS, general detect (DR7.GD), data
breakpoints hit by the stack writes of event delivery.  Control-register checks not made: the
PDPTEs a MOV to CR0/CR3/CR4 loads in PAE paging (reserved bits there are no #GP), CR4.CET against
CR0.WP (CET is never advertised), activating IA-32e mode from code whose CS.L is set; LA57 is only
refused while in long mode.
"""

from libc.stdint cimport int8_t, int32_t, uint8_t, uint16_t, uint32_t, uint64_t, int64_t, uintptr_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memcmp, memcpy, memmove, memset

from vmm import engine as ucapi
from vmm.engine import EngineError, as_engine

from devices._uart cimport UartCore
from devices.lapic cimport LAPIC_DONE, LAPIC_GP, LAPIC_SETTLE, LAPIC_UNHANDLED, Lapic
from pmu._core cimport PmuCore
from vmm._trace cimport TraceBuffer
from vmm._tracering cimport (TF_CR2, TF_ERROR_CODE, TF_FAULT, TF_NMI, TF_SOFTWARE, TF_WRITE, TK_EXC, TK_IO, TK_IRQ,
                             TK_MMIO, TK_MSR, TK_RDPMC, TraceRecord, TraceRing, TraceTap, trace_emit)
from vmm._uarch cimport BranchPredictor, CacheModel

from devices.bus import Fault
cimport cython

cdef extern from *:
    int __builtin_popcountll(unsigned long long x) nogil

from vmm import cpuid as _cpuid
from vmm import decode
from vmm.decode import memory_operand
from vmm.exits import Exit, ExitKind

# Why run() returned.
DEF STOP_NONE = 0
DEF STOP_REQUESTED = 1
DEF STOP_SHUTDOWN = 2
DEF STOP_ERROR = 3
DEF STOP_LIMIT = 4
DEF STOP_YIELD = 5      # the lowest priority: any other reason replaces it

# ExitKind members by value: building an enum from an int on every exit costs more than the exit.
cdef tuple EXIT_KINDS = tuple(sorted(ExitKind, key=int))


cdef struct Holds:
    # What keeps UcVcpu.on_block's fast path off while it is not 0: packed into 8 bytes that the fast
    # path reads as one word (holds_any), so that checking them all costs one load.
    uint8_t slow_only         # the PMU needs each block's counts as it retires (see stop_at_overflow)
    uint8_t attention         # kick()ed: timers, PMIs, queued work (the ``attention`` property)
    uint8_t nmi_check         # an NMI may be waiting: deliverable whatever RFLAGS.IF says (``nmi_check``)
    uint8_t dr_changed        # a MOV to DR0-DR7 ran: re-read them at the next block
    uint16_t cur_done         # instructions of the current block already committed (Block.n is 16 bits)
    uint8_t no_block          # no block is in flight (cur is NULL: the fast path has no block to go on from)
    uint8_t rep_armed         # rep_addr is set (set_rep_addr): only the fast path's REP case may run

if sizeof(Holds) != sizeof(uint64_t):
    raise ImportError("UcVcpu's Holds must be one 64-bit word")


cdef inline uint64_t holds_any(const Holds *h) noexcept nogil:
    """Non-zero if any of the holds is set (one 64-bit load: memcpy is how C reads a struct as a word)."""
    cdef uint64_t word
    memcpy(&word, h, sizeof(word))
    return word

cdef Holds _rep_only
memset(&_rep_only, 0, sizeof(Holds))
_rep_only.rep_armed = 1
# The holds word (with no interrupt to deliver) in which on_block's REP case may run: rep_armed alone.
cdef uint64_t REP_ONLY = holds_any(&_rep_only)

# The concerns, each as C functions over a UcVcpu (see the list above).  They come before the class
# because its state is made of their types; their order matters only for DEF constants, which must
# be defined before they are used (the engine's layout first).
include "_ucvcpu_engine.pxi"
include "_ucvcpu_blocks.pxi"
include "_ucvcpu_counting.pxi"
include "_ucvcpu_interrupts.pxi"
include "_ucvcpu_debug.pxi"
include "_ucvcpu_lapic.pxi"
include "_ucvcpu_msr.pxi"
include "_ucvcpu_insns.pxi"
include "_ucvcpu_cpuid.pxi"
include "_ucvcpu_control.pxi"
include "_ucvcpu_memory.pxi"
include "_ucvcpu_stores.pxi"
include "_ucvcpu_exitchecks.pxi"
include "_ucvcpu_timeout.pxi"


@cython.final
cdef class UcVcpu:
    """One vCPU on a unicorn engine: a vmm.engine.Engine, or the binding's ``Uc``.  ``handler``
    answers exits (vmm.dispatch.Dispatcher)."""

    cdef void *uc
    cdef char *env
    cdef void *cpu
    cdef uint32_t *engine_halted  # the engine's CPUState.halted: set by HLT, cleared by each emu_start
    cdef object engine           # its vmm.engine.Engine (a view of a binding Uc it was given), kept alive
    cdef public object handler   # .handle(Exit) -> int | Fault | tuple | None (vmm.dispatch.Dispatcher)
    cdef public object platform  # .backdoor(port, regs), .read_cr8(), .write_cr8(value)
    cdef public object intc      # interrupt source: .next_injection() -> (vector, is_nmi) | None
    cdef public object on_attention  # called on the vCPU side when kick()ed (timers, PMIs, work)
    cdef BlockTable blocks
    cdef set hooked_insns
    # Decoded blocks follow the code (_ucvcpu_blocks.pxi: current_block)
    cdef size_t *engine_invalidations   # translations the engine has dropped (its TCGContext's count)
    cdef size_t invalidations_seen
    cdef uint32_t code_gen              # moves when any block's code may have changed under it
    cdef uint32_t gen_bias              # code_gen - invalidations_seen: still_current's one sum (sync_gen_bias)
    cdef uint32_t write_gen             # ... by a store (it moves with code_gen)
    cdef uint64_t cr_seen[3]            # CR0, CR3, CR4 when the last run() ended
    cdef CodePage code_tlb[CODE_TLB_SIZE]
    cdef public uint64_t code_checks    # blocks whose bytes were compared again (statistics, tests)
    cdef public uint64_t code_changes   # ... and found changed: decoded anew or another decode taken
    cdef list work
    cdef MmioRegion mmio[MAX_MMIO]
    cdef int n_mmio
    cdef list voids                   # [(begin, end)] of the void regions mapped (see map_void)
    cdef public bint strict_memory    # an access to unmapped physical memory ends the run instead
    cdef public uint64_t unmapped_reads    # accesses to void regions (the engine splits wide ones)
    cdef public uint64_t unmapped_writes
    # Where stores are fast (_ucvcpu_stores.pxi): physical pages with translated code, as sorted
    # inclusive ranges, and the marker hooks' bounds they are written into
    cdef uint64_t code_lo[MAX_CODE_RANGES + 1]
    cdef uint64_t code_hi[MAX_CODE_RANGES + 1]
    cdef int n_code
    cdef uint64_t *code_bounds[MAX_CODE_RANGES]
    cdef bint translations_reported   # the engine has reported a translation (all but its first)
    # The engine's stop checks inside blocks (_ucvcpu_exitchecks.pxi): its switch, and whether its
    # owner wants them on (code hooks added on the engine: a debugger's breakpoints)
    cdef uint8_t *no_exit_request
    cdef bint exit_checks_wanted
    cdef public uint64_t code_marks   # how often marked pages grew (a TLB flush each): statistics, tests

    # accounting
    cdef Block *cur
    cdef int cur_cpl
    cdef uint8_t cur_hflags      # the low byte of the engine's hflags (CPL and more) where cur was entered
    cdef uint64_t rep_addr       # address of the REP string instruction the last block ended in
    cdef public uint64_t retired
    cdef public uint64_t tsc_offset

    # control
    cdef public bint in_guest
    cdef Holds holds                  # attention, nmi_check, ...: on_block's fast path runs while all are 0
    cdef uint64_t irq_if              # EFLAGS_IF while an interrupt may be pending (``irq_pending``), else 0
    cdef public bint forced_emulation
    cdef public bint sync_translations  # an IRET to itself drops translations (SMP: other vCPUs write code)
    cdef public uint64_t translation_flushes   # how often it did
    cdef public bint others_ran        # another vCPU ran since the last flush (only they can rewrite code unseen)
    cdef public int vcpu_id
    cdef uint64_t deadline            # virtual ns of the next attention: timer_deadline or a timeout check
    cdef uint64_t timer_deadline      # ... as the machine sets it (the ``deadline`` property): its timers
    cdef double timeout_end           # run()'s wall-clock end (monotonic s), 0 = none (_ucvcpu_timeout.pxi)
    cdef uint64_t timeout_check       # virtual ns of the next look at the clock
    cdef uint64_t still_events        # deliveries and REP iterations during runs with a timeout
    cdef uint64_t c_clock_offset      # machine time not retired by this vCPU (the ``clock_offset`` property)
    cdef uint64_t fast_until          # on_block's fast path keeps retired below it (fold_fast_until)
    cdef public uint64_t max_insns
    cdef int stop_reason
    cdef object stop_text
    cdef bint delivering_df      # set while the engine delivers a #DF; still set later = triple fault
    cdef bint stop_mid_block     # the run ends where RIP is, maybe inside a block (a debugger's break, a stop
                                 # asked for by a memory access: stop_at_access)
    cdef public int64_t tsc_adjust   # IA32_TSC_ADJUST: what WRMSRs to the TSC and to it have added

    # PMU (None when the machine has none): C fast paths for its MSRs, RDPMC and counting
    cdef PmuCore pmu
    cdef Lapic lapic                        # x2APIC MSRs take its C path (None: all through the bus)
    cdef bint xapic_page                    # ... and so does its xAPIC page (attach_lapic)
    cdef public CacheModel cache            # feeds LLC references/misses while a counter needs them
    cdef public BranchPredictor predictor   # feeds branch misses while a counter needs them
    cdef size_t mem_hook                    # the memory-access hook, 0 while no LLC event is counted
    cdef uint64_t br_addr                   # the last retired branch, waiting for its outcome
    cdef uint64_t br_fallthrough
    cdef uint8_t br_flags
    cdef int br_cpl
    cdef uint64_t cycle_budget        # retired count the budget ends at (stop_at_overflow); 0 = unknown
    cdef public bint fast_blocks      # on_block's fast path may run; off: every block the slow way (tests)
    cdef public bint fast_rep         # ... and its case for a REP string instruction's later iterations (tests)
    cdef public uint64_t slow_blocks  # block hooks that took the slow path (statistics, tests)
    cdef uint64_t pending             # retired by on_block's fast path at cur_cpl, not yet counted (settle())
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
    cdef uint8_t port_exits[PORT_MAP_BYTES]  # bit set: IN/OUT at that port is an exit (set_port_exits)
    cdef UartPorts uarts[MAX_UARTS]   # ... unless a UART's C core answers it (set_uart)
    cdef int n_uarts
    cdef dict uart_refs               # base -> the UartCore of uarts[], kept alive
    # What MOV to CR3/CR4 and WRMSR to EFER refuse (CpuidModel.reserved_bits), for the CPUID model
    # load_cpuid() copied last; without a model: no feature checks, EFER as the engine knows it.
    cdef uint64_t cr4_reserved
    cdef uint64_t cr3_reserved
    cdef uint64_t efer_reserved
    # trace (vmm/trace.py): this vCPU's writer into the machine's ring; tap.mask == 0 while off
    cdef TraceTap tap
    cdef TraceBuffer trace_buffer
    # Data breakpoints (_ucvcpu_debug.pxi): those DR7 enables, as of the last MOV to a debug register
    cdef uint64_t db_hits             # B0-B3 of those the instruction under way has hit
    cdef uint64_t db_base[4]
    cdef uint64_t db_len[4]           # 0: not a data breakpoint
    cdef int db_rw[4]
    cdef size_t db_mem_hook           # the memory-access and per-instruction hooks, 0 while none is armed
    cdef size_t db_code_hook

    def __cinit__(self):
        self.blocks = BlockTable()
        self.cache = CacheModel()
        self.predictor = BranchPredictor()
        self.hooked_insns = set()
        self.work = []
        self.voids = []
        self.uart_refs = {}
        self.deadline = self.timer_deadline = self.timeout_check = <uint64_t> -1
        self.max_insns = <uint64_t> -1
        self.bulk_loops = True
        self.fast_blocks = True
        self.fast_rep = True
        memset(self.port_exits, 0xFF, sizeof(self.port_exits))
        self.efer_reserved = ~<uint64_t>EFER_ALLOWED
        self.cr3_reserved = ~((<uint64_t> 1 << 52) - 1)
        self.code_gen = 1
        self.holds.no_block = True
        self.set_rep_addr(<uint64_t> -1)

    def __dealloc__(self):
        free(self.cpuid_table)

    def __init__(self, engine, handler=None, vcpu_id=0):
        engine = self.engine = as_engine(engine)
        self.uc = <void*> <uintptr_t> engine.handle
        self.handler = handler
        self.vcpu_id = vcpu_id
        _locate(self.uc, &self.cpu, &self.env, &self.engine_halted, &self.engine_invalidations)
        self.invalidations_seen = self.engine_invalidations[0]
        sync_gen_bias(self)
        self.tap.eip = <uint64_t*> (self.env + OFF_EIP)
        self.tap.cs_base = <uint64_t*> (self.env + OFF_SEGS + SEG_CS * SEG_CACHE_SIZE + SEG_BASE)
        add_hooks(self)
        self.no_exit_request = locate_exit_switch(self.uc)
        set_exit_checks(self, False)
        # A CPU leaves reset with TR present (selector 0, base 0, limit 0xFFFF).  The engine starts
        # with TR all zero, "not present", on which its first stack switch through the TSS (a
        # privilege change, an IST gate) aborts the whole process.  The type is an available 32-bit
        # TSS: how the engine caches every TSS it loads, and the only form its 32-bit stack switch
        # accepts.  (LTR of a null selector, the other way to a not-present TR, is a #GP here.)
        engine.reg_write(ucapi.UC_X86_REG_TR, (0, 0, TR_RESET_LIMIT, TR_RESET_FLAGS))
        # The engine also starts with CR4.FSGSBASE and CR4.OSXSAVE set: bits no CPU leaves reset with,
        # which the CPUID model may not back (every later MOV to CR4 that keeps them would be a #GP).
        engine.reg_write(ucapi.UC_X86_REG_CR4, engine.reg_read(ucapi.UC_X86_REG_CR4) & ~CR4_ENGINE_START)

    # -- CPU state and guest memory, as every unit reads them -----------------------------
    cdef inline uint64_t *regs(self) noexcept nogil:
        return <uint64_t*> (self.env + OFF_REGS)

    cdef inline uint32_t *cflags_next_tb(self) noexcept nogil:
        """The engine's request for the next translation block it looks up (truncate_after)."""
        return <uint32_t*> (<char*> self.cpu + CPU_CFLAGS_NEXT_TB)

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

    cdef inline bint c_nmi_masked(self) noexcept nogil:
        """NMIs are blocked from one NMI's delivery until the guest's next IRET."""
        return ((<uint32_t*> (self.env + OFF_HFLAGS2))[0] & HF2_NMI_MASK) != 0

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

    # -- accounting: what retires, where the engine goes on -------------------------------
    cdef inline void commit(self, int upto) noexcept:
        """Retire instructions [cur_done, upto) of the current block (the PMU counts what the fast
        path left pending first)."""
        cdef Block *b = self.cur
        cdef int k
        self.settle()
        if b == NULL or upto <= self.holds.cur_done:
            return
        k = upto - self.holds.cur_done
        if self.holds.cur_done == 0 and (b.flags & STARTS_WITH_REP) and b.addr == self.rep_addr:
            k -= 1      # another iteration of the REP instruction that already retired
            timed_out_while_still(self)     # (the engine stops after this iteration if so)
        cdef uint64_t branch = 0, conditional = 0
        self.retired += k
        if upto == b.n:
            if b.flags & ENDS_IN_BRANCH:
                branch = 1
                conditional = 1 if (b.flags & BRANCH_CONDITIONAL) else 0
            self.set_rep_addr(<uint64_t> -1)
            if b.flags & (ENDS_WITH_REP | CHANGES_MAPPING):
                if b.flags & ENDS_WITH_REP:
                    self.set_rep_addr(b.addr + b.offs[b.n - 1])
                else:
                    code_may_have_changed(self, False)  # MOV to CR0/CR3/CR4, INVLPG, INVPCID, far JMP/CALL
        self.holds.cur_done = upto
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(k, branch, self.cur_cpl, conditional)
            if branch and (self.pmu.active_events & (1 << EV_BRANCH_MISSES)):
                # its outcome is known at the next block boundary (resolve_branch)
                self.br_addr = b.addr + b.offs[b.n - 1]
                self.br_fallthrough = b.addr + b.size
                self.br_flags = b.flags
                self.br_cpl = self.cur_cpl
            if self.pmu.pmi_requested:
                self.holds.attention = True

    cdef inline void set_rep_addr(self, uint64_t address) noexcept:
        """``address`` (-1: none) is the REP string instruction that has retired, whose block may be
        entered again for its next iterations; its hold keeps on_block's fast path to its REP case."""
        self.rep_addr = address
        self.holds.rep_armed = address != <uint64_t> -1

    cdef inline void settle(self) noexcept:
        """Give the PMU the counts on_block's fast path left pending.  Before anything looks at the
        PMU or changes the CPL the counts belong to: every commit, leaving a block, any Python."""
        if self.pending:
            self.count_pending()

    cdef void count_pending(self) noexcept:
        """The pending blocks, as one block at cur_cpl: the same counts, since the fast path runs only
        while every counter adds up plainly (no CMASK/INV/EDGE, no branch misses) and none of them
        can overflow before the budget it keeps (stop_at_overflow) runs out."""
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(self.pending & PENDING_MASK, (self.pending >> 21) & PENDING_MASK, self.cur_cpl,
                                 self.pending >> 42)
            if self.pmu.pmi_requested:
                self.holds.attention = True
        self.pending = 0

    cdef inline void drop_budget(self) noexcept:
        """Forget the budget (stop_at_overflow works it out again when a block could reach it):
        something outside the hook layer may have changed the PMU or the instruction limit."""
        self.cycle_budget = 0
        self.fast_until = 0

    cdef void fold_fast_until(self) noexcept:
        """on_block's fast path bound, after the deadline, the clock offset or the budget changed:
        one retired count below which neither the deadline (in virtual ns, retired + clock offset)
        nor the budget is reached."""
        cdef uint64_t until = self.deadline - self.c_clock_offset if self.deadline > self.c_clock_offset else 0
        self.fast_until = until if until < self.cycle_budget else self.cycle_budget

    cdef void retire_one(self) noexcept:
        """An instruction emulated outside any block (RDPMC in the engine's #UD/#GP path) retires."""
        cdef int cpl = self.c_cpl()
        self.settle()
        self.retired += 1
        self.drop_budget()
        if self.pmu is not None and self.pmu.active_events:
            self.pmu.count_block(1, 0, cpl)
            if self.pmu.pmi_requested:
                self.holds.attention = True

    cdef inline void commit_before(self, uint64_t rip) noexcept:
        if self.cur != NULL:
            self.commit(index_in_block(self.cur, rip))

    cdef inline void leave_block(self) noexcept:
        """The current block is abandoned at this point: later instructions never ran."""
        self.settle()
        self.cur = NULL
        self.holds.no_block = True
        self.holds.cur_done = 0

    cdef void finish_block(self) noexcept:
        if self.cur != NULL:
            self.commit(self.cur.n)
            self.leave_block()

    cdef void step_over(self, uint64_t next_rip, uint64_t breakpoints=0) noexcept:
        """An instruction emulated here retires and execution continues after it, in a new block.
        Like any executed instruction it ends an STI/MOV SS interrupt shadow, and it is followed by
        the #DB trap of a single-step or of the I/O ``breakpoints`` it hit (trap_after_emulated)."""
        self.commit_before(next_rip)
        self.leave_block()
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        self.set_pc(next_rip)
        trap_after_emulated(self, breakpoints)
        self.restart(self.pc())

    cdef void restart(self, uint64_t linear) noexcept:
        """Abandon the current translation block and continue at the linear address ``linear``."""
        cdef uint64_t eip = linear - self.cs_base()
        uc_reg_write(self.uc, REG_RIP, &eip)

    # -- block hook -----------------------------------------------------------------------
    # (Not inline: gcc would inline it into _on_block and there shuffle registers to keep the
    # arguments for on_block_slow, costing more than _on_block's one move and jump.)
    cdef void on_block(self, uint64_t address, uint32_t size) noexcept:
        """The fast path: the block that ran (cur, none of it committed yet) goes on to one of the two
        blocks it went on to last (its ``next`` or ``alt``: the key compared, NO_LINK matching none),
        still current, with nothing to look at.  What it checks, each in as few host instructions
        as it can be read:

        * one word for every hold (``holds``: a block in flight, none of it committed, no attention,
          NMI or debug-register business, no slow_only, no REP instruction retired) ORed with
          RFLAGS & ``irq_if`` (an interrupt may be waiting and could be delivered);
        * the key of ``next``, else of ``alt``;
        * still_current(): one compare for the code generation and the engine's dropped
          translations, one byte compare for the CPL its counts belong to (with the rest of the
          engine's hflags' low byte);
        * one bound, ``fast_until``, for the deadline and the budget (stop_at_overflow: counter
          overflows, the instruction limit): the retired count after it and the next block stays
          below both.

        Then the block hook's work is that block's commit: the clock now, the PMU's counts left
        pending (settle).  Anything else takes on_block_slow(), which links what it saw.  (A #DF
        being delivered, delivering_df, has left the block; data breakpoints, db_hits, turn the fast
        path off; no block it links to is a self-loop, bulk_retire's.)  Where a check is
        conservative (fast_until near the deadline, a hold) the slow path runs instead, which is
        always right, so counts, overflow points and PMIs are those of the slow path alone.

        REP string instructions have a case of their own (``fast_rep``; blocks with a REP are never
        linked): the engine ends a block after a REP instruction's iteration and enters the block
        made of that one instruction again for the next, so each iteration is a block hook.  Once
        the instruction has retired (rep_addr: the commit of the block whose iteration ran first;
        the hold rep_armed), the slow path's work at such a re-entry is a commit of nothing and the
        same checks as above, with the same block; with the same nothing-to-look-at conditions
        (no hold but rep_armed, the deadline and the budget as the slow path tests them for a block
        that retires nothing) the case leaves everything as that would and only looks at the
        run's timeout as commit() does."""
        cdef Block *c = self.cur    # (NULL while no_block is set)
        cdef Block *b
        # (the holds first: while slow_only is set, the slow path is all there is)
        cdef uint64_t holds = holds_any(&self.holds) | ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & self.irq_if)
        if holds == 0:
            b = c.next          # (NO_LINK if none: it matches no block)
            if b.addr != address or b.size != size:
                b = c.alt
                if b.addr != address or b.size != size:
                    self.on_block_slow(address, size)   # (written so, gcc compares the size once)
                    return
            if self.still_current(b) and self.retired + c.n + b.n < self.fast_until:
                # commit(c.n) of a block with no REP or mapping change (so rep_addr stays unset),
                # and leave_block()
                self.retired += c.n
                self.pending += c.tally
                self.cur = b
                return
        elif holds == REP_ONLY and (c.flags & STARTS_WITH_REP) and c.addr == address and c.addr == self.rep_addr \
                and self.fast_rep and c.size == size and c.n == 1 and self.still_current(c) \
                and self.retired < self.fast_until:
            # Another iteration of the REP string instruction that already retired, re-entering its
            # own one-instruction block: the slow path's commit would retire nothing and leave
            # rep_addr as it is, and it would find this same block with nothing to do.
            timed_out_while_still(self)     # (looked at every so many iterations, as commit() does)
            return
        self.on_block_slow(address, size)

    cdef inline bint still_current(self, Block *b) noexcept nogil:
        """The fast path may enter ``b`` as decoded: its code was found current in this generation,
        the engine has dropped no translation since, and the CPL its counts belong to is unchanged.
        The first two in one compare: b.checked == code_gen + (engine count - invalidations_seen)
        holds exactly when both differences are 0, as b.checked is never ahead of code_gen and the
        engine's count never behind invalidations_seen (but for the wrap of the 32-bit generation,
        as b.checked == code_gen alone).  The CPL in one byte compare: hflags' low byte, the CPL
        (bits 0-1) with bits that rarely change (the interrupt shadow, CS/SS sizes, ADDSEG,
        protected mode), is the one cur was entered with; a change of those others (the block
        after an STI or MOV SS, and the one after that) only sends a block the slow way."""
        return b.checked == <uint32_t> (self.engine_invalidations[0] + self.gen_bias) and \
            (<uint8_t*> (self.env + OFF_HFLAGS))[0] == self.cur_hflags

    cdef void on_block_slow(self, uint64_t address, uint32_t size) noexcept:
        cdef Block *b
        cdef Block *prev = self.cur
        cdef Block *slots = self.blocks.slots
        self.slow_blocks += 1
        if self.delivering_df and triple_faulted(self):
            return
        if self.cur != NULL:
            self.commit(self.cur.n)     # (nothing is pending without a current block: leave_block settles)
        self.cur = NULL
        self.holds.no_block = True
        self.holds.cur_done = 0
        if self.br_flags:
            resolve_branch(self, address)
        if self.db_hits:
            data_breakpoint_trap(self, address)     # the last block's final instruction hit one
            return
        if self.holds.dr_changed:
            self.holds.dr_changed = False
            if arm_data_breakpoints(self):
                self.drop_budget()       # (slow_only follows the data breakpoints)
                self.restart(address)       # re-translate with (or without) the data breakpoint hooks
                return
        if self.pmu is not None and ((self.pmu.active_events & CACHE_EVENTS) != 0) != (self.mem_hook != 0):
            switch_memory_hook(self)
            self.restart(address)       # re-translate with (or without) memory-access callbacks
            return
        b = self.blocks.find(address, size)
        if self.engine_invalidations[0] != self.invalidations_seen:
            code_may_have_changed(self, True)   # the engine dropped translations: code was stored into
        if b == NULL or b.checked != self.code_gen:
            b = current_block(self, b, address, size)
            if b == NULL:
                return      # restarted (re-translated), or not decodable
        if self.holds.attention or (self.retired + self.c_clock_offset) >= self.deadline:
            self.holds.attention = False
            self._py_attention()
            if self.stop_reason != STOP_NONE:
                # The engine stops before this block runs: it is not in flight (the next run()
                # starts with it), so it must not be committed now.
                uc_emu_stop(self.uc)
                return
        if self.holds.nmi_check and not self.c_nmi_masked():
            self.holds.nmi_check = False
            if inject_pending(self, False):
                return
        if self.irq_if:
            if self.c_interruptible():
                if inject_pending(self, True):
                    return
            elif (self.hflags() & HF_INHIBIT_IRQ) and b.n > 1 and \
                    ((<uint64_t*> (self.env + OFF_EFLAGS))[0] & EFLAGS_IF):
                # STI (or MOV SS) shadow: an interrupt that is waiting is taken right after the
                # shadowed instruction, not at the end of this block.
                truncate_after(self, b, 1)
                return
        if self.retired >= self.max_insns and check_limit(self):
            return      # stopped before this block runs, as above
        if b.loop_kind and self.bulk_loops and bulk_retire(self, b):
            return
        self.cur = b
        self.holds.no_block = False
        self.cur_cpl = self.c_cpl()
        self.cur_hflags = <uint8_t> self.hflags()
        if self.cycle_budget <= self.retired + b.n:
            stop_at_overflow(self, b)    # (it returns at once while the budget exceeds the block)
            if self.cur == NULL:
                return      # truncated
        # The fast path may go from prev to b next time: prev ran whole and was committed plainly
        # (no REP, no mapping change), and b is no self-loop (bulk_retire's).  A table that grew
        # moved every block.
        if prev != NULL and self.blocks.slots == slots and b.loop_kind == LOOP_NONE and \
                not (prev.flags & (STARTS_WITH_REP | ENDS_WITH_REP | CHANGES_MAPPING)) and prev.next != b:
            prev.alt = prev.next
            prev.next = b

    # -- Python side (cold paths) ---------------------------------------------------------
    cdef object _py_exit(self, int kind, uint64_t address, int size, uint64_t value):
        self.settle()
        self.drop_budget()       # a device may reach the PMU (host-side calls)
        try:
            return self.handler.handle(Exit(EXIT_KINDS[kind], address, size, value, self.vcpu_id))
        except BaseException as e:
            self._fail(f"{EXIT_KINDS[kind].name} {address:#x}: {e!r}")
            return None

    cdef void _py_attention(self) noexcept:
        """Queued work, on_attention, then the work that queued: all of it before the guest goes on
        (or, in the HLT wait, before the machine decides whether anything can wake the vCPU)."""
        self.settle()
        self.drop_budget()
        try:
            self._run_work()
            if self.on_attention is not None:
                self.on_attention()
            self._run_work()
        except BaseException as e:
            self._fail(f"device work on the vCPU: {e!r}")
        check_timeout(self)

    cdef void _run_work(self) except *:
        while self.work:
            self.work.pop(0)()

    cdef void _fail(self, str text) noexcept:
        self.stop_reason = STOP_ERROR
        self.stop_text = text
        uc_emu_stop(self.uc)

    # -- the view devices use (docs/design.md) --------------------------------------------
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
        self.holds.attention = True
        self.irq_if = EFLAGS_IF
        self.holds.nmi_check = True

    def queue_work(self, fn):
        self.work.append(fn)
        self.kick()

    # The flags kick() sets, kept where on_block's fast path reads them (holds, irq_if).
    @property
    def attention(self):
        """The vCPU runs queued work and on_attention at the next block boundary."""
        return self.holds.attention != 0

    @attention.setter
    def attention(self, bint value):
        self.holds.attention = value

    @property
    def irq_pending(self):
        """A maskable interrupt may be waiting: the interrupt source is asked at the next block
        boundary where RFLAGS.IF allows one."""
        return self.irq_if != 0

    @irq_pending.setter
    def irq_pending(self, bint value):
        self.irq_if = EFLAGS_IF if value else 0

    @property
    def nmi_check(self):
        """An NMI may be waiting: deliverable whatever RFLAGS.IF says."""
        return self.holds.nmi_check != 0

    @nmi_check.setter
    def nmi_check(self, bint value):
        self.holds.nmi_check = value

    # -- the machine's controls -----------------------------------------------------------
    def self_test(self):
        """Check every engine internal this layer relies on; raise RuntimeError on a mismatch."""
        return check_layout(self)

    def now(self):
        """The machine's virtual ns as this vCPU sees it: its committed instructions plus its clock
        offset (which the machine sets when it switches vCPUs, so every vCPU reads one clock)."""
        return self.retired + self.c_clock_offset

    @property
    def deadline(self):
        """Virtual ns at which on_attention must run (the machine's timers, the end of an SMP slice);
        during a run with a timeout the vCPU also comes to its attention path at the timeout's
        clock checks (_ucvcpu_timeout.pxi)."""
        return self.timer_deadline

    @deadline.setter
    def deadline(self, uint64_t value):
        self.timer_deadline = value
        fold_deadline(self)

    @property
    def clock_offset(self):
        """Machine time this vCPU did not retire itself (HLT skips, other vCPUs' work): now() is
        retired + clock_offset.  Set by the machine's clock (vmm.clock.VirtualClock)."""
        return self.c_clock_offset

    @clock_offset.setter
    def clock_offset(self, uint64_t value):
        self.c_clock_offset = value
        self.fold_fast_until()

    def nmi_blocked(self):
        return self.c_nmi_masked()

    def flush_branch_predictor(self):
        """IBPB: later branches cannot be steered by earlier ones."""
        self.predictor.flush()

    def cpuid(self, uint32_t leaf, uint32_t subleaf=0):
        """The C path's answer for (leaf, subleaf) as a tuple, or None if there is no C path (tests).
        Leaves the guest's registers as they were."""
        cdef uint64_t saved[4]
        cdef uint64_t *r = self.regs()
        model = getattr(self.handler, "cpuid", None)
        if model is None:
            return None
        if model is not self.cpuid_model or model.generation != self.cpuid_generation:
            load_cpuid(self, model)
        if self.cpuid_osxsave < 0:
            return None
        saved[0], saved[1], saved[2], saved[3] = r[R_RAX], r[R_RBX], r[R_RCX], r[R_RDX]
        r[R_RAX] = leaf
        r[R_RCX] = subleaf
        cpuid_answer(self, r)
        res = (<uint32_t> r[R_RAX], <uint32_t> r[R_RBX], <uint32_t> r[R_RCX], <uint32_t> r[R_RDX])
        r[R_RAX], r[R_RBX], r[R_RCX], r[R_RDX] = saved[0], saved[1], saved[2], saved[3]
        return res

    @property
    def tsc_aux(self):
        """IA32_TSC_AUX, which RDTSCP returns in ECX: the engine's MSR, which WRMSR sets."""
        return c_tsc_aux(self)

    @tsc_aux.setter
    def tsc_aux(self, value):
        cdef MsrArg m
        m.rid = MSR_TSC_AUX
        m.value = value & 0xFFFFFFFF
        uc_reg_write(self.uc, REG_MSR, &m)

    def void_regions(self):
        """The physical ranges [begin, end) mapped as reads-all-ones/writes-dropped so far."""
        return sorted(self.voids)

    def request_stop(self, str text="stopped by the VMM"):
        if self.stop_reason == STOP_NONE or self.stop_reason == STOP_YIELD:
            self.stop_reason = STOP_REQUESTED
            self.stop_text = text
        uc_emu_stop(self.uc)

    def stop_before_this_instruction(self, str text):
        """From a code hook (a debugger's breakpoint): end run() before the instruction the hook
        fires for, which does not retire (the engine checks for a stop right after code hooks while
        ``engine_exit_checks`` is set)."""
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

    @property
    def engine_exit_checks(self):
        """Whether the engine compiles its stop check after guest memory accesses and code hooks, as
        code hooks added on the engine itself need for a stop they ask for to end the run before
        their instruction (a debugger's breakpoints: the gdb stub sets it while it has some).  Off
        by default: a stop asked for by an MMIO access then takes effect at the next block boundary
        (_ucvcpu_exitchecks.pxi).  Changing it drops all translations."""
        return self.exit_checks_wanted

    @engine_exit_checks.setter
    def engine_exit_checks(self, bint on):
        self.exit_checks_wanted = on
        set_exit_checks(self, on)

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
        self.cflags_next_tb()[0] = NO_CFLAGS_REQUEST     # (a truncation asked for before does not apply)
        self.leave_block()
        self.set_rep_addr(<uint64_t> -1)
        self.br_flags = 0
        self.delivering_df = False
        (<uint32_t*> (self.env + OFF_HFLAGS))[0] &= ~<uint32_t>HF_INHIBIT_IRQ
        (<uint32_t*> (self.env + OFF_HFLAGS2))[0] &= ~<uint32_t>HF2_NMI_MASK

    def map_mmio(self, uint64_t base, uint64_t size):
        if self.n_mmio >= MAX_MMIO:
            raise RuntimeError("too many MMIO windows")
        carve_voids(self, base, size)
        cdef MmioRegion *reg = &self.mmio[self.n_mmio]
        reg.vcpu = <void*> self
        reg.base = base
        err = uc_mmio_map(self.uc, base, size, <void*> _mmio_read, reg, <void*> _mmio_write, reg)
        if err:
            raise RuntimeError(f"mapping MMIO at {base:#x}: {EngineError(err)}")
        self.n_mmio += 1

    @property
    def code_pages(self):
        """The physical ranges [(first, last)] whose stores stay on the engine's slow path because
        they hold translated code (_ucvcpu_stores.pxi)."""
        return [(self.code_lo[i], self.code_hi[i]) for i in range(self.n_code)]

    def unmap_mmio(self, uint64_t base, uint64_t size):
        cdef int i
        for i in range(self.n_mmio):
            if self.mmio[i].base == base:
                uc_mem_unmap(self.uc, base, size)
                self.mmio[i] = self.mmio[self.n_mmio - 1]
                self.n_mmio -= 1
                return
        raise KeyError(f"no MMIO window at {base:#x}")

    def set_port_exits(self, uint32_t base, uint32_t size, bint exits):
        """Whether IN/OUT at ports [base, base + size) are exits to the handler (every port is, at
        first) or, ``exits`` False, answered here as no device's port: reads all-ones, writes
        dropped, with no Python on the way.  The machine keeps this equal to its port bus's
        ownership (vmm.machine: Bus.on_change)."""
        cdef uint32_t p
        if base + size > 0x10000:
            raise ValueError(f"ports {base:#x}+{size:#x} are beyond 0xffff")
        for p in range(base, base + size):
            if exits:
                self.port_exits[p >> 3] |= <uint8_t> (1 << (p & 7))
            else:
                self.port_exits[p >> 3] &= <uint8_t> ~(1 << (p & 7))

    def set_uart(self, uint32_t base, UartCore core):
        """IN/OUT inside ports [base, base + 8) that are exits (set_port_exits) are answered by
        ``core``, a UART's C state, instead of the handler; None: by the handler again.  The
        machine keeps this equal to its port bus's UARTs (vmm.machine: Bus.on_change).  False if
        there is no room for another (its ports stay exits: the same answers, at an exit's cost)."""
        cdef int i
        for i in range(self.n_uarts):
            if self.uarts[i].base == base:
                self.n_uarts -= 1
                self.uarts[i] = self.uarts[self.n_uarts]
                del self.uart_refs[base]
                break
        if core is None:
            return True
        if self.n_uarts >= MAX_UARTS:
            return False
        if base + UART_PORTS > 0x10000:
            raise ValueError(f"UART ports {base:#x}+{UART_PORTS} are beyond 0xffff")
        self.uarts[self.n_uarts].base = base
        self.uarts[self.n_uarts].core = <void*> core
        self.uart_refs[base] = core
        self.n_uarts += 1
        return True

    def attach_lapic(self, Lapic lapic, bint xapic_page=True):
        """Route x2APIC MSR accesses through this LAPIC's C path, and (``xapic_page``) accesses to
        its xAPIC page too, in the MMIO window at its base (map_mmio); else those are exits."""
        self.lapic = lapic
        self.xapic_page = xapic_page and lapic is not None

    def attach_pmu(self, PmuCore core):
        """Route this PMU core's MSRs, RDPMC and event counts through the C fast paths."""
        self.pmu = core
        core.trace = &self.tap if self.tap.mask else NULL

    def attach_trace(self, TraceBuffer buffer, uint32_t mask):
        """Record the categories of ``mask`` (1 << vmm/_tracering.pxd TK_*) into ``buffer``'s ring,
        from this hook layer and its PMU core; ``None, 0`` stops."""
        if buffer is None:
            mask = 0
        self.trace_buffer = buffer
        self.tap.ring = buffer.c_ring() if buffer is not None else NULL
        self.tap.vcpu = self.vcpu_id
        self.tap.mask = mask
        if self.pmu is not None:
            self.pmu.trace = &self.tap if mask else NULL

    def trace_clock(self):
        """This vCPU runs the machine's clock now (vmm.clock.VirtualClock.switch_to): every vCPU's
        trace records are stamped with its time."""
        if self.tap.ring != NULL:
            self.tap.ring.retired = &self.retired
            self.tap.ring.clock_offset = &self.c_clock_offset

    def trace_point(self):
        """(virtual ns, linear RIP) as a trace record made now would carry them."""
        return self.retired + self.c_clock_offset, self.pc()

    # -- running --------------------------------------------------------------------------
    def run(self, double timeout=0.0, uint64_t steps=0):
        """Run until a terminal exit: HLT, SHUTDOWN, STOPPED, YIELD or INTERNAL_ERROR.  A stop
        requested while the guest was not running (from the machine's HLT wait, a signal handler)
        ends the call before the guest runs.  ``timeout`` > 0: wall-clock seconds, after which the
        run ends with STOPPED "timeout" (checked by the vCPU itself, _ucvcpu_timeout.pxi).
        ``steps`` > 0: execute at most that many instructions (the engine's own count) and return
        STOPPED "step" unless something else ended the run first; the instructions retire exactly
        as they would have in a free run (one by one: no self-loop is retired in bulk while
        stepping)."""
        cdef bint bulk = self.bulk_loops
        # The engine's stop checks inside blocks are on where code hooks not of this layer must stop
        # at once: the engine's instruction counter while stepping, a debugger's breakpoints.
        set_exit_checks(self, steps != 0 or self.exit_checks_wanted)
        if steps:
            self.bulk_loops = False
            # The engine counts instructions with a code hook compiled into each translation:
            # translations made during a free run have none and would run on uncounted (a `jmp .`
            # chained to itself forever).  Returning to a free run drops them again by itself.
            flush_translations(self)
        arm_timeout(self, timeout)
        try:
            return self._run(steps)
        finally:
            self.bulk_loops = bulk
            disarm_timeout(self)

    cdef object _run(self, uint64_t steps):
        cdef uint64_t rip = 0
        cdef int err
        while True:
            if self.stop_reason == STOP_NONE and \
                    (self.work or self.holds.attention or self.deadline <= self.retired + self.c_clock_offset):
                self.holds.attention = False
                self._py_attention()
            if self.stop_reason != STOP_NONE:
                return self._terminal()
            if timed_out(self):
                return self._terminal()
            uc_reg_read(self.uc, REG_RIP, &rip)
            self.drop_budget()       # the host may have changed the PMU between runs
            if self.c_cr(0) != self.cr_seen[0] or self.c_cr(3) != self.cr_seen[1] or self.c_cr(4) != self.cr_seen[2]:
                code_may_have_changed(self, False)  # the host changed the paging state (INIT/SIPI, a debugger)
            # A truncation asked for in the last run, which ended before the engine took it, is
            # asked for again by the block hook if it still applies (the budget was just dropped;
            # an interrupt shadow is looked at again).
            self.cflags_next_tb()[0] = NO_CFLAGS_REQUEST
            self.in_guest = True
            err = uc_emu_start(self.uc, rip, 0, 0, steps)
            self.in_guest = False
            self.cr_seen[0], self.cr_seen[1], self.cr_seen[2] = self.c_cr(0), self.c_cr(3), self.c_cr(4)
            if steps or self.stop_mid_block:
                # Stopped before an instruction, maybe inside the block: what lies before it retired.
                self.stop_mid_block = False
                self.commit_before(self.pc())
                self.leave_block()
            else:
                self.finish_block()
            if self.delivering_df:
                triple_faulted(self)   # a fault while delivering the #DF: the engine gave up and stopped
            rip = self.pc()
            if self.stop_reason != STOP_NONE:
                return self._terminal()
            if err == ERR_FETCH_PROT:     # RAM is executable: this is a jump into an MMIO window
                return Exit(ExitKind.INTERNAL_ERROR, reason=f"guest fetched an instruction from MMIO at {rip:#x}",
                            vcpu_id=self.vcpu_id)
            if err:
                return Exit(ExitKind.INTERNAL_ERROR, reason=f"engine error: {EngineError(err)}",
                            vcpu_id=self.vcpu_id)
            # The engine's own halted state says HLT ran (RIP is after it).
            if self.engine_halted[0]:
                return Exit(ExitKind.HLT, address=rip, vcpu_id=self.vcpu_id)
            if steps:
                return Exit(ExitKind.STOPPED, reason="step", address=rip, vcpu_id=self.vcpu_id)

    def service(self):
        """Run queued work and ``on_attention`` while the guest is not running (the machine's HLT
        wait does this instead of run()).  Returns the terminal exit of a stop requested by now,
        or of the instruction limit, else None."""
        self.holds.attention = False
        self._py_attention()
        check_limit(self)
        return self._terminal() if self.stop_reason != STOP_NONE else None

    cdef object _terminal(self):
        """The terminal exit of ``stop_reason``, which it consumes."""
        kinds = {STOP_REQUESTED: ExitKind.STOPPED, STOP_LIMIT: ExitKind.STOPPED,
                 STOP_SHUTDOWN: ExitKind.SHUTDOWN, STOP_ERROR: ExitKind.INTERNAL_ERROR, STOP_YIELD: ExitKind.YIELD}
        ex = Exit(kinds[self.stop_reason], reason=self.stop_text or "", vcpu_id=self.vcpu_id)
        self.stop_reason = STOP_NONE
        self.stop_text = None
        return ex
