# SPDX-License-Identifier: GPL-2.0-or-later
"""Typing stub of vmm/_decode.pyx: the C block decoder (its C API is in vmm/_decode.pxd)."""

from vmm.decode import DecodedBlock

def decode_block(code: bytes | bytearray, address: int, bits: int = 64) -> DecodedBlock: ...
