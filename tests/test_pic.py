# SPDX-License-Identifier: GPL-2.0-or-later
"""8259 PIC stub: initialisation sequence accepted, IMR kept and read back."""

import pytest

from devices.bus import Bus
from devices.pic import register_pics


@pytest.fixture
def pio():
    bus = Bus("pio", 0x10000)
    register_pics(bus)
    return bus


def test_everything_is_masked_at_reset(pio):
    assert pio.read(0x21, 1) == 0xFF
    assert pio.read(0xA1, 1) == 0xFF


def test_mask_all_writes_read_back(pio):
    pio.write(0x21, 1, 0xFB)
    pio.write(0xA1, 1, 0x7F)
    assert (pio.read(0x21, 1), pio.read(0xA1, 1)) == (0xFB, 0x7F)


def test_linux_style_initialisation_then_mask(pio):
    # ICW1 (edge, cascade, ICW4 needed), ICW2 vector base, ICW3 wiring, ICW4 8086 mode.
    for base, icw2, icw3 in ((0x20, 0x20, 0x04), (0xA0, 0x28, 0x02)):
        pio.write(base, 1, 0x11)
        assert pio.read(base + 1, 1) == 0  # ICW1 clears the mask
        for word in (icw2, icw3, 0x01):
            pio.write(base + 1, 1, word)
        assert pio.read(base + 1, 1) == 0  # initialisation words are not masks
        pio.write(base + 1, 1, 0xFF)
        assert pio.read(base + 1, 1) == 0xFF


def test_single_mode_without_icw4_expects_only_icw2(pio):
    pio.write(0x20, 1, 0x12)  # ICW1: single, no ICW4
    pio.write(0x21, 1, 0x08)  # ICW2
    pio.write(0x21, 1, 0xAA)  # OCW1
    assert pio.read(0x21, 1) == 0xAA


def test_ocw2_and_ocw3_leave_the_mask_alone(pio):
    pio.write(0x21, 1, 0xF0)
    pio.write(0x20, 1, 0x20)  # OCW2: non-specific EOI
    pio.write(0x20, 1, 0x0B)  # OCW3: read ISR
    assert pio.read(0x21, 1) == 0xF0
    assert pio.read(0x20, 1) == 0  # ISR: nothing is ever in service
