# SPDX-License-Identifier: GPL-2.0-or-later
"""ACPI tables that let a stock Linux kernel find the machine's interrupt controllers and PM hardware.

:func:`build_acpi_tables` lays out RSDP, XSDT, RSDT, FADT, FACS, DSDT, MADT and, when the platform
has one, an HPET table in one blob for the guest-physical window starting at ``base``; every pointer
in it is an absolute guest-physical address.  The RSDP comes first, so a window inside the BIOS area
0xE0000-0xFFFFF puts it where an OS that scans for ``"RSD PTR "`` finds it (an OS can also be
handed :attr:`AcpiTables.rsdp_address` directly, e.g. Linux's ``boot_params.acpi_rsdp_addr``).  The
other tables are 8-byte aligned, the FACS 64-byte aligned as the specification requires.  The caller
marks ``[base, base + size)`` in the E820 map as ACPI data or reserved; Linux reclaims neither, so the
FACS (which belongs in NVS memory) is safe there too.

The platform (:class:`AcpiPlatform`) is a PC with full, not hardware-reduced, ACPI:

* Fixed hardware in system I/O space: a PM1a event block (16-bit status + 16-bit enable), a 16-bit
  PM1a control block, a 24-bit PM timer and a reset register (``reset_value`` written to
  ``reset_port``).  No PM1b, PM2 or GPE blocks, no fixed-feature power or sleep button.
* ACPI mode is always on: SMI_CMD is 0, which tells the OS there is no mode switch to make, so
  the PM device must read SCI_EN (bit 0 of PM1 control) as 1.
* Poweroff: the DSDT's ``\\_S5_`` package gives ``s5_sleep_type`` as SLP_TYP, so the OS writes
  ``s5_sleep_type << 10 | SLP_EN`` to PM1a control; the PM device decodes that value.
* Interrupts: local APICs with IDs and processor UIDs 0..cpus-1, all enabled, LINT1 of each wired
  to NMI; one I/O APIC whose pin n is GSI n, ISA IRQ n arriving on GSI n except the PIT's IRQ 0
  (GSI 2) and the SCI (level-triggered, active high).  ``pic_present`` says the dual 8259s exist.

Default I/O ports: PM1a event 0x600-0x603, PM1a control 0x604-0x605, PM timer 0x608-0x60B (above
the 10-bit ISA range, clear of the VMM's other ports) and reset 0xCF9 with value 0x06 (full CPU
reset).  The I/O APIC ID defaults to 0, its ID register's reset value: local and I/O APIC IDs
live in separate namespaces since APIC messages go over the system bus, so it does not clash with
CPU 0.

Not supported: hardware-reduced ACPI; x2APIC entries, hence at most 255 CPUs (xAPIC IDs below
0xFF); more than one I/O APIC; PCI (no MCFG, no host bridge or _PRT in the DSDT); SSDTs;
processor objects in the DSDT; sleep states other than S5; GPE blocks; NUMA (SRAT/SLIT); CPU
hot-plug.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import struct
from itertools import pairwise
from typing import NamedTuple

#: The HPET's capabilities register (low 32 bits) as the HPET table repeats it: revision 1, three
#: comparators (the field holds count - 1), 64-bit main counter, legacy replacement routing capable,
#: PCI vendor ID 0x8086.  An HPET model should report the same value.
DEFAULT_HPET_BLOCK_ID = 0x8086 << 16 | 1 << 15 | 1 << 13 | (3 - 1) << 8 | 0x01

# Table header fields shared by every table this module writes.
OEM_REVISION = 1
CREATOR_ID = b"PMUV"
CREATOR_REVISION = 1

SDT_HEADER_LENGTH = 36
SDT_CHECKSUM_OFFSET = 9
TABLE_ALIGNMENT = 8

RSDP_SIGNATURE = b"RSD PTR "
RSDP_REVISION = 2  # ACPI 2.0+ layout: adds Length, XsdtAddress and the extended checksum
RSDP_LENGTH = 36
RSDP_V1_LENGTH = 20  # the ACPI 1.0 part, which the first checksum covers
RSDP_CHECKSUM_OFFSET = 8
RSDP_EXTENDED_CHECKSUM_OFFSET = 32
RSDP_ALIGNMENT = 16  # OS scans look at 16-byte boundaries only

RSDT_REVISION = 1
XSDT_REVISION = 1

FADT_REVISION = 6  # ACPI 6.0 layout, 276 bytes, ending with the hypervisor vendor identity
FADT_MINOR_REVISION = 0

# FADT Flags.
FADT_WBINVD = 1 << 0  # WBINVD flushes caches correctly (the only cache flush the OS may need)
FADT_PROC_C1 = 1 << 2  # HLT (C1) works on every processor
FADT_PWR_BUTTON = 1 << 4  # set: no fixed-feature power button
FADT_SLP_BUTTON = 1 << 5  # set: no fixed-feature sleep button
FADT_FIX_RTC = 1 << 6  # set: no RTC wake status in the PM1 event block
FADT_RESET_REG_SUP = 1 << 10  # RESET_REG/RESET_VALUE reset the machine

# FADT IAPC_BOOT_ARCH flags.
BOOT_ARCH_LEGACY_DEVICES = 1 << 0  # ISA devices (PIT, UART, ...) that no ACPI device describes
BOOT_ARCH_8042 = 1 << 1  # an i8042 keyboard controller (the VMM's reset line)

# P_LVL2_LAT above 100 us and P_LVL3_LAT above 1000 us say "C2/C3 not supported".
C2_NOT_SUPPORTED_LATENCY = 101
C3_NOT_SUPPORTED_LATENCY = 1001

PM1_EVENT_LENGTH = 4  # 16-bit PM1_STS then 16-bit PM1_EN
PM1_CONTROL_LENGTH = 2
PM_TIMER_LENGTH = 4
RESET_REGISTER_LENGTH = 1
SLP_TYP_MAX = 7  # SLP_TYP is PM1 control bits 10-12

# Generic Address Structure: address space IDs and access sizes.
GAS_SYSTEM_MEMORY = 0
GAS_SYSTEM_IO = 1
GAS_ACCESS_UNDEFINED = 0
GAS_ACCESS_BYTE = 1
GAS_ACCESS_WORD = 2
GAS_ACCESS_DWORD = 3
NO_BLOCK = bytes(12)  # an all-zero Generic Address Structure: the register block is absent

FACS_SIGNATURE = b"FACS"
FACS_LENGTH = 64
FACS_VERSION = 2
FACS_ALIGNMENT = 64

DSDT_REVISION = 2  # 2 or more: AML integers are 64 bits wide

MADT_REVISION = 3
MADT_PCAT_COMPAT = 1 << 0
MADT_LOCAL_APIC = 0
MADT_IO_APIC = 1
MADT_INTERRUPT_OVERRIDE = 2
MADT_LOCAL_APIC_NMI = 4
LOCAL_APIC_ENABLED = 1 << 0
ALL_PROCESSORS = 0xFF  # processor UID meaning "every processor" in a Local APIC NMI entry
ISA_BUS = 0
# MPS INTI flags: polarity in bits 0-1, trigger mode in bits 2-3; 0 means "as the bus defines",
# which for ISA is edge-triggered, active high.
INTI_CONFORMING = 0
INTI_ACTIVE_HIGH = 0b01
INTI_LEVEL_TRIGGERED = 0b11 << 2
PIT_IRQ = 0
PIT_GSI = 2  # the PIT's output is wired to I/O APIC pin 2 (pin 0 takes the 8259's INTR)
CASCADE_IRQ = 2
NMI_LINT = 1
IO_APIC_MAX_ID = 15  # the I/O APIC ID register holds 4 bits

HPET_REVISION = 1
HPET_MIN_PERIODIC_TICK = 128  # main counter ticks; Linux reads the HPET's own registers instead

# AML opcodes and prefixes (ACPI specification, "ACPI Machine Language Specification").
AML_ZERO_OP = 0x00
AML_ONE_OP = 0x01
AML_NAME_OP = 0x08
AML_BYTE_PREFIX = 0x0A
AML_SCOPE_OP = 0x10
AML_PACKAGE_OP = 0x12
AML_ROOT_CHAR = b"\\"

MAX_CPUS = 255
FOUR_GIB = 1 << 32


class _AcpiPlatformFields(NamedTuple):
    cpus: int = 1
    ioapic_id: int = 0
    ioapic_address: int = 0xFEC00000
    lapic_address: int = 0xFEE00000
    pic_present: bool = True
    sci_irq: int = 9
    pm1a_event_port: int = 0x600
    pm1a_control_port: int = 0x604
    pm_timer_port: int = 0x608
    reset_port: int = 0xCF9
    reset_value: int = 0x06
    s5_sleep_type: int = 0
    hpet_address: int | None = None
    hpet_block_id: int = DEFAULT_HPET_BLOCK_ID
    oem_id: bytes = b"PMUVMM"


class AcpiPlatform(_AcpiPlatformFields):
    """What the tables describe; the values must match the VMM's devices.  Checked on creation.

    An immutable NamedTuple whose constructor checks, not a frozen dataclass: Python 3.11 compiles a
    dataclass's methods from source text when the class is created, and every machine imports this."""

    __slots__ = ()

    def __new__(cls, *args, **kwargs):
        platform = super().__new__(cls, *args, **kwargs)
        platform._check()
        return platform

    @classmethod
    def _make(cls, iterable):
        return cls(*iterable)       # so that _replace checks too

    def _check(self):
        if not 1 <= self.cpus <= MAX_CPUS:
            raise ValueError(f"acpi: cpus must be 1..{MAX_CPUS}, not {self.cpus}")
        if not 0 <= self.ioapic_id <= IO_APIC_MAX_ID:
            raise ValueError(f"acpi: ioapic_id must be 0..{IO_APIC_MAX_ID}, not {self.ioapic_id}")
        for name in ("ioapic_address", "lapic_address"):
            _check_range(name, getattr(self, name), 1, FOUR_GIB - 1)
        # The SCI needs an override entry of its own: not the PIT's IRQ 0 or the cascade IRQ 2.
        if not 0 <= self.sci_irq <= 15 or self.sci_irq in (PIT_IRQ, CASCADE_IRQ):
            raise ValueError(f"acpi: sci_irq must be an ISA IRQ other than 0 and 2, not {self.sci_irq}")
        _check_range("reset_value", self.reset_value, 0, 0xFF)
        _check_range("s5_sleep_type", self.s5_sleep_type, 0, SLP_TYP_MAX)
        if self.hpet_address is not None:
            _check_range("hpet_address", self.hpet_address, 1, (1 << 64) - 1)
        _check_range("hpet_block_id", self.hpet_block_id, 0, FOUR_GIB - 1)
        if not 1 <= len(self.oem_id) <= 6 or not all(0x20 <= c < 0x7F for c in self.oem_id):
            raise ValueError(f"acpi: oem_id must be 1-6 printable ASCII bytes, not {self.oem_id!r}")
        self._check_port_blocks()

    def _check_port_blocks(self):
        blocks = sorted(
            (port, port + length, name)
            for name, port, length in (
                ("pm1a_event_port", self.pm1a_event_port, PM1_EVENT_LENGTH),
                ("pm1a_control_port", self.pm1a_control_port, PM1_CONTROL_LENGTH),
                ("pm_timer_port", self.pm_timer_port, PM_TIMER_LENGTH),
                ("reset_port", self.reset_port, RESET_REGISTER_LENGTH),
            )
        )
        for start, end, name in blocks:
            # Port 0 would read as "block absent" in the FADT.
            _check_range(name, start, 1, 0x10000 - (end - start))
        for (_, end, name), (next_start, _, next_name) in pairwise(blocks):
            if end > next_start:
                raise ValueError(f"acpi: the {name} and {next_name} blocks overlap")


class AcpiTables(NamedTuple):
    """The laid-out tables: copy :attr:`blob` to guest-physical :attr:`base`."""

    base: int
    blob: bytes
    rsdp_address: int

    @property
    def size(self) -> int:
        """Bytes from :attr:`base` to mark in the E820 map."""
        return len(self.blob)

    @property
    def end(self) -> int:
        """The first guest-physical address after the tables."""
        return self.base + len(self.blob)


def build_acpi_tables(platform: AcpiPlatform, base: int, limit: int | None = None) -> AcpiTables:
    """Lay out the tables for ``platform`` at guest-physical ``base`` (16-byte aligned).

    ``limit``, when given, is the end of the window the tables must fit in (exclusive).
    """
    if base < 0 or base % RSDP_ALIGNMENT:
        raise ValueError(f"acpi: base {base:#x} is not a 16-byte aligned address")
    layout = _Layout(base)
    # The RSDP has to come first, but it points at tables not placed yet: reserve its bytes now and
    # fill them in last.  Every other table only points at tables placed before it.
    rsdp_address = layout.place(bytes(RSDP_LENGTH), RSDP_ALIGNMENT)
    facs_address = layout.place(_facs(), FACS_ALIGNMENT)
    dsdt_address = layout.place(_sdt(b"DSDT", DSDT_REVISION, _dsdt_aml(platform), platform), TABLE_ALIGNMENT)
    described = [
        layout.place(_fadt(platform, facs_address, dsdt_address), TABLE_ALIGNMENT),
        layout.place(_madt(platform), TABLE_ALIGNMENT),
    ]
    if platform.hpet_address is not None:
        described.append(layout.place(_hpet(platform), TABLE_ALIGNMENT))
    rsdt_body = b"".join(struct.pack("<I", address) for address in described)
    xsdt_body = b"".join(struct.pack("<Q", address) for address in described)
    rsdt_address = layout.place(_sdt(b"RSDT", RSDT_REVISION, rsdt_body, platform), TABLE_ALIGNMENT)
    xsdt_address = layout.place(_sdt(b"XSDT", XSDT_REVISION, xsdt_body, platform), TABLE_ALIGNMENT)
    layout.overwrite(rsdp_address, _rsdp(platform, rsdt_address, xsdt_address))

    end = base + len(layout.blob)
    if limit is not None and end > limit:
        raise ValueError(f"acpi: the tables need {base:#x}-{end:#x}, past the limit {limit:#x}")
    return AcpiTables(base=base, blob=bytes(layout.blob), rsdp_address=rsdp_address)


class _Layout:
    """The blob being filled, addressed by guest-physical address."""

    def __init__(self, base: int):
        self.base = base
        self.blob = bytearray()

    def place(self, table: bytes, alignment: int) -> int:
        """Append ``table`` at the next ``alignment``-aligned address and return that address."""
        address = -(-(self.base + len(self.blob)) // alignment) * alignment
        if address + len(table) > FOUR_GIB:
            raise ValueError(f"acpi: a table at {address:#x} would cross 4 GiB, where the RSDT cannot point")
        self.blob += bytes(address - self.base - len(self.blob))
        self.blob += table
        return address

    def overwrite(self, address: int, table: bytes) -> None:
        offset = address - self.base
        self.blob[offset : offset + len(table)] = table


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ValueError(f"acpi: {name} must be {low:#x}..{high:#x}, not {value:#x}")


def _checksummed(table: bytes, checksum_offset: int, length: int | None = None) -> bytes:
    """``table`` with the byte at ``checksum_offset`` set so its first ``length`` bytes sum to 0 (mod 256)."""
    covered = table[: len(table) if length is None else length]
    data = bytearray(table)
    data[checksum_offset] = -sum(covered) & 0xFF  # the checksum byte is still 0 here
    return bytes(data)


def _oem_fields(platform: AcpiPlatform) -> tuple[bytes, bytes]:
    """OEM ID (6 bytes) and OEM table ID (8 bytes), both space-padded."""
    return platform.oem_id.ljust(6, b" "), platform.oem_id.ljust(8, b" ")


def _sdt(signature: bytes, revision: int, body: bytes, platform: AcpiPlatform) -> bytes:
    """A system description table: the common 36-byte header, then ``body``."""
    oem_id, oem_table_id = _oem_fields(platform)
    header = struct.pack(
        "<4sIBB6s8sI4sI",
        signature,
        SDT_HEADER_LENGTH + len(body),
        revision,
        0,  # checksum, filled in below
        oem_id,
        oem_table_id,
        OEM_REVISION,
        CREATOR_ID,
        CREATOR_REVISION,
    )
    return _checksummed(header + body, SDT_CHECKSUM_OFFSET)


def _pack_fields(fields: list[tuple[str, str, int | bytes]]) -> bytes:
    """Pack ``(field name, struct format, value)`` triples little-endian; the names only document."""
    return struct.pack("<" + "".join(fmt for _, fmt, _ in fields), *(value for _, _, value in fields))


def _gas(space: int, bit_width: int, access_size: int, address: int) -> bytes:
    """A Generic Address Structure (register bit offset 0)."""
    return struct.pack("<BBBBQ", space, bit_width, 0, access_size, address)


def _io_block(port: int, length: int, access_size: int) -> bytes:
    return _gas(GAS_SYSTEM_IO, length * 8, access_size, port)


def _rsdp(platform: AcpiPlatform, rsdt_address: int, xsdt_address: int) -> bytes:
    oem_id, _ = _oem_fields(platform)
    rsdp = struct.pack(
        "<8sB6sBIIQB3x",
        RSDP_SIGNATURE,
        0,  # checksum of the first 20 bytes
        oem_id,
        RSDP_REVISION,
        rsdt_address,
        RSDP_LENGTH,
        xsdt_address,
        0,  # extended checksum, of all 36 bytes
    )
    rsdp = _checksummed(rsdp, RSDP_CHECKSUM_OFFSET, RSDP_V1_LENGTH)
    return _checksummed(rsdp, RSDP_EXTENDED_CHECKSUM_OFFSET)


def _facs() -> bytes:
    # Everything but the signature, length and version is the OS's to use, or zero: no hardware
    # signature (no S4 resume to check), no waking vector yet, global lock free.
    return struct.pack("<4sI24xB31x", FACS_SIGNATURE, FACS_LENGTH, FACS_VERSION)


def _fadt(platform: AcpiPlatform, facs_address: int, dsdt_address: int) -> bytes:
    pm1a_event = _io_block(platform.pm1a_event_port, PM1_EVENT_LENGTH, GAS_ACCESS_WORD)
    pm1a_control = _io_block(platform.pm1a_control_port, PM1_CONTROL_LENGTH, GAS_ACCESS_WORD)
    pm_timer = _io_block(platform.pm_timer_port, PM_TIMER_LENGTH, GAS_ACCESS_DWORD)
    body = _pack_fields(
        [
            ("FIRMWARE_CTRL", "I", facs_address),
            ("DSDT", "I", dsdt_address),
            ("reserved (ACPI 1.0 INT_MODEL)", "B", 0),
            ("Preferred_PM_Profile: unspecified", "B", 0),
            ("SCI_INT", "H", platform.sci_irq),
            ("SMI_CMD: none, ACPI mode is always on", "I", 0),
            ("ACPI_ENABLE", "B", 0),
            ("ACPI_DISABLE", "B", 0),
            ("S4BIOS_REQ", "B", 0),
            ("PSTATE_CNT", "B", 0),
            ("PM1a_EVT_BLK", "I", platform.pm1a_event_port),
            ("PM1b_EVT_BLK", "I", 0),
            ("PM1a_CNT_BLK", "I", platform.pm1a_control_port),
            ("PM1b_CNT_BLK", "I", 0),
            ("PM2_CNT_BLK", "I", 0),
            ("PM_TMR_BLK", "I", platform.pm_timer_port),
            ("GPE0_BLK", "I", 0),
            ("GPE1_BLK", "I", 0),
            ("PM1_EVT_LEN", "B", PM1_EVENT_LENGTH),
            ("PM1_CNT_LEN", "B", PM1_CONTROL_LENGTH),
            ("PM2_CNT_LEN", "B", 0),
            ("PM_TMR_LEN", "B", PM_TIMER_LENGTH),
            ("GPE0_BLK_LEN", "B", 0),
            ("GPE1_BLK_LEN", "B", 0),
            ("GPE1_BASE", "B", 0),
            ("CST_CNT", "B", 0),
            ("P_LVL2_LAT", "H", C2_NOT_SUPPORTED_LATENCY),
            ("P_LVL3_LAT", "H", C3_NOT_SUPPORTED_LATENCY),
            ("FLUSH_SIZE: unused with WBINVD", "H", 0),
            ("FLUSH_STRIDE", "H", 0),
            ("DUTY_OFFSET", "B", 0),
            ("DUTY_WIDTH: no throttling", "B", 0),
            ("DAY_ALRM: no RTC day alarm", "B", 0),
            ("MON_ALRM", "B", 0),
            ("CENTURY: no RTC century register", "B", 0),
            ("IAPC_BOOT_ARCH", "H", BOOT_ARCH_LEGACY_DEVICES | BOOT_ARCH_8042),
            ("reserved", "B", 0),
            (
                "Flags",
                "I",
                FADT_WBINVD | FADT_PROC_C1 | FADT_PWR_BUTTON | FADT_SLP_BUTTON | FADT_FIX_RTC | FADT_RESET_REG_SUP,
            ),
            ("RESET_REG", "12s", _io_block(platform.reset_port, RESET_REGISTER_LENGTH, GAS_ACCESS_BYTE)),
            ("RESET_VALUE", "B", platform.reset_value),
            ("ARM_BOOT_ARCH", "H", 0),
            ("FADT Minor Version", "B", FADT_MINOR_REVISION),
            # ACPI 6: X_FIRMWARE_CTRL must be zero when FIRMWARE_CTRL is used (Linux lists both otherwise).
            ("X_FIRMWARE_CTRL", "Q", 0),
            ("X_DSDT", "Q", dsdt_address),
            ("X_PM1a_EVT_BLK", "12s", pm1a_event),
            ("X_PM1b_EVT_BLK", "12s", NO_BLOCK),
            ("X_PM1a_CNT_BLK", "12s", pm1a_control),
            ("X_PM1b_CNT_BLK", "12s", NO_BLOCK),
            ("X_PM2_CNT_BLK", "12s", NO_BLOCK),
            ("X_PM_TMR_BLK", "12s", pm_timer),
            ("X_GPE0_BLK", "12s", NO_BLOCK),
            ("X_GPE1_BLK", "12s", NO_BLOCK),
            ("SLEEP_CONTROL_REG: hardware-reduced only", "12s", NO_BLOCK),
            ("SLEEP_STATUS_REG", "12s", NO_BLOCK),
            ("Hypervisor Vendor Identity", "Q", 0),
        ]
    )
    return _sdt(b"FACP", FADT_REVISION, body, platform)


def _madt(platform: AcpiPlatform) -> bytes:
    flags = MADT_PCAT_COMPAT if platform.pic_present else 0
    fixed_fields = struct.pack("<II", platform.lapic_address, flags)
    entries = []
    for cpu in range(platform.cpus):
        # type, length, ACPI processor UID, local APIC ID, flags
        entries.append(struct.pack("<BBBBI", MADT_LOCAL_APIC, 8, cpu, cpu, LOCAL_APIC_ENABLED))
    # type, length, I/O APIC ID, reserved, address, GSI base
    entries.append(struct.pack("<BBBxII", MADT_IO_APIC, 12, platform.ioapic_id, platform.ioapic_address, 0))
    for irq, gsi, inti_flags in (
        (PIT_IRQ, PIT_GSI, INTI_CONFORMING),
        (platform.sci_irq, platform.sci_irq, INTI_LEVEL_TRIGGERED | INTI_ACTIVE_HIGH),
    ):
        # type, length, bus, source (bus-relative IRQ), GSI, MPS INTI flags
        entries.append(struct.pack("<BBBBIH", MADT_INTERRUPT_OVERRIDE, 10, ISA_BUS, irq, gsi, inti_flags))
    # type, length, ACPI processor UID, MPS INTI flags, LINT#
    entries.append(struct.pack("<BBBHB", MADT_LOCAL_APIC_NMI, 6, ALL_PROCESSORS, INTI_CONFORMING, NMI_LINT))
    return _sdt(b"APIC", MADT_REVISION, fixed_fields + b"".join(entries), platform)


def _hpet(platform: AcpiPlatform) -> bytes:
    body = _pack_fields(
        [
            ("Event Timer Block ID", "I", platform.hpet_block_id),
            ("Base Address", "12s", _gas(GAS_SYSTEM_MEMORY, 64, GAS_ACCESS_UNDEFINED, platform.hpet_address)),
            ("HPET Number", "B", 0),
            ("Main Counter Minimum Clock_tick in Periodic Mode", "H", HPET_MIN_PERIODIC_TICK),
            ("Page Protection: none claimed", "B", 0),
        ]
    )
    return _sdt(b"HPET", HPET_REVISION, body, platform)


def _dsdt_aml(platform: AcpiPlatform) -> bytes:
    """Scope (\\_SB) {} and Name (\\_S5_, Package () {SLP_TYPa, SLP_TYPb, 0, 0})."""
    sleep_type = platform.s5_sleep_type
    return _aml_scope("_SB_", b"") + _aml_name("_S5_", _aml_package([sleep_type, sleep_type, 0, 0]))


def _aml_root_name(segment: str) -> bytes:
    """A NameString for a four-character name segment directly under the root."""
    return AML_ROOT_CHAR + segment.encode("ascii")


def _aml_pkg_length(body_length: int) -> bytes:
    """The PkgLength encoding for ``body_length`` bytes that follow it; its value counts itself too.

    One byte holds lengths up to 63 (bits 0-5).  Otherwise bits 6-7 of the lead byte say how many
    (1-3) bytes follow; the lead byte keeps the low 4 bits and the following bytes the rest.
    """
    if body_length + 1 <= 0x3F:
        return bytes([body_length + 1])
    for extra_bytes in (1, 2, 3):
        total = body_length + 1 + extra_bytes
        if total < 1 << (4 + 8 * extra_bytes):
            return bytes([extra_bytes << 6 | total & 0x0F]) + (total >> 4).to_bytes(extra_bytes, "little")
    raise ValueError(f"acpi: AML package of {body_length} bytes is too long")


def _aml_integer(value: int) -> bytes:
    """ZeroOp, OneOp or a BytePrefix constant: the DSDT's only integers are SLP_TYP values (0-7) and zeros."""
    if value == 0:
        return bytes([AML_ZERO_OP])
    if value == 1:
        return bytes([AML_ONE_OP])
    return bytes([AML_BYTE_PREFIX, value])


def _aml_package(elements: list[int]) -> bytes:
    body = bytes([len(elements)]) + b"".join(_aml_integer(element) for element in elements)
    return bytes([AML_PACKAGE_OP]) + _aml_pkg_length(len(body)) + body


def _aml_name(segment: str, value: bytes) -> bytes:
    return bytes([AML_NAME_OP]) + _aml_root_name(segment) + value


def _aml_scope(segment: str, terms: bytes) -> bytes:
    body = _aml_root_name(segment) + terms
    return bytes([AML_SCOPE_OP]) + _aml_pkg_length(len(body)) + body
