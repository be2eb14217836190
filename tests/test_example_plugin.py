# SPDX-License-Identifier: GPL-2.0-or-later
"""An out-of-tree device, installed as a package, is found through its entry point and reached by a guest.

examples/pmu-vmm-example-device is installed with pip (``--no-deps --target``, from a copy, so
that no build output lands in the source tree) into a directory that only the CLI runs below
put on PYTHONPATH; ``python -m vmm run`` then lists ``example-scratch`` and the firmware kernel
``plugin_port`` talks to it.  The install builds the example with setuptools from the package
index pip uses, as ``pip install -e .`` does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "pmu-vmm-example-device"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory) -> Path:
    """A directory holding the installed example package (its code and its entry-point metadata)."""
    base = tmp_path_factory.mktemp("plugin")
    source = base / "source"
    shutil.copytree(EXAMPLE, source)
    target = base / "site"
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return target


def vmm_run(*args: str, plugins: Path | None) -> subprocess.CompletedProcess:
    """``python -m vmm run ARGS`` with the plugin directory (if any) on the path."""
    path = [str(plugins)] if plugins is not None else []
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([*path, str(ROOT)]))
    return subprocess.run([sys.executable, "-m", "vmm", "run", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_device_help_lists_the_plugin_after_the_builtins(plugin_path):
    proc = vmm_run("--device", "help", plugins=plugin_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == 'name "example-scratch", desc "example plugin: 32-bit scratch register at iobase, ' \
                        'read-only magic at iobase+4"'
    assert 'name "isa-debug-exit", desc "' in proc.stdout


def test_plugin_properties_are_typed_with_their_defaults(plugin_path):
    proc = vmm_run("--device", "example-scratch,help", plugins=plugin_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["example-scratch options:",
                                        "  iobase=<uint64> - first of the eight I/O ports (default: 0x520)"]


def test_guest_reaches_the_plugin_device(plugin_path):
    proc = vmm_run("plugin_port", "--device", "example-scratch", plugins=plugin_path)
    assert proc.stdout.splitlines()[0] == "plugin device test at port 0x520"
    passes = [line for line in proc.stdout.splitlines() if line.startswith("PASS: ")]
    assert len(passes) == 7 and "FAIL" not in proc.stdout, proc.stdout
    assert "PASS: magic reads 0x4c505845 (0x4c505845)" in passes
    assert "SUMMARY: 7 tests\n" in proc.stdout
    assert proc.returncode == 0, proc.stderr   # debug-exit value 0: all passed


def test_plugin_property_moves_the_device(plugin_path):
    proc = vmm_run("plugin_port", "--device", "example-scratch,iobase=0x530", "--append", "iobase=0x530",
                   plugins=plugin_path)
    assert "plugin device test at port 0x530" in proc.stdout
    assert "SUMMARY: 7 tests\n" in proc.stdout and proc.returncode == 0, proc.stdout + proc.stderr
    # the kernel still looking at 0x520 finds nothing there
    proc = vmm_run("plugin_port", "--device", "example-scratch,iobase=0x530", plugins=plugin_path)
    assert "SUMMARY: 7 tests, 7 unexpected failures" in proc.stdout and proc.returncode == 1


def test_plugin_refuses_a_base_without_room(plugin_path):
    proc = vmm_run("plugin_port", "--device", "example-scratch,iobase=0xfffc", plugins=plugin_path)
    assert proc.returncode == 2
    assert "iobase 0xfffc leaves no room for 8 ports below 0x10000" in proc.stderr
    assert proc.stdout == ""


def test_without_the_device_the_ports_read_all_ones(plugin_path):
    proc = vmm_run("plugin_port", plugins=plugin_path)
    assert "FAIL: magic reads 0x4c505845 (0xffffffff)" in proc.stdout
    assert "FAIL: scratch round trip (0xffffffff)" in proc.stdout
    assert "SUMMARY: 7 tests, 7 unexpected failures" in proc.stdout
    assert proc.returncode == 1, proc.stderr   # debug-exit value 1: failures


def test_without_the_package_the_device_is_unknown():
    proc = vmm_run("plugin_port", "--device", "example-scratch", plugins=None)
    assert proc.returncode == 2
    assert "'example-scratch' is not a valid device model name" in proc.stderr
