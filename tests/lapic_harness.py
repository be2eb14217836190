# SPDX-License-Identifier: GPL-2.0-or-later
"""A LAPIC on real buses with a fake clock, CPUID and vCPU, plus short helpers for the LAPIC tests."""

from __future__ import annotations

from devices.bus import Bus
from devices.lapic import APIC_BASE_EN, APIC_BASE_EXTD, MSR_APIC_BASE, Lapic
from vmm.clock import FakeClock
from vmm.cpuid import DEFAULT_FEATURES, CpuidModel
from vmm.fake_vcpu import FakeVcpu

SPIV_ENABLED = 0x1FF  # software-enabled, spurious vector 0xFF


class Harness:
    def __init__(self, vendor: str = "intel", features=DEFAULT_FEATURES, apic_id: int = 0, bsp: bool = True,
                 enable: bool = True):
        self.clock = FakeClock()
        self.cpuid = CpuidModel(vendor, features=features)
        self.vcpu = FakeVcpu()
        self.lapic = Lapic(self.clock, self.cpuid, self.vcpu, apic_id=apic_id, bsp=bsp)
        self.mmio = Bus("mmio", 2**52)
        self.msr = Bus("msr", 2**32)
        self.base_changes: list[tuple[int, int]] = []
        self.lapic.on_base_change = lambda old, new: self.base_changes.append((old, new))
        self.lapic.attach(self.mmio, self.msr)
        if enable:
            self.write(0xF0, SPIV_ENABLED)

    # xAPIC page, 32-bit accesses at the current base
    def read(self, offset: int, size: int = 4) -> int:
        return self.mmio.read(self.lapic.base + offset, size)

    def write(self, offset: int, value: int, size: int = 4):
        return self.mmio.write(self.lapic.base + offset, size, value)

    # One MSR index is one unit of the MSR bus: an 8-byte lookup at 0x1B would cross the end of a
    # one-index range.  The LAPIC ignores access.size on MSRs.
    def rdmsr(self, index: int, host: bool = False):
        return self.msr.read(index, 1, host=host)

    def wrmsr(self, index: int, value: int, host: bool = False):
        return self.msr.write(index, 1, value, host=host)

    def enter_x2apic(self) -> None:
        assert self.wrmsr(MSR_APIC_BASE, self.lapic.base | APIC_BASE_EN | APIC_BASE_EXTD | 0x100) is None


def bits_of(h: Harness, bank: int) -> int:
    """ISR (0x100), TMR (0x180) or IRR (0x200) as one 256-bit int, read through the xAPIC page."""
    return sum(h.read(bank + 0x10 * i) << (32 * i) for i in range(8))
