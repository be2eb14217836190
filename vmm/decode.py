# SPDX-License-Identifier: GPL-2.0-or-later
"""Capstone for the hook layer: the library, its x86 API and ids, and decoding on cold paths.

The C hook layer needs, per block: the offset of every instruction (to retire exactly the
instructions before a fault or an emulated instruction), whether the block ends in a branch
(branch instructions retired), whether it starts with or ends in a REP string instruction
(one retired instruction however many iterations), and where its RDMSR/WRMSR instructions,
port I/O, CR8, MOV to CR0/CR3/CR4 and to debug registers, LTR, SYSENTER, SYSEXIT and
cache-maintenance instructions are (they get per-address code hooks where they are emulated,
checked or reported to the cache model; port I/O is also checked against the TSS I/O permission
bitmap, which the engine does not enforce), whether it ends in an instruction after which linear
addresses may map other code (INVLPG, INVPCID, far JMP/CALL; MOV to CR0/CR3/CR4 is hooked anyway:
the hook layer then compares its decoded blocks with the code again), and the kind of the block's
final branch for the branch predictor model.  vmm/_decode.pyx decodes blocks at C level, once per
new block (:func:`decode_block`, here for Python callers, is its Python entry point); this module
gives it the library, the block flags (:data:`ENDS_IN_BRANCH` ... :data:`CHANGES_MAPPING`),
:class:`DecodedBlock` and the ctypes structures it checks its own C layout against.

Capstone is called through its C library (the one the ``capstone`` package ships) with a ctypes
binding of the x86 part only: ``import capstone`` builds the ctypes structures of all its 18
architectures and their constants, ~20 ms of a ~100 ms command-line run, where this module's
binding costs ~2 ms.  The layouts are capstone 5's (API 5.0, which pyproject pins); the library's
API version and the name of every instruction and register id used here are checked when the
module loads, so another capstone refuses to load instead of decoding wrongly.
:func:`memory_operand` gives the hook layer the address of an instruction's memory operand
(CLFLUSH's line, LTR's selector), on cold paths, through ctypes.

Not decoded: anything the hook layer does not use (operands, prefixes other than REP).
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import ctypes
import os
from typing import NamedTuple

from vmm.native_libs import packaged_library

# --- capstone 5 C API (capstone.h, x86.h), x86 only ----------------------------------------------
CS_API = (5, 0)
CS_ARCH_X86 = 3
_CS_MODES = {16: 1 << 1, 32: 1 << 2, 64: 1 << 3}
CS_OPT_DETAIL = 2
CS_OPT_ON = 3
CS_GRP_JUMP, CS_GRP_CALL, CS_GRP_RET, CS_GRP_INT, CS_GRP_IRET, CS_GRP_BRANCH_RELATIVE = 1, 2, 3, 4, 5, 7
X86_OP_IMM = 2
X86_OP_MEM = 3
X86_PREFIX_REP = 0xF3
X86_PREFIX_REPNE = 0xF2
# Instruction and register ids by capstone's name for them (checked against the library at load).
_INS = {
    "syscall": 727, "sysret": 731, "sysenter": 728, "sysexit": 729, "ljmp": 171, "lcall": 170, "jmp": 172,
    "loop": 348, "loope": 349, "loopne": 350, "jrcxz": 271, "jecxz": 259, "jcxz": 258,
    "movsb": 485, "movsw": 491, "movsd": 486, "movsq": 489, "stosb": 708, "stosw": 711, "stosd": 709,
    "stosq": 710, "lodsb": 344, "lodsw": 347, "lodsd": 345, "lodsq": 346, "cmpsb": 108, "cmpsw": 112,
    "cmpsd": 109, "cmpsq": 110, "scasb": 653, "scasw": 656, "scasd": 654, "scasq": 655, "insb": 233,
    "insw": 237, "insd": 236, "outsb": 516, "outsw": 518, "outsd": 517,
}
_REG = {
    "rax": 35, "rcx": 38, "rdx": 40, "rbx": 37, "rsp": 44, "rbp": 36, "rsi": 43, "rdi": 39, "r8": 106, "r9": 107,
    "r10": 108, "r11": 109, "r12": 110, "r13": 111, "r14": 112, "r15": 113,
    "eax": 19, "ecx": 22, "edx": 24, "ebx": 21, "esp": 30, "ebp": 20, "esi": 29, "edi": 23, "r8d": 226, "r9d": 227,
    "r10d": 228, "r11d": 229, "r12d": 230, "r13d": 231, "r14d": 232, "r15d": 233,
    "ax": 3, "cx": 12, "dx": 18, "bx": 8, "sp": 47, "bp": 6, "si": 45, "di": 14, "r8w": 234, "r9w": 235,
    "r10w": 236, "r11w": 237, "r12w": 238, "r13w": 239, "r14w": 240, "r15w": 241,
    "rip": 41, "eip": 26, "es": 28, "cs": 11, "ss": 49, "ds": 17, "fs": 32, "gs": 33,
}


class _X86OpMem(ctypes.Structure):
    _fields_ = (("segment", ctypes.c_uint), ("base", ctypes.c_uint), ("index", ctypes.c_uint),
                ("scale", ctypes.c_int), ("disp", ctypes.c_int64))


class _X86OpValue(ctypes.Union):
    _fields_ = (("reg", ctypes.c_uint), ("imm", ctypes.c_int64), ("mem", _X86OpMem))


class _X86Op(ctypes.Structure):
    _fields_ = (("type", ctypes.c_uint), ("value", _X86OpValue), ("size", ctypes.c_uint8),
                ("access", ctypes.c_uint8), ("avx_bcast", ctypes.c_uint), ("avx_zero_opmask", ctypes.c_bool))


class _CsX86(ctypes.Structure):
    _fields_ = (("prefix", ctypes.c_uint8 * 4), ("opcode", ctypes.c_uint8 * 4), ("rex", ctypes.c_uint8),
                ("addr_size", ctypes.c_uint8), ("modrm", ctypes.c_uint8), ("sib", ctypes.c_uint8),
                ("disp", ctypes.c_int64), ("sib_index", ctypes.c_uint), ("sib_scale", ctypes.c_int8),
                ("sib_base", ctypes.c_uint), ("xop_cc", ctypes.c_uint), ("sse_cc", ctypes.c_uint),
                ("avx_cc", ctypes.c_uint), ("avx_sae", ctypes.c_bool), ("avx_rm", ctypes.c_uint),
                ("flags", ctypes.c_uint64), ("op_count", ctypes.c_uint8), ("operands", _X86Op * 8))


class _CsArch(ctypes.Union):
    # The other architectures' members only make the union larger; capstone allocates the details,
    # this module only reads them through a pointer.  Every member's alignment is 8, as x86's is.
    _fields_ = (("x86", _CsX86),)


class _CsDetail(ctypes.Structure):
    _fields_ = (("regs_read", ctypes.c_uint16 * 20), ("regs_read_count", ctypes.c_uint8),
                ("regs_write", ctypes.c_uint16 * 20), ("regs_write_count", ctypes.c_uint8),
                ("groups", ctypes.c_uint8 * 8), ("groups_count", ctypes.c_uint8), ("writeback", ctypes.c_bool),
                ("arch", _CsArch))


class _CsInsn(ctypes.Structure):
    _fields_ = (("id", ctypes.c_uint), ("address", ctypes.c_uint64), ("size", ctypes.c_uint16),
                ("bytes", ctypes.c_uint8 * 24), ("mnemonic", ctypes.c_char * 32), ("op_str", ctypes.c_char * 160),
                ("detail", ctypes.POINTER(_CsDetail)))


def _library_path() -> str:
    """libcapstone as the capstone package ships it, found without importing the package; where it
    is not there (a distribution's build), the package says which library it loaded."""
    path = packaged_library("capstone", "lib", "libcapstone.so")
    if path is not None:
        return path
    import capstone  # the slow import, only for a library installed elsewhere

    return capstone._cs._name


# A CDLL of our own (not the package's): the function prototypes below are this module's.
_lib = ctypes.CDLL(_library_path(), mode=getattr(os, "RTLD_DEEPBIND", 0))
_InsnArray = ctypes.POINTER(_CsInsn)
_lib.cs_version.restype = ctypes.c_int
_lib.cs_version.argtypes = (ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int))
_lib.cs_open.restype = ctypes.c_int
_lib.cs_open.argtypes = (ctypes.c_uint, ctypes.c_uint, ctypes.POINTER(ctypes.c_size_t))
_lib.cs_option.restype = ctypes.c_int
_lib.cs_option.argtypes = (ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p)
_lib.cs_disasm.restype = ctypes.c_size_t
_lib.cs_disasm.argtypes = (ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64, ctypes.c_size_t,
                           ctypes.POINTER(_InsnArray))
_lib.cs_free.restype = None
_lib.cs_free.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
_lib.cs_errno.restype = ctypes.c_int
_lib.cs_errno.argtypes = (ctypes.c_size_t,)
_lib.cs_insn_name.restype = ctypes.c_char_p
_lib.cs_insn_name.argtypes = (ctypes.c_size_t, ctypes.c_uint)
_lib.cs_reg_name.restype = ctypes.c_char_p
_lib.cs_reg_name.argtypes = (ctypes.c_size_t, ctypes.c_uint)


class DecoderError(RuntimeError):
    """Capstone failed (not: the bytes do not decode, which gives no instruction)."""


def _open(bits: int) -> int:
    handle = ctypes.c_size_t()
    err = _lib.cs_open(CS_ARCH_X86, _CS_MODES[bits], ctypes.byref(handle))
    if err == 0:
        err = _lib.cs_option(handle, CS_OPT_DETAIL, CS_OPT_ON)
    if err != 0:
        raise DecoderError(f"capstone: cs_open/cs_option({bits}-bit x86) failed with error {err}")
    return handle.value


def _check_library(handle: int) -> None:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _lib.cs_version(ctypes.byref(major), ctypes.byref(minor))
    if (major.value, minor.value) != CS_API:
        raise ImportError(f"vmm.decode needs capstone API {CS_API[0]}.{CS_API[1]}, the library has "
                          f"{major.value}.{minor.value}")
    wrong = [name for name, number in _INS.items() if _lib.cs_insn_name(handle, number) != name.encode()]
    wrong += [name for name, number in _REG.items() if _lib.cs_reg_name(handle, number) != name.encode()]
    if wrong:
        raise ImportError(f"vmm.decode: capstone's ids differ from capstone 5.0's for {', '.join(wrong)}")


_DECODERS = {bits: _open(bits) for bits in _CS_MODES}
_check_library(_DECODERS[64])


def _disasm(bits: int, code: bytes, address: int, count: int) -> tuple[_InsnArray, int]:
    """Capstone's instructions for ``code`` (all of them, or the first ``count``): free with cs_free."""
    handle = _DECODERS[bits]
    if not isinstance(code, bytes):     # unicorn's mem_read gives a bytearray
        code = bytes(code)
    insns = _InsnArray()
    n = _lib.cs_disasm(handle, code, len(code), address, count, ctypes.byref(insns))
    if n == 0:
        err = _lib.cs_errno(handle)
        if err != 0:
            raise DecoderError(f"capstone: cs_disasm failed with error {err}")
    return insns, n


# Operand addressing: capstone register id -> (index in the guest's register file, value mask), for
# the 64-, 32- and 16-bit names of the sixteen general registers; segment registers by x86 number.
_GPR_NAMES = {
    64: ("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", *(f"r{n}" for n in range(8, 16))),
    32: ("eax", "ecx", "edx", "ebx", "esp", "ebp", "esi", "edi", *(f"r{n}d" for n in range(8, 16))),
    16: ("ax", "cx", "dx", "bx", "sp", "bp", "si", "di", *(f"r{n}w" for n in range(8, 16))),
}
_GPRS = {_REG[name]: (index, (1 << width) - 1)
         for width, names in _GPR_NAMES.items() for index, name in enumerate(names)}
_STACK_BASES = {_REG[name] for name in ("rsp", "rbp", "esp", "ebp", "sp", "bp")}
_SEGMENTS = {_REG["es"]: 0, _REG["cs"]: 1, _REG["ss"]: 2, _REG["ds"]: 3, _REG["fs"]: 4, _REG["gs"]: 5}
_IP_BASES = (_REG["rip"], _REG["eip"])
SEG_SS = 2
SEG_DS = 3

# Block flags shared with the C decoder and hook layer (vmm/_decode.pyx, vmm/_ucvcpu.pyx; both check them).
ENDS_IN_BRANCH = 1
STARTS_WITH_REP = 2
ENDS_WITH_REP = 4
# What the branch predictor model needs to know about the block's last branch.
BRANCH_CONDITIONAL = 8      # jcc, loop*, jrcxz: predicted taken / not taken
BRANCH_INDIRECT = 16        # jmp/call through a register or memory: predicted target
BRANCH_RETURN = 32          # ret: predicted by the return stack
BRANCH_CALL = 64            # call (direct or indirect): pushes the return stack
# The block's last instruction may change what linear addresses map to: INVLPG, INVPCID, far JMP/CALL
# (LJMP/LCALL, and "jmp/call ptr [...]", the far form through memory: a task switch loads CR3).  The
# engine ends a translation block after each; one anywhere else gets a code hook instead.
CHANGES_MAPPING = 128


class DecodedBlock(NamedTuple):
    offsets: tuple[int, ...]        # offset of each instruction from the block start
    flags: int
    hooked_offsets: tuple[int, ...]  # RDMSR/WRMSR, IN/OUT/INS/OUTS, MOV to/from CR8, MOV to CR0/3/4 and DRn, LTR,
    #                                  CLFLUSH/WBINVD/INVD, IRET, SYSENTER, SYSEXIT; INVLPG, INVPCID
    #                                  and far JMP/CALL that do not end the block


def __getattr__(name: str):
    """``decode_block`` is vmm._decode's (C; it imports this module, so it is looked up on first use)."""
    if name == "decode_block":
        from vmm._decode import decode_block

        return decode_block
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def memory_operand(code: bytes, address: int, bits: int, regs) -> tuple[int, int] | None:
    """The memory operand of the instruction at ``address`` as ``(offset, segment)``: its effective
    address given the guest's sixteen general registers ``regs`` (x86 order), wrapped to the
    instruction's address size, and the segment register that applies (0 ES, 1 CS, 2 SS, 3 DS, 4 FS,
    5 GS: an override, else SS for RSP/RBP-based addresses and DS for the rest).  None if the
    instruction has no memory operand or does not decode."""
    insns, n = _disasm(bits, code, address, 1)
    if n == 0:
        return None
    try:
        insn = insns[0]
        x86 = insn.detail[0].arch.x86
        size, addr_size = insn.size, x86.addr_size
        mem = next((op.value.mem for op in x86.operands[:x86.op_count] if op.type == X86_OP_MEM), None)
        if mem is None:
            return None
        base, index, scale, disp, seg = mem.base, mem.index, mem.scale, mem.disp, mem.segment
    finally:
        _lib.cs_free(insns, n)
    offset = disp
    if base in _IP_BASES:
        offset += address + size
    for reg, factor in ((base, 1), (index, scale)):
        if reg in _GPRS:
            reg_index, mask = _GPRS[reg]
            offset += (regs[reg_index] & mask) * factor
    segment = _SEGMENTS.get(seg, SEG_SS if base in _STACK_BASES else SEG_DS)
    return offset & ((1 << (8 * addr_size)) - 1), segment
