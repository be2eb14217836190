# SPDX-License-Identifier: GPL-2.0-or-later
"""Shared pieces of the benchmarks: one reported figure, repetition statistics, the bench kernel.

A :class:`Figure` is one row of the table ``python -m bench`` prints: a name, a measured value
(the median of the repetitions, with their spread ``min-max``), a target and a verdict.

:func:`run_bench` boots ``firmware/bin/bench.elf`` in this process with a marker device on port
0x4F0: the kernel writes the marker right before and right after its measured loop, so
``Loop.wall`` is the wall time of the loop alone (no Machine set-up, boot or exit), and
``Loop.insns`` the guest instructions retired between the two markers.

:func:`ensure_bytecode` brings the project's bytecode up to date before a benchmark times child
processes of the CLI, so they start as an installed package does.
"""

from __future__ import annotations

import compileall
import io
import re
import statistics
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BENCH_ELF = FIRMWARE / "bin" / "bench.elf"
MARK_PORT = 0x4F0
# The packages a wheel installs (pyproject.toml, [tool.setuptools] packages).
PACKAGES = ("vmm", "devices", "pmu", "firmware", "firmware.linux")


@dataclass
class Figure:
    name: str
    value: str
    target: str = ""
    verdict: str = ""      # "ok", "MISS", "info" or "skip"


@dataclass
class Stat:
    """Median and spread of repeated measurements."""

    values: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    def fmt(self, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
        lo, hi = min(self.values) * scale, max(self.values) * scale
        return f"{self.median * scale:.{digits}f}{unit} ({lo:.{digits}f}-{hi:.{digits}f})"


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISS"


def ensure_bytecode() -> None:
    """Compile the project's modules whose bytecode is missing or stale, as pip does at install.

    A child process (``python -m vmm run ...``) that finds no current ``.pyc`` compiles the module
    from source, and with PYTHONDONTWRITEBYTECODE set (as in some environments) it cannot save the
    result, so every run pays again (with no bytecode at all a hello32 boot costs ~1.5x the CPU
    time).  An installed package has its bytecode from the install; this puts the tree in that
    state before a benchmark times the CLI.  Only each package's own directory, not its
    subdirectories: firmware/linux/cache holds unpacked Debian files.
    """
    for package in PACKAGES:
        if not compileall.compile_dir(ROOT.joinpath(*package.split(".")), maxlevels=0, quiet=1):
            raise RuntimeError(f"compiling {package} failed")


def ensure_bench_kernel() -> Path:
    """Build firmware/bin/bench.elf if it is missing (make builds only that target)."""
    if not BENCH_ELF.exists():
        subprocess.run(["make", "-s", "-C", str(FIRMWARE), "bin/bench.elf"], check=True)
    return BENCH_ELF


class _Marker:
    """Port device: each write notes (value, wall time, retired guest instructions)."""

    def __init__(self, vcpu):
        self.vcpu = vcpu
        self.marks: list[tuple[int, float, int]] = []

    def read(self, access):
        return 0

    def write(self, access, value):
        self.marks.append((value, time.perf_counter(), self.vcpu.retired))


@dataclass
class Loop:
    wall: float                        # seconds between the two markers
    insns: int                         # guest instructions between the two markers
    total_insns: int                   # RunResult.instructions
    info: dict[str, int] = field(default_factory=dict)   # key=value pairs of the kernel's INFO lines
    serial: str = ""


def run_bench(op: str, n: int, counters: str = "none") -> Loop:
    """Run one measured loop of the bench kernel in-process."""
    from vmm.machine import Machine, MachineConfig

    machine = Machine(MachineConfig(serial=io.BytesIO(), cmdline=f"op={op} n={n} counters={counters}"))
    marker = _Marker(machine.vcpu)
    assert machine.pio.lookup(MARK_PORT) is None, "marker port already owned"
    machine.pio.register(MARK_PORT, 1, marker)
    machine.load(str(ensure_bench_kernel()))
    result = machine.run()
    text = result.serial.decode(errors="replace")
    if result.status != 1 or len(marker.marks) != 2:
        raise RuntimeError(f"bench kernel op={op} failed: {result.reason} {result.detail}\n{text}")
    (_, t0, i0), (_, t1, i1) = marker.marks
    info = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", " ".join(
        line for line in text.splitlines() if line.startswith("INFO:")))}
    return Loop(t1 - t0, i1 - i0, result.instructions, info, text)


def repeat(fn, reps: int) -> Stat:
    return Stat([fn() for _ in range(reps)])


def print_table(figures: list[Figure], file=None) -> None:
    """The figures as an aligned text table: figure, value (median (min-max)), target, verdict."""
    rows = [("figure", "value (median (min-max))", "target", "verdict")]
    rows += [(f.name, f.value, f.target, f.verdict) for f in figures]
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for k, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip(), file=file)
        if k == 0:
            print("  ".join("-" * w for w in widths), file=file)


def loop_costs(ops: list[str], n: int, reps: int) -> tuple[dict[str, Stat], dict[str, Stat], dict[str, Loop]]:
    """Per repetition, time the ``plain`` loop and then each op's loop (same n, counters off).

    Returns (wall per iteration in s, per-op cost in s = (wall(op) - wall(plain)) / n, the last
    Loop of each op).  ``plain`` is in the first two dicts too (its cost is 0 by definition).
    """
    per_iter: dict[str, list[float]] = {op: [] for op in ["plain", *ops]}
    cost: dict[str, list[float]] = {op: [] for op in ["plain", *ops]}
    last: dict[str, Loop] = {}
    for _ in range(reps):
        plain = run_bench("plain", n).wall
        per_iter["plain"].append(plain / n)
        cost["plain"].append(0.0)
        for op in ops:
            last[op] = loop = run_bench(op, n)
            per_iter[op].append(loop.wall / n)
            cost[op].append((loop.wall - plain) / n)
    return ({op: Stat(v) for op, v in per_iter.items()}, {op: Stat(v) for op, v in cost.items()}, last)


def module_main(figures_fn, doc: str) -> None:
    """``python -m bench.bench_NAME [--quick]``: print one module's figures."""
    import argparse

    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    print_table(figures_fn(parser.parse_args().quick))
