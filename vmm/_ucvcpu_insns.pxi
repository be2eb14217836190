# SPDX-License-Identifier: GPL-2.0-or-later
# The other intercepted instructions (included by vmm/_ucvcpu.pyx): port I/O, MOV to/from CR8, LTR,
# IRET to itself, CLFLUSH/WBINVD/INVD while the LLC model runs, and those after which linear
# addresses may map other code that are not the last of their block (never, as the engine ends
# blocks).
#
# * Port I/O (IN/OUT) and MOV to/from CR8 are emulated in per-instruction code hooks, so an
#   interrupt or NMI they raise is taken right after them; port I/O at CPL > IOPL (and in
#   virtual-8086 mode) is checked against the TSS I/O bitmap here (the engine does not), VMware
#   backdoor ports exempt.  INS/OUTS go through the engine's own I/O hooks (on_in, on_out).
#   An IN/OUT inside a UART's eight ports is answered by its C core (devices/_uart.pxd) with no
#   exit; what it leaves for Python (the sink at a newline, the IRQ line) is done right after it,
#   as the exit would have.  Accesses no device owns are answered here too (all-ones, dropped).
# * LTR of a null selector is a #GP(0) (the engine would load a not-present TR and abort the
#   process at its next stack switch through the TSS).
# * An IRET that returns to the next instruction drops this vCPU's translations when another vCPU
#   may have rewritten code (sync_translations).
# * CLFLUSH/CLFLUSHOPT/WBINVD/INVD are reported to the cache model (they are no-ops to the engine).
# * A MOV to a debug register has the data breakpoints re-read at the next block; a data breakpoint
#   the previous instruction hit is trapped before any of these is emulated (_ucvcpu_debug.pxi).
# * IRET with NT (a task switch back) moves the code generation, and so do MOV to CR0/CR3/CR4,
#   INVLPG, INVPCID and far JMP/CALL when they are hooked (see decode.CHANGES_MAPPING): decoded
#   blocks are compared with the code again at their next entry (_ucvcpu_blocks.pxi).
#
# Not here: RDMSR/WRMSR (_ucvcpu_msr.pxi) and the checks of MOV to CR0/CR3/CR4, SYSENTER and SYSEXIT
# (_ucvcpu_control.pxi), which on_hooked_insn hands on; the devices behind the ports (vmm.dispatch);
# the single-step and I/O breakpoint traps after the emulated instructions (_ucvcpu_debug.pxi).

cdef void _on_hooked_insn(void *uc, uint64_t address, uint32_t size, void *ud) noexcept:
    on_hooked_insn(<UcVcpu> ud, address)
    exit_if_requested(uc, (<UcVcpu> ud).no_exit_request)    # (no Python reference held here)

DEF PORT_MAP_BYTES = 0x10000 // 8     # UcVcpu.port_exits: one bit per I/O port
DEF MAX_UARTS = 4                     # UcVcpu.uarts: UART cores answered in C (set_uart)
DEF UART_PORTS = 8


cdef struct UartPorts:
    uint32_t base                     # the UART's first port
    void *core                        # its UartCore (UcVcpu.uart_refs keeps it alive)

cdef uint32_t _on_in(void *uc, uint32_t port, int size, void *ud) noexcept:
    return on_in(<UcVcpu> ud, port, size)

cdef void _on_out(void *uc, uint32_t port, int size, uint32_t value, void *ud) noexcept:
    on_out(<UcVcpu> ud, port, size, value)


cdef void on_hooked_insn(UcVcpu vcpu, uint64_t address) noexcept:
    cdef uint8_t op[15]
    cdef int i = 0
    cdef uint8_t rex = 0
    cdef bint opsize = False          # 0x66: 16-bit operands in 32/64-bit code, 32-bit ones in 16-bit code
    cdef int bits = vcpu.code_bits()
    cdef bint cs64 = bits == 64
    cdef uint32_t port, size
    if vcpu.db_hits:
        data_breakpoint_trap(vcpu, address)     # the previous instruction hit a data breakpoint
        return
    if vcpu.pc() != address or not vcpu.fetch(address, op, 15):
        return      # (an earlier hook of this instruction delivered a #DB instead)
    if op[0] == 0x0F and (op[1] == 0x30 or op[1] == 0x32):
        on_msr_insn(vcpu, address, op[1] == 0x30)
        return
    if vcpu.mem_hook and ((op[0] == 0x0F and (op[1] == 0x08 or op[1] == 0x09 or op[1] == 0xAE))
                          or (op[0] == 0x66 and op[1] == 0x0F and op[2] == 0xAE)):
        cache_maintenance(vcpu, address, op)
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
        check_ltr(vcpu, address, op[i + 2], rex)
        return
    if op[i] == 0xCF:
        if ((<uint64_t*> (vcpu.env + OFF_EFLAGS))[0] & EFLAGS_NT) and not (vcpu.hflags() & HF_LMA):
            code_may_have_changed(vcpu, False)  # IRET with NT: a task switch back (it loads CR3)
        if vcpu.sync_translations:
            sync_on_iret_to_self(vcpu, address + i + 1, 8 if (rex & 8) else (2 if opsize != (bits == 16) else 4))
        return
    if op[i] == 0x0F and (op[i + 1] == 0x20 or op[i + 1] == 0x22):
        if vcpu.c_cpl() != 0:
            return          # the engine raises the #GP of a MOV to/from a control register at CPL > 0
        if (rex & 4) and (op[i + 2] & 0x38) == 0:
            emulate_cr8(vcpu, address, address + i + 3, op[i + 1] == 0x22, (op[i + 2] & 7) | ((rex & 1) << 3))
        elif op[i + 1] == 0x22 and not (rex & 4):
            if ((op[i + 2] >> 3) & 7) != 2:
                # MOV to CR0/CR3/CR4: from the next block on, linear addresses may map other code
                # (this hook stands for decode.CHANGES_MAPPING, which hooked instructions do not get).
                code_may_have_changed(vcpu, False)
            check_cr_write(vcpu, address, address + i + 3, (op[i + 2] >> 3) & 7, (op[i + 2] & 7) | ((rex & 1) << 3))
        return
    if op[i] == 0x0F and op[i + 1] == 0x35:
        check_sysexit(vcpu, address, (rex & 8) != 0)
        return
    if op[i] == 0x0F and op[i + 1] == 0x34:
        check_sysenter(vcpu, address)
        return
    if op[i] == 0x0F and op[i + 1] == 0x23:
        vcpu.holds.dr_changed = True      # MOV to a debug register: the engine runs it and ends the block
        return
    if (op[i] == 0x0F and (op[i + 1] == 0x22 or (op[i + 1] == 0x01 and (op[i + 2] & 0x38) == 0x38
                                                 and (op[i + 2] >> 6) != 3)
                           or (op[i + 1] == 0x38 and op[i + 2] == 0x82))) or op[i] == 0xEA or op[i] == 0x9A \
            or (op[i] == 0xFF and ((op[i + 1] >> 3) & 7) in (3, 5)):
        # MOV to CR0/CR3/CR4, INVLPG, INVPCID, far JMP/CALL (a task switch loads CR3): the code behind
        # linear addresses may change from the next block on (each ends its translation block).
        code_may_have_changed(vcpu, False)
        return
    if (op[i] >= 0xE4 and op[i] <= 0xE7) or (op[i] >= 0xEC and op[i] <= 0xEF) or \
            (op[i] >= 0x6C and op[i] <= 0x6F):
        port = op[i + 1] if (op[i] >= 0xE4 and op[i] <= 0xE7) else (vcpu.regs()[R_RDX] & 0xFFFF)
        size = 1 if (op[i] & 1) == 0 else (2 if opsize != (bits == 16) else 4)
        if not io_permitted(vcpu, port, size):
            vcpu.commit_before(address)
            raise_fault(vcpu, EXC_GP)
        elif op[i] >= 0xE4:     # not INS/OUTS: the engine runs those through its I/O hooks
            emulate_port_io(vcpu, address, address + i + (2 if op[i] <= 0xE7 else 1), port, size,
                                 (op[i] & 2) != 0)


cdef void check_ltr(UcVcpu vcpu, uint64_t address, uint8_t modrm, uint8_t rex) noexcept:
    """LTR of a null selector is a #GP(0) (SDM: LTR).  The engine would load a not-present TR
    instead, and abort the whole process at the next stack switch through the TSS.  Other
    selectors, and LTR outside protected mode at CPL0, are the engine's to check."""
    cdef uint16_t selector = 0
    cdef uint64_t linear = 0
    if vcpu.c_cpl() != 0 or not (vcpu.c_cr(0) & CR0_PE):
        return
    if (modrm >> 6) == 3:
        selector = <uint16_t> vcpu.regs()[(modrm & 7) | ((rex & 1) << 3)]
    elif not (operand_address(vcpu, address, &linear) and vcpu.read_guest(linear, PROT_READ, &selector, 2)):
        return      # the engine faults on the operand itself
    if (selector & 0xFFFC) == 0:
        vcpu.commit_before(address)
        raise_fault(vcpu, EXC_GP)


cdef void sync_on_iret_to_self(UcVcpu vcpu, uint64_t next_pc, int width) noexcept:
    """An IRET that returns to the instruction right after it is how software serializes itself
    after another CPU rewrote code (Linux's sync_core; the SDM's cross-modifying-code rule asks
    for a serializing instruction).  Each vCPU's engine keeps its own translations and sees no
    other vCPU's writes, so such an IRET drops all of this vCPU's translations (their cost is
    paid once, at this idiom only: other IRETs keep them).  Nothing is dropped when no other vCPU
    has run since the last time (``others_ran``, set by the machine): this engine saw every write
    made since, its own (early boot patches all code before the APs start, with one such IRET
    per patch)."""
    cdef uint64_t ret = 0
    cdef uint64_t sp = vcpu.regs()[R_RSP]
    if width != 8:
        sp = <uint32_t> (sp + (<uint64_t*> (vcpu.env + OFF_SEGS + SEG_SS * SEG_CACHE_SIZE + SEG_BASE))[0])
    if not vcpu.read_guest(sp, PROT_READ, &ret, width):
        return      # the engine's IRET faults on its frame itself
    if width < 8:
        ret &= (<uint64_t> 1 << (8 * width)) - 1
    if ret == next_pc - vcpu.cs_base() and vcpu.others_ran:
        flush_translations(vcpu)
        vcpu.translation_flushes += 1
        vcpu.others_ran = False


cdef bint io_permitted(UcVcpu vcpu, uint32_t port, uint32_t size) noexcept:
    """Port I/O at CPL > IOPL, and any in virtual-8086 mode, must be allowed by the TSS I/O
    bitmap, or it is a #GP (SDM vol. 1 19.5.2, vol. 3 20.2.8.1).  The VMware backdoor ports are
    exempt, as KVM makes them."""
    cdef uint64_t eflags = (<uint64_t*> (vcpu.env + OFF_EFLAGS))[0]
    cdef uint32_t limit, bits = 0
    cdef uint64_t base
    cdef uint16_t map_base = 0
    if port == 0x5658 or port == 0x5659 or \
            (not (eflags & EFLAGS_VM) and <uint64_t> vcpu.c_cpl() <= ((eflags >> EFLAGS_IOPL_SHIFT) & 3)):
        return True
    base = (<uint64_t*> (vcpu.env + OFF_TR_BASE))[0]
    limit = (<uint32_t*> (vcpu.env + OFF_TR_LIMIT))[0]
    return limit >= 103 and vcpu.read_guest(base + 0x66, PROT_READ, &map_base, 2) \
        and map_base + (port >> 3) + 1 <= limit \
        and vcpu.read_guest(base + map_base + (port >> 3), PROT_READ, &bits, 2) \
        and ((bits >> (port & 7)) & ((1 << size) - 1)) == 0


cdef inline void in_result(uint64_t *r, uint32_t size, uint64_t value) noexcept:
    """What an IN of ``size`` bytes leaves in RAX: a 32-bit IN zero-extends, 8- and 16-bit INs keep
    the rest of RAX."""
    cdef uint64_t mask = (<uint64_t> 1 << (8 * size)) - 1
    r[R_RAX] = (value & mask) if size == 4 else ((r[R_RAX] & ~mask) | (value & mask))


cdef void emulate_port_io(UcVcpu vcpu, uint64_t address, uint64_t next_rip, uint32_t port, uint32_t size,
                          bint write) noexcept:
    """IN/OUT answered here, before the instruction, then stepped over: an interrupt or NMI the
    access raised is taken right after it (the next instruction starts a new block)."""
    cdef uint64_t *r = vcpu.regs()
    cdef uint64_t mask = (<uint64_t> 1 << (8 * size)) - 1
    cdef uint64_t value
    vcpu.commit_before(address)
    if not port_exits(vcpu, port, size):
        if not write:       # no device there: all-ones, as the dispatcher would answer
            in_result(r, size, mask)
    elif vcpu.n_uarts and uart_io(vcpu, port, size, write):
        pass                # a UART's C core answered it
    elif write:
        vcpu._py_exit(ExitKind.IO_OUT, port, size, r[R_RAX] & mask)
    else:
        value = backdoor_in(vcpu, port, size) if (port == 0x5658 or port == 0x5659) else \
            py_in(vcpu, port, size)
        in_result(r, size, value)
    if vcpu.tap.mask & (1 << TK_IO):
        trace_emit(&vcpu.tap, TK_IO, TF_WRITE if write else 0, port, r[R_RAX] & mask, size)
    if vcpu.stop_reason != STOP_NONE:
        uc_emu_stop(vcpu.uc)
    vcpu.step_over(next_rip, io_breakpoints(vcpu, port, size))


cdef inline bint port_exits(UcVcpu vcpu, uint32_t port, uint32_t size) noexcept:
    """Whether an access to ``size`` ports from ``port`` reaches some device (UcVcpu.set_port_exits);
    ports past 0xFFFF belong to nobody."""
    cdef uint32_t p
    for p in range(port, port + size):
        if p < 0x10000 and vcpu.port_exits[p >> 3] & (1 << (p & 7)):
            return True
    return False


cdef bint uart_io(UcVcpu vcpu, uint32_t port, uint32_t size, bint write) noexcept:
    """IN/OUT through the C core of the UART whose ports hold the whole access (False if none does:
    an access across a UART's edge is the bus's to split).  A wider access acts on its low byte, as
    the device does on the bus (a read's upper bytes are 0).  What the access left for Python is
    done right after it, as the exit would have done it."""
    cdef uint64_t *r = vcpu.regs()
    cdef uint32_t value = 0
    cdef UartCore uart = None
    cdef int i, flags
    for i in range(vcpu.n_uarts):
        if port >= vcpu.uarts[i].base and port + size <= vcpu.uarts[i].base + UART_PORTS:
            uart = <UartCore> vcpu.uarts[i].core
            break
    if uart is None:
        return False
    if write:
        flags = uart.port_write(port - vcpu.uarts[i].base, <uint32_t> r[R_RAX])
    else:
        flags = uart.port_read(port - vcpu.uarts[i].base, &value)
        in_result(r, size, value)
    if flags:
        vcpu.drop_budget()       # the interrupt line reaches the LAPICs (host-side calls)
        try:
            uart.settle(flags)
        except BaseException as e:
            vcpu._fail(f"{'IO_OUT' if write else 'IO_IN'} {port:#x}: {e!r}")
    return True


cdef uint32_t py_in(UcVcpu vcpu, uint32_t port, int size) noexcept:
    res = vcpu._py_exit(ExitKind.IO_IN, port, size, 0)
    return 0xFFFFFFFF if res is None else <uint32_t> res


cdef uint32_t backdoor_in(UcVcpu vcpu, uint32_t port, int size) noexcept:
    """Port reads that need the guest's registers (the VMware backdoor)."""
    cdef uint64_t *r = vcpu.regs()
    vcpu.drop_budget()
    try:
        regs = {"rax": r[R_RAX], "rbx": r[R_RBX], "rcx": r[R_RCX], "rdx": r[R_RDX]}
        vcpu.platform.backdoor(port, regs)
        r[R_RBX] = regs["rbx"]
        r[R_RCX] = regs["rcx"]
        r[R_RDX] = regs["rdx"]
        return regs["rax"] & 0xFFFFFFFF
    except BaseException as e:
        vcpu._fail(f"VMware backdoor: {e!r}")
        return 0xFFFFFFFF


cdef uint32_t on_in(UcVcpu vcpu, uint32_t port, int size) noexcept:
    """The engine's own I/O path: only INS reaches it (IN is emulated in on_hooked_insn)."""
    cdef uint32_t value = py_in(vcpu, port, size)
    if vcpu.tap.mask & (1 << TK_IO):
        trace_emit(&vcpu.tap, TK_IO, 0, port, value & ((<uint64_t> 1 << (8 * size)) - 1), size)
    return value


cdef void on_out(UcVcpu vcpu, uint32_t port, int size, uint32_t value) noexcept:
    vcpu._py_exit(ExitKind.IO_OUT, port, size, value)
    if vcpu.tap.mask & (1 << TK_IO):
        trace_emit(&vcpu.tap, TK_IO, TF_WRITE, port, value & ((<uint64_t> 1 << (8 * size)) - 1), size)
    if vcpu.stop_reason != STOP_NONE:
        uc_emu_stop(vcpu.uc)


cdef void emulate_cr8(UcVcpu vcpu, uint64_t address, uint64_t next_rip, bint write, int gpr) noexcept:
    """MOV to/from CR8 is the LAPIC's TPR[7:4] (the engine keeps a private copy instead)."""
    cdef uint64_t *r = vcpu.regs()
    vcpu.commit_before(address)
    vcpu.drop_budget()
    if write and (r[gpr] >> 4):
        raise_fault(vcpu, EXC_GP)        # CR8 bits 63:4 are reserved
        return
    try:
        if write:
            vcpu.platform.write_cr8(r[gpr])
        else:
            r[gpr] = vcpu.platform.read_cr8()
    except BaseException as e:
        vcpu._fail(f"CR8: {e!r}")
    vcpu.step_over(next_rip)


cdef void cache_maintenance(UcVcpu vcpu, uint64_t address, uint8_t *op) noexcept:
    """CLFLUSH/CLFLUSHOPT evict a line of the cache model, WBINVD/INVD empty it (the engine
    itself treats them as no-ops, so they still execute normally afterwards)."""
    cdef uint64_t line = 0
    if op[0] == 0x0F and op[1] != 0xAE:
        vcpu.cache.invalidate()
    elif operand_address(vcpu, address, &line):
        vcpu.cache.flush_line(line)


cdef bint operand_address(UcVcpu vcpu, uint64_t address, uint64_t *linear) noexcept:
    """The linear address of the memory operand of the instruction at ``address`` (its effective
    address from vmm.decode plus its segment's base: only FS and GS have one in 64-bit code).
    False if it has none or the instruction cannot be read.  Cold paths only."""
    cdef uint8_t code[15]
    cdef uint64_t *r = vcpu.regs()
    cdef int bits = vcpu.code_bits()
    cdef bint cs64 = bits == 64
    cdef uint64_t offset, base
    cdef int seg
    if not vcpu.fetch(address, code, 15):
        return False
    try:
        operand = memory_operand((<char*> code)[:15], address, bits, [r[i] for i in range(16)])
    except BaseException as e:
        vcpu._fail(f"decoding the operand at {address:#x}: {e!r}")
        return False
    if operand is None:
        return False
    offset, seg = operand
    base = 0
    if not cs64 or seg >= SEG_FS:
        base = (<uint64_t*> (vcpu.env + OFF_SEGS + seg * SEG_CACHE_SIZE + SEG_BASE))[0]
    linear[0] = (base + offset) if cs64 else <uint32_t> (base + offset)
    return True
