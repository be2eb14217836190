# SPDX-License-Identifier: GPL-2.0-or-later
# The engine under the hook layer (included by vmm/_ucvcpu.pyx): libunicorn's entry points, its
# constants, the private layout of its CPU state, and hook registration.
#
# * libunicorn's C entry points are resolved at run time from the library vmm/engine.py has loaded
#   (the one the unicorn binding loads: same engine instance, no link-time path to get wrong); hook
#   kinds, instruction and register ids are vmm/engine.py's (tests/test_engine.py compares them with
#   the binding's, so a renumbering cannot slip by).
# * The hook layer relies on private engine internals: the CPU state pointer and the field offsets
#   of QEMU 5.0.1's CPUX86State inside unicorn 2.1.4, CPUState.halted (set by HLT, cleared by each
#   emu_start) and the count of translations the engine has dropped (TCGContext), found by _locate();
#   and on three exported engine functions: the page of code its TLB gives for a linear address
#   (get_page_addr_code_hostp), that count (tcg_tb_phys_invalidate_count, to check the offset) and
#   the stop check compiled after code hooks (helper_check_exit_request); where a hook's address
#   bounds lie in the engine's struct hook (_ucvcpu_stores.pxi rewrites them); and where its switch
#   for stop checks after memory accesses lies in uc_struct (_ucvcpu_exitchecks.pxi sets it).
#   check_layout() (UcVcpu.self_test) checks every one of them at start-up and fails with a clear
#   message on a mismatch.
# * add_hooks() registers the hooks every vCPU has; each hook's trampoline lives with its concern.
#
# Not here: what any hook does, and UcVcpu's accessors of that state (regs(), pc(), c_cpl(), ...),
# which stay on the class as the vocabulary every unit shares.

# ---------------------------------------------------------------------------------------
# libunicorn entry points, resolved at run time from the library vmm/engine.py loaded (same engine
# instance, no link-time path to get wrong).

ctypedef int (*fn_hook_add)(void*, size_t*, int, void*, void*, uint64_t, uint64_t, ...) noexcept nogil
ctypedef int (*fn_hook_del)(void*, size_t) noexcept nogil
ctypedef int (*fn_reg)(void*, int, void*) noexcept nogil
ctypedef int (*fn_emu_start)(void*, uint64_t, uint64_t, uint64_t, size_t) noexcept nogil
ctypedef int (*fn_emu_stop)(void*) noexcept nogil
ctypedef int (*fn_ctl)(void*, int, ...) noexcept nogil
ctypedef int (*fn_vmem_read)(void*, uint64_t, int, void*, size_t) noexcept nogil
ctypedef int (*fn_vmem_write)(void*, uint64_t, int, void*, size_t) noexcept nogil
ctypedef int (*fn_vmem_translate)(void*, uint64_t, int, uint64_t*) noexcept nogil
ctypedef int (*fn_mmio_map)(void*, uint64_t, size_t, void*, void*, void*, void*) noexcept nogil
ctypedef int (*fn_mem_unmap)(void*, uint64_t, size_t) noexcept nogil
ctypedef void (*fn_do_interrupt)(void*) noexcept nogil
ctypedef void (*fn_hardirq)(void*, int, int) noexcept nogil
ctypedef void (*fn_load_seg)(void*, int, int) noexcept nogil
ctypedef int64_t (*fn_code_page)(void*, uint64_t, void**) noexcept nogil
ctypedef size_t (*fn_tcg_count)(void*) noexcept nogil
ctypedef void (*fn_exit_check)(void*, uint32_t) noexcept nogil

cdef fn_hook_add uc_hook_add
cdef fn_hook_del uc_hook_del
cdef fn_reg uc_reg_read
cdef fn_reg uc_reg_write
cdef fn_emu_start uc_emu_start
cdef fn_emu_stop uc_emu_stop
cdef fn_ctl uc_ctl
cdef fn_vmem_read uc_vmem_read
cdef fn_vmem_write uc_vmem_write
cdef fn_vmem_translate uc_vmem_translate
cdef fn_mmio_map uc_mmio_map
cdef fn_mem_unmap uc_mem_unmap
cdef fn_do_interrupt x86_do_interrupt
cdef fn_hardirq x86_hardirq
cdef fn_load_seg x86_load_seg
cdef fn_code_page x86_code_page
cdef fn_tcg_count tcg_invalidations
cdef fn_exit_check engine_exit_check


cdef uintptr_t _sym(str name) except 0:
    return <uintptr_t> ucapi.address_of(name)


cdef void _resolve() except *:
    global uc_hook_add, uc_hook_del, uc_reg_read, uc_reg_write, uc_emu_start, uc_emu_stop, uc_ctl
    global uc_vmem_read, uc_vmem_write, uc_vmem_translate, uc_mmio_map, uc_mem_unmap
    global x86_do_interrupt, x86_hardirq, x86_load_seg
    global x86_code_page, tcg_invalidations, engine_exit_check
    uc_hook_add = <fn_hook_add> _sym("uc_hook_add")
    uc_hook_del = <fn_hook_del> _sym("uc_hook_del")
    uc_reg_read = <fn_reg> _sym("uc_reg_read")
    uc_reg_write = <fn_reg> _sym("uc_reg_write")
    uc_emu_start = <fn_emu_start> _sym("uc_emu_start")
    uc_emu_stop = <fn_emu_stop> _sym("uc_emu_stop")
    uc_ctl = <fn_ctl> _sym("uc_ctl")
    uc_vmem_read = <fn_vmem_read> _sym("uc_vmem_read")
    uc_vmem_write = <fn_vmem_write> _sym("uc_vmem_write")
    uc_vmem_translate = <fn_vmem_translate> _sym("uc_vmem_translate")
    uc_mmio_map = <fn_mmio_map> _sym("uc_mmio_map")
    uc_mem_unmap = <fn_mem_unmap> _sym("uc_mem_unmap")
    x86_do_interrupt = <fn_do_interrupt> _sym("x86_cpu_do_interrupt_x86_64")
    x86_hardirq = <fn_hardirq> _sym("do_interrupt_x86_hardirq_x86_64")
    x86_load_seg = <fn_load_seg> _sym("cpu_x86_load_seg_x86_64")
    # Where guest RAM holds the code at a linear address, through the engine's TLB (filling it from the
    # page tables on a miss, which can raise the guest's #PF: only called for code being entered).
    x86_code_page = <fn_code_page> _sym("get_page_addr_code_hostp_x86_64")
    tcg_invalidations = <fn_tcg_count> _sym("tcg_tb_phys_invalidate_count_x86_64")
    # What the engine compiles after code hooks to leave the block on a stop or RIP write (longjmp):
    # _ucvcpu_exitchecks.pxi calls it itself where the compiled call is left out.
    engine_exit_check = <fn_exit_check> _sym("helper_check_exit_request_x86_64")


_resolve()


# ---------------------------------------------------------------------------------------
# Engine constants (vmm/engine.py's, checked against the binding's by its tests) and private layout.

cdef int HOOK_INTR = ucapi.UC_HOOK_INTR
cdef int HOOK_INSN = ucapi.UC_HOOK_INSN
cdef int HOOK_CODE = ucapi.UC_HOOK_CODE
cdef int HOOK_BLOCK = ucapi.UC_HOOK_BLOCK
cdef int HOOK_MEM_UNMAPPED = ucapi.UC_HOOK_MEM_UNMAPPED
cdef int HOOK_MEM_READ_UNMAPPED = ucapi.UC_HOOK_MEM_READ_UNMAPPED
cdef int HOOK_MEM_ACCESS = ucapi.UC_HOOK_MEM_READ | ucapi.UC_HOOK_MEM_WRITE
cdef int HOOK_EDGE_GENERATED = ucapi.UC_HOOK_EDGE_GENERATED
cdef int CTL_TB_FLUSH = ucapi.UC_CTL_TB_FLUSH
cdef int CTL_TLB_FLUSH = ucapi.UC_CTL_TLB_FLUSH
cdef int HOOK_INSN_INVALID = ucapi.UC_HOOK_INSN_INVALID
cdef int INS_IN = ucapi.UC_X86_INS_IN
cdef int INS_OUT = ucapi.UC_X86_INS_OUT
cdef int INS_SYSCALL = ucapi.UC_X86_INS_SYSCALL
cdef int INS_SYSENTER = ucapi.UC_X86_INS_SYSENTER
cdef int INS_CPUID = ucapi.UC_X86_INS_CPUID
cdef int INS_RDTSC = ucapi.UC_X86_INS_RDTSC
cdef int INS_RDTSCP = ucapi.UC_X86_INS_RDTSCP
cdef int REG_RIP = ucapi.UC_X86_REG_RIP
cdef int REG_RFLAGS = ucapi.UC_X86_REG_RFLAGS
cdef int REG_DR0 = ucapi.UC_X86_REG_DR0      # DR0-DR3 are consecutive ids
cdef int REG_DR6 = ucapi.UC_X86_REG_DR6
cdef int REG_DR7 = ucapi.UC_X86_REG_DR7
cdef int REG_MSR = ucapi.UC_X86_REG_MSR
cdef int CTL_IO_WRITE = ucapi.UC_CTL_IO_WRITE
cdef int CTL_TB_REMOVE_CACHE = ucapi.UC_CTL_TB_REMOVE_CACHE
cdef int CTL_UC_EXITS = ucapi.UC_CTL_UC_EXITS
cdef int CTL_UC_USE_EXITS = ucapi.UC_CTL_UC_USE_EXITS
cdef int ERR_FETCH_PROT = ucapi.UC_ERR_FETCH_PROT

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
DEF CPU_CFLAGS_NEXT_TB = 24          # CPUState.cflags_next_tb: the instruction count (CF_COUNT_MASK) of the
                                     # next translation block the engine looks up; -1 (none) at rest
DEF NO_CFLAGS_REQUEST = 0xFFFFFFFF
DEF UC_TCG_SLOT_FROM_REG_READ = 79   # the engine's TCGContext* is this many pointer slots after reg_read_x86_64
DEF TCG_INVALIDATIONS = 0xD8         # TCGContext.tb_phys_invalidate_count: translations dropped so far
DEF TCG_UC = 0x9970                  # TCGContext.uc: its engine
DEF TR_RESET_LIMIT = 0xFFFF
DEF TR_RESET_FLAGS = 0x8900          # present, available 32-bit TSS
DEF CR4_ENGINE_START = (1 << 16) | (1 << 18)    # FSGSBASE, OSXSAVE: set in the engine's start state

DEF HF_CPL_MASK = 3
DEF HF_INHIBIT_IRQ = 1 << 3
DEF HF_CS32 = 1 << 4
DEF HF_SS32 = 1 << 5
DEF HF_ADDSEG = 1 << 6
DEF HF_LMA = 1 << 14
DEF HF_CS64 = 1 << 15
DEF CR0_PE = 1
DEF HF2_NMI_MASK = 1 << 2
DEF EFLAGS_IF = 1 << 9
DEF EFLAGS_TF = 1 << 8
DEF EFLAGS_NT = 1 << 14
DEF EFLAGS_DEC = (1 << 2) | (1 << 4) | (1 << 6) | (1 << 7) | (1 << 11)   # PF AF ZF SF OF: what DEC sets
DEF EFLAGS_IOPL_SHIFT = 12
DEF EFLAGS_RF = 1 << 16
DEF EFLAGS_VM = 1 << 17
DEF CR4_DE = 1 << 3
DEF DR6_BS = 1 << 14                # single-step
DEF DR6_HITS = 0xF                  # B0-B3: the breakpoints hit


DEF R_RAX = 0
DEF R_RCX = 1
DEF R_RDX = 2
DEF R_RBX = 3
DEF R_RSP = 4
DEF R_RSI = 6
DEF SEG_CS = 1
DEF SEG_SS = 2
DEF SEG_DS = 3
DEF SEG_FS = 4
DEF PAGE_SIZE = 0x1000
DEF PROT_READ = 1                   # uc_prot for uc_vmem_read: data read, instruction fetch
DEF PROT_WRITE = 2
DEF PROT_EXEC = 4

DEF EXC_DB = 1
DEF EXC_UD = 6
DEF EXC_GP = 13
DEF VEC_NMI = 2


cdef int _locate(void *uc, void **cpu, char **env, uint32_t **halted, size_t **invalidations) except -1:
    """Find the engine's private CPU state from its handle: the CPUState, its CPUX86State (env),
    CPUState.halted, which sits just before CPUState's back pointer to the engine, and the count of
    translations the engine has dropped (in its TCGContext, which points back to the engine)."""
    cdef uint64_t rax = 0
    uc_reg_read(uc, ucapi.UC_X86_REG_RAX, &rax)   # the engine initialises lazily
    cdef uintptr_t rr = _sym("reg_read_x86_64")
    cdef uintptr_t rw = _sym("reg_write_x86_64")
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
    cdef char *tcg = <char*> words[slot + UC_TCG_SLOT_FROM_REG_READ]
    if tcg == NULL or (<uintptr_t> tcg & 7) or (<void**> (tcg + TCG_UC))[0] != uc:
        raise RuntimeError("unicorn self-test: TCGContext not where unicorn 2.1.4 keeps it")
    invalidations[0] = <size_t*> (tcg + TCG_INVALIDATIONS)
    if tcg_invalidations(tcg) != invalidations[0][0]:
        raise RuntimeError("unicorn self-test: TCGContext.tb_phys_invalidate_count not at +0xd8")
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


cdef object _scratch_checks = None


cdef void _record_block(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    """The scratch engine's block hook: the sizes of the first blocks, after their count in [0]."""
    cdef uint32_t *sizes = <uint32_t*> ud
    if sizes[0] < 7:
        sizes[0] += 1
        sizes[sizes[0]] = size


cdef tuple _engine_behaviour():
    """On a scratch engine, once per process (it costs about a millisecond): (1) the halted flag
    _locate() finds stays clear when a run stops for another reason and is set by HLT; (2) the count
    of dropped translations _locate() finds goes up by one when the guest stores into code that has
    a translation; (3) CPUState.cflags_next_tb is at rest (-1) and a count written there makes the
    next block that many instructions, once, beside the whole block's translation."""
    global _scratch_checks
    cdef void *cpu
    cdef char *env
    cdef uint32_t *halted
    cdef size_t *invalidations
    cdef size_t before
    cdef uint32_t *cflags
    cdef uint32_t sizes[8]
    cdef size_t h = 0
    if _scratch_checks is None:
        scratch = ucapi.Engine()
        scratch.mem_map(0x1000, PAGE_SIZE)
        scratch.mem_write(0x1000, b"\x90\xf4")     # nop; hlt
        scratch.mem_write(0x1010, b"\xc6\x05\xe9\xff\xff\xff\x90\xf4")    # movb $0x90, 0x1000(%rip); hlt
        _locate(<void*> <uintptr_t> scratch.handle, &cpu, &env, &halted, &invalidations)
        scratch.emu_start(0x1000, 0x2000, count=1)
        stopped_by_count = halted[0] == 0
        scratch.emu_start(0x1001, 0x2000)
        hlt = stopped_by_count and halted[0] == 1 and scratch.reg_read(ucapi.UC_X86_REG_RIP) == 0x1002
        scratch.emu_start(0x1000, 0x2000)      # translated ...
        before = invalidations[0]
        scratch.emu_start(0x1010, 0x2000)      # ... and stored into
        stores_counted = invalidations[0] == before + 1
        # inc rbx, three times (3 bytes each); hlt: one block of 10 bytes, or 3 + 7 when the first
        # is asked to be one instruction long.
        scratch.mem_write(0x1020, b"\x48\xff\xc3" * 3 + b"\xf4")
        cflags = <uint32_t*> (<char*> cpu + CPU_CFLAGS_NEXT_TB)
        at_rest = cflags[0] == NO_CFLAGS_REQUEST
        sizes[0] = 0
        uc_hook_add(<void*> <uintptr_t> scratch.handle, &h, HOOK_BLOCK, <void*> _record_block, <void*> sizes, 1, 0)
        scratch.emu_start(0x1020, 0x2000)
        cflags[0] = 1
        scratch.emu_start(0x1020, 0x2000)
        taken_once = cflags[0] == NO_CFLAGS_REQUEST
        scratch.emu_start(0x1020, 0x2000)
        counted = at_rest and taken_once and sizes[0] == 4 and sizes[1] == 10 and sizes[2] == 3 and sizes[3] == 7 \
            and sizes[4] == 10
        _scratch_checks = (hlt, stores_counted, counted)
    return _scratch_checks


cdef list check_layout(UcVcpu vcpu):
    """UcVcpu.self_test: check every engine internal this layer relies on; raise RuntimeError on a
    mismatch, else return the names of the checks."""
    eng = vcpu.engine
    checks = []
    eng.reg_write(ucapi.UC_X86_REG_RAX, 0x1122334455667788)
    eng.reg_write(ucapi.UC_X86_REG_RCX, 0x99AABBCCDDEEFF00)
    checks.append(("general registers at env+0", vcpu.regs()[0] == 0x1122334455667788
                   and vcpu.regs()[1] == 0x99AABBCCDDEEFF00))
    old_rip = eng.reg_read(ucapi.UC_X86_REG_RIP)
    eng.reg_write(ucapi.UC_X86_REG_RIP, 0x123456)
    checks.append(("EIP at env+128", vcpu.eip() == 0x123456))
    eng.reg_write(ucapi.UC_X86_REG_RIP, old_rip)
    old_flags = eng.reg_read(ucapi.UC_X86_REG_RFLAGS)
    eng.reg_write(ucapi.UC_X86_REG_RFLAGS, 0x202)
    checks.append(("EFLAGS.IF at env+136", ((<uint64_t*> (vcpu.env + OFF_EFLAGS))[0] & EFLAGS_IF) != 0))
    eng.reg_write(ucapi.UC_X86_REG_RFLAGS, old_flags)
    checks.append(("CR0 at env+424", vcpu.c_cr(0) == eng.reg_read(ucapi.UC_X86_REG_CR0)))
    checks.append(("CR4 at env+456", vcpu.c_cr(4) == eng.reg_read(ucapi.UC_X86_REG_CR4)))
    checks.append(("hflags LMA bit at env+176", (vcpu.hflags() & HF_LMA) != 0))
    checks.append(("no exception in flight at env+5496", (<int*> (vcpu.env + OFF_OLD_EXCEPTION))[0] == -1))
    old_tr = eng.reg_read(ucapi.UC_X86_REG_TR)
    eng.reg_write(ucapi.UC_X86_REG_TR, (0x28, 0x12345000, 0x2067, 0x8900))
    checks.append(("TR base/limit at env+360/368", (<uint64_t*> (vcpu.env + OFF_TR_BASE))[0] == 0x12345000
                   and (<uint32_t*> (vcpu.env + OFF_TR_LIMIT))[0] == 0x2067))
    eng.reg_write(ucapi.UC_X86_REG_TR, old_tr)
    eng.reg_write(ucapi.UC_X86_REG_RAX, 0)
    eng.reg_write(ucapi.UC_X86_REG_RCX, 0)
    checks.append(("CPUState.halted set by HLT, not by other stops", _engine_behaviour()[0]))
    checks.append(("TCGContext.tb_phys_invalidate_count counts a store into translated code", _engine_behaviour()[1]))
    checks.append(("CPUState.cflags_next_tb at +24 limits the next block's instruction count once",
                   _engine_behaviour()[2] and vcpu.cflags_next_tb()[0] == NO_CFLAGS_REQUEST))
    checks.append(("struct hook bounds at +24/+32", hook_bounds_where_expected(vcpu)))
    checks.append(("uc_struct.no_exit_request at +0x7f2 drops the stop checks after memory accesses; "
                   "code hooks leave the block through helper_check_exit_request", all(exit_switch_behaviour())))
    bad = [name for name, ok in checks if not ok]
    if bad:
        raise RuntimeError("unicorn self-test failed (engine is not the unicorn 2.1.4 layout this VMM "
                           "was built for): " + ", ".join(bad))
    return [name for name, _ in checks]


# ---------------------------------------------------------------------------------------
# Hooks.  Each one's trampoline (user_data is the UcVcpu) lives with its concern; the block hook's
# is here, as UcVcpu.on_block is the class's own.

cdef void _on_block(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    (<UcVcpu> ud).on_block(address, size)


cdef void add_hook(UcVcpu vcpu, int kind, void *cb, uint64_t begin, uint64_t end, int insn=-1) except *:
    cdef size_t h = 0
    cdef int err
    if insn >= 0:
        err = uc_hook_add(vcpu.uc, &h, kind, cb, <void*> vcpu, begin, end, insn)
    else:
        err = uc_hook_add(vcpu.uc, &h, kind, cb, <void*> vcpu, begin, end)
    if err:
        raise RuntimeError(f"uc_hook_add({kind}) failed: {err}")


cdef void add_hooks(UcVcpu vcpu) except *:
    add_hook(vcpu, HOOK_BLOCK, <void*> _on_block, 1, 0)
    add_hook(vcpu, HOOK_INTR, <void*> _on_intr, 1, 0)
    add_hook(vcpu, HOOK_INSN_INVALID, <void*> _on_invalid, 1, 0)
    watch_stores(vcpu)          # the unmapped hook (_ucvcpu_stores.pxi: where stores are fast)
    add_hook(vcpu, HOOK_INSN, <void*> _on_in, 1, 0, INS_IN)
    add_hook(vcpu, HOOK_INSN, <void*> _on_out, 1, 0, INS_OUT)
    add_hook(vcpu, HOOK_INSN, <void*> _on_syscall, 1, 0, INS_SYSCALL)
    add_hook(vcpu, HOOK_INSN, <void*> _on_sysenter, 1, 0, INS_SYSENTER)
    add_hook(vcpu, HOOK_INSN, <void*> _on_cpuid, 1, 0, INS_CPUID)
    add_hook(vcpu, HOOK_INSN, <void*> _on_rdtsc, 1, 0, INS_RDTSC)
    add_hook(vcpu, HOOK_INSN, <void*> _on_rdtscp, 1, 0, INS_RDTSCP)
    # Exits mode with an empty list: emu_start's `until` would otherwise walk the page
    # tables after every run and clobber CR2.
    uc_ctl(vcpu.uc, ctl_write(CTL_UC_USE_EXITS, 1), <int> 1)
    cdef uint64_t none = 0
    uc_ctl(vcpu.uc, ctl_write(CTL_UC_EXITS, 2), &none, <size_t> 0)
