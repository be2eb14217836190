# SPDX-License-Identifier: GPL-2.0-or-later
"""``pmu-vmm run``: from parsed options (vmm/cli.py) to a finished run, its files and its exit status.

Output files (``--serial``, ``--report-file``, ``--junit``, ``--json``) are opened before the guest
runs, so a bad path is bad input (status 2) and costs no run.  Afterwards the report goes to stderr
or its file, the results to theirs; a write failure then is status 74.  Exit statuses:
vmm.cli.EXIT_STATUSES.

Not supported: writing the report or the results to stdout (it carries the guest's serial output).
"""

from __future__ import annotations

import signal
import sys
from contextlib import ExitStack

from vmm.cli import EXIT_BAD_INPUT, EXIT_BROKEN_PIPE, EXIT_OUTPUT, one_line
from vmm.errors import VmmError
from vmm.options import cpu_setup
from vmm.session import RunRequest, SerialSink, detach_stdout, execute, prepare

CLEAN_ENDINGS = ("debug-exit", "poweroff")
REASON_TEXT = {"reset": "the guest asked for a reset: pmu-vmm does not reboot"}


def _say(line: str) -> None:
    if sys.stderr is not None:
        print(one_line(line), file=sys.stderr, flush=True)


def _open(files: ExitStack, path: str | None, what: str):
    """``path`` opened for writing, unbuffered: a write error shows at the write, not again at close."""
    if path is None:
        return None
    try:
        return files.enter_context(open(path, "wb", buffering=0))
    except OSError as e:
        raise VmmError(f"cannot open {what} {path}: {e.strerror}") from None


def exit_status(outcome) -> int:
    if outcome.signal is not None:
        return 128 + outcome.signal
    if outcome.output_error is not None:
        return EXIT_BROKEN_PIPE if isinstance(outcome.output_error, BrokenPipeError) else EXIT_OUTPUT
    if outcome.reason == "debug-exit":
        return min(outcome.debug_value, 255)
    return outcome.result.status


def ending_line(outcome) -> str | None:
    """What stderr says about a run that did not end by debug-exit or poweroff."""
    after = f"after {outcome.result.instructions} instructions"
    if outcome.signal is not None:
        return f"stopped by {signal.Signals(outcome.signal).name} {after}"
    if outcome.output_error is not None:
        return f"serial output: {outcome.output_error.strerror or outcome.output_error}; guest stopped {after}"
    if outcome.reason in CLEAN_ENDINGS:
        return None
    return f"{outcome.result.detail or REASON_TEXT.get(outcome.reason, outcome.reason)} ({after})"


def run_command(args, prog: str) -> int:
    with ExitStack() as files:
        try:
            return _run(args, prog, files)
        except VmmError as e:
            _say(f"{prog}: error: {e}")
            return EXIT_BAD_INPUT


def _run(args, prog: str, files: ExitStack) -> int:
    serial = _open(files, args.serial, "serial output")
    if serial is None and sys.stdout is None:
        _say(f"{prog}: error: standard output is closed: give --serial FILE")
        return EXIT_OUTPUT
    report_format = args.report_format or ("text" if args.report or args.report_file else None)
    report_file = _open(files, args.report_file, "report file")
    junit_file = _open(files, args.junit, "JUnit file")
    json_file = _open(files, args.json, "JSON file")
    trace = tuple(dict.fromkeys(name for names in args.trace for name in names))
    trace_file = None
    if args.trace_file is not None:
        try:
            trace_file = files.enter_context(open(args.trace_file, "w", encoding="utf-8"))
        except OSError as e:
            raise VmmError(f"cannot open trace file {args.trace_file}: {e.strerror}") from None
    try:
        setup = cpu_setup(args.cpu, args.cpuid, args.pmu)
    except ValueError as e:
        raise VmmError(f"--cpuid/--pmu: {e}") from None
    devices = args.device + (["pmu-vmm-test-hooks"] if args.test_hooks else []) + (["kvm-pv"] if args.kvm_pv else [])
    request = RunRequest(args.kernel, cmdline=args.append, initrd=args.initrd, memory=args.memory, cpu=args.cpu,
                         smp=args.smp, quantum=args.quantum, cpu_setup=setup, timeout=args.timeout,
                         max_insns=args.max_insns, gdb=args.gdb, gdb_wait=args.gdb is not None,
                         trace=trace, trace_file=trace_file, forced_emulation=args.forced_emulation,
                         strict_memory=args.strict_memory, devices=devices)
    show_progress = sys.stderr is not None and sys.stderr.isatty() and not (trace and trace_file is None)
    progress = None
    if show_progress:
        from vmm.report import ProgressLine  # imported only when used: json and the PMU event names

        progress = ProgressLine(sys.stderr)
    sink = SerialSink(serial or sys.stdout.buffer, before_write=progress.clear if progress else None)
    machine = prepare(request, sink)
    if machine.debugger is not None:
        port = machine.debugger.port
        _say(f"pmu-vmm: waiting for gdb on port {port} (in gdb: target remote :{port})")
    on_tick = None if progress is None else lambda: progress.update(machine.retired, machine.clock.now())
    outcome = execute(machine, sink, on_tick)
    if progress is not None:
        progress.clear()
    if outcome.output_error is not None and serial is None:
        detach_stdout()
    status = exit_status(outcome)
    line = ending_line(outcome)
    if line:
        _say(f"{prog}: {line}")
    tracer = outcome.machine.tracer
    if tracer is not None and tracer.error is not None:
        _say(f"{prog}: cannot write the trace: {tracer.error.strerror or tracer.error}")
        status = EXIT_OUTPUT
    kernel = args.kernel.rsplit("/", 1)[-1].removesuffix(".elf")
    try:
        _write_files(outcome, status, kernel, report_format, report_file, junit_file, json_file)
    except OSError as e:
        _say(f"{prog}: cannot write the report or results: {e.strerror or e}")
        return EXIT_OUTPUT
    return status


def _write_files(outcome, status, kernel, report_format, report_file, junit_file, json_file) -> None:
    # vmm.report and vmm.results (json, re, xml.etree: ~5 ms) are imported only by runs that write them.
    if report_format is not None:
        from vmm import report as run_report

        data = run_report.build(outcome, status, kernel)
        text = run_report.format_json(data) if report_format == "json" else run_report.format_text(data)
        if report_file is not None:
            report_file.write(text.encode())
        elif sys.stderr is not None:
            sys.stderr.write(text)
            sys.stderr.flush()
    if junit_file is None and json_file is None:
        return
    from vmm import results as run_results

    results = run_results.parse(kernel, outcome.result.serial, outcome)
    if junit_file is not None:
        junit_file.write(run_results.junit_xml(results, outcome.wall_s))
    if json_file is not None:
        json_file.write(run_results.to_json(results, status, outcome.reason).encode())
