"""Decode a translation block once, on the cold path, when the hook layer first sees it.

The C hook layer needs, per block: the offset of every instruction (to retire exactly the
instructions before a fault or an emulated instruction), whether the block ends in a branch
(branch instructions retired), whether it starts with or ends in a REP string instruction
(one retired instruction however many iterations), and where its RDMSR/WRMSR instructions
port I/O and CR8 instructions are (they get per-address code hooks where they are emulated;
port I/O is also checked against the TSS I/O permission bitmap, which the engine does not
enforce).  Capstone does the decoding; this runs once per new
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
_HOOKED = {cx.X86_INS_RDMSR, cx.X86_INS_WRMSR, cx.X86_INS_IN, cx.X86_INS_OUT,
           cx.X86_INS_INSB, cx.X86_INS_INSW, cx.X86_INS_INSD, cx.X86_INS_OUTSB, cx.X86_INS_OUTSW, cx.X86_INS_OUTSD}

# Block flags shared with the C hook layer (vmm/_ucvcpu.pyx).
ENDS_IN_BRANCH = 1
STARTS_WITH_REP = 2
ENDS_WITH_REP = 4


@dataclass(frozen=True, slots=True)
class DecodedBlock:
    offsets: tuple[int, ...]        # offset of each instruction from the block start
    flags: int
    hooked_offsets: tuple[int, ...]  # offsets of RDMSR/WRMSR, IN/OUT/INS/OUTS and MOV to/from CR8


def _is_rep_string(insn) -> bool:
    return insn.id in _STRING_OPS and any(p in _REP_PREFIXES for p in insn.prefix)


def _is_branch(insn) -> bool:
    return insn.id in _FAR_BRANCHES or any(insn.group(g) for g in _BRANCH_GROUPS)


def decode_block(code: bytes, address: int, bits: int = 64) -> DecodedBlock:
    """Split ``code`` (one translation block's bytes at ``address``) into instructions."""
    md = _md if bits == 64 else _md32
    insns = list(md.disasm(code, address))
    if not insns:
        return DecodedBlock((0,), 0, ())
    offsets = tuple(i.address - address for i in insns)
    flags = 0
    if _is_branch(insns[-1]):
        flags |= ENDS_IN_BRANCH
    if _is_rep_string(insns[0]):
        flags |= STARTS_WITH_REP
    if _is_rep_string(insns[-1]):
        flags |= ENDS_WITH_REP
    hooked = tuple(i.address - address for i in insns
                   if i.id in _HOOKED or (i.id == cx.X86_INS_MOV and "cr8" in i.op_str))
    return DecodedBlock(offsets, flags, hooked)
