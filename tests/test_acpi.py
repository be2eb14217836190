# SPDX-License-Identifier: GPL-2.0-or-later
"""ACPI tables: read back from the RSDP as an OS would, checksums, pointers, FADT, MADT, HPET, AML."""

from __future__ import annotations

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.acpi_parse import (
    Memory,
    byte_sum,
    decode_aml,
    decode_pkg_length,
    parse_facs,
    parse_fadt,
    parse_header,
    parse_hpet,
    parse_madt,
    parse_rsdp,
    root_entries,
)
from vmm.acpi import AcpiPlatform, _aml_pkg_length, build_acpi_tables

BIOS_AREA = 0xE0000
HPET_ADDRESS = 0xFED00000

# FADT Flags and IAPC_BOOT_ARCH bits, from the specification.
WBINVD, PROC_C1, PWR_BUTTON, SLP_BUTTON, TMR_VAL_EXT, RESET_REG_SUP, HW_REDUCED = (
    1 << 0, 1 << 2, 1 << 4, 1 << 5, 1 << 8, 1 << 10, 1 << 20
)
LEGACY_DEVICES, I8042 = 1 << 0, 1 << 1
SYSTEM_IO, SYSTEM_MEMORY = 1, 0
LEVEL_ACTIVE_HIGH = 0b1101


class Guest:
    """The tables as an OS finds them: RSDP, then each table by address."""

    def __init__(self, platform: AcpiPlatform, base: int = BIOS_AREA):
        self.tables = build_acpi_tables(platform, base)
        self.memory = Memory(base, self.tables.blob)
        self.rsdp = parse_rsdp(self.memory.read(self.tables.rsdp_address, 36))
        self.xsdt = self.memory.table(self.rsdp.xsdt_address)
        self.rsdt = self.memory.table(self.rsdp.rsdt_address)
        self.by_signature = {}
        for address in root_entries(self.xsdt, 8):
            self.by_signature[parse_header(self.memory.table(address)).signature] = address
        self.fadt = parse_fadt(self.table(b"FACP"))

    def table(self, signature: bytes) -> bytes:
        return self.memory.table(self.by_signature[signature])

    def all_tables(self) -> dict[bytes, int]:
        """Signature -> address of every table reachable from the RSDP, FACS excluded (it has no checksum)."""
        return {
            **self.by_signature,
            b"XSDT": self.rsdp.xsdt_address,
            b"RSDT": self.rsdp.rsdt_address,
            b"DSDT": self.fadt["X_DSDT"],
        }

    def madt(self):
        return parse_madt(self.table(b"APIC"))

    def dsdt_names(self):
        return decode_aml(self.memory.table(self.fadt["X_DSDT"])[36:])


def test_rsdp_comes_first_with_both_checksums():
    guest = Guest(AcpiPlatform())
    assert guest.tables.rsdp_address == guest.tables.base == BIOS_AREA
    rsdp = guest.rsdp
    assert rsdp.signature == b"RSD PTR "
    assert rsdp.revision == 2 and rsdp.length == 36
    assert rsdp.oem_id == b"PMUVMM"
    assert rsdp.v1_sum == 0 and rsdp.full_sum == 0


def test_a_bios_area_scan_finds_the_rsdp():
    guest = Guest(AcpiPlatform(), base=0xF0000)
    blob = guest.tables.blob
    found = [
        guest.tables.base + offset
        for offset in range(0, len(blob), 16)
        if blob[offset : offset + 8] == b"RSD PTR " and byte_sum(blob[offset : offset + 20]) == 0
    ]
    assert found == [guest.tables.rsdp_address]


@pytest.mark.parametrize("hpet_address", [None, HPET_ADDRESS])
@pytest.mark.parametrize("cpus", [1, 8])
def test_every_table_has_a_true_header_and_zero_checksum(cpus, hpet_address):
    guest = Guest(AcpiPlatform(cpus=cpus, hpet_address=hpet_address))
    tables = guest.all_tables()
    expected = {b"XSDT", b"RSDT", b"FACP", b"DSDT", b"APIC"} | ({b"HPET"} if hpet_address else set())
    assert set(tables) == expected
    for signature, address in tables.items():
        table = guest.memory.table(address)
        header = parse_header(table)
        assert header.signature == signature
        assert header.length == len(table) >= 36
        assert byte_sum(table) == 0, signature
        assert (header.oem_id, header.oem_table_id) == (b"PMUVMM", b"PMUVMM  ")
        assert header.creator_id.isascii() and len(header.creator_id) == 4


@pytest.mark.parametrize("hpet_address", [None, HPET_ADDRESS])
def test_xsdt_and_rsdt_list_the_same_tables(hpet_address):
    guest = Guest(AcpiPlatform(hpet_address=hpet_address))
    assert root_entries(guest.xsdt, 8) == root_entries(guest.rsdt, 4)
    expected = [b"FACP", b"APIC"] + ([b"HPET"] if hpet_address else [])
    assert sorted(guest.by_signature) == sorted(expected)
    assert parse_header(guest.xsdt).revision == parse_header(guest.rsdt).revision == 1


@pytest.mark.parametrize("base", [BIOS_AREA, 0xE0010, 0x9F030])  # 64-, 16- and 16-byte aligned
def test_tables_are_aligned_and_do_not_overlap(base):
    guest = Guest(AcpiPlatform(cpus=3, hpet_address=HPET_ADDRESS), base=base)
    extents = [(guest.tables.rsdp_address, 36), (guest.fadt["FIRMWARE_CTRL"], 64)]
    for address in guest.all_tables().values():
        assert address % 8 == 0
        extents.append((address, len(guest.memory.table(address))))
    assert guest.fadt["FIRMWARE_CTRL"] % 64 == 0
    extents.sort()
    for (start, length), (next_start, _) in pairwise(extents):
        assert start + length <= next_start
    last_start, last_length = extents[-1]
    assert last_start + last_length == guest.tables.end


def test_size_and_end_describe_the_whole_blob():
    tables = build_acpi_tables(AcpiPlatform(cpus=2), BIOS_AREA)
    assert tables.size == len(tables.blob)
    assert tables.end == BIOS_AREA + tables.size
    assert BIOS_AREA + tables.size <= 0x100000


def test_fadt_describes_full_acpi_hardware_in_io_space():
    guest = Guest(AcpiPlatform())
    fadt = guest.fadt
    header = parse_header(guest.table(b"FACP"))
    assert header.revision == 6 and header.length == 276
    assert fadt["SCI_INT"] == 9
    assert (fadt["SMI_CMD"], fadt["ACPI_ENABLE"], fadt["ACPI_DISABLE"]) == (0, 0, 0)
    assert (fadt["PM1a_EVT_BLK"], fadt["PM1_EVT_LEN"]) == (0x600, 4)
    assert (fadt["PM1a_CNT_BLK"], fadt["PM1_CNT_LEN"]) == (0x604, 2)
    assert (fadt["PM_TMR_BLK"], fadt["PM_TMR_LEN"]) == (0x608, 4)
    for absent in ("PM1b_EVT_BLK", "PM1b_CNT_BLK", "PM2_CNT_BLK", "GPE0_BLK", "GPE1_BLK"):
        assert fadt[absent] == 0
    assert fadt["PM2_CNT_LEN"] == fadt["GPE0_BLK_LEN"] == fadt["GPE1_BLK_LEN"] == 0
    flags = fadt["Flags"]
    assert flags & (WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | RESET_REG_SUP) == (
        WBINVD | PROC_C1 | PWR_BUTTON | SLP_BUTTON | RESET_REG_SUP
    )
    assert not flags & HW_REDUCED
    assert not flags & TMR_VAL_EXT  # a 24-bit PM timer
    assert fadt["IAPC_BOOT_ARCH"] == LEGACY_DEVICES | I8042
    assert fadt["P_LVL2_LAT"] > 100 and fadt["P_LVL3_LAT"] > 1000  # no C2/C3


def test_fadt_reset_register_is_a_byte_in_system_io():
    fadt = Guest(AcpiPlatform()).fadt
    reset = fadt["RESET_REG"]
    assert (reset.space_id, reset.bit_width, reset.bit_offset, reset.address) == (SYSTEM_IO, 8, 0, 0xCF9)
    assert reset.access_size == 1
    assert fadt["RESET_VALUE"] == 0x06


def test_fadt_extended_fields_agree_with_the_32_bit_ones():
    fadt = Guest(AcpiPlatform()).fadt
    assert fadt["FIRMWARE_CTRL"] != 0 and fadt["X_FIRMWARE_CTRL"] == 0   # ACPI 6: only one of them set
    assert fadt["X_DSDT"] == fadt["DSDT"] != 0
    for block, legacy_address, legacy_length in (
        ("X_PM1a_EVT_BLK", "PM1a_EVT_BLK", "PM1_EVT_LEN"),
        ("X_PM1a_CNT_BLK", "PM1a_CNT_BLK", "PM1_CNT_LEN"),
        ("X_PM_TMR_BLK", "PM_TMR_BLK", "PM_TMR_LEN"),
    ):
        gas = fadt[block]
        assert gas.space_id == SYSTEM_IO
        assert gas.address == fadt[legacy_address]
        assert gas.bit_width == 8 * fadt[legacy_length]
        assert gas.bit_offset == 0
    # Status and enable halves of PM1 event and PM1 control are 16-bit registers; the timer is 32-bit.
    assert [fadt[name].access_size for name in ("X_PM1a_EVT_BLK", "X_PM1a_CNT_BLK", "X_PM_TMR_BLK")] == [2, 2, 3]
    for absent in ("X_PM1b_EVT_BLK", "X_PM1b_CNT_BLK", "X_PM2_CNT_BLK", "X_GPE0_BLK", "X_GPE1_BLK",
                   "SLEEP_CONTROL_REG", "SLEEP_STATUS_REG"):
        assert fadt[absent].address == fadt[absent].bit_width == 0


def test_fadt_points_at_the_facs_and_the_dsdt():
    guest = Guest(AcpiPlatform())
    facs = parse_facs(guest.memory.read(guest.fadt["FIRMWARE_CTRL"], 64))
    assert (facs.signature, facs.length, facs.version) == (b"FACS", 64, 2)
    assert guest.memory.read(guest.fadt["FIRMWARE_CTRL"] + 8, 24) == bytes(24)  # no waking vector, lock free
    dsdt = parse_header(guest.memory.table(guest.fadt["X_DSDT"]))
    assert dsdt.signature == b"DSDT"
    assert dsdt.revision >= 2  # 64-bit AML integers


@pytest.mark.parametrize("cpus", [1, 8])
def test_madt_lists_every_cpu_the_ioapic_overrides_and_nmi(cpus):
    guest = Guest(AcpiPlatform(cpus=cpus))
    madt = guest.madt()
    # header and fixed fields, a local APIC each, the I/O APIC, two overrides, the NMI entry
    assert parse_header(guest.table(b"APIC")).length == 44 + 8 * cpus + 12 + 2 * 10 + 6
    assert madt.lapic_address == 0xFEE00000
    assert madt.flags == 1  # PCAT_COMPAT: dual 8259s present
    assert madt.local_apics == [(cpu, cpu, 1) for cpu in range(cpus)]
    assert madt.io_apics == [(0, 0xFEC00000, 0)]
    assert madt.overrides == [(0, 0, 2, 0), (0, 9, 9, LEVEL_ACTIVE_HIGH)]
    assert madt.lapic_nmis == [(0xFF, 0, 1)]


def test_madt_without_pics_clears_pcat_compat():
    assert Guest(AcpiPlatform(pic_present=False)).madt().flags == 0


def test_non_default_platform_values_reach_the_tables():
    platform = AcpiPlatform(
        cpus=2,
        ioapic_id=2,
        ioapic_address=0xFEC01000,
        lapic_address=0xFEE10000,
        sci_irq=11,
        pm1a_event_port=0xB000,
        pm1a_control_port=0xB004,
        pm_timer_port=0xB008,
        reset_port=0x64,
        reset_value=0xFE,
        oem_id=b"ABC",
    )
    guest = Guest(platform)
    fadt = guest.fadt
    assert fadt["SCI_INT"] == 11
    assert (fadt["PM1a_EVT_BLK"], fadt["PM1a_CNT_BLK"], fadt["PM_TMR_BLK"]) == (0xB000, 0xB004, 0xB008)
    assert (fadt["X_PM1a_EVT_BLK"].address, fadt["X_PM1a_CNT_BLK"].address) == (0xB000, 0xB004)
    assert fadt["X_PM_TMR_BLK"].address == 0xB008
    assert (fadt["RESET_REG"].address, fadt["RESET_VALUE"]) == (0x64, 0xFE)
    madt = guest.madt()
    assert madt.lapic_address == 0xFEE10000
    assert madt.io_apics == [(2, 0xFEC01000, 0)]
    assert madt.overrides[1] == (0, 11, 11, LEVEL_ACTIVE_HIGH)
    assert guest.rsdp.oem_id == b"ABC   "
    header = parse_header(guest.table(b"APIC"))
    assert (header.oem_id, header.oem_table_id) == (b"ABC   ", b"ABC     ")


@pytest.mark.parametrize("sleep_type", [0, 1, 5, 7])
def test_dsdt_defines_s5_and_the_system_bus_scope(sleep_type):
    names = Guest(AcpiPlatform(s5_sleep_type=sleep_type)).dsdt_names()
    assert names == {"\\_SB_": "scope", "\\_S5_": [sleep_type, sleep_type, 0, 0]}


def test_hpet_table_describes_the_timer_block():
    guest = Guest(AcpiPlatform(hpet_address=HPET_ADDRESS))
    hpet = parse_hpet(guest.table(b"HPET"))
    assert parse_header(guest.table(b"HPET")).length == 56
    assert (hpet.base.space_id, hpet.base.address) == (SYSTEM_MEMORY, HPET_ADDRESS)
    assert hpet.number == 0
    # The capabilities register's low half: revision 1, 3 comparators (field = count - 1), 64-bit counter.
    assert hpet.block_id & 0xFF == 1
    assert (hpet.block_id >> 8) & 0x1F == 2
    assert hpet.block_id & 1 << 13


def test_no_hpet_table_without_an_address():
    assert b"HPET" not in Guest(AcpiPlatform()).by_signature


@pytest.mark.parametrize(
    ("body_length", "encoded_length"),
    [(0, 1), (62, 1), (63, 2), (0xFFF - 2, 2), (0xFFF - 1, 3), (0xFFFFF - 3, 3), (0xFFFFF - 2, 4)],
)
def test_aml_pkg_length_counts_itself_and_uses_the_shortest_form(body_length, encoded_length):
    encoded = _aml_pkg_length(body_length)
    assert len(encoded) == encoded_length
    assert decode_pkg_length(encoded, 0) == (body_length + encoded_length, encoded_length)


@settings(max_examples=60, deadline=None)
@given(
    cpus=st.integers(1, 255),
    hpet=st.booleans(),
    paragraph=st.integers(0x100, 0xFFFFF - 0x100),
    sleep_type=st.integers(0, 7),
)
def test_any_valid_platform_reads_back_consistently(cpus, hpet, paragraph, sleep_type):
    platform = AcpiPlatform(cpus=cpus, hpet_address=HPET_ADDRESS if hpet else None, s5_sleep_type=sleep_type)
    guest = Guest(platform, base=paragraph * 16)
    for address in guest.all_tables().values():
        assert byte_sum(guest.memory.table(address)) == 0
    assert guest.rsdp.v1_sum == guest.rsdp.full_sum == 0
    assert [uid for uid, _, _ in guest.madt().local_apics] == list(range(cpus))
    assert guest.dsdt_names()["\\_S5_"] == [sleep_type, sleep_type, 0, 0]


@pytest.mark.parametrize(
    "fields",
    [
        {"cpus": 0},
        {"cpus": 256},
        {"ioapic_id": 16},
        {"ioapic_address": 0x1_0000_0000},
        {"lapic_address": 0},
        {"sci_irq": 0},
        {"sci_irq": 2},
        {"sci_irq": 16},
        {"s5_sleep_type": 8},
        {"reset_value": 0x100},
        {"pm_timer_port": 0x602},  # overlaps the PM1a event block
        {"reset_port": 0x605},  # inside the PM1a control block
        {"pm1a_event_port": 0},
        {"pm_timer_port": 0xFFFE},  # runs past the I/O space
        {"hpet_address": 0},
        {"oem_id": b"TOOLONG"},
        {"oem_id": b""},
        {"oem_id": b"BAD\x00"},
    ],
)
def test_bad_platforms_are_refused_in_one_line(fields):
    with pytest.raises(ValueError) as error:
        AcpiPlatform(**fields)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("base", [BIOS_AREA + 8, BIOS_AREA + 1, -16, (1 << 32) - 0x100])
def test_bad_bases_are_refused(base):
    with pytest.raises(ValueError, match="^acpi: "):
        build_acpi_tables(AcpiPlatform(), base)


def test_a_limit_the_tables_do_not_fit_is_refused():
    size = build_acpi_tables(AcpiPlatform(cpus=4), BIOS_AREA).size
    assert build_acpi_tables(AcpiPlatform(cpus=4), BIOS_AREA, limit=BIOS_AREA + size).size == size
    with pytest.raises(ValueError, match="limit"):
        build_acpi_tables(AcpiPlatform(cpus=4), BIOS_AREA, limit=BIOS_AREA + size - 1)
