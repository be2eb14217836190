# SPDX-License-Identifier: GPL-2.0-or-later
"""fw_cfg legacy I/O: selector/data protocol and the items served."""

import struct

import pytest

from devices.bus import Bus
from devices.fw_cfg import FW_CFG_BASE, FwCfg
from tests.fake_context import FakeContext

SELECTOR = FW_CFG_BASE
DATA = FW_CFG_BASE + 1


@pytest.fixture
def pio():
    bus = Bus("pio", 0x10000)
    FwCfg(FakeContext(ram_size=128 << 20, nb_cpus=3)).register(bus)
    return bus


def read_item(pio, key, length):
    pio.write(SELECTOR, 2, key)
    return bytes(pio.read(DATA, 1) for _ in range(length))


def test_signature(pio):
    assert read_item(pio, 0x00, 4) == b"QEMU"


def test_id_says_traditional_interface_without_dma(pio):
    assert read_item(pio, 0x01, 4) == struct.pack("<I", 1)


def test_ram_size_is_a_little_endian_u64(pio):
    assert read_item(pio, 0x03, 8) == struct.pack("<Q", 128 << 20)


def test_nb_cpus_is_a_little_endian_u16(pio):
    assert read_item(pio, 0x05, 2) == b"\x03\x00"


def test_numa_key_is_zero(pio):
    assert read_item(pio, 0x11, 8) == bytes(8)


def test_reads_past_the_end_give_zero(pio):
    assert read_item(pio, 0x00, 8) == b"QEMU\0\0\0\0"


@pytest.mark.parametrize("key", [0x02, 0x19, 0x8000, 0xFFFF])
def test_unknown_keys_and_the_omitted_file_directory_read_zero(pio, key):
    assert read_item(pio, key, 6) == bytes(6)


def test_selecting_rewinds_even_the_same_key(pio):
    assert read_item(pio, 0x00, 2) == b"QE"
    assert read_item(pio, 0x00, 4) == b"QEMU"


def test_reads_continue_where_they_stopped(pio):
    assert read_item(pio, 0x03, 1) == b"\x00"
    assert bytes(pio.read(DATA, 1) for _ in range(3)) == b"\x00\x00\x08"


def test_other_accesses_are_ignored(pio):
    pio.write(SELECTOR, 2, 0x00)
    pio.write(DATA, 1, 0x55)  # data-port write: ignored
    pio.write(SELECTOR, 1, 0x05)  # byte-wide selector write: ignored
    assert pio.read(SELECTOR, 2) == 0
    assert bytes(pio.read(DATA, 1) for _ in range(4)) == b"QEMU"


@pytest.mark.parametrize("nb_cpus", [0, 0xFFFF])
def test_cpu_counts_that_hang_guests_are_refused(nb_cpus):
    with pytest.raises(ValueError, match="NB_CPUS"):
        FwCfg(FakeContext(ram_size=1 << 20, nb_cpus=nb_cpus))
