# SPDX-License-Identifier: GPL-2.0-or-later
"""How a run ends and what it leaves: signals, timeouts, output errors, bad input files, the report,
the progress line, JUnit/JSON results, and that none of the machinery changes what the guest sees."""

from __future__ import annotations

import io
import json
import os
import pty
import select
import shutil
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

import pytest

import firmware
from tests.guest import ROOT, run_cli
from vmm import session
from vmm.machine import Machine, MachineConfig

ENV = dict(os.environ, PYTHONPATH=str(ROOT))


def _error_lines(proc) -> list[str]:
    return [line for line in proc.stderr.decode().splitlines() if line.strip()]


def _start(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vmm", *args], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kwargs)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_a_spinning_guest_keeping_its_output_and_report(signum):
    proc = _start("run", "spin", "--report-format", "json")
    assert proc.stdout.readline() == b"spinning with interrupts off\n"
    time.sleep(0.3)
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signum, err
    assert out == b""           # the line was read above; nothing lost, nothing added
    text = err.decode()
    assert f"stopped by {signal.Signals(signum).name}" in text
    report = json.loads(text[text.index("{"):])
    assert report["reason"] == "signal" and report["status"] == 128 + signum and report["instructions"] > 0


def test_signal_stops_a_guest_spinning_after_a_wake_up_without_exits():
    """Woken from HLT by its LAPIC timer, acknowledged through the xAPIC page (no exit), then spinning:
    the run loop still comes back to Python, where the signal is handled."""
    proc = _start("run", "spin", "--append", "wake=1")
    assert proc.stdout.readline() == b"spinning with interrupts off\n"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err


def test_qemu_front_end_says_terminating_on_signal():
    proc = _start("qemu", "-kernel", str(firmware.image("spin")))
    assert proc.stdout.readline() == b"spinning with interrupts off\n"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 143
    assert err.decode().splitlines() == ["pmu-vmm-qemu: terminating on signal 15"]


def test_timeout_ends_a_spinning_guest():
    proc = run_cli("run", "spin", "--timeout", "0.5")
    assert proc.returncode == 124
    assert proc.stdout == b"spinning with interrupts off\n"
    lines = _error_lines(proc)
    assert len(lines) == 1 and "timed out after 0.5 s" in lines[0], lines


def test_halted_forever_is_still_detected_under_the_ticker():
    result = session.execute(*_prepared("shutdown", "halt"))
    assert result.reason == "halted"


def _prepared(kernel: str, cmdline: str = ""):
    sink = session.SerialSink(io.BytesIO())
    machine = session.prepare(session.RunRequest(kernel, cmdline=cmdline), sink)
    return machine, sink


@pytest.mark.parametrize("kernel", ["lapic_timer", "pmu_rdpmc", "bench", "lapic_irq"])
def test_ticks_do_not_change_what_the_guest_sees(kernel, monkeypatch):
    plain = Machine(MachineConfig(serial=io.BytesIO()))
    plain.load(str(firmware.image(kernel)))
    expected = plain.run()
    monkeypatch.setattr(session, "TICK_NS", 997)       # a tick every ~1000 instructions, at odd places
    ticks = []
    outcome = session.execute(*_prepared(kernel), on_tick=lambda: ticks.append(1))
    assert len(ticks) > 10
    assert (outcome.result.instructions, outcome.result.serial) == (expected.instructions, expected.serial)


def test_report_lists_the_counters_the_guest_left_running():
    machine, sink = _prepared("hello64")
    machine.msr.write(0x186, 8, 0x5300C0)       # EVTSEL0: instructions, USR|OS|INT|EN
    outcome = session.execute(machine, sink)
    from vmm import report

    data = report.build(outcome, 0, "hello64")
    assert data["counters"] == [{"cpu": 0, "counter": "GP0", "event": "instructions", "eventsel": 0x5300C0,
                                 "value": outcome.result.instructions, "counting": True}]
    assert data["exits"]["IO_OUT"] == 1 and data["exits"]["STOPPED"] == 1     # debug-exit (the UART is C's)
    text = report.format_text(data)
    assert f"{outcome.result.instructions:,}      GP0      instructions" in text
    assert "instructions retired" in text and "MIPS" in text and f"IO_OUT {data['exits']['IO_OUT']:,}" in text
    assert "on CPU0" not in text        # one vCPU: no per-vCPU lines


def test_report_shows_each_vcpu(tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli("run", "smp_boot", "--smp", "2", "--report-file", str(out), "--report-format", "json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(out.read_text())
    assert [v["cpu"] for v in data["vcpus"]] == [0, 1]
    assert all(v["instructions"] > 1000 for v in data["vcpus"])
    assert sum(v["instructions"] for v in data["vcpus"]) == data["instructions"]
    assert data["vcpus"][1]["exits"].get("HLT", 0) > 0       # the AP waits in hlt for its work
    assert data["exits"]["HLT"] == sum(v["exits"].get("HLT", 0) for v in data["vcpus"])


def test_report_to_a_file(tmp_path):
    out = tmp_path / "report.json"
    proc = run_cli("run", "hello64", "--report-file", str(out), "--report-format", "json")
    assert proc.returncode == 0 and not proc.stderr
    data = json.loads(out.read_text())
    assert data["reason"] == "debug-exit" and data["pmis_delivered"] == 0 and data["mips"] > 0


def test_progress_line_only_on_a_terminal():
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "vmm", "run", "spin", "--timeout", "2.5"], cwd=ROOT, env=ENV,
                            stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    seen = b""
    while True:
        ready, _, _ = select.select([leader], [], [], 30)
        try:
            chunk = os.read(leader, 4096) if ready else b""
        except OSError:     # EIO: the child closed the terminal
            chunk = b""
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    assert proc.wait(timeout=30) == 124
    assert b"\r" in seen and b" MIPS  virtual " in seen and b"\x1b[K" in seen
    plain = run_cli("run", "spin", "--timeout", "1.5")
    assert b"MIPS" not in plain.stderr


def test_junit_and_json_results(tmp_path):
    junit, results = tmp_path / "junit.xml", tmp_path / "results.json"
    proc = run_cli("run", "plugin_port", "--junit", str(junit), "--json", str(results))
    assert proc.returncode == 1
    suite = ET.parse(junit).getroot().find("testsuite")
    failed = [case.get("name") for case in suite.iter("testcase") if case.find("failure") is not None]
    assert failed and int(suite.get("failures")) == len(failed) and suite.get("name") == "plugin_port"
    assert "plugin device test" in suite.find("system-out").text
    data = json.loads(results.read_text())
    assert data["status"] == 1 and data["counts"]["failures"] == len(failed)
    assert data["summary"]["tests"] == len(data["tests"])


def test_results_of_an_interrupted_run_say_so(tmp_path):
    junit = tmp_path / "junit.xml"
    assert run_cli("run", "spin", "--timeout", "0.3", "--junit", str(junit)).returncode == 124
    run_case = ET.parse(junit).getroot().find("testsuite/testcase[@name='(run)']")
    assert "timed out" in run_case.find("error").get("message")


# -- bad input and output errors --------------------------------------------------------------
@pytest.mark.parametrize("args, words", [
    (["/dev/zero"], "not a regular file"),
    (["hello64", "--initrd", "/dev/zero"], "not a regular file"),
    (["hello64", "--append", b"caf\xe9"], "not valid UTF-8"),
])
def test_bad_input_files_are_one_line(args, words):
    proc = run_cli("run", *args, timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert len(_error_lines(proc)) == 1 and words in proc.stderr.decode(), proc.stderr


def test_initrd_larger_than_ram(tmp_path):
    big = tmp_path / "big"
    with open(big, "wb") as f:
        f.truncate(65 << 20)
    proc = run_cli("run", "hello64", "--memory", "64M", "--initrd", str(big))
    assert proc.returncode == 2 and "larger than guest RAM" in proc.stderr.decode()


def test_fifo_kernel_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "kernel.elf"
    os.mkfifo(fifo)
    proc = run_cli("run", str(fifo), timeout=30)
    assert proc.returncode == 2 and "not a regular file" in proc.stderr.decode()


def test_kernel_path_not_utf8(tmp_path):
    path = os.fsencode(tmp_path) + b"/k\xff.elf"
    shutil.copy(firmware.image("hello64"), path)
    proc = run_cli("run", path)
    assert proc.returncode == 2 and len(_error_lines(proc)) == 1 and "UTF-8" in proc.stderr.decode()


@pytest.mark.parametrize("option", ["--serial", "--junit", "--report-file"])
def test_output_to_a_full_device(option):
    proc = run_cli("run", "hello64", option, "/dev/full")
    assert proc.returncode == 74
    lines = _error_lines(proc)
    assert len(lines) == 1 and "No space left on device" in lines[0], lines


def test_stdout_closed():
    proc = subprocess.run([sys.executable, "-m", "vmm", "run", "hello64"], cwd=ROOT, env=ENV, capture_output=True,
                          preexec_fn=lambda: os.close(1), timeout=60)
    assert proc.returncode == 74 and len(_error_lines(proc)) == 1, proc.stderr


@pytest.mark.parametrize("command", ["run hello64", "list", "qemu -help"])
def test_reader_gone_is_status_141_without_traceback(command):
    script = f'{{ sleep 0.5; exec "$0" -m vmm {command}; }} | true; echo "status=${{PIPESTATUS[0]}}" >&2'
    proc = subprocess.run(["bash", "-c", script, sys.executable], cwd=ROOT, env=ENV, capture_output=True, timeout=60)
    err = proc.stderr.decode()
    assert "status=141" in err and "Traceback" not in err and "Exception ignored" not in err, err
