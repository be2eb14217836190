# SPDX-License-Identifier: GPL-2.0-or-later
"""The VMware "backdoor" I/O port 0x5658: a 32-bit IN that reads and writes the guest's registers.

A guest loads EAX with the magic 0x564D5868 ("VMXh"), CL with a command and DX with 0x5658, and
executes ``in eax, dx``.  KVM does not implement the commands (it only exempts the port from the
TSS I/O bitmap); the VMM does, so the vCPU layer calls :meth:`VmwareBackdoor.handle_in` with a
small mutable mapping of the guest's ``rax``, ``rbx``, ``rcx`` and ``rdx`` and writes it back.

Behaviour:

* right magic, command GETVERSION (0x0a): EAX = 6 (version), EBX = magic, ECX = 2 (product type
  VMX_TYPE_SCALABLE_SERVER, i.e. ESX; QEMU's vmport default);
* right magic, any other command: nothing changes (QEMU's vmport does the same);
* wrong magic: EAX = 0xFFFFFFFF, like a read of a port nobody owns; other registers untouched.

Whatever it returns goes into EAX through a 32-bit IN, which zero-extends into RAX, so ``rax`` is
always written back as a 32-bit value; EBX and ECX are replaced the same way when set.  Reads
through the bus (no registers at hand) return 0xFFFFFFFF and writes are ignored.

Not supported: every command other than GETVERSION (GETTIME, GETTIMEFULL, RPC, mouse, ...), and
the high-bandwidth port 0x5659 (REP INS/OUTS): it falls inside the 4-port range registered here so
that a 32-bit access at 0x5658 fits, and reads all-ones like an unowned port.
"""

from __future__ import annotations

from collections.abc import MutableMapping

from devices.device import BusRange, Device

VMWARE_PORT = 0x5658
VMWARE_PORTS = 4
VMWARE_MAGIC = 0x564D5868
CMD_GETVERSION = 0x0A
VMWARE_VERSION = 6
VMX_TYPE_SCALABLE_SERVER = 2
ALL_ONES = 0xFFFFFFFF


class VmwareBackdoor(Device):
    """The backdoor port; the vCPU layer routes 32-bit INs from port 0x5658 to :meth:`handle_in`."""

    name = "vmport"
    description = "VMware backdoor I/O port 0x5658 (GETVERSION)"
    user_creatable = False

    def __init__(self, ctx=None):
        self.port = VMWARE_PORT

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("pio", self.port, VMWARE_PORTS)]

    def handle_in(self, regs: MutableMapping[str, int]) -> None:
        """Run the backdoor command in ``regs`` and update them in place (``rax`` = the IN's result)."""
        eax = regs["rax"] & ALL_ONES
        if eax != VMWARE_MAGIC:
            regs["rax"] = ALL_ONES
            return
        if regs["rcx"] & 0xFF == CMD_GETVERSION:
            regs["rax"] = VMWARE_VERSION
            regs["rbx"] = VMWARE_MAGIC
            regs["rcx"] = VMX_TYPE_SCALABLE_SERVER
        else:
            regs["rax"] = eax

    def read(self, access) -> int:
        return (1 << (8 * access.size)) - 1

    def write(self, access, value: int) -> None:
        pass
