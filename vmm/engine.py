# SPDX-License-Identifier: GPL-2.0-or-later
"""libunicorn without its Python binding: the engine library, the ids the VMM uses, and :class:`Engine`.

``import unicorn`` builds ctypes prototypes, structures and constants for all ten architectures
the library supports: ~100 M host instructions, a quarter of a command-line run of a small kernel.
The VMM needs a dozen entry points of the x86-64 engine on its cold paths (the hook layer,
vmm/_ucvcpu.pyx, resolves its own C entry points from :data:`LIB` too), so this module loads the
library the binding would load -- ``$LIBUNICORN_PATH`` first, as the binding does, else the one the
``unicorn`` package ships -- and declares only those.  The ids below are unicorn 2.1.4's (the
version pyproject pins; tests/test_engine.py compares each with the binding's constant of the same
name); the library's API version is checked when the module loads.

:class:`Engine` owns one x86-64 engine (``uc_open`` .. ``uc_close``) and offers the binding's
methods for what the VMM does with it: registers (plain, the MSR pair, the (selector, base, limit,
flags) tuples of GDTR/IDTR/LDTR/TR), mapping RAM, reading and writing it, running and stopping,
dropping translations.  Everything else -- hooks with Python callbacks, contexts, CPU models -- is
the binding's: :attr:`Engine.uc` is the binding's ``Uc`` over the same engine, made (and the
binding imported) the first time it is asked for; it does not own the engine, which lives as
long as either object does.

Not here: the hook layer's C calls into the engine (vmm/_ucvcpu_engine.pxi), any other
architecture or mode.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import ctypes
import os
import weakref
from collections.abc import Iterator
from typing import Any

from vmm.native_libs import packaged_library

API_VERSION = (2, 1)
UC_ARCH_X86 = 4
UC_MODE_64 = 8
UC_PROT_READ, UC_PROT_WRITE, UC_PROT_EXEC, UC_PROT_ALL = 1, 2, 4, 7
UC_ERR_OK = 0
UC_ERR_FETCH_PROT = 14
# uc_mem_type: what a memory hook reports
UC_MEM_WRITE = 17
UC_MEM_FETCH_UNMAPPED = 21
# hook kinds
UC_HOOK_INTR = 1
UC_HOOK_INSN = 2
UC_HOOK_CODE = 4
UC_HOOK_BLOCK = 8
UC_HOOK_MEM_READ_UNMAPPED = 16
UC_HOOK_MEM_UNMAPPED = 112
UC_HOOK_MEM_READ = 1024
UC_HOOK_MEM_WRITE = 2048
UC_HOOK_INSN_INVALID = 16384
UC_HOOK_EDGE_GENERATED = 32768
# uc_ctl requests (the argument count and direction are or-ed in: ctl_write)
UC_CTL_IO_WRITE = 1
UC_CTL_UC_USE_EXITS = 4
UC_CTL_UC_EXITS = 6
UC_CTL_TB_REMOVE_CACHE = 9
UC_CTL_TB_FLUSH = 10
UC_CTL_TLB_FLUSH = 11
# x86 instructions UC_HOOK_INSN takes
UC_X86_INS_CPUID = 113
UC_X86_INS_IN = 218
UC_X86_INS_OUT = 500
UC_X86_INS_RDTSC = 608
UC_X86_INS_RDTSCP = 609
UC_X86_INS_SYSCALL = 699
UC_X86_INS_SYSENTER = 700
# x86 registers
UC_X86_REG_EFLAGS = 25
UC_X86_REG_RAX = 35
UC_X86_REG_RBP = 36
UC_X86_REG_RBX = 37
UC_X86_REG_RCX = 38
UC_X86_REG_RDI = 39
UC_X86_REG_RDX = 40
UC_X86_REG_RIP = 41
UC_X86_REG_RSI = 43
UC_X86_REG_RSP = 44
UC_X86_REG_CR0 = 50
UC_X86_REG_CR2 = 52
UC_X86_REG_CR3 = 53
UC_X86_REG_CR4 = 54
UC_X86_REG_DR0 = 66         # DR0-DR7 are consecutive
UC_X86_REG_DR6 = 72
UC_X86_REG_DR7 = 73
UC_X86_REG_R8, UC_X86_REG_R9, UC_X86_REG_R10, UC_X86_REG_R11 = 106, 107, 108, 109
UC_X86_REG_R12, UC_X86_REG_R13, UC_X86_REG_R14, UC_X86_REG_R15 = 110, 111, 112, 113
UC_X86_REG_IDTR = 242
UC_X86_REG_GDTR = 243
UC_X86_REG_LDTR = 244
UC_X86_REG_TR = 245
UC_X86_REG_MSR = 248
UC_X86_REG_RFLAGS = 253

_TABLE_REGISTERS = frozenset((UC_X86_REG_IDTR, UC_X86_REG_GDTR, UC_X86_REG_LDTR, UC_X86_REG_TR))


class _TableRegister(ctypes.Structure):
    """uc_x86_mmr: GDTR, IDTR (selector and flags unused), LDTR, TR."""
    _fields_ = (("selector", ctypes.c_uint16), ("base", ctypes.c_uint64), ("limit", ctypes.c_uint32),
                ("flags", ctypes.c_uint32))


class _Msr(ctypes.Structure):
    """uc_x86_msr."""
    _fields_ = (("rid", ctypes.c_uint32), ("value", ctypes.c_uint64))


class _MemRegion(ctypes.Structure):
    _fields_ = (("begin", ctypes.c_uint64), ("end", ctypes.c_uint64), ("perms", ctypes.c_uint32))


def _library_path() -> str:
    """The libunicorn the binding would load: $LIBUNICORN_PATH's, else the unicorn package's; where
    neither is (a distribution's build elsewhere), the binding says which library it loaded."""
    override = os.environ.get("LIBUNICORN_PATH")
    if override and os.path.exists(os.path.join(override, "libunicorn.so.2")):
        return os.path.join(override, "libunicorn.so.2")
    packaged = packaged_library("unicorn", "lib", "libunicorn.so.2")
    if packaged is not None:
        return packaged
    from unicorn.unicorn_py3 import unicorn as binding  # the slow import, only for a library elsewhere

    return binding.uclib._name


def _prototype(name: str, restype: Any, *argtypes: Any) -> None:
    function = getattr(LIB, name)
    function.restype = restype
    function.argtypes = argtypes


# The library, loaded as the binding loads it (so both get the same one: see Engine.uc).  Its
# function objects are this module's own (LIB is not the binding's CDLL): the prototypes are ours.
LIB = ctypes.CDLL(_library_path())
_u64, _p = ctypes.c_uint64, ctypes.c_void_p
_prototype("uc_version", ctypes.c_uint, ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint))
_prototype("uc_strerror", ctypes.c_char_p, ctypes.c_int)
_prototype("uc_open", ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.POINTER(_p))
_prototype("uc_close", ctypes.c_int, _p)
_prototype("uc_reg_read", ctypes.c_int, _p, ctypes.c_int, _p)
_prototype("uc_reg_write", ctypes.c_int, _p, ctypes.c_int, _p)
_prototype("uc_mem_map", ctypes.c_int, _p, _u64, ctypes.c_size_t, ctypes.c_uint32)
_prototype("uc_mem_map_ptr", ctypes.c_int, _p, _u64, ctypes.c_size_t, ctypes.c_uint32, _p)
_prototype("uc_mem_unmap", ctypes.c_int, _p, _u64, ctypes.c_size_t)
_prototype("uc_mem_read", ctypes.c_int, _p, _u64, _p, ctypes.c_size_t)
_prototype("uc_mem_write", ctypes.c_int, _p, _u64, ctypes.c_char_p, ctypes.c_size_t)
_prototype("uc_mem_regions", ctypes.c_int, _p, ctypes.POINTER(ctypes.POINTER(_MemRegion)),
           ctypes.POINTER(ctypes.c_uint32))
_prototype("uc_free", ctypes.c_int, _p)
_prototype("uc_emu_start", ctypes.c_int, _p, _u64, _u64, _u64, ctypes.c_size_t)
_prototype("uc_emu_stop", ctypes.c_int, _p)
_prototype("uc_ctl", ctypes.c_int, _p, ctypes.c_int)      # (variadic: the rest as ctypes values)


def _api_version() -> tuple[int, int]:
    major, minor = ctypes.c_uint(), ctypes.c_uint()
    LIB.uc_version(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


if _api_version() != API_VERSION:
    raise ImportError(f"{LIB._name} is unicorn {'.'.join(map(str, _api_version()))}, not the 2.1 this VMM "
                      "is built for")


def address_of(name: str) -> int:
    """Where the library's exported ``name`` lies (the hook layer's C entry points)."""
    return ctypes.cast(getattr(LIB, name), ctypes.c_void_p).value


def ctl_write(request: int, nargs: int) -> int:
    """The uc_ctl code that writes ``request`` with ``nargs`` arguments (UC_CTL_WRITE)."""
    return request | (nargs << 26) | (UC_CTL_IO_WRITE << 30)


class EngineError(RuntimeError):
    """A libunicorn call failed; ``errno`` is its uc_err."""

    def __init__(self, errno: int, what: str = ""):
        self.errno = errno
        text = LIB.uc_strerror(errno).decode(errors="replace")
        super().__init__(f"{what}: {text}" if what else text)


def _check(status: int, what: str) -> None:
    if status != UC_ERR_OK:
        raise EngineError(status, what)


class Engine:
    """One x86-64 unicorn engine, driven through libunicorn directly (the binding's method names and
    value shapes, for the registers and calls listed in the module docstring).  ``Engine()`` opens
    a new one, closed when the object goes; ``Engine(handle=h, owner=o)`` is a view of the engine
    ``h`` that ``o`` owns (kept alive by the view), e.g. a binding ``Uc``'s."""

    def __init__(self, handle: int | None = None, owner: object = None):
        if handle is None:
            h = ctypes.c_void_p()
            _check(LIB.uc_open(UC_ARCH_X86, UC_MODE_64, ctypes.byref(h)), "uc_open")
            handle = h.value
            weakref.finalize(self, LIB.uc_close, handle)
        self.handle: int = handle
        self._owner = owner
        self._uc = owner if _is_binding_uc(owner) else None

    # -- registers ------------------------------------------------------------------------
    def reg_read(self, reg: int, aux: int | None = None) -> Any:
        """A register's value: an int; for the MSR register, MSR ``aux``'s value; for GDTR, IDTR,
        LDTR and TR, the tuple (selector, base, limit, flags)."""
        if reg == UC_X86_REG_MSR:
            msr = _Msr(aux, 0)
            _check(LIB.uc_reg_read(self.handle, reg, ctypes.byref(msr)), f"reading MSR {aux:#x}")
            return msr.value
        if reg in _TABLE_REGISTERS:
            table = _TableRegister()
            _check(LIB.uc_reg_read(self.handle, reg, ctypes.byref(table)), f"reading register {reg}")
            return table.selector, table.base, table.limit, table.flags
        value = ctypes.c_uint64()
        _check(LIB.uc_reg_read(self.handle, reg, ctypes.byref(value)), f"reading register {reg}")
        return value.value

    def reg_write(self, reg: int, value: Any) -> None:
        """Set a register: an int; for the MSR register, the pair (msr, value); for GDTR, IDTR, LDTR
        and TR, the tuple (selector, base, limit, flags)."""
        if reg == UC_X86_REG_MSR:
            data: ctypes.Structure | ctypes.c_uint64 = _Msr(*value)
        elif reg in _TABLE_REGISTERS:
            data = _TableRegister(*value)
        else:
            data = ctypes.c_uint64(value & 0xFFFF_FFFF_FFFF_FFFF)
        _check(LIB.uc_reg_write(self.handle, reg, ctypes.byref(data)), f"writing register {reg}")

    def msr_read(self, msr: int) -> int:
        return self.reg_read(UC_X86_REG_MSR, msr)

    def msr_write(self, msr: int, value: int) -> None:
        self.reg_write(UC_X86_REG_MSR, (msr, value))

    # -- memory ---------------------------------------------------------------------------
    def mem_map(self, address: int, size: int, perms: int = UC_PROT_ALL) -> None:
        _check(LIB.uc_mem_map(self.handle, address, size, perms), f"mapping {address:#x}+{size:#x}")

    def mem_map_ptr(self, address: int, size: int, perms: int, ptr: int) -> None:
        """Map ``size`` bytes of host memory at ``ptr`` (the caller keeps it alive) at ``address``."""
        _check(LIB.uc_mem_map_ptr(self.handle, address, size, perms, ptr), f"mapping {address:#x}+{size:#x}")

    def mem_unmap(self, address: int, size: int) -> None:
        _check(LIB.uc_mem_unmap(self.handle, address, size), f"unmapping {address:#x}+{size:#x}")

    def mem_read(self, address: int, size: int) -> bytearray:
        data = ctypes.create_string_buffer(size)
        _check(LIB.uc_mem_read(self.handle, address, data, size), f"reading {address:#x}+{size:#x}")
        return bytearray(data.raw)

    def mem_write(self, address: int, data: bytes) -> None:
        _check(LIB.uc_mem_write(self.handle, address, bytes(data), len(data)), f"writing {address:#x}+{len(data):#x}")

    def mem_regions(self) -> Iterator[tuple[int, int, int]]:
        """The mapped regions as (begin, last byte, perms)."""
        regions = ctypes.POINTER(_MemRegion)()
        count = ctypes.c_uint32()
        _check(LIB.uc_mem_regions(self.handle, ctypes.byref(regions), ctypes.byref(count)), "uc_mem_regions")
        try:
            found = [(regions[i].begin, regions[i].end, regions[i].perms) for i in range(count.value)]
        finally:
            LIB.uc_free(regions)
        return iter(found)

    # -- running --------------------------------------------------------------------------
    def emu_start(self, begin: int, until: int, timeout: int = 0, count: int = 0) -> None:
        _check(LIB.uc_emu_start(self.handle, begin, until, timeout, count), f"running from {begin:#x}")

    def emu_stop(self) -> None:
        _check(LIB.uc_emu_stop(self.handle), "uc_emu_stop")

    def ctl_remove_cache(self, begin: int, end: int) -> None:
        """Drop the translations of the code in [begin, end)."""
        _check(LIB.uc_ctl(self.handle, ctl_write(UC_CTL_TB_REMOVE_CACHE, 2), ctypes.c_uint64(begin),
                          ctypes.c_uint64(end)), "dropping translations")

    # -- the binding ----------------------------------------------------------------------
    @property
    def uc(self) -> Any:
        """The unicorn binding's ``Uc`` over this engine (for hooks with Python callbacks and the
        rest of its API); made on first use, which imports the binding."""
        if self._uc is None:
            self._uc = _binding_view(self)
        return self._uc


def _is_binding_uc(obj: object) -> bool:
    return obj is not None and hasattr(obj, "_uch") and hasattr(obj, "_callbacks")


def _binding() -> Any:
    """The binding's module (imported now), checked to drive the same library as this module."""
    from unicorn.unicorn_py3 import unicorn as binding

    if address_of("uc_open") != ctypes.cast(binding.uclib.uc_open, ctypes.c_void_p).value:
        raise RuntimeError(f"the unicorn binding loaded {binding.uclib._name}, not {LIB._name}: two engine "
                           "libraries in one process (is LIBUNICORN_PATH set differently for each?)")
    return binding


def _binding_view(engine: Engine) -> Any:
    """A binding ``Uc`` over ``engine``'s handle that does not own it (no finalizer closes it); it
    keeps ``engine`` alive.  Built as the binding's own constructor builds one, minus uc_open."""
    binding = _binding()
    uc = binding.Uc.__new__(binding.Uc, UC_ARCH_X86, UC_MODE_64)
    uc._arch, uc._mode = UC_ARCH_X86, UC_MODE_64
    uc._uch = binding.uc_engine(engine.handle)
    uc._callbacks = {}
    uc._mmio_callbacks = {}
    uc._hook_exception = None
    uc._vmm_engine = engine
    return uc


def as_engine(engine: Any) -> Engine:
    """``engine`` itself if it is an :class:`Engine`; for a binding ``Uc``, a view of its engine
    (checked to come from the same library)."""
    if isinstance(engine, Engine):
        return engine
    if not _is_binding_uc(engine):
        raise TypeError(f"not a unicorn engine: {engine!r}")
    _binding()
    return Engine(handle=engine._uch.value, owner=engine)
