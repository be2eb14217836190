# SPDX-License-Identifier: GPL-2.0-or-later
"""The KVM example's vCPU provides devices.vcpu.Vcpu: mypy checks this module
(tests/test_kvm_example.py runs ``mypy examples/kvm/typing_check.py``).

It is never run; it only hands a KvmVcpu out as a ``Vcpu`` and to the LAPIC's constructor (whose
stub takes a ``Vcpu``), so a KvmVcpu that lost a member or changed a signature is a type error.
"""

from __future__ import annotations

from pmu_kvm.vcpu import KvmVcpu

from devices.lapic import Lapic
from devices.vcpu import Vcpu
from vmm.clock import FakeClock
from vmm.cpuid import CpuidModel


def as_vcpu(vcpu: KvmVcpu) -> Vcpu:
    return vcpu


def lapic_on(vcpu: KvmVcpu) -> Lapic:
    return Lapic(FakeClock(), CpuidModel("intel"), vcpu)
