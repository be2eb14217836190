# SPDX-License-Identifier: GPL-2.0-or-later
"""Guest fuzzers: no guest may hang, abort or misreport the VMM.

Four fuzzers boot kernels built by tests/guest_fuzz.py -- random code and random sequences of
privileged and odd instructions, in long mode and in 32-bit protected mode -- in a worker process,
and check that every run ends in a documented way within its timeout, with the serial output kept
(:func:`tests.guest_fuzz.problems`): never a traceback, an engine abort or a hang.

Hypothesis profiles, chosen with ``PMU_VMM_FUZZ``:

* ``ci`` (the default): derandomized (the same inputs on every run) and sized to keep the four
  fuzzers within about a minute;
* ``long``: random inputs, ``PMU_VMM_FUZZ_EXAMPLES`` of them per fuzzer (default 2000), failures
  kept in the Hypothesis database.

``PMU_VMM_FUZZ_STATS=FILE`` appends one JSON line per fuzzer: inputs tried, failures, the longest
run and the per-run timeout.
"""

from __future__ import annotations

import json
import os

import pytest
from hypothesis import HealthCheck, given, settings

from devices.registry import BUILTIN_DEVICES
from tests import guest_fuzz
from vmm.machine import IRQ_LINE_TIMERS

TIMEOUT = 1.0           # wall-clock seconds per run
MAX_INSNS = 100_000     # instruction limit per run

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("fuzz-ci", derandomize=True, max_examples=60, **_COMMON)
settings.register_profile("fuzz-long", max_examples=int(os.environ.get("PMU_VMM_FUZZ_EXAMPLES", "2000")), **_COMMON)
FUZZ = settings.get_profile("fuzz-" + os.environ.get("PMU_VMM_FUZZ", "ci"))


@pytest.fixture
def stats(request):
    stats = guest_fuzz.Stats(timeout=TIMEOUT)
    yield stats
    path = os.environ.get("PMU_VMM_FUZZ_STATS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps({"fuzzer": request.node.name, **vars(stats)}) + "\n")


def _check(runner, stats, bits: int, plan) -> None:
    outcome = runner.run(guest_fuzz.kernel(bits, plan), TIMEOUT, MAX_INSNS)
    problems = guest_fuzz.problems(outcome, TIMEOUT, MAX_INSNS)
    stats.note(outcome, bool(problems))
    assert not problems, f"{problems}\nplan: {plan}\nserial: {outcome.serial[:200]!r}"


@pytest.mark.parametrize("bits", [64, 32])
def test_random_code(runner, stats, bits):
    @FUZZ
    @given(guest_fuzz.plans(guest_fuzz.random_code()))
    def run(plan):
        _check(runner, stats, bits, plan)

    run()


@pytest.mark.parametrize("bits", [64, 32])
def test_privileged_and_odd_instructions(runner, stats, bits):
    @FUZZ
    @given(guest_fuzz.plans(guest_fuzz.operations()))
    def run(plan):
        _check(runner, stats, bits, plan)

    run()


def test_the_fuzz_frame_runs_every_step_and_logs_what_the_guest_saw(runner):
    """The frame itself: steps run in order, exceptions are logged with their RIP and go on with
    the next step, other vectors are counted and return."""
    Op = guest_fuzz.Op
    plan = [[Op("insn", ("ud2",))], [Op("port", (0x3F8, 1, ord("A"), True))], [Op("insn", ("int 0x80",))],
            [Op("port", (0x3F8, 1, ord("B"), True))]]
    for bits in (64, 32):
        outcome = runner.run(guest_fuzz.kernel(bits, plan), TIMEOUT, MAX_INSNS)
        assert (outcome.reason, outcome.serial) == ("debug-exit", b"fuzz:AB\n"), outcome
        (vector, rip, cs), = outcome.exceptions()
        assert (vector, cs) == (6, guest_fuzz.CODE64 if bits == 64 else guest_fuzz.CODE32)
        assert guest_fuzz.STEPS < rip < guest_fuzz.STEPS + 0x20
        assert outcome.interrupts() == {0x80: 1}


def test_every_board_timer_acts_only_through_irq_lines():
    """The HLT wait skips the deadlines of IRQ_LINE_TIMERS when their lines cannot reach the vCPU:
    every built-in device with a timer must be one of them (or be added there after checking that
    its tick only drives IRQ lines), or a halted guest could be declared halted forever wrongly."""
    import importlib

    with_timers = set()
    for target in BUILTIN_DEVICES:
        module, _, name = target.partition(":")
        cls = getattr(importlib.import_module(module), name)
        if hasattr(cls, "next_deadline"):
            with_timers.add(cls)
    assert with_timers == set(IRQ_LINE_TIMERS)
