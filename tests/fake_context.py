# SPDX-License-Identifier: GPL-2.0-or-later
"""A fake machine for device tests: a FakeClock, recorded IRQ lines, APIC messages and stops.

Implements devices.device.DeviceContext with no CPU: tests read what the device asked for
(``ctx.levels``, ``ctx.pulses``, ``ctx.messages``, ``ctx.stops``) and move time by hand.
Interrupt controllers registered with :meth:`FakeContext.add_controller` see every line change,
as on the machine.
"""

from __future__ import annotations

from devices.bus import Access
from vmm.clock import FakeClock


class FakeIrqLine:
    def __init__(self, ctx: FakeContext, line: int):
        self._ctx = ctx
        self.line = line

    def set_level(self, level: bool) -> None:
        self._ctx.set_line(self.line, bool(level))

    def pulse(self) -> None:
        self._ctx.pulses.append(self.line)
        self._ctx.set_line(self.line, True)
        self._ctx.set_line(self.line, False)


class FakeContext:
    def __init__(self, ram_size: int = 128 << 20, nb_cpus: int = 1, clock: FakeClock | None = None):
        self.clock = clock or FakeClock()
        self.ram_size = ram_size
        self.nb_cpus = nb_cpus
        self.console = None
        self.levels: dict[int, bool] = {}
        self.pulses: list[int] = []
        self.messages: list[tuple[int, bool, int, int, bool]] = []   # (dest, logical, mode, vector, level)
        self.stops: list[tuple[str, int]] = []
        self.refusing: set[int] = set()     # destinations whose APIC does not accept messages
        self.timer_changes = 0
        self.controllers: list = []

    def irq(self, line: int) -> FakeIrqLine:
        return FakeIrqLine(self, line)

    def set_line(self, line: int, level: bool) -> None:
        self.levels[line] = level
        for controller in self.controllers:
            controller.set_irq(line, level)

    def add_controller(self, device) -> None:
        self.controllers.append(device)

    def send_interrupt(self, destination: int, logical: bool, mode: int, vector: int, level: bool) -> bool:
        self.messages.append((destination, logical, mode, vector, level))
        return destination not in self.refusing

    def stop(self, reason: str, status: int) -> None:
        self.stops.append((reason, status))

    def timers_changed(self) -> None:
        self.timer_changes += 1


def pio_read(device, port: int, size: int = 1) -> int:
    """Read ``port`` from a device claiming a pio range that contains it (no bus needed)."""
    base = _base_of(device, "pio", port)
    return device.read(Access(port, port - base, size))


def pio_write(device, port: int, value: int, size: int = 1):
    base = _base_of(device, "pio", port)
    return device.write(Access(port, port - base, size), value)


def mmio_read(device, address: int, size: int = 4) -> int:
    base = _base_of(device, "mmio", address)
    return device.read(Access(address, address - base, size))


def mmio_write(device, address: int, value: int, size: int = 4):
    base = _base_of(device, "mmio", address)
    return device.write(Access(address, address - base, size), value)


def _base_of(device, bus: str, address: int) -> int:
    for r in device.bus_ranges():
        if r.bus == bus and r.base <= address < r.base + r.size:
            return r.base
    raise AssertionError(f"{type(device).__name__} claims no {bus} range holding {address:#x}")
