# SPDX-License-Identifier: GPL-2.0-or-later
"""Build the API reference: ``python docs/build_api.py [OUTDIR]`` (default build/api), HTML from the
docstrings and the .pyi stubs of the Cython modules, with pdoc (a test extra: ``pip install -e '.[lint]'``).

PUBLIC_MODULES is the public API: what embedders and device authors use (the machine and its
vCPUs, the device interface, bus and registry, the LAPIC and PMU devices, the exits and dispatcher,
the CPUID model, the gdb server).  tests/test_api_docs.py builds it, so a docstring or stub that
pdoc cannot read fails the tests.
"""

from __future__ import annotations

import sys
from pathlib import Path

PUBLIC_MODULES = (
    "vmm.machine", "vmm.cpu", "vmm.clock", "vmm.cpuid", "vmm.cpu_models", "vmm.dispatch", "vmm.exits",
    "vmm.gdbstub", "vmm.loader", "vmm.board", "vmm.platform", "vmm._ucvcpu",
    "devices.device", "devices.registry", "devices.bus", "devices.vcpu", "devices.lapic", "devices.ioapic",
    "devices.uart", "devices.pit", "devices.rtc",
    "pmu.pmu", "pmu.config", "pmu._core", "pmu.events", "pmu.filter",
)


def build(output: Path) -> None:
    import pdoc

    pdoc.pdoc(*PUBLIC_MODULES, output_directory=output)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "build/api"))
