# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode a translation block at C level: what the vCPU hook layer needs of each new block.

:c:func:`decode_block_c` (for the hook layer, cimported through vmm/_decode.pxd) and
:func:`decode_block` (the same for Python, giving a :class:`vmm.decode.DecodedBlock`) split a block's
bytes into instructions with capstone and give, with no Python object on the way: the offset of every
instruction, the block flags of vmm/decode.py (ENDS_IN_BRANCH and the kind of the final branch,
STARTS_WITH_REP, ENDS_WITH_REP, CHANGES_MAPPING) and the offsets of the instructions that get
per-address code hooks (RDMSR/WRMSR, port I/O, LTR, CLFLUSH/CLFLUSHOPT/WBINVD/INVD, IRET,
SYSENTER/SYSEXIT, MOV to/from CR8, MOV to CR0/CR3/CR4 and to debug registers, and INVLPG, INVPCID and
far JMP/CALL anywhere but at the end of the block).  What is hooked and what changes the mapping is
decided as it always was, on capstone's mnemonic and operand strings (compared in C), and the rest
on its instruction ids, groups, prefixes and operand types; tests/decode_reference.py keeps the
Python decoder this replaces as the oracle that tests/test_decode.py compares it with.

Capstone is called through its C API (``cs_disasm_iter`` into two reused ``cs_insn``, on three
handles of this module's own, one per code size) at the addresses of the functions in the library
vmm/decode.py loads: this module links nothing.  Its layouts of ``cs_insn``, ``cs_detail`` and
``cs_x86`` are capstone 5's (the x86 members only); at import they are checked field by field
against vmm/decode.py's ctypes structures and on a few instructions against what the library
decodes through ctypes, and a mismatch refuses the import.  vmm/decode.py checks the library's API
version and the ids it names.

Not supported: blocks of more than 65535 bytes (ValueError; the engine's blocks are at most two
pages), code sizes other than 16, 32 and 64 bits (ValueError), use from several threads at once
(the handles and instruction buffers are shared: callers hold the GIL, as the hook layer does).
Offsets are byte offsets from the block start; the oracle's come from capstone's addresses, which
wrap at 2**64, so the two agree for blocks that do not run past 2**64 (no block does).
"""

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t, uint64_t, uintptr_t
from libc.stdlib cimport realloc

import ctypes

from vmm import decode as _binding

cdef extern from *:
    """
    #include <stddef.h>
    #include <string.h>

    /* capstone 5 (API 5.0): capstone.h and x86.h, the members this module reads and what lies
       before them.  cs_detail's union holds every architecture; capstone allocates it (cs_malloc),
       and only its x86 member is read here, whose alignment (8) is the union's. */
    typedef struct {
        unsigned int segment, base, index;
        int scale;
        int64_t disp;
    } pv_x86_op_mem;

    typedef struct {
        unsigned int type;
        union { unsigned int reg; int64_t imm; pv_x86_op_mem mem; } value;
        uint8_t size;
        uint8_t access;
        unsigned int avx_bcast;
        _Bool avx_zero_opmask;
    } pv_x86_op;

    typedef struct {
        uint8_t prefix[4];
        uint8_t opcode[4];
        uint8_t rex, addr_size, modrm, sib;
        int64_t disp;
        unsigned int sib_index;
        int8_t sib_scale;
        unsigned int sib_base, xop_cc, sse_cc, avx_cc;
        _Bool avx_sae;
        unsigned int avx_rm;
        uint64_t flags;
        uint8_t op_count;
        pv_x86_op operands[8];
    } pv_cs_x86;

    typedef struct {
        uint16_t regs_read[20];
        uint8_t regs_read_count;
        uint16_t regs_write[20];
        uint8_t regs_write_count;
        uint8_t groups[8];
        uint8_t groups_count;
        _Bool writeback;
        union { pv_cs_x86 x86; } arch;
    } pv_cs_detail;

    typedef struct {
        unsigned int id;
        uint64_t address;
        uint16_t size;
        uint8_t bytes[24];
        char mnemonic[32];
        char op_str[160];
        pv_cs_detail *detail;
    } pv_cs_insn;

    typedef _Bool (*pv_disasm_iter_fn)(size_t, const uint8_t **, size_t *, uint64_t *, pv_cs_insn *);
    typedef pv_cs_insn *(*pv_malloc_fn)(size_t);

    /* The layout as this file declares it, in the order of _LAYOUT in the Cython part. */
    static const size_t pv_layout[] = {
        sizeof(pv_cs_insn), offsetof(pv_cs_insn, id), offsetof(pv_cs_insn, address),
        offsetof(pv_cs_insn, size), offsetof(pv_cs_insn, bytes), offsetof(pv_cs_insn, mnemonic),
        offsetof(pv_cs_insn, op_str), offsetof(pv_cs_insn, detail),
        offsetof(pv_cs_detail, regs_read_count), offsetof(pv_cs_detail, regs_write),
        offsetof(pv_cs_detail, groups), offsetof(pv_cs_detail, groups_count), offsetof(pv_cs_detail, arch),
        offsetof(pv_cs_x86, prefix), offsetof(pv_cs_x86, addr_size), offsetof(pv_cs_x86, disp),
        offsetof(pv_cs_x86, flags), offsetof(pv_cs_x86, op_count), offsetof(pv_cs_x86, operands),
        sizeof(pv_x86_op), offsetof(pv_x86_op, type), offsetof(pv_x86_op, value), offsetof(pv_x86_op, size),
        offsetof(pv_x86_op, avx_bcast), offsetof(pv_x86_op, avx_zero_opmask),
        sizeof(pv_x86_op_mem), offsetof(pv_x86_op_mem, disp),
    };
    #define PV_LAYOUT_COUNT (sizeof(pv_layout) / sizeof(pv_layout[0]))

    static inline int pv_streq(const char *a, const char *b) { return strcmp(a, b) == 0; }
    static inline int pv_starts(const char *s, const char *prefix) { return strncmp(s, prefix, strlen(prefix)) == 0; }

    /* The mnemonics whose instructions get code hooks, compared with the last word of capstone's
       mnemonic ("rep insb" is hooked as "insb"). */
    static int pv_hooked_name(const char *s) {
        switch (s[0]) {
        case 'c': return pv_streq(s, "clflush") || pv_streq(s, "clflushopt");
        case 'i': return pv_streq(s, "in") || pv_streq(s, "insb") || pv_streq(s, "insw") || pv_streq(s, "insd")
                         || pv_streq(s, "invd") || pv_streq(s, "iret") || pv_streq(s, "iretd")
                         || pv_streq(s, "iretq");
        case 'l': return pv_streq(s, "ltr");
        case 'o': return pv_streq(s, "out") || pv_streq(s, "outsb") || pv_streq(s, "outsw")
                         || pv_streq(s, "outsd");
        case 'r': return pv_streq(s, "rdmsr");
        case 's': return pv_streq(s, "sysenter") || pv_streq(s, "sysexit") || pv_streq(s, "sysexitq");
        case 'w': return pv_streq(s, "wrmsr") || pv_streq(s, "wbinvd");
        default: return 0;
        }
    }

    #define PV_PLAIN 0
    #define PV_HOOKED 1
    #define PV_MAPPING 2     /* may change what linear addresses map to: hooked unless last */

    /* What an instruction needs, from its strings: MOV to/from CR8 and MOV to CR0/CR3/CR4/DRn are
       hooked (operand strings "..cr8..", "cr0,", "cr3,", "cr4,", "dr.."); INVLPG, INVPCID, LJMP,
       LCALL and the far JMP/CALL through memory ("jmp ptr [...]") may change the mapping. */
    static int pv_classify(const pv_cs_insn *insn) {
        const char *m = insn->mnemonic, *op = insn->op_str;
        const char *space = strrchr(m, ' ');
        if (pv_hooked_name(space ? space + 1 : m))
            return PV_HOOKED;
        switch (m[0]) {
        case 'm':
            if (pv_streq(m, "mov") && (strstr(op, "cr8") || pv_starts(op, "cr0,") || pv_starts(op, "cr3,")
                                       || pv_starts(op, "cr4,") || pv_starts(op, "dr")))
                return PV_HOOKED;   /* (MOV to CR0/CR3/CR4 also changes the mapping: the hook stands for it) */
            return PV_PLAIN;
        case 'i': return pv_streq(m, "invlpg") || pv_streq(m, "invpcid") ? PV_MAPPING : PV_PLAIN;
        case 'l': return pv_streq(m, "ljmp") || pv_streq(m, "lcall") ? PV_MAPPING : PV_PLAIN;
        case 'j': case 'c':
            return (pv_streq(m, "jmp") || pv_streq(m, "call")) && pv_starts(op, "ptr ") ? PV_MAPPING : PV_PLAIN;
        default: return PV_PLAIN;
        }
    }
    """
    ctypedef struct pv_x86_op_mem:
        unsigned int base

    ctypedef union pv_x86_op_value:
        pv_x86_op_mem mem

    ctypedef struct pv_x86_op:
        unsigned int type
        pv_x86_op_value value

    ctypedef struct pv_cs_x86:
        uint8_t prefix[4]
        uint8_t addr_size
        uint8_t op_count
        pv_x86_op operands[8]

    ctypedef union pv_cs_arch:
        pv_cs_x86 x86

    ctypedef struct pv_cs_detail:
        uint8_t groups[8]
        uint8_t groups_count
        pv_cs_arch arch

    ctypedef struct pv_cs_insn:
        unsigned int id
        uint16_t size
        char mnemonic[32]
        char op_str[160]
        pv_cs_detail *detail

    ctypedef bint (*pv_disasm_iter_fn)(size_t, const uint8_t **, size_t *, uint64_t *, pv_cs_insn *) noexcept
    ctypedef pv_cs_insn *(*pv_malloc_fn)(size_t) noexcept

    const size_t pv_layout[]
    size_t PV_LAYOUT_COUNT
    int pv_classify(const pv_cs_insn *insn) noexcept nogil
    int PV_PLAIN, PV_HOOKED, PV_MAPPING


# vmm.decode's block flags (checked below) and capstone 5's constants (x86.h, capstone.h).
DEF ENDS_IN_BRANCH = 1
DEF STARTS_WITH_REP = 2
DEF ENDS_WITH_REP = 4
DEF BRANCH_CONDITIONAL = 8
DEF BRANCH_INDIRECT = 16
DEF BRANCH_RETURN = 32
DEF BRANCH_CALL = 64
DEF CHANGES_MAPPING = 128
DEF CS_GRP_JUMP = 1
DEF CS_GRP_CALL = 2
DEF CS_GRP_RET = 3
DEF CS_GRP_INT = 4
DEF CS_GRP_IRET = 5
DEF CS_GRP_BRANCH_RELATIVE = 7
DEF X86_OP_IMM = 2
DEF X86_OP_MEM = 3
DEF X86_PREFIX_REP = 0xF3
DEF X86_PREFIX_REPNE = 0xF2
DEF MAX_BLOCK = 0xFFFF

# What the decoder needs to know of an instruction id, one bit each (id_class).
DEF ID_STRING_OP = 1      # MOVS/STOS/LODS/CMPS/SCAS/INS/OUTS: a REP prefix makes it a REP string op
DEF ID_FAR_BRANCH = 2     # SYSCALL/SYSRET/SYSENTER/SYSEXIT/LJMP/LCALL: branches without a branch group
DEF ID_CONDITIONAL = 4    # LOOP*/JrCXZ
DEF ID_JMP = 8            # JMP, LJMP
DEF ID_TABLE = 4096       # ids at or above have no class (capstone 5's x86 ids end below 2000)

cdef uint8_t id_class[ID_TABLE]
cdef size_t handles[3]            # 16-, 32- and 64-bit code
cdef pv_cs_insn *insns[3][2]      # per handle, two instructions: the last decoded one survives a failed decode
cdef pv_disasm_iter_fn cs_disasm_iter
cdef uint16_t *scratch = NULL     # BlockDecode's arrays: offsets, then hooked offsets
cdef uint32_t scratch_size = 0


cdef inline bint is_rep_string(const pv_cs_insn *insn) noexcept nogil:
    cdef const uint8_t *prefix
    cdef int k
    if insn.id >= ID_TABLE or not id_class[insn.id] & ID_STRING_OP:
        return False
    prefix = insn.detail.arch.x86.prefix
    for k in range(4):
        if prefix[k] == X86_PREFIX_REP or prefix[k] == X86_PREFIX_REPNE:
            return True
    return False


cdef inline bint in_groups(const pv_cs_detail *d, uint8_t group) noexcept nogil:
    cdef int k
    for k in range(min(d.groups_count, 8)):
        if d.groups[k] == group:
            return True
    return False


cdef uint8_t branch_flags(const pv_cs_insn *insn) noexcept nogil:
    """ENDS_IN_BRANCH and the branch kind if ``insn`` is a branch, else 0."""
    cdef const pv_cs_detail *d = insn.detail
    cdef uint8_t cls = id_class[insn.id] if insn.id < ID_TABLE else 0
    cdef bint direct = False
    cdef int k
    if not (cls & ID_FAR_BRANCH or in_groups(d, CS_GRP_JUMP) or in_groups(d, CS_GRP_CALL)
            or in_groups(d, CS_GRP_RET) or in_groups(d, CS_GRP_INT) or in_groups(d, CS_GRP_IRET)
            or in_groups(d, CS_GRP_BRANCH_RELATIVE)):
        return 0
    if in_groups(d, CS_GRP_RET):
        return ENDS_IN_BRANCH | BRANCH_RETURN
    for k in range(min(d.arch.x86.op_count, 8)):
        if d.arch.x86.operands[k].type == X86_OP_IMM:
            direct = True
    if in_groups(d, CS_GRP_CALL):
        return ENDS_IN_BRANCH | BRANCH_CALL | (0 if direct else BRANCH_INDIRECT)
    if cls & ID_JMP:
        return ENDS_IN_BRANCH | (0 if direct else BRANCH_INDIRECT)
    if cls & ID_CONDITIONAL or in_groups(d, CS_GRP_JUMP):
        return ENDS_IN_BRANCH | BRANCH_CONDITIONAL
    return ENDS_IN_BRANCH       # INT n, IRET, SYSCALL/SYSRET: far transfers the model does not predict


cdef int decode_block_c(const uint8_t *code, uint32_t size, uint64_t address, int bits, BlockDecode *out) except -1:
    """Decode the ``size`` bytes at ``code``, a block at ``address`` in ``bits``-bit code, into ``out``."""
    global scratch, scratch_size
    cdef int mode
    cdef size_t handle, left = size
    cdef const uint8_t *p = code
    cdef uint64_t pc = address
    cdef uint32_t n = 0, n_hooked = 0, pending = 0, need
    cdef bint mapping = False
    cdef uint8_t flags = 0
    cdef pv_cs_insn *insn
    cdef uint16_t *offsets
    cdef uint16_t *hooked
    cdef uint16_t *grown
    cdef int kind
    if bits == 64:
        mode = 2
    elif bits == 32:
        mode = 1
    elif bits == 16:
        mode = 0
    else:
        raise ValueError(f"code size {bits}: not 16, 32 or 64 bits")
    if size > MAX_BLOCK:
        raise ValueError(f"a block of {size} bytes: at most {MAX_BLOCK}")
    need = size if size > 0 else 1
    if need > scratch_size:
        grown = <uint16_t*> realloc(scratch, 2 * need * sizeof(uint16_t))
        if grown == NULL:
            raise MemoryError()
        scratch, scratch_size = grown, need
    offsets, hooked = scratch, scratch + scratch_size
    handle = handles[mode]
    while left > 0:
        insn = insns[mode][n & 1]
        if not cs_disasm_iter(handle, &p, &left, &pc, insn):
            break
        if mapping:         # the one before was not the last
            hooked[n_hooked] = <uint16_t> pending
            n_hooked += 1
            mapping = False
        offsets[n] = <uint16_t> (p - code - insn.size)
        kind = pv_classify(insn)
        if kind == PV_HOOKED:
            hooked[n_hooked] = offsets[n]
            n_hooked += 1
        elif kind == PV_MAPPING:
            mapping = True
            pending = offsets[n]
        if n == 0 and is_rep_string(insn):
            flags |= STARTS_WITH_REP
        n += 1
    if n == 0:
        offsets[0] = 0
        out.n, out.n_hooked, out.flags, out.offsets, out.hooked = 1, 0, 0, offsets, hooked
        return 0
    insn = insns[mode][(n - 1) & 1]
    flags |= branch_flags(insn)
    if is_rep_string(insn):
        flags |= ENDS_WITH_REP
    if mapping:
        flags |= CHANGES_MAPPING
    out.n, out.n_hooked, out.flags, out.offsets, out.hooked = n, n_hooked, flags, offsets, hooked
    return 0


def decode_block(code, uint64_t address, int bits=64):
    """Split ``code`` (bytes or bytearray: one translation block's bytes at ``address``, ``bits`` its
    code segment's default size: 64, 32 or 16) into instructions: a :class:`vmm.decode.DecodedBlock`
    of their offsets, the block flags and the offsets of the hooked ones."""
    cdef const uint8_t[::1] view = code
    cdef BlockDecode d
    cdef int k
    if view.shape[0] > MAX_BLOCK:      # (before the length is narrowed to 32 bits)
        raise ValueError(f"a block of {view.shape[0]} bytes: at most {MAX_BLOCK}")
    decode_block_c(&view[0] if view.shape[0] else <const uint8_t*> b"", view.shape[0], address, bits, &d)
    return _binding.DecodedBlock(tuple([d.offsets[k] for k in range(d.n)]), d.flags,
                                 tuple([d.hooked[k] for k in range(d.n_hooked)]))


# --- set-up and checks at import -----------------------------------------------------------------

def _fail(what):
    raise ImportError(f"vmm._decode: {what}; this module's C layouts are capstone 5's (see vmm/decode.py)")


cdef uintptr_t _address_of(str name) except 0:
    return <uintptr_t> ctypes.cast(getattr(_binding._lib, name), ctypes.c_void_p).value


def _check_constants():
    ours = (ENDS_IN_BRANCH, STARTS_WITH_REP, ENDS_WITH_REP, BRANCH_CONDITIONAL, BRANCH_INDIRECT, BRANCH_RETURN,
            BRANCH_CALL, CHANGES_MAPPING, CS_GRP_JUMP, CS_GRP_CALL, CS_GRP_RET, CS_GRP_INT, CS_GRP_IRET,
            CS_GRP_BRANCH_RELATIVE, X86_OP_IMM, X86_OP_MEM, X86_PREFIX_REP, X86_PREFIX_REPNE)
    names = ("ENDS_IN_BRANCH", "STARTS_WITH_REP", "ENDS_WITH_REP", "BRANCH_CONDITIONAL", "BRANCH_INDIRECT",
             "BRANCH_RETURN", "BRANCH_CALL", "CHANGES_MAPPING", "CS_GRP_JUMP", "CS_GRP_CALL", "CS_GRP_RET",
             "CS_GRP_INT", "CS_GRP_IRET", "CS_GRP_BRANCH_RELATIVE", "X86_OP_IMM", "X86_OP_MEM", "X86_PREFIX_REP",
             "X86_PREFIX_REPNE")
    wrong = [name for name, value in zip(names, ours) if getattr(_binding, name) != value]
    if wrong:
        _fail(f"constants differ from vmm.decode's: {', '.join(wrong)}")


def _check_layout():
    """This file's C layout against vmm/decode.py's ctypes structures, field by field."""
    insn, detail, x86, op, mem = (_binding._CsInsn, _binding._CsDetail, _binding._CsX86, _binding._X86Op,
                                  _binding._X86OpMem)
    expected = (
        ("sizeof(cs_insn)", ctypes.sizeof(insn)), ("cs_insn.id", insn.id.offset),
        ("cs_insn.address", insn.address.offset), ("cs_insn.size", insn.size.offset),
        ("cs_insn.bytes", insn.bytes.offset), ("cs_insn.mnemonic", insn.mnemonic.offset),
        ("cs_insn.op_str", insn.op_str.offset), ("cs_insn.detail", insn.detail.offset),
        ("cs_detail.regs_read_count", detail.regs_read_count.offset),
        ("cs_detail.regs_write", detail.regs_write.offset), ("cs_detail.groups", detail.groups.offset),
        ("cs_detail.groups_count", detail.groups_count.offset), ("cs_detail.x86", detail.arch.offset),
        ("cs_x86.prefix", x86.prefix.offset), ("cs_x86.addr_size", x86.addr_size.offset),
        ("cs_x86.disp", x86.disp.offset), ("cs_x86.flags", x86.flags.offset),
        ("cs_x86.op_count", x86.op_count.offset), ("cs_x86.operands", x86.operands.offset),
        ("sizeof(cs_x86_op)", ctypes.sizeof(op)), ("cs_x86_op.type", op.type.offset),
        ("cs_x86_op.value", op.value.offset), ("cs_x86_op.size", op.size.offset),
        ("cs_x86_op.avx_bcast", op.avx_bcast.offset), ("cs_x86_op.avx_zero_opmask", op.avx_zero_opmask.offset),
        ("sizeof(x86_op_mem)", ctypes.sizeof(mem)), ("x86_op_mem.disp", mem.disp.offset),
    )
    if len(expected) != PV_LAYOUT_COUNT:
        _fail("the layout table and its check disagree")
    wrong = [f"{name} {pv_layout[k]} (ctypes: {value})" for k, (name, value) in enumerate(expected)
             if pv_layout[k] != value]
    if wrong:
        _fail(f"C layout differs from the ctypes one at {', '.join(wrong)}")


# Instructions decoded through both bindings at import: (bits, bytes, mnemonic, op_str, instruction
# name or None, what else must hold).  Together they read every field this module reads.
_PROBES = (
    (64, b"\xf3\xa4", "rep movsb", "byte ptr [rdi], byte ptr [rsi]", "movsb", "prefix"),
    (64, b"\xe8\x00\x00\x00\x00", "call", "0x1005", None, "call-imm"),
    (64, b"\xff\x10", "call", "qword ptr [rax]", None, "mem-rax"),
    (64, b"\x0f\x22\xd8", "mov", "cr3, rax", None, ""),
    (32, b"\xf2\xae", "repne scasb", "al, byte ptr es:[edi]", "scasb", "prefix"),
    (16, b"\xc3", "ret", "", None, "ret"),
)


def _check_behaviour():
    """The probes through this module's C layout and through ctypes' give the same fields, which are
    also what they must be."""
    cdef const uint8_t *p
    cdef size_t left
    cdef uint64_t pc
    cdef pv_cs_insn *insn
    cdef pv_cs_x86 *x
    cdef int mode, k
    for bits, code, mnemonic, op_str, name, what in _PROBES:
        mode = {16: 0, 32: 1, 64: 2}[bits]
        insn = insns[mode][0]
        p, left, pc = code, len(code), 0x1000
        if not cs_disasm_iter(handles[mode], &p, &left, &pc, insn):
            _fail(f"{code.hex()} does not decode through cs_disasm_iter")
        x = &insn.detail.arch.x86
        mine = (insn.id, insn.size, insn.mnemonic.decode(), insn.op_str.decode(),
                [insn.detail.groups[k] for k in range(min(insn.detail.groups_count, 8))],
                [x.prefix[k] for k in range(4)], x.addr_size, x.op_count,
                [(x.operands[k].type, x.operands[k].value.mem.base) for k in range(min(x.op_count, 8))])
        theirs_array, n = _binding._disasm(bits, code, 0x1000, 1)
        try:
            if n != 1:
                _fail(f"{code.hex()} does not decode through ctypes")
            t = theirs_array[0]
            tx = t.detail[0].arch.x86
            theirs = (t.id, t.size, t.mnemonic.decode(), t.op_str.decode(), list(t.detail[0].groups[:t.detail[0].groups_count]),
                      list(tx.prefix), tx.addr_size, tx.op_count,
                      [(o.type, o.value.mem.base) for o in tx.operands[:tx.op_count]])
        finally:
            _binding._lib.cs_free(theirs_array, n)
        if mine != theirs:
            _fail(f"{code.hex()} ({bits}-bit) reads {mine} through the C layout, {theirs} through ctypes")
        ok = mine[2] == mnemonic and mine[3] == op_str and mine[1] == len(code) and \
            (name is None or mine[0] == _binding._INS[name])
        if what == "prefix":
            ok = ok and code[0] in mine[5]
        elif what == "call-imm":
            ok = ok and CS_GRP_CALL in mine[4] and mine[7] == 1 and mine[8][0][0] == X86_OP_IMM
        elif what == "mem-rax":
            ok = ok and mine[7] == 1 and mine[8][0] == (X86_OP_MEM, _binding._REG["rax"]) and mine[6] == 8
        elif what == "ret":
            ok = ok and CS_GRP_RET in mine[4]
        if not ok:
            _fail(f"{code.hex()} ({bits}-bit) decodes as {mine}")


def _set_up():
    global cs_disasm_iter
    cdef pv_malloc_fn cs_malloc = <pv_malloc_fn> _address_of("cs_malloc")
    cdef int mode, k
    _check_constants()
    _check_layout()
    cs_disasm_iter = <pv_disasm_iter_fn> _address_of("cs_disasm_iter")
    for mode, bits in enumerate((16, 32, 64)):
        handles[mode] = _binding._open(bits)
        for k in range(2):
            insns[mode][k] = cs_malloc(handles[mode])
            if insns[mode][k] == NULL:
                raise MemoryError("vmm._decode: cs_malloc failed")
    classes = {ID_STRING_OP: [f"{op}{size}" for op in ("movs", "stos", "lods", "cmps", "scas") for size in "bwdq"]
               + [f"{op}{size}" for op in ("ins", "outs") for size in "bwd"],
               ID_FAR_BRANCH: ["syscall", "sysret", "sysenter", "sysexit", "ljmp", "lcall"],
               ID_CONDITIONAL: ["loop", "loope", "loopne", "jrcxz", "jecxz", "jcxz"],
               ID_JMP: ["jmp", "ljmp"]}
    for bit, names in classes.items():
        for name in names:
            number = _binding._INS[name]
            if number >= ID_TABLE:
                _fail(f"instruction id {number} of {name} beyond the table")
            id_class[number] |= bit
    _check_behaviour()


_set_up()
