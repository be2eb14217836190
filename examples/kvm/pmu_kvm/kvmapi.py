# SPDX-License-Identifier: GPL-2.0-or-later
"""The slice of the Linux KVM API (Documentation/virt/kvm/api.rst) this example uses.

Plain ctypes structures, ``fcntl.ioctl`` and ``mmap``: no dependency beyond the standard library.
Only x86-64 and only what the example needs: system and VM ioctls, one vCPU, its ``kvm_run``
page, registers, CPUID, guest debug (single-step), interrupt/NMI injection, the user-space MSR
capability and the MSR filter.  Not here: in-kernel irqchip, dirty logging, multiple vCPUs,
XSAVE/FPU state, nested state.

Every wrapper raises :class:`KvmError` (an OSError naming the ioctl) when the kernel refuses.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os

API_VERSION = 12
KVMIO = 0xAE

# -- ioctl numbers (asm-generic _IO/_IOR/_IOW/_IOWR encodings) -----------------------------------


def _io(nr: int) -> int:
    return (KVMIO << 8) | nr


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (KVMIO << 8) | nr


_W, _R = 1, 2


class KvmUserspaceMemoryRegion(ctypes.Structure):
    _fields_ = [("slot", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("guest_phys_addr", ctypes.c_uint64),
                ("memory_size", ctypes.c_uint64), ("userspace_addr", ctypes.c_uint64)]


class KvmRegs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp",
        "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags")]


class KvmSegment(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint32), ("selector", ctypes.c_uint16),
                ("type", ctypes.c_uint8), ("present", ctypes.c_uint8), ("dpl", ctypes.c_uint8),
                ("db", ctypes.c_uint8), ("s", ctypes.c_uint8), ("l", ctypes.c_uint8), ("g", ctypes.c_uint8),
                ("avl", ctypes.c_uint8), ("unusable", ctypes.c_uint8), ("padding", ctypes.c_uint8)]


class KvmDtable(ctypes.Structure):
    _fields_ = [("base", ctypes.c_uint64), ("limit", ctypes.c_uint16), ("padding", ctypes.c_uint16 * 3)]


class KvmSregs(ctypes.Structure):
    _fields_ = [("cs", KvmSegment), ("ds", KvmSegment), ("es", KvmSegment), ("fs", KvmSegment),
                ("gs", KvmSegment), ("ss", KvmSegment), ("tr", KvmSegment), ("ldt", KvmSegment),
                ("gdt", KvmDtable), ("idt", KvmDtable),
                ("cr0", ctypes.c_uint64), ("cr2", ctypes.c_uint64), ("cr3", ctypes.c_uint64),
                ("cr4", ctypes.c_uint64), ("cr8", ctypes.c_uint64), ("efer", ctypes.c_uint64),
                ("apic_base", ctypes.c_uint64), ("interrupt_bitmap", ctypes.c_uint64 * 4)]


class KvmCpuidEntry2(ctypes.Structure):
    _fields_ = [("function", ctypes.c_uint32), ("index", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("eax", ctypes.c_uint32), ("ebx", ctypes.c_uint32), ("ecx", ctypes.c_uint32),
                ("edx", ctypes.c_uint32), ("padding", ctypes.c_uint32 * 3)]


KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1


def cpuid2(entries: list[tuple[int, int, int, int, int, int, int]]):
    """A ``struct kvm_cpuid2`` holding ``(function, index, flags, eax, ebx, ecx, edx)`` entries."""

    class KvmCpuid2(ctypes.Structure):
        _fields_ = [("nent", ctypes.c_uint32), ("padding", ctypes.c_uint32),
                    ("entries", KvmCpuidEntry2 * max(1, len(entries)))]

    blob = KvmCpuid2(nent=len(entries))
    for slot, (function, index, flags, eax, ebx, ecx, edx) in zip(blob.entries, entries, strict=False):
        slot.function, slot.index, slot.flags = function, index, flags
        slot.eax, slot.ebx, slot.ecx, slot.edx = eax, ebx, ecx, edx
    return blob


class KvmGuestDebug(ctypes.Structure):
    _fields_ = [("control", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("debugreg", ctypes.c_uint64 * 8)]


class KvmEnableCap(ctypes.Structure):
    _fields_ = [("cap", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("args", ctypes.c_uint64 * 4),
                ("pad", ctypes.c_uint8 * 64)]


class KvmMsrFilterRange(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("nmsrs", ctypes.c_uint32), ("base", ctypes.c_uint32),
                ("bitmap", ctypes.c_void_p)]


MSR_FILTER_MAX_RANGES = 16


class KvmMsrFilter(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint32), ("ranges", KvmMsrFilterRange * MSR_FILTER_MAX_RANGES)]


class KvmInterrupt(ctypes.Structure):
    _fields_ = [("irq", ctypes.c_uint32)]


class KvmTranslation(ctypes.Structure):
    _fields_ = [("linear_address", ctypes.c_uint64), ("physical_address", ctypes.c_uint64),
                ("valid", ctypes.c_uint8), ("writeable", ctypes.c_uint8), ("usermode", ctypes.c_uint8),
                ("pad", ctypes.c_uint8 * 5)]


class KvmVcpuEvents(ctypes.Structure):
    """Only the fields this example reads (interrupt shadow, NMI masking); the rest is opaque."""
    _fields_ = [("exception", ctypes.c_uint8 * 8),      # injected, nr, has_error_code, pending, error_code
                ("interrupt_injected", ctypes.c_uint8), ("interrupt_nr", ctypes.c_uint8),
                ("interrupt_soft", ctypes.c_uint8), ("interrupt_shadow", ctypes.c_uint8),
                ("nmi_injected", ctypes.c_uint8), ("nmi_pending", ctypes.c_uint8),
                ("nmi_masked", ctypes.c_uint8), ("nmi_pad", ctypes.c_uint8),
                ("sipi_vector", ctypes.c_uint32), ("flags", ctypes.c_uint32),
                ("rest", ctypes.c_uint8 * 40)]


KVM_GET_API_VERSION = _io(0x00)
KVM_CREATE_VM = _io(0x01)
KVM_CHECK_EXTENSION = _io(0x03)
KVM_GET_VCPU_MMAP_SIZE = _io(0x04)
KVM_CREATE_VCPU = _io(0x41)
KVM_SET_USER_MEMORY_REGION = _ioc(_W, 0x46, ctypes.sizeof(KvmUserspaceMemoryRegion))
KVM_RUN = _io(0x80)
KVM_GET_REGS = _ioc(_R, 0x81, ctypes.sizeof(KvmRegs))
KVM_SET_REGS = _ioc(_W, 0x82, ctypes.sizeof(KvmRegs))
KVM_GET_SREGS = _ioc(_R, 0x83, ctypes.sizeof(KvmSregs))
KVM_SET_SREGS = _ioc(_W, 0x84, ctypes.sizeof(KvmSregs))
KVM_TRANSLATE = _ioc(_R | _W, 0x85, ctypes.sizeof(KvmTranslation))
KVM_INTERRUPT = _ioc(_W, 0x86, ctypes.sizeof(KvmInterrupt))
KVM_SET_CPUID2 = _ioc(_W, 0x90, 8)
KVM_NMI = _io(0x9A)
KVM_SET_GUEST_DEBUG = _ioc(_W, 0x9B, ctypes.sizeof(KvmGuestDebug))
KVM_GET_VCPU_EVENTS = _ioc(_R, 0x9F, ctypes.sizeof(KvmVcpuEvents))
KVM_ENABLE_CAP = _ioc(_W, 0xA3, ctypes.sizeof(KvmEnableCap))
KVM_X86_SET_MSR_FILTER = _ioc(_W, 0xC6, ctypes.sizeof(KvmMsrFilter))

# -- capabilities, flags, exit reasons ---------------------------------------------------------------
CAP_SET_GUEST_DEBUG = 23
CAP_X86_USER_SPACE_MSR = 188
CAP_X86_MSR_FILTER = 189
CAP_PMU_CAPABILITY = 225
PMU_CAP_DISABLE = 1

MSR_EXIT_REASON_INVAL = 1 << 0     # the access would #GP in KVM
MSR_EXIT_REASON_UNKNOWN = 1 << 1   # KVM does not know the MSR
MSR_EXIT_REASON_FILTER = 1 << 2    # the MSR filter denied it
MSR_FILTER_READ = 1
MSR_FILTER_WRITE = 2
MSR_FILTER_DEFAULT_ALLOW = 0

GUESTDBG_ENABLE = 1 << 0
GUESTDBG_SINGLESTEP = 1 << 1

EXIT_UNKNOWN = 0
EXIT_EXCEPTION = 1
EXIT_IO = 2
EXIT_DEBUG = 4
EXIT_HLT = 5
EXIT_MMIO = 6
EXIT_IRQ_WINDOW_OPEN = 7
EXIT_SHUTDOWN = 8
EXIT_FAIL_ENTRY = 9
EXIT_INTR = 10
EXIT_INTERNAL_ERROR = 17
EXIT_SYSTEM_EVENT = 24
EXIT_X86_RDMSR = 29
EXIT_X86_WRMSR = 30
EXIT_NAMES = {0: "UNKNOWN", 1: "EXCEPTION", 2: "IO", 4: "DEBUG", 5: "HLT", 6: "MMIO", 7: "IRQ_WINDOW_OPEN",
              8: "SHUTDOWN", 9: "FAIL_ENTRY", 10: "INTR", 17: "INTERNAL_ERROR", 24: "SYSTEM_EVENT",
              29: "X86_RDMSR", 30: "X86_WRMSR"}
IO_IN, IO_OUT = 0, 1


# -- struct kvm_run: the fixed header and the union members used here ----------------------------
class _RunIo(ctypes.Structure):
    _fields_ = [("direction", ctypes.c_uint8), ("size", ctypes.c_uint8), ("port", ctypes.c_uint16),
                ("count", ctypes.c_uint32), ("data_offset", ctypes.c_uint64)]


class _RunMmio(ctypes.Structure):
    _fields_ = [("phys_addr", ctypes.c_uint64), ("data", ctypes.c_uint8 * 8), ("len", ctypes.c_uint32),
                ("is_write", ctypes.c_uint8)]


class _RunMsr(ctypes.Structure):
    _fields_ = [("error", ctypes.c_uint8), ("pad", ctypes.c_uint8 * 7), ("reason", ctypes.c_uint32),
                ("index", ctypes.c_uint32), ("data", ctypes.c_uint64)]


class _RunDebug(ctypes.Structure):
    _fields_ = [("exception", ctypes.c_uint32), ("pad", ctypes.c_uint32), ("pc", ctypes.c_uint64),
                ("dr6", ctypes.c_uint64), ("dr7", ctypes.c_uint64)]


class _RunInternal(ctypes.Structure):
    _fields_ = [("suberror", ctypes.c_uint32), ("ndata", ctypes.c_uint32), ("data", ctypes.c_uint64 * 16)]


class _RunFailEntry(ctypes.Structure):
    _fields_ = [("reason", ctypes.c_uint64), ("cpu", ctypes.c_uint32)]


class _RunUnion(ctypes.Union):
    _fields_ = [("io", _RunIo), ("mmio", _RunMmio), ("msr", _RunMsr), ("debug", _RunDebug),
                ("internal", _RunInternal), ("fail_entry", _RunFailEntry), ("raw", ctypes.c_uint8 * 256)]


class KvmRun(ctypes.Structure):
    _fields_ = [("request_interrupt_window", ctypes.c_uint8), ("immediate_exit", ctypes.c_uint8),
                ("padding1", ctypes.c_uint8 * 6),
                ("exit_reason", ctypes.c_uint32), ("ready_for_interrupt_injection", ctypes.c_uint8),
                ("if_flag", ctypes.c_uint8), ("flags", ctypes.c_uint16),
                ("cr8", ctypes.c_uint64), ("apic_base", ctypes.c_uint64), ("u", _RunUnion)]


assert ctypes.sizeof(KvmSregs) == 312 and ctypes.sizeof(KvmRegs) == 144
assert ctypes.sizeof(KvmMsrFilter) == 392 and ctypes.sizeof(KvmEnableCap) == 104
assert KvmRun.u.offset == 32 and ctypes.sizeof(KvmVcpuEvents) == 64


class KvmError(OSError):
    """An ioctl failed: ``errno`` is the kernel's, the message names the ioctl."""


def _ioctl(fd: int, request: int, arg=0, what: str = "") -> int:
    try:
        return fcntl.ioctl(fd, request, arg)
    except OSError as error:
        raise KvmError(error.errno, f"{what or hex(request)}: {os.strerror(error.errno)}") from None


class Kvm:
    """``/dev/kvm``: the system fd."""

    def __init__(self, path: str = "/dev/kvm"):
        self.fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)

    def api_version(self) -> int:
        return _ioctl(self.fd, KVM_GET_API_VERSION, 0, "KVM_GET_API_VERSION")

    def check_extension(self, cap: int) -> int:
        return _ioctl(self.fd, KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION")

    def vcpu_mmap_size(self) -> int:
        return _ioctl(self.fd, KVM_GET_VCPU_MMAP_SIZE, 0, "KVM_GET_VCPU_MMAP_SIZE")

    def create_vm(self) -> Vm:
        return Vm(self, _ioctl(self.fd, KVM_CREATE_VM, 0, "KVM_CREATE_VM"))

    def close(self) -> None:
        os.close(self.fd)


class Vm:
    """A VM fd."""

    def __init__(self, kvm: Kvm, fd: int):
        self.kvm = kvm
        self.fd = fd

    def check_extension(self, cap: int) -> int:
        return _ioctl(self.fd, KVM_CHECK_EXTENSION, cap, "KVM_CHECK_EXTENSION (VM)")

    def enable_cap(self, cap: int, *args: int) -> None:
        blob = KvmEnableCap(cap=cap)
        for i, value in enumerate(args):
            blob.args[i] = value
        _ioctl(self.fd, KVM_ENABLE_CAP, blob, f"KVM_ENABLE_CAP({cap})")

    def set_user_memory_region(self, slot: int, guest_phys: int, size: int, host_address: int) -> None:
        region = KvmUserspaceMemoryRegion(slot, 0, guest_phys, size, host_address)
        _ioctl(self.fd, KVM_SET_USER_MEMORY_REGION, region, "KVM_SET_USER_MEMORY_REGION")

    def set_msr_filter(self, ranges: list[tuple[int, int, int, bytes]]) -> list:
        """Install a default-allow filter of ``(flags, base, nmsrs, bitmap)`` ranges (a set bit lets
        KVM handle the MSR, a clear bit denies it).  Returns the bitmap buffers (keep them alive
        until the ioctl returned; KVM copies them)."""
        if len(ranges) > MSR_FILTER_MAX_RANGES:
            raise ValueError(f"{len(ranges)} MSR filter ranges; KVM takes at most {MSR_FILTER_MAX_RANGES}")
        blob = KvmMsrFilter(flags=MSR_FILTER_DEFAULT_ALLOW)
        buffers = []
        for slot, (flags, base, nmsrs, bitmap) in zip(blob.ranges, ranges, strict=False):
            buffer = ctypes.create_string_buffer(bitmap, max(8, len(bitmap)))
            buffers.append(buffer)
            slot.flags, slot.base, slot.nmsrs = flags, base, nmsrs
            slot.bitmap = ctypes.addressof(buffer)
        _ioctl(self.fd, KVM_X86_SET_MSR_FILTER, blob, "KVM_X86_SET_MSR_FILTER")
        return buffers

    def create_vcpu(self, vcpu_id: int = 0) -> VcpuFd:
        return VcpuFd(self, _ioctl(self.fd, KVM_CREATE_VCPU, vcpu_id, "KVM_CREATE_VCPU"))

    def close(self) -> None:
        os.close(self.fd)


class VcpuFd:
    """A vCPU fd and its mmap'ed ``struct kvm_run``."""

    def __init__(self, vm: Vm, fd: int):
        self.vm = vm
        self.fd = fd
        self._map = mmap.mmap(fd, vm.kvm.vcpu_mmap_size(), mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self.run_page = self._map
        self.run = KvmRun.from_buffer(self._map)

    def run_once(self) -> int:
        """KVM_RUN; returns the exit reason.  EINTR (a signal) is reported as EXIT_INTR."""
        try:
            fcntl.ioctl(self.fd, KVM_RUN, 0)
        except OSError as error:
            if error.errno in (errno.EINTR, errno.EAGAIN):
                return EXIT_INTR
            raise KvmError(error.errno, f"KVM_RUN: {os.strerror(error.errno)}") from None
        return self.run.exit_reason

    def get_regs(self) -> KvmRegs:
        regs = KvmRegs()
        _ioctl(self.fd, KVM_GET_REGS, regs, "KVM_GET_REGS")
        return regs

    def set_regs(self, regs: KvmRegs) -> None:
        _ioctl(self.fd, KVM_SET_REGS, regs, "KVM_SET_REGS")

    def get_sregs(self) -> KvmSregs:
        sregs = KvmSregs()
        _ioctl(self.fd, KVM_GET_SREGS, sregs, "KVM_GET_SREGS")
        return sregs

    def set_sregs(self, sregs: KvmSregs) -> None:
        _ioctl(self.fd, KVM_SET_SREGS, sregs, "KVM_SET_SREGS")

    def translate(self, linear: int) -> int | None:
        """Guest-physical address of ``linear`` under the current paging, or None if unmapped."""
        blob = KvmTranslation(linear_address=linear)
        _ioctl(self.fd, KVM_TRANSLATE, blob, "KVM_TRANSLATE")
        return blob.physical_address if blob.valid else None

    def set_cpuid2(self, entries) -> None:
        _ioctl(self.fd, KVM_SET_CPUID2, cpuid2(entries), "KVM_SET_CPUID2")

    def interrupt(self, vector: int) -> None:
        _ioctl(self.fd, KVM_INTERRUPT, KvmInterrupt(vector), "KVM_INTERRUPT")

    def nmi(self) -> None:
        _ioctl(self.fd, KVM_NMI, 0, "KVM_NMI")

    def set_guest_debug(self, control: int) -> None:
        _ioctl(self.fd, KVM_SET_GUEST_DEBUG, KvmGuestDebug(control=control), "KVM_SET_GUEST_DEBUG")

    def get_vcpu_events(self) -> KvmVcpuEvents:
        events = KvmVcpuEvents()
        _ioctl(self.fd, KVM_GET_VCPU_EVENTS, events, "KVM_GET_VCPU_EVENTS")
        return events

    def close(self) -> None:
        self.run = None      # drop the exported pointer before closing the map
        self._map.close()
        os.close(self.fd)
