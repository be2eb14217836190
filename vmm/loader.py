# SPDX-License-Identifier: GPL-2.0-or-later
"""Kernel loader: puts a kernel, its command line and one module (initrd) in guest RAM.

The kind is chosen from the file itself (docs/design.md, "Entry state for plain ELF64 kernels"):

* ``linux64`` -- a Linux bzImage, entered through the 64-bit boot protocol (vmm/linux_boot.py:
  zero page, e820 map, command line, initrd);
* ``pvh`` -- an ELF64 (e.g. a Linux vmlinux) without a multiboot header but with a Xen
  XEN_ELFNOTE_PHYS32_ENTRY note: entered in 32-bit protected mode at the note's address with
  EBX = an hvm_start_info (memory map, command line, initrd as module 0, RSDP);

* ``multiboot32`` -- ELFCLASS32/EM_386 with a multiboot v1 header (magic 0x1BADB002, 4-byte aligned
  in the first 8 KiB, magic + flags + checksum == 0 mod 2**32);
* ``multiboot64`` -- ELFCLASS64/EM_X86_64 with a multiboot header (its entry code is still 32-bit);
* ``elf64`` -- ELFCLASS64/EM_X86_64 without one (entered in long mode).

A multiboot header with flags bit 16 (the "a.out kludge") gives the load addresses itself and wins
over the program headers, so such an image need not be an ELF at all (it is then ``multiboot32``).
Otherwise every PT_LOAD is copied from ``p_offset`` (``p_filesz`` bytes) to ``p_paddr`` and zeroed up
to ``p_memsz``; segment permissions are not enforced (test kernels run code from RW segments).
The ELF entry point is a virtual address: when it falls inside a segment whose ``p_vaddr`` differs
from ``p_paddr`` it is translated to the physical address, as GRUB and QEMU do.

Everything is validated before the first byte is written to RAM.  Refusals raise
:class:`~vmm.errors.LoadError` with one line naming the problem: not an ELF, truncated header /
program headers / segment data, wrong class, byte order or machine, an ELF32 without multiboot
header (nothing says how to enter it), no loadable segment, ``p_filesz > p_memsz``, a segment or
the module outside RAM or over a reserved window (the VMM firmware area 0xE0000-0xFFFFF always, plus
the device windows the machine passes), an entry point outside every loaded segment, or a command
line over 4095 bytes.  The ELF and program headers are read with struct; pyelftools parses only
the images that need more (the name of a wrong machine, PN_XNUM program headers, a PT_DYNAMIC
segment), and its own exceptions are converted, never shown as tracebacks.

The multiboot information (MBI) goes to 0xF8000 for every kind (plain ELF64 kernels get its
address in RDI): flags = mem | cmdline | mods, mem_lower = 640, mem_upper = RAM KiB - 1024, the
command line ``"<kernel file name> <append text>"`` at 0xF9000, and the module list at 0xFA000
(vmm/firmware_area.py).
With a module, the list holds one entry (named ``initrd``) whose bytes sit at the first page
boundary after the kernel's highest loaded byte; without one, mods_count is 0 while the mods flag
stays set (which the spec allows: the count says there is nothing).

Linux kernels get the command line exactly as given (no argv[0]); the initrd is module 0.

Not supported: multiboot2, the multiboot memory map (flag bit 6; fw_cfg has no E820 table
either), video mode requests (flag bit 2 is accepted and ignored), symbol tables, more than one
module, kernel files over 512 MiB, and multiboot header flags bits 3-15 (refused, as the spec
requires for unknown requirements).
"""

# No `from __future__ import annotations`: BootInfo's fields name Segment and Window, and the
# constructor a NamedTuple generates lives outside this module, where pdoc could not resolve them
# as strings.  (BootInfo is a NamedTuple, as Window and Segment are, because a frozen dataclass's
# methods are compiled from source text when the class is created: 1% of a command-line run.)
import io
import os
import struct
from collections.abc import Iterable
from typing import NamedTuple

from vmm.errors import LoadError
from vmm.firmware_area import (
    BOOT_INFO_ADDRESS,
    CMDLINE_ADDRESS,
    FIRMWARE_AREA_END,
    FIRMWARE_AREA_START,
    MODULES_ADDRESS,
    PAGE_SIZE,
)
from vmm.linux_boot import (
    E820Entry,
    build_e820,
    find_pvh_entry,
    is_bzimage,
    load_bzimage,
    write_cmdline,
    write_hvm_start_info,
)

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_SEARCH_BYTES = 8192
MULTIBOOT_AOUT_KLUDGE = 1 << 16
MULTIBOOT_KNOWN_FLAGS = 0x7 | MULTIBOOT_AOUT_KLUDGE

MBI_ADDRESS = BOOT_INFO_ADDRESS
MODS_ADDRESS = MODULES_ADDRESS
MBI_AREA_END = MODULES_ADDRESS + PAGE_SIZE
CMDLINE_MAX_BYTES = PAGE_SIZE - 1  # one page, the NUL included
MODULE_NAME = b"initrd"

MBI_FLAG_MEM = 1 << 0
MBI_FLAG_CMDLINE = 1 << 2
MBI_FLAG_MODS = 1 << 3
MEM_LOWER_KIB = 640
MIN_RAM_BYTES = 1 << 20  # mem_upper counts from 1 MiB

ELF_MAGIC = b"\x7fELF"
ELF_IDENT_SIZE = 16
ELF_CLASSES = {1: 32, 2: 64}  # EI_CLASS -> bits
ELFCLASS64 = 2
ELF_LITTLE_ENDIAN = 1
ELF_HEADER_SIZE = {32: 52, 64: 64}
ELF_PHDR_SIZE = {32: 32, 64: 56}
ELF_MACHINE = {32: "EM_386", 64: "EM_X86_64"}

ELF_MACHINE_NUMBER = {32: 3, 64: 62}  # EM_386, EM_X86_64
ELF_HEADER_FIELDS = {32: "<HHIIIIIHHHHHH", 64: "<HHIQQQIHHHHHH"}   # e_type .. e_shstrndx, after e_ident
ELF_PHDR_FIELDS = {32: "<IIIIIIII", 64: "<IIQQQQQQ"}
PT_LOAD = 1
PT_DYNAMIC = 2
PN_XNUM = 0xFFFF

#: pyelftools' ``ELFFile``, imported only when an image needs it (see :func:`_elf_layout`): its
#: import costs ~20 ms of a ~100 ms CLI run.  A substitute put here (tests) parses every ELF image.
ELFFile = None

BYTES_KERNEL_NAME = "kernel"  # argv[0] when the kernel comes as bytes rather than a file
MAX_KERNEL_BYTES = 512 << 20   # larger files are refused before they are read whole


def describe_range(start: int, end: int) -> str:
    """``[start, end)`` as people write it: inclusive hex bounds."""
    return f"{start:#x}-{end - 1:#x}"


class Window(NamedTuple):
    """A guest-physical range ``[start, end)`` that kernel segments and modules must stay out of."""

    start: int
    end: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({describe_range(self.start, self.end)})"


#: The VMM's own boot structures (GDT, page tables, stack, MBI, ACPI): always reserved.
BOOT_AREA = Window(FIRMWARE_AREA_START, FIRMWARE_AREA_END, "VMM firmware area")


def bus_windows(bus) -> list[Window]:
    """Every range registered on ``bus`` (e.g. the MMIO bus) as a window named after its device's class."""
    return [Window(base, base + size, type(device).__name__) for base, size, device in bus.ranges()]


class Segment(NamedTuple):
    """One loaded piece of the image: ``filesz`` bytes from file ``offset`` to ``paddr``, zeroed to ``memsz``."""

    paddr: int
    offset: int
    filesz: int
    memsz: int

    @property
    def end(self) -> int:
        return self.paddr + self.memsz


class BootInfo(NamedTuple):
    """What the machine needs to enter the kernel: its kind, physical entry point and MBI address."""

    kind: str  # "multiboot32", "multiboot64", "elf64", "pvh" or "linux64"
    entry: int
    boot_info_address: int  # the MBI, the Linux zero page or the PVH start info
    image_end: int  # one past the kernel's highest loaded byte
    segments: tuple[Segment, ...]
    module: Window | None  # where the module landed, if one was given
    cmdline: str


class _MultibootHeader(NamedTuple):
    offset: int
    flags: int


def load_kernel(
    kernel: str | os.PathLike | bytes,
    ram: memoryview,
    *,
    cmdline: str = "",
    module: bytes | None = None,
    reserved: Iterable[tuple[int, int, str]] = (),
    e820: list[E820Entry] | None = None,
    rsdp_address: int = 0,
) -> BootInfo:
    """Validate ``kernel`` (a path or the image's bytes), then load it, its boot information and
    ``module`` into ``ram``.

    ``ram`` is guest RAM from physical address 0; ``reserved`` lists ``(start, end, name)`` windows
    (end exclusive) besides the boot area that nothing may be loaded over.  The multiboot command
    line's argv[0] is the kernel's file name, or ``kernel`` when the image comes as bytes.  ``e820``
    (default: RAM with the PC's reserved windows) and ``rsdp_address`` (0: none) go to Linux kernels.
    """
    data, name = _read_image(kernel)
    memory_map = e820 if e820 is not None else build_e820(len(ram))
    if is_bzimage(data):
        linux = load_bzimage(ram, data, boot_params_address=BOOT_INFO_ADDRESS, cmdline_address=CMDLINE_ADDRESS,
                             e820=memory_map, cmdline=cmdline, initrd=module, rsdp_address=rsdp_address)
        initrd = None if linux.initrd_range is None else Window(*linux.initrd_range, MODULE_NAME.decode())
        return BootInfo("linux64", linux.entry, linux.boot_params_address, linux.kernel_range[1], (), initrd,
                        cmdline)
    full_cmdline = f"{name} {cmdline}" if cmdline else name
    encoded_cmdline = full_cmdline.encode()
    if len(encoded_cmdline) > CMDLINE_MAX_BYTES:
        raise LoadError(f"command line is {len(encoded_cmdline)} bytes; the limit is {CMDLINE_MAX_BYTES}")
    if len(ram) < MIN_RAM_BYTES:
        raise LoadError(f"guest RAM is {len(ram):#x} bytes; multiboot needs at least {MIN_RAM_BYTES:#x}")
    windows = [BOOT_AREA, *(Window(*window) for window in reserved)]

    kind, entry, segments = _parse_image(data)
    pvh_entry = find_pvh_entry(data) if kind == "elf64" else None
    if pvh_entry is not None:
        kind, entry = "pvh", pvh_entry
    for segment in segments:
        _check_placement("kernel segment", segment.paddr, segment.end, len(ram), windows)
    if not any(segment.paddr <= entry < segment.end for segment in segments):
        raise LoadError(f"entry point {entry:#x} is outside every loaded segment")
    image_end = max(segment.end for segment in segments)
    module_window = None
    if module is not None:
        start = _align_up(image_end, PAGE_SIZE)
        module_window = Window(start, start + len(module), MODULE_NAME.decode())
        _check_placement("module", module_window.start, module_window.end, len(ram), windows)

    for segment in segments:
        file_end = segment.offset + segment.filesz
        ram[segment.paddr : segment.paddr + segment.filesz] = data[segment.offset : file_end]
        ram[segment.paddr + segment.filesz : segment.end] = bytes(segment.memsz - segment.filesz)
    if module_window is not None:
        ram[module_window.start : module_window.end] = module
    if kind == "pvh":
        write_cmdline(ram, CMDLINE_ADDRESS, cmdline, max_bytes=CMDLINE_MAX_BYTES + 1)
        modules = [] if module_window is None else [(module_window.start, len(module), 0)]
        write_hvm_start_info(ram, BOOT_INFO_ADDRESS, cmdline_address=CMDLINE_ADDRESS, memmap=memory_map,
                             modules=modules, rsdp_address=rsdp_address)
        return BootInfo(kind, entry, BOOT_INFO_ADDRESS, image_end, tuple(segments), module_window, cmdline)
    _write_mbi(ram, encoded_cmdline, module_window)
    return BootInfo(kind, entry, MBI_ADDRESS, image_end, tuple(segments), module_window, full_cmdline)


def _read_image(kernel) -> tuple[bytes, str]:
    if isinstance(kernel, (bytes, bytearray, memoryview)):
        return bytes(kernel), BYTES_KERNEL_NAME
    try:
        with open(kernel, "rb") as image:
            data = image.read(MAX_KERNEL_BYTES + 1)     # bounded: the path may be /dev/zero
    except OSError as error:
        raise LoadError(f"cannot read kernel {os.fspath(kernel)}: {error.strerror}") from None
    if len(data) > MAX_KERNEL_BYTES:
        raise LoadError(f"kernel {os.fspath(kernel)} is larger than {MAX_KERNEL_BYTES >> 20} MiB: not a kernel")
    return data, os.path.basename(os.fspath(kernel))


def _parse_image(data: bytes) -> tuple[str, int, list[Segment]]:
    """``(kind, physical entry, segments)`` of the image, checking only what the file itself says."""
    header = _find_multiboot_header(data)
    if header is not None and header.flags & ~MULTIBOOT_KNOWN_FLAGS:
        raise LoadError(f"multiboot header asks for unsupported features (flags {header.flags:#x}; known bits 0-2, 16)")
    is_elf64 = data[:4] == ELF_MAGIC and data[4:5] == bytes([ELFCLASS64])
    if header is not None and header.flags & MULTIBOOT_AOUT_KLUDGE:
        entry, segment = _aout_kludge_layout(data, header)
        return ("multiboot64" if is_elf64 else "multiboot32"), entry, [segment]
    if data[:4] != ELF_MAGIC:
        raise LoadError(f"not an ELF file (bad magic {data[:4]!r}) and no multiboot a.out kludge header")
    bits, entry, segments = _elf_layout(data)
    if header is not None:
        return f"multiboot{bits}", entry, segments
    if bits == 32:
        raise LoadError("32-bit ELF without a multiboot header: the VMM enters 32-bit kernels only through multiboot")
    return "elf64", entry, segments


def _find_multiboot_header(data: bytes) -> _MultibootHeader | None:
    searched = data[: min(len(data), MULTIBOOT_SEARCH_BYTES) & ~3]
    words = [word for (word,) in struct.iter_unpack("<I", searched)]
    for index in range(len(words) - 2):
        magic, flags, checksum = words[index : index + 3]
        # A magic number with a bad checksum is just data that happens to match: keep looking.
        if magic == MULTIBOOT_MAGIC and (magic + flags + checksum) & 0xFFFFFFFF == 0:
            return _MultibootHeader(4 * index, flags)
    return None


def _aout_kludge_layout(data: bytes, header: _MultibootHeader) -> tuple[int, Segment]:
    fields_at = header.offset + 12
    if fields_at + 20 > len(data):
        raise LoadError("truncated multiboot header: the a.out kludge addresses are beyond the end of the file")
    header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr = struct.unpack_from("<5I", data, fields_at)
    file_start = header.offset - (header_addr - load_addr)
    if load_addr > header_addr or file_start < 0:
        raise LoadError(
            f"multiboot a.out kludge: load_addr {load_addr:#x} does not lie within the file before "
            f"header_addr {header_addr:#x}"
        )
    load_end = load_end_addr or load_addr + len(data) - file_start
    if load_end < load_addr:
        raise LoadError(f"multiboot a.out kludge: load_end_addr {load_end:#x} is below load_addr {load_addr:#x}")
    if bss_end_addr and bss_end_addr < load_end:
        raise LoadError(f"multiboot a.out kludge: bss_end_addr {bss_end_addr:#x} is below load_end_addr {load_end:#x}")
    filesz = load_end - load_addr
    if file_start + filesz > len(data):
        raise LoadError(
            f"truncated image: a.out kludge load range ends at file offset {file_start + filesz:#x}, "
            f"past the end of the file ({len(data):#x} bytes)"
        )
    return entry_addr, Segment(load_addr, file_start, filesz, (bss_end_addr or load_end) - load_addr)


def _elf_layout(data: bytes) -> tuple[int, int, list[Segment]]:
    """``(class bits, physical entry, PT_LOAD segments)`` of an image that starts with the ELF magic."""
    if len(data) < ELF_IDENT_SIZE:
        raise LoadError(f"truncated ELF header: the file has only {len(data)} bytes")
    bits = ELF_CLASSES.get(data[4])
    if bits is None:
        raise LoadError(f"unsupported ELF class {data[4]} (expected 1 = ELF32 or 2 = ELF64)")
    if len(data) < ELF_HEADER_SIZE[bits]:
        raise LoadError(
            f"truncated ELF header: the file has {len(data)} bytes, the ELF{bits} header needs {ELF_HEADER_SIZE[bits]}"
        )
    if data[5] != ELF_LITTLE_ENDIAN:
        raise LoadError("ELF file is not little-endian: not an x86 kernel")
    headers = _read_elf_headers(data, bits) if ELFFile is None else None
    entry, loads = headers if headers is not None else _pyelftools_headers(data, bits)
    if not loads:
        raise LoadError("no PT_LOAD segment with memory to load: nothing to run")
    segments = []
    for index, phdr in loads:
        if phdr.p_filesz > phdr.p_memsz:
            raise LoadError(
                f"program header {index}: p_filesz {phdr.p_filesz:#x} is larger than p_memsz {phdr.p_memsz:#x}"
            )
        if phdr.p_offset + phdr.p_filesz > len(data):
            raise LoadError(
                f"truncated ELF: program header {index} data ends at {phdr.p_offset + phdr.p_filesz:#x}, "
                f"past the end of the file ({len(data):#x} bytes)"
            )
        segments.append(Segment(phdr.p_paddr, phdr.p_offset, phdr.p_filesz, phdr.p_memsz))
    for _, phdr in loads:
        if phdr.p_vaddr <= entry < phdr.p_vaddr + phdr.p_memsz:
            return bits, entry - phdr.p_vaddr + phdr.p_paddr, segments
    return bits, entry, segments


class _Phdr(NamedTuple):
    p_offset: int
    p_vaddr: int
    p_paddr: int
    p_filesz: int
    p_memsz: int


def _read_elf_headers(data: bytes, bits: int) -> tuple[int, list[tuple[int, _Phdr]]] | None:
    """``(e_entry, [(index, PT_LOAD header with memory)])`` read with struct, or None where pyelftools
    must decide (the wrong machine, whose name it gives; PN_XNUM program headers; a PT_DYNAMIC, whose
    section lookup can fail): on everything it accepts, the same answer and errors as
    :func:`_pyelftools_headers`, without importing pyelftools (~20 ms of a CLI run)."""
    (_, machine, _, entry, phoff, _, _, _, phentsize, phnum, _, _, _) = struct.unpack_from(
        ELF_HEADER_FIELDS[bits], data, ELF_IDENT_SIZE)
    if machine != ELF_MACHINE_NUMBER[bits] or phnum >= PN_XNUM:
        return None
    _check_phdr_table(phoff, phnum, phentsize, bits, len(data))
    fields = ELF_PHDR_FIELDS[bits]
    loads = []
    for index in range(phnum):
        values = struct.unpack_from(fields, data, phoff + index * phentsize)
        if bits == 32:
            p_type, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _, _ = values
        else:
            p_type, _, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = values
        if p_type == PT_DYNAMIC:
            return None
        if p_type == PT_LOAD and p_memsz > 0:
            loads.append((index, _Phdr(p_offset, p_vaddr, p_paddr, p_filesz, p_memsz)))
    return entry, loads


def _pyelftools_headers(data: bytes, bits: int) -> tuple[int, list]:
    """``(e_entry, [(index, PT_LOAD header with memory)])`` as pyelftools parses them."""
    from elftools.common.exceptions import ELFError

    elffile = ELFFile
    if elffile is None:
        from elftools.elf.elffile import ELFFile as elffile
    try:
        elf = elffile(io.BytesIO(data))
        machine = elf["e_machine"]
        if machine != ELF_MACHINE[bits]:
            raise LoadError(f"ELF{bits} image is for machine {machine}; expected {ELF_MACHINE[bits]}")
        _check_phdr_table(elf["e_phoff"], elf["e_phnum"], elf["e_phentsize"], bits, len(data))
        loads = [
            (index, phdr.header)
            for index, phdr in enumerate(elf.iter_segments())
            if phdr["p_type"] == "PT_LOAD" and phdr["p_memsz"] > 0
        ]
        return elf["e_entry"], loads
    except ELFError as error:
        raise LoadError(f"malformed ELF: {error}") from None


def _check_phdr_table(phoff: int, phnum: int, phentsize: int, bits: int, size: int) -> None:
    if phnum and phentsize != ELF_PHDR_SIZE[bits]:
        raise LoadError(f"ELF program header size is {phentsize}; ELF{bits} uses {ELF_PHDR_SIZE[bits]}")
    phdrs_end = phoff + phnum * phentsize
    if phdrs_end > size:
        raise LoadError(
            f"truncated ELF: program headers end at {phdrs_end:#x}, past the end of the file ({size:#x} bytes)"
        )


def _check_placement(what: str, start: int, end: int, ram_size: int, windows: list[Window]) -> None:
    for window in windows:
        if start < window.end and window.start < end:
            raise LoadError(f"{what} ({describe_range(start, end)}) overlaps the {window}")
    if end > ram_size:
        raise LoadError(f"{what} ({describe_range(start, end)}) is outside guest RAM (0x0-{ram_size - 1:#x})")


def _write_mbi(ram: memoryview, cmdline: bytes, module: Window | None) -> None:
    ram[MBI_ADDRESS:MBI_AREA_END] = bytes(MBI_AREA_END - MBI_ADDRESS)
    flags = MBI_FLAG_MEM | MBI_FLAG_CMDLINE | MBI_FLAG_MODS
    mem_upper = len(ram) // 1024 - 1024
    # flags, mem_lower, mem_upper, boot_device (flag bit 1 clear: unused), cmdline, mods_count, mods_addr
    struct.pack_into(
        "<7I", ram, MBI_ADDRESS, flags, MEM_LOWER_KIB, mem_upper, 0, CMDLINE_ADDRESS, module is not None, MODS_ADDRESS
    )
    ram[CMDLINE_ADDRESS : CMDLINE_ADDRESS + len(cmdline)] = cmdline  # the NUL is already there
    if module is not None:
        name_address = MODS_ADDRESS + 16
        struct.pack_into("<4I", ram, MODS_ADDRESS, module.start, module.end, name_address, 0)
        ram[name_address : name_address + len(MODULE_NAME)] = MODULE_NAME


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment
