# SPDX-License-Identifier: GPL-2.0-or-later
"""SMP: aggregate guest MIPS at 1, 2 and 4 vCPUs, the cost of a vCPU switch, IPI round trips.

The guest side is firmware/kernels/bench_smp.c, booted in-process with ``--smp N`` and timed between
its two marker OUTs to port 0x4F0 (as the other benches: AP start-up, boot and exit excluded).  The
marker notes the wall time, the process's CPU time, every vCPU's retired instructions, the virtual
clock and how many time slices the machine has run (``Machine._run_slice`` is wrapped to count them,
and the slices that change the vCPU, i.e. the switches).  Times are given from the wall clock and,
after "CPU", from the process's CPU time: the VMM runs on one host thread, so on a loaded host the
CPU time is the steadier of the two (it leaves out the time the thread waited for a host CPU).

* **Aggregate MIPS**: ``op=alu n=N``, the bench kernel's 10-instruction ALU loop, N iterations in
  all split evenly over the vCPUs (each AP kicked by an IPI through its mailbox; the BSP then waits
  in ``sti; hlt`` for their "done" IPIs), at the default quantum.  MIPS = 10 N / wall: the same
  total work at N = 1, 2 and 4 vCPUs.  The vCPUs share one host thread, so the ideal is the N = 1
  figure, not N times it.  Also N = 2 with the BSP working alone (``workers=1``, the AP halted).
* **vCPU switch**: the same total work (two vCPUs working) at ``--quantum`` 1,000 and 100,000;
  cost = (wall(1,000) - wall(100,000)) / (switches(1,000) - switches(100,000)), per repetition.
  The same with the AP halted (``workers=1``): the BSP's slice still ends every quantum and it is
  picked again, so that difference is the cost of a slice end without an engine change.  And the
  same again with a wall-clock timeout (``--timeout``, MachineConfig.timeout), which the other
  figures do not set: every slice then enters the engine with a timeout.
* **Quantum**: aggregate MIPS of the N = 2 work at quanta 10,000 to 1,000,000 (default 50,000).
  The default's cost in %, measured (CPU(default) / CPU(1,000,000) - 1, per repetition) and
  derived (its switches x the median switch cost / its wall time).
* **IPI ping-pong** between the BSP and CPU 1 (``op=ipi``, xAPIC, and ``op=ipi_x2apic``), the BSP
  waiting by spinning or in ``sti; hlt`` (``wait=hlt``): guest instructions per round trip (all
  vCPUs', between the markers; the kernel's TSC delta says the same in virtual time: one tick per
  instruction of whichever vCPU runs) and wall time per round trip.

Every configuration retires the same instructions in every repetition (the SMP schedule is
deterministic): checked, as a figure.

Run: ``python -m bench.bench_smp [--quick]``.
"""

from __future__ import annotations

import io
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import FIRMWARE, MARK_PORT, Figure, Stat, verdict

BENCH_SMP_ELF = FIRMWARE / "bin" / "bench_smp.elf"
INSNS_PER_ITER = 10
QUANTA = (1_000, 10_000, 50_000, 100_000, 1_000_000)
SWITCH_QUANTA = (1_000, 100_000)
IPI_OPS = {("ipi", "spin"): "xAPIC, BSP spins", ("ipi_x2apic", "spin"): "x2APIC, BSP spins",
           ("ipi", "hlt"): "xAPIC, BSP in hlt", ("ipi_x2apic", "hlt"): "x2APIC, BSP in hlt"}


def ensure_kernel() -> Path:
    if not BENCH_SMP_ELF.exists():
        subprocess.run(["make", "-s", "-C", str(FIRMWARE), "bin/bench_smp.elf"], check=True)
    return BENCH_SMP_ELF


@dataclass
class _Mark:
    wall: float
    cpu: float              # the process's CPU time (every thread)
    retired: list[int]      # per vCPU
    clock: int              # virtual ns (= instructions of every vCPU, plus halted skips)
    slices: int
    switches: int


class _SmpMarker:
    """Port device: each write notes a :class:`_Mark`; counts the machine's slices meanwhile."""

    def __init__(self, machine):
        self.machine = machine
        self.marks: list[_Mark] = []
        self.slices = self.switches = 0
        self._last = None
        run_slice = machine._run_slice

        def counted(cpu, *args, **kwargs):
            self.slices += 1
            if cpu is not self._last:
                self.switches += 1
                self._last = cpu
            return run_slice(cpu, *args, **kwargs)

        machine._run_slice = counted

    def read(self, access):
        return 0

    def write(self, access, value):
        m = self.machine
        self.marks.append(_Mark(time.perf_counter(), time.process_time(), [c.vcpu.retired for c in m.cpus],
                                m.clock.now(),
                                self.slices, self.switches))


@dataclass
class SmpRun:
    wall: float                 # seconds between the two markers
    cpu: float                  # CPU seconds of the process between them (less hurt by a loaded host)
    insns: int                  # instructions every vCPU retired between them
    per_cpu: list[int]          # the same per vCPU
    clock: int                  # virtual time between them
    slices: int
    switches: int
    info: dict[str, int] = field(default_factory=dict)
    serial: str = ""


def run_smp(op: str, n: int, smp: int, quantum: int | None = None, extra: str = "", timeout: float = 0.0) -> SmpRun:
    """Boot bench_smp.elf with ``--smp smp`` in-process; the measurement between its markers.
    ``timeout``: MachineConfig.timeout (``--timeout``), none by default as in the other benches."""
    from vmm.machine import Machine, MachineConfig
    from vmm.options import DEFAULT_QUANTUM

    config = MachineConfig(serial=io.BytesIO(), smp=smp, quantum=quantum or DEFAULT_QUANTUM, timeout=timeout,
                           cmdline=f"op={op} n={n} {extra}".strip())
    machine = Machine(config)
    marker = _SmpMarker(machine)
    assert machine.pio.lookup(MARK_PORT) is None, "marker port already owned"
    machine.pio.register(MARK_PORT, 1, marker)
    machine.load(str(ensure_kernel()))
    result = machine.run()
    text = result.serial.decode(errors="replace")
    if result.status != 1 or len(marker.marks) != 2 or "FAIL" in text:
        raise RuntimeError(f"bench_smp op={op} smp={smp} failed: {result.reason} {result.detail}\n{text}")
    a, b = marker.marks
    per_cpu = [y - x for x, y in zip(a.retired, b.retired, strict=True)]
    info = {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)\b", " ".join(
        line for line in text.splitlines() if line.startswith("INFO:")))}
    return SmpRun(b.wall - a.wall, b.cpu - a.cpu, sum(per_cpu), per_cpu, b.clock - a.clock, b.slices - a.slices,
                  b.switches - a.switches, info, text)


def _both(runs: list[SmpRun], fn, scale: float = 1.0, digits: int = 1) -> str:
    """fn(run, seconds) over the repetitions, with the wall time and with the CPU time."""
    wall = Stat([fn(r, r.wall) for r in runs]).fmt(scale, digits)
    return f"{wall}; CPU {Stat([fn(r, r.cpu) for r in runs]).fmt(scale, digits)}"


def figures(quick: bool = False) -> list[Figure]:
    from vmm.options import DEFAULT_QUANTUM

    reps = 3 if quick else 5
    n_alu = 4_000_000 if quick else 30_000_000        # aggregate MIPS and quanta: 40 / 300 M instructions
    n_sw = 1_000_000 if quick else 5_000_000          # switch cost: 10 / 50 M instructions
    n_ipi = 2_000 if quick else 10_000
    lo, hi = SWITCH_QUANTA
    quanta = tuple(sorted({*QUANTA, DEFAULT_QUANTUM} - {lo}))     # the sweep (1,000 is the switch pair's)
    ensure_kernel()
    runs: dict[str, list[SmpRun]] = {}

    def run(key: str, op: str, n: int, smp: int, **kw) -> None:
        runs.setdefault(key, []).append(run_smp(op, n, smp, **kw))

    # Repetitions outermost, so every configuration sees the same machine load.
    for _ in range(reps):
        for key, smp, extra in (("1", 1, ""), ("2", 2, ""), ("4", 4, ""), ("2w1", 2, "workers=1")):
            run(f"alu {key}", "alu", n_alu, smp, extra=extra)
        for q in quanta:
            if q != DEFAULT_QUANTUM:
                run(f"alu 2 q={q}", "alu", n_alu, 2, quantum=q)
        # the switch pairs: both vCPUs working; the AP halted (the BSP's slices still end every
        # quantum); both working with a wall-clock timeout (--timeout; tests/guest.py gives every
        # run one) on a tenth of the work, as it makes each switch far dearer
        for kind, n, extra, timeout in (("busy", n_sw, "", 0.0), ("lone", n_sw, "workers=1", 0.0),
                                        ("timed", n_sw // 10, "", 600.0)):
            for q in SWITCH_QUANTA:
                run(f"pair {kind} {q}", "alu", n, 2, quantum=q, extra=extra, timeout=timeout)
        for op, wait in IPI_OPS:
            run(f"{op} {wait}", op, n_ipi, 2, extra=f"wait={wait}")
        run("ipi timed", "ipi_x2apic", n_ipi // 5, 2, timeout=600.0)
    runs[f"alu 2 q={DEFAULT_QUANTUM}"] = runs["alu 2"]

    def mips(r: SmpRun, t: float) -> float:
        return r.insns / t / 1e6

    out: list[Figure] = []
    base = runs["alu 1"]
    for key, label in (("1", "N=1 (--smp 1)"), ("2", "N=2"), ("4", "N=4"), ("2w1", "N=2, BSP alone (AP halted)")):
        got = runs[f"alu {key}"]
        value = _both(got, mips, digits=0)
        if key != "1":
            ratio = Stat([b.cpu / r.cpu for r, b in zip(got, base, strict=True)]).fmt(digits=2)
            value += f"; x N=1 (CPU) {ratio}; {got[0].slices:,} slices"
        out.append(Figure(f"SMP ALU MIPS, {n_alu * INSNS_PER_ITER // 1_000_000} M insns in all, {label}", value,
                          "", "info"))

    labels = {"busy": f"vCPU switch (2 vCPUs working), us: quantum {lo:,} vs {hi:,}",
              "lone": "  slice end, same vCPU again (AP halted), us",
              "timed": "  vCPU switch with a wall-clock timeout (--timeout), us"}
    switch_cost = 0.0
    for kind, label in labels.items():
        a, b = runs[f"pair {kind} {lo}"], runs[f"pair {kind} {hi}"]
        extra_slices = a[0].slices - b[0].slices
        if extra_slices <= 0:       # a vCPU no other vCPU could replace keeps running: no slice ends
            out.append(Figure(label, f"no slice ends ({a[0].slices:,} slices at quantum {lo:,})", "", "info"))
            continue
        wall = Stat([(x.wall - y.wall) / extra_slices for x, y in zip(a, b, strict=True)])
        cpu = Stat([(x.cpu - y.cpu) / extra_slices for x, y in zip(a, b, strict=True)])
        switch_cost = switch_cost or wall.median
        out.append(Figure(f"{label} ({extra_slices:,} more)", f"{wall.fmt(1e6, 1)}; CPU {cpu.fmt(1e6, 1)}", "",
                          "info"))

    ref = runs[f"alu 2 q={max(quanta)}"]
    for q in quanta:
        got = runs[f"alu 2 q={q}"]
        label = f"{q:,}" + (" (default)" if q == DEFAULT_QUANTUM else "")
        value = f"{_both(got, mips, digits=0)}; {got[0].switches:,} switches"
        out.append(Figure(f"N=2 ALU MIPS, quantum {label}", value, "", "info"))
    default = runs[f"alu 2 q={DEFAULT_QUANTUM}"]
    measured = Stat([d.cpu / r.cpu - 1 for d, r in zip(default, ref, strict=True)])
    derived = Stat([d.switches * switch_cost / d.wall for d in default])
    out.append(Figure(f"  default quantum's cost, % of time: CPU vs {max(quanta):,}; switches x switch cost / wall",
                      f"{measured.fmt(100, 1)}; {derived.fmt(100, 1)}", "", "info"))

    for key, label in IPI_OPS.items():
        got = runs[" ".join(key)]
        last = got[-1]
        per_cpu = "/".join(f"{c / n_ipi:.1f}" for c in last.per_cpu)
        out.append(Figure(f"IPI round trip BSP<->CPU 1, {label}: guest insns (BSP/CPU 1), TSC ticks",
                          f"{last.insns / n_ipi:.1f} ({per_cpu}), {last.info['tsc_delta'] / n_ipi:.1f}", "", "info"))
        out.append(Figure(f"  us/round trip ({last.switches / n_ipi:g} switches each)",
                          _both(got, lambda r, t: t / n_ipi, 1e6), "", "info"))
    out.append(Figure("  x2APIC, BSP spins, with a wall-clock timeout (--timeout): us/round trip",
                      _both(runs["ipi timed"], lambda r, t: t / (n_ipi // 5), 1e6), "", "info"))
    bad = {k: sorted({r.insns for r in v}) for k, v in runs.items() if len({r.insns for r in v}) != 1}
    out.append(Figure("instructions between the markers over the repetitions",
                      "; ".join(f"{k}: {v}" for k, v in bad.items()) or "constant in every configuration",
                      "one count per config", verdict(not bad)))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    module_main(figures, __doc__)
