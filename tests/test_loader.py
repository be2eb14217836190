# SPDX-License-Identifier: GPL-2.0-or-later
"""Kernel loader: image kinds, memory contents, the MBI byte for byte, and every refusal."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from devices.bus import Bus
from tests.elfgen import (
    EM_386,
    EM_X86_64,
    PT_NOTE,
    Seg,
    build_elf,
    multiboot_header,
    patch,
    phdr_offset,
)
from vmm.errors import LoadError, VmmError
from vmm.loader import BOOT_AREA, MBI_ADDRESS, Window, bus_windows, load_kernel

RAM_SIZE = 4 << 20
KERNEL = 0x100000
CODE = bytes(range(1, 65))
LAPIC = (0xFEE00000, 0xFEE01000, "LAPIC")
FILLER = 0xAA  # RAM starts dirty so zeroing is visible


@pytest.fixture
def ram():
    return memoryview(bytearray([FILLER]) * RAM_SIZE)


def mb_kernel(bits=32, bss=0x3000, entry=KERNEL + 12):
    """A multiboot kernel: header then code in one segment with BSS, plus a data segment."""
    text = multiboot_header() + CODE
    segments = [Seg(KERNEL, text, memsz=len(text) + bss), Seg(0x180000, b"data")]
    return build_elf(segments, entry=entry, bits=bits)


def elf64_kernel(**seg_kwargs):
    return build_elf([Seg(KERNEL, CODE, **seg_kwargs)], entry=KERNEL)


def refused(image, ram, match, **kwargs):
    before = bytes(ram)
    with pytest.raises(LoadError, match=match) as caught:
        load_kernel(image, ram, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert bytes(ram) == before  # validation happens before any write
    return message


# --- successful loads -----------------------------------------------------------------------


@pytest.mark.parametrize("bits, kind", [(32, "multiboot32"), (64, "multiboot64")])
def test_multiboot_elf_loads_segments_and_zeroes_bss(ram, bits, kind):
    info = load_kernel(mb_kernel(bits), ram)
    assert info.kind == kind
    assert info.entry == KERNEL + 12
    assert info.boot_info_address == MBI_ADDRESS == 0xF8000
    text = multiboot_header() + CODE
    assert bytes(ram[KERNEL : KERNEL + len(text)]) == text
    assert bytes(ram[KERNEL + len(text) : KERNEL + len(text) + 0x3000]) == bytes(0x3000)
    assert ram[KERNEL + len(text) + 0x3000] == FILLER
    assert bytes(ram[0x180000:0x180004]) == b"data"
    assert info.image_end == 0x180004
    assert [(s.paddr, s.filesz, s.memsz) for s in info.segments] == [
        (KERNEL, len(text), len(text) + 0x3000),
        (0x180000, 4, 4),
    ]


def test_plain_elf64_is_elf64(ram):
    info = load_kernel(elf64_kernel(), ram)
    assert info.kind == "elf64"
    assert info.entry == KERNEL
    assert bytes(ram[KERNEL : KERNEL + len(CODE)]) == CODE


def test_mbi_without_module_byte_for_byte(ram):
    load_kernel(elf64_kernel(), ram)
    expected = struct.pack("<7I", 0b1101, 640, RAM_SIZE // 1024 - 1024, 0, 0xF9000, 0, 0xFA000)
    assert bytes(ram[0xF8000 : 0xF8000 + 28]) == expected
    assert bytes(ram[0xF8000 + 28 : 0xF9000]) == bytes(0x1000 - 28)
    assert bytes(ram[0xF9000:0xF9008]) == b"kernel\0\0"
    assert bytes(ram[0xFA000:0xFB000]) == bytes(0x1000)


def test_cmdline_starts_with_the_kernel_file_name(ram, tmp_path):
    path = tmp_path / "pmu.elf"
    path.write_bytes(elf64_kernel())
    info = load_kernel(path, ram, cmdline="-v 'pmu'")
    assert info.cmdline == "pmu.elf -v 'pmu'"
    assert bytes(ram[0xF9000:0xF9011]) == b"pmu.elf -v 'pmu'\0"


def test_module_goes_to_the_next_page_after_the_kernel(ram):
    env = b"NR_CPUS=1\n"
    info = load_kernel(mb_kernel(), ram, cmdline="x", module=env)
    assert info.image_end == 0x180004
    assert info.module == Window(0x181000, 0x181000 + len(env), "initrd")
    assert bytes(ram[0x181000 : 0x181000 + len(env)]) == env
    flags, _, _, _, cmdline, mods_count, mods_addr = struct.unpack_from("<7I", ram, 0xF8000)
    assert (flags, cmdline, mods_count, mods_addr) == (0b1101, 0xF9000, 1, 0xFA000)
    assert bytes(ram[0xFA000:0xFA017]) == struct.pack("<4I", 0x181000, 0x18100A, 0xFA010, 0) + b"initrd\0"


def test_module_right_at_a_page_boundary_stays_there(ram):
    info = load_kernel(build_elf([Seg(KERNEL, CODE, memsz=0x2000)], entry=KERNEL), ram, module=b"A")
    assert info.module.start == KERNEL + 0x2000


def test_entry_is_translated_from_virtual_to_physical(ram):
    higher_half = 0xFFFFFFFF80000000
    image = build_elf([Seg(KERNEL, CODE, vaddr=higher_half)], entry=higher_half + 4)
    assert load_kernel(image, ram).entry == KERNEL + 4


def test_non_load_segments_and_empty_loads_are_skipped(ram):
    gnu_note = struct.pack("<III", 4, 4, 3) + b"GNU\0" + b"\1\2\3\4"    # a build-id style note, not Xen's
    image = build_elf([Seg(0, gnu_note, type=PT_NOTE), Seg(0x5000, b""), Seg(KERNEL, CODE)], entry=KERNEL)
    info = load_kernel(image, ram)
    assert [s.paddr for s in info.segments] == [KERNEL]
    assert info.kind == "elf64"
    assert ram[0] == FILLER


def test_a_malformed_note_segment_is_refused(ram):
    """Notes are read (a PVH entry may be among them): one that runs past its segment is a bad image."""
    image = build_elf([Seg(0, b"note", type=PT_NOTE), Seg(KERNEL, CODE)], entry=KERNEL)
    refused(image, ram, r"^truncated ELF note header at file offset 0x[0-9a-f]+$")


def test_segment_at_zero_below_the_boot_area_is_allowed(ram):
    image = build_elf([Seg(0, b"\x90" * 16)], entry=0)
    assert load_kernel(image, ram).segments[0].paddr == 0


def test_cmdline_of_exactly_4095_bytes_fits(ram):
    info = load_kernel(elf64_kernel(), ram, cmdline="x" * (4095 - len("kernel ")))
    assert len(info.cmdline) == 4095
    assert ram[0xF9000 + 4094] == ord("x") and ram[0xF9000 + 4095] == 0


# --- a.out kludge -----------------------------------------------------------------------------


def aout_image(load_end=None, bss_end=0, entry=KERNEL + 32, load_addr=KERNEL):
    """A raw (non-ELF) binary: the multiboot header is its first 32 bytes, loaded at ``load_addr``."""
    body = CODE
    end = load_addr + 32 + len(body) if load_end is None else load_end
    return multiboot_header(aout=(load_addr, load_addr, end, bss_end, entry)) + body


def test_aout_kludge_loads_a_raw_binary(ram):
    image = aout_image(bss_end=KERNEL + 0x1000)
    info = load_kernel(image, ram)
    assert info.kind == "multiboot32"
    assert info.entry == KERNEL + 32
    assert bytes(ram[KERNEL : KERNEL + len(image)]) == image
    assert bytes(ram[KERNEL + len(image) : KERNEL + 0x1000]) == bytes(0x1000 - len(image))
    assert info.image_end == KERNEL + 0x1000


def test_aout_kludge_load_end_zero_means_the_whole_file(ram):
    image = aout_image(load_end=0) + b"tail"
    info = load_kernel(image, ram)
    assert info.segments[0].filesz == len(image)
    assert bytes(ram[KERNEL + len(image) - 4 : KERNEL + len(image)]) == b"tail"


def test_aout_kludge_header_inside_the_file_and_ignoring_program_headers(ram):
    # An ELF64 whose header sits at file offset 0x50 of a segment loaded at 0x200000 via the kludge;
    # its program headers claim 0x100000 and must be ignored.
    elf = build_elf([Seg(KERNEL, CODE)], entry=KERNEL)
    offset = len(elf)
    header_addr = 0x200000 + offset
    image = elf + multiboot_header(aout=(header_addr, 0x200000, header_addr + 32, 0, header_addr))
    info = load_kernel(image, ram)
    assert info.kind == "multiboot64"
    assert info.segments[0].paddr == 0x200000 and info.segments[0].offset == 0
    assert bytes(ram[0x200000 : 0x200000 + len(image)]) == image
    assert ram[KERNEL] == FILLER


def test_bad_checksum_is_not_a_header(ram):
    image = build_elf([Seg(KERNEL, multiboot_header(checksum=0) + CODE)], entry=KERNEL, bits=32)
    refused(image, ram, r"^32-bit ELF without a multiboot header")


def test_header_past_the_first_8_kib_is_not_found(ram):
    text = bytes(8192) + multiboot_header() + CODE
    refused(build_elf([Seg(KERNEL, text)], entry=KERNEL, bits=32), ram, "without a multiboot header")


# --- refusals ---------------------------------------------------------------------------------


def test_load_error_is_a_vmm_error():
    assert issubclass(LoadError, VmmError)


@pytest.mark.parametrize("image", [b"", b"MZ\x90\x00" + bytes(100), b"\x7fEL"])
def test_not_an_elf(ram, image):
    refused(image, ram, r"^not an ELF file \(bad magic")


@pytest.mark.parametrize("bits", [32, 64])
def test_truncated_elf_header(ram, bits):
    refused(mb_kernel(bits)[:40], ram, rf"^truncated ELF header: the file has 40 bytes, the ELF{bits} header needs")


def test_truncated_elf_ident(ram):
    refused(b"\x7fELF\x02", ram, r"^truncated ELF header: the file has only 5 bytes$")


def test_truncated_program_headers(ram):
    image = elf64_kernel()
    refused(image[: phdr_offset(64, 0) + 20], ram, r"^truncated ELF: program headers end at 0x78")


def test_truncated_segment_data(ram):
    image = elf64_kernel()
    refused(image[:-1], ram, r"^truncated ELF: program header 0 data ends at .* past the end of the file")


def test_bad_elf_class(ram):
    refused(patch(elf64_kernel(), 4, "B", 3), ram, r"^unsupported ELF class 3 \(expected 1 = ELF32 or 2 = ELF64\)$")


def test_big_endian(ram):
    refused(patch(elf64_kernel(), 5, "B", 2), ram, r"^ELF file is not little-endian")


@pytest.mark.parametrize(
    "bits, machine, match",
    [
        (64, EM_386, "ELF64 .* EM_386; expected EM_X86_64"),
        (32, EM_X86_64, "ELF32 .* EM_X86_64; expected EM_386"),
        (64, 183, "ELF64 .* EM_AARCH64"),
    ],
)
def test_wrong_machine(ram, bits, machine, match):
    image = build_elf([Seg(KERNEL, multiboot_header() + CODE)], entry=KERNEL, bits=bits, machine=machine)
    refused(image, ram, match)


def test_elf32_without_multiboot_header(ram):
    image = build_elf([Seg(KERNEL, CODE)], entry=KERNEL, bits=32)
    refused(image, ram, r"^32-bit ELF without a multiboot header: .* only through multiboot$")


def test_no_pt_load(ram):
    refused(build_elf([Seg(KERNEL, CODE, type=PT_NOTE)], entry=KERNEL), ram, r"^no PT_LOAD segment")
    refused(build_elf([], entry=KERNEL), ram, r"^no PT_LOAD segment")


def test_wrong_program_header_size(ram):
    refused(patch(elf64_kernel(), 54, "H", 32), ram, r"^ELF program header size is 32; ELF64 uses 56")


def test_filesz_larger_than_memsz(ram):
    refused(elf64_kernel(memsz=4), ram, r"^program header 0: p_filesz 0x40 is larger than p_memsz 0x4$")


def test_segment_outside_ram(ram):
    image = build_elf([Seg(RAM_SIZE - 8, CODE)], entry=RAM_SIZE - 8)
    refused(image, ram, r"^kernel segment \(0x3ffff8-0x400037\) is outside guest RAM \(0x0-0x3fffff\)$")


def test_bss_running_outside_ram(ram):
    refused(elf64_kernel(memsz=RAM_SIZE), ram, r"^kernel segment .* is outside guest RAM")


def test_segment_overlapping_the_firmware_area(ram):
    image = build_elf([Seg(0xFFFF0, CODE)], entry=0xFFFF0)
    refused(image, ram, r"^kernel segment \(0xffff0-0x10002f\) overlaps the VMM firmware area \(0xe0000-0xfffff\)$")


def test_low_memory_belongs_to_the_guest(ram):
    """A kernel may load anywhere a PC allows, e.g. at 0x8000 or right up to the BIOS area."""
    load_kernel(build_elf([Seg(0x8000, CODE)], entry=0x8000), ram)
    load_kernel(build_elf([Seg(0xE0000 - len(CODE), CODE)], entry=0xE0000 - len(CODE)), ram)
    assert bytes(ram[0x8000:0x8000 + len(CODE)]) == CODE


def test_segment_overlapping_a_device_window(ram):
    image = build_elf([Seg(0xFEE00800, CODE)], entry=0xFEE00800)
    refused(image, ram, r"overlaps the LAPIC \(0xfee00000-0xfee00fff\)$", reserved=[LAPIC])


def test_entry_outside_every_segment(ram):
    image = build_elf([Seg(KERNEL, CODE)], entry=KERNEL + len(CODE))
    refused(image, ram, r"^entry point 0x100040 is outside every loaded segment$")


def test_aout_entry_outside_the_image(ram):
    refused(aout_image(entry=0x300000), ram, r"^entry point 0x300000 is outside every loaded segment$")


def test_cmdline_too_long(ram):
    refused(elf64_kernel(), ram, r"^command line is 4096 bytes; the limit is 4095$", cmdline="x" * 4089)


def test_module_not_fitting_in_ram(ram):
    module = bytes(RAM_SIZE - 0x101000 + 1)
    refused(elf64_kernel(), ram, r"^module \(0x101000-0x400000\) is outside guest RAM", module=module)


def test_module_over_a_reserved_window(ram):
    window = (0x101000, 0x102000, "test window")
    refused(elf64_kernel(), ram, r"^module .* overlaps the test window", module=b"NR_CPUS=1\n", reserved=[window])


def test_ram_too_small():
    small = memoryview(bytearray(0x80000))
    with pytest.raises(LoadError, match=r"^guest RAM is 0x80000 bytes; multiboot needs at least 0x100000$"):
        load_kernel(elf64_kernel(), small)


def test_unreadable_file(ram, tmp_path):
    with pytest.raises(LoadError, match=r"^cannot read kernel .*missing\.elf: No such file or directory$"):
        load_kernel(tmp_path / "missing.elf", ram)


def test_unknown_multiboot_flags(ram):
    text = multiboot_header(flags=1 << 5) + CODE
    image = build_elf([Seg(KERNEL, text)], entry=KERNEL, bits=32)
    refused(image, ram, r"^multiboot header asks for unsupported features \(flags 0x20")


def test_aout_truncated_header(ram):
    refused(multiboot_header(aout=(0, 0, 0, 0, 0))[:24], ram, r"^truncated multiboot header")


def test_aout_load_addr_above_header_addr(ram):
    image = multiboot_header(aout=(KERNEL, KERNEL + 4, 0, 0, KERNEL + 4)) + CODE
    refused(image, ram, r"^multiboot a.out kludge: load_addr 0x100004 does not lie within the file")


def test_aout_load_addr_before_the_file(ram):
    image = multiboot_header(aout=(KERNEL + 64, KERNEL, 0, 0, KERNEL + 64)) + CODE
    refused(image, ram, r"^multiboot a.out kludge: load_addr 0x100000 does not lie within the file")


def test_aout_load_end_below_load_addr(ram):
    refused(aout_image(load_end=KERNEL - 1), ram, r"^multiboot a.out kludge: load_end_addr 0xfffff is below load_addr")


def test_aout_bss_end_below_load_end(ram):
    match = r"^multiboot a.out kludge: bss_end_addr 0x100008 is below load_end_addr"
    refused(aout_image(bss_end=KERNEL + 8), ram, match)


def test_aout_load_range_beyond_the_file(ram):
    match = r"^truncated image: a.out kludge load range ends at file offset 0x1000"
    refused(aout_image(load_end=KERNEL + 0x1000), ram, match)


# --- robustness and helpers -------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_corrupted_images_give_load_error_or_load(data):
    image = bytearray(mb_kernel(data.draw(st.sampled_from([32, 64]))))
    for _ in range(data.draw(st.integers(1, 6))):
        image[data.draw(st.integers(0, len(image) - 1))] = data.draw(st.integers(0, 255))
    image = bytes(image[: data.draw(st.integers(0, len(image)))])
    try:
        load_kernel(image, memoryview(bytearray(RAM_SIZE)))
    except LoadError as error:
        assert "\n" not in str(error)


def test_bus_windows_describe_registered_ranges():
    class Lapic:
        pass

    mmio = Bus("mmio", 1 << 52)
    mmio.register(0xFEE00000, 0x1000, Lapic())
    windows = bus_windows(mmio)
    assert windows == [Window(0xFEE00000, 0xFEE01000, "Lapic")]
    assert str(windows[0]) == "Lapic (0xfee00000-0xfee00fff)"
    assert str(BOOT_AREA) == "VMM firmware area (0xe0000-0xfffff)"


def test_pyelftools_errors_become_load_errors(ram, monkeypatch):
    from elftools.common.exceptions import ELFParseError

    def broken(stream):
        raise ELFParseError("expected 4 bytes")

    monkeypatch.setattr("vmm.loader.ELFFile", broken)
    refused(elf64_kernel(), ram, r"^malformed ELF: expected 4 bytes$")
