# SPDX-License-Identifier: GPL-2.0-or-later
"""Decode a translation block once, on the cold path, when the hook layer first sees it.

The C hook layer needs, per block: the offset of every instruction (to retire exactly the
instructions before a fault or an emulated instruction), whether the block ends in a branch
(branch instructions retired), whether it starts with or ends in a REP string instruction
(one retired instruction however many iterations), and where its RDMSR/WRMSR instructions
port I/O, CR8 and cache-maintenance instructions are (they get per-address code hooks where
they are emulated or reported to the cache model; port I/O is also checked against the TSS I/O
permission bitmap, which the engine does not enforce), and the kind of the block's final branch
for the branch predictor model.  Capstone does the decoding; this runs once per new
block, so its cost is not on any hot path.

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
_CACHE_MAINTENANCE = {cx.X86_INS_CLFLUSH, cx.X86_INS_CLFLUSHOPT, cx.X86_INS_WBINVD, cx.X86_INS_INVD}
_HOOKED = {cx.X86_INS_RDMSR, cx.X86_INS_WRMSR, cx.X86_INS_IN, cx.X86_INS_OUT,
           cx.X86_INS_INSB, cx.X86_INS_INSW, cx.X86_INS_INSD, cx.X86_INS_OUTSB, cx.X86_INS_OUTSW, cx.X86_INS_OUTSD}

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
    hooked_offsets: tuple[int, ...]  # RDMSR/WRMSR, IN/OUT/INS/OUTS, MOV to/from CR8, CLFLUSH/WBINVD/INVD


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
    """Split ``code`` (one translation block's bytes at ``address``) into instructions."""
    md = _md if bits == 64 else _md32
    insns = list(md.disasm(code, address))
    if not insns:
        return DecodedBlock((0,), 0, ())
    offsets = tuple(i.address - address for i in insns)
    flags = 0
    if _is_branch(insns[-1]):
        flags |= ENDS_IN_BRANCH | _branch_kind(insns[-1])
    if _is_rep_string(insns[0]):
        flags |= STARTS_WITH_REP
    if _is_rep_string(insns[-1]):
        flags |= ENDS_WITH_REP
    hooked = tuple(i.address - address for i in insns
                   if i.id in _HOOKED or i.id in _CACHE_MAINTENANCE
                   or (i.id == cx.X86_INS_MOV and "cr8" in i.op_str))
    return DecodedBlock(offsets, flags, hooked)


def flushed_address(code: bytes, address: int, regs: dict) -> int | None:
    """Effective address of the CLFLUSH/CLFLUSHOPT at ``address`` given the guest's registers
    (name -> value), or None for WBINVD/INVD (which empty the whole cache)."""
    insn = next(_md.disasm(code, address), None)
    if insn is None or insn.id not in (cx.X86_INS_CLFLUSH, cx.X86_INS_CLFLUSHOPT):
        return None
    mem = insn.operands[0].mem
    ea = mem.disp
    if mem.base == cx.X86_REG_RIP:
        ea += address + insn.size
    elif mem.base:
        ea += regs[insn.reg_name(mem.base)]
    if mem.index:
        ea += regs[insn.reg_name(mem.index)] * mem.scale
    return ea & ((1 << 64) - 1)
