# SPDX-License-Identifier: GPL-2.0-or-later
"""One dispatcher from a vCPU exit to the devices.

It is a free-standing function of an :class:`~vmm.exits.Exit` and the machine's buses, so
unit tests can feed it made-up exits with no CPU at all.  Answers follow the platform rules
of shared/notes/boot-contract.md: an I/O port nobody owns reads all-ones and ignores writes,
MMIO nobody owns reads all-ones, an MSR nobody owns is a #GP, and RDPMC with no PMU is a #GP.
An access across device ranges reaches each owner's part (devices/bus.py splits it), so no port
or MMIO access a guest makes is an error.

Terminal exits (HLT, shutdown, ...) are the run loop's business, not the dispatcher's.
"""

from __future__ import annotations

from devices.bus import GP
from vmm.exits import Exit, ExitKind


class Dispatcher:
    def __init__(self, pio, mmio, msr, cpuid, rdpmc=None):
        self.pio = pio
        self.mmio = mmio
        self.msr = msr
        self.cpuid = cpuid
        self.rdpmc = rdpmc  # callable(ecx) -> int | Fault, or None when there is no PMU
        self.trace = None   # callable(exit, result) when exits are traced
        #: Exits seen, by kind: the ones answered here, and the terminal ones the run loop counts in.
        self.counts = dict.fromkeys(ExitKind, 0)
        self._answers = {
            ExitKind.IO_IN: self._io_in, ExitKind.IO_OUT: self._io_out,
            ExitKind.MMIO_READ: self._mmio_read, ExitKind.MMIO_WRITE: self._mmio_write,
            ExitKind.MSR_READ: self._msr_read, ExitKind.MSR_WRITE: self._msr_write,
            ExitKind.RDPMC: self._rdpmc, ExitKind.CPUID: self._cpuid,
        }

    def handle(self, exit: Exit):
        """Answer a non-terminal exit: an int, a Fault, a CPUID tuple, or None for writes."""
        answer = self._answers.get(exit.kind)
        if answer is None:
            raise ValueError(f"{exit.kind.name} is a terminal exit; the run loop handles it")
        self.counts[exit.kind] += 1
        result = answer(exit)
        if self.trace is not None:
            self.trace(exit, result)
        return result

    def _io_in(self, exit: Exit):
        value = self.pio.read(exit.address, exit.size, exit.vcpu_id)
        return ((1 << (8 * exit.size)) - 1) if value is None else value

    def _io_out(self, exit: Exit):
        self.pio.write(exit.address, exit.size, exit.value, exit.vcpu_id)

    def _mmio_read(self, exit: Exit):
        value = self.mmio.read(exit.address, exit.size, exit.vcpu_id)
        return ((1 << (8 * exit.size)) - 1) if value is None else value

    def _mmio_write(self, exit: Exit):
        self.mmio.write(exit.address, exit.size, exit.value, exit.vcpu_id)

    def _msr_read(self, exit: Exit):
        value = self.msr.read(exit.address, 8, exit.vcpu_id)
        return GP if value is None else value

    def _msr_write(self, exit: Exit):
        result = self.msr.write(exit.address, 8, exit.value, exit.vcpu_id)
        return GP if result is False else result

    def _rdpmc(self, exit: Exit):
        return GP if self.rdpmc is None else self.rdpmc(exit.address)

    def _cpuid(self, exit: Exit):
        return self.cpuid.query(exit.address, exit.value)

