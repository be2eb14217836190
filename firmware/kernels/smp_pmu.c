/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * One PMU per vCPU.  Every CPU measures its own loop, all at the same time:
 *
 *	wrmsr                    1  enables the counters: counted
 *	mov  %ecx, %edi          2  keep the MSR index
 *	mov  %rbx, %rcx          3  N
 *   1: nop x 8                  \  9 instructions per iteration,
 *	loop 1b                  /  N branches
 *	mov  %edi, %ecx          4
 *	xor  %eax, %eax          5
 *	xor  %edx, %edx          6
 *	wrmsr                       disables the counters: not counted
 *
 * so exactly 9N + 6 instructions and N branches on the CPU that ran it, whatever the others did
 * meanwhile.  The enabling WRMSR is GLOBAL_CTRL (Intel v2, AMD PerfMonV2; GP0 instructions, GP1
 * branches and Intel fixed counter 0 together) or, without global control (AMD legacy), the
 * event select of GP0 (written with 0 to disable), one event per run.  The BSP runs N = n
 * iterations, CPU k n - 50000 + 1000 k: different lengths, long enough (millions of
 * instructions) that the runs overlap in virtual time, which is checked (the TSC is the one
 * machine clock).  The overlap needs runs longer than one time slice: with the default quantum
 * (50000) any n here does; a --quantum above 9n fails that check by design.
 *
 * Checks: each AP's PMU starts in the state the BSP's did (GLOBAL_CTRL, select and counter 0);
 * concurrent runs give every CPU its exact counts and RDPMC on each CPU reads its own counter; an
 * AP's counter left enabled across `sti; hlt` while the BSP runs its loop sees only the AP's own
 * few instructions, and the same the other way round; overflow with INT: each CPU's counter
 * preset to overflow halfway ends at exactly C - C/2 and one PMI reaches that CPU's LVTPC, with
 * that CPU's GLOBAL_STATUS bit 0 -- only the CPU whose counter overflowed gets a PMI (all, only
 * the BSP, only the last AP); another CPU toggling its own GLOBAL_CTRL (or event select) and
 * writing its counter 0 while the BSP measures changes nothing on the BSP; an AP's
 * GLOBAL_STATUS stays 0 while the BSP's has a bit set, and an AP's GLOBAL_OVF_CTRL (STATUS_CLR)
 * write does not clear the BSP's.
 *
 * Command line: n=N (default 400000, at least 60000); poll=1 makes idle APs poll their
 * mailbox instead of sleeping in HLT.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"
#include "smp.h"

#define V_PMI 0x70
#define V_WAKE 0x71
#define V_TIMER 0xe0
#define EXTRA_INSNS 6

/* Intel architectural events / AMD events */
#define EV_INSNS 0x00c0
#define EV_BRANCHES 0x00c4
#define AMD_INSNS 0x00c0
#define AMD_BRANCHES 0x00c2

struct job {
	/* in */
	uint64_t n;
	uint64_t preset;  /* GP0's start value */
	bool pmi;         /* INT bit on GP0 */
	/* out */
	uint64_t insns, branches, fixed0, rdpmc0, status;
	uint64_t t0, t1;
	bool done;
};

static int ncpus;
static uint64_t base_n;
static struct job jobs[SMP_MAX_CPUS];
static volatile int pmi_count[SMP_MAX_CPUS];
static volatile uint64_t pmi_status[SMP_MAX_CPUS];
static volatile int irq_count[SMP_MAX_CPUS][256];

/* PMU state each CPU found at its start (read before anything touched the PMU) */
static struct {
	uint64_t global_ctrl, sel0, ctr0;
} reset_state[SMP_MAX_CPUS];

static uint64_t ev_insns(void) { return pmu.amd ? AMD_INSNS : EV_INSNS; }
static uint64_t ev_branches(void) { return pmu.amd ? AMD_BRANCHES : EV_BRANCHES; }
static uint64_t sel(uint64_t ev) { return (ev & 0xffff) | EVNTSEL_OS | EVNTSEL_EN; }
static uint64_t insns_of(uint64_t n) { return 9 * n + EXTRA_INSNS; }
static bool has_fixed0(void) { return !pmu.amd && pmu.version >= 2 && pmu.nr_fixed >= 1; }

static inline void irq_window(void)
{
	asm volatile("sti; nop; cli" ::: "memory");
}

static void read_reset_state(void)
{
	int me = smp_cpu_index();
	reset_state[me].global_ctrl = pmu.global_ctrl ? rdmsr(pmu.global_ctrl) : 0;
	reset_state[me].sel0 = rdmsr(pmu_sel_msr(0));
	reset_state[me].ctr0 = rdmsr(pmu_ctr_msr(0));
}

void smp_ap_main(int cpu)
{
	read_reset_state();
	apic_write(APIC_LVTPC, V_PMI);
}

static void pmi_handler(struct ex_regs *regs)
{
	int me = smp_cpu_index();

	pmi_count[me]++;
	if (pmu.global_status) {
		pmi_status[me] = rdmsr(pmu.global_status);
		wrmsr(pmu.global_clear, pmi_status[me]);
	}
	apic_write(APIC_LVTPC, V_PMI); /* Intel masks it on delivery */
	apic_eoi();
}

static void irq_handler(struct ex_regs *regs)
{
	irq_count[smp_cpu_index()][regs->vector]++;
	apic_eoi();
}

/* the measured sequence of the header; `msr`/`enable` is the enabling WRMSR */
static void measure(uint32_t msr, uint64_t enable, uint64_t n)
{
	uint32_t lo = (uint32_t)enable, hi = (uint32_t)(enable >> 32), ecx = msr;

	asm volatile(PMU_COUNTED_BEGIN
		     "mov %%rbx, %%rcx\n"
		     "1:\tnop; nop; nop; nop; nop; nop; nop; nop\n\t"
		     "loop 1b\n\t"
		     PMU_COUNTED_END
		     : "+a"(lo), "+d"(hi), "+c"(ecx)
		     : "b"(n)
		     : "rdi", "memory", "cc");
}

/* on the CPU that runs it: program its own PMU, run the loop, read back */
static void run_job(void *arg)
{
	struct job *j = arg;
	uint64_t sel0 = sel(ev_insns()) | (j->pmi ? EVNTSEL_INT : 0);

	pmu_reset_all();
	wrmsr(pmu_ctr_msr(0), j->preset);
	j->t0 = rdtsc();
	if (pmu.global_ctrl) {
		uint64_t enable = 3;
		wrmsr(pmu_sel_msr(0), sel0);
		wrmsr(pmu_sel_msr(1), sel(ev_branches()));
		if (has_fixed0()) {
			wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED_OS);
			enable |= 1ull << 32;
		}
		measure(pmu.global_ctrl, enable, j->n);
		j->t1 = rdtsc();
		j->branches = rdmsr(pmu_ctr_msr(1));
		j->fixed0 = has_fixed0() ? rdmsr(MSR_CORE_PERF_FIXED_CTR0) : 0;
	} else {
		measure(pmu_sel_msr(0), sel0, j->n);
		j->t1 = rdtsc();
		wrmsr(pmu_sel_msr(1), 0);
		wrmsr(pmu_ctr_msr(1), 0);
		measure(pmu_sel_msr(1), sel(ev_branches()), j->n);
		j->branches = rdmsr(pmu_ctr_msr(1));
	}
	j->insns = rdmsr(pmu_ctr_msr(0));
	j->rdpmc0 = rdpmc(0);
	j->status = pmu.global_status ? rdmsr(pmu.global_status) : 0;
	irq_window(); /* a pending PMI is taken here */
	j->done = true;
}

static uint64_t ap_n(int cpu)
{
	return base_n - 50000 + 1000 * (uint64_t)cpu;
}

/* run a job on every CPU at once: APs first (asynchronously), then the BSP's own */
static bool run_all(uint64_t (*preset)(int cpu, uint64_t c), bool pmi)
{
	bool ok = true;

	memset(jobs, 0, sizeof(jobs));
	for (int i = 0; i < ncpus; i++) {
		jobs[i].n = i ? ap_n(i) : base_n;
		jobs[i].preset = preset ? preset(i, insns_of(jobs[i].n)) : 0;
		jobs[i].pmi = pmi;
		pmi_count[i] = 0;
		pmi_status[i] = 0;
	}
	for (int i = 1; i < ncpus; i++)
		ok &= smp_call_async(i, run_job, &jobs[i]);
	run_job(&jobs[0]);
	for (int i = 1; i < ncpus; i++)
		ok &= smp_wait(i);
	return ok;
}

static void test_reset_state(void)
{
	for (int i = 1; i < ncpus; i++)
		report(!memcmp(&reset_state[i], &reset_state[0], sizeof(reset_state[0])),
		       "CPU %d's PMU starts like the BSP's: GLOBAL_CTRL 0x%lx (BSP 0x%lx), select "
		       "0x%lx, counter 0x%lx",
		       i, reset_state[i].global_ctrl, reset_state[0].global_ctrl,
		       reset_state[i].sel0, reset_state[i].ctr0);
}

static void test_exact(void)
{
	bool ok = run_all(NULL, false);

	report(ok, "every CPU ran its loop");
	for (int i = 0; i < ncpus; i++) {
		struct job *j = &jobs[i];
		uint64_t c = insns_of(j->n);
		report(j->insns == c && j->branches == j->n,
		       "CPU %d: N %lu: instructions %lu == 9N+6 = %lu, branches %lu == N", i, j->n,
		       j->insns, c, j->branches);
		if (has_fixed0())
			report(j->fixed0 == c, "CPU %d: fixed counter 0 %lu == %lu", i, j->fixed0, c);
		report(j->rdpmc0 == j->insns, "CPU %d: RDPMC 0 reads its own counter (0x%lx)", i,
		       j->rdpmc0);
	}
	for (int i = 1; i < ncpus; i++) {
		uint64_t start = jobs[i].t0 > jobs[0].t0 ? jobs[i].t0 : jobs[0].t0;
		uint64_t end = jobs[i].t1 < jobs[0].t1 ? jobs[i].t1 : jobs[0].t1;
		report(start < end, "CPU %d's run [%lu, %lu] overlaps the BSP's [%lu, %lu]", i,
		       jobs[i].t0, jobs[i].t1, jobs[0].t0, jobs[0].t1);
	}
	for (int i = 0; i < ncpus; i++)
		report_info("CPU %d: %lu TSC ticks for %lu own instructions", i,
			    jobs[i].t1 - jobs[i].t0, insns_of(jobs[i].n));
}

/* ---- a counter across HLT while another CPU works ------------------------------------------- */

static volatile bool sleeper_ready;
static volatile uint64_t sleeper_count;

static void sleep_counting(void *arg)
{
	pmu_reset_all();
	wrmsr(pmu_sel_msr(0), sel(ev_insns()));
	sleeper_ready = true;
	if (pmu.global_ctrl)
		wrmsr(pmu.global_ctrl, 1);
	asm volatile("sti; hlt; cli" ::: "memory");
	if (pmu.global_ctrl)
		wrmsr(pmu.global_ctrl, 0);
	else
		wrmsr(pmu_sel_msr(0), 0);
	sleeper_count = rdmsr(pmu_ctr_msr(0));
}

static volatile bool worker_done;

static void work_then_wake_bsp(void *arg)
{
	struct job *j = arg;
	run_job(j);
	smp_send_ipi(APIC_DM_FIXED | V_WAKE, smp_cpus[0].apic_id);
}

static void test_isolation_hlt(void)
{
	int ap = ncpus - 1;
	struct job j = { .n = base_n };

	sleeper_ready = false;
	sleeper_count = ~0ull;
	bool ok = smp_call_async(ap, sleep_counting, NULL) && WAIT_UNTIL(sleeper_ready, SMP_TIMEOUT);
	tsc_delay(10000);
	run_job(&j);
	smp_send_ipi(APIC_DM_FIXED | V_WAKE, smp_cpus[ap].apic_id);
	ok &= smp_wait(ap);
	report(ok && j.insns == insns_of(j.n) && sleeper_count > 0 && sleeper_count < 1000,
	       "CPU %d's counter across sti; hlt while the BSP retires %lu: %lu (its own only)", ap,
	       j.insns, sleeper_count);

	/* the other way round: the BSP sleeps with a counter enabled, the AP works and wakes it */
	memset(&jobs[ap], 0, sizeof(jobs[ap]));
	jobs[ap].n = ap_n(ap);
	irq_count[0][V_WAKE] = irq_count[0][V_TIMER] = 0;
	apic_write(APIC_TDCR, 0xb);
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | V_TIMER);
	apic_write(APIC_TMICT, 200000000); /* safety net: 0.2 s */
	sleeper_ready = false;
	ok = smp_call_async(ap, work_then_wake_bsp, &jobs[ap]);
	if (ok)
		sleep_counting(NULL);
	apic_write(APIC_TMICT, 0);
	apic_write(APIC_LVTT, APIC_LVT_MASKED);
	ok &= smp_wait(ap);
	irq_window();
	report(ok && irq_count[0][V_WAKE] == 1 && irq_count[0][V_TIMER] == 0 &&
		       jobs[ap].insns == insns_of(jobs[ap].n) && sleeper_count > 0 &&
		       sleeper_count < 1000,
	       "BSP's counter across sti; hlt while CPU %d retires %lu: %lu (woken by its IPI: %d)",
	       ap, jobs[ap].insns, sleeper_count, irq_count[0][V_WAKE]);
}

/* ---- overflow PMIs ------------------------------------------------------------------------ */

static uint64_t half_way(uint64_t c) { return (0 - c / 2) & pmu_gp_mask(); }
static uint64_t preset_all(int cpu, uint64_t c) { return half_way(c); }
static uint64_t preset_bsp(int cpu, uint64_t c) { return cpu == 0 ? half_way(c) : 0; }
static uint64_t preset_last(int cpu, uint64_t c) { return cpu == ncpus - 1 ? half_way(c) : 0; }

static void test_pmi(const char *what, uint64_t (*preset)(int, uint64_t), uint32_t want)
{
	bool ok = run_all(preset, true);
	irq_window();
	for (int i = 0; i < ncpus; i++) {
		struct job *j = &jobs[i];
		uint64_t c = insns_of(j->n);
		bool overflows = want & (1u << i);
		uint64_t end = overflows ? c - c / 2 : c;
		/* GLOBAL_STATUS: read in the handler (overflow) or after the run (none) */
		uint64_t st = overflows ? pmi_status[i] : j->status;
		bool st_ok = !pmu.global_status || st == (overflows ? 1u : 0u);
		report(ok && j->insns == end && pmi_count[i] == (overflows ? 1 : 0) && st_ok,
		       "%s: CPU %d counter 0x%lx (want 0x%lx), %d PMI(s) (want %d), GLOBAL_STATUS "
		       "0x%lx",
		       what, i, j->insns, end, pmi_count[i], overflows ? 1 : 0, st);
	}
}

/* ---- one CPU's global/counter MSR writes do not reach another's --------------------------- */

static volatile bool stop_toggle, toggling;
static volatile uint64_t toggles;

static void toggle_fn(void *arg)
{
	toggling = true;
	while (!stop_toggle) {
		if (pmu.global_ctrl) {
			wrmsr(pmu.global_ctrl, 0);
			wrmsr(pmu.global_ctrl, pmu_all_counters_mask());
		} else {
			wrmsr(pmu_sel_msr(0), 0);
			wrmsr(pmu_sel_msr(0), sel(ev_insns()));
		}
		wrmsr(pmu_ctr_msr(0), 0);
		toggles++;
	}
	if (pmu.global_ctrl)
		wrmsr(pmu.global_ctrl, 0);
	else
		wrmsr(pmu_sel_msr(0), 0);
}

static volatile uint64_t ap_read_ctrl, ap_read_status;

static void read_global_fn(void *arg)
{
	ap_read_ctrl = pmu.global_ctrl ? rdmsr(pmu.global_ctrl) : rdmsr(pmu_sel_msr(0));
	ap_read_status = pmu.global_status ? rdmsr(pmu.global_status) : 0;
}

static void clear_status_fn(void *arg)
{
	wrmsr(pmu.global_clear, pmu_all_counters_mask());
}

static void test_global_isolation(void)
{
	int ap = ncpus - 1;
	struct job j = { .n = base_n };

	stop_toggle = toggling = false;
	toggles = 0;
	bool ok = smp_call_async(ap, toggle_fn, NULL) && WAIT_UNTIL(toggling, SMP_TIMEOUT);
	run_job(&j);
	uint64_t seen = toggles;
	stop_toggle = true;
	ok &= smp_wait(ap);
	report(ok && j.insns == insns_of(j.n) && j.branches == j.n && seen > 0,
	       "BSP counts exactly (%lu, %lu) while CPU %d toggles its own %s and zeroes its "
	       "counter 0 (%lu times meanwhile)",
	       j.insns, j.branches, ap, pmu.global_ctrl ? "GLOBAL_CTRL" : "event select", seen);

	uint32_t ctrl_msr = pmu.global_ctrl ? pmu.global_ctrl : pmu_sel_msr(0);
	uint64_t mine = pmu.global_ctrl ? 1 : sel(ev_insns()) & ~EVNTSEL_EN;
	wrmsr(ctrl_msr, mine);
	ok = smp_call(ap, read_global_fn, NULL);
	report(ok && ap_read_ctrl == 0 && rdmsr(ctrl_msr) == mine,
	       "BSP's MSR 0x%x = 0x%lx, CPU %d reads its own 0x%lx", ctrl_msr, mine, ap,
	       ap_read_ctrl);
	wrmsr(ctrl_msr, 0);

	if (!pmu.global_status) {
		report_skip("GLOBAL_STATUS per CPU: no global status MSRs");
		return;
	}
	/* an overflow on the BSP without INT: its status bit stays set */
	pmu_reset_all();
	wrmsr(pmu_ctr_msr(0), half_way(insns_of(1000)));
	wrmsr(pmu_sel_msr(0), sel(ev_insns()));
	measure(pmu.global_ctrl, 1, 1000);
	uint64_t st = rdmsr(pmu.global_status);
	ok = smp_call(ap, read_global_fn, NULL);
	report(st == 1 && ok && ap_read_status == 0,
	       "BSP GLOBAL_STATUS 0x%lx after its overflow, CPU %d's 0x%lx", st, ap,
	       ap_read_status);
	ok = smp_call(ap, clear_status_fn, NULL);
	st = rdmsr(pmu.global_status);
	report(ok && st == 1, "CPU %d's status clear leaves the BSP's GLOBAL_STATUS 0x%lx", ap, st);
	pmu_reset_all();
}

int main(struct multiboot_info *mbi)
{
	const char *cmdline = mbi_cmdline(mbi);
	bool poll = cmdline_u64(cmdline, "poll", 0);

	base_n = cmdline_u64(cmdline, "n", 400000);
	if (base_n < 60000)
		base_n = 60000;
	printf("smp_pmu test\n");
	pmu_init();
	read_reset_state();
	pmu_print();
	if (!pmu.version || pmu.nr_gp < 2) {
		report_skip("no PMU with two GP counters");
		return report_summary();
	}
	handle_exception(V_PMI, pmi_handler);
	handle_exception(V_WAKE, irq_handler);
	handle_exception(V_TIMER, irq_handler);
	ncpus = smp_init(!poll);
	apic_write(APIC_LVTPC, V_PMI);
	int online = 1 + smp_start_aps();
	report(online == ncpus, "%d of %d CPUs online", online, ncpus);
	ncpus = online;
	report_info("%d CPUs, BSP N = %lu, CPU k N = %lu + 1000 k", ncpus, base_n, base_n - 50000);

	test_reset_state();
	test_exact();
	uint32_t all = (1u << ncpus) - 1;
	test_pmi("every CPU overflows", preset_all, all);
	test_pmi("only the BSP overflows", preset_bsp, 1);
	if (ncpus > 1) {
		test_pmi("only the last CPU overflows", preset_last, 1u << (ncpus - 1));
		test_isolation_hlt();
		test_global_isolation();
	} else {
		report_skip("cross-CPU isolation: one CPU");
	}
	return report_summary();
}
