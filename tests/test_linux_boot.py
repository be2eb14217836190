# SPDX-License-Identifier: GPL-2.0-or-later
"""Linux boot: bzImage loading and the zero page byte for byte, E820, PVH notes and start info,
and the guest's assets (cpio writer, initramfs layout, /init's command-line convention, test programs).

Offsets in these tests are written out from the documentation (boot.rst, zero-page.rst,
start_info.h) rather than taken from vmm.linux_boot, so a wrong constant there shows up here.
"""

import gzip
import os
import stat
import struct
import subprocess
from pathlib import Path

import pytest
from capstone import CS_ARCH_X86, CS_GRP_JUMP, CS_MODE_64, Cs
from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_X86, UC_HOOK_CODE, UC_HOOK_INSN, UC_MODE_64, Uc
from unicorn import x86_const as uxc

from firmware.linux import assets, initramfs, programs
from tests.elfgen import PT_NOTE, Seg, build_elf, patch, phdr_offset
from tests.linux_guest import require_linux_assets
from vmm.errors import LoadError
from vmm.linux_boot import (
    E820Entry,
    MemoryRange,
    build_e820,
    find_pvh_entry,
    is_bzimage,
    load_bzimage,
    parse_bzimage,
    write_cmdline,
    write_hvm_start_info,
)

MiB = 1 << 20
RAM_SIZE = 16 * MiB
FILLER = 0xAA  # RAM starts dirty so that what is (not) written shows
PREF = 0x400000
ALIGN = 0x200000
INIT_SIZE = 0x300000
BOOT_PARAMS = 0x7000
CMDLINE_AT = 0x9000
CODE = bytes((7 * i + 3) % 256 for i in range(0x3000))  # protected-mode code: a multiple of 16 bytes
PC_E820 = [
    E820Entry(0, 0x9FC00, 1),
    E820Entry(0x9FC00, 0x400, 2),
    E820Entry(0xE0000, 0x20000, 2),
    E820Entry(0x100000, RAM_SIZE - 0x100000, 1),
]


@pytest.fixture
def ram():
    return memoryview(bytearray([FILLER]) * RAM_SIZE)


def make_bzimage(
    *,
    setup_sects=4,
    protocol=0x020F,
    header_end=0x26C,
    loadflags=0x01,
    xloadflags=0x01,
    relocatable=1,
    kernel_alignment=ALIGN,
    pref_address=PREF,
    init_size=INIT_SIZE,
    initrd_addr_max=0x7FFFFFFF,
    cmdline_size=255,
    code=CODE,
    syssize=None,
    payload=(0x100, 0x200),
):
    """A bzImage: real-mode setup sectors full of a byte pattern with the setup header fields set, then ``code``."""
    setup_size = ((setup_sects or 4) + 1) * 512
    image = bytearray(bytes(range(256)) * (setup_size // 256))
    fields = [
        (0x1F1, "B", setup_sects),
        (0x1F4, "I", len(code) // 16 if syssize is None else syssize),
        (0x1FE, "H", 0xAA55),
        (0x200, "BB", 0xEB, header_end - 0x202),  # jmp short over the header
        (0x202, "4s", b"HdrS"),
        (0x206, "H", protocol),
        (0x210, "B", 0),  # type_of_loader
        (0x211, "B", loadflags),
        (0x214, "I", 0x100000),  # code32_start
        (0x218, "II", 0, 0),  # ramdisk_image, ramdisk_size
        (0x224, "H", 0),  # heap_end_ptr
        (0x228, "I", 0),  # cmd_line_ptr
        (0x22C, "I", initrd_addr_max),
        (0x230, "I", kernel_alignment),
        (0x234, "BB", relocatable, 21),  # relocatable_kernel, min_alignment
        (0x236, "H", xloadflags),
        (0x238, "I", cmdline_size),
        (0x248, "II", *payload),
        (0x258, "Q", pref_address),
        (0x260, "I", init_size),
    ]
    for offset, fmt, *values in fields:
        struct.pack_into("<" + fmt, image, offset, *values)
    return bytes(image) + code


def load(ram, image=None, **kwargs):
    kwargs.setdefault("boot_params_address", BOOT_PARAMS)
    kwargs.setdefault("cmdline_address", CMDLINE_AT)
    kwargs.setdefault("e820", PC_E820)
    return load_bzimage(ram, make_bzimage() if image is None else image, **kwargs)


def refused(ram, match, image=None, **kwargs):
    before = bytes(ram)
    with pytest.raises(LoadError, match=match) as caught:
        load(ram, image, **kwargs)
    assert "\n" not in str(caught.value)
    assert bytes(ram) == before  # validation comes before any write
    return str(caught.value)


def u32(ram, address):
    return struct.unpack_from("<I", ram, address)[0]


# --- bzImage: where things go ------------------------------------------------------------------


def test_is_bzimage_needs_the_boot_flag_and_the_magic():
    image = make_bzimage()
    assert is_bzimage(image)
    assert not is_bzimage(image[:0x205])
    assert not is_bzimage(patch(image, 0x1FE, "H", 0))
    assert not is_bzimage(patch(image, 0x202, "4s", b"HdrT"))
    assert not is_bzimage(build_elf([Seg(0x100000, CODE)], entry=0x100000))


def test_parse_reports_the_header():
    kernel = parse_bzimage(make_bzimage(init_size=0x345000, cmdline_size=2047))
    assert kernel.protocol_version == "2.15"
    assert (kernel.code_offset, kernel.code_size) == (5 * 512, len(CODE))
    assert (kernel.preferred_address, kernel.init_size, kernel.kernel_alignment) == (PREF, 0x345000, ALIGN)
    assert kernel.relocatable and kernel.cmdline_size == 2047 and kernel.initrd_addr_max == 0x7FFFFFFF


def test_code_goes_to_the_preferred_address_and_entry_is_0x200_in(ram):
    boot = load(ram, cmdline="console=ttyS0")
    assert bytes(ram[PREF : PREF + len(CODE)]) == CODE
    assert ram[PREF + len(CODE)] == FILLER  # only syssize x 16 bytes are loaded
    assert boot.entry == PREF + 0x200
    assert boot.boot_params_address == BOOT_PARAMS
    assert boot.kernel_range == MemoryRange(PREF, PREF + INIT_SIZE)
    assert boot.initrd_range is None
    assert (boot.protocol_version, boot.cmdline) == ("2.15", "console=ttyS0")


def test_zero_page_is_the_setup_header_plus_the_loader_fields(ram):
    image = make_bzimage()
    initrd = b"initrd contents"
    boot = load(ram, image, cmdline="console=ttyS0", initrd=initrd, rsdp_address=0xE0000)
    expected = bytearray(0x1000)
    expected[0x1F1:0x26C] = image[0x1F1:0x26C]
    expected[0x210] = 0xFF  # type_of_loader: undefined
    expected[0x211] = 0x81  # loadflags: LOADED_HIGH kept, CAN_USE_HEAP
    struct.pack_into("<I", expected, 0x214, PREF)  # code32_start
    struct.pack_into("<II", expected, 0x218, boot.initrd_range.start, len(initrd))
    struct.pack_into("<H", expected, 0x224, 0xDE00)  # heap_end_ptr
    struct.pack_into("<I", expected, 0x228, CMDLINE_AT)
    struct.pack_into("<Q", expected, 0x070, 0xE0000)  # acpi_rsdp_addr
    expected[0x1E8] = len(PC_E820)
    for index, entry in enumerate(PC_E820):
        struct.pack_into("<QQI", expected, 0x2D0 + 20 * index, entry.addr, entry.size, entry.type)
    assert bytes(ram[BOOT_PARAMS : BOOT_PARAMS + 0x1000]) == bytes(expected)
    assert ram[BOOT_PARAMS + 0x1000] == FILLER


def test_setup_header_length_comes_from_the_byte_at_0x201(ram):
    image = make_bzimage(header_end=0x268)
    load(ram, image)
    zero_page = bytes(ram[BOOT_PARAMS : BOOT_PARAMS + 0x1000])
    assert zero_page[0x264:0x268] == image[0x264:0x268]
    assert image[0x268:0x26C] != bytes(4)
    assert zero_page[0x268:0x290] == bytes(0x28)


def test_setup_sects_zero_means_four(ram):
    image = make_bzimage(setup_sects=0)
    assert parse_bzimage(image).code_offset == 5 * 512
    load(ram, image)
    assert bytes(ram[PREF : PREF + len(CODE)]) == CODE


def test_command_line_is_written_with_its_nul(ram):
    load(ram, cmdline="console=ttyS0 panic=-1")
    assert bytes(ram[CMDLINE_AT : CMDLINE_AT + 23]) == b"console=ttyS0 panic=-1\0"
    assert ram[CMDLINE_AT + 23] == FILLER


def test_command_line_up_to_cmdline_size_fits(ram):
    load(ram, make_bzimage(cmdline_size=16), cmdline="x" * 16)
    assert bytes(ram[CMDLINE_AT : CMDLINE_AT + 17]) == b"x" * 16 + b"\0"


def test_initrd_goes_to_the_highest_page_of_ram(ram):
    initrd = bytes(range(256)) * 24 + b"!"  # 0x1801 bytes: two pages, the last one partly
    boot = load(ram, initrd=initrd)
    assert boot.initrd_range == MemoryRange(RAM_SIZE - 0x2000, RAM_SIZE - 0x2000 + 0x1801)
    assert bytes(ram[RAM_SIZE - 0x2000 : RAM_SIZE - 0x2000 + 0x1801]) == initrd
    assert u32(ram, BOOT_PARAMS + 0x218) == RAM_SIZE - 0x2000
    assert u32(ram, BOOT_PARAMS + 0x21C) == 0x1801


def test_initrd_stays_below_the_callers_ceiling_and_initrd_addr_max(ram):
    assert load(ram, initrd=b"x" * 0x1801, initrd_ceiling=0xC00000).initrd_range.start == 0xC00000 - 0x2000
    image = make_bzimage(initrd_addr_max=0x9FFFFF)  # the last byte the initrd may occupy
    assert load(ram, image, initrd=b"x" * 0x1801).initrd_range.start == 0xA00000 - 0x2000


def test_initrd_stays_clear_of_a_zero_page_and_command_line_in_high_ram(ram):
    boot = load(ram, initrd=b"x" * 0x1801, boot_params_address=RAM_SIZE - 0x1000, cmdline_address=RAM_SIZE - 0x1800)
    assert boot.initrd_range.start == RAM_SIZE - 0x4000


def test_initrd_stays_in_usable_ram(ram):
    e820 = build_e820(RAM_SIZE, [(0x9FC00, 0xA0000), (0xE0000, 0x100000), (RAM_SIZE - MiB, RAM_SIZE)])
    assert load(ram, initrd=b"x", e820=e820).initrd_range.start == RAM_SIZE - MiB - 0x1000


def test_initrd_filling_all_ram_above_the_kernel_fits_and_one_byte_more_does_not(ram):
    room = RAM_SIZE - (PREF + INIT_SIZE)
    assert load(ram, initrd=bytes(room)).initrd_range == MemoryRange(PREF + INIT_SIZE, RAM_SIZE)
    message = refused(ram, r"^initrd is 0x", initrd=bytes(room + 1))
    assert f"{room:#x} bytes there" in message


def test_empty_initrd_is_refused(ram):
    refused(ram, "initrd is empty", initrd=b"")


def test_relocatable_kernel_moves_to_the_lowest_aligned_address_with_room(ram):
    # A reserved page at the preferred address; below it [1 MiB, 4 MiB) is too small for 3 MiB at
    # a 2 MiB boundary, so the kernel goes to the first 2 MiB boundary after the page: 6 MiB.
    e820 = build_e820(RAM_SIZE, [(0x9FC00, 0xA0000), (0xE0000, 0x100000), (PREF, PREF + 0x1000)])
    boot = load(ram, e820=e820)
    assert boot.kernel_range == MemoryRange(0x600000, 0x600000 + INIT_SIZE)
    assert boot.entry == 0x600200
    assert bytes(ram[0x600000 : 0x600000 + len(CODE)]) == CODE
    assert u32(ram, BOOT_PARAMS + 0x214) == 0x600000  # code32_start follows the load address


def test_non_relocatable_kernel_must_fit_at_its_address(ram):
    e820 = build_e820(RAM_SIZE, [(0x9FC00, 0xA0000), (0xE0000, 0x100000), (PREF, PREF + 0x1000)])
    refused(ram, "non-relocatable kernel needs usable RAM at 0x400000-0x6fffff", make_bzimage(relocatable=0), e820=e820)


def test_kernel_bigger_than_ram_is_refused(ram):
    refused(ram, r"kernel needs 0x1000000 bytes of usable RAM", make_bzimage(init_size=RAM_SIZE))


# --- bzImage: refusals ----------------------------------------------------------------------------

REFUSED_IMAGES = {
    "too short to have a header": (b"\0" * 0x100, "not a bzImage"),
    "no magic": (patch(make_bzimage(), 0x202, "4s", b"HdrX"), "not a bzImage"),
    "no boot flag": (patch(make_bzimage(), 0x1FE, "H", 0x55AA), "not a bzImage"),
    "protocol 2.11": (make_bzimage(protocol=0x020B), r"boot protocol 2\.11 is too old: .* needs 2\.12"),
    "no 64-bit entry": (make_bzimage(xloadflags=0x02), "no 64-bit entry point"),
    "zImage": (make_bzimage(loadflags=0x80), "zImage"),
    "truncated in the setup": (make_bzimage()[:0x800], "truncated bzImage: protected-mode code ends at"),
    "truncated in the code": (make_bzimage()[:-16], "truncated bzImage: protected-mode code ends at 0x3a00"),
    "syssize 0": (make_bzimage(syssize=0), r"no protected-mode code \(syssize is 0\)"),
    "payload past the code": (make_bzimage(payload=(0x2F00, 0x101)), "payload .* runs past"),
    "init_size below the code": (make_bzimage(init_size=0x2FF0), "init_size 0x2ff0 is smaller"),
    "odd kernel_alignment": (make_bzimage(kernel_alignment=0x3000), "kernel_alignment 0x3000"),
    "load address below 1 MiB": (make_bzimage(pref_address=0x80000), "preferred load address 0x80000"),
    "header too long": (make_bzimage(header_end=0x2A0), "past the zero page's room"),
    "header too short": (make_bzimage(header_end=0x250), "before init_size"),
}


@pytest.mark.parametrize("image, match", REFUSED_IMAGES.values(), ids=REFUSED_IMAGES.keys())
def test_bad_images_are_refused(ram, image, match):
    refused(ram, match, image)


def test_truncated_header_is_refused():
    with pytest.raises(LoadError, match="^truncated bzImage: 518 bytes, the setup header.s version is at 0x206$"):
        parse_bzimage(make_bzimage()[:0x206])


def test_command_line_longer_than_cmdline_size_is_refused(ram):
    refused(
        ram, "command line is 17 bytes; the kernel accepts at most 16", make_bzimage(cmdline_size=16), cmdline="x" * 17
    )


def test_command_line_with_a_nul_is_refused(ram):
    refused(ram, "NUL", cmdline="a\0b")


@pytest.mark.parametrize(
    "placement, match",
    [
        ({"boot_params_address": PREF + 0x1000}, "zero page .* overlaps the kernel's init_size region"),
        ({"cmdline_address": PREF + INIT_SIZE - 1}, "command line .* overlaps the kernel"),
        ({"boot_params_address": RAM_SIZE - 0x800}, "zero page .* is outside guest RAM"),
        ({"cmdline_address": BOOT_PARAMS + 0xF00}, "command line .* overlaps the zero page"),
    ],
)
def test_boot_data_in_the_wrong_place_is_refused(ram, placement, match):
    refused(ram, match, **placement)


def test_more_than_128_e820_entries_are_refused(ram):
    e820 = [E820Entry(0x100000 + index * 0x1000, 0x1000, 1) for index in range(129)]
    refused(ram, "129 entries; the zero page holds at most 128", e820=e820)


# --- E820 -------------------------------------------------------------------------------------------


def test_e820_of_a_pc():
    assert build_e820(128 * MiB) == [
        (0, 0x9FC00, 1),
        (0x9FC00, 0x400, 2),
        (0xE0000, 0x20000, 2),
        (0x100000, 127 * MiB, 1),
    ]


def test_acpi_tables_get_their_own_entry_inside_the_firmware_area():
    assert build_e820(128 * MiB, acpi=(0xE0000, 0xE2000))[2:4] == [(0xE0000, 0x2000, 3), (0xE2000, 0x1E000, 2)]
    assert build_e820(128 * MiB, acpi=(0xE1000, 0xE2000))[2:5] == [
        (0xE0000, 0x1000, 2),
        (0xE1000, 0x1000, 3),
        (0xE2000, 0x1E000, 2),
    ]


def test_acpi_tables_in_ram_split_it():
    assert build_e820(4 * MiB, acpi=(0x200000, 0x201000))[3:] == [
        (0x100000, 0x100000, 1),
        (0x200000, 0x1000, 3),
        (0x201000, 0x1FF000, 1),
    ]


def test_e820_without_windows_leaves_only_the_legacy_hole_out():
    assert build_e820(2 * MiB, ()) == [(0, 0xA0000, 1), (0x100000, 0x100000, 1)]


def test_e820_merges_adjacent_windows_and_lists_windows_beyond_ram():
    assert build_e820(0x80000, [(0x9F000, 0xA0000), (0xA0000, 0xB0000)]) == [(0, 0x80000, 1), (0x9F000, 0x11000, 2)]


@pytest.mark.parametrize(
    "reserved, acpi, match",
    [
        (
            [(0x9FC00, 0xA0000), (0x9FF00, 0xA1000)],
            None,
            "reserved windows 0x9fc00-0x9ffff and 0x9ff00-0xa0fff overlap",
        ),
        ([(0xE0000, 0xE0000)], None, "reserved window 0xe0000-0xe0000 is empty"),
        ([(0xE0000, 0x100000)], (0xDF000, 0xE1000), "ACPI range 0xdf000-0xe0fff straddles"),
        ([(0xE0000, 0x100000)], (0xC0000, 0xC1000), "neither in RAM nor inside a reserved window"),
        ([(0xE0000, 0x100000)], (0xE1000, 0xE1000), "ACPI range 0xe1000-0xe1000 is empty"),
    ],
)
def test_bad_e820_inputs_are_refused(reserved, acpi, match):
    with pytest.raises(LoadError, match=match):
        build_e820(128 * MiB, reserved, acpi=acpi)


# --- PVH ----------------------------------------------------------------------------------------------


def note(name: bytes, note_type: int, descriptor: bytes) -> bytes:
    """An ELF note: namesz, descsz, type, then the NUL-terminated name and the descriptor, each padded to 4."""
    name += b"\0"
    return (
        struct.pack("<III", len(name), len(descriptor), note_type)
        + name
        + bytes(-len(name) % 4)
        + descriptor
        + bytes(-len(descriptor) % 4)
    )


OTHER_NOTES = note(b"Xen", 6, b"linux\0") + note(b"GNU", 3, bytes(range(20))) + note(b"Linux", 18, b"\0" * 4)


def elf_with_notes(notes: bytes, bits: int = 64) -> bytes:
    return build_elf([Seg(0x1000000, CODE), Seg(0, notes, type=PT_NOTE)], entry=0x1000000, bits=bits)


def with_note_section(elf: bytes, notes: bytes) -> bytes:
    """``elf`` plus a section header table: the null section and one SHT_NOTE section holding ``notes``."""
    image = bytearray(elf) + bytes(-len(elf) % 8)
    notes_offset = len(image)
    image += notes + bytes(-len(notes) % 8)
    section_headers = len(image)
    # sh_name, sh_type (SHT_NOTE = 7), sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info, sh_addralign, sh_entsize
    image += bytes(64) + struct.pack("<IIQQQQIIQQ", 0, 7, 0, 0, notes_offset, len(notes), 0, 0, 4, 0)
    struct.pack_into("<Q", image, 0x28, section_headers)  # e_shoff
    struct.pack_into("<HHH", image, 0x3A, 64, 2, 0)  # e_shentsize, e_shnum, e_shstrndx
    return bytes(image)


@pytest.mark.parametrize("descriptor", [struct.pack("<Q", 0x1000850), struct.pack("<I", 0x1000850)])
def test_pvh_entry_comes_from_the_xen_phys32_entry_note(descriptor):
    assert find_pvh_entry(elf_with_notes(OTHER_NOTES + note(b"Xen", 18, descriptor))) == 0x1000850


def test_pvh_note_in_a_section_when_there_is_no_note_segment():
    elf = build_elf([Seg(0x1000000, CODE)], entry=0x1000000)
    assert find_pvh_entry(with_note_section(elf, OTHER_NOTES + note(b"Xen", 18, struct.pack("<I", 0x2000)))) == 0x2000


def test_note_segments_win_over_note_sections():
    elf = elf_with_notes(OTHER_NOTES)
    assert find_pvh_entry(with_note_section(elf, note(b"Xen", 18, struct.pack("<I", 0x2000)))) is None


@pytest.mark.parametrize(
    "image",
    [
        elf_with_notes(OTHER_NOTES),  # notes, but not the PVH one
        elf_with_notes(note(b"Xe", 18, b"\0\0\0\1") + note(b"XenX", 18, b"\0\0\0\1")),  # other names, type 18
        build_elf([Seg(0x1000000, CODE)], entry=0x1000000),  # no notes at all
        elf_with_notes(note(b"Xen", 18, b"\0\0\0\1"), bits=32),  # not ELF64
        make_bzimage(),  # not an ELF
        b"\x7fELF",
    ],
    ids=["other notes", "other names", "no notes", "ELF32", "bzImage", "4 bytes"],
)
def test_images_without_a_pvh_entry_give_none(image):
    assert find_pvh_entry(image) is None


def broken_note_images():
    good = elf_with_notes(OTHER_NOTES + note(b"Xen", 18, b"\0\0\0\1"))
    note_phdr = phdr_offset(64, 1)
    return {
        "2-byte descriptor": (elf_with_notes(note(b"Xen", 18, b"\1\2")), "descriptor is 2 bytes"),
        "entry above 4 GiB": (elf_with_notes(note(b"Xen", 18, struct.pack("<Q", 1 << 32))), "not a 32-bit"),
        "name past the note area": (elf_with_notes(struct.pack("<III", 0x100, 0, 18) + b"Xen\0"), "runs past the end"),
        "stray bytes after the notes": (elf_with_notes(OTHER_NOTES + b"\0" * 8), "truncated ELF note header"),
        "note area past the file": (patch(good, note_phdr + 32, "Q", 1 << 20), "note data .* past the end"),
        "program header size": (patch(good, 0x36, "H", 32), "program header size is 32"),
        "program headers past the file": (patch(good, 0x38, "H", 1000), "program header table runs past"),
    }


@pytest.mark.parametrize("image, match", broken_note_images().values(), ids=broken_note_images().keys())
def test_broken_notes_are_load_errors(image, match):
    with pytest.raises(LoadError, match=match):
        find_pvh_entry(image)


def test_hvm_start_info_byte_for_byte():
    ram = memoryview(bytearray([FILLER]) * 0x10000)
    memmap = [E820Entry(0, 0x9FC00, 1), E820Entry(0xE0000, 0x2000, 3), E820Entry(0x100000, 0x700000, 1)]
    modules = [(0x200000, 0x1234, 0x5000), (0x300000, 0x10, 0)]
    end = write_hvm_start_info(
        ram, 0x6000, cmdline_address=0x7000, memmap=memmap, modules=modules, rsdp_address=0xE0000
    )
    memmap_at, modlist_at = 0x6000 + 56, 0x6000 + 56 + 3 * 24
    assert end == modlist_at + 2 * 32
    # magic, version, flags, nr_modules; modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
    # memmap_entries, reserved
    assert bytes(ram[0x6000:memmap_at]) == (
        struct.pack("<4I", 0x336EC578, 1, 0, 2)
        + struct.pack("<4Q", modlist_at, 0x7000, 0xE0000, memmap_at)
        + struct.pack("<2I", 3, 0)
    )
    assert bytes(ram[memmap_at:modlist_at]) == (
        struct.pack("<QQII", 0, 0x9FC00, 1, 0)
        + struct.pack("<QQII", 0xE0000, 0x2000, 3, 0)
        + struct.pack("<QQII", 0x100000, 0x700000, 1, 0)
    )
    assert bytes(ram[modlist_at:end]) == (
        struct.pack("<4Q", 0x200000, 0x1234, 0x5000, 0) + struct.pack("<4Q", 0x300000, 0x10, 0, 0)
    )
    assert ram[0x5FFF] == FILLER and ram[end] == FILLER


def test_hvm_start_info_without_modules_has_no_module_list():
    ram = memoryview(bytearray([FILLER]) * 0x10000)
    end = write_hvm_start_info(ram, 0x6000, cmdline_address=0, memmap=[E820Entry(0, 0x9FC00, 1)])
    assert struct.unpack_from("<I", ram, 0x600C)[0] == 0  # nr_modules
    assert struct.unpack_from("<QQQ", ram, 0x6010) == (0, 0, 0)  # modlist, cmdline, rsdp: not present
    assert end == 0x6000 + 56 + 24


@pytest.mark.parametrize(
    "address, memmap, match",
    [
        (0x6004, [E820Entry(0, 0x1000, 1)], "not 8-byte aligned"),
        (0x6000, [], "needs a memory map"),
        (0xFFE0, [E820Entry(0, 0x1000, 1)], "outside guest RAM"),
    ],
)
def test_hvm_start_info_refusals(address, memmap, match):
    ram = memoryview(bytearray([FILLER]) * 0x10000)
    with pytest.raises(LoadError, match=match):
        write_hvm_start_info(ram, address, cmdline_address=0, memmap=memmap)
    assert bytes(ram) == bytes([FILLER]) * 0x10000


def test_write_cmdline():
    ram = memoryview(bytearray([FILLER]) * 0x2000)
    assert write_cmdline(ram, 0x1000, "console=ttyS0", max_bytes=13) == MemoryRange(0x1000, 0x100E)
    assert bytes(ram[0x1000:0x100F]) == b"console=ttyS0\0" + bytes([FILLER])
    with pytest.raises(LoadError, match="at most 12"):
        write_cmdline(ram, 0x1000, "console=ttyS0", max_bytes=12)
    with pytest.raises(LoadError, match="outside guest RAM"):
        write_cmdline(ram, 0x1FFA, "console=ttyS0", max_bytes=100)


# --- the real Debian kernel (fetched on first use) -----------------------------------------------------


@pytest.fixture(scope="module")
def debian_assets():
    return require_linux_assets()


def test_debian_kernel_loads(debian_assets):
    image = debian_assets.kernel.read_bytes()
    kernel = parse_bzimage(image)
    assert kernel.protocol >= 0x020C and kernel.xloadflags & 1
    assert kernel.relocatable and kernel.preferred_address == 0x1000000
    assert kernel.init_size > kernel.code_size
    assert find_pvh_entry(image) is None  # the vmlinux and its PVH note are inside the compressed payload
    ram = memoryview(bytearray(128 * MiB))
    initrd = debian_assets.initramfs.read_bytes()
    boot = load_bzimage(
        ram,
        image,
        boot_params_address=0xF8000,
        cmdline_address=0xF9000,
        e820=build_e820(len(ram)),
        cmdline="console=ttyS0 " + initramfs.run_parameter("hello"),
        initrd=initrd,
    )
    assert boot.entry == 0x1000200
    assert boot.kernel_range.end <= boot.initrd_range.start and boot.initrd_range.end <= len(ram)
    assert bytes(ram[boot.initrd_range.start : boot.initrd_range.end]) == initrd


# --- cpio and the initramfs ------------------------------------------------------------------------------


NEWC_FIELDS = (
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
)


def read_newc(archive: bytes) -> dict[str, dict]:
    """Parse a newc archive (as the kernel does): name -> header fields plus ``data``; checks the padding."""
    members, position = {}, 0
    while True:
        assert archive[position : position + 6] == b"070701"
        values = [int(archive[position + 6 + 8 * i : position + 14 + 8 * i], 16) for i in range(13)]
        member = dict(zip(NEWC_FIELDS, values, strict=True))
        name_end = position + 110 + member["namesize"]
        assert archive[name_end - 1] == 0
        name = archive[position + 110 : name_end - 1].decode()
        data_start = name_end + (-name_end % 4)
        assert archive[name_end:data_start] == bytes(data_start - name_end)
        member["data"] = archive[data_start : data_start + member["filesize"]]
        position = data_start + member["filesize"]
        padding = -position % 4
        assert archive[position : position + padding] == bytes(padding)
        position += padding
        if name == "TRAILER!!!":
            assert position == len(archive)
            return members
        assert name not in members
        members[name] = member


def test_newc_archive_reads_back():
    entries = [
        initramfs.directory("bin"),
        initramfs.regular_file("bin/tool", b"\x7fELF!", 0o755),
        initramfs.symlink("bin/sh", "tool"),
        initramfs.directory("dev"),
        initramfs.char_device("dev/console", 5, 1),
        initramfs.regular_file("empty", b""),
    ]
    members = read_newc(initramfs.newc_archive(entries))
    assert list(members) == ["bin", "bin/tool", "bin/sh", "dev", "dev/console", "empty"]
    assert [member["ino"] for member in members.values()] == [1, 2, 3, 4, 5, 6]
    assert members["bin"]["mode"] == stat.S_IFDIR | 0o755 and members["bin"]["nlink"] == 2
    assert members["bin/tool"]["mode"] == stat.S_IFREG | 0o755 and members["bin/tool"]["data"] == b"\x7fELF!"
    assert members["bin/sh"]["mode"] == stat.S_IFLNK | 0o777 and members["bin/sh"]["data"] == b"tool"
    assert members["dev/console"]["mode"] == stat.S_IFCHR | 0o600
    assert (members["dev/console"]["rdevmajor"], members["dev/console"]["rdevminor"]) == (5, 1)
    for member in members.values():
        assert (member["uid"], member["gid"], member["mtime"], member["check"]) == (0, 0, 0, 0)
        assert (member["devmajor"], member["devminor"]) == (0, 0)
        if not stat.S_ISDIR(member["mode"]):
            assert member["nlink"] == 1


@pytest.mark.parametrize(
    "entries, match",
    [
        ([initramfs.regular_file("bin/tool", b"")], "comes before its directory 'bin'"),
        ([initramfs.directory("bin"), initramfs.directory("bin")], "appears twice"),
        ([initramfs.regular_file("/init", b"")], "not a plain relative path"),
        ([initramfs.directory("a"), initramfs.regular_file("a/../b", b"")], "not a plain relative path"),
        ([initramfs.CpioEntry("fifo", stat.S_IFIFO | 0o644)], "unsupported file type"),
    ],
)
def test_newc_archive_refusals(entries, match):
    with pytest.raises(ValueError, match=match):
        initramfs.newc_archive(entries)


def test_initramfs_layout():
    image = initramfs.build_initramfs(b"busybox binary", {"hello": b"hello binary", "workload": b"workload binary"})
    members = read_newc(gzip.decompress(image))
    assert members["init"]["mode"] == stat.S_IFREG | 0o755
    assert members["init"]["data"] == (Path(initramfs.__file__).parent / "init.sh").read_bytes()
    assert (
        members["bin/pmu-vmm-command"]["data"] == (Path(initramfs.__file__).parent / "pmu-vmm-command.sh").read_bytes()
    )
    assert members["bin/busybox"]["data"] == b"busybox binary"
    for applet in ("sh", "mount", "echo", "cat", "poweroff", "reboot", "uname", "dmesg", "sleep"):
        assert members[f"bin/{applet}"]["mode"] == stat.S_IFLNK | 0o777
        assert members[f"bin/{applet}"]["data"] == b"busybox"
    assert members["bin/hello"]["data"] == b"hello binary" and members["bin/hello"]["mode"] == stat.S_IFREG | 0o755
    assert members["bin/workload"]["data"] == b"workload binary"
    console = members["dev/console"]
    assert (console["mode"], console["rdevmajor"], console["rdevminor"]) == (stat.S_IFCHR | 0o600, 5, 1)
    for mount_point in ("proc", "sys", "dev", "tmp"):
        assert stat.S_ISDIR(members[mount_point]["mode"])


def test_initramfs_is_byte_identical_every_time():
    first = initramfs.build_initramfs(b"bb", {"hello": b"h"})
    assert initramfs.build_initramfs(b"bb", {"hello": b"h"}) == first
    assert first[4:8] == bytes(4)  # gzip MTIME: none
    assert initramfs.build_initramfs(b"bb", {"hello": b"H"}) != first


def test_initramfs_refuses_programs_named_like_applets():
    with pytest.raises(ValueError, match="clash .*: sh"):
        initramfs.initramfs_entries(b"bb", {"sh": b"", "hello": b""})


# --- /init's command-line convention ---------------------------------------------------------------------

COMMAND_SCRIPT = Path(initramfs.__file__).parent / "pmu-vmm-command.sh"


def command_from(cmdline: str, tmp_path) -> subprocess.CompletedProcess:
    """Run the initramfs's pmu-vmm-command with the host's POSIX sh on a fake /proc/cmdline."""
    proc_cmdline = tmp_path / "cmdline"
    proc_cmdline.write_text(cmdline + "\n")  # the kernel ends /proc/cmdline with a newline
    return subprocess.run(["sh", str(COMMAND_SCRIPT), str(proc_cmdline)], capture_output=True, text=True)


@pytest.mark.parametrize(
    "command",
    ["/bin/hello", "workload 1000; echo done", "echo 'single quotes'  two  spaces $HOME", "a=b sh -c 'exit 3'"],
)
def test_run_parameter_round_trips_through_the_init_parser(command, tmp_path):
    found = command_from(f"console=ttyS0 panic=-1 {initramfs.run_parameter(command)} quiet", tmp_path)
    assert (found.returncode, found.stdout) == (0, command + "\n")


@pytest.mark.parametrize(
    "cmdline, status, output",
    [
        ("console=ttyS0 pmu_vmm.run=/bin/hello quiet", 0, "/bin/hello\n"),  # a bare word
        ('pmu_vmm.run="first" pmu_vmm.run="second"', 0, "first\n"),
        ("console=ttyS0 quiet", 1, ""),
        ("xpmu_vmm.run=/bin/hello", 1, ""),  # another parameter's name
        ('pmu_vmm.run="" quiet', 1, ""),
        ('pmu_vmm.run="unterminated', 2, ""),
    ],
)
def test_init_command_line_parser(cmdline, status, output, tmp_path):
    found = command_from(cmdline, tmp_path)
    assert (found.returncode, found.stdout) == (status, output)
    assert ("no closing double quote" in found.stderr) == (status == 2)


@pytest.mark.parametrize("command", ['echo "quoted"', "two\nlines", "  "])
def test_run_parameter_refuses_what_the_kernel_cannot_carry(command):
    with pytest.raises(ValueError):
        initramfs.run_parameter(command)


@pytest.mark.parametrize("script", ["init.sh", "pmu-vmm-command.sh"])
def test_scripts_parse_as_posix_sh(script):
    checked = subprocess.run(["sh", "-n", str(COMMAND_SCRIPT.parent / script)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr


def test_init_prints_the_markers_the_host_looks_for():
    init = (COMMAND_SCRIPT.parent / "init.sh").read_text()
    assert f'echo "{initramfs.INIT_STARTED}"' in init
    assert 'echo "pmu-vmm: exit status $?"' in init  # the form initramfs.EXIT_STATUS parses


def test_exit_status_marker():
    console = "[    1.0] random: crng init done\r\npmu-vmm: init started\r\nhi\r\npmu-vmm: exit status 3\r\n"
    assert initramfs.exit_status(console) == 3
    assert initramfs.exit_status("pmu-vmm: init started\npmu-vmm: exit status 0\n") == 0
    assert initramfs.exit_status("pmu-vmm: init started\nnot pmu-vmm: exit status 3\n") is None


# --- the static test programs ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def built_programs(tmp_path_factory):
    return programs.build_programs(tmp_path_factory.mktemp("programs"))


def test_programs_are_static_and_reproducible(built_programs, tmp_path):
    again = programs.build_programs(tmp_path)
    for name, path in built_programs.items():
        with open(path, "rb") as executable:
            assert not any(segment["p_type"] == "PT_INTERP" for segment in ELFFile(executable).iter_segments())
        assert again[name].read_bytes() == path.read_bytes()


def test_hello_runs(built_programs):
    ran = subprocess.run([built_programs["hello"]], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (0, "hello: static glibc program running\n")


def test_workload_runs_between_its_markers(built_programs):
    ran = subprocess.run([built_programs["workload"], "1000"], capture_output=True, text=True)
    assert ran.returncode == 0
    assert ran.stdout.splitlines() == [programs.WORKLOAD_START_MARKER, programs.WORKLOAD_DONE_MARKER]


@pytest.mark.parametrize("arguments", [[], [""], ["12x"], ["1", "2"], ["9223372036854775808"]])
def test_workload_refuses_bad_arguments(built_programs, arguments):
    ran = subprocess.run([built_programs["workload"], *arguments], capture_output=True, text=True)
    assert (ran.returncode, ran.stdout) == (2, "")
    assert ran.stderr.startswith("usage: workload ITERATIONS")


def emulate(executable: Path, argument: str) -> dict:
    """Run a static no-libc x86-64 program in Unicorn, counting instructions and jumps at each SYSCALL."""
    emulator = Uc(UC_ARCH_X86, UC_MODE_64)
    with open(executable, "rb") as file:
        elf = ELFFile(file)
        for segment in elf.iter_segments():
            if segment["p_type"] == "PT_LOAD":
                start = segment["p_vaddr"] & ~0xFFF
                end = (segment["p_vaddr"] + segment["p_memsz"] + 0xFFF) & ~0xFFF
                emulator.mem_map(start, end - start)
                emulator.mem_write(segment["p_vaddr"], segment.data())
        entry = elf["e_entry"]
    stack_base, stack_size = 0x7FFF0000, 0x10000
    emulator.mem_map(stack_base, stack_size)
    strings_at = stack_base + stack_size - 0x100
    emulator.mem_write(strings_at, b"workload\0" + argument.encode() + b"\0")
    rsp = stack_base + stack_size - 0x200
    # argc, argv[0], argv[1], NULL, no environment (NULL), auxv AT_NULL
    emulator.mem_write(rsp, struct.pack("<7Q", 2, strings_at, strings_at + 9, 0, 0, 0, 0))
    emulator.reg_write(uxc.UC_X86_REG_RSP, rsp)

    disassembler = Cs(CS_ARCH_X86, CS_MODE_64)
    disassembler.detail = True
    jumps = {}
    run = {"instructions": 0, "branches": 0, "syscalls": [], "output": b"", "exit": None}

    def on_instruction(uc, address, size, _):
        if address not in jumps:
            instruction = next(disassembler.disasm(bytes(uc.mem_read(address, size)), address))
            jumps[address] = instruction.group(CS_GRP_JUMP)
        run["instructions"] += 1
        run["branches"] += jumps[address]

    def on_syscall(uc, _):
        number = uc.reg_read(uxc.UC_X86_REG_RAX)
        run["syscalls"].append((run["instructions"], run["branches"]))
        if number == 1:  # write
            length = uc.reg_read(uxc.UC_X86_REG_RDX)
            run["output"] += bytes(uc.mem_read(uc.reg_read(uxc.UC_X86_REG_RSI), length))
            uc.reg_write(uxc.UC_X86_REG_RAX, length)
        elif number == 60:  # exit
            run["exit"] = uc.reg_read(uxc.UC_X86_REG_RDI)
            uc.emu_stop()

    emulator.hook_add(UC_HOOK_CODE, on_instruction)
    emulator.hook_add(UC_HOOK_INSN, on_syscall, None, 1, 0, uxc.UC_X86_INS_SYSCALL)
    emulator.emu_start(entry, 0)
    return run


@pytest.mark.parametrize("iterations", [0, 1, 9, 10, 321])
def test_workload_counts_are_exact(built_programs, iterations):
    run = emulate(built_programs["workload"], str(iterations))
    assert run["exit"] == 0 and run["output"] == b"workload: start\nworkload: done\n"
    between, whole = programs.workload_counts(iterations)
    (first_insns, first_branches), (second_insns, second_branches), (exit_insns, exit_branches) = run["syscalls"]
    # Instruction counts taken at a SYSCALL include it; the capstone jump group leaves SYSCALL out.
    assert second_insns - first_insns == between.instructions + between.syscalls
    assert second_branches - first_branches == between.branches
    assert exit_insns == whole.instructions + whole.syscalls
    assert exit_branches == whole.branches
    assert (between.syscalls, whole.syscalls) == (1, len(run["syscalls"]))


@pytest.mark.parametrize("iterations", [-1, 2**63])
def test_workload_counts_refuse_what_the_program_refuses(iterations):
    with pytest.raises(ValueError):
        programs.workload_counts(iterations)


# --- the assets script (no network) ------------------------------------------------------------------------


def test_cache_directory_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv(assets.CACHE_ENV, raising=False)
    assert assets.cache_dir() == Path(assets.__file__).resolve().parent / "cache"
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "from-env"))
    assert assets.cache_dir() == tmp_path / "from-env"
    assert assets.cache_dir(tmp_path / "given") == tmp_path / "given"


def test_missing_assets_are_explained_in_one_line(tmp_path):
    with pytest.raises(assets.AssetsUnavailable, match="no Linux guest assets in .*: run `python -m firmware"):
        assets.cached_assets(tmp_path)


def test_fetch_without_apt_says_so(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing to run
    with pytest.raises(assets.AssetsUnavailable, match="apt-get, apt-cache, dpkg-deb not found"):
        assets.ensure_assets(tmp_path / "cache")


def test_initramfs_file_is_rewritten_only_when_it_changes(tmp_path):
    busybox = tmp_path / "busybox" / "bin" / "busybox"
    busybox.parent.mkdir(parents=True)
    busybox.write_bytes(b"fake busybox")
    built = assets.build_initramfs_file(tmp_path)
    assert read_newc(gzip.decompress(built.read_bytes()))["bin/busybox"]["data"] == b"fake busybox"
    first = built.stat().st_mtime_ns
    os.utime(built, ns=(first - 10**9, first - 10**9))
    assets.build_initramfs_file(tmp_path)
    assert built.stat().st_mtime_ns == first - 10**9  # same bytes: left alone
    busybox.write_bytes(b"new busybox")
    assets.build_initramfs_file(tmp_path)
    assert read_newc(gzip.decompress(built.read_bytes()))["bin/busybox"]["data"] == b"new busybox"


@pytest.mark.parametrize("ci, outcome", [("", pytest.skip.Exception), ("true", pytest.fail.Exception)])
def test_unavailable_assets_skip_locally_and_fail_in_ci(monkeypatch, tmp_path, ci, outcome):
    monkeypatch.setenv(assets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    with pytest.raises(outcome, match="apt-get, apt-cache, dpkg-deb not found"):
        require_linux_assets()
