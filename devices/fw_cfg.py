# SPDX-License-Identifier: GPL-2.0-or-later
"""QEMU's firmware configuration device (fw_cfg), legacy port-I/O interface only.

The guest writes a 16-bit key to the selector port 0x510, then reads the item one byte at a
time from the data port 0x511; each read advances the offset and reads past the end of the item
return 0.  Selecting a key (even the same one) rewinds to offset 0.  Items served:

==== ============ =====================================================================
key  name         value
==== ============ =====================================================================
0x00 SIGNATURE    b"QEMU"
0x01 ID           u32 1: bit 0 "traditional interface present" (always set in QEMU), no DMA
0x03 RAM_SIZE     u64, bytes of guest RAM
0x05 NB_CPUS      u16, number of vCPUs (must be 1..0xfffe: 0 or 0xffff makes guests wait forever)
0x11 NUMA         u64 0: no NUMA nodes
==== ============ =====================================================================

All values are little-endian.  Unknown keys read as an empty item (all zeros); that includes the
file directory 0x19, which is deliberately omitted and so reads as a directory of zero files.

Not supported: the DMA interface (ports 0x514-0x51b, hence ID bit 1 clear), writes through the
data port (ignored, as QEMU does for read-only items), and the MMIO variant used on non-x86 machines.
Accesses other than a 16-bit selector write and an 8-bit data read are ignored (reads give 0).
"""

from __future__ import annotations

import struct

from devices.device import BusRange, Device

FW_CFG_BASE = 0x510
FW_CFG_PORTS = 2  # selector at +0, data at +1

SELECTOR_OFFSET = 0
DATA_OFFSET = 1

KEY_SIGNATURE = 0x00
KEY_ID = 0x01
KEY_RAM_SIZE = 0x03
KEY_NB_CPUS = 0x05
KEY_NUMA = 0x11

ID_TRADITIONAL = 1


class FwCfg(Device):
    """Legacy fw_cfg over ports ``[base, base + 2)`` describing the machine's RAM size and vCPU count."""

    name = "fw_cfg_io"
    description = "QEMU firmware configuration (legacy I/O ports 0x510-0x511): signature, RAM size, CPUs"
    user_creatable = False

    def __init__(self, ctx, base: int = FW_CFG_BASE):
        ram_size, nb_cpus = ctx.ram_size, ctx.nb_cpus
        if not 1 <= nb_cpus <= 0xFFFE:
            raise ValueError(f"fw_cfg: NB_CPUS must be 1..0xfffe, not {nb_cpus}")
        self.base = base
        self.items: dict[int, bytes] = {
            KEY_SIGNATURE: b"QEMU",
            KEY_ID: struct.pack("<I", ID_TRADITIONAL),
            KEY_RAM_SIZE: struct.pack("<Q", ram_size),
            KEY_NB_CPUS: struct.pack("<H", nb_cpus),
            KEY_NUMA: struct.pack("<Q", 0),
        }
        self.key = KEY_SIGNATURE
        self.offset = 0

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.base, FW_CFG_PORTS)]

    def read(self, access) -> int:
        if access.offset != DATA_OFFSET or access.size != 1:
            return 0
        item = self.items.get(self.key, b"")
        byte = item[self.offset] if self.offset < len(item) else 0
        self.offset += 1
        return byte

    def write(self, access, value: int) -> None:
        if access.offset == SELECTOR_OFFSET and access.size == 2:
            self.key = value & 0xFFFF
            self.offset = 0
