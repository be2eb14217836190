# SPDX-License-Identifier: GPL-2.0-or-later
"""CPUID's C path in the hook layer (on_cpuid, vmm/_ucvcpu_cpuid.pxi) answers exactly what CpuidModel.query() does.

The C table is a copy of the handler's CpuidModel, rebuilt when its generation moves; with exit
tracing on (``handler.trace``) CPUID goes through the handler as before.
"""

from __future__ import annotations

import random

import pytest
import unicorn
from unicorn import x86_const as uxc

from vmm._ucvcpu import UcVcpu
from vmm.cpuid import SUBLEAF_LEAVES, CpuidModel

CODE = 0x1000
CR4_OSXSAVE = 1 << 18


class Handler:
    """The part of vmm.dispatch.Dispatcher the CPUID path uses; counts the exits that reach it."""

    def __init__(self, model):
        self.cpuid = model
        self.trace = None
        self.exits = 0

    def handle(self, exit):
        self.exits += 1
        return self.cpuid.query(exit.address, exit.value)


def make(cpu="intel", **kw):
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    uc.mem_map(0, 0x10000)
    vcpu = UcVcpu(uc)
    model = CpuidModel(cpu, vcpu=vcpu, **kw)
    handler = Handler(model)
    vcpu.handler = handler
    return uc, vcpu, model, handler


def probes(model, rng):
    leaves = {leaf for leaf, _ in model._leaves} | {0x17, 0x20, 0x7FFFFFFF, 0x80000023, 0x8FFFFFFF, 0xFFFFFFFF, 2, 3}
    out = []
    for leaf in sorted(leaves):
        for sub in (0, 1, 2, 3, 0xFFFFFFFF):
            out.append((leaf, sub))
    out += [(rng.getrandbits(32), rng.getrandbits(32)) for _ in range(200)]
    out += [(rng.choice(sorted(SUBLEAF_LEAVES)), rng.randrange(4)) for _ in range(50)]
    return out


def guest_cpuid(uc, leaf, sub):
    uc.mem_write(CODE, b"\x0f\xa2\xf4")     # cpuid; hlt
    uc.reg_write(uxc.UC_X86_REG_RAX, 0xAAAA_0000_0000_0000 | leaf)
    uc.reg_write(uxc.UC_X86_REG_RCX, 0xCCCC_0000_0000_0000 | sub)
    uc.reg_write(uxc.UC_X86_REG_RBX, 0xBBBB_BBBB_BBBB_BBBB)
    uc.reg_write(uxc.UC_X86_REG_RDX, 0xDDDD_DDDD_DDDD_DDDD)
    uc.reg_write(uxc.UC_X86_REG_RIP, CODE)
    return uc


@pytest.mark.parametrize("cpu", ["intel", "amd"])
@pytest.mark.parametrize("xsave", [False, True])
def test_c_table_answers_like_the_model(cpu, xsave):
    rng = random.Random(7)
    uc, vcpu, model, _ = make(cpu)
    model.set_feature("xsave", xsave)
    for cr4 in (0, CR4_OSXSAVE):
        uc.reg_write(uxc.UC_X86_REG_CR4, uc.reg_read(uxc.UC_X86_REG_CR4) & ~CR4_OSXSAVE | cr4)
        for leaf, sub in probes(model, rng):
            assert vcpu.cpuid(leaf, sub) == model.query(leaf, sub), (hex(leaf), hex(sub), cr4)


def test_guest_cpuid_takes_the_c_path_and_follows_every_change():
    uc, vcpu, model, handler = make()
    rng = random.Random(3)
    for step in range(40):
        leaf, sub = rng.choice([(0, 0), (1, 0), (7, 0), (0xB, 1), (0xD, 0), (0xD, 1), (0x15, 0), (0x16, 0),
                                (0x17, 0), (0x80000001, 0), (0x80000008, 0), (0x80000023, 0)])
        guest_cpuid(uc, leaf, sub)
        ex = vcpu.run(timeout=10)
        assert ex.kind.name == "HLT"
        got = tuple(uc.reg_read(getattr(uxc, f"UC_X86_REG_{r}")) for r in ("RAX", "RBX", "RCX", "RDX"))
        assert got == model.query(leaf, sub), (step, hex(leaf), sub)
        # every kind of change the model can take, each bumping its generation
        kind = step % 4
        if kind == 0:
            model.set_leaf(0x16, 0, step, step + 1, step + 2, step + 3)
        elif kind == 1:
            model.set_feature("xsave", step % 8 == 1)
        elif kind == 2:
            model.set_leaf(0, 0, rng.choice([0xD, 0x15, 0x16, 0x1F]), *model.query(0)[1:])
        else:
            uc.reg_write(uxc.UC_X86_REG_CR4, uc.reg_read(uxc.UC_X86_REG_CR4) ^ CR4_OSXSAVE)
    assert handler.exits == 0


def test_traced_exits_and_foreign_models_go_through_the_handler():
    uc, vcpu, model, handler = make()
    traced = []
    handler.trace = lambda exit, result: traced.append(exit)
    guest_cpuid(uc, 1, 0)
    assert vcpu.run(timeout=10).kind.name == "HLT"
    assert handler.exits == 1
    handler.trace = None
    model.vcpu = object()       # the model reads another vCPU's CR4: only the model can answer
    model.set_leaf(0x16, 0, 1, 2, 3, 4)
    guest_cpuid(uc, 0x16, 0)
    assert vcpu.run(timeout=10).kind.name == "HLT"
    assert handler.exits == 2
