# SPDX-License-Identifier: GPL-2.0-or-later
"""Both vCPU backends provide devices.vcpu.Vcpu: mypy checks this module (pyproject.toml's
[tool.mypy] files), and tests/test_typing.py also runs it.

``backends()`` hands a Unicorn vCPU and a fake one out as ``Vcpu``, and gives each to a LAPIC,
whose stub takes a ``Vcpu``: a backend that lost a member or changed a signature is a type error.
"""

from __future__ import annotations

from unicorn import UC_ARCH_X86, UC_MODE_64, Uc

from devices.lapic import Lapic
from devices.vcpu import Vcpu
from vmm._ucvcpu import UcVcpu
from vmm.clock import FakeClock
from vmm.cpuid import CpuidModel
from vmm.fake_vcpu import FakeVcpu


def backends() -> list[Vcpu]:
    """One vCPU of each backend, typed as what devices see."""
    real: Vcpu = UcVcpu(Uc(UC_ARCH_X86, UC_MODE_64))
    fake: Vcpu = FakeVcpu()
    return [real, fake]


def lapics() -> list[Lapic]:
    """A LAPIC on each backend (the constructor's ``vcpu`` parameter is a ``Vcpu``)."""
    return [Lapic(FakeClock(), CpuidModel("intel"), vcpu) for vcpu in backends()]
