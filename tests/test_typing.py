# SPDX-License-Identifier: GPL-2.0-or-later
"""Typing of the public API: both vCPU backends provide devices.vcpu.Vcpu, mypy passes on the typed
modules (pyproject.toml's [tool.mypy]), and the Cython modules' stubs match what they export.

The mypy and stubtest runs need mypy (the lint extra), see tests/dev_tools.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from devices.lapic import SPIV_SW_ENABLE, DeliveryMode
from devices.vcpu import Vcpu
from tests.dev_tools import require_tool
from tests.typing_vcpu import backends, lapics
from vmm._ucvcpu import UcVcpu
from vmm.fake_vcpu import FakeVcpu

ROOT = Path(__file__).resolve().parent.parent
STUBBED_MODULES = ("vmm._ucvcpu", "vmm._uarch", "vmm._trace", "vmm._decode", "pmu._core", "devices.lapic",
                   "devices._uart")


def _mypy(*args: str, cache: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)


def test_both_backends_are_vcpus_at_run_time():
    real, fake = backends()
    assert isinstance(real, UcVcpu) and isinstance(fake, FakeVcpu)
    for vcpu in (real, fake):
        assert isinstance(vcpu, Vcpu)
        assert vcpu.vcpu_id == 0 and vcpu.in_guest is False and 0 <= vcpu.cpl() <= 3
    assert not isinstance(object(), Vcpu)


def test_a_lapic_reaches_either_backend_through_the_protocol():
    real_lapic, fake_lapic = lapics()
    real, fake = real_lapic.vcpu, fake_lapic.vcpu
    assert isinstance(real, UcVcpu) and isinstance(fake, FakeVcpu)
    assert not real.attention and fake.kicks == 0
    for lapic in (real_lapic, fake_lapic):
        state = lapic.get_state()
        lapic.set_state({**state, "spiv": state["spiv"] | SPIV_SW_ENABLE})
        assert lapic.receive(DeliveryMode.FIXED, 0x40, False)
    # a newly pending interrupt kicks the vCPU
    assert real.attention and real.irq_pending and fake.kicks == 1
    # interrupt_for() asks the vCPU for its interrupt window: a fresh engine has RFLAGS.IF clear
    assert real_lapic.interrupt_for() is None
    assert fake_lapic.interrupt_for() == 0x40
    fake.rflags_if = False
    assert fake_lapic.interrupt_for() is None


def test_mypy_passes_on_the_typed_api(tmp_path):
    require_tool("mypy", "lint")
    proc = _mypy(cache=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("Success: no issues found")


def test_mypy_rejects_a_vcpu_that_misses_the_protocol(tmp_path):
    require_tool("mypy", "lint")
    broken = tmp_path / "broken_vcpu.py"
    broken.write_text(
        "from collections.abc import Callable\n"
        "from devices.vcpu import Vcpu\n"
        "from vmm.fake_vcpu import FakeVcpu\n"
        "class NoKick(FakeVcpu):\n"
        "    kick = None  # type: ignore[assignment]\n"
        "class WrongWork(FakeVcpu):\n"
        "    def queue_work(self, fn: Callable[[int], None]) -> None: ...  # type: ignore[override]\n"
        "a: Vcpu = NoKick()\n"
        "b: Vcpu = WrongWork()\n"
    )
    proc = _mypy(str(broken), cache=tmp_path / "cache")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert 'broken_vcpu.py:8: error: Incompatible types in assignment (expression has type "NoKick"' in proc.stdout
    assert 'broken_vcpu.py:9: error: Incompatible types in assignment (expression has type "WrongWork"' in proc.stdout


def test_stubs_match_the_compiled_modules(tmp_path):
    require_tool("mypy", "lint")
    proc = subprocess.run([sys.executable, "-m", "mypy.stubtest", "--mypy-config-file", "pyproject.toml",
                           "--allowlist", "tests/stubtest_allowlist.txt", *STUBBED_MODULES],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Success: no issues found in {len(STUBBED_MODULES)} modules" in proc.stdout
