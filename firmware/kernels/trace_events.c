/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A short, fixed sequence of the events `--trace` records, for the trace tests
 * (tests/test_trace.py).  Every step is a function named trace_*, so its records
 * carry that symbol; the tests assert the exact records each one makes.
 *
 * Intel arch perfmon v2 (the default CPU):
 *   trace_program   PERFCTR0 = -100, PERFEVTSEL0 = instructions|OS|USR|INT|EN,
 *                   LVTPC = vector 0xe0 (xAPIC MMIO), GLOBAL_CTRL = 1 (GP0 starts)
 *   trace_spin      ~300 instructions with IF=0: GP0 overflows after exactly 100
 *                   counted instructions; the PMI waits in the IRR
 *   trace_take_pmi  sti; nop; cli: the PMI (vector 0xe0) is injected, its handler
 *                   reads GLOBAL_STATUS, clears it through OVF_CTRL and EOIs
 *   trace_stop      GLOBAL_CTRL = 0 (GP0 stops)
 *   trace_rdpmc     RDPMC 0 (the counter's value), RDPMC 0x1234 (#GP)
 *   trace_bad_msr   WRMSR to an MSR nobody owns (#GP, error code 0)
 *   trace_int3      INT3 (a software exception)
 *   trace_io        OUT 0x80 (nobody: dropped), IN 0x80 (all-ones)
 * AMD or no PMU: the PMU steps are skipped.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define PMI_VECTOR 0xe0
#define PRESET 100
#define EV_INSTRUCTIONS 0xc0

static volatile int pmis;
static volatile uint64_t pmi_status;
static volatile int breakpoints;

static void pmi_handler(struct ex_regs *regs)
{
	pmis++;
	pmi_status = rdmsr(MSR_CORE_PERF_GLOBAL_STATUS);
	wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, pmi_status);
	apic_eoi();
}

static void bp_handler(struct ex_regs *regs)
{
	breakpoints++;
}

static __attribute__((noinline)) void trace_program(void)
{
	wrmsr(MSR_IA32_PERFCTR0, (uint32_t)-PRESET);
	wrmsr(MSR_IA32_EVNTSEL0, EV_INSTRUCTIONS | EVNTSEL_OS | EVNTSEL_USR | EVNTSEL_INT | EVNTSEL_EN);
	apic_write(APIC_LVTPC, PMI_VECTOR);
	wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1);
}

static __attribute__((noinline)) void trace_spin(void)
{
	unsigned long n = 100;

	asm volatile("1: dec %0; jnz 1b" : "+r"(n));
}

static __attribute__((noinline)) void trace_take_pmi(void)
{
	asm volatile("sti; nop; cli" ::: "memory");
}

static __attribute__((noinline)) void trace_stop(void)
{
	wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
}

static __attribute__((noinline)) uint64_t trace_rdpmc(bool *fault)
{
	uint64_t value = 0, ignored;

	*fault = rdpmc_safe(0, &value);
	*fault = *fault || !rdpmc_safe(0x1234, &ignored);
	return value;
}

static __attribute__((noinline)) bool trace_bad_msr(void)
{
	return wrmsr_safe(0x12345678, 0x42) && faulted_with(13);
}

static __attribute__((noinline)) void trace_int3(void)
{
	asm volatile("int3" ::: "memory");
}

static __attribute__((noinline)) uint8_t trace_io(void)
{
	outb(0x5a, 0x80);
	return inb(0x80);
}

int main(struct multiboot_info *mbi)
{
	printf("trace_events test\n");
	pmu_init();
	handle_exception(3, bp_handler);
	if (!pmu.amd && pmu.version >= 2 && pmu.nr_gp) {
		handle_exception(PMI_VECTOR, pmi_handler);
		apic_sw_enable();
		trace_program();
		trace_spin();
		report(pmis == 0, "no PMI while IF=0");
		trace_take_pmi();
		report(pmis == 1 && pmi_status == 1, "one PMI for GP0 (status 0x%lx)", pmi_status);
		trace_stop();
		bool fault;
		uint64_t value = trace_rdpmc(&fault);
		report(!fault, "RDPMC 0 read 0x%lx, RDPMC 0x1234 faulted", value);
		apic_write(APIC_LVTPC, APIC_LVT_MASKED);
	} else {
		report_skip("PMU steps need Intel arch perfmon v2");
	}
	report(trace_bad_msr(), "WRMSR 0x12345678 #GP");
	trace_int3();
	report(breakpoints == 1, "INT3 handled");
	report(trace_io() == 0xff, "port 0x80 reads all-ones");
	return report_summary();
}
