# SPDX-License-Identifier: GPL-2.0-or-later
"""Running several perf commands in one guest boot, and reading what they print.

A boot costs seconds of emulation, so tests and benchmarks run a whole script of commands in
one: :func:`sectioned_command` joins named sections into one /init command, each section's output
preceded by a line ``== NAME``, and :func:`sections` cuts the console output back into a dict.
The markers are only recognised after /init's "running" line, so the kernel echoing its command
line (which contains them) does not confuse the split.

:func:`stat_rows` reads ``perf stat -x';'`` output (CSV with :data:`STAT_SEPARATOR`, since raw
event names such as ``cpu/event=0xc0,cmask=1/u`` contain commas): one :class:`StatRow` per
counter line, ``<not counted>`` and ``<not supported>`` values as None.  :func:`report_rows` reads the
``perf report --stdio -q --sort sym`` lines (overhead percentage and symbol).

Not supported: sections whose commands print a line that is exactly ``== NAME`` themselves, perf
stat's ``-r`` (repeat) or ``--per-*`` aggregation columns, and perf report sort keys other than
``sym``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from firmware.linux.initramfs import run_parameter

MARKER = re.compile(r"^== (\w+)$", re.MULTILINE)
RUNNING = "pmu-vmm: running "
STAT_SEPARATOR = ";"
_REPORT_LINE = re.compile(r"^\s*(\d+\.\d+)%\s+\[(.)\]\s+(\S+)\s*$", re.MULTILINE)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class StatRow:
    value: int | None  # None: <not counted> or <not supported>
    event: str
    running_percent: float | None  # share of the enabled time the counter ran (multiplexing)


def sectioned_command(parts: Mapping[str, str]) -> str:
    """One /init command running each section's commands after an ``echo == NAME`` line."""
    for name in parts:
        if not re.fullmatch(r"\w+", name):
            raise ValueError(f"section name {name!r} is not a word")
    command = "; ".join(f"echo == {name}; {commands}" for name, commands in parts.items())
    run_parameter(command)  # refuses what the kernel command line cannot carry
    return command


def sections(console: str) -> dict[str, str]:
    """Section name -> its output (lines joined with \\n, carriage returns dropped)."""
    text = console.replace("\r", "")
    start = text.find(RUNNING)
    if start < 0:
        return {}
    text = text[text.index("\n", start) + 1:]
    found = list(MARKER.finditer(text))
    return {marker.group(1): text[marker.end() + 1:following.start() if following else len(text)]
            for marker, following in zip(found, [*found[1:], None], strict=True)}


def stat_rows(output: str) -> list[StatRow]:
    """The counter lines of ``perf stat -x';'`` output (other lines, e.g. the program's, are skipped)."""
    rows = []
    for line in output.splitlines():
        fields = line.split(STAT_SEPARATOR)
        if len(fields) < 5:
            continue
        value, _unit, event, _run_time, percent = fields[:5]
        if value.isdigit():
            rows.append(StatRow(int(value), event, float(percent) if percent else None))
        elif value.startswith("<not "):
            rows.append(StatRow(None, event, None))
    return rows


def report_rows(output: str) -> dict[str, float]:
    """Symbol -> overhead percentage from ``perf report --stdio -q --sort sym`` output."""
    return {symbol: float(percent) for percent, _level, symbol in _REPORT_LINE.findall(_ANSI.sub("", output))}
