# SPDX-License-Identifier: GPL-2.0-or-later
"""Every device the machine can be built from, by ``-device`` name, and how to name one.

Built-in devices are listed here by module and class; third-party devices come from the Python
entry-point group ``pmu_vmm.devices`` (each entry point names a :class:`devices.device.Device`
subclass), so an installed package adds devices with no edit of this project.  A name clash
between two devices is refused: the first one registered keeps the name.

``parse_device_spec("isa-debug-exit,iobase=0xf4,iosize=4")`` gives the name and the property
texts; the device class types and checks them (:meth:`Device.parse_props`).

Not supported: QEMU's ``driver=`` / ``id=`` / ``bus=`` keywords and JSON ``-device`` syntax.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field

from devices.device import Device, PropertyError

ENTRY_POINT_GROUP = "pmu_vmm.devices"

#: ``module:Class`` of every built-in device, in ``-device help`` order.
BUILTIN_DEVICES = (
    "devices.uart:Uart16550",
    "devices.ioapic:Ioapic",
    "devices.pic:I8259",
    "devices.pit:Pit",
    "devices.rtc:Rtc",
    "devices.i8042:I8042",
    "devices.pci:PciHost",
    "devices.acpi_pm:AcpiPm",
    "devices.debug_exit:DebugExit",
    "devices.bochs:BochsShutdown",
    "devices.fw_cfg:FwCfg",
    "devices.vmware:VmwareBackdoor",
    "devices.test_hooks:TestHooks",
    "devices.pc_testdev:PcTestdev",
    "devices.kvm_pv:KvmPv",
)


class UnknownDeviceError(PropertyError):
    """No device has that name."""


@dataclass(frozen=True)
class DeviceSpec:
    """A device by name with the text of its properties, as ``-device`` and boards give them."""

    name: str
    props: dict[str, str] = field(default_factory=dict)


def parse_device_spec(text: str) -> DeviceSpec:
    """``NAME[,KEY=VALUE...]`` -> DeviceSpec; refuses empty names and properties without a value."""
    name, *items = text.split(",")
    if not name:
        raise PropertyError(f"-device {text!r}: no device name")
    props: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise PropertyError(f"-device {name}: {item!r} is not KEY=VALUE")
        props[key] = value
    return DeviceSpec(name, props)


def _load(target: str) -> type[Device]:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


@functools.cache
def _builtin_classes() -> dict[str, type[Device]]:
    classes: dict[str, type[Device]] = {}
    for target in BUILTIN_DEVICES:
        cls = _load(target)
        classes[cls.name] = cls
    return classes


@functools.cache
def device_classes() -> dict[str, type[Device]]:
    """Every known device class by name: the built-ins, then the installed plugins (looked up once
    per process: scanning the entry points cost most of a machine's construction)."""
    # importlib.metadata costs ~20 ms to import (email, zipfile, csv, ...) plus the scan itself:
    # only a name that is not built in, or the full listing, pays for it (device_class below).
    from importlib.metadata import entry_points

    classes = dict(_builtin_classes())
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Device) and cls.name):
            raise PropertyError(f"entry point {ep.name} = {ep.value} is not a named devices.device.Device subclass")
        classes.setdefault(cls.name, cls)
    return classes


def device_class(name: str) -> type[Device]:
    """The class named ``name``.  A built-in name never scans the plugins: a built-in keeps its
    name over any plugin anyway, so the answer is the same (a broken plugin is then reported only
    when the plugins are consulted: an unknown name or ``-device help``)."""
    builtin = _builtin_classes().get(name)
    if builtin is not None:
        return builtin
    classes = device_classes()
    if name not in classes:
        raise UnknownDeviceError(f"'{name}' is not a valid device model name (see -device help)")
    return classes[name]


def device_help() -> str:
    """The ``-device help`` listing, in QEMU's format."""
    lines = ["Devices of this machine:"]
    for cls in device_classes().values():
        extra = "" if cls.user_creatable else ", no-user"
        lines.append(f'name "{cls.name}", desc "{cls.description}"{extra}')
    return "\n".join(lines)
