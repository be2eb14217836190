/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SMP bring-up (lib/smp.c, lib/smp_trampoline.S) as an OS does it.
 *
 * BSP: the MADT (RSDP scanned in 0xE0000-0xFFFFF, checksums) lists N enabled local APICs with
 * distinct IDs 0..N-1, N == fw_cfg NB_CPUS; the BSP's IA32_APIC_BASE.BSP is set and its LAPIC
 * ID == CPUID.1:EBX[31:24] (== CPUID.0xB:EDX) == 0.
 *
 * Each AP in turn gets INIT (assert + de-assert), 10 ms, SIPI vector 8, 200 us, SIPI (the MP
 * specification's sequence; the second SIPI reaches a CPU that already started and must be
 * ignored).  The AP records what it saw before changing anything, and the BSP checks it: real
 * mode at CS 0x800 (the SIPI vector), EFLAGS 0x2, CR0 0x60000010, EDX = the CPUID signature; its
 * CPUID APIC ID == LAPIC ID == the MADT's; IA32_APIC_BASE with BSP clear, EN set, base
 * 0xFEE00000; its LAPIC in the reset state (SPIV 0xFF, TPR 0, LVTs masked, DFR flat, LDR 0,
 * nothing in IRR/ISR); its first RDTSC between the BSP's readings before the INIT and after the
 * AP came online (one machine clock); it started exactly once.
 *
 * Then: a SIPI to a running AP (busy, and idle in HLT) does nothing; INIT stops a running AP
 * (its heartbeat freezes), which stays in wait-for-SIPI until a SIPI with another vector (9)
 * restarts it at CS 0x900 with a reset LAPIC; INIT and SIPI sent with the all-but-self shorthand
 * restart every AP at once (vector 0xA) and leave the BSP alone; INIT + SIPI to an APIC ID no CPU
 * has change nothing.  With one CPU the AP checks are skipped.
 *
 * Command line: poll=1 makes idle APs poll their mailbox instead of sleeping in HLT.
 */
#include "apic.h"
#include "desc.h"
#include "fwcfg.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"
#include "smp.h"

#define SETTLE 2000000ull /* TSC ticks to let a wrong restart or a wrong delivery show */
#define RESTART_VECTOR 9
#define BCAST_VECTOR 0xa
#define ABSENT_APIC_ID 0x7e
#define INIT_CR0 0x60000010u
#define LVT_RESET APIC_LVT_MASKED

static uint32_t signature;
static uint64_t t_before[SMP_MAX_CPUS], t_after[SMP_MAX_CPUS];

static void test_madt(void)
{
	uint16_t nb_cpus = fwcfg_get_u16(FW_CFG_NB_CPUS);
	int n = smp_madt.nr_enabled;
	bool unique = true, dense = true;

	if (!report(smp_madt_status == 0, "RSDP and MADT found, checksums valid (status %d)",
		    smp_madt_status))
		return;
	report(n == nb_cpus, "MADT: %d enabled local APICs == fw_cfg NB_CPUS %u", n, nb_cpus);
	report(smp_madt.nr_disabled == 0 && smp_madt.bad_entries == 0,
	       "MADT: no disabled processors (%d), well-formed entries (%d bad)",
	       smp_madt.nr_disabled, smp_madt.bad_entries);
	report(smp_madt.lapic_address == APIC_DEFAULT_BASE, "MADT local APIC address 0x%x",
	       smp_madt.lapic_address);
	for (int i = 0; i < n && i < MADT_MAX_CPUS; i++) {
		bool found = false;
		for (int j = 0; j < i; j++)
			if (smp_madt.apic_ids[j] == smp_madt.apic_ids[i])
				unique = false;
		for (int j = 0; j < n && j < MADT_MAX_CPUS; j++)
			found |= smp_madt.apic_ids[j] == (uint32_t)i;
		dense &= found;
	}
	report(unique, "MADT: APIC IDs are distinct");
	report(dense, "MADT: APIC IDs are 0..%d", n - 1);
	if (n > SMP_MAX_CPUS)
		report_info("only the first %d CPUs are used", SMP_MAX_CPUS);
}

static void test_bsp(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);
	uint32_t cpuid_id = cpuid(1).b >> 24, lapic_id = smp_lapic_id();
	bool listed = false;

	report((base & APIC_BASE_BSP) && (base & APIC_BASE_EN),
	       "BSP: IA32_APIC_BASE 0x%lx has BSP and EN", base);
	report(lapic_id == 0 && cpuid_id == 0, "BSP: LAPIC ID %u, CPUID.1 APIC ID %u, both 0",
	       lapic_id, cpuid_id);
	if (cpuid(0).a >= 0xb)
		report(cpuid_indexed(0xb, 0).d == lapic_id, "BSP: CPUID.0xB x2APIC ID %u",
		       cpuid_indexed(0xb, 0).d);
	for (int i = 0; i < smp_madt.nr_enabled && i < MADT_MAX_CPUS; i++)
		listed |= smp_madt.apic_ids[i] == lapic_id;
	report(listed, "BSP: its APIC ID is in the MADT");
	report_info("CPUID.1: signature 0x%x, EBX 0x%x, HTT %u", cpuid(1).a, cpuid(1).b,
		    (cpuid(1).d >> 28) & 1);
}

/* the AP checks of one start: what the AP recorded and the BSP's TSC window around it */
static void check_boot(int i, unsigned vector, int starts, const char *when)
{
	struct smp_cpu *c = &smp_cpus[i];
	struct smp_boot_record *b = &c->boot;
	uint64_t base = b->apic_base;

	report(c->starts == starts, "CPU %d %s: started %d time(s), expected %d", i, when,
	       c->starts, starts);
	report(b->cs == (vector << 8) && b->flags == 0x0002 && b->cr0 == INIT_CR0 &&
		       b->edx == signature,
	       "CPU %d %s: real mode at CS 0x%x (want 0x%x), EFLAGS 0x%x, CR0 0x%x, EDX 0x%x",
	       i, when, b->cs, vector << 8, b->flags, b->cr0, b->edx);
	report(b->cpuid_apic_id == c->apic_id && b->lapic_id == c->apic_id &&
		       (b->x2apic_id == ~0u || b->x2apic_id == c->apic_id),
	       "CPU %d %s: CPUID APIC ID %u, LAPIC ID %u, x2APIC ID %d, MADT %u", i, when,
	       b->cpuid_apic_id, b->lapic_id, (int)b->x2apic_id, c->apic_id);
	report(!(base & APIC_BASE_BSP) && (base & APIC_BASE_EN) && !(base & APIC_BASE_EXTD) &&
		       (base & ~0xfffull) == APIC_DEFAULT_BASE,
	       "CPU %d %s: IA32_APIC_BASE 0x%lx (BSP clear, EN set, xAPIC)", i, when, base);
	report(b->spiv == 0xff && b->tpr == 0 && b->lvtt == LVT_RESET && b->lvtpc == LVT_RESET &&
		       b->lvt0 == LVT_RESET && b->lvt1 == LVT_RESET && b->lvterr == LVT_RESET &&
		       b->dfr == 0xffffffffu && b->ldr == 0 && b->irr_isr == 0,
	       "CPU %d %s: LAPIC in reset state (SPIV 0x%x TPR 0x%x LVTT 0x%x LVTPC 0x%x LINT0 0x%x "
	       "LINT1 0x%x LVTERR 0x%x DFR 0x%x LDR 0x%x IRR|ISR 0x%x)",
	       i, when, b->spiv, b->tpr, b->lvtt, b->lvtpc, b->lvt0, b->lvt1, b->lvterr, b->dfr,
	       b->ldr, b->irr_isr);
	report(b->tsc > t_before[i] && b->tsc < t_after[i],
	       "CPU %d %s: first TSC %lu within the BSP's %lu..%lu", i, when, b->tsc, t_before[i],
	       t_after[i]);
}

static void test_start_each(void)
{
	for (int i = 1; i < smp_nr_cpus; i++) {
		t_before[i] = rdtsc();
		bool ok = smp_start_ap(i, SMP_TRAMPOLINE_VECTOR);
		t_after[i] = rdtsc();
		report(ok, "CPU %d (APIC ID %u) online after INIT, SIPI, SIPI (%lu ticks)", i,
		       smp_cpus[i].apic_id, t_after[i] - t_before[i]);
	}
	tsc_delay(SETTLE);
	for (int i = 1; i < smp_nr_cpus; i++)
		if (smp_cpus[i].online)
			check_boot(i, SMP_TRAMPOLINE_VECTOR, 1, "first start");
}

static volatile bool spin_stop;

/* on an AP: count in the heartbeat until spin_stop, with IF=0 */
static void spin_fn(void *arg)
{
	struct smp_cpu *c = this_cpu();
	while (!spin_stop)
		c->heartbeat++;
}

static void noop_fn(void *arg)
{
}

static void set_tpr_fn(void *arg)
{
	apic_write(APIC_TPR, (uint32_t)(uintptr_t)arg);
}

static bool heartbeat_moves(int cpu)
{
	uint64_t hb = smp_cpus[cpu].heartbeat;
	return WAIT_UNTIL(smp_cpus[cpu].heartbeat != hb, SMP_TIMEOUT);
}

static void test_sipi_to_running(void)
{
	struct smp_cpu *c = &smp_cpus[1];
	int starts = c->starts;

	/* busy with IF=0 */
	spin_stop = false;
	report(smp_call_async(1, spin_fn, NULL) && heartbeat_moves(1), "CPU 1 runs a busy loop");
	smp_send_sipi(c->apic_id, RESTART_VECTOR);
	tsc_delay(SETTLE);
	report(c->starts == starts && heartbeat_moves(1),
	       "SIPI to a running CPU is ignored (starts %d, heartbeat moving)", c->starts);
	spin_stop = true;
	report(smp_wait(1), "CPU 1 finished its busy loop");

	/* idle (HLT unless poll=1) */
	smp_send_sipi(c->apic_id, RESTART_VECTOR);
	tsc_delay(SETTLE);
	report(c->starts == starts && smp_call(1, noop_fn, NULL),
	       "SIPI to an idle CPU is ignored (starts %d, answers a call)", c->starts);
}

static void test_reinit(void)
{
	struct smp_cpu *c = &smp_cpus[1];
	int starts = c->starts;

	smp_install_trampoline(RESTART_VECTOR << 12);
	smp_call(1, set_tpr_fn, (void *)0x20ul);
	spin_stop = false;
	report(smp_call_async(1, spin_fn, NULL) && heartbeat_moves(1),
	       "CPU 1 runs a busy loop again (TPR 0x20)");
	smp_send_init(c->apic_id);
	smp_send_init_deassert(c->apic_id);
	tsc_delay(SMP_INIT_DELAY);
	uint64_t hb = c->heartbeat;
	tsc_delay(SETTLE);
	report(c->heartbeat == hb && c->starts == starts,
	       "INIT stops a running CPU: heartbeat frozen at %lu (now %lu), starts %d", hb,
	       c->heartbeat, c->starts);
	/* a fixed IPI does not wake a CPU waiting for SIPI */
	smp_send_ipi(APIC_DM_FIXED | 0x40, c->apic_id);
	tsc_delay(SETTLE);
	report(c->heartbeat == hb && c->starts == starts,
	       "a fixed IPI does not wake a CPU waiting for SIPI (starts %d)", c->starts);
	spin_stop = true;

	t_before[1] = rdtsc();
	__atomic_store_n(&c->online, 0, __ATOMIC_SEQ_CST);
	c->req = c->ack = 0;
	c->dead = false;
	smp_send_sipi(c->apic_id, RESTART_VECTOR);
	bool ok = WAIT_UNTIL(c->online, SMP_TIMEOUT);
	t_after[1] = rdtsc();
	report(ok, "SIPI vector 0x%x restarts the CPU after INIT", RESTART_VECTOR);
	if (!ok) {
		c->dead = true;
		return;
	}
	tsc_delay(SETTLE);
	check_boot(1, RESTART_VECTOR, starts + 1, "after INIT");
	report(smp_call(1, noop_fn, NULL), "restarted CPU 1 answers a call");
}

static void test_broadcast(void)
{
	int starts[SMP_MAX_CPUS];
	uint32_t spiv = apic_read(APIC_SPIV);
	bool all = true;

	apic_write(APIC_TPR, 0x10);
	smp_install_trampoline(BCAST_VECTOR << 12);
	for (int i = 1; i < smp_nr_cpus; i++) {
		starts[i] = smp_cpus[i].starts;
		__atomic_store_n(&smp_cpus[i].online, 0, __ATOMIC_SEQ_CST);
	}
	t_before[0] = rdtsc();
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_INT_LEVELTRIG | APIC_INT_ASSERT | APIC_DM_INIT, 0);
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_INT_LEVELTRIG | APIC_DM_INIT, 0);
	tsc_delay(SMP_INIT_DELAY);
	for (int i = 1; i < smp_nr_cpus; i++) {
		smp_cpus[i].req = smp_cpus[i].ack = 0;
		smp_cpus[i].dead = false;
	}
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_STARTUP | BCAST_VECTOR, 0);
	tsc_delay(SMP_SIPI_DELAY);
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_STARTUP | BCAST_VECTOR, 0);
	for (int i = 1; i < smp_nr_cpus; i++)
		all &= WAIT_UNTIL(smp_cpus[i].online, SMP_TIMEOUT);
	t_after[0] = rdtsc();
	report(all, "all-but-self INIT + SIPI vector 0x%x: every AP online again", BCAST_VECTOR);
	report(apic_read(APIC_SPIV) == spiv && apic_read(APIC_TPR) == 0x10,
	       "the BSP's LAPIC is untouched (SPIV 0x%x, TPR 0x%x)", apic_read(APIC_SPIV),
	       apic_read(APIC_TPR));
	apic_write(APIC_TPR, 0);
	tsc_delay(SETTLE);
	for (int i = 1; i < smp_nr_cpus; i++) {
		t_before[i] = t_before[0];
		t_after[i] = t_after[0];
		if (smp_cpus[i].online)
			check_boot(i, BCAST_VECTOR, starts[i] + 1, "after broadcast");
		else
			smp_cpus[i].dead = true;
	}
	bool calls = smp_call_aps(noop_fn, NULL);
	report(calls, "every AP answers a call after the broadcast restart");
}

static void test_absent(void)
{
	int starts[SMP_MAX_CPUS];
	bool same = true;

	for (int i = 1; i < smp_nr_cpus; i++)
		starts[i] = smp_cpus[i].starts;
	smp_send_init(ABSENT_APIC_ID);
	smp_send_init_deassert(ABSENT_APIC_ID);
	smp_send_sipi(ABSENT_APIC_ID, SMP_TRAMPOLINE_VECTOR);
	tsc_delay(SETTLE);
	for (int i = 1; i < smp_nr_cpus; i++)
		same &= smp_cpus[i].starts == starts[i];
	report(same && (rdmsr(MSR_IA32_APICBASE) & APIC_BASE_BSP) &&
		       (apic_read(APIC_SPIV) & APIC_SPIV_ENABLE),
	       "INIT + SIPI to absent APIC ID 0x%x change nothing", ABSENT_APIC_ID);
	if (smp_nr_cpus > 1)
		report(smp_call_aps(noop_fn, NULL), "every AP still answers a call");
}

int main(struct multiboot_info *mbi)
{
	bool poll = cmdline_u64(mbi_cmdline(mbi), "poll", 0);

	printf("smp_boot test\n");
	signature = cpuid(1).a;
	smp_init(!poll);
	report_info("%d CPUs, APs idle by %s, vendor %s", smp_nr_cpus, poll ? "polling" : "HLT",
		    cpu_is_amd() ? "AMD" : "Intel");
	test_madt();
	test_bsp();
	if (smp_nr_cpus < 2) {
		report_skip("AP start-up: one CPU");
		test_absent();
		return report_summary();
	}
	test_start_each();
	if (smp_cpus[1].online) {
		test_sipi_to_running();
		test_reinit();
	} else {
		report_skip("SIPI and INIT on a running CPU: CPU 1 did not start");
	}
	test_broadcast();
	test_absent();
	return report_summary();
}
