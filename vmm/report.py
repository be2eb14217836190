# SPDX-License-Identifier: GPL-2.0-or-later
"""Run figures for people: the live status line on a terminal and the end-of-run report.

The report (``--report``, ``--report-format text|json``) is what ``perf stat`` would say about the
guest: every PMU counter the guest used on each vCPU (its event, value, and whether it was still
counting when the run ended), PMIs delivered, instructions retired, virtual time (1 instruction =
1 ns, plus time skipped while every vCPU was halted), wall time, MIPS, and exits by kind; with
several vCPUs also each vCPU's share.  The figures come from the machine after the run; the report
never changes what the guest saw.

Exits are what reached the dispatcher (I/O, MMIO, MSRs and CPUID served in Python) and what ended a
vCPU's run (HLT, YIELD at the end of an SMP time slice, ...).  Not reported, listed under
``not_measured``: the accesses the hook layer serves in C without an exit (PMU MSRs, RDPMC, x2APIC
MSRs, the xAPIC page, UART ports, ports no device owns, RDTSC), and the time spent handling exits.

:class:`ProgressLine` redraws one line in place on a terminal (instructions, MIPS, virtual and wall
time) and erases itself before other output; it is used only when stderr is a TTY.
"""

from __future__ import annotations

import json
import math
import time

from pmu import events

NOT_MEASURED = ("accesses served in C without an exit (PMU MSRs, RDPMC, x2APIC MSRs, the xAPIC page, UART "
                "ports, ports no device owns, RDTSC)",
                "time spent handling exits (no per-exit timing)")


def _counter_event(pmu, info: dict) -> str:
    if info["kind"] == "fixed":
        return events.NAMES[events.INTEL_FIXED_EVENTS[info["index"]]]
    config = pmu.config
    return events.NAMES[events.decode(config.vendor, info["eventsel"], config.unavailable_events)]


def build(outcome, status: int, kernel: str) -> dict:
    """The report of a finished run as plain data (the JSON form)."""
    machine, result = outcome.machine, outcome.result
    counters = []
    for cpu in machine.cpus:
        for info in cpu.pmu.counters():
            if not (info["value"] or info["eventsel"] or info["running"]):
                continue    # never used by the guest
            name = f"{'GP' if info['kind'] == 'gp' else 'FIXED'}{info['index']}"
            counters.append({"cpu": cpu.index, "counter": name, "event": _counter_event(cpu.pmu, info),
                             "eventsel": info["eventsel"], "value": info["value"], "counting": info["running"]})
    vcpus = [{"cpu": cpu.index, "instructions": cpu.vcpu.retired, "pmis_delivered": cpu.pmu.pmis_delivered,
              "exits": _exits([cpu])} for cpu in machine.cpus]
    wall = outcome.wall_s
    return {
        "kernel": kernel,
        "status": status,
        "reason": outcome.reason,
        "detail": result.detail,
        "instructions": result.instructions,
        "virtual_ns": machine.clock.now(),
        "halted_ns": machine.halted_ns,
        "wall_s": round(wall, 6),
        "mips": round(result.instructions / wall / 1e6, 3) if wall > 0 else None,
        "pmis_delivered": sum(v["pmis_delivered"] for v in vcpus),
        "exits": _exits(machine.cpus),
        "counters": counters,
        "vcpus": vcpus,
        "not_measured": list(NOT_MEASURED),
    }


def _exits(cpus) -> dict[str, int]:
    """Exits by kind name, in ExitKind order, the kinds that happened only."""
    totals: dict = {}
    for cpu in cpus:
        for kind, n in cpu.dispatcher.counts.items():
            totals[kind] = totals.get(kind, 0) + n
    return {kind.name: n for kind, n in sorted(totals.items()) if n}


def format_json(report: dict) -> str:
    return json.dumps(report, indent=2) + "\n"


def format_text(report: dict) -> str:
    lines = [f" Figures for guest '{report['kernel']}' ({report['reason']}, exit status {report['status']}):", ""]
    several = len(report.get("vcpus", ())) > 1
    for c in report["counters"]:
        state = "counting" if c["counting"] else "stopped"
        counter = f"CPU{c['cpu']} {c['counter']}" if several else c["counter"]
        lines.append(f"{c['value']:>18,}      {counter:<8} {c['event']:<16} ({state})")
    if not report["counters"]:
        lines.append(f"{'':>18}      (no PMU counter used)")
    mips = "-" if report["mips"] is None else f"{report['mips']:,.1f}"
    lines += [
        "",
        f"{report['instructions']:>18,}      instructions retired",
        *(f"{v['instructions']:>18,}      on CPU{v['cpu']} ({v['pmis_delivered']:,} PMIs)"
          for v in report.get("vcpus", ()) if several),
        f"{report['pmis_delivered']:>18,}      PMIs delivered",
        f"{report['virtual_ns'] / 1e9:>18.9f} s    virtual time ({report['halted_ns'] / 1e9:.9f} s halted)",
        f"{report['wall_s']:>18.6f} s    wall time",
        f"{mips:>18}      MIPS",
        "",
        " Exits: " + (", ".join(f"{kind} {n:,}" for kind, n in report.get("exits", {}).items()) or "none") + ".",
        " Not measured: " + "; ".join(report["not_measured"]) + ".",
    ]
    return "\n".join(lines) + "\n"


def progress_text(instructions: int, virtual_ns: int, wall_s: float) -> str:
    mips = instructions / wall_s / 1e6 if wall_s > 0 else 0.0
    return (f"{instructions / 1e6:,.1f} M instructions  {mips:,.1f} MIPS  "
            f"virtual {virtual_ns / 1e9:.3f} s  wall {wall_s:.1f} s")


class ProgressLine:
    """One status line redrawn in place on a terminal; ``clear`` erases it before other output."""

    def __init__(self, stream, interval: float = 0.5, delay: float = 1.0, clock=time.monotonic):
        self.stream = stream
        self.interval = interval
        self.clock = clock
        self.start = clock()
        self.next_draw = self.start + delay     # short runs never show it
        self.visible = False

    def update(self, instructions: int, virtual_ns: int) -> None:
        now = self.clock()
        if now < self.next_draw:
            return
        self.next_draw = now + self.interval
        self._write("\r" + progress_text(instructions, virtual_ns, now - self.start) + "\x1b[K")
        self.visible = True

    def clear(self) -> None:
        if self.visible:
            self._write("\r\x1b[K")
            self.visible = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except OSError:             # the terminal went away: stop drawing
            self.next_draw = math.inf
            self.visible = False
