# SPDX-License-Identifier: GPL-2.0-or-later
"""i8254 PIT: counts against virtual time in every mode, latch and read-back, IRQ 0 pulses at the
exact input clock edges, Linux's TSC calibration on counter 2, and port 0x61."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from devices.pit import PIT_HZ, Pit
from tests.fake_context import FakeContext, pio_read, pio_write
from vmm.clock import ticks_at, time_of_tick

CONTROL = 0x43
PORT61 = 0x61


@pytest.fixture
def ctx():
    return FakeContext()


@pytest.fixture
def pit(ctx):
    return Pit(ctx)


def at_tick(ctx, tick, ns_after=0):
    """Move the clock to input clock edge ``tick`` (plus ``ns_after`` ns, staying before the next one)."""
    ctx.clock.set(time_of_tick(tick, PIT_HZ) + ns_after)


def control(counter, access, mode, bcd=0):
    return counter << 6 | access << 4 | mode << 1 | bcd


def program(pit, counter, mode, count, access=3):
    pio_write(pit, CONTROL, control(counter, access, mode))
    if access in (1, 3):
        pio_write(pit, 0x40 + counter, count & 0xFF)
    if access in (2, 3):
        pio_write(pit, 0x40 + counter, count >> 8)


def latched_count(pit, counter):
    pio_write(pit, CONTROL, control(counter, 0, 0))
    low = pio_read(pit, 0x40 + counter)
    return low | pio_read(pit, 0x40 + counter) << 8


def read_back_status(pit, counter):
    pio_write(pit, CONTROL, 0xC0 | 0x20 | 2 << counter)  # status only
    return pio_read(pit, 0x40 + counter)


def run_deadlines(pit, ctx, count):
    """Jump to each of the next ``count`` deadlines and tick there, like the run loop; their times."""
    times = []
    for _ in range(count):
        deadline = pit.next_deadline()
        ctx.clock.set(deadline)
        pit.tick(deadline)
        times.append(deadline)
    return times


# -- the clock ------------------------------------------------------------------------------


@given(st.integers(min_value=-(10**6), max_value=10**15))
def test_time_of_tick_is_the_first_ns_of_that_tick(tick):
    ns = time_of_tick(tick, PIT_HZ)
    assert ticks_at(ns, PIT_HZ) == tick
    assert ticks_at(ns - 1, PIT_HZ) == tick - 1


def test_input_clock_is_exact_integer_division_of_virtual_time():
    assert ticks_at(10**9, PIT_HZ) == PIT_HZ
    assert ticks_at(838, PIT_HZ) == 0 and ticks_at(839, PIT_HZ) == 1  # 1 / 1.193182 MHz = 838.1 ns


# -- mode 0 ---------------------------------------------------------------------------------


def test_mode0_counts_down_from_the_edge_after_the_write_and_raises_out_at_zero(pit, ctx):
    at_tick(ctx, 1000, ns_after=100)
    program(pit, 0, 0, 100)
    assert read_back_status(pit, 0) & 0xC0 == 0x40  # OUT low, null count: not loaded yet
    at_tick(ctx, 1001)  # loading edge: no decrement
    assert latched_count(pit, 0) == 100
    assert read_back_status(pit, 0) & 0xC0 == 0x00
    at_tick(ctx, 1001 + 40)
    assert latched_count(pit, 0) == 60
    at_tick(ctx, 1001 + 100, ns_after=-1)
    assert read_back_status(pit, 0) & 0x80 == 0
    at_tick(ctx, 1001 + 100)
    assert latched_count(pit, 0) == 0 and read_back_status(pit, 0) & 0x80
    at_tick(ctx, 1001 + 103)
    assert latched_count(pit, 0) == 0xFFFD  # counts on past zero, OUT stays high
    assert read_back_status(pit, 0) & 0x80


def test_mode0_irq0_pulses_once_at_terminal_count(pit, ctx):
    at_tick(ctx, 5)
    program(pit, 0, 0, 1000)
    assert pit.next_deadline() == time_of_tick(6 + 1000, PIT_HZ)
    assert run_deadlines(pit, ctx, 1) == [time_of_tick(1006, PIT_HZ)]
    assert ctx.pulses == [0]
    assert pit.next_deadline() is None


def test_linux_pit_shutdown_sequence_raises_one_last_edge_after_65536_clocks(pit, ctx):
    program(pit, 0, 2, 4773)
    at_tick(ctx, 300)
    pio_write(pit, CONTROL, 0x30)       # counter 0, LSB then MSB, mode 0
    assert pit.next_deadline() is None  # waiting for a count
    pio_write(pit, 0x40, 0)
    pio_write(pit, 0x40, 0)
    assert pit.next_deadline() == time_of_tick(301 + 65536, PIT_HZ)


def test_mode0_first_byte_of_a_two_byte_count_stops_counting_and_drops_out(pit, ctx):
    program(pit, 0, 0, 10)
    at_tick(ctx, 50)
    assert read_back_status(pit, 0) & 0x80  # expired
    pio_write(pit, 0x40, 0x34)
    at_tick(ctx, 60)
    assert latched_count(pit, 0) == (10 - 49) % 0x10000  # held since tick 50
    assert read_back_status(pit, 0) & 0x80 == 0
    pio_write(pit, 0x40, 0x12)
    at_tick(ctx, 61 + 0x1234 - 1)
    assert latched_count(pit, 0) == 1


# -- modes 2 and 3: IRQ 0 as Linux's periodic tick ------------------------------------------


def test_mode2_linux_periodic_tick_pulses_irq0_at_every_period(pit, ctx):
    at_tick(ctx, 7, ns_after=300)
    program(pit, 0, 2, 4773)  # Linux's PIT_LATCH for HZ=250
    assert ctx.timer_changes >= 1
    times = run_deadlines(pit, ctx, 5)
    assert times == [time_of_tick(8 + m * 4773, PIT_HZ) for m in range(1, 6)]
    assert ctx.pulses == [0] * 5


def test_mode2_counts_n_to_1_and_out_is_low_while_the_count_is_1(pit, ctx):
    program(pit, 0, 2, 5)
    start = 1  # written at tick 0, loaded at tick 1
    seen = []
    for tick in range(start, start + 11):
        at_tick(ctx, tick)
        seen.append((latched_count(pit, 0), bool(read_back_status(pit, 0) & 0x80)))
    assert seen == [(5, True), (4, True), (3, True), (2, True), (1, False)] * 2 + [(5, True)]


def test_late_tick_coalesces_passed_edges_into_one_pulse(pit, ctx):
    program(pit, 0, 2, 100)
    at_tick(ctx, 1 + 350)
    pit.tick(ctx.clock.now())
    assert ctx.pulses == [0]
    assert pit.next_deadline() == time_of_tick(1 + 400, PIT_HZ)


def test_an_edge_waiting_for_tick_survives_guest_accesses_to_counter0(pit, ctx):
    program(pit, 0, 2, 100)
    at_tick(ctx, 1 + 100 + 3)  # past the first edge; the vCPU has not stopped for it yet
    latched_count(pit, 0)  # Linux's i8253 clocksource read
    program(pit, 0, 2, 500)  # even a new program: the edge already happened
    pit.tick(ctx.clock.now())
    assert ctx.pulses == [0]
    assert pit.next_deadline() == time_of_tick(1 + 103 + 1 + 500, PIT_HZ)


def test_mode2_new_count_without_control_word_takes_effect_at_the_end_of_the_cycle(pit, ctx):
    program(pit, 0, 2, 100)
    run_deadlines(pit, ctx, 1)
    at_tick(ctx, 1 + 130)  # 30 clocks into the second cycle
    pio_write(pit, 0x40, 50)
    pio_write(pit, 0x40, 0)
    assert read_back_status(pit, 0) & 0x40  # null count until the reload
    assert latched_count(pit, 0) == 70
    assert run_deadlines(pit, ctx, 3) == [time_of_tick(1 + 200 + m * 50, PIT_HZ) for m in range(3)]
    assert read_back_status(pit, 0) & 0x40 == 0


@pytest.mark.parametrize("count, highs, lows", [(8, [8, 6, 4, 2], [8, 6, 4, 2]), (7, [6, 4, 2, 0], [6, 4, 2])])
def test_mode3_square_wave_counts_down_by_two_and_is_high_for_the_longer_half(pit, ctx, count, highs, lows):
    program(pit, 0, 3, count)
    seen = []
    for tick in range(1, 1 + 2 * count):
        at_tick(ctx, tick)
        seen.append((latched_count(pit, 0), bool(read_back_status(pit, 0) & 0x80)))
    one_period = [(c, True) for c in highs] + [(c, False) for c in lows]
    assert seen == one_period * 2


def test_mode3_irq0_pulses_on_each_rising_edge(pit, ctx):
    program(pit, 0, 3, 0)  # 65536: the BIOS's 18.2 Hz
    assert run_deadlines(pit, ctx, 3) == [time_of_tick(1 + m * 65536, PIT_HZ) for m in (1, 2, 3)]


def test_mode3_new_count_in_the_high_half_starts_low_at_the_half_cycle(pit, ctx):
    program(pit, 0, 3, 100)
    at_tick(ctx, 1 + 20)  # high half: 50 clocks
    pio_write(pit, 0x40, 10)
    pio_write(pit, 0x40, 0)
    at_tick(ctx, 1 + 49)
    assert read_back_status(pit, 0) & 0x80 and latched_count(pit, 0) == 2
    at_tick(ctx, 1 + 50)
    assert not read_back_status(pit, 0) & 0x80 and latched_count(pit, 0) == 10
    assert run_deadlines(pit, ctx, 2) == [time_of_tick(1 + 55, PIT_HZ), time_of_tick(1 + 65, PIT_HZ)]


# -- mode 4: Linux's one-shot clockevent ----------------------------------------------------


def test_mode4_linux_oneshot_strobes_once_and_a_new_count_rearms(pit, ctx):
    pio_write(pit, CONTROL, 0x38)  # pit_set_oneshot: counter 0, LSB then MSB, mode 4
    assert pit.next_deadline() is None
    at_tick(ctx, 100)
    pio_write(pit, 0x40, 200 & 0xFF)  # pit_next_event(200)
    pio_write(pit, 0x40, 200 >> 8)
    at_tick(ctx, 101 + 200)
    assert read_back_status(pit, 0) & 0x80 == 0  # the one-clock strobe
    at_tick(ctx, 101 + 199)
    assert read_back_status(pit, 0) & 0x80
    # OUT rises again one clock after terminal count: that edge is the interrupt
    assert run_deadlines(pit, ctx, 1) == [time_of_tick(101 + 201, PIT_HZ)]
    assert pit.next_deadline() is None
    pio_write(pit, 0x40, 50)
    pio_write(pit, 0x40, 0)
    now_tick = ticks_at(ctx.clock.now(), PIT_HZ)
    assert run_deadlines(pit, ctx, 1) == [time_of_tick(now_tick + 1 + 51, PIT_HZ)]
    assert ctx.pulses == [0, 0]


def test_mode4_rewrite_before_expiry_restarts_the_count(pit, ctx):
    program(pit, 0, 4, 1000)
    at_tick(ctx, 500)
    pio_write(pit, 0x40, 100)
    pio_write(pit, 0x40, 0)
    assert pit.next_deadline() == time_of_tick(501 + 101, PIT_HZ)


# -- latch and read-back --------------------------------------------------------------------


def test_latched_count_holds_until_read_and_a_second_latch_is_ignored(pit, ctx):
    program(pit, 0, 2, 1000)
    at_tick(ctx, 101)
    pio_write(pit, CONTROL, 0x00)
    at_tick(ctx, 301)
    pio_write(pit, CONTROL, 0x00)  # ignored: the first latch is unread
    assert pio_read(pit, 0x40) | pio_read(pit, 0x40) << 8 == 900
    assert latched_count(pit, 0) == 700


def test_read_back_latches_status_then_count_of_several_counters(pit, ctx):
    program(pit, 0, 2, 1000)
    program(pit, 1, 3, 0x50, access=1)
    at_tick(ctx, 11)
    pio_write(pit, CONTROL, 0xC0 | 0b110)  # count and status of counters 0 and 1
    at_tick(ctx, 500)
    assert pio_read(pit, 0x40) == 0x80 | 0x30 | 2 << 1  # OUT high, LSB/MSB, mode 2
    assert pio_read(pit, 0x40) | pio_read(pit, 0x40) << 8 == 990
    assert pio_read(pit, 0x41) == 0x80 | 0x10 | 3 << 1  # LSB only, mode 3
    assert pio_read(pit, 0x41) == 0x50 - 2 * 10  # latched at tick 11: 10 clocks into the high half
    assert latched_count(pit, 0) == 1000 - 499 % 1000


def test_read_back_status_reports_mode_aliases_bcd_bit_and_null_count(pit, ctx):
    pio_write(pit, CONTROL, control(0, 3, 6, bcd=1))  # mode 6 = mode 2
    assert read_back_status(pit, 0) == 0x80 | 0x40 | 0x30 | 6 << 1 | 1
    pio_write(pit, 0x40, 10)
    pio_write(pit, 0x40, 0)
    at_tick(ctx, 1)
    assert read_back_status(pit, 0) == 0x80 | 0x30 | 6 << 1 | 1
    assert pit.next_deadline() == time_of_tick(11, PIT_HZ)  # a rate generator


def test_lsb_only_and_msb_only_counts(pit, ctx):
    program(pit, 0, 0, 0x40, access=1)
    at_tick(ctx, 1 + 0x10)
    assert pio_read(pit, 0x40) == 0x30
    program(pit, 0, 0, 0x1200, access=2)
    now_tick = ticks_at(ctx.clock.now(), PIT_HZ)
    at_tick(ctx, now_tick + 1 + 0x100)
    assert pio_read(pit, 0x40) == 0x11


def test_unlatched_reads_alternate_lsb_and_msb(pit, ctx):
    pio_write(pit, PORT61, 0x01)
    program(pit, 2, 0, 0x1234)
    at_tick(ctx, 1 + 0x34)
    assert pio_read(pit, 0x42) == 0x00
    at_tick(ctx, 1 + 0x134)
    assert pio_read(pit, 0x42) == 0x11  # the MSB, read later: no latch
    assert pio_read(pit, 0x42) == 0x00


def test_control_port_reads_open_bus(pit):
    assert pio_read(pit, CONTROL) == 0xFF


# -- counter 2, port 0x61, and Linux's TSC calibration --------------------------------------


def test_linux_quick_pit_calibrate_sees_the_msb_step_every_256_clocks(pit, ctx):
    pio_write(pit, PORT61, (pio_read(pit, PORT61) & ~0x02) | 0x01)  # gate high, speaker off
    pio_write(pit, CONTROL, 0xB0)  # counter 2, LSB then MSB, mode 0
    pio_write(pit, 0x42, 0xFF)
    pio_write(pit, 0x42, 0xFF)
    for msb in (0xFF, 0xFE, 0x80, 0x01):
        first = 1 + 0xFFFF - (msb << 8 | 0xFF)  # tick at which the count reads msb:0xFF
        for tick, expected in ((first - 1, msb + 1), (first, msb), (first + 255, msb)):
            at_tick(ctx, tick)
            pio_read(pit, 0x42)
            assert pio_read(pit, 0x42) == expected & 0xFF


def test_linux_pit_calibrate_tsc_out2_rises_after_the_latch(pit, ctx):
    latch = PIT_HZ // (1000 // 50)  # CAL_MS = 50
    at_tick(ctx, 12345, ns_after=20)
    pio_write(pit, PORT61, (pio_read(pit, PORT61) & ~0x02) | 0x01)
    pio_write(pit, CONTROL, 0xB0)
    pio_write(pit, 0x42, latch & 0xFF)
    pio_write(pit, 0x42, latch >> 8)
    expiry = time_of_tick(12346 + latch, PIT_HZ)
    ctx.clock.set(expiry - 1)
    assert not pio_read(pit, PORT61) & 0x20
    ctx.clock.set(expiry)
    assert pio_read(pit, PORT61) & 0x20
    assert ctx.pulses == [] and pit.next_deadline() is None  # counter 2 has no interrupt


def test_port61_keeps_the_low_bits_and_reads_the_refresh_toggle(pit, ctx):
    pio_write(pit, PORT61, 0xFF)
    at_tick(ctx, 0)
    assert pio_read(pit, PORT61) & 0x1F == 0x0F
    toggles = []
    for tick in range(0, 18 * 4, 9):
        at_tick(ctx, tick)
        toggles.append(pio_read(pit, PORT61) >> 4 & 1)
    assert toggles == [0, 0, 1, 1, 0, 0, 1, 1]
    at_tick(ctx, 18, ns_after=-1)
    assert not pio_read(pit, PORT61) & 0x10


def test_gate_low_pauses_mode0_and_resumes_where_it_stopped(pit, ctx):
    pio_write(pit, PORT61, 0x01)
    program(pit, 2, 0, 1000)
    at_tick(ctx, 101)
    pio_write(pit, PORT61, 0x00)
    at_tick(ctx, 5000)
    assert latched_count(pit, 2) == 900
    pio_write(pit, PORT61, 0x01)
    at_tick(ctx, 5000 + 900 - 1)
    assert not pio_read(pit, PORT61) & 0x20
    at_tick(ctx, 5000 + 900)
    assert pio_read(pit, PORT61) & 0x20


def test_count_written_with_gate_low_waits_for_the_gate(pit, ctx):
    program(pit, 2, 0, 100)  # port 0x61 bit 0 is 0 after reset
    at_tick(ctx, 1000)
    assert latched_count(pit, 2) == 100 and not pio_read(pit, PORT61) & 0x20
    pio_write(pit, PORT61, 0x01)
    at_tick(ctx, 1100)
    assert pio_read(pit, PORT61) & 0x20


def test_gate_low_holds_mode2_out_high_and_the_rising_edge_reloads(pit, ctx):
    pio_write(pit, PORT61, 0x01)
    program(pit, 2, 2, 10)
    at_tick(ctx, 1 + 9)  # count 1: OUT low
    assert not pio_read(pit, PORT61) & 0x20
    pio_write(pit, PORT61, 0x00)
    assert pio_read(pit, PORT61) & 0x20
    at_tick(ctx, 50)
    assert latched_count(pit, 2) == 1
    pio_write(pit, PORT61, 0x01)
    at_tick(ctx, 51)
    assert latched_count(pit, 2) == 10
    at_tick(ctx, 51 + 9)
    assert not pio_read(pit, PORT61) & 0x20


def test_mode1_one_shot_starts_at_the_gate_trigger(pit, ctx):
    program(pit, 2, 1, 20)
    at_tick(ctx, 100)
    assert pio_read(pit, PORT61) & 0x20  # OUT high, waiting for a trigger
    pio_write(pit, PORT61, 0x01)
    at_tick(ctx, 101)
    assert not pio_read(pit, PORT61) & 0x20
    assert latched_count(pit, 2) == 20
    at_tick(ctx, 101 + 20)
    assert pio_read(pit, PORT61) & 0x20


def test_mode5_strobes_one_clock_after_the_trigger_count(pit, ctx):
    program(pit, 2, 5, 20)
    pio_write(pit, PORT61, 0x01)
    levels = []
    for tick in (1 + 19, 1 + 20, 1 + 21):
        at_tick(ctx, tick)
        levels.append(bool(pio_read(pit, PORT61) & 0x20))
    assert levels == [True, False, True]


def test_speaker_tone_in_mode3_on_counter2_has_no_interrupt(pit, ctx):
    pio_write(pit, PORT61, 0x03)  # gate + speaker, as the pcspkr driver does
    program(pit, 2, 3, 1193)
    assert pit.next_deadline() is None
    at_tick(ctx, 1 + 597)
    assert not pio_read(pit, PORT61) & 0x20  # the low half of the square wave


def test_power_on_state_is_silent(pit):
    assert pit.next_deadline() is None
    assert pit.bus_ranges()[0].base == 0x40 and pit.bus_ranges()[1].base == 0x61
