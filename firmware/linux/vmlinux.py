# SPDX-License-Identifier: GPL-2.0-or-later
"""The uncompressed vmlinux inside a bzImage, for booting the same kernel through its PVH entry.

A bzImage's protected-mode code carries the compressed kernel at ``payload_offset`` (setup header
0x248, relative to the protected-mode code) for ``payload_length`` bytes (0x24C).  Debian's cloud
kernel compresses it with LZ4 in the legacy frame format: the magic 0x184C2102, then blocks of
(4-byte little-endian compressed size, LZ4 block data) that each decompress to at most 8 MiB, and
finally the 4-byte uncompressed size the kernel's build appends.  Block decoding is the ``lz4``
package's (python-lz4, a test dependency).

Not supported: the other compressions a bzImage may use (gzip, xz, zstd, lzma, lzo, bzip2).
"""

from __future__ import annotations

import struct
from pathlib import Path

from vmm.errors import LoadError
from vmm.linux_boot import parse_bzimage

PAYLOAD_FIELDS = 0x248              # payload_offset, payload_length (u32 each) in the setup header
LZ4_LEGACY_MAGIC = 0x184C2102
LZ4_LEGACY_BLOCK = 8 << 20          # the largest block of the legacy format, decompressed


def extract_vmlinux(bzimage: bytes) -> bytes:
    """The ELF vmlinux of an LZ4-compressed bzImage; LoadError for anything else."""
    import lz4.block

    kernel = parse_bzimage(bzimage)
    offset, length = struct.unpack_from("<II", bzimage, PAYLOAD_FIELDS)
    start = kernel.code_offset + offset
    payload = bzimage[start:start + length]
    if len(payload) < 8 or struct.unpack_from("<I", payload)[0] != LZ4_LEGACY_MAGIC:
        raise LoadError("bzImage payload is not LZ4 (legacy frame): only LZ4 kernels are extracted")
    end = len(payload) - 4                  # the appended uncompressed size
    expected = struct.unpack_from("<I", payload, end)[0]
    blocks, position = [], 4
    while position + 4 <= end:
        size = struct.unpack_from("<I", payload, position)[0]
        position += 4
        if size == LZ4_LEGACY_MAGIC:        # concatenated frames
            continue
        blocks.append(lz4.block.decompress(payload[position:position + size], uncompressed_size=LZ4_LEGACY_BLOCK))
        position += size
    vmlinux = b"".join(blocks)
    if len(vmlinux) != expected or vmlinux[:4] != b"\x7fELF":
        raise LoadError(f"bzImage payload decompressed to {len(vmlinux)} bytes, expected an ELF of {expected}")
    return vmlinux


def vmlinux_file(bzimage: Path, out: Path) -> Path:
    """Write ``bzimage``'s vmlinux to ``out`` (once: an existing file is kept) and return its path."""
    if not out.is_file():
        out.write_bytes(extract_vmlinux(bzimage.read_bytes()))
    return out
