# SPDX-License-Identifier: GPL-2.0-or-later
"""The device registry and board: -device parsing, typed properties, help, and board assembly rules."""

import pytest

from devices.debug_exit import DebugExit
from devices.device import BusRange, Device, Prop, PropertyError
from devices.registry import DeviceSpec, UnknownDeviceError, device_class, device_help, parse_device_spec
from vmm.board import PC_BOARD, with_user_devices


def test_parse_device_spec_splits_name_and_properties():
    assert parse_device_spec("isa-debug-exit,iobase=0xf4,iosize=4") == \
        DeviceSpec("isa-debug-exit", {"iobase": "0xf4", "iosize": "4"})
    assert parse_device_spec("vmport") == DeviceSpec("vmport", {})


@pytest.mark.parametrize("text, message", [
    (",iobase=1", "no device name"),
    ("isa-debug-exit,iobase", "'iobase' is not KEY=VALUE"),
    ("isa-debug-exit,=1", "'=1' is not KEY=VALUE"),
])
def test_parse_device_spec_refuses_malformed_text(text, message):
    with pytest.raises(PropertyError, match=message):
        parse_device_spec(text)


def test_properties_are_typed_and_checked():
    assert DebugExit.parse_props({"iobase": "0x501", "iosize": "2"}) == {"iobase": 0x501, "iosize": 2}
    with pytest.raises(PropertyError, match="'iobase': 'x' is not an integer"):
        DebugExit.parse_props({"iobase": "x"})
    with pytest.raises(PropertyError, match=r"has no property 'port' \(properties: iobase, iosize\)"):
        DebugExit.parse_props({"port": "1"})


def test_bool_properties_take_on_off():
    prop = Prop("enabled", bool, False)
    assert prop.parse("on") is True and prop.parse("off") is False
    with pytest.raises(PropertyError, match="not a boolean"):
        prop.parse("maybe")


def test_unknown_device_uses_qemus_wording():
    with pytest.raises(UnknownDeviceError, match="'nonesuch' is not a valid device model name"):
        device_class("nonesuch")


def test_device_help_lists_every_builtin_in_qemus_format():
    listing = device_help()
    assert 'name "isa-debug-exit", desc "' in listing
    assert 'name "fw_cfg_io", desc "' in listing and "no-user" in listing
    assert "iobase=<uint64> - first I/O port (default: 0xf4)" in DebugExit.help_text()


def test_user_device_configures_the_boards_copy():
    specs = with_user_devices(PC_BOARD, [DeviceSpec("isa-debug-exit", {"iobase": "0x501"})])
    assert [s.name for s in specs] == [s.name for s in PC_BOARD]
    assert DeviceSpec("isa-debug-exit", {"iobase": "0x501"}) in specs


def test_second_copy_and_new_devices_are_added():
    user = [DeviceSpec("isa-debug-exit"), DeviceSpec("isa-debug-exit", {"iobase": "0x501"}),
            DeviceSpec("pmu-vmm-test-hooks")]
    specs = with_user_devices(PC_BOARD, user)
    assert len(specs) == len(PC_BOARD) + 2
    assert specs[-2:] == user[1:]


def test_board_only_devices_cannot_be_added():
    with pytest.raises(PropertyError, match="fw_cfg_io cannot be added with -device"):
        with_user_devices(PC_BOARD, [DeviceSpec("fw_cfg_io")])


def test_register_claims_only_the_ranges_on_that_bus():
    from devices.bus import Bus

    class TwoBuses(Device):
        name = "two-buses"

        def bus_ranges(self):
            return [BusRange("pio", 0x100, 4), BusRange("mmio", 0x1000, 0x10)]

    device, pio, mmio = TwoBuses(), Bus("pio", 0x10000), Bus("mmio", 1 << 32)
    device.register(pio)
    assert pio.lookup(0x103) == (0x100, device) and mmio.ranges() == []
    device.register(mmio)
    assert mmio.lookup(0x100F) == (0x1000, device)
