# SPDX-License-Identifier: GPL-2.0-or-later
"""Linux boot structures: a bzImage through the 64-bit boot protocol, the PVH start info, the E820 map.

Pure functions on guest RAM (a writable buffer indexed by physical address); the caller chooses where
the boot structures go.  Written from the Linux x86 boot protocol (Documentation/arch/x86/boot.rst,
zero-page.rst) and the Xen PVH start-info ABI (xen/include/public/arch-x86/hvm/start_info.h).

**bzImage** (:func:`is_bzimage`, :func:`parse_bzimage`, :func:`load_bzimage`).  The setup header
(boot flag 0xAA55 at 0x1FE, "HdrS" at 0x202) must declare protocol 2.12 or later with a 64-bit entry
point (xloadflags XLF_KERNEL_64) and LOADED_HIGH.  The protected-mode code, the ``syssize`` x 16
bytes after the ``(setup_sects + 1)`` x 512 bytes of real-mode setup, goes to the kernel's preferred
address (``pref_address``) when ``init_size`` bytes from there are usable RAM; a relocatable kernel
otherwise goes to the lowest ``kernel_alignment``-aligned address above 1 MiB that has room.  The
initrd goes to the highest page-aligned address that keeps it in usable RAM, above the kernel's
``init_size`` region, below ``initrd_addr_max``, the caller's ceiling and the end of RAM, and clear
of the zero page and command line.  The zero page (struct boot_params, 4 KiB) starts zeroed and gets:
the image's setup header at 0x1F1 (its end is 0x202 + the byte at 0x201), then type_of_loader 0xFF
(no assigned id), loadflags | CAN_USE_HEAP, code32_start = load address, ramdisk_image/size,
heap_end_ptr, cmd_line_ptr (with their ext_* high halves at 0x0C0-0x0CB), acpi_rsdp_addr (0x070,
read by protocol 2.14+ kernels, when the caller has an RSDP), e820_entries (0x1E8) and the E820 table
(0x2D0, at most 128 entries).  Nothing else is filled in: no screen_info (no video), no EDD, no EFI,
no setup_data.

Entry state the caller must provide for a bzImage (boot.rst, "64-bit boot protocol"): long mode with
paging, an identity map covering the kernel's ``init_size`` region, the zero page and the command line
(the VMM maps the first 4 GiB); a GDT with __BOOT_CS = 0x10 (flat 64-bit code, execute/read) and
__BOOT_DS = 0x18 (flat data, read/write); CS = 0x10, DS = ES = SS = 0x18; IF = 0; RSI = the zero
page's address (:attr:`LinuxBoot.boot_params_address`); RIP = :attr:`LinuxBoot.entry` (load address +
0x200).  The protocol asks for no stack; a valid RSP costs nothing and is the safer choice.

**PVH** (:func:`find_pvh_entry`, :func:`write_hvm_start_info`).  An ELF64 vmlinux whose PT_NOTE
segments (or, without any PT_NOTE, SHT_NOTE sections) hold a note named "Xen" of type
XEN_ELFNOTE_PHYS32_ENTRY (18) whose 4- or 8-byte descriptor is the 32-bit physical entry point.
Loading its PT_LOADs is vmm.loader's job.  The start info written is version 1 (with the memory map).
Entry state the caller must provide: 32-bit protected mode, paging off, flat 4 GiB CS (code) and
DS/ES/SS (data), IF = 0, EBX = the start info's address, EIP = the note's entry point.

**E820** (:func:`build_e820`): usable RAM minus the PC's legacy hole [0xA0000, 0x100000), the
caller's reserved windows (type 2) and optionally the ACPI tables' range (type 3).

The initrd can be any bytes (the kernel recognises and decompresses it).  Every refusal is a
:class:`~vmm.errors.LoadError` with one line naming the problem, raised before anything is written.

Not supported: the 16-bit and 32-bit boot protocols (the real-mode setup code is not loaded, so
heap_end_ptr only describes the documented layout), protocols before 2.12, zImage, EFI handover,
setup_data chains, placing the kernel or initrd above 4 GiB (even when XLF_CAN_BE_LOADED_ABOVE_4G
allows it), decompressing the payload (so the PVH note inside a bzImage is out of reach), PVH for
ELF32 images, and 8-byte-aligned note padding (notes are read with the 4-byte padding Linux and Xen
use).
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import struct
from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import NamedTuple

from vmm.errors import LoadError

PAGE_SIZE = 0x1000
HIGH_MEMORY = 0x100000  # 1 MiB: protected-mode kernels load at or above it
FOUR_GIB = 1 << 32

# --- setup header (boot.rst, "The real-mode kernel header") --------------------------------------
SECTOR_SIZE = 512
SETUP_HEADER_START = 0x1F1
SETUP_SECTS_OFFSET = 0x1F1
DEFAULT_SETUP_SECTS = 4  # "setup_sects 0 means 4"
SYSSIZE_OFFSET = 0x1F4  # protected-mode code size, in 16-byte paragraphs
SYSSIZE_UNIT = 16
BOOT_FLAG_OFFSET = 0x1FE
BOOT_FLAG = 0xAA55
JUMP_OFFSET_OFFSET = 0x201  # the setup header ends at 0x202 + this byte (the short jump over it)
HEADER_MAGIC_OFFSET = 0x202
HEADER_MAGIC = b"HdrS"
VERSION_OFFSET = 0x206
TYPE_OF_LOADER_OFFSET = 0x210
LOADFLAGS_OFFSET = 0x211
CODE32_START_OFFSET = 0x214
RAMDISK_IMAGE_OFFSET = 0x218
RAMDISK_SIZE_OFFSET = 0x21C
HEAP_END_PTR_OFFSET = 0x224
CMD_LINE_PTR_OFFSET = 0x228
INITRD_ADDR_MAX_OFFSET = 0x22C
KERNEL_ALIGNMENT_OFFSET = 0x230
RELOCATABLE_KERNEL_OFFSET = 0x234
XLOADFLAGS_OFFSET = 0x236
CMDLINE_SIZE_OFFSET = 0x238
PAYLOAD_OFFSET_OFFSET = 0x248
PAYLOAD_LENGTH_OFFSET = 0x24C
PREF_ADDRESS_OFFSET = 0x258
INIT_SIZE_OFFSET = 0x260
INIT_SIZE_END = 0x264  # protocol 2.10+ headers reach at least this far

MIN_PROTOCOL = 0x020C  # 2.12: xloadflags, hence XLF_KERNEL_64
LOADED_HIGH = 1 << 0
CAN_USE_HEAP = 1 << 7
XLF_KERNEL_64 = 1 << 0
LOADER_TYPE_UNDEFINED = 0xFF  # boot.rst: a boot loader without an assigned id writes 0xFF
# The real-mode setup's stack/heap end in boot.rst's memory layout (0xE000) minus 0x200, as the
# field is defined.  Only the 16-bit setup code reads it; the 64-bit entry skips that code.
HEAP_END_PTR = 0xE000 - 0x200
ENTRY_64_OFFSET = 0x200  # the 64-bit entry point, from the start of the protected-mode code

# --- zero page (zero-page.rst) -------------------------------------------------------------------
BOOT_PARAMS_SIZE = 0x1000
ACPI_RSDP_ADDR_OFFSET = 0x070
EXT_RAMDISK_IMAGE_OFFSET = 0x0C0
EXT_RAMDISK_SIZE_OFFSET = 0x0C4
EXT_CMD_LINE_PTR_OFFSET = 0x0C8
E820_ENTRIES_OFFSET = 0x1E8
E820_TABLE_OFFSET = 0x2D0
E820_TABLE_MAX = 128
E820_ENTRY_FORMAT = "<QQI"  # addr, size, type: packed
E820_ENTRY_SIZE = struct.calcsize(E820_ENTRY_FORMAT)  # 20
SETUP_HEADER_LIMIT = 0x290  # the zero page's next field (edd_mbr_sig_buffer) starts here

# --- E820 ----------------------------------------------------------------------------------------
E820_RAM = 1
E820_RESERVED = 2
E820_ACPI = 3
# VGA memory and option ROM space on a PC: never RAM, whatever backs it in the VMM.
LEGACY_HOLE = (0xA0000, 0x100000)

# --- PVH (xen/include/public/elfnote.h, arch-x86/hvm/start_info.h) --------------------------------
ELF_MAGIC = b"\x7fELF"
ELFCLASS64 = 2
ELFDATA2LSB = 1
ELF64_HEADER_SIZE = 64
ELF64_PHDR_SIZE = 56
ELF64_SHDR_SIZE = 64
PT_NOTE = 4
SHT_NOTE = 7
NOTE_HEADER_SIZE = 12  # namesz, descsz, type
NOTE_ALIGN = 4
XEN_NOTE_NAME = b"Xen"
XEN_ELFNOTE_PHYS32_ENTRY = 18

HVM_START_MAGIC = 0x336EC578
HVM_START_INFO_VERSION = 1  # version 1 adds memmap_paddr and memmap_entries
# magic, version, flags, nr_modules, modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr,
# memmap_entries, reserved
HVM_START_INFO_FORMAT = "<IIIIQQQQII"
HVM_START_INFO_SIZE = struct.calcsize(HVM_START_INFO_FORMAT)  # 56
HVM_MEMMAP_ENTRY_FORMAT = "<QQII"  # addr, size, type, reserved
HVM_MEMMAP_ENTRY_SIZE = struct.calcsize(HVM_MEMMAP_ENTRY_FORMAT)  # 24
HVM_MODLIST_ENTRY_FORMAT = "<QQQQ"  # paddr, size, cmdline_paddr, reserved
HVM_MODLIST_ENTRY_SIZE = struct.calcsize(HVM_MODLIST_ENTRY_FORMAT)  # 32


class MemoryRange(NamedTuple):
    """The guest-physical range ``[start, end)``."""

    start: int
    end: int

    @property
    def size(self) -> int:
        return self.end - self.start

    def overlaps(self, other: "MemoryRange") -> bool:
        return self.start < other.end and other.start < self.end

    def contains(self, other: "MemoryRange") -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"{self.start:#x}-{self.end - 1:#x}"


class E820Entry(NamedTuple):
    """One E820 memory map entry: ``size`` bytes from ``addr`` of ``type`` (E820_RAM, ...)."""

    addr: int
    size: int
    type: int

    @property
    def range(self) -> MemoryRange:
        return MemoryRange(self.addr, self.addr + self.size)


#: The PC's reserved windows below 1 MiB: the EBDA's last KiB and the VMM's firmware area (boot
#: structures, ACPI tables) where a BIOS would be.
PC_RESERVED_WINDOWS = (MemoryRange(0x9FC00, 0xA0000), MemoryRange(0xE0000, 0x100000))


class BzImage(NamedTuple):
    """The validated setup header of a bzImage: what loading it needs to know."""

    protocol: int  # e.g. 0x020F for 2.15
    header: bytes  # the setup header's bytes, from 0x1F1 to its end, copied into the zero page
    code_offset: int  # file offset of the protected-mode code: (setup_sects + 1) * 512
    code_size: int  # syssize * 16
    loadflags: int
    xloadflags: int
    relocatable: bool
    kernel_alignment: int
    preferred_address: int  # pref_address, or the default load address code32_start if that is 0
    init_size: int  # bytes the kernel needs from its load address before it reads the memory map
    initrd_addr_max: int  # highest address the initrd may occupy (inclusive)
    cmdline_size: int  # longest command line, without its NUL

    @property
    def protocol_version(self) -> str:
        return f"{self.protocol >> 8}.{self.protocol & 0xFF:02d}"


class LinuxBoot(NamedTuple):
    """Where a bzImage and its boot data went, and how to enter it (RIP = entry, RSI = zero page)."""

    entry: int
    boot_params_address: int
    kernel_range: MemoryRange  # load address to load address + init_size
    initrd_range: MemoryRange | None
    protocol_version: str  # e.g. "2.15"
    cmdline: str


# --- bzImage ---------------------------------------------------------------------------------------


def is_bzimage(image: bytes) -> bool:
    """Whether ``image`` carries a Linux setup header (boot flag and "HdrS" magic); nothing else is checked."""
    end = HEADER_MAGIC_OFFSET + len(HEADER_MAGIC)
    return (
        len(image) >= end
        and image[HEADER_MAGIC_OFFSET:end] == HEADER_MAGIC
        and _u16(image, BOOT_FLAG_OFFSET) == BOOT_FLAG
    )


def parse_bzimage(image: bytes) -> BzImage:
    """The setup header of ``image``, validated for loading through the 64-bit boot protocol."""
    if not is_bzimage(image):
        raise LoadError("not a bzImage: no boot flag 0xAA55 at 0x1FE and 'HdrS' setup header at 0x202")
    if len(image) < VERSION_OFFSET + 2:
        raise LoadError(f"truncated bzImage: {len(image)} bytes, the setup header's version is at {VERSION_OFFSET:#x}")
    header_end = HEADER_MAGIC_OFFSET + image[JUMP_OFFSET_OFFSET]
    protocol = _u16(image, VERSION_OFFSET)
    version = f"{protocol >> 8}.{protocol & 0xFF:02d}"
    if protocol < MIN_PROTOCOL:
        raise LoadError(f"bzImage boot protocol {version} is too old: the 64-bit entry needs 2.12 or later")
    if header_end < INIT_SIZE_END:
        raise LoadError(
            f"bzImage setup header ends at {header_end:#x}, before init_size: not a protocol {version} header"
        )
    if header_end > SETUP_HEADER_LIMIT:
        raise LoadError(
            f"bzImage setup header ends at {header_end:#x}, past the zero page's room for it ({SETUP_HEADER_LIMIT:#x})"
        )
    if len(image) < header_end:
        raise LoadError(f"truncated bzImage: {len(image)} bytes, the setup header ends at {header_end:#x}")

    loadflags = image[LOADFLAGS_OFFSET]
    xloadflags = _u16(image, XLOADFLAGS_OFFSET)
    if not xloadflags & XLF_KERNEL_64:
        raise LoadError("bzImage has no 64-bit entry point (xloadflags XLF_KERNEL_64 is clear)")
    if not loadflags & LOADED_HIGH:
        raise LoadError("zImage (loadflags LOADED_HIGH clear) is not supported: only bzImages load above 1 MiB")

    setup_sects = image[SETUP_SECTS_OFFSET] or DEFAULT_SETUP_SECTS
    code_offset = (setup_sects + 1) * SECTOR_SIZE
    code_size = _u32(image, SYSSIZE_OFFSET) * SYSSIZE_UNIT
    if code_size == 0:
        raise LoadError("bzImage has no protected-mode code (syssize is 0)")
    if code_offset + code_size > len(image):
        raise LoadError(
            f"truncated bzImage: protected-mode code ends at {code_offset + code_size:#x}, "
            f"past the end of the file ({len(image):#x} bytes)"
        )
    payload_offset, payload_length = _u32(image, PAYLOAD_OFFSET_OFFSET), _u32(image, PAYLOAD_LENGTH_OFFSET)
    if payload_offset + payload_length > code_size:
        raise LoadError(
            f"bzImage payload (offset {payload_offset:#x}, {payload_length:#x} bytes) runs past the "
            f"protected-mode code ({code_size:#x} bytes)"
        )

    relocatable = bool(image[RELOCATABLE_KERNEL_OFFSET])
    kernel_alignment = _u32(image, KERNEL_ALIGNMENT_OFFSET)
    if relocatable and (kernel_alignment < PAGE_SIZE or kernel_alignment & (kernel_alignment - 1)):
        raise LoadError(f"bzImage kernel_alignment {kernel_alignment:#x} is not a power of two of at least 4 KiB")
    # pref_address "if nonzero" is the preferred address; code32_start defaults to the load address.
    preferred_address = _u64(image, PREF_ADDRESS_OFFSET) or _u32(image, CODE32_START_OFFSET)
    if preferred_address < HIGH_MEMORY or preferred_address % PAGE_SIZE:
        raise LoadError(f"bzImage preferred load address {preferred_address:#x} is not a page above 1 MiB")
    init_size = _u32(image, INIT_SIZE_OFFSET)
    if init_size < code_size:
        raise LoadError(
            f"bzImage init_size {init_size:#x} is smaller than its protected-mode code ({code_size:#x} bytes)"
        )
    return BzImage(
        protocol=protocol,
        header=bytes(image[SETUP_HEADER_START:header_end]),
        code_offset=code_offset,
        code_size=code_size,
        loadflags=loadflags,
        xloadflags=xloadflags,
        relocatable=relocatable,
        kernel_alignment=kernel_alignment,
        preferred_address=preferred_address,
        init_size=init_size,
        initrd_addr_max=_u32(image, INITRD_ADDR_MAX_OFFSET),
        cmdline_size=_u32(image, CMDLINE_SIZE_OFFSET),
    )


def load_bzimage(
    ram: memoryview,
    image: bytes,
    *,
    boot_params_address: int,
    cmdline_address: int,
    e820: Sequence[E820Entry],
    cmdline: str = "",
    initrd: bytes | None = None,
    initrd_ceiling: int | None = None,
    rsdp_address: int = 0,
) -> LinuxBoot:
    """Validate, then load ``image``'s protected-mode code, the zero page, command line and initrd into ``ram``.

    ``e820`` is the memory map the kernel will see (see :func:`build_e820`); the kernel and initrd
    go only where it says usable RAM.  The zero page takes 4 KiB at ``boot_params_address``, the
    command line and its NUL go to ``cmdline_address``; both must be in RAM and clear of the kernel.
    ``initrd_ceiling`` (exclusive) lowers the initrd's limit, e.g. to keep it below a window the
    caller uses.  ``rsdp_address`` 0 means no RSDP is passed (the kernel then scans for it).
    """
    kernel = parse_bzimage(image)
    encoded_cmdline = _encode_cmdline(cmdline, kernel.cmdline_size)
    if len(e820) > E820_TABLE_MAX:
        raise LoadError(f"E820 map has {len(e820)} entries; the zero page holds at most {E820_TABLE_MAX}")
    usable = _usable_ranges(e820, len(ram))
    load_address = _place_kernel(kernel, usable)
    kernel_range = MemoryRange(load_address, load_address + kernel.init_size)

    boot_params_range = MemoryRange(boot_params_address, boot_params_address + BOOT_PARAMS_SIZE)
    cmdline_range = MemoryRange(cmdline_address, cmdline_address + len(encoded_cmdline))
    for what, placed in (("zero page", boot_params_range), ("command line", cmdline_range)):
        _check_in_ram(what, placed, len(ram))
        if placed.overlaps(kernel_range):
            raise LoadError(f"{what} ({placed}) overlaps the kernel's init_size region ({kernel_range})")
    if boot_params_range.overlaps(cmdline_range):
        raise LoadError(f"command line ({cmdline_range}) overlaps the zero page ({boot_params_range})")

    code = image[kernel.code_offset : kernel.code_offset + kernel.code_size]
    writes = [(MemoryRange(load_address, load_address + kernel.code_size), code)]
    initrd_range = None
    if initrd is not None:
        limits = [kernel.initrd_addr_max + 1, len(ram)] + ([initrd_ceiling] if initrd_ceiling is not None else [])
        initrd_range = _place_initrd(
            len(initrd), usable, floor=kernel_range.end, limit=min(limits), avoid=(boot_params_range, cmdline_range)
        )
        writes.append((initrd_range, initrd))
    writes.append((cmdline_range, encoded_cmdline))
    zero_page = _zero_page(kernel, load_address, cmdline_address, initrd_range, e820, rsdp_address)
    writes.append((boot_params_range, zero_page))
    for placed, data in writes:
        ram[placed.start : placed.end] = data
    return LinuxBoot(
        entry=load_address + ENTRY_64_OFFSET,
        boot_params_address=boot_params_address,
        kernel_range=kernel_range,
        initrd_range=initrd_range,
        protocol_version=kernel.protocol_version,
        cmdline=cmdline,
    )


def write_cmdline(ram: memoryview, address: int, cmdline: str, *, max_bytes: int) -> MemoryRange:
    """Write ``cmdline`` and its NUL at ``address``; ``max_bytes`` is the longest command line, NUL excluded."""
    encoded = _encode_cmdline(cmdline, max_bytes)
    placed = MemoryRange(address, address + len(encoded))
    _check_in_ram("command line", placed, len(ram))
    ram[placed.start : placed.end] = encoded
    return placed


def _encode_cmdline(cmdline: str, max_bytes: int) -> bytes:
    encoded = cmdline.encode()
    if b"\0" in encoded:
        raise LoadError("command line contains a NUL byte")
    if len(encoded) > max_bytes:
        raise LoadError(f"command line is {len(encoded)} bytes; the kernel accepts at most {max_bytes}")
    return encoded + b"\0"


def _usable_ranges(e820: Iterable[E820Entry], ram_size: int) -> list[MemoryRange]:
    """The E820 map's RAM entries, cut to the RAM that actually exists, lowest first."""
    ranges = (MemoryRange(entry.addr, min(entry.range.end, ram_size)) for entry in e820 if entry.type == E820_RAM)
    return sorted(r for r in ranges if r.start < r.end)


def _place_kernel(kernel: BzImage, usable: list[MemoryRange]) -> int:
    preferred = MemoryRange(kernel.preferred_address, kernel.preferred_address + kernel.init_size)
    if any(region.contains(preferred) for region in usable):
        return preferred.start
    if kernel.relocatable:
        for region in usable:
            start = _align_up(max(region.start, HIGH_MEMORY), kernel.kernel_alignment)
            if start + kernel.init_size <= region.end:
                return start
        raise LoadError(
            f"kernel needs {kernel.init_size:#x} bytes of usable RAM (init_size) at a "
            f"{kernel.kernel_alignment:#x}-aligned address above 1 MiB; no usable region has room"
        )
    raise LoadError(f"non-relocatable kernel needs usable RAM at {preferred} (its address and init_size)")


def _place_initrd(
    size: int, usable: list[MemoryRange], *, floor: int, limit: int, avoid: Sequence[MemoryRange]
) -> MemoryRange:
    """The highest page-aligned ``size`` bytes of usable RAM in ``[floor, limit)`` that overlap nothing in ``avoid``."""
    if size == 0:
        raise LoadError("initrd is empty")
    for region in reversed(usable):
        lowest = max(region.start, floor)
        end = min(region.end, limit)
        while True:
            start = _align_down(end - size, PAGE_SIZE)
            if start < lowest:
                break
            candidate = MemoryRange(start, start + size)
            blockers = [other for other in avoid if other.overlaps(candidate)]
            if not blockers:
                return candidate
            end = min(blocker.start for blocker in blockers)  # try again just below the lowest one
    room = sum(max(0, min(r.end, limit) - max(r.start, floor)) for r in usable)
    raise LoadError(
        f"initrd is {size:#x} bytes, more than fits in usable RAM between the kernel's end {floor:#x} "
        f"and {limit:#x} ({room:#x} bytes there)"
    )


def _zero_page(
    kernel: BzImage,
    load_address: int,
    cmdline_address: int,
    initrd: MemoryRange | None,
    e820: Sequence[E820Entry],
    rsdp_address: int,
) -> bytes:
    page = bytearray(BOOT_PARAMS_SIZE)
    page[SETUP_HEADER_START : SETUP_HEADER_START + len(kernel.header)] = kernel.header
    page[TYPE_OF_LOADER_OFFSET] = LOADER_TYPE_UNDEFINED
    page[LOADFLAGS_OFFSET] = kernel.loadflags | CAN_USE_HEAP
    struct.pack_into("<I", page, CODE32_START_OFFSET, load_address)
    struct.pack_into("<H", page, HEAP_END_PTR_OFFSET, HEAP_END_PTR)
    # 64-bit addresses and sizes are split: low halves in the setup header, high halves in ext_*.
    ramdisk_image, ramdisk_size = (initrd.start, initrd.size) if initrd is not None else (0, 0)
    struct.pack_into("<I", page, RAMDISK_IMAGE_OFFSET, ramdisk_image % FOUR_GIB)
    struct.pack_into("<I", page, RAMDISK_SIZE_OFFSET, ramdisk_size % FOUR_GIB)
    struct.pack_into("<I", page, CMD_LINE_PTR_OFFSET, cmdline_address % FOUR_GIB)
    struct.pack_into("<I", page, EXT_RAMDISK_IMAGE_OFFSET, ramdisk_image // FOUR_GIB)
    struct.pack_into("<I", page, EXT_RAMDISK_SIZE_OFFSET, ramdisk_size // FOUR_GIB)
    struct.pack_into("<I", page, EXT_CMD_LINE_PTR_OFFSET, cmdline_address // FOUR_GIB)
    struct.pack_into("<Q", page, ACPI_RSDP_ADDR_OFFSET, rsdp_address)
    page[E820_ENTRIES_OFFSET] = len(e820)
    for index, entry in enumerate(e820):
        struct.pack_into(E820_ENTRY_FORMAT, page, E820_TABLE_OFFSET + index * E820_ENTRY_SIZE, *entry)
    return bytes(page)


# --- E820 ------------------------------------------------------------------------------------------


def build_e820(
    ram_size: int,
    reserved: Iterable[tuple[int, int]] = PC_RESERVED_WINDOWS,
    *,
    acpi: tuple[int, int] | None = None,
) -> list[E820Entry]:
    """The memory map of ``ram_size`` bytes of RAM from address 0, lowest address first.

    RAM is usable (type 1) except the legacy hole [0xA0000, 0x100000), which is left out, and the
    ``reserved`` windows (``[start, end)`` pairs, type 2; they must not overlap each other).  The
    ``acpi`` range (type 3) must lie either inside one reserved window (the firmware area holding the
    ACPI tables) or in RAM outside every window.  Adjacent pieces of one type are merged.
    """
    windows = sorted(MemoryRange(*window) for window in reserved)
    for window in windows:
        if window.start >= window.end:
            raise LoadError(f"reserved window {window.start:#x}-{window.end:#x} is empty")
    for lower, upper in pairwise(windows):
        if upper.overlaps(lower):
            raise LoadError(f"reserved windows {lower} and {upper} overlap")
    ram_pieces = [MemoryRange(0, min(ram_size, LEGACY_HOLE[0])), MemoryRange(LEGACY_HOLE[1], ram_size)]
    ram_pieces = [piece for piece in ram_pieces if piece.start < piece.end]
    layers = [(E820_RAM, ram_pieces), (E820_RESERVED, windows)]
    if acpi is not None:
        tables = MemoryRange(*acpi)
        if tables.start >= tables.end:
            raise LoadError(f"ACPI range {tables.start:#x}-{tables.end:#x} is empty")
        straddled = [window for window in windows if window.overlaps(tables) and not window.contains(tables)]
        if straddled:
            raise LoadError(f"ACPI range {tables} straddles the edge of reserved window {straddled[0]}")
        if not any(region.contains(tables) for region in ram_pieces + windows):
            raise LoadError(f"ACPI range {tables} is neither in RAM nor inside a reserved window")
        layers.append((E820_ACPI, [tables]))

    # Paint the layers in order (later ones win) over the elementary intervals between all edges.
    edges = sorted({edge for _, ranges in layers for piece in ranges for edge in piece})
    entries: list[E820Entry] = []
    for start, end in pairwise(edges):
        kind = None
        for layer_type, ranges in layers:
            if any(piece.start <= start and end <= piece.end for piece in ranges):
                kind = layer_type
        if kind is None:
            continue
        if entries and entries[-1].type == kind and entries[-1].range.end == start:
            entries[-1] = E820Entry(entries[-1].addr, end - entries[-1].addr, kind)
        else:
            entries.append(E820Entry(start, end - start, kind))
    return entries


# --- PVH -------------------------------------------------------------------------------------------


def find_pvh_entry(image: bytes) -> int | None:
    """The PVH entry point of an ELF64 image (its XEN_ELFNOTE_PHYS32_ENTRY note), or None.

    None: ``image`` is not a little-endian ELF64 file, or none of its notes is the PVH entry.
    LoadError: the ELF64 file's program or section header table, or a note in a searched
    PT_NOTE segment / SHT_NOTE section, runs past its container or the file; or the PVH note's
    descriptor is not 4 or 8 bytes, or holds an address that does not fit in 32 bits.
    """
    if len(image) < ELF64_HEADER_SIZE or image[:4] != ELF_MAGIC:
        return None
    if image[4] != ELFCLASS64 or image[5] != ELFDATA2LSB:
        return None
    containers = _note_containers(image)
    for start, size in containers:
        entry = _pvh_note_in(image, start, size)
        if entry is not None:
            return entry
    return None


def _note_containers(image: bytes) -> list[tuple[int, int]]:
    """``(file offset, size)`` of every PT_NOTE segment, or of every SHT_NOTE section if there is none."""
    phoff, shoff = struct.unpack_from("<QQ", image, 0x20)
    phentsize, phnum, shentsize, shnum = struct.unpack_from("<HHHH", image, 0x36)
    segments = [
        (offset, size)
        for p_type, offset, size in _table(image, "program", phoff, phnum, phentsize, ELF64_PHDR_SIZE, "<I4xQ16xQ")
        if p_type == PT_NOTE
    ]
    if segments:
        return segments
    return [
        (offset, size)
        for sh_type, offset, size in _table(image, "section", shoff, shnum, shentsize, ELF64_SHDR_SIZE, "<4xI16xQQ")
        if sh_type == SHT_NOTE
    ]


def _table(image: bytes, kind: str, offset: int, count: int, entry_size: int, expected_size: int, fields: str):
    """``fields`` unpacked from each of the ``count`` entries of the ELF header table at ``offset``."""
    if count == 0:
        return []
    if entry_size != expected_size:
        raise LoadError(f"ELF64 {kind} header size is {entry_size}; expected {expected_size}")
    if offset + count * entry_size > len(image):
        raise LoadError(f"truncated ELF: the {kind} header table runs past the end of the file")
    return [struct.unpack_from(fields, image, offset + index * entry_size) for index in range(count)]


def _pvh_note_in(image: bytes, start: int, size: int) -> int | None:
    end = start + size
    if end > len(image):
        raise LoadError(f"truncated ELF: note data at {start:#x} runs past the end of the file")
    position = start
    while position < end:
        if end - position < NOTE_HEADER_SIZE:
            raise LoadError(f"truncated ELF note header at file offset {position:#x}")
        name_size, desc_size, note_type = struct.unpack_from("<III", image, position)
        name_start = position + NOTE_HEADER_SIZE
        desc_start = name_start + _align_up(name_size, NOTE_ALIGN)
        desc_end = desc_start + desc_size
        if desc_end > end:
            raise LoadError(f"ELF note at file offset {position:#x} runs past the end of its note area")
        name = image[name_start : name_start + name_size].rstrip(b"\0")
        if name == XEN_NOTE_NAME and note_type == XEN_ELFNOTE_PHYS32_ENTRY:
            return _pvh_entry_value(image[desc_start:desc_end])
        position = desc_start + _align_up(desc_size, NOTE_ALIGN)
    return None


def _pvh_entry_value(descriptor: bytes) -> int:
    if len(descriptor) not in (4, 8):
        raise LoadError(f"PVH entry note descriptor is {len(descriptor)} bytes; expected 4 or 8")
    entry = int.from_bytes(descriptor, "little")
    if entry >= FOUR_GIB:
        raise LoadError(f"PVH entry point {entry:#x} is not a 32-bit physical address")
    return entry


def write_hvm_start_info(
    ram: memoryview,
    address: int,
    *,
    cmdline_address: int,
    memmap: Sequence[E820Entry],
    modules: Sequence[tuple[int, int, int]] = (),
    rsdp_address: int = 0,
) -> int:
    """Write a version 1 hvm_start_info at ``address``, its memory map and module list after it.

    Layout: the 56-byte start info, then ``memmap`` (24 bytes per entry), then ``modules`` (32 bytes
    per ``(paddr, size, cmdline_paddr)`` entry).  Addresses of 0 mean "not present", as the ABI says:
    ``cmdline_address`` (the caller writes the string), ``rsdp_address``, a module's command line;
    modlist_paddr is 0 without modules.  Returns the first address after the module list.
    """
    if address % 8:
        raise LoadError(f"PVH start info address {address:#x} is not 8-byte aligned")
    if not memmap:
        raise LoadError("PVH start info needs a memory map: the kernel has no other way to find its RAM")
    memmap_address = address + HVM_START_INFO_SIZE
    modlist_address = memmap_address + len(memmap) * HVM_MEMMAP_ENTRY_SIZE
    end = modlist_address + len(modules) * HVM_MODLIST_ENTRY_SIZE
    _check_in_ram("PVH start info", MemoryRange(address, end), len(ram))

    data = struct.pack(
        HVM_START_INFO_FORMAT,
        HVM_START_MAGIC,
        HVM_START_INFO_VERSION,
        0,  # flags: none of the SIF_* flags apply to a VMM-built domain
        len(modules),
        modlist_address if modules else 0,
        cmdline_address,
        rsdp_address,
        memmap_address,
        len(memmap),
        0,
    )
    data += b"".join(struct.pack(HVM_MEMMAP_ENTRY_FORMAT, entry.addr, entry.size, entry.type, 0) for entry in memmap)
    data += b"".join(struct.pack(HVM_MODLIST_ENTRY_FORMAT, *module, 0) for module in modules)
    ram[address:end] = data
    return end


# --- helpers ---------------------------------------------------------------------------------------


def _check_in_ram(what: str, placed: MemoryRange, ram_size: int) -> None:
    if placed.end > ram_size:
        raise LoadError(f"{what} ({placed}) is outside guest RAM (0x0-{ram_size - 1:#x})")


def _u16(data: bytes, offset: int) -> int:
    return struct.unpack_from("<H", data, offset)[0]


def _u32(data: bytes, offset: int) -> int:
    return struct.unpack_from("<I", data, offset)[0]


def _u64(data: bytes, offset: int) -> int:
    return struct.unpack_from("<Q", data, offset)[0]


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


def _align_down(value: int, alignment: int) -> int:
    return value // alignment * alignment
