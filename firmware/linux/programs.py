# SPDX-License-Identifier: GPL-2.0-or-later
"""The static test programs that go into the initramfs, and the workload's exact counts.

* ``hello`` (hello.c): glibc, ``gcc -static -O2``; prints one line and exits 0.
* ``workload`` (workload.S): no libc, ``gcc -static -nostdlib``; ``workload N`` runs a loop of
  5 instructions and 2 branches N times between two marker lines.  :func:`workload_counts` gives
  its exact counts (the derivation is in workload.S's header comment).  It keeps its symbol
  table (the functions of :data:`WORKLOAD_FUNCTIONS`), so ``perf report`` can name them.
* ``rdpmc`` (rdpmc.c): glibc, ``gcc -static -O2``; reads perf counters with RDPMC through perf's
  mmap page and compares with read() (its header comment says what it prints).

All are linked without a build id or anything time-dependent, so a toolchain builds the same
bytes every time.  Not supported: cross-compiling (the host's gcc must target x86-64 Linux).
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
COMPILER = "gcc"
COMMON_FLAGS = ("-static", "-Wl,--build-id=none", "-Wl,-z,noexecstack")
PROGRAMS = {
    "hello": ("hello.c", "-s", "-O2", "-Wall", "-Wextra"),
    "rdpmc": ("rdpmc.c", "-s", "-O2", "-Wall", "-Wextra"),
    "workload": ("workload.S", "-nostdlib"),
}
#: The workload's function symbols, in address order (workload.S).
WORKLOAD_FUNCTIONS = ("_start", "spin", "finish", "usage")

WORKLOAD_START_MARKER = "workload: start"
WORKLOAD_DONE_MARKER = "workload: done"


class ProgramBuildError(RuntimeError):
    """A test program could not be built; the message is one line."""


@dataclass(frozen=True)
class Counts:
    """User-mode events of a stretch of the workload; SYSCALL instructions are counted apart."""

    instructions: int  # retired instructions other than SYSCALL
    branches: int  # jumps and conditional branches, taken or not (SYSCALL excluded)
    syscalls: int
    conditional: int  # the conditional branches among ``branches`` (Jcc), taken or not


def workload_counts(iterations: int) -> tuple[Counts, Counts]:
    """``(between the markers, whole process)`` counts of ``workload ITERATIONS``.

    Between the markers: from the instruction after the first marker's SYSCALL up to and including
    the second marker's SYSCALL.  Whole process: from ``_start`` up to and including the exit SYSCALL.
    """
    if not 0 <= iterations < 2**63:
        raise ValueError(f"workload iterations must be in [0, 2**63), not {iterations}")
    digits = len(str(iterations))
    between = Counts(instructions=5 * iterations + 7, branches=2 * iterations + 1, syscalls=1,
                     conditional=iterations + 1)
    whole = Counts(instructions=5 * iterations + 12 * digits + 24, branches=2 * iterations + 5 * digits + 4, syscalls=3,
                   conditional=iterations + 4 * digits + 4)
    return between, whole


def build_programs(out_dir: Path) -> dict[str, Path]:
    """Compile every program into ``out_dir``; returns name -> path of the executable."""
    if shutil.which(COMPILER) is None:
        raise ProgramBuildError(f"cannot build the Linux test programs: {COMPILER} is not installed")
    out_dir.mkdir(parents=True, exist_ok=True)
    built = {}
    for name, (source, *flags) in PROGRAMS.items():
        output = out_dir / name
        command = [COMPILER, *COMMON_FLAGS, *flags, "-o", str(output), str(SOURCE_DIR / source)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            lines = result.stderr.strip().splitlines() or [f"{COMPILER} exit status {result.returncode}"]
            reason = next((line for line in lines if "error" in line), lines[-1])
            raise ProgramBuildError(f"cannot build {source}: {reason}")
        built[name] = output
    return built
