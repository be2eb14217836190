# SPDX-License-Identifier: GPL-2.0-or-later
"""The C block decoder (vmm/_decode.pyx) gives exactly what the Python decoder it replaced gives
(tests/decode_reference.py, the oracle: capstone's cs_disasm through ctypes, string matching in
Python) on every input: instruction offsets, block flags, hooked offsets.

Compared over (a) all code of every firmware image (firmware/bin/*.elf: each executable segment swept
linearly in 16-, 32- and 64-bit code and cut into blocks where a translator ends them, and an 8-byte
block at every byte offset in the image's own code size), (b) a few thousand blocks of the Debian
kernel's text (the Linux guest's assets, see tests/linux_guest.py), (c) random bytes in all three
code sizes, truncated and undecodable input included, and hand-picked instructions for each kind the
decoder tells apart.  Also: the Python entry points agree, bad arguments are refused.
"""

from __future__ import annotations

import io
import random
import struct
from collections import Counter
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import firmware
from tests import decode_reference as ref
from vmm import decode
from vmm._decode import decode_block

IMAGES = sorted(firmware.BIN.glob("*.elf"))
BITS = (16, 32, 64)
ALL_FLAGS = (decode.ENDS_IN_BRANCH, decode.STARTS_WITH_REP, decode.ENDS_WITH_REP, decode.BRANCH_CONDITIONAL,
             decode.BRANCH_INDIRECT, decode.BRANCH_RETURN, decode.BRANCH_CALL, decode.CHANGES_MAPPING)


def _check(code: bytes, address: int, bits: int, seen: Counter | None = None) -> None:
    got, want = decode_block(code, address, bits), ref.reference_decode_block(code, address, bits)
    assert got == want, (code.hex(), hex(address), bits)
    if seen is not None:
        seen.update(flag for flag in ALL_FLAGS if got.flags & flag)
        seen["hooked"] += bool(got.hooked_offsets)
        seen["blocks"] += 1


def _executable_segments(path: Path) -> list[tuple[int, bytes, int]]:
    """(address, bytes, the image's code size by its ELF class) of each executable PT_LOAD segment."""
    with open(path, "rb") as f:
        elf = ELFFile(f)
        bits = 64 if elf.elfclass == 64 else 32
        return [(seg["p_vaddr"], seg.data(), bits) for seg in elf.iter_segments()
                if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1 and seg["p_filesz"]]


def _sweep(code: bytes, address: int, bits: int, max_insns: int = 32) -> list[tuple[int, int]]:
    """A linear sweep of ``code`` as blocks (start, end): a block ends after a branch or an
    instruction that may change the mapping (by the reference's own tests), after ``max_insns``
    instructions, and before what does not decode (which the sweep steps over a byte at a time); a
    REP string instruction starts a block, and the block before is also given with it at its end."""
    blocks = []
    pos = 0
    while pos < len(code):
        insns, n = decode._disasm(bits, code[pos:pos + 4096], address + pos, 0)
        if n == 0:
            pos += 1
            continue
        try:
            start, count = pos, 0
            for i in range(n):
                insn = insns[i]
                if ref._is_rep_string(insn) and count:     # it ends the block before (and starts its own)
                    blocks += [(start, insn.address - address + insn.size), (start, insn.address - address)]
                    start, count = insn.address - address, 0
                end = insn.address - address + insn.size
                count += 1
                if ref._is_branch(insn) or ref._changes_mapping(insn.mnemonic.decode(), insn) or count == max_insns:
                    blocks.append((start, end))
                    start, count = end, 0
            if count:
                blocks.append((start, end))
            pos = end
        finally:
            ref._lib.cs_free(insns, n)
    return blocks


def test_every_firmware_image_in_every_code_size_swept_linearly():
    assert len(IMAGES) > 30, "firmware not built: make -C firmware"
    seen: Counter = Counter()
    for path in IMAGES:
        for address, code, _ in _executable_segments(path):
            for bits in BITS:
                for start, end in _sweep(code, address, bits):
                    _check(code[start:end], address + start, bits, seen)
                    if end - start > 1:     # and cut short inside its last instruction
                        _check(code[start:end - 1], address + start, bits)
    # the images hold every kind of block the decoder tells apart
    assert all(seen[flag] for flag in ALL_FLAGS) and seen["hooked"], seen


def test_every_firmware_image_at_every_byte_offset():
    for path in IMAGES:
        for address, code, bits in _executable_segments(path):
            for offset in range(len(code)):
                _check(code[offset:offset + 8], address + offset, bits)


# -- (b) the Debian kernel ------------------------------------------------------------------------------

def _vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux inside a bzImage (Linux boot protocol: setup_sects at 0x1F1, payload_offset and
    payload_length at 0x248), for the compressions Python or lz4 decompress."""
    setup_sects = bzimage[0x1F1] or 4
    payload_offset, payload_length = struct.unpack_from("<II", bzimage, 0x248)
    start = (setup_sects + 1) * 512 + payload_offset
    payload = bzimage[start:start + payload_length]
    if payload[:2] == b"\x1f\x8b":
        import gzip
        return gzip.decompress(payload)
    if payload[:6] == b"\xfd7zXZ\x00":
        import lzma
        return lzma.decompress(payload)
    if payload[:4] == b"\x02\x21\x4c\x18":         # LZ4 legacy frame: 8 MiB blocks with 32-bit sizes
        lz4_block = pytest.importorskip("lz4.block")
        out, i = [], 4
        while i + 4 <= len(payload):
            (size,) = struct.unpack_from("<I", payload, i)
            if size == 0x184C2102:
                i += 4
                continue
            if i + 4 + size > len(payload):
                break       # the trailing uncompressed size
            out.append(lz4_block.decompress(payload[i + 4:i + 4 + size], uncompressed_size=8 << 20))
            i += 4 + size
        return b"".join(out)
    pytest.skip(f"the kernel's payload compression ({payload[:6].hex()}) is not one this test decompresses")


def test_debian_kernel_text(linux_assets):
    vmlinux = _vmlinux(Path(linux_assets.kernel).read_bytes())
    segments = _executable_segments_of(vmlinux)
    text_address, text = max(segments, key=lambda s: len(s[1]))
    rng = random.Random(8)
    # function entries from the kernel's System.map where there is one, else random offsets
    system_map = next(Path(linux_assets.kernel).parent.glob("System.map-*"), None)
    entries = []
    if system_map is not None:
        for line in system_map.read_text().splitlines():
            value, kind, _ = line.split(maxsplit=2)
            address = int(value, 16)
            if kind in "tT" and text_address <= address < text_address + len(text):
                entries.append(address - text_address)
    starts = rng.sample(entries, min(2000, len(entries))) + [rng.randrange(len(text)) for _ in range(1000)]
    seen: Counter = Counter()
    for offset in starts:
        for start, end in _sweep(text[offset:offset + 256], text_address + offset, 64)[:4]:
            _check(text[offset + start:offset + end], text_address + offset + start, 64, seen)
    for offset in rng.sample(range(len(text)), 1000):
        bits = rng.choice(BITS)
        _check(text[offset:offset + rng.randint(1, 64)], text_address + offset, bits, seen)
    assert seen["blocks"] > 3000 and seen["hooked"] and seen[decode.ENDS_IN_BRANCH], seen


def _executable_segments_of(elf_bytes: bytes) -> list[tuple[int, bytes]]:
    elf = ELFFile(io.BytesIO(elf_bytes))
    return [(seg["p_vaddr"], seg.data()) for seg in elf.iter_segments()
            if seg["p_type"] == "PT_LOAD" and seg["p_flags"] & 1 and seg["p_filesz"]]


# -- (c) random and hand-picked input -------------------------------------------------------------------

# Bytes that make the interesting instructions likely: prefixes, 0F escapes, ModRM forms.
_INTERESTING = st.sampled_from([0x0F, 0x66, 0x67, 0xF2, 0xF3, 0xF0, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x48, 0x41,
                                0xE8, 0xE9, 0xEB, 0xFF, 0xC3, 0xCF, 0xCD, 0xE2, 0xE3, 0xA4, 0xA5, 0xAA, 0xAB, 0xAC,
                                0xA6, 0xAE, 0x6C, 0x6D, 0x6E, 0x6F, 0xE4, 0xE6, 0xEC, 0xEE, 0xEA, 0x9A, 0x20, 0x21,
                                0x22, 0x23, 0x30, 0x32, 0x34, 0x35, 0x00, 0x01, 0x07, 0x09, 0x08, 0xAE, 0x38, 0x18,
                                0x28, 0xC0, 0xD8, 0xE0, 0x10, 0x2C, 0x25, 0x1C, 0x82, 0x74, 0x75, 0x85])
_BYTES = st.lists(st.one_of(st.integers(0, 255), _INTERESTING), max_size=48).map(bytes)

# One of each: (bits, code) -- hooked by mnemonic, by operand string, mapping changes at the end and
# elsewhere, REP string ops first/last, each branch kind, and look-alikes that are none of these.
HAND_PICKED = [
    (64, "0f32"), (64, "0f30"), (64, "e460"), (64, "ec"), (64, "e680"), (64, "ee"), (64, "6c"), (64, "f36d"),
    (64, "66ef"), (64, "f36e"), (64, "6f"), (64, "0f00d8"), (64, "0f00da"), (64, "0fae38"), (64, "660fae38"),
    (64, "0f09"), (64, "0f08"), (64, "cf"), (64, "48cf"), (32, "cf"), (16, "66cf"), (64, "0f34"), (64, "0f35"),
    (64, "480f35"), (32, "0f35"),
    (64, "440f20c0"), (64, "440f22c0"), (64, "0f22c0"), (64, "0f22d8"), (64, "0f22e0"), (64, "0f20c0"),
    (64, "0f20d8"), (64, "0f20e0"), (64, "0f21c0"), (64, "0f23c0"), (64, "0f23f8"), (32, "0f22d8"), (16, "0f22c0"),
    (64, "0f0138"), (64, "660f3882084889c0"), (64, "660f3882089090"), (32, "ea000000000800"),
    (32, "9a000000000800"), (64, "ff2c25000000009090"), (64, "ff1c25000000009090"), (64, "ff2c2500000000"),
    (64, "ff1c2500000000"), (64, "48ff28"), (16, "ea00000008"), (16, "ff2e0000"),
    (64, "ff2500000000"), (64, "ff1500000000"), (64, "ffe0"), (64, "ffd0"), (64, "e800000000"), (64, "e900000000"),
    (64, "eb00"), (64, "7400"), (64, "e200"), (64, "e100"), (64, "e000"), (64, "e300"), (64, "67e300"), (16, "e300"),
    (64, "c3"), (64, "c20800"), (64, "cb"), (64, "cd80"), (64, "cc"), (64, "0f05"), (64, "0f07"), (64, "480f07"),
    (64, "f3a4"), (64, "f3a5"), (64, "f348a5"), (64, "f3aa"), (64, "f348ab"), (64, "f3ac"), (64, "f3a6"),
    (64, "f2ae"), (64, "f2a6"), (64, "f3af"), (32, "f366a5"), (16, "f3a4"), (64, "a4"), (64, "f390"),
    (64, "f3a4f3a4"), (64, "90f3a4"), (64, "f3a490"), (64, "f20f10c0"), (64, "f30f10c0"), (64, "f3c3"),
    (64, "f2e800000000"), (64, "f2c3"), (64, "3effe0"), (64, "f00fb10f"),
    (64, "90" * 20), (64, "0f0b"), (64, ""), (64, "0f"), (64, "ff"), (32, "0f0138"), (64, "0f0138c3"),
]


@pytest.mark.parametrize(("bits", "code"), HAND_PICKED)
def test_hand_picked(bits, code):
    code = bytes.fromhex(code)
    for address in (0, 0x1000, 0xFFFF_FFF0 if bits != 64 else 0xFFFF_FFFF_FFFF_F000):
        _check(code, address, bits)
        for cut in range(len(code)):
            _check(code[:cut], address, bits)
    _check(code + code, 0x1000, bits)
    _check(bytes.fromhex("0f22d8") + code + bytes.fromhex("0f0138"), 0x1000, bits)


def test_the_hand_picked_cover_every_kind():
    seen: Counter = Counter()
    for bits, code in HAND_PICKED:
        _check(bytes.fromhex(code), 0x1000, bits, seen)
    assert all(seen[flag] for flag in ALL_FLAGS) and seen["hooked"], seen


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(code=_BYTES, bits=st.sampled_from(BITS), address=st.integers(0, 2**64 - 4096))
@example(code=b"", bits=64, address=0)
@example(code=b"\x0f\x22\xd8\x0f\x01\x38", bits=64, address=0xFFFFFFFF81000000)
def test_random_bytes(code, bits, address):
    if bits != 64:
        address &= 0xFFFF_FFFF
    _check(code, address, bits)


@settings(max_examples=300, deadline=None)
@given(code=st.binary(min_size=1, max_size=64), bits=st.sampled_from(BITS))
def test_random_bytes_as_bytearray_and_at_every_start(code, bits):
    assert decode_block(bytearray(code), 0x1000, bits) == decode_block(code, 0x1000, bits)
    for start in range(len(code)):
        _check(code[start:], 0x1000 + start, bits)


def test_python_entry_points():
    assert decode.decode_block is decode_block
    block = decode_block(bytes.fromhex("f3a40f22d8e800000000"), 0x1000)
    assert isinstance(block, decode.DecodedBlock)
    assert block == decode.DecodedBlock((0, 2, 5), decode.ENDS_IN_BRANCH | decode.STARTS_WITH_REP |
                                        decode.BRANCH_CALL, (2,))
    with pytest.raises(AttributeError):
        decode.no_such_name  # noqa: B018


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="not 16, 32 or 64"):
        decode_block(b"\x90", 0, 8)
    with pytest.raises(ValueError, match="at most 65535"):
        decode_block(b"\x90" * 65536, 0, 64)
    assert decode_block(b"\x90" * 65535, 0, 64).offsets == tuple(range(65535))
    with pytest.raises(OverflowError):
        decode_block(b"\x90", -1, 64)
