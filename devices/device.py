# SPDX-License-Identifier: GPL-2.0-or-later
"""What a pluggable device is: a name, typed properties, the bus ranges it claims, and the
narrow view of the machine it is given.

Modelled on QEMU's ``-device NAME,prop=val`` (QOM properties) and rust-vmm's vm-device: a device
is a plain object that *declares* itself, and the machine is assembled from a board description
(vmm/board.py) instead of hand-written wiring.  To be reached a device only has to list its
ranges in :meth:`Device.bus_ranges`; the machine registers them on its buses (and maps MMIO
ranges into the vCPU).

A device class sets:

* ``name`` -- the ``-device`` name (QEMU's where one exists, e.g. ``isa-debug-exit``);
* ``description`` -- one line for ``-device help``;
* ``props`` -- a tuple of :class:`Prop` with types, defaults and help text;
* ``user_creatable`` -- False for devices every board has exactly once (they are listed, but
  ``-device`` refuses a second copy).

and implements ``__init__(self, ctx, **props)`` (``ctx`` is a :class:`DeviceContext`, props are
already parsed and typed), ``bus_ranges()``, and the bus protocol of devices/bus.py
(``read(access)`` / ``write(access, value)``).  Optional hooks the machine calls when present:

* ``next_deadline() -> int | None`` and ``tick(now)`` -- timers, in virtual ns (vmm/clock.py);
* ``eoi(vector)`` -- a LAPIC accepted an EOI for a level-triggered vector (IOAPIC remote IRR);
* ``set_irq(line, level)`` -- the device is an interrupt controller (IOAPIC, PIC): every
  :meth:`DeviceContext.irq` line change reaches every device that has it;
* ``advertise(cpuid)`` -- the device puts leaves or feature bits into each vCPU's CPUID model
  (vmm.cpuid.CpuidModel), called once per vCPU when the device is added;
* ``hypercall(nr, args, vcpu_id, long_mode) -> int`` -- for ranges on the ``hypercall`` bus
  (hypercall numbers, KVM's ABI: devices/kvm_pv.py): the value the guest gets in RAX.

Not supported: hot-plug and unplug, device buses other than port I/O, MMIO, MSRs and hypercall
numbers (no PCI devices), properties of other types than int, bool and str.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
from typing import Any, BinaryIO, ClassVar, NamedTuple, Protocol


class PropertyError(ValueError):
    """A ``-device`` property is unknown, malformed or out of range (one line, for the user)."""


class Prop(NamedTuple):
    """One typed device property, as ``-device NAME,help`` lists it."""

    name: str
    kind: type        # int, bool or str
    default: object   # any value (not Any: pdoc resolves a NamedTuple's annotations outside this module)
    help: str = ""

    def parse(self, text: str) -> Any:
        """The property's value from its ``-device`` text (ints in any base, bools as on/off...)."""
        if self.kind is bool:
            lowered = text.lower()
            if lowered in ("on", "true", "yes", "1"):
                return True
            if lowered in ("off", "false", "no", "0"):
                return False
            raise PropertyError(f"property {self.name!r}: {text!r} is not a boolean (on/off)")
        if self.kind is int:
            try:
                return int(text, 0)
            except ValueError:
                raise PropertyError(f"property {self.name!r}: {text!r} is not an integer") from None
        return text

    def describe(self) -> str:
        kind = {int: "uint64", bool: "bool", str: "str"}[self.kind]
        default = f"{self.default:#x}" if self.kind is int and isinstance(self.default, int) else self.default
        return f"  {self.name}=<{kind}>{' - ' + self.help if self.help else ''} (default: {default})"


class BusRange(NamedTuple):
    """A range a device claims: ``bus`` is "pio", "mmio" or "msr"."""

    bus: str
    base: int
    size: int


class IrqLine(Protocol):
    """An interrupt request line into the machine's interrupt controllers (ISA IRQ / GSI)."""

    def set_level(self, level: bool) -> None: ...

    def pulse(self) -> None: ...


class DeviceContext(Protocol):
    """What a device may ask of the machine it is plugged into."""

    clock: Any               # .now() -> virtual ns
    ram_size: int
    console: BinaryIO | None   # the host file serial ports write to (None: the process's stdout)

    @property
    def nb_cpus(self) -> int: ...

    def irq(self, line: int) -> IrqLine:
        """The interrupt line ``line`` (an ISA IRQ number, which is also the IOAPIC pin here)."""
        ...

    def send_interrupt(self, destination: int, logical: bool, mode: int, vector: int, level: bool) -> bool:
        """An APIC-bus message to the local APICs (what an IOAPIC or an MSI sends): ``mode`` is the
        delivery mode (0 fixed, 1 lowest priority, 2 SMI, 4 NMI, 5 INIT, 7 ExtINT).  True if some
        local APIC accepted it."""
        ...

    def deliver_local(self, cpu: int, lvt: str) -> bool:
        """Raise local interrupt source ``lvt`` ("pmc", "lint0", "lint1", ...) on vCPU ``cpu``'s LAPIC."""
        ...

    def stop(self, reason: str, status: int) -> None:
        """End the run: ``reason`` "debug-exit", "poweroff" or "reset"; ``status`` the exit status."""
        ...

    def timers_changed(self) -> None:
        """A device's ``next_deadline()`` moved: the machine re-arms the vCPU's deadline."""
        ...


class Device:
    """Base class of pluggable devices (see the module docstring for the protocol)."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    props: ClassVar[tuple[Prop, ...]] = ()
    user_creatable: ClassVar[bool] = True

    def bus_ranges(self) -> list[BusRange]:
        raise NotImplementedError

    def register(self, bus) -> None:
        """Claim every range of this device that lies on ``bus`` (matched by the bus's name)."""
        for r in self.bus_ranges():
            if r.bus == bus.name:
                bus.register(r.base, r.size, self)

    @classmethod
    def parse_props(cls, texts: dict[str, str]) -> dict[str, Any]:
        """Typed values for every declared property: defaults, overridden by ``texts``."""
        known = {p.name: p for p in cls.props}
        for key in texts:
            if key not in known:
                names = ", ".join(known) or "none"
                raise PropertyError(f"device {cls.name!r} has no property {key!r} (properties: {names})")
        return {name: (prop.parse(texts[name]) if name in texts else prop.default) for name, prop in known.items()}

    @classmethod
    def help_text(cls) -> str:
        lines = [f"{cls.name} options:"]
        lines += [p.describe() for p in cls.props] or ["  (no properties)"]
        return "\n".join(lines)
