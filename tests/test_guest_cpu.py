# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest-side CPU model tests: firmware/kernels/cpu_features.c for every feature and every model.

A feature goes into vmm/cpu_models.py only when its check in cpu_features.c passes; the features
left out are forced on here to show that their checks fail (or, for RDRAND/RDSEED, that two runs
differ), so a change of engine that fixes one shows up.
"""

from __future__ import annotations

import re

import pytest

from tests.guest import assert_all_pass
from tests.guest import boot as guest_boot
from vmm.cpu_models import CPU_MODELS, ENGINE_ISA, ENGINE_UNSUPPORTED, cpu_model

#: Features the models may have beyond the generic defaults (REP MOVSB hints need no engine support).
VERIFIED = (*ENGINE_ISA, "erms", "fsrm")
RESULT = re.compile(r"^(PASS|FAIL|XFAIL|XPASS|SKIP): ([a-z0-9_]+): ", re.M)


@pytest.fixture
def boot_model():
    """boot(kernel, cpu=NAME, **config) for any model of vmm/cpu_models.py."""
    def boot(kernel: str, cpu: str, **config):
        return guest_boot(kernel, cpu=cpu, **config)
    return boot


def results(serial: str) -> dict[str, set[str]]:
    """feature name -> the result tags of its lines."""
    found: dict[str, set[str]] = {}
    for tag, name in RESULT.findall(serial):
        found.setdefault(name, set()).add(tag)
    return found


@pytest.mark.parametrize("feature", VERIFIED)
def test_verified_feature_works(boot_model, feature):
    forced = {feature: True, "xsave": True} if feature == "xsaveopt" else {feature: True}
    result, serial = boot_model("cpu_features", "intel", cpuid_features=forced)
    assert_all_pass(result, serial)
    assert results(serial)[feature] <= {"PASS", "XFAIL"} and "PASS" in results(serial)[feature], serial


@pytest.mark.parametrize("feature", sorted(ENGINE_UNSUPPORTED - {"rdrand", "rdseed"}))
def test_unsupported_feature_fails_its_check(boot_model, feature):
    _, serial = boot_model("cpu_features", "intel", cpuid_features={feature: True})
    assert "FAIL" in results(serial)[feature], serial


@pytest.mark.parametrize("feature", ["rdrand", "rdseed"])
def test_random_numbers_differ_between_runs(boot_model, feature):
    values = [re.search(rf"^INFO: {feature}: values (.*)$", boot_model("cpu_features", "intel",
                                                                      cpuid_features={feature: True})[1], re.M)
              for _ in range(2)]
    assert values[0] and values[1] and values[0].group(1) != values[1].group(1)


def test_xsave_engine_deviation_is_the_known_one(boot_model):
    """XSETBV takes XCR0.AVX although leaf 0xD does not offer it: an expected failure, nothing else."""
    _, serial = boot_model("cpu_features", "skylake-server")
    assert re.findall(r"^XFAIL: .*$", serial, re.M) == ["XFAIL: xsave: XSETBV of AVX state, not offered, #GP"]


@pytest.mark.parametrize("name", CPU_MODELS)
def test_model_cpuid_and_features(boot_model, name):
    model = cpu_model(name)
    result, serial = boot_model("cpu_features", name)
    found = results(serial)
    if set(model.features) & set(found):
        assert_all_pass(result, serial)
    else:                                   # the generic models: nothing to check, status 77
        assert (result.reason, result.status) == ("debug-exit", 77) and "FAIL" not in serial, serial
    vendor = "GenuineIntel" if model.vendor == "intel" else "AuthenticAMD"
    assert (f"INFO: cpu: vendor {vendor} family {model.family:#x} model {model.model:#x} "
            f"stepping {model.stepping} brand '{model.brand}'") in serial, serial
    assert {f for f, tags in found.items() if "PASS" in tags} == set(model.features) & set(found)
    assert {f for f, tags in found.items() if tags == {"SKIP"}} == set(found) - set(model.features)


@pytest.mark.parametrize("name", [n for n in CPU_MODELS if n not in ("intel", "amd")])
@pytest.mark.parametrize("kernel, cmdline", [
    ("lapic_enable", ""), ("lapic_xapic", ""), ("lapic_x2apic", ""), ("lapic_timer", ""), ("pmu_msr", ""),
    ("pmu_rdpmc", ""), ("pmu_count", "n=10000"),
])
def test_model_runs_the_lapic_and_pmu_kernels(boot_model, name, kernel, cmdline):
    """The vendor-specific parts (LAPIC, PMU) follow the model's vendor."""
    assert_all_pass(*boot_model(kernel, name, cmdline=cmdline))
