# SPDX-License-Identifier: GPL-2.0-or-later
"""Board descriptions: which devices a machine is built from, by ``-device`` name and properties.

The PC board is what every machine gets (a QEMU ``pc`` without PCI devices): COM1, the IOAPIC, the
8259 pair, the 8254 PIT (with port 0x61), the CMOS RTC, the 8042 (reset line), the PCI host bridge
(configuration ports and the 0xCF9 reset register), the ACPI PM block (PM timer, S5), the
debug-exit and Bochs shutdown ports, fw_cfg and the VMware backdoor port.  The vCPU's own parts
(local APIC, PMU, speculation-control and architectural MSRs) are not board devices: the machine makes one of each
per vCPU.

User devices (``-device`` in either CLI) are added with :func:`with_user_devices`: a user device
whose name the board already has *configures* the board's first copy of it (so a runner's
``-device isa-debug-exit,iobase=0xf4,iosize=4`` moves or resizes the port instead of clashing with
it); any other is added.  A board device that is not user-creatable cannot be configured or added.
"""

from __future__ import annotations

from devices.acpi_pm import AcpiPm
from devices.device import PropertyError
from devices.ioapic import Ioapic
from devices.pic import I8259
from devices.registry import DeviceSpec, device_class
from vmm.acpi import AcpiPlatform

PC_BOARD = (
    DeviceSpec("isa-serial"),
    DeviceSpec("ioapic"),
    DeviceSpec("i8259"),
    DeviceSpec("i8254"),
    DeviceSpec("mc146818rtc"),
    DeviceSpec("i8042"),
    DeviceSpec("pci-host"),
    DeviceSpec("acpi-pm"),
    DeviceSpec("isa-debug-exit"),
    DeviceSpec("bochs-shutdown"),
    DeviceSpec("fw_cfg_io"),
    DeviceSpec("vmport"),
)


def with_user_devices(board: tuple[DeviceSpec, ...], user: list[DeviceSpec]) -> list[DeviceSpec]:
    """The board's devices with the user's ``-device`` list applied (see the module docstring)."""
    specs = list(board)
    configured: set[int] = set()
    for spec in user:
        if not device_class(spec.name).user_creatable:
            raise PropertyError(f"Parameter 'driver' expects a pluggable device type: {spec.name} cannot be "
                                f"added with -device (the board always has it)")
        for i, existing in enumerate(specs):
            if i < len(board) and i not in configured and existing.name == spec.name:
                specs[i] = spec
                configured.add(i)
                break
        else:
            specs.append(spec)
    return specs


def acpi_platform(devices: list, cpus: int) -> AcpiPlatform:
    """What the ACPI tables must say about a machine built from ``devices``: its IOAPIC, 8259s and
    ACPI PM block as configured, so a ``-device ioapic,id=2`` or moved PM ports stay true in the MADT
    and FADT."""
    fields: dict = {"cpus": cpus, "pic_present": any(isinstance(d, I8259) for d in devices)}
    for device in devices:
        if isinstance(device, Ioapic):
            fields.update(ioapic_id=device.apic_id, ioapic_address=device.address)
        elif isinstance(device, AcpiPm):
            fields.update(pm1a_event_port=device.pm1a_evt, pm1a_control_port=device.pm1a_cnt,
                          pm_timer_port=device.pm_tmr, sci_irq=device.sci_irq, s5_sleep_type=device.s5_type)
    return AcpiPlatform(**fields)
