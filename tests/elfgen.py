# SPDX-License-Identifier: GPL-2.0-or-later
"""A tiny ELF writer for loader tests: an ELF32 or ELF64 header, program headers and segment data.

Segment data follows the program headers in order, each at a 16-byte aligned file offset, so a
multiboot header at the start of the first segment lands well inside the first 8 KiB.  Tests
corrupt the result with :func:`patch` to produce malformed images.

Not a general ELF writer: little-endian only, no section headers (e_shnum = 0), no symbols.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PT_LOAD = 1
PT_NOTE = 4
EM_386 = 3
EM_X86_64 = 62
PF_RWX = 7

HEADER_FORMAT = {32: "<16sHHIIIIIHHHHHH", 64: "<16sHHIQQQIHHHHHH"}
PHDR_FORMAT = {32: "<8I", 64: "<IIQQQQQQ"}
HEADER_SIZE = {bits: struct.calcsize(fmt) for bits, fmt in HEADER_FORMAT.items()}
PHDR_SIZE = {bits: struct.calcsize(fmt) for bits, fmt in PHDR_FORMAT.items()}
DEFAULT_MACHINE = {32: EM_386, 64: EM_X86_64}

MULTIBOOT_MAGIC = 0x1BADB002
MULTIBOOT_AOUT_KLUDGE = 1 << 16


@dataclass
class Seg:
    """One program header and its bytes; ``memsz`` defaults to ``len(data)``, ``vaddr`` to ``paddr``."""

    paddr: int
    data: bytes = b""
    memsz: int | None = None
    vaddr: int | None = None
    type: int = PT_LOAD


def build_elf(segments: list[Seg], *, entry: int, bits: int = 64, machine: int | None = None) -> bytes:
    """An executable ELF image holding ``segments``."""
    phoff = HEADER_SIZE[bits]
    data_start = phoff + len(segments) * PHDR_SIZE[bits]
    phdrs, body = b"", bytearray()
    for seg in segments:
        body += bytes(-(data_start + len(body)) % 16)
        offset = data_start + len(body)
        body += seg.data
        memsz = len(seg.data) if seg.memsz is None else seg.memsz
        vaddr = seg.paddr if seg.vaddr is None else seg.vaddr
        if bits == 32:
            fields = (seg.type, offset, vaddr, seg.paddr, len(seg.data), memsz, PF_RWX, 16)
        else:
            fields = (seg.type, PF_RWX, offset, vaddr, seg.paddr, len(seg.data), memsz, 16)
        phdrs += struct.pack(PHDR_FORMAT[bits], *fields)
    ident = b"\x7fELF" + bytes([bits // 32, 1, 1]) + bytes(9)
    header = struct.pack(
        HEADER_FORMAT[bits],
        ident,
        2,  # ET_EXEC
        DEFAULT_MACHINE[bits] if machine is None else machine,
        1,
        entry,
        phoff,
        0,
        0,
        HEADER_SIZE[bits],
        PHDR_SIZE[bits],
        len(segments),
        0,
        0,
        0,
    )
    return header + phdrs + bytes(body)


def multiboot_header(flags: int = 0, *, aout: tuple[int, int, int, int, int] | None = None, checksum=None) -> bytes:
    """A multiboot v1 header; ``aout`` = (header_addr, load_addr, load_end_addr, bss_end_addr, entry_addr)."""
    if aout is not None:
        flags |= MULTIBOOT_AOUT_KLUDGE
    if checksum is None:
        checksum = -(MULTIBOOT_MAGIC + flags) & 0xFFFFFFFF
    header = struct.pack("<3I", MULTIBOOT_MAGIC, flags, checksum)
    return header + (struct.pack("<5I", *aout) if aout is not None else b"")


def patch(image: bytes, offset: int, fmt: str, *values) -> bytes:
    """``image`` with ``values`` packed (little-endian ``fmt``) over the bytes at ``offset``."""
    patched = bytearray(image)
    struct.pack_into("<" + fmt, patched, offset, *values)
    return bytes(patched)


def phdr_offset(bits: int, index: int) -> int:
    """File offset of program header ``index`` in an image from :func:`build_elf`."""
    return HEADER_SIZE[bits] + index * PHDR_SIZE[bits]
