# SPDX-License-Identifier: GPL-2.0-or-later
"""The sdist is a complete source release, and what pip builds from it works.

``python -m build --sdist`` must put in every source a build needs (firmware, the Cython
.pyx/.pxd, stubs and py.typed markers, setup.py, LICENSE, CHANGELOG, docs) and nothing a build
makes (firmware images, objects, extension modules, the C that Cython generates).  The slow test
installs that sdist with plain pip into a new venv -- the Cython extensions and the firmware
compiled from it -- and boots a bundled kernel from outside the source tree (about 45 s).

Both need ``build`` (the test extra, see tests/dev_tools.py); the install also needs the package
index pip uses, as ``pip install -e .`` does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

import vmm
from tests.dev_tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("vmm", "devices", "pmu")


@pytest.fixture(scope="module")
def sdist(tmp_path_factory) -> Path:
    require_tool("build", "test")
    out = tmp_path_factory.mktemp("sdist")
    proc = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    (path,) = out.glob("*.tar.gz")
    return path


def _members(sdist: Path) -> set[str]:
    """The sdist's files, relative to its top directory."""
    with tarfile.open(sdist) as tar:
        return {m.name.partition("/")[2] for m in tar.getmembers() if m.isfile()}


def _tree(*patterns: str) -> set[str]:
    """Files of the source tree matching any of the glob ``patterns`` (no caches)."""
    return {p.relative_to(ROOT).as_posix() for pattern in patterns for p in ROOT.glob(pattern)
            if p.is_file() and "__pycache__" not in p.parts}


def test_sdist_is_named_after_the_one_version(sdist):
    assert sdist.name == f"pmu_vmm-{vmm.__version__}.tar.gz"


def test_sdist_holds_every_source_a_build_needs(sdist):
    members = _members(sdist)
    firmware = _tree("firmware/Makefile", "firmware/README.md", "firmware/*.py", "firmware/*.S",
                     "firmware/kernels/*.c", "firmware/lib/*.[chS]", "firmware/lib/*.ld", "firmware/linux/*")
    cython = _tree(*(f"{package}/{pattern}" for package in PACKAGES
                     for pattern in ("*.pyx", "*.pxd", "*.pxi", "*.pyi", "py.typed")))
    assert {"firmware/kernels/hello64.c", "firmware/lib/kernel.ld", "firmware/lib/entry_mb64.S",
            "firmware/trampoline.S"} <= firmware
    assert {"vmm/_ucvcpu.pyx", "vmm/_ucvcpu_engine.pxi", "vmm/_decode.pxd", "devices/lapic.pxd", "pmu/_core.pyi",
            "vmm/py.typed"} <= cython
    assert firmware - members == set()
    assert cython - members == set()
    assert {"LICENSE", "CHANGELOG.md", "README.md", "setup.py", "pyproject.toml", "MANIFEST.in",
            "docs/design.md", "examples/pmu-vmm-example-device/pyproject.toml"} <= members
    assert "GNU GENERAL PUBLIC LICENSE\n                       Version 2, June 1991" in (ROOT / "LICENSE").read_text()


def test_sdist_holds_nothing_a_build_makes(sdist):
    members = _members(sdist)
    built = [m for m in members if m.startswith(("firmware/bin/", "firmware/linux/cache/"))
             or m.endswith((".so", ".o", ".elf", ".bin", ".pyc"))]
    assert built == []
    generated_c = {f"{package}/{pyx.stem}.c" for package in PACKAGES for pyx in (ROOT / package).glob("*.pyx")}
    assert generated_c & members == set()


_PROBE = """
import json, importlib.metadata as md, vmm
dist = md.distribution("pmu-vmm")
print(json.dumps({"vmm": vmm.__file__, "version": vmm.__version__, "metadata": dist.version,
                  "files": sorted(str(f) for f in dist.files)}))
"""


@pytest.mark.slow
def test_sdist_installs_with_pip_and_boots_outside_the_tree(sdist, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    install = subprocess.run([python, "-m", "pip", "install", "--quiet", str(sdist)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=900)
    assert install.returncode == 0, install.stdout[-4000:] + install.stderr[-4000:]

    boot = subprocess.run([python, "-m", "vmm", "run", "hello64"], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert boot.stdout.splitlines()[0] == "Hello from hello64", boot.stdout + boot.stderr
    assert "PASS: running in long mode" in boot.stdout and "SUMMARY: 1 tests" in boot.stdout
    assert boot.returncode == 0, boot.stderr  # the guest's debug-exit value: 0 = passed

    probe = subprocess.run([python, "-c", _PROBE], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=60)
    assert probe.returncode == 0, probe.stderr
    installed = json.loads(probe.stdout)
    assert Path(installed["vmm"]).is_relative_to(venv)
    assert installed["version"] == installed["metadata"] == vmm.__version__
    files = set(installed["files"])
    assert {"vmm/py.typed", "devices/py.typed", "pmu/py.typed", "vmm/_ucvcpu.pyi", "vmm/_ucvcpu_engine.pxi",
            "vmm/_uarch.pyi", "devices/lapic.pyi", "pmu/_core.pyi", "firmware/bin/hello64.elf",
            "firmware/bin/plugin_port.elf", f"pmu_vmm-{vmm.__version__}.dist-info/licenses/LICENSE"} <= files
