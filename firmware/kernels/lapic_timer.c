/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LAPIC timer: one-shot (initial count, divide configuration, fires once,
 * current count runs down), periodic, TSC-deadline mode (MSR 0x6E0),
 * "sti; hlt" waits (the VMM skips virtual time), masked timer.
 *
 * Timing model of the VMM: 1 instruction = 1 ns = 1 TSC tick, APIC bus 1 GHz,
 * so a timer count lasts "divide value" TSC ticks.  Deadlines are checked
 * with RDTSC: the handler must run at or after the deadline and not more
 * than SLACK ticks later.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define SLACK 2000
#define VEC 0x50

static volatile int ticks;
static volatile uint64_t tick_tsc[16];

static void timer_handler(struct ex_regs *regs)
{
	uint64_t t = rdtsc();
	if (ticks < 16)
		tick_tsc[ticks] = t;
	ticks++;
	apic_eoi();
}

/* with IF=1, spin until `ticks` reaches n or `limit` TSC ticks passed */
static void wait_ticks(int n, uint64_t limit)
{
	uint64_t end = rdtsc() + limit;
	sti();
	while (ticks < n && rdtsc() < end)
		pause();
	cli();
}

static void timer_stop(void)
{
	apic_write(APIC_TMICT, 0);
	apic_write(APIC_LVTT, APIC_LVT_MASKED);
	ticks = 0;
}

static bool in_window(uint64_t got, uint64_t start, uint64_t delta)
{
	return got >= start + delta && got <= start + delta + SLACK;
}

static void test_oneshot(unsigned tdcr, unsigned div, uint32_t count)
{
	uint64_t t0, delta = (uint64_t)count * div;

	timer_stop();
	apic_write(APIC_TDCR, tdcr);
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | VEC);
	t0 = rdtsc();
	apic_write(APIC_TMICT, count);
	wait_ticks(1, 4 * delta + 100000);
	report(ticks == 1, "one-shot count %u / %u: fired", count, div);
	report(ticks >= 1 && in_window(tick_tsc[0], t0, delta),
	       "one-shot count %u / %u: after %lu TSC ticks (expect %lu..%lu)",
	       count, div, tick_tsc[0] - t0, delta, delta + SLACK);
	wait_ticks(2, 3 * delta);
	report(ticks == 1, "one-shot fires only once (%d)", ticks);
	report(apic_read(APIC_TMCCT) == 0, "current count 0 after expiry");
	report(apic_read(APIC_TMICT) == count, "initial count kept (%u)",
	       apic_read(APIC_TMICT));
}

static void test_current_count(void)
{
	timer_stop();
	apic_write(APIC_TDCR, 3); /* divide by 16 */
	apic_write(APIC_LVTT, APIC_LVT_MASKED | VEC);
	apic_write(APIC_TMICT, 1000000);
	uint32_t c1 = apic_read(APIC_TMCCT);
	uint64_t t1 = rdtsc();
	for (int i = 0; i < 1000; i++)
		asm volatile("nop");
	uint64_t t2 = rdtsc();
	uint32_t c2 = apic_read(APIC_TMCCT);
	xapic_write(APIC_TDCR, 0xb); /* divide by 1: the rest runs 16x faster */
	uint64_t t3 = rdtsc();
	uint32_t c3 = xapic_read(APIC_TMCCT);
	uint64_t t4 = rdtsc();
	uint32_t c4 = xapic_read(APIC_TMCCT);
	uint64_t want = (t2 - t1) / 16;
	report(c1 <= 1000000 && c1 > 1000000 - 10,
	       "current count starts at the initial count (%u)", c1);
	report(c2 < c1 && c1 - c2 + 2 >= want && c1 - c2 <= want + 2,
	       "current count decreases by TSC/16: %u over %lu ticks", c1 - c2,
	       t2 - t1);
	report(c3 <= c2 && c2 - c3 <= (t3 - t2) + 2,
	       "divide change keeps the remaining count (%u -> %u in %lu ticks)",
	       c2, c3, t3 - t2);
	report(c3 - c4 + 2 >= t4 - t3 && c3 - c4 <= t4 - t3 + 2,
	       "then one count per tick (%u in %lu ticks)", c3 - c4, t4 - t3);
	apic_write(APIC_TMICT, 0);
	report(apic_read(APIC_TMCCT) == 0, "initial count 0 stops the timer");
}

static void test_periodic(void)
{
	const uint32_t period = 5000;

	timer_stop();
	apic_write(APIC_TDCR, 0xb);
	apic_write(APIC_LVTT, APIC_TIMER_PERIODIC | VEC);
	uint64_t t0 = rdtsc();
	apic_write(APIC_TMICT, period);
	wait_ticks(5, 10 * period + 100000);
	uint32_t cur = apic_read(APIC_TMCCT);
	report(ticks == 5, "periodic: 5 interrupts (%d)", ticks);
	bool ok = ticks >= 5;
	for (int i = 0; ok && i < 5; i++) {
		if (!in_window(tick_tsc[i], t0, (uint64_t)(i + 1) * period)) {
			report_info("tick %d at +%lu", i, tick_tsc[i] - t0);
			ok = false;
		}
	}
	report(ok, "periodic: tick i at t0 + (i+1)*%u (+%lu)", period,
	       tick_tsc[4] - t0);
	report(cur > 0 && cur <= period, "periodic: current count reloads (%u)",
	       cur);
	apic_write(APIC_TMICT, 0);
	int n = ticks;
	wait_ticks(n + 1, 4 * period);
	report(ticks == n, "periodic stopped by initial count 0");

	/* periodic with HLT: each wake-up at the next period */
	ticks = 0;
	t0 = rdtsc();
	apic_write(APIC_TMICT, 100000);
	for (int i = 0; i < 3; i++)
		asm volatile("sti; hlt; cli");
	n = ticks;
	timer_stop();
	report(n == 3 && in_window(tick_tsc[2], t0, 300000),
	       "periodic 100000: 3 x sti;hlt, third tick at +%lu", tick_tsc[2] - t0);
}

static void test_hlt(void)
{
	const uint32_t count = 1000000000; /* one virtual second */

	timer_stop();
	apic_write(APIC_TDCR, 0xb);
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | VEC);
	uint64_t t0 = rdtsc();
	apic_write(APIC_TMICT, count);
	asm volatile("sti; hlt; cli");
	uint64_t t1 = rdtsc();
	report(ticks == 1, "sti; hlt woken by the one-shot timer");
	report(ticks == 1 && in_window(tick_tsc[0], t0, count),
	       "woke after %lu TSC ticks (1e9 expected)", tick_tsc[0] - t0);
	report(t1 >= t0 + count, "TSC advanced across HLT");
}

static void test_masked(void)
{
	timer_stop();
	apic_write(APIC_TDCR, 0xb);
	apic_write(APIC_LVTT, APIC_LVT_MASKED | APIC_TIMER_ONESHOT | VEC);
	apic_write(APIC_TMICT, 3000);
	wait_ticks(1, 20000);
	report(ticks == 0 && !apic_vector_bit(APIC_IRR, VEC),
	       "masked timer: no interrupt, IRR clear");
	report(apic_read(APIC_TMCCT) == 0, "masked timer still expired "
					   "(current count %u)",
	       apic_read(APIC_TMCCT));
	/* unmasking after expiry does not deliver a lost tick */
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | VEC);
	wait_ticks(1, 20000);
	report(ticks == 0, "unmasking later delivers nothing");
	timer_stop();
}

static void test_tsc_deadline(void)
{
	uint64_t d, v;

	if (!cpu_has_tsc_deadline()) {
		report(rdmsr_safe(MSR_IA32_TSC_DEADLINE, &v) &&
			       faulted_with(GP_VECTOR),
		       "no TSC-deadline in CPUID: MSR 0x6e0 #GP");
		report_skip("TSC-deadline timer not advertised");
		return;
	}
	timer_stop();
	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 1000);
	report(rdmsr(MSR_IA32_TSC_DEADLINE) == 0,
	       "TSC_DEADLINE reads 0 and ignores writes outside deadline mode");

	/* a running one-shot is disarmed by the switch to deadline mode */
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | VEC);
	apic_write(APIC_TMICT, 5000);
	apic_write(APIC_LVTT, APIC_TIMER_TSC_DEADLINE | VEC);
	report(apic_read(APIC_LVTT) == (APIC_TIMER_TSC_DEADLINE | VEC),
	       "LVTT TSC-deadline mode reads back (0x%x)", apic_read(APIC_LVTT));
	wait_ticks(1, 20000);
	report(ticks == 0, "mode switch disarmed the one-shot");
	apic_write(APIC_TMICT, 5000);
	report(apic_read(APIC_TMICT) == 0, "initial count ignored in "
					   "deadline mode");

	d = rdtsc() + 20000;
	wrmsr(MSR_IA32_TSC_DEADLINE, d);
	report(rdmsr(MSR_IA32_TSC_DEADLINE) == d, "TSC_DEADLINE reads back "
						  "while armed");
	wait_ticks(1, 200000);
	report(ticks == 1 && tick_tsc[0] >= d && tick_tsc[0] <= d + SLACK,
	       "deadline interrupt at TSC %ld from the deadline",
	       (long)(tick_tsc[0] - d));
	report(rdmsr(MSR_IA32_TSC_DEADLINE) == 0, "TSC_DEADLINE 0 after firing");
	wait_ticks(2, 40000);
	report(ticks == 1, "deadline fires once");

	/* a deadline in the past fires at once */
	ticks = 0;
	sti();
	wrmsr(MSR_IA32_TSC_DEADLINE, 1);
	asm volatile("nop; nop");
	int seen = ticks;
	cli();
	report(seen == 1, "past deadline fires at once");

	/* writing 0 disarms */
	ticks = 0;
	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 5000);
	wrmsr(MSR_IA32_TSC_DEADLINE, 0);
	wait_ticks(1, 20000);
	report(ticks == 0, "writing 0 disarms");

	/* HLT until the deadline */
	d = rdtsc() + 50000000;
	wrmsr(MSR_IA32_TSC_DEADLINE, d);
	asm volatile("sti; hlt; cli");
	report(ticks == 1 && tick_tsc[0] >= d && tick_tsc[0] <= d + SLACK,
	       "sti; hlt until a deadline 50 ms ahead (%ld)",
	       (long)(tick_tsc[0] - d));

	/* masked deadline: no interrupt, still disarms */
	ticks = 0;
	apic_write(APIC_LVTT, APIC_LVT_MASKED | APIC_TIMER_TSC_DEADLINE | VEC);
	wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 3000);
	wait_ticks(1, 20000);
	report(ticks == 0 && rdmsr(MSR_IA32_TSC_DEADLINE) == 0,
	       "masked deadline: no interrupt, disarmed");
	timer_stop();
}

int main(struct multiboot_info *mbi)
{
	printf("lapic_timer test\n");
	handle_exception(VEC, timer_handler);
	apic_sw_enable();

	test_oneshot(0xb, 1, 10000);
	test_oneshot(0x1, 4, 2500);
	test_oneshot(0xa, 128, 100);
	test_current_count();
	test_periodic();
	test_hlt();
	test_masked();
	test_tsc_deadline();
	return report_summary();
}
