# SPDX-License-Identifier: GPL-2.0-or-later
"""LAPIC timer on a fake clock: one-shot, periodic, TSC-deadline, divide configuration, exact deadlines."""

from __future__ import annotations

import pytest

from devices.bus import GP
from tests.lapic_harness import Harness
from vmm.cpuid import DEFAULT_FEATURES

LVT_TIMER, INITIAL, CURRENT, DIVIDE = 0x320, 0x380, 0x390, 0x3E0
ONE_SHOT, PERIODIC, DEADLINE = 0x00000, 0x20000, 0x40000
VECTOR = 0xEC
MSR_TSC_DEADLINE = 0x6E0


def timer(mode: int, count: int = 0, divide: int = 0xB, start: int = 1000) -> Harness:
    h = Harness()
    h.clock.set(start)
    h.write(DIVIDE, divide)
    h.write(LVT_TIMER, mode | VECTOR)
    if count:
        h.write(INITIAL, count)
    return h


def fired(h: Harness) -> bool:
    """Whether the timer vector is pending; acknowledges and EOIs it so the next one shows."""
    if h.lapic.pending_interrupt() != VECTOR:
        return False
    h.lapic.accept_interrupt(VECTOR)
    h.write(0xB0, 0)
    return True


def run_to(h: Harness, now: int) -> None:
    h.clock.set(now)
    h.lapic.tick(now)


@pytest.mark.parametrize("config, divide", [
    (0x0, 2), (0x1, 4), (0x2, 8), (0x3, 16), (0x8, 32), (0x9, 64), (0xA, 128), (0xB, 1),
])
def test_divide_values_give_exact_deadline(config, divide):
    h = timer(ONE_SHOT, count=100, divide=config)
    assert h.lapic.next_deadline() == 1000 + 100 * divide


def test_one_shot_fires_exactly_at_deadline_then_idles():
    h = timer(ONE_SHOT, count=500)
    run_to(h, 1499)
    assert not fired(h)
    run_to(h, 1500)
    assert fired(h)
    assert h.lapic.next_deadline() is None
    run_to(h, 5000)
    assert not fired(h)
    assert h.read(CURRENT) == 0
    assert h.read(INITIAL) == 500


def test_current_count_decreases_with_the_clock():
    h = timer(ONE_SHOT, count=100, divide=0x0)  # one count = 2 ns
    assert h.read(CURRENT) == 100
    h.clock.set(1001)
    assert h.read(CURRENT) == 100
    h.clock.set(1002)
    assert h.read(CURRENT) == 99
    h.clock.set(1150)
    assert h.read(CURRENT) == 25
    h.clock.set(1199)
    assert h.read(CURRENT) == 1
    h.clock.set(1200)
    assert h.read(CURRENT) == 0
    h.clock.set(9999)
    assert h.read(CURRENT) == 0


def test_periodic_rearms_from_previous_deadline_without_drift():
    h = timer(PERIODIC, count=100)
    run_to(h, 1100)
    assert fired(h)
    assert h.lapic.next_deadline() == 1200
    run_to(h, 1230)  # late tick
    assert fired(h)
    assert h.lapic.next_deadline() == 1300
    assert h.read(CURRENT) == 1300 - 1230


def test_periodic_several_periods_elapsed_deliver_once():
    h = timer(PERIODIC, count=100)
    calls = []
    h.lapic.on_wakeup = lambda: calls.append(h.clock.now())
    run_to(h, 1450)
    assert calls == [1450]
    assert h.lapic.next_deadline() == 1500


def test_periodic_current_count_reloads_before_tick():
    h = timer(PERIODIC, count=100)
    h.clock.set(1100)
    assert h.read(CURRENT) == 100
    h.clock.set(1175)
    assert h.read(CURRENT) == 25


def test_writing_zero_initial_count_stops_timer():
    h = timer(PERIODIC, count=100)
    h.write(INITIAL, 0)
    assert h.lapic.next_deadline() is None
    run_to(h, 5000)
    assert not fired(h)


def test_rewriting_initial_count_restarts_from_now():
    h = timer(ONE_SHOT, count=100)
    h.clock.set(1050)
    h.write(INITIAL, 100)
    assert h.lapic.next_deadline() == 1150


def test_masked_timer_expires_silently_and_keeps_period():
    h = timer(PERIODIC | 0x10000, count=100)
    run_to(h, 1100)
    assert not fired(h)
    assert h.lapic.next_deadline() == 1200
    h.write(LVT_TIMER, PERIODIC | VECTOR)
    run_to(h, 1200)
    assert fired(h)


def test_one_shot_to_periodic_switch_keeps_counting():
    h = timer(ONE_SHOT, count=100)
    h.write(LVT_TIMER, PERIODIC | VECTOR)
    run_to(h, 1100)
    assert fired(h)
    assert h.lapic.next_deadline() == 1200


def test_divide_change_keeps_remaining_counts():
    h = timer(ONE_SHOT, count=100, divide=0xB)
    h.clock.set(1040)
    h.write(DIVIDE, 0x0)  # 60 counts left, now 2 ns each
    assert h.read(CURRENT) == 60
    assert h.lapic.next_deadline() == 1040 + 120


def test_reprogramming_after_a_missed_tick_fires_the_overdue_expiry():
    h = timer(ONE_SHOT, count=100)
    h.clock.set(1200)
    h.write(INITIAL, 50)
    assert fired(h)
    assert h.lapic.next_deadline() == 1250


def test_tsc_deadline_fires_at_the_tsc_value():
    h = timer(DEADLINE)
    assert h.wrmsr(MSR_TSC_DEADLINE, 4321) is None
    assert h.rdmsr(MSR_TSC_DEADLINE) == 4321
    assert h.lapic.next_deadline() == 4321
    run_to(h, 4320)
    assert not fired(h)
    run_to(h, 4321)
    assert fired(h)
    assert h.rdmsr(MSR_TSC_DEADLINE) == 0
    assert h.lapic.next_deadline() is None


def test_tsc_deadline_follows_the_vcpus_tsc_offset():
    """After the guest moved its TSC (IA32_TSC, TSC_ADJUST), a deadline is a TSC value, not clock time."""
    h = timer(DEADLINE)
    h.vcpu.tsc_offset = 1_000_000           # the TSC reads the clock + 1e6
    h.clock.set(500)
    assert h.wrmsr(MSR_TSC_DEADLINE, 1_000_500 + 300) is None
    assert h.rdmsr(MSR_TSC_DEADLINE) == 1_000_800
    assert h.lapic.next_deadline() == 800
    run_to(h, 799)
    assert not fired(h)
    run_to(h, 800)
    assert fired(h)
    h.vcpu.tsc_offset = (-400) & (2**64 - 1)    # a TSC behind the clock: 600 is already past at clock 1000
    h.clock.set(1000)
    h.wrmsr(MSR_TSC_DEADLINE, 600)
    assert h.lapic.next_deadline() is None and fired(h)


def test_tsc_deadline_zero_disarms():
    h = timer(DEADLINE)
    h.wrmsr(MSR_TSC_DEADLINE, 4321)
    h.wrmsr(MSR_TSC_DEADLINE, 0)
    assert h.lapic.next_deadline() is None
    run_to(h, 10000)
    assert not fired(h)


def test_tsc_deadline_in_the_past_fires_at_once():
    h = timer(DEADLINE)
    h.wrmsr(MSR_TSC_DEADLINE, 10)
    assert fired(h)
    assert h.rdmsr(MSR_TSC_DEADLINE) == 0


def test_tsc_deadline_mode_ignores_initial_count_and_reads_zero_current():
    h = timer(DEADLINE)
    h.write(INITIAL, 100)
    assert h.read(INITIAL) == 0
    h.wrmsr(MSR_TSC_DEADLINE, 5000)
    assert h.read(CURRENT) == 0


@pytest.mark.parametrize("mode", [ONE_SHOT, PERIODIC])
def test_tsc_deadline_msr_outside_deadline_mode_reads_zero_ignores_writes(mode):
    h = timer(mode, count=100)
    assert h.wrmsr(MSR_TSC_DEADLINE, 5000) is None
    assert h.rdmsr(MSR_TSC_DEADLINE) == 0
    assert h.lapic.next_deadline() == 1100


def test_leaving_deadline_mode_disarms():
    h = timer(DEADLINE)
    h.wrmsr(MSR_TSC_DEADLINE, 5000)
    h.write(LVT_TIMER, ONE_SHOT | VECTOR)
    assert h.lapic.next_deadline() is None


def test_entering_deadline_mode_disarms_count_timer():
    h = timer(PERIODIC, count=100)
    h.write(LVT_TIMER, DEADLINE | VECTOR)
    assert h.lapic.next_deadline() is None
    assert h.read(INITIAL) == 0


def test_tsc_deadline_msr_gp_without_cpuid():
    h = Harness(features=tuple(f for f in DEFAULT_FEATURES if f != "tsc_deadline"))
    assert h.rdmsr(MSR_TSC_DEADLINE) == GP
    assert h.wrmsr(MSR_TSC_DEADLINE, 1) == GP


def test_tsc_deadline_timer_in_x2apic_mode():
    h = Harness()
    h.clock.set(100)
    h.enter_x2apic()
    assert h.wrmsr(0x832, DEADLINE | VECTOR) is None
    h.wrmsr(MSR_TSC_DEADLINE, 200)
    run_to(h, 200)
    assert h.lapic.pending_interrupt() == VECTOR


def test_x2apic_timer_registers():
    h = Harness()
    h.enter_x2apic()
    h.wrmsr(0x83E, 0x3)
    h.wrmsr(0x832, ONE_SHOT | VECTOR)
    h.wrmsr(0x838, 10)
    assert h.lapic.next_deadline() == 160
    h.clock.set(32)
    assert h.rdmsr(0x839) == 8
    assert h.wrmsr(0x839, 1) == GP


def test_illegal_timer_vector_is_an_error_not_an_interrupt():
    h = timer(ONE_SHOT, count=10)
    h.write(LVT_TIMER, 0x05)
    run_to(h, 1010)
    assert h.lapic.pending_interrupt() is None
    h.write(0x280, 0)
    assert h.read(0x280) == 0x40


def test_timer_is_deterministic():
    def trace():
        h = timer(PERIODIC, count=37, divide=0x1)
        seen = []
        for now in range(1000, 3000, 53):
            run_to(h, now)
            seen.append((now, fired(h), h.read(CURRENT), h.lapic.next_deadline()))
        return seen
    assert trace() == trace()
