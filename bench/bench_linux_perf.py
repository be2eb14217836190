# SPDX-License-Identifier: GPL-2.0-or-later
"""perf in the Debian guest: exactness, determinism and what counting and sampling cost.

One boot of the Intel model with the perf initramfs (firmware/linux/assets.py) runs, in sections
(firmware/linux/perf_output.py), five times each:

* ``plain``: ``workload N`` without perf;
* ``stat``: ``perf stat -e instructions:u,branches:u workload N``;
* ``record``: ``perf record -e instructions:u -c 1009 workload N`` (thousands of samples);

then prints the sample count of each recording.  The serial sink notes the host's wall clock and
the guest's retired instructions at each section marker and at each of the workload's own
"workload: start" / "workload: done" lines.  Between those two lines only the workload's loop
runs, plus whatever perf makes the guest do meanwhile (PMIs), so the loop's cost with and without
sampling is measured without any timing inside the guest and without perf's start-up (loading a
10 MB binary and its libraries, reading /proc), which the whole-run times include.  Guest time
is busy time: one retired instruction is 1 ns of the virtual clock (idle time is left out).

Figures:

* perf stat's counts over the five runs: median (min-max) and whether they equal the workload's
  exact formula (firmware/linux/programs.py; SYSCALL counts in user mode);
* wall time of a whole run: perf off, perf stat, perf record;
* the loop between the markers: wall time without perf and while perf record samples it;
* one PMI (the NMI, perf's handler, the sample written to its buffer): the extra wall time and
  extra guest time of the sampled loop, divided by the samples taken in it;
* samples per second of guest time while the loop is sampled.

The assets must be there (``python -m firmware.linux.assets fetch``); without them the figures are
skipped with the reason.  Run: ``python -m bench.bench_linux_perf [--quick]``.
"""

from __future__ import annotations

import os
import re
import time

from bench.common import ROOT, Figure, Stat

RUNS = 5
PERIOD = 1009
TIMEOUT = 900
MARKER = re.compile(rb"^(?:== (\w+)|workload: (start|done))\r?$", re.MULTILINE)


class _StampedSerial:
    """A serial sink that notes (line, host wall time, guest instructions retired) at each marker line."""

    def __init__(self):
        self.output = bytearray()
        self.vcpu = None  # the machine's vCPU, set once the machine exists
        self.stamps: list[tuple[str, float, int]] = []

    def write(self, data: bytes) -> int:
        # The UART hands over whole lines (devices/uart.py), so a marker arrives in one piece.
        self.output += data
        for section, workload in MARKER.findall(data):
            self.stamps.append(((section or workload).decode(), time.perf_counter(), self.vcpu.retired))
        return len(data)

    def flush(self) -> None:
        pass

    def spans(self) -> dict[str, dict[str, list[tuple[float, int]]]]:
        """Per section: "run", its whole (wall, guest) divided by RUNS, and "loop", each start-done span."""
        found: dict[str, dict[str, list[tuple[float, int]]]] = {}
        sections = [(i, name) for i, (name, _, _) in enumerate(self.stamps) if name not in ("start", "done")]
        for (first, name), (last, _) in zip(sections, sections[1:], strict=False):
            (_, wall0, guest0), (_, wall1, guest1) = self.stamps[first], self.stamps[last]
            inside = self.stamps[first + 1:last]
            loops = [(done[1] - start[1], done[2] - start[2]) for start, done in zip(inside[::2], inside[1::2],
                                                                                      strict=True)]
            found[name] = {"run": [((wall1 - wall0) / RUNS, (guest1 - guest0) // RUNS)], "loop": loops}
        return found


def _boot(assets, iterations: int):
    from firmware.linux.initramfs import run_parameter
    from firmware.linux.perf_output import sectioned_command, sections
    from vmm.machine import Machine, MachineConfig

    loop = " ".join(str(i) for i in range(RUNS))
    command = sectioned_command({
        "setup": "cd /tmp; echo 1000000 > /proc/sys/kernel/perf_event_max_sample_rate && "
                 "echo 0 > /proc/sys/kernel/perf_cpu_time_max_percent",
        "plain": f"for i in {loop}; do workload {iterations}; done",
        "stat": f"for i in {loop}; do perf stat -x';' -e instructions:u,branches:u workload {iterations}; done",
        "record": f"for i in {loop}; do perf record -q -e instructions:u -c {PERIOD} -o r$i "
                  f"workload {iterations}; done",
        "samples": f"for i in {loop}; do perf script -i r$i -F ip | wc -l; done",
    })
    serial = _StampedSerial()
    machine = Machine(MachineConfig(memory=256 << 20, serial=serial, timeout=TIMEOUT,
                                    initrd=assets.perf_initramfs.read_bytes(),
                                    cmdline=f"console=ttyS0 quiet panic=-1 {run_parameter(command)}"))
    serial.vcpu = machine.vcpu
    machine.load(str(assets.kernel))
    result = machine.run()
    if result.reason != "poweroff":
        raise RuntimeError(f"perf benchmark boot ended with {result}")
    return sections(serial.output.decode(errors="replace")), serial.spans()


def figures(quick: bool = False) -> list[Figure]:
    from firmware.linux.assets import AssetsUnavailable, ensure_assets
    from firmware.linux.perf_output import stat_rows
    from firmware.linux.programs import workload_counts

    try:
        assets = ensure_assets()
    except AssetsUnavailable as reason:
        return [Figure("perf in the guest", f"no assets: {reason}", "", "skip")]
    iterations = 10**5 if quick else 10**6
    output, spans = _boot(assets, iterations)
    between, whole = workload_counts(iterations)
    exact = {"instructions:u": whole.instructions + whole.syscalls, "branches:u": whole.branches + whole.syscalls}
    rows = stat_rows(output["stat"])
    out = []
    for event, expected in exact.items():
        counts = Stat([row.value for row in rows if row.event == event])
        ok = len(counts.values) == RUNS and set(counts.values) == {expected}
        out.append(Figure(f"perf stat {event}, workload {iterations:,}, {RUNS} runs (exact {expected:,})",
                          counts.fmt(1, 0), "exact, no spread", "ok" if ok else "MISS"))
    out.append(Figure("wall per whole run: perf off / perf stat / perf record, s",
                      " / ".join(f"{spans[name]['run'][0][0]:.2f}" for name in ("plain", "stat", "record")), "",
                      "info"))
    samples = [int(n) for n in re.findall(r"^\s*(\d+)\s*$", output["samples"], re.MULTILINE)]
    expected_samples = exact["instructions:u"] // PERIOD
    out.append(Figure(f"perf record -c {PERIOD}: samples per run (exact {expected_samples})", Stat(samples).fmt(1, 0),
                      "exact", "ok" if set(samples) == {expected_samples} else "MISS"))
    plain, sampled = spans["plain"]["loop"], spans["record"]["loop"]
    plain_wall, sampled_wall = Stat([w for w, _ in plain]), Stat([w for w, _ in sampled])
    out.append(Figure("the loop between the markers: wall without perf / sampled, s",
                      f"{plain_wall.fmt(1, 3)} / {sampled_wall.fmt(1, 3)}", "", "info"))
    # The loop retires between.instructions + 1 user instructions (its SYSCALL included): about that / PERIOD PMIs.
    pmis = (between.instructions + between.syscalls) / PERIOD
    guest_extra = Stat([(g - plain[0][1]) / pmis for _, g in sampled])
    out.append(Figure("one PMI (NMI + perf handler + sample): extra wall us / extra guest us",
                      f"{(sampled_wall.median - plain_wall.median) / pmis * 1e6:,.0f} / "
                      f"{guest_extra.median / 1e3:,.1f}", "", "info"))
    out.append(Figure(f"perf record -c {PERIOD}: samples per second of (busy) guest time",
                      f"{pmis / (Stat([g for _, g in sampled]).median / 1e9):,.0f}", "", "info"))
    return out


if __name__ == "__main__":
    from bench.common import module_main

    os.environ.setdefault("PYTHONPATH", str(ROOT))
    module_main(figures, __doc__)
