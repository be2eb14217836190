# SPDX-License-Identifier: GPL-2.0-or-later
"""Port I/O no device owns is answered in the vCPU layer without an exit (issue 10), and the vCPUs'
map of owned ports follows the port bus exactly, whenever and however a device is registered."""

from __future__ import annotations

import io

import pytest

from devices.bus import Bus
from tests.elfgen import Seg, build_elf
from vmm.exits import ExitKind
from vmm.machine import Machine, MachineConfig

BASE = 0x100000
# Reads port 0x80 and writes what it read to debug-exit (status = that byte).
CODE = bytes([0xB8, 0x00, 0x00, 0x00, 0x00,       # mov $0, %eax
              0xE4, 0x80,                          # in $0x80, %al
              0xE6, 0xF4,                          # out %al, $0xf4
              0xF4])                               # hlt


def _status(value: int) -> int:
    """The machine's debug-exit status for a byte written to the port (QEMU's (value << 1) | 1)."""
    return (value << 1 | 1) & 0xFF


def _machine(tmp_path, **config) -> Machine:
    image = tmp_path / "in80.elf"
    image.write_bytes(build_elf([Seg(BASE, CODE)], entry=BASE))
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=30, **config))
    machine.load(str(image))
    return machine


class Port80:
    def __init__(self, value):
        self.value = value
        self.reads = 0

    def read(self, access):
        self.reads += 1
        return self.value

    def write(self, access, value):
        pass


def test_an_unowned_port_reads_all_ones_without_an_exit(tmp_path):
    machine = _machine(tmp_path)
    result = machine.run()
    assert (result.reason, result.status) == ("debug-exit", _status(0xFF))
    assert machine.dispatcher.counts[ExitKind.IO_IN] == 0      # answered in the vCPU layer
    assert machine.dispatcher.counts[ExitKind.IO_OUT] == 1     # debug-exit is a device


def test_a_device_registered_on_the_bus_after_construction_is_reached(tmp_path):
    machine = _machine(tmp_path)
    device = Port80(0x42)
    machine.pio.register(0x80, 1, device)
    result = machine.run()
    assert (result.reason, result.status, device.reads) == ("debug-exit", _status(0x42), 1)


def test_an_unregistered_port_is_nobodys_again(tmp_path):
    machine = _machine(tmp_path)
    machine.pio.register(0x80, 1, Port80(0x42))
    machine.pio.unregister(0x80)
    assert machine.run().status == _status(0xFF)


def test_traced_exits_keep_every_port_access_an_exit(tmp_path):
    machine = _machine(tmp_path, trace_exits=True)
    machine.dispatcher.trace = None         # (counting is what this test looks at, not printing)
    result = machine.run()
    assert result.status == _status(0xFF) and machine.dispatcher.counts[ExitKind.IO_IN] == 1


def test_bus_reports_every_change():
    bus = Bus("pio", 0x10000, (1, 2, 4))
    changes = []
    bus.on_change = lambda *change: changes.append(change)
    bus.register(0x3F8, 8, object())
    bus.unregister(0x3F8)
    assert changes == [(0x3F8, 8, True), (0x3F8, 8, False)]


def test_port_map_refuses_ports_past_the_space(tmp_path):
    machine = _machine(tmp_path)
    with pytest.raises(ValueError):
        machine.vcpu.set_port_exits(0xFFFF, 2, True)
