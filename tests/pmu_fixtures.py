# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared helpers for the PMU tests: a recording LAPIC and PMU builders on a FakeVcpu."""

from __future__ import annotations

from pmu import Pmu, PmuConfig
from vmm.clock import FakeClock
from vmm.cpuid import CpuidModel
from vmm.fake_vcpu import FakeVcpu

EN, INT, USR, OS, EDGE, INV = 1 << 22, 1 << 20, 1 << 16, 1 << 17, 1 << 18, 1 << 23
INSTRUCTIONS_SEL = 0xC0
CYCLES_SEL = 0x3C
BRANCHES_SEL = 0xC4
AMD_INSTRUCTIONS_SEL = 0xC0
AMD_BRANCHES_SEL = 0xC2


class FakeLapic:
    """Records deliver_local() calls."""

    def __init__(self):
        self.delivered: list[int] = []

    def deliver_local(self, lvt) -> bool:
        self.delivered.append(int(lvt))
        return True


def cmask(c: int) -> int:
    return (c & 0xFF) << 24


def make_pmu(config: PmuConfig | None = None, vendor: str | None = None, **policy):
    config = config or PmuConfig(vendor=vendor or "intel")
    cpuid = CpuidModel(config.vendor)
    config.apply_to_cpuid(cpuid)
    vcpu = FakeVcpu()
    lapic = FakeLapic()
    clock = FakeClock(1000)
    pmu = Pmu(cpuid, vcpu, lapic, clock, config, real_clock=FakeClock(5000), **policy)
    return pmu, vcpu, lapic
