# SPDX-License-Identifier: GPL-2.0-or-later
"""The reference oracle of vmm/_decode.pyx: the Python block decoder the hook layer used before the
C one (vmm/decode.py's ``decode_block`` until then), kept verbatim in logic so that tests can compare
the C decoder with it on any input (tests/test_decode.py).

It goes through capstone's ``cs_disasm`` (a new array of instructions per call) by way of
vmm/decode.py's ctypes binding, and matches hooked instructions by their mnemonic and operand strings,
as it always did; the C decoder uses ``cs_disasm_iter`` on handles of its own.  Not for production:
it costs ~20 us a block.
"""

from __future__ import annotations

from vmm.decode import (
    _INS,
    BRANCH_CALL,
    BRANCH_CONDITIONAL,
    BRANCH_INDIRECT,
    BRANCH_RETURN,
    CHANGES_MAPPING,
    CS_GRP_BRANCH_RELATIVE,
    CS_GRP_CALL,
    CS_GRP_INT,
    CS_GRP_IRET,
    CS_GRP_JUMP,
    CS_GRP_RET,
    ENDS_IN_BRANCH,
    ENDS_WITH_REP,
    STARTS_WITH_REP,
    X86_OP_IMM,
    X86_PREFIX_REP,
    X86_PREFIX_REPNE,
    DecodedBlock,
    _CsInsn,
    _disasm,
    _lib,
)

_BRANCH_GROUPS = (CS_GRP_JUMP, CS_GRP_CALL, CS_GRP_RET, CS_GRP_INT, CS_GRP_IRET, CS_GRP_BRANCH_RELATIVE)
_FAR_BRANCHES = {_INS[name] for name in ("syscall", "sysret", "sysenter", "sysexit", "ljmp", "lcall")}
_STRING_OPS = {_INS[f"{op}{size}"] for op in ("movs", "stos", "lods", "cmps", "scas") for size in "bwdq"} | \
    {_INS[f"{op}{size}"] for op in ("ins", "outs") for size in "bwd"}
_REP_PREFIXES = {X86_PREFIX_REP, X86_PREFIX_REPNE}
_CONDITIONAL = {_INS[name] for name in ("loop", "loope", "loopne", "jrcxz", "jecxz", "jcxz")}
_JMP = (_INS["jmp"], _INS["ljmp"])
_HOOKED_MNEMONICS = frozenset({"rdmsr", "wrmsr", "in", "out", "insb", "insw", "insd", "outsb", "outsw", "outsd",
                               "ltr", "clflush", "clflushopt", "wbinvd", "invd", "iret", "iretd", "iretq",
                               "sysenter", "sysexit", "sysexitq"})
_CR_DR_WRITES = (b"cr0,", b"cr3,", b"cr4,", b"dr")
_MAPPING_MNEMONICS = frozenset({"invlpg", "invpcid", "ljmp", "lcall"})
_MAPPING_CRS = (b"cr0,", b"cr3,", b"cr4,")


def _is_rep_string(insn: _CsInsn) -> bool:
    return insn.id in _STRING_OPS and any(p in _REP_PREFIXES for p in insn.detail[0].arch.x86.prefix)


def _groups(insn: _CsInsn) -> list[int]:
    detail = insn.detail[0]
    return detail.groups[:detail.groups_count]


def _is_branch(insn: _CsInsn) -> bool:
    groups = _groups(insn)
    return insn.id in _FAR_BRANCHES or any(g in groups for g in _BRANCH_GROUPS)


def _branch_kind(insn: _CsInsn) -> int:
    groups = _groups(insn)
    if CS_GRP_RET in groups:
        return BRANCH_RETURN
    x86 = insn.detail[0].arch.x86
    direct = any(op.type == X86_OP_IMM for op in x86.operands[:x86.op_count])
    if CS_GRP_CALL in groups:
        return BRANCH_CALL | (0 if direct else BRANCH_INDIRECT)
    if insn.id in _JMP:
        return 0 if direct else BRANCH_INDIRECT
    if insn.id in _CONDITIONAL or CS_GRP_JUMP in groups:
        return BRANCH_CONDITIONAL
    return 0


def _changes_mapping(mnemonic: str, insn: _CsInsn) -> bool:
    return mnemonic in _MAPPING_MNEMONICS or (mnemonic == "mov" and insn.op_str.startswith(_MAPPING_CRS)) or \
        (mnemonic in ("jmp", "call") and insn.op_str.startswith(b"ptr "))


def reference_decode_block(code: bytes, address: int, bits: int = 64) -> DecodedBlock:
    """What vmm._decode.decode_block must give for the same arguments."""
    insns, n = _disasm(bits, code, address, 0)
    if n == 0:
        return DecodedBlock((0,), 0, ())
    try:
        offsets = []
        hooked = []
        flags = 0
        for i in range(n):
            insn = insns[i]
            offset = insn.address - address
            offsets.append(offset)
            mnemonic = insn.mnemonic.decode("ascii")
            if mnemonic.rpartition(" ")[2] in _HOOKED_MNEMONICS or \
                    (mnemonic == "mov" and (b"cr8" in insn.op_str or insn.op_str.startswith(_CR_DR_WRITES))):
                hooked.append(offset)
            elif _changes_mapping(mnemonic, insn):
                if i == n - 1:
                    flags |= CHANGES_MAPPING
                else:
                    hooked.append(offset)
        first, last = insns[0], insns[n - 1]
        if _is_branch(last):
            flags |= ENDS_IN_BRANCH | _branch_kind(last)
        if _is_rep_string(first):
            flags |= STARTS_WITH_REP
        if _is_rep_string(last):
            flags |= ENDS_WITH_REP
    finally:
        _lib.cs_free(insns, n)
    return DecodedBlock(tuple(offsets), flags, tuple(hooked))
