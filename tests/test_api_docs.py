# SPDX-License-Identifier: GPL-2.0-or-later
"""The API reference builds from the docstrings and stubs (docs/build_api.py), with every public
module and the classes embedders use, and without pdoc warnings (a stub it cannot read, a broken
reference)."""

from __future__ import annotations

import importlib.util
import warnings

import pytest

from tests.guest import ROOT

pytest.importorskip("pdoc", reason="pdoc is in the lint extra: pip install -e '.[test,lint]'")


def _builder():
    spec = importlib.util.spec_from_file_location("build_api", ROOT / "docs" / "build_api.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_reference_builds_with_every_public_module(tmp_path):
    builder = _builder()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        builder.build(tmp_path)
    for module in builder.PUBLIC_MODULES:
        assert (tmp_path / (module.replace(".", "/") + ".html")).is_file(), module
    pages = {name: (tmp_path / f"{name}.html").read_text() for name in
             ("vmm/machine", "vmm/cpu", "devices/lapic", "pmu/_core", "vmm/_ucvcpu", "vmm/gdbstub")}
    for page, names in (("vmm/machine", ("Machine", "MachineConfig", "RunResult")), ("vmm/cpu", ("Cpu", "CpuState")),
                        ("devices/lapic", ("Lapic", "ApicBus")), ("pmu/_core", ("PmuCore",)),
                        ("vmm/_ucvcpu", ("UcVcpu",)), ("vmm/gdbstub", ("GdbServer",))):
        for name in names:
            assert f'id="{name}"' in pages[page], (page, name)
