# SPDX-License-Identifier: GPL-2.0-or-later
"""PCI configuration mechanism #1 (ports 0xCF8-0xCFF) with one host bridge, and the reset
control register at 0xCF9.

The device claims 0xCF8-0xCFF as one range and decodes it as a PIIX-style chipset does:

* 0xCF8, 32-bit accesses only: CONFIG_ADDRESS -- bit 31 enable, bits 23-16 bus, 15-11 device,
  10-8 function, 7-2 register (reserved bits 30-24 and 1-0 read 0);
* 0xCFC-0xCFF, any size at any offset: CONFIG_DATA, the bytes of the addressed dword at the
  offset's byte lanes (a word at 0xCFE is register bytes 2-3);
* 0xCF9, byte accesses: the reset control register.  Writing RST_CPU (bit 2) resets the machine
  (``ctx.stop("reset", 0)``; the machine maps the reason to its exit status): SYS_RST (bit 1) and
  FULL_RST (bit 3) would choose a hard or full reset rather than an INIT, which this VMM does not
  tell apart, so any write with RST_CPU resets (ACPI's FADT reset register writes 0x06 here).
  SYS_RST and FULL_RST read back as written; RST_CPU reads 0.

The only PCI function is the host bridge at 00:00.0, with the identity of an Intel 440FX PMC
(vendor 0x8086, device 0x1237, revision 0x02, class 0x060000 host bridge, header type 0, command
"memory + bus master", status "fast back-to-back, medium DEVSEL"), which every PCI-aware PC OS
recognises and which has no BARs; the rest of its configuration space reads 0 and every write
to it is dropped.  Every other bus, device and function reads all-ones (vendor 0xFFFF: nothing
there) and drops writes, as does CONFIG_DATA while the enable bit is clear.

Not supported: configuration mechanism #2 (its byte ports read all-ones, so probes for it fail),
PCI devices other than the host bridge, PCI Express extended configuration space (MMCONFIG), the
440FX's chipset registers (PAM, SMRAM, DRAM rows), accesses that straddle two of the areas above
(they read all-ones and are dropped).
"""

from __future__ import annotations

from devices.bus import Access
from devices.device import BusRange, Device

PCI_CONFIG_BASE = 0xCF8
PCI_CONFIG_PORTS = 8
ADDRESS_OFFSET = 0
RESET_CONTROL_OFFSET = 1
DATA_OFFSET = 4

ADDRESS_ENABLE = 0x8000_0000
ADDRESS_MASK = ADDRESS_ENABLE | 0x00FF_FFFC   # enable, bus, device, function, dword register
REGISTER_MASK = 0xFC

# Reset control register
SYS_RST = 0x02
RST_CPU = 0x04
FULL_RST = 0x08

CONFIG_SPACE_SIZE = 256


def host_bridge_config() -> bytes:
    """The 440FX-like host bridge's configuration space."""
    config = bytearray(CONFIG_SPACE_SIZE)
    for offset, size, value in (
        (0x00, 2, 0x8086),     # vendor: Intel
        (0x02, 2, 0x1237),     # device: 82441FX PMC (440FX)
        (0x04, 2, 0x0006),     # command: memory space, bus master
        (0x06, 2, 0x0280),     # status: fast back-to-back capable, medium DEVSEL timing
        (0x08, 1, 0x02),       # revision
        (0x0B, 1, 0x06),       # class: bridge (subclass 0x00 host, programming interface 0x00)
    ):
        config[offset:offset + size] = value.to_bytes(size, "little")
    return bytes(config)


class PciHost(Device):
    """Configuration mechanism #1 with a lone host bridge at 00:00.0, plus reset control at 0xCF9."""

    name = "pci-host"
    description = "PCI config mechanism #1 (0xCF8/0xCFC) with a 440FX-like host bridge; reset control 0xCF9"
    user_creatable = False

    def __init__(self, ctx):
        self.ctx = ctx
        self.address = 0
        self.reset_control = 0
        self.host_bridge = host_bridge_config()

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", PCI_CONFIG_BASE, PCI_CONFIG_PORTS)]

    def read(self, access: Access) -> int:
        offset, size = access.offset, access.size
        if offset == ADDRESS_OFFSET and size == 4:
            return self.address
        if offset == RESET_CONTROL_OFFSET and size == 1:
            return self.reset_control
        if offset >= DATA_OFFSET and self._selects_host_bridge():
            start = (self.address & REGISTER_MASK) + offset - DATA_OFFSET
            return int.from_bytes(self.host_bridge[start:start + size], "little")
        return (1 << (8 * size)) - 1   # all-ones: no function there, or not decoded

    def write(self, access: Access, value: int) -> None:
        offset, size = access.offset, access.size
        if offset == ADDRESS_OFFSET and size == 4:
            self.address = value & ADDRESS_MASK
        elif offset == RESET_CONTROL_OFFSET and size == 1:
            self.reset_control = value & (SYS_RST | FULL_RST)
            if value & RST_CPU:
                self.ctx.stop("reset", 0)
        # configuration writes: the host bridge is read-only, other functions do not exist

    def _selects_host_bridge(self) -> bool:
        """CONFIG_ADDRESS is enabled and names bus 0, device 0, function 0."""
        return self.address & ~REGISTER_MASK == ADDRESS_ENABLE
