# SPDX-License-Identifier: GPL-2.0-or-later
"""The VMM's firmware area: where the boot structures live, out of the guest's way.

On a PC, 0xE0000-0xFFFFF is the BIOS area: no kernel loads there and the multiboot memory
fields (mem_lower = 640 KiB) and the Linux e820 map both tell the guest it is not usable RAM.
Everything the VMM writes before the first guest instruction lives here, so the whole of low
memory (0x0-0x9FFFF) and everything from 1 MiB up belongs to the guest.

======================= =================================================================
range                   what
======================= =================================================================
0xE0000 - 0xEFFFF       ACPI tables (RSDP first: inside the BIOS scan range Linux searches)
0xF0000                 GDT (null, 0x08 code64, 0x10 data, 0x18 code32)
0xF0040                 Linux GDT (null, null, 0x10 __BOOT_CS code64, 0x18 __BOOT_DS data)
0xF0080                 GDTR the trampoline loads (limit, base)
0xF0100                 trampoline parameter block (see firmware/trampoline.S)
0xF1000                 boot trampoline code
0xF2000 - 0xF7FFF       identity page tables for the first 4 GiB (PML4, PDPT, 4 PDs, 2 MiB pages)
0xF8000                 boot information: multiboot MBI, Linux zero page or PVH start info
0xF9000                 kernel command line (one page, NUL included)
0xFA000                 module list / PVH memory map and module list
0xFB000 - 0xFEFFF       boot stack (top 0xFF000)
======================= =================================================================

Not supported: RAM below 1 MiB smaller than this area (the machine needs at least 2 MiB).
"""

from __future__ import annotations

import struct

FIRMWARE_AREA_START = 0xE0000
FIRMWARE_AREA_END = 0x100000

ACPI_ADDRESS = 0xE0000
ACPI_LIMIT = 0xF0000
GDT_ADDRESS = 0xF0000
LINUX_GDT_ADDRESS = 0xF0040
GDTR_ADDRESS = 0xF0080
PARAMS_ADDRESS = 0xF0100
TRAMPOLINE_ADDRESS = 0xF1000
PML4_ADDRESS = 0xF2000
BOOT_INFO_ADDRESS = 0xF8000
CMDLINE_ADDRESS = 0xF9000
MODULES_ADDRESS = 0xFA000
BOOT_STACK_TOP = 0xFF000
PAGE_SIZE = 0x1000

# Selectors of the two GDTs: our kernels' (multiboot and plain ELF64) and the Linux boot protocol's.
GDT = (0, 0x00AF9A000000FFFF, 0x00CF92000000FFFF, 0x00CF9A000000FFFF)   # null, code64, data, code32
LINUX_GDT = (0, 0, 0x00AF9B000000FFFF, 0x00CF93000000FFFF)             # null, null, __BOOT_CS, __BOOT_DS

# Entry modes the trampoline understands (parameter block "mode").
MODE_ELF64 = 64         # long mode, RDI = boot info, RSI = multiboot magic
MODE_PROTECTED32 = 32   # 32-bit protected mode, paging off, EAX = multiboot magic, EBX = boot info
MODE_LINUX64 = 0x4C     # Linux 64-bit boot protocol: long mode with the Linux GDT, RSI = zero page


def write_boot_structures(ram, trampoline: bytes) -> None:
    """GDTs, the identity map and the trampoline: the parts that do not depend on the kernel."""
    struct.pack_into("<4Q", ram, GDT_ADDRESS, *GDT)
    struct.pack_into("<4Q", ram, LINUX_GDT_ADDRESS, *LINUX_GDT)
    pdpt, pds = PML4_ADDRESS + PAGE_SIZE, PML4_ADDRESS + 2 * PAGE_SIZE
    struct.pack_into("<Q", ram, PML4_ADDRESS, pdpt | 3)
    for i in range(4):
        struct.pack_into("<Q", ram, pdpt + 8 * i, (pds + PAGE_SIZE * i) | 3)
    struct.pack_into("<2048Q", ram, pds, *(((i << 21) | 0x83) for i in range(2048)))
    if len(trampoline) > PML4_ADDRESS - TRAMPOLINE_ADDRESS:
        raise ValueError(f"trampoline is {len(trampoline)} bytes: it does not fit its page")
    ram[TRAMPOLINE_ADDRESS:TRAMPOLINE_ADDRESS + len(trampoline)] = trampoline


def write_entry_parameters(ram, *, entry: int, boot_info: int, mode: int) -> None:
    """The parameter block the trampoline reads: GDT for ``mode``, entry point, boot info, stack."""
    gdt, entries = (LINUX_GDT_ADDRESS, LINUX_GDT) if mode == MODE_LINUX64 else (GDT_ADDRESS, GDT)
    struct.pack_into("<HQ", ram, GDTR_ADDRESS, len(entries) * 8 - 1, gdt)
    struct.pack_into("<QQQI", ram, PARAMS_ADDRESS, entry, boot_info, BOOT_STACK_TOP, mode)
