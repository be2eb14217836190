/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Cross-modifying code: one CPU rewrites code another CPU has already run.
 *
 * The SDM's rule (vol. 3, "Handling cross-modifying code"): the writer stores the new code and
 * tells the others; each executing CPU then runs a serializing instruction before it executes the
 * new code.  Linux does exactly that (text_poke_sync: an IPI to every CPU, whose handler does
 * sync_core(), an IRET to the instruction after itself).  pmu-vmm drops a vCPU's translations at
 * such an IRET, so:
 *
 *  - self-modifying code on one CPU sees its own store at once;
 *  - an AP that ran the old code runs the new code after an IRET to itself;
 *  - without one, what the AP runs is printed only (the SDM leaves it undefined; pmu-vmm keeps the
 *    AP's old translation until it serializes).
 *
 * The code under test is `mov $imm32, %eax; ret` in a page-aligned buffer; the tests rewrite imm32.
 */
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "smp.h"

static uint8_t site[4096] __attribute__((aligned(4096), section(".text.cmc")));
static volatile uint32_t seen[SMP_MAX_CPUS];

static uint32_t run_site(void)
{
	return ((uint32_t (*)(void))site)();
}

static void set_site(uint32_t value)
{
	site[0] = 0xB8;                          /* mov $imm32, %eax */
	__builtin_memcpy(&site[1], &value, 4);
	site[5] = 0xC3;                          /* ret */
}

static void ap_run(void *arg)
{
	seen[this_cpu()->index] = run_site();
}

static void ap_sync_and_run(void *arg)
{
	iret_to_self();
	seen[this_cpu()->index] = run_site();
}

int main(struct multiboot_info *mbi)
{
	printf("smp_cmc test\n");
	set_site(1);
	report(run_site() == 1, "the site returns 1");
	set_site(2);
	report(run_site() == 2, "self-modifying code: the writer runs its new code at once");
	smp_init(true);
	if (smp_nr_cpus < 2 || smp_start_aps() < 1) {
		report_skip("cross-modifying code: needs a second CPU");
		return report_summary();
	}
	for (int cpu = 1; cpu < smp_nr_cpus; cpu++) {
		set_site(10 + cpu);
		smp_call(cpu, ap_run, NULL);
		report(seen[cpu] == 10u + cpu, "CPU %d runs the code it finds (%u)", cpu, seen[cpu]);
		set_site(20 + cpu);
		smp_call(cpu, ap_run, NULL);
		report_info("CPU %d without a serializing instruction runs the %s code (%u)", cpu,
			    seen[cpu] == 20u + cpu ? "new" : "old", seen[cpu]);
		smp_call(cpu, ap_sync_and_run, NULL);
		report(seen[cpu] == 20u + cpu, "CPU %d after an IRET to itself runs the new code (%u)", cpu,
		       seen[cpu]);
	}
	set_site(3);
	report(run_site() == 3, "the BSP still runs its own new code");
	return report_summary();
}
