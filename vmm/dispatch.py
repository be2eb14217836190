"""One dispatcher from a vCPU exit to the devices.

It is a free-standing function of an :class:`~vmm.exits.Exit` and the machine's buses, so
unit tests can feed it made-up exits with no CPU at all.  Answers follow the platform rules
of shared/notes/boot-contract.md: an I/O port nobody owns reads all-ones and ignores writes,
MMIO nobody owns reads all-ones, an MSR nobody owns is a #GP, and RDPMC with no PMU is a #GP.

Terminal exits (HLT, shutdown, ...) are the run loop's business, not the dispatcher's.
"""

from __future__ import annotations

from devices.bus import GP, Fault
from vmm.exits import Exit, ExitKind


class Dispatcher:
    def __init__(self, pio, mmio, msr, cpuid, rdpmc=None):
        self.pio = pio
        self.mmio = mmio
        self.msr = msr
        self.cpuid = cpuid
        self.rdpmc = rdpmc  # callable(ecx) -> int | Fault, or None when there is no PMU
        self.trace = None   # callable(exit, result) when exits are traced

    def handle(self, exit: Exit):
        """Answer a non-terminal exit: an int, a Fault, a CPUID tuple, or None for writes."""
        result = self._answer(exit)
        if self.trace is not None:
            self.trace(exit, result)
        return result

    def _answer(self, exit: Exit):
        kind = exit.kind
        if kind is ExitKind.IO_IN:
            value = self.pio.read(exit.address, exit.size, exit.vcpu_id)
            return ((1 << (8 * exit.size)) - 1) if value is None else value
        if kind is ExitKind.IO_OUT:
            self.pio.write(exit.address, exit.size, exit.value, exit.vcpu_id)
            return None
        if kind is ExitKind.MMIO_READ:
            value = self.mmio.read(exit.address, exit.size, exit.vcpu_id)
            return ((1 << (8 * exit.size)) - 1) if value is None else value
        if kind is ExitKind.MMIO_WRITE:
            self.mmio.write(exit.address, exit.size, exit.value, exit.vcpu_id)
            return None
        if kind is ExitKind.MSR_READ:
            value = self.msr.read(exit.address, 8, exit.vcpu_id)
            return GP if value is None else value
        if kind is ExitKind.MSR_WRITE:
            result = self.msr.write(exit.address, 8, exit.value, exit.vcpu_id)
            return GP if result is False else result
        if kind is ExitKind.RDPMC:
            return GP if self.rdpmc is None else self.rdpmc(exit.address)
        if kind is ExitKind.CPUID:
            return self.cpuid.query(exit.address, exit.value)
        raise ValueError(f"{kind.name} is a terminal exit; the run loop handles it")


def is_fault(result) -> bool:
    return isinstance(result, Fault)
