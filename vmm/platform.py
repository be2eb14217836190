# SPDX-License-Identifier: GPL-2.0-or-later
"""The machine as its devices see it: the DeviceContext of devices/device.py.

A device gets this narrow view and nothing else: the clock, RAM size and CPU count, interrupt
lines, the APIC bus to the local APICs (devices.lapic.ApicBus), local interrupt sources of a
LAPIC, a way to end the run, and a way to say its timer moved.

Interrupt routing: an IRQ line change reaches every interrupt controller of the board (devices
that have ``set_irq``: the IOAPIC, the 8259 pair).  Lines are ISA IRQ numbers; a controller whose
inputs are global system interrupts (``inputs_are_gsis = True``: the IOAPIC) gets them through the
PC's wiring, on which ISA IRQ 0 (the PIT) is IOAPIC pin 2 -- what the MADT's interrupt source
override tells the guest.  An IOAPIC's message goes on the APIC bus: it reaches every local APIC
whose destination matches, or for lowest-priority delivery the one with the lowest arbitration
priority (ties to the lowest APIC id: the bus's documented deterministic choice).

Not supported: MSIs from PCI devices (there are none), interrupt remapping, ExtINT through the
8259 (the IOAPIC is the interrupt path).
"""

from __future__ import annotations

from collections.abc import Callable

from devices.lapic import Lvt

ISA_TO_GSI = {0: 2}     # PC wiring: the PIT's IRQ 0 is IOAPIC pin 2 (pin 0 is the 8259's ExtINT)


class IrqLine:
    """One interrupt line: level changes fan out to the board's interrupt controllers."""

    __slots__ = ("_platform", "line")

    def __init__(self, platform: Platform, line: int):
        self._platform = platform
        self.line = line

    def set_level(self, level: bool) -> None:
        for controller in self._platform.controllers:
            gsi = getattr(controller, "inputs_are_gsis", False)
            controller.set_irq(ISA_TO_GSI.get(self.line, self.line) if gsi else self.line, level)

    def pulse(self) -> None:
        self.set_level(True)
        self.set_level(False)


class Platform:
    def __init__(self, clock, ram_size: int, console, on_stop: Callable[[str, int], None],
                 on_timers_changed: Callable[[], None], apic_bus):
        self.clock = clock
        self.ram_size = ram_size
        self.apic_bus = apic_bus            # devices.lapic.ApicBus: the vCPUs' LAPICs, in APIC id order
        self.console = console              # the host file the first serial port writes to (None: stdout)
        self.controllers: list = []         # devices with set_irq(line, level)
        self._on_stop = on_stop
        self._on_timers_changed = on_timers_changed

    @property
    def nb_cpus(self) -> int:
        return len(self.apic_bus.lapics)

    def irq(self, line: int) -> IrqLine:
        return IrqLine(self, line)

    def send_interrupt(self, destination: int, logical: bool, mode: int, vector: int, level: bool) -> bool:
        return self.apic_bus.deliver(destination, logical, mode, vector, level)

    def deliver_local(self, cpu: int, lvt: str) -> bool:
        return self.apic_bus.lapics[cpu].deliver_local(Lvt[lvt.upper()])

    def stop(self, reason: str, status: int) -> None:
        self._on_stop(reason, status)

    def timers_changed(self) -> None:
        self._on_timers_changed()
