# SPDX-License-Identifier: GPL-2.0-or-later
"""Result lines -> JUnit XML and JSON, the text report's layout, and the progress line, without a guest."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from vmm import report, results

SERIAL = (b"booting\r\nPASS: a: first\nFAIL: a: second\nSKIP: third (no x2apic)\nXFAIL: fourth\n"
          b"XPASS: fifth\nKFAIL: sixth\nINFO: not a test\nPASS: ansi \x1b[1m and nul \x00 and \xff\n"
          b"SUMMARY: 7 tests, 2 unexpected failures, 1 expected failures, 1 skipped\n")


def _outcome(reason="debug-exit", debug_value=1, detail=""):
    return SimpleNamespace(reason=reason, debug_value=debug_value, result=SimpleNamespace(detail=detail))


def test_result_lines_become_test_cases():
    parsed = results.parse("k", SERIAL, _outcome())
    assert [word for word, _ in parsed.cases] == ["PASS", "FAIL", "SKIP", "XFAIL", "XPASS", "KFAIL", "PASS"]
    assert parsed.cases[1] == ("FAIL", "a: second")
    assert parsed.summary == {"tests": 7, "unexpected failures": 2, "expected failures": 1, "skipped": 1}
    assert parsed.run_problem is None       # failures are explained by FAIL lines


def test_junit_xml_is_valid_and_counts_like_junit():
    root = ET.fromstring(results.junit_xml(results.parse("k", SERIAL, _outcome()), 1.5))
    suite = root.find("testsuite")
    counts = [suite.get(name) for name in ("tests", "failures", "skipped", "errors")]
    assert counts == ["7", "2", "3", "0"]
    cases = suite.findall("testcase")
    assert cases[1].find("failure").get("message") == "FAIL: a: second"
    assert cases[3].find("skipped").get("message") == "expected failure"
    assert "\ufffd" in cases[6].get("name") and "\x1b" not in cases[6].get("name")   # no invalid XML characters
    assert suite.find("system-out").text.startswith("booting")


def test_runs_that_did_not_end_cleanly_get_a_run_case():
    runs = {
        "timeout": (SERIAL, _outcome("timeout", None, "timed out after 1 s")),
        "no summary": (b"PASS: x\n", _outcome(debug_value=0)),
        "abort": (b"PASS: x\nSUMMARY: 1 tests\n", _outcome(debug_value=63)),
        "all skipped": (b"SKIP: x\nSUMMARY: 1 tests, 1 skipped\n", _outcome(debug_value=38)),
    }
    cases = {name: results.parse("k", serial, outcome).run_problem for name, (serial, outcome) in runs.items()}
    assert cases["timeout"] == ("error", "the run ended: timed out after 1 s")
    assert cases["no summary"][0] == "error"
    assert cases["abort"] == ("failure", "the guest exited with value 63")
    assert cases["all skipped"] is None
    root = ET.fromstring(results.junit_xml(results.parse("k", b"", _outcome("signal", None)), 0))
    assert root.find("testsuite/testcase[@name='(run)']/error") is not None


def test_json_results():
    data = json.loads(results.to_json(results.parse("k", SERIAL, _outcome()), 1, "debug-exit"))
    assert data["tests"][0] == {"name": "a: first", "result": "pass"}
    assert data["counts"] == {"tests": 7, "failures": 2, "errors": 0, "skipped": 3}
    assert data["status"] == 1 and data["run_problem"] is None


def test_text_report_layout():
    data = {"kernel": "k", "status": 0, "reason": "debug-exit", "detail": "", "instructions": 1234567,
            "virtual_ns": 2000000, "halted_ns": 765433, "wall_s": 0.5, "mips": 2.469, "pmis_delivered": 3,
            "counters": [{"counter": "FIXED0", "event": "instructions", "eventsel": 0xB, "value": 1000,
                          "counting": False}], "not_measured": ["exits by kind"]}
    lines = report.format_text(data).splitlines()
    assert lines[0] == " Figures for guest 'k' (debug-exit, exit status 0):"
    assert "             1,000      FIXED0   instructions     (stopped)" in lines
    assert "         1,234,567      instructions retired" in lines
    assert "       0.002000000 s    virtual time (0.000765433 s halted)" in lines
    assert lines[-1] == " Not measured: exits by kind."


class _Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def test_progress_line_waits_redraws_in_place_and_clears():
    stream, clock = io.StringIO(), _Clock()
    line = report.ProgressLine(stream, interval=0.5, delay=1.0, clock=clock)
    line.update(10, 10)
    assert stream.getvalue() == ""                  # short runs never show it
    clock.now += 2.0
    line.update(200_000_000, 200_000_000)
    assert stream.getvalue() == "\r200.0 M instructions  100.0 MIPS  virtual 0.200 s  wall 2.0 s\x1b[K"
    clock.now += 0.1
    line.update(1, 1)                               # too soon: not redrawn
    line.clear()
    line.clear()                                    # erased once only
    assert stream.getvalue().endswith("\x1b[K\r\x1b[K") and stream.getvalue().count("\r") == 2
