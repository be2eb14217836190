# SPDX-License-Identifier: GPL-2.0-or-later
"""Test results for CI: the guest's result lines as JUnit XML (``--junit``) and JSON (``--json``).

Guests report with the kvm-unit-tests protocol (shared/notes/boot-contract.md, "Result protocol"):
serial lines ``PASS: name``, ``FAIL:``, ``SKIP:``, ``XFAIL:``, ``XPASS:``, ``KFAIL:`` and a final
``SUMMARY: N tests, F unexpected failures, ...``.  Each result line is one test case.  In JUnit, FAIL
and XPASS are failures, SKIP is skipped, XFAIL (expected failure) and KFAIL (known failure) are
skipped with that message, as pytest reports xfail.

A run that did not end cleanly gets one extra test case named ``(run)``: an error when the guest
did not finish by debug-exit or poweroff (timeout, triple fault, signal, ...) or never printed its
SUMMARY line, a failure when its exit value says it failed although no test case did (e.g. an
abort).  Exit values 0 (passed) and 38 (all skipped) are clean, as in the boot contract.

Not supported: nested test prefixes as separate suites (a ``PASS: a: b`` case is named ``a: b``),
per-test timing (JUnit ``time`` is 0 except on the suite), and other result protocols (TAP).
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

RESULT = re.compile(r"^(PASS|FAIL|SKIP|XFAIL|XPASS|KFAIL):\s?(.*)$")
SUMMARY = re.compile(r"^SUMMARY:\s*(.*)$")
SUMMARY_ITEM = re.compile(r"^(\d+)\s+(.+)$")
CLEAN_VALUES = (0, 38)          # the guest's own status: all passed / everything skipped
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


@dataclass
class Results:
    kernel: str
    cases: list[tuple[str, str]] = field(default_factory=list)   # (result word, name)
    summary: dict[str, int] | None = None                           # "tests", "unexpected failures", ...
    run_problem: tuple[str, str] | None = None                      # ("error" | "failure", message)
    serial: str = ""


def parse(kernel: str, serial: bytes, outcome) -> Results:
    """Results of a run from its serial output and :class:`vmm.session.Outcome`."""
    text = serial.decode(errors="replace")
    results = Results(kernel, serial=text)
    for line in text.splitlines():
        line = line.rstrip("\r")
        if match := RESULT.match(line):
            results.cases.append((match[1], match[2]))
        elif match := SUMMARY.match(line):
            results.summary = {}
            for item in match[1].split(","):
                if counted := SUMMARY_ITEM.match(item.strip()):
                    results.summary[counted[2]] = int(counted[1])
    failed_cases = any(word in ("FAIL", "XPASS") for word, _ in results.cases)
    detail = outcome.result.detail or outcome.reason
    if outcome.reason not in ("debug-exit", "poweroff"):
        results.run_problem = ("error", f"the run ended: {detail}")
    elif results.summary is None:
        results.run_problem = ("error", "the guest printed no SUMMARY line")
    elif outcome.debug_value not in (None, *CLEAN_VALUES) and not failed_cases:
        results.run_problem = ("failure", f"the guest exited with value {outcome.debug_value}")
    return results


def _counts(results: Results) -> dict[str, int]:
    counts = {"tests": len(results.cases), "failures": 0, "errors": 0, "skipped": 0}
    for word, _ in results.cases:
        if word in ("FAIL", "XPASS"):
            counts["failures"] += 1
        elif word in ("SKIP", "XFAIL", "KFAIL"):
            counts["skipped"] += 1
    if results.run_problem is not None:
        counts["tests"] += 1
        counts["errors" if results.run_problem[0] == "error" else "failures"] += 1
    return counts


def _clean(text: str) -> str:
    return _XML_INVALID.sub("\ufffd", text)


def junit_xml(results: Results, wall_s: float) -> bytes:
    counts = {k: str(v) for k, v in _counts(results).items()}
    root = ET.Element("testsuites", counts, time=f"{wall_s:.3f}")
    suite = ET.SubElement(root, "testsuite", counts, name=_clean(results.kernel), time=f"{wall_s:.3f}")
    skip_messages = {"SKIP": "skipped", "XFAIL": "expected failure", "KFAIL": "known failure"}
    for word, name in results.cases:
        case = ET.SubElement(suite, "testcase", classname=_clean(results.kernel), name=_clean(name), time="0")
        if word in ("FAIL", "XPASS"):
            ET.SubElement(case, "failure", message=_clean(f"{word}: {name}"))
        elif word in skip_messages:
            ET.SubElement(case, "skipped", message=skip_messages[word])
    if results.run_problem is not None:
        kind, message = results.run_problem
        case = ET.SubElement(suite, "testcase", classname=_clean(results.kernel), name="(run)", time="0")
        ET.SubElement(case, kind, message=_clean(message))
    ET.SubElement(suite, "system-out").text = _clean(results.serial)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True) + b"\n"


def to_json(results: Results, status: int, reason: str) -> str:
    data = {
        "kernel": results.kernel,
        "status": status,
        "reason": reason,
        "tests": [{"name": name, "result": word.lower()} for word, name in results.cases],
        "counts": _counts(results),
        "summary": results.summary,
        "run_problem": None if results.run_problem is None else
        {"kind": results.run_problem[0], "message": results.run_problem[1]},
    }
    return json.dumps(data, indent=2) + "\n"
