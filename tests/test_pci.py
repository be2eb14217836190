# SPDX-License-Identifier: GPL-2.0-or-later
"""PCI configuration mechanism #1: Linux's type 1 / type 2 probes, enumeration of bus 0 (only the
host bridge at 00:00.0), reads at every offset and size, dropped writes, and reset via 0xCF9."""

import pytest

from devices.pci import PciHost
from tests.fake_context import FakeContext, pio_read, pio_write

ADDRESS, RESET, DATA = 0xCF8, 0xCF9, 0xCFC


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def pci(ctx):
    return PciHost(ctx)


def config_address(bus, device, function, register):
    return 0x8000_0000 | bus << 16 | device << 11 | function << 8 | register


def config_read(pci, bus, device, function, register, size=4):
    pio_write(pci, ADDRESS, config_address(bus, device, function, register & ~3), 4)
    return pio_read(pci, DATA + (register & 3), size)


def test_linux_type1_probe_reads_back_the_address_and_finds_a_host_bridge(pci):
    pio_write(pci, 0xCFB, 0x01, 1)
    saved = pio_read(pci, ADDRESS, 4)
    pio_write(pci, ADDRESS, 0x8000_0000, 4)
    assert pio_read(pci, ADDRESS, 4) == 0x8000_0000
    # pci_sanity_check: some function on bus 0 is a host bridge or VGA, or is Intel's
    assert any(config_read(pci, 0, devfn >> 3, devfn & 7, 0x0A, 2) == 0x0600 for devfn in range(256))
    pio_write(pci, ADDRESS, saved, 4)
    assert pio_read(pci, ADDRESS, 4) == saved


def test_linux_type2_probe_fails(pci):
    pio_write(pci, 0xCFB, 0x00, 1)
    pio_write(pci, 0xCF8, 0x00, 1)
    pio_write(pci, 0xCFA, 0x00, 1)
    assert not (pio_read(pci, 0xCF8, 1) == 0x00 and pio_read(pci, 0xCFA, 1) == 0x00)


def test_bus0_enumeration_finds_only_the_host_bridge(pci):
    present = [(device, function) for device in range(32) for function in range(8)
               if config_read(pci, 0, device, function, 0x00, 2) != 0xFFFF]
    assert present == [(0, 0)]
    assert config_read(pci, 0, 0, 0, 0x00) == 0x1237_8086
    assert config_read(pci, 0, 0, 0, 0x0E, 1) == 0x00  # header type 0, single function


@pytest.mark.parametrize("bus", [1, 0x80, 0xFF])
def test_other_buses_are_empty(pci, bus):
    assert config_read(pci, bus, 0, 0, 0x00) == 0xFFFF_FFFF


def test_host_bridge_header(pci):
    assert config_read(pci, 0, 0, 0, 0x04) == 0x0280_0006  # status, command
    assert config_read(pci, 0, 0, 0, 0x08) == 0x0600_0002  # class 06/00/00, revision 2
    assert all(config_read(pci, 0, 0, 0, register) == 0 for register in range(0x0C, 0x100, 4))


@pytest.mark.parametrize("register, size, value", [
    (0x00, 1, 0x86), (0x01, 1, 0x80), (0x02, 1, 0x37), (0x03, 1, 0x12),
    (0x01, 2, 0x3780), (0x02, 2, 0x1237), (0x0A, 2, 0x0600), (0x0B, 1, 0x06), (0x09, 2, 0x0000),
    (0x06, 2, 0x0280),
])
def test_data_port_reads_any_size_at_any_offset(pci, register, size, value):
    assert config_read(pci, 0, 0, 0, register, size) == value


def test_config_writes_are_dropped(pci):
    pio_write(pci, ADDRESS, config_address(0, 0, 0, 0x10), 4)
    pio_write(pci, DATA, 0xFFFF_FFFF, 4)  # BAR sizing
    assert pio_read(pci, DATA, 4) == 0
    pio_write(pci, ADDRESS, config_address(0, 0, 0, 0x04), 4)
    pio_write(pci, DATA + 2, 0xFFFF, 2)  # would clear status bits, if they were writable
    pio_write(pci, DATA, 0x0000, 2)
    assert pio_read(pci, DATA, 4) == 0x0280_0006
    pio_write(pci, ADDRESS, config_address(0, 3, 0, 0x00), 4)
    pio_write(pci, DATA, 0x1234_5678, 4)
    assert pio_read(pci, DATA, 4) == 0xFFFF_FFFF


def test_disabled_address_reads_all_ones(pci):
    pio_write(pci, ADDRESS, 0x0000_0000, 4)
    assert pio_read(pci, DATA, 4) == 0xFFFF_FFFF
    assert pio_read(pci, DATA + 3, 1) == 0xFF


def test_address_register_keeps_only_its_defined_bits(pci):
    pio_write(pci, ADDRESS, 0xFFFF_FFFF, 4)
    assert pio_read(pci, ADDRESS, 4) == 0x80FF_FFFC


def test_narrow_accesses_to_the_address_ports_are_not_the_address_register(pci):
    pio_write(pci, ADDRESS, 0x8000_0008, 4)
    pio_write(pci, ADDRESS, 0x00, 1)
    pio_write(pci, 0xCFA, 0x1234, 2)
    assert pio_read(pci, ADDRESS, 4) == 0x8000_0008
    assert pio_read(pci, ADDRESS, 2) == 0xFFFF
    assert pio_read(pci, 0xCFB, 1) == 0xFF


def test_reset_control_register(pci, ctx):
    assert pio_read(pci, RESET, 1) == 0
    pio_write(pci, RESET, 0x0A, 1)  # SYS_RST | FULL_RST: chosen, not triggered
    assert pio_read(pci, RESET, 1) == 0x0A and ctx.stops == []
    pio_write(pci, RESET, 0x06, 1)  # the FADT's RESET_VALUE
    assert ctx.stops == [("reset", 0)]
    assert pio_read(pci, RESET, 1) == 0x02  # RST_CPU reads 0


def test_linux_pci_reboot_resets_on_the_second_write(pci, ctx):
    value = pio_read(pci, RESET, 1) & ~0x06
    pio_write(pci, RESET, value | 0x02, 1)
    assert ctx.stops == []
    pio_write(pci, RESET, value | 0x06, 1)
    assert ctx.stops == [("reset", 0)]


def test_claims_the_whole_window_as_one_range(pci):
    [bus_range] = pci.bus_ranges()
    assert (bus_range.bus, bus_range.base, bus_range.size) == ("pio", 0xCF8, 8)
