# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode a translation block once, on the cold path, when the hook layer first sees it.

The C hook layer needs, per block: the offset of every instruction (to retire exactly the
instructions before a fault or an emulated instruction), whether the block ends in a branch
(branch instructions retired), whether it starts with or ends in a REP string instruction
(one retired instruction however many iterations), and where its RDMSR/WRMSR instructions
port I/O, CR8, LTR and cache-maintenance instructions are (they get per-address code hooks where
they are emulated, checked or reported to the cache model; port I/O is also checked against the
TSS I/O permission bitmap, which the engine does not enforce), and the kind of the block's final
branch for the branch predictor model.  Capstone does the decoding; this runs once per new
block, so its cost is not on any hot path.  :func:`memory_operand` gives the hook layer the
address of an instruction's memory operand (CLFLUSH's line, LTR's selector), also on cold paths.

Not decoded: anything the hook layer does not use (operands, prefixes other than REP).
"""

from __future__ import annotations

from dataclasses import dataclass

import capstone
from capstone import x86_const as cx

_md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
_md.detail = True
_md32 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_32)
_md32.detail = True
_md16 = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_16)
_md16.detail = True
_DECODERS = {64: _md, 32: _md32, 16: _md16}

_BRANCH_GROUPS = (capstone.CS_GRP_JUMP, capstone.CS_GRP_CALL, capstone.CS_GRP_RET,
                  capstone.CS_GRP_INT, capstone.CS_GRP_IRET, capstone.CS_GRP_BRANCH_RELATIVE)
_FAR_BRANCHES = {cx.X86_INS_SYSCALL, cx.X86_INS_SYSRET, cx.X86_INS_SYSENTER, cx.X86_INS_SYSEXIT,
                 cx.X86_INS_LJMP, cx.X86_INS_LCALL}
_STRING_OPS = {cx.X86_INS_MOVSB, cx.X86_INS_MOVSW, cx.X86_INS_MOVSD, cx.X86_INS_MOVSQ,
               cx.X86_INS_STOSB, cx.X86_INS_STOSW, cx.X86_INS_STOSD, cx.X86_INS_STOSQ,
               cx.X86_INS_LODSB, cx.X86_INS_LODSW, cx.X86_INS_LODSD, cx.X86_INS_LODSQ,
               cx.X86_INS_CMPSB, cx.X86_INS_CMPSW, cx.X86_INS_CMPSD, cx.X86_INS_CMPSQ,
               cx.X86_INS_SCASB, cx.X86_INS_SCASW, cx.X86_INS_SCASD, cx.X86_INS_SCASQ,
               cx.X86_INS_INSB, cx.X86_INS_INSW, cx.X86_INS_INSD,
               cx.X86_INS_OUTSB, cx.X86_INS_OUTSW, cx.X86_INS_OUTSD}
_REP_PREFIXES = {cx.X86_PREFIX_REP, cx.X86_PREFIX_REPNE}
_CONDITIONAL = {cx.X86_INS_LOOP, cx.X86_INS_LOOPE, cx.X86_INS_LOOPNE, cx.X86_INS_JRCXZ, cx.X86_INS_JECXZ,
                cx.X86_INS_JCXZ}
# Instructions that get per-address code hooks, by mnemonic (lite decoding gives no ids): MSR
# accesses, port I/O, LTR and cache maintenance; MOV to/from CR8 is matched on its operands.
_HOOKED_MNEMONICS = frozenset({"rdmsr", "wrmsr", "in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd",
                               "ltr", "clflush", "clflushopt", "wbinvd", "invd"})

# Operand addressing: capstone register id -> (index in the guest's register file, value mask), for
# the 64-, 32- and 16-bit names of the sixteen general registers; segment registers by x86 number.
_GPR_NAMES = {
    64: ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", *(f"r{n}" for n in range(8, 16))),
    32: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", *(f"r{n}d" for n in range(8, 16))),
    16: ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di", *(f"r{n}w" for n in range(8, 16))),
}
_GPRS = {getattr(cx, f"X86_REG_{name.upper()}"): (index, (1 << width) - 1)
         for width, names in _GPR_NAMES.items() for index, name in enumerate(names)}
_STACK_BASES = {cx.X86_REG_RSP, cx.X86_REG_RBP, cx.X86_REG_ESP, cx.X86_REG_EBP, cx.X86_REG_SP, cx.X86_REG_BP}
_SEGMENTS = {cx.X86_REG_ES: 0, cx.X86_REG_CS: 1, cx.X86_REG_SS: 2, cx.X86_REG_DS: 3, cx.X86_REG_FS: 4,
             cx.X86_REG_GS: 5}
SEG_SS = 2
SEG_DS = 3

# Block flags shared with the C hook layer (vmm/_ucvcpu.pyx).
ENDS_IN_BRANCH = 1
STARTS_WITH_REP = 2
ENDS_WITH_REP = 4
# What the branch predictor model needs to know about the block's last branch.
BRANCH_CONDITIONAL = 8      # jcc, loop*, jrcxz: predicted taken / not taken
BRANCH_INDIRECT = 16        # jmp/call through a register or memory: predicted target
BRANCH_RETURN = 32          # ret: predicted by the return stack
BRANCH_CALL = 64            # call (direct or indirect): pushes the return stack


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    offsets: tuple[int, ...]        # offset of each instruction from the block start
    flags: int
    hooked_offsets: tuple[int, ...]  # RDMSR/WRMSR, IN/OUT/INS/OUTS, MOV to/from CR8, LTR, CLFLUSH/WBINVD/INVD


def _is_rep_string(insn) -> bool:
    return insn.id in _STRING_OPS and any(p in _REP_PREFIXES for p in insn.prefix)


def _is_branch(insn) -> bool:
    return insn.id in _FAR_BRANCHES or any(insn.group(g) for g in _BRANCH_GROUPS)


def _branch_kind(insn) -> int:
    if insn.group(capstone.CS_GRP_RET):
        return BRANCH_RETURN
    direct = insn.op_count(cx.X86_OP_IMM) > 0
    if insn.group(capstone.CS_GRP_CALL):
        return BRANCH_CALL | (0 if direct else BRANCH_INDIRECT)
    if insn.id == cx.X86_INS_JMP or insn.id == cx.X86_INS_LJMP:
        return 0 if direct else BRANCH_INDIRECT
    if insn.id in _CONDITIONAL or insn.group(capstone.CS_GRP_JUMP):
        return BRANCH_CONDITIONAL
    return 0        # INT n, IRET, SYSCALL/SYSRET: far transfers the model does not predict


def decode_block(code: bytes, address: int, bits: int = 64) -> DecodedBlock:
    """Split ``code`` (one translation block's bytes at ``address``, ``bits`` its code segment's
    default size: 64, 32 or 16) into instructions.  Only the first and last instructions are
    decoded in detail (REP prefixes, branch kinds): the rest need just a length and a mnemonic, which
    capstone's lite decoding gives several times faster."""
    md = _DECODERS[bits]
    insns = list(md.disasm_lite(code, address))     # (address, size, mnemonic with prefixes, operands)
    if not insns:
        return DecodedBlock((0,), 0, ())
    offsets = tuple(at - address for at, _, _, _ in insns)
    hooked = tuple(at - address for at, _, mnemonic, operands in insns
                   if mnemonic.rpartition(" ")[2] in _HOOKED_MNEMONICS or (mnemonic == "mov" and "cr8" in operands))
    first = next(md.disasm(code, address, 1))
    last = first if len(insns) == 1 else next(md.disasm(code[offsets[-1]:], insns[-1][0], 1))
    flags = 0
    if _is_branch(last):
        flags |= ENDS_IN_BRANCH | _branch_kind(last)
    if _is_rep_string(first):
        flags |= STARTS_WITH_REP
    if _is_rep_string(last):
        flags |= ENDS_WITH_REP
    return DecodedBlock(offsets, flags, hooked)


def memory_operand(code: bytes, address: int, bits: int, regs) -> tuple[int, int] | None:
    """The memory operand of the instruction at ``address`` as ``(offset, segment)``: its effective
    address given the guest's sixteen general registers ``regs`` (x86 order), wrapped to the
    instruction's address size, and the segment register that applies (0 ES, 1 CS, 2 SS, 3 DS, 4 FS,
    5 GS: an override, else SS for RSP/RBP-based addresses and DS for the rest).  None if the
    instruction has no memory operand or does not decode."""
    insn = next(_DECODERS[bits].disasm(code, address, 1), None)
    mem = None if insn is None else next((op.mem for op in insn.operands if op.type == cx.X86_OP_MEM), None)
    if mem is None:
        return None
    offset = mem.disp
    if mem.base in (cx.X86_REG_RIP, cx.X86_REG_EIP):
        offset += address + insn.size
    for reg, scale in ((mem.base, 1), (mem.index, mem.scale)):
        if reg in _GPRS:
            index, mask = _GPRS[reg]
            offset += (regs[index] & mask) * scale
    segment = _SEGMENTS.get(mem.segment, SEG_SS if mem.base in _STACK_BASES else SEG_DS)
    return offset & ((1 << (8 * insn.addr_size)) - 1), segment
