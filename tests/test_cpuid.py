# SPDX-License-Identifier: GPL-2.0-or-later
from __future__ import annotations

import pytest

from vmm.cpuid import CpuidError, CpuidModel


def _vendor(model):
    _, b, c, d = model.query(0)
    return b"".join(r.to_bytes(4, "little") for r in (b, d, c))


def test_vendors():
    assert _vendor(CpuidModel("intel")) == b"GenuineIntel"
    assert _vendor(CpuidModel("amd")) == b"AuthenticAMD"
    with pytest.raises(CpuidError):
        CpuidModel("via")


def test_signature_encodes_extended_family_and_model():
    m = CpuidModel("amd", family=0x19, model=0x21, stepping=2)
    eax = m.query(1)[0]
    assert (eax >> 8) & 0xF == 0xF and (eax >> 20) & 0xFF == 0x19 - 0xF
    assert ((eax >> 16) & 0xF) << 4 | (eax >> 4) & 0xF == 0x21
    assert eax & 0xF == 2


def test_features_and_generation():
    m = CpuidModel("intel")
    assert m.has("x2apic") and m.has("apic") and not m.has("pdcm")
    gen = m.generation
    m.set_feature("pdcm", True)
    assert m.has("pdcm") and m.query(1)[2] >> 15 & 1
    assert m.generation > gen
    with pytest.raises(CpuidError):
        m.set_feature("warp_drive", True)


def test_out_of_range_leaf_returns_highest_basic_leaf():
    m = CpuidModel("intel")
    assert m.query(0x40) == m.query(m.query(0)[0])
    assert m.query(0x80000002)[0] != 0  # brand string


@pytest.mark.parametrize("cpus, id_bits", [(1, 0), (2, 1), (3, 2), (4, 2), (5, 3), (8, 3), (64, 6)])
def test_topology_is_one_package_of_single_threaded_cores(cpus, id_bits):
    for vendor in ("intel", "amd"):
        m = CpuidModel(vendor)
        m.set_topology(cpus - 1, cpus)
        eax, ebx, ecx, edx = m.query(1)
        assert ebx >> 24 == cpus - 1 and ebx >> 16 & 0xFF == 1 << id_bits
        assert ebx & 0xFFFF == 0x0800                          # CLFLUSH line size kept
        assert edx >> 28 & 1 == (cpus > 1) and edx & 1       # HTT only with several CPUs; FPU kept
        assert m.query(0xB, 0) == (0, 1, 0x100, cpus - 1)      # SMT level: one thread
        assert m.query(0xB, 1) == (id_bits, cpus, 0x201, cpus - 1)
        assert m.query(0xB, 2)[1:3] == (0, 2)                  # the level list ends
        if vendor == "amd":
            assert m.query(0x80000008)[2] == (cpus - 1) | id_bits << 12
            assert m.query(0x80000008)[0] == 0x3030


def test_topology_refuses_ids_outside_the_package():
    m = CpuidModel("intel")
    for apic_id, cpus in ((2, 2), (-1, 2), (0, 0), (0, 256)):
        with pytest.raises(CpuidError):
            m.set_topology(apic_id, cpus)
