# SPDX-License-Identifier: GPL-2.0-or-later
"""Named CPU models (vmm/cpu_models.py) and what CpuidModel makes of them."""

from __future__ import annotations

import pytest

from vmm.cpu_models import (
    CPU_MODELS,
    DEFAULT_FEATURES,
    DEFAULT_SIGNATURE,
    ENGINE_ISA,
    ENGINE_UNSUPPORTED,
    CpuidError,
    cpu_model,
    cpu_model_for_qemu,
)
from vmm.cpuid import FEATURES, CpuidModel
from vmm.fake_vcpu import FakeVcpu

SERVER_MODELS = ("skylake-server", "cascadelake-server", "icelake-server", "epyc-rome", "epyc-milan")
CR4_OSXSAVE = 1 << 18


def brand(m: CpuidModel) -> str:
    regs = [r for leaf in (0x80000002, 0x80000003, 0x80000004) for r in m.query(leaf)]
    return b"".join(r.to_bytes(4, "little") for r in regs).rstrip(b"\0").decode()


def vendor(m: CpuidModel) -> bytes:
    _, b, c, d = m.query(0)
    return b"".join(r.to_bytes(4, "little") for r in (b, d, c))


@pytest.mark.parametrize("name, vendor_id, signature, brand_string", [
    ("skylake-server", b"GenuineIntel", 0x50654, "Intel Xeon Processor (Skylake)"),
    ("cascadelake-server", b"GenuineIntel", 0x50656, "Intel Xeon Processor (Cascadelake)"),
    ("icelake-server", b"GenuineIntel", 0x606A6, "Intel Xeon Processor (Icelake)"),
    ("epyc-rome", b"AuthenticAMD", 0x830F10, "AMD EPYC-Rome Processor"),
    ("epyc-milan", b"AuthenticAMD", 0xA00F11, "AMD EPYC-Milan Processor"),
])
def test_each_model_says_what_the_real_part_says(name, vendor_id, signature, brand_string):
    m = CpuidModel(name)
    assert vendor(m) == vendor_id and m.vendor == cpu_model(name).vendor
    assert m.query(1)[0] == signature
    assert brand(m) == brand_string
    if m.vendor == "amd":
        assert m.query(0x80000001)[0] == signature


@pytest.mark.parametrize("name", CPU_MODELS)
def test_every_model_advertises_exactly_its_features(name):
    m = CpuidModel(name)
    features = set(cpu_model(name).features)
    assert {f for f in FEATURES if m.has(f)} == features


@pytest.mark.parametrize("name", CPU_MODELS)
def test_models_advertise_only_what_the_engine_executes(name):
    features = set(cpu_model(name).features)
    assert features <= set(FEATURES)
    assert not features & ENGINE_UNSUPPORTED
    assert features <= set(DEFAULT_FEATURES) | set(ENGINE_ISA) | {"erms", "fsrm"}


def test_generic_models_keep_their_old_cpuid():
    assert cpu_model("intel").features == cpu_model("amd").features == DEFAULT_FEATURES
    assert DEFAULT_SIGNATURE["intel"] == (6, 0x55, 4) and DEFAULT_SIGNATURE["amd"] == (0x17, 0x31, 0)
    assert brand(CpuidModel("intel")) == "pmu-vmm virtual INTEL CPU"
    assert not CpuidModel("intel").has("xsave") and CpuidModel("intel").query(0xD) == (0, 0, 0, 0)


def test_amd_models_have_no_tsc_deadline_and_intel_ones_do():
    assert all(CpuidModel(n).has("tsc_deadline") for n in SERVER_MODELS if cpu_model(n).vendor == "intel")
    assert not any(CpuidModel(n).has("tsc_deadline") for n in SERVER_MODELS if cpu_model(n).vendor == "amd")


def test_signature_and_features_can_be_overridden():
    m = CpuidModel("epyc-milan", family=0x19, model=0x21, stepping=2, features=("fpu", "lm"))
    assert m.query(1)[0] == 0xA20F12 and brand(m) == "AMD EPYC-Milan Processor"
    assert {f for f in FEATURES if m.has(f)} == {"fpu", "lm"}


def test_unknown_model():
    with pytest.raises(CpuidError, match="unknown CPU model 'pentium'.*skylake-server"):
        CpuidModel("pentium")
    with pytest.raises(CpuidError):
        cpu_model("Skylake-Server")         # our names are lower case; QEMU's go through cpu_model_for_qemu


@pytest.mark.parametrize("qemu_name, name", [
    ("Skylake-Server", "skylake-server"), ("Skylake-Server-v4", "skylake-server"),
    ("Skylake-Server-IBRS", "skylake-server"), ("Cascadelake-Server-noTSX", "cascadelake-server"),
    ("Icelake-Server-v6", "icelake-server"), ("EPYC-Rome", "epyc-rome"), ("EPYC-Rome-v3", "epyc-rome"),
    ("epyc-milan", "epyc-milan"), ("EPYC", None), ("Haswell", None), ("max", None), ("Skylake-Client", None),
])
def test_qemu_cpu_names(qemu_name, name):
    assert cpu_model_for_qemu(qemu_name) == name


# -- leaves that depend on the features and the vCPU --------------------------------------------
def test_xsave_leaf():
    m = CpuidModel("skylake-server")
    assert m.query(0xD, 0) == (0b11, 576, 576, 0)
    assert m.query(0xD, 1) == (1, 0, 0, 0)          # XSAVEOPT
    assert m.query(0xD, 2) == (0, 0, 0, 0)          # no AVX state
    m.set_feature("xsave", False)
    assert m.query(0xD, 0) == m.query(0xD, 1) == (0, 0, 0, 0) and not m.has("xsaveopt")


def test_osxsave_follows_cr4():
    vcpu = FakeVcpu()
    m = CpuidModel("epyc-rome", vcpu=vcpu)
    assert not m.query(1)[2] >> 27 & 1
    vcpu.set_cr4(CR4_OSXSAVE)
    assert m.query(1)[2] >> 27 & 1
    m.set_feature("xsave", False)
    assert not m.query(1)[2] >> 27 & 1              # no XSAVE, no OSXSAVE whatever CR4 says
    assert not CpuidModel("skylake-server").query(1)[2] >> 27 & 1   # no vCPU attached: 0


def test_subleaf_leaves_ignore_unknown_subleaves_and_others_ignore_ecx():
    m = CpuidModel("skylake-server")
    assert m.query(7, 0)[1] != 0 and m.query(7, 1) == (0, 0, 0, 0)
    assert m.query(0xB, 1) == (0, 0, 0, 0)
    assert m.query(1, 5) == m.query(1, 0) and m.query(0x80000001, 9) == m.query(0x80000001)


def test_set_feature_apic_is_what_the_lapic_uses():
    m = CpuidModel("icelake-server")
    generation = m.generation
    m.set_feature("apic", False)
    assert not m.query(1)[3] >> 9 & 1 and m.generation > generation


@pytest.mark.parametrize("field, value", [("family", 0x10F), ("model", 0x100), ("stepping", 0x10), ("model", -1)])
def test_a_signature_cpuid_cannot_encode_is_refused(field, value):
    """CPUID.1:EAX has 4+8 bits of family, 4+4 of model, 4 of stepping: no field may spill into another."""
    with pytest.raises(CpuidError, match=f"CPUID {field} .* cannot be encoded"):
        CpuidModel("intel", **{field: value})
    assert CpuidModel("intel", family=0x10E, model=0xFF, stepping=0xF).signature() == 0x0FFF0FFF
