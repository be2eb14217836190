# SPDX-License-Identifier: GPL-2.0-or-later
"""A small reader for ACPI tables, written from the specification's layouts, for checking vmm.acpi.

It reads a blob the way an OS reads guest memory: from the RSDP, through the XSDT/RSDT, to each
table, by absolute address.  Offsets are spelled out here rather than taken from vmm.acpi, so a
wrong layout there cannot agree with itself.  The AML decoder understands only what a tiny DSDT
needs (Scope, Name, Package, integer constants) and raises on anything else.

Not supported: tables other than RSDP, RSDT, XSDT, FADT, FACS, DSDT, MADT and HPET; MADT entry
types other than 0, 1, 2 and 4; AML beyond the encodings listed above.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass


class Memory:
    """A blob seen at its guest-physical address."""

    def __init__(self, base: int, blob: bytes):
        self.base = base
        self.blob = blob

    def read(self, address: int, length: int) -> bytes:
        offset = address - self.base
        if offset < 0 or offset + length > len(self.blob):
            raise AssertionError(f"{address:#x}+{length} lies outside the blob")
        return self.blob[offset : offset + length]

    def table(self, address: int) -> bytes:
        """The system description table at ``address``, as long as its header says."""
        (length,) = struct.unpack("<I", self.read(address + 4, 4))
        return self.read(address, length)


def byte_sum(data: bytes) -> int:
    return sum(data) & 0xFF


@dataclass
class Rsdp:
    signature: bytes
    oem_id: bytes
    revision: int
    rsdt_address: int
    length: int
    xsdt_address: int
    v1_sum: int  # byte sum of the first 20 bytes
    full_sum: int  # byte sum of all `length` bytes


def parse_rsdp(data: bytes) -> Rsdp:
    signature, _, oem_id, revision, rsdt, length, xsdt = struct.unpack_from("<8sB6sBIIQ", data)
    return Rsdp(signature, oem_id, revision, rsdt, length, xsdt, byte_sum(data[:20]), byte_sum(data[:length]))


@dataclass
class Header:
    signature: bytes
    length: int
    revision: int
    oem_id: bytes
    oem_table_id: bytes
    oem_revision: int
    creator_id: bytes
    creator_revision: int


HEADER_LENGTH = 36


def parse_header(table: bytes) -> Header:
    signature, length, revision, _, oem_id, table_id, oem_rev, creator, creator_rev = struct.unpack_from(
        "<4sIBB6s8sI4sI", table
    )
    return Header(signature, length, revision, oem_id, table_id, oem_rev, creator, creator_rev)


def root_entries(table: bytes, entry_size: int) -> list[int]:
    """The table addresses listed by an RSDT (4-byte entries) or XSDT (8-byte entries)."""
    body = table[HEADER_LENGTH:]
    assert len(body) % entry_size == 0
    fmt = {4: "<I", 8: "<Q"}[entry_size]
    return [struct.unpack_from(fmt, body, i)[0] for i in range(0, len(body), entry_size)]


@dataclass
class Gas:
    space_id: int
    bit_width: int
    bit_offset: int
    access_size: int
    address: int


def parse_gas(data: bytes, offset: int) -> Gas:
    return Gas(*struct.unpack_from("<BBBBQ", data, offset))


# FADT fields by offset (ACPI 6.x, "Fixed ACPI Description Table").
FADT_FIELDS = {
    "FIRMWARE_CTRL": (36, "I"),
    "DSDT": (40, "I"),
    "Preferred_PM_Profile": (45, "B"),
    "SCI_INT": (46, "H"),
    "SMI_CMD": (48, "I"),
    "ACPI_ENABLE": (52, "B"),
    "ACPI_DISABLE": (53, "B"),
    "PM1a_EVT_BLK": (56, "I"),
    "PM1b_EVT_BLK": (60, "I"),
    "PM1a_CNT_BLK": (64, "I"),
    "PM1b_CNT_BLK": (68, "I"),
    "PM2_CNT_BLK": (72, "I"),
    "PM_TMR_BLK": (76, "I"),
    "GPE0_BLK": (80, "I"),
    "GPE1_BLK": (84, "I"),
    "PM1_EVT_LEN": (88, "B"),
    "PM1_CNT_LEN": (89, "B"),
    "PM2_CNT_LEN": (90, "B"),
    "PM_TMR_LEN": (91, "B"),
    "GPE0_BLK_LEN": (92, "B"),
    "GPE1_BLK_LEN": (93, "B"),
    "P_LVL2_LAT": (96, "H"),
    "P_LVL3_LAT": (98, "H"),
    "IAPC_BOOT_ARCH": (109, "H"),
    "Flags": (112, "I"),
    "RESET_VALUE": (128, "B"),
    "FADT_Minor_Version": (131, "B"),
    "X_FIRMWARE_CTRL": (132, "Q"),
    "X_DSDT": (140, "Q"),
}
FADT_GAS_FIELDS = {
    "RESET_REG": 116,
    "X_PM1a_EVT_BLK": 148,
    "X_PM1b_EVT_BLK": 160,
    "X_PM1a_CNT_BLK": 172,
    "X_PM1b_CNT_BLK": 184,
    "X_PM2_CNT_BLK": 196,
    "X_PM_TMR_BLK": 208,
    "X_GPE0_BLK": 220,
    "X_GPE1_BLK": 232,
    "SLEEP_CONTROL_REG": 244,
    "SLEEP_STATUS_REG": 256,
}


def parse_fadt(table: bytes) -> dict:
    fields: dict = {
        name: struct.unpack_from("<" + fmt, table, offset)[0] for name, (offset, fmt) in FADT_FIELDS.items()
    }
    fields.update({name: parse_gas(table, offset) for name, offset in FADT_GAS_FIELDS.items()})
    return fields


@dataclass
class Facs:
    signature: bytes
    length: int
    version: int


def parse_facs(data: bytes) -> Facs:
    signature, length = struct.unpack_from("<4sI", data)
    return Facs(signature, length, data[32])


@dataclass
class Madt:
    lapic_address: int
    flags: int
    local_apics: list[tuple[int, int, int]]  # (processor UID, APIC ID, flags)
    io_apics: list[tuple[int, int, int]]  # (ID, address, GSI base)
    overrides: list[tuple[int, int, int, int]]  # (bus, source IRQ, GSI, flags)
    lapic_nmis: list[tuple[int, int, int]]  # (processor UID, flags, LINT#)


def parse_madt(table: bytes) -> Madt:
    lapic_address, flags = struct.unpack_from("<II", table, HEADER_LENGTH)
    madt = Madt(lapic_address, flags, [], [], [], [])
    offset = HEADER_LENGTH + 8
    while offset < len(table):
        kind, length = table[offset], table[offset + 1]
        expected_length = {0: 8, 1: 12, 2: 10, 4: 6}[kind]
        assert length == expected_length, f"MADT entry type {kind} has length {length}"
        if kind == 0:
            madt.local_apics.append(struct.unpack_from("<BBI", table, offset + 2))
        elif kind == 1:
            uid, _, address, gsi_base = struct.unpack_from("<BBII", table, offset + 2)
            madt.io_apics.append((uid, address, gsi_base))
        elif kind == 2:
            madt.overrides.append(struct.unpack_from("<BBIH", table, offset + 2))
        else:
            madt.lapic_nmis.append(struct.unpack_from("<BHB", table, offset + 2))
        offset += length
    assert offset == len(table), "the last MADT entry runs past the table"
    return madt


@dataclass
class Hpet:
    block_id: int
    base: Gas
    number: int


def parse_hpet(table: bytes) -> Hpet:
    (block_id,) = struct.unpack_from("<I", table, 36)
    return Hpet(block_id, parse_gas(table, 40), table[52])


def decode_pkg_length(aml: bytes, offset: int) -> tuple[int, int]:
    """(PkgLength value, offset just after its encoding)."""
    lead = aml[offset]
    follow = lead >> 6
    if follow == 0:
        return lead & 0x3F, offset + 1
    value = lead & 0x0F
    for i in range(follow):
        value |= aml[offset + 1 + i] << (4 + 8 * i)
    return value, offset + 1 + follow


def decode_aml(aml: bytes) -> dict[str, object]:
    """Absolute names defined by a TermList -> their values: a list for a Package, "scope" for a Scope."""
    names: dict[str, object] = {}
    _decode_terms(aml, 0, len(aml), names)
    return names


def _decode_terms(aml: bytes, offset: int, end: int, names: dict) -> None:
    while offset < end:
        opcode = aml[offset]
        if opcode == 0x10:  # ScopeOp PkgLength NameString TermList
            length, body = decode_pkg_length(aml, offset + 1)
            scope_end = offset + 1 + length
            name, body = _decode_root_name(aml, body)
            names[name] = "scope"
            _decode_terms(aml, body, scope_end, names)
            offset = scope_end
        elif opcode == 0x08:  # NameOp NameString DataRefObject
            name, offset = _decode_root_name(aml, offset + 1)
            names[name], offset = _decode_data(aml, offset)
        else:
            raise AssertionError(f"unexpected AML opcode {opcode:#04x} at {offset}")
    assert offset == end, "an AML term runs past its enclosing scope"


def _decode_root_name(aml: bytes, offset: int) -> tuple[str, int]:
    assert aml[offset : offset + 1] == b"\\", "expected a root-relative name"
    segment = aml[offset + 1 : offset + 5]
    assert len(segment) == 4 and all(c == 0x5F or 0x41 <= c <= 0x5A or 0x30 <= c <= 0x39 for c in segment)
    assert not 0x30 <= segment[0] <= 0x39, "a name segment starts with a letter or '_'"
    return "\\" + segment.decode(), offset + 5


def _decode_data(aml: bytes, offset: int) -> tuple[object, int]:
    opcode = aml[offset]
    if opcode == 0x00:  # ZeroOp
        return 0, offset + 1
    if opcode == 0x01:  # OneOp
        return 1, offset + 1
    if opcode == 0x0A:  # BytePrefix ByteData
        return aml[offset + 1], offset + 2
    if opcode == 0x12:  # PackageOp PkgLength NumElements PackageElementList
        length, body = decode_pkg_length(aml, offset + 1)
        package_end = offset + 1 + length
        count, body = aml[body], body + 1
        elements = []
        while body < package_end:
            element, body = _decode_data(aml, body)
            elements.append(element)
        assert body == package_end and len(elements) == count, "package length or element count is wrong"
        return elements, package_end
    raise AssertionError(f"unexpected AML data opcode {opcode:#04x} at {offset}")
