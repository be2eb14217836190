/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Inter-processor interrupts between the vCPUs' LAPICs (every AP started through lib/smp.c).
 *
 * Every fixed vector 0x20-0xEF has a handler that counts per CPU; NMIs are counted per CPU too.
 * After each group of IPIs the BSP "settles": it opens an interrupt window and runs an empty call
 * on every AP, whose idle loop opens one before looking at its mailbox, so whatever was
 * delivered has been taken; then the counts must match exactly (wrong CPUs, duplicates, losses):
 *
 *  - ping-pong: the BSP sends a fixed IPI to an AP whose handler answers with another vector,
 *    ROUNDS round trips with every AP, counts equal on both sides;
 *  - physical destinations: one vector per destination CPU, from the BSP and from every AP;
 *    xAPIC broadcast 0xFF;
 *  - logical destinations, flat (LDR bit = CPU index) and cluster (cluster index / 4, bit
 *    index % 4) models, several masks each;
 *  - shorthands: self, all including self, all but self, from the BSP and from an AP;
 *  - lowest priority (xAPIC, logical flat): exactly one CPU of the mask takes each IPI (which
 *    one is model specific and only printed); with a one-CPU mask, that CPU;
 *  - NMI IPIs: to each AP, all-but-self, to an AP spinning with IF=0, waking an AP from
 *    `cli; hlt`;
 *  - wake-ups: an AP in `sti; hlt` stays asleep until a fixed IPI arrives, then takes it; the
 *    BSP in `sti; hlt` is woken by an AP's IPI (a LAPIC timer one-shot is the safety net);
 *  - x2APIC (when CPUID has it; every CPU switched): x2APIC ID and the derived LDR, physical
 *    destinations through the 32-bit ICR destination (an ID above 0xFF reaches nobody, not the
 *    CPU with its low byte), broadcast 0xFFFFFFFF, logical cluster destinations, all-but-self,
 *    SELF_IPI MSR, NMI, ping-pong; then back to xAPIC.
 *
 * Command line: rounds=N ping-pong round trips per AP (default 50); poll=1 makes idle APs poll
 * their mailbox instead of sleeping in HLT.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"
#include "smp.h"

#define V_PING 0x30
#define V_PONG 0x31
#define V_SELF 0x32
#define V_ALL_INC 0x33
#define V_ALL_BUT 0x34
#define V_AP_ALL_BUT 0x35
#define V_AP_SELF 0x36
#define V_BCAST 0x37
#define V_WAKE 0x38
#define V_WAKE_BSP 0x39
#define V_LOWEST 0x3a
#define V_PHYS 0x40      /* + destination CPU */
#define V_AP_PHYS 0x50   /* + sending CPU */
#define V_FLAT 0x60      /* + mask number */
#define V_CLUSTER 0x68   /* + mask number */
#define V_X2_PHYS 0x70   /* + destination CPU */
/* not 0x81: USER_RET_VECTOR (desc.h) */
#define V_X2_FAR 0x90
#define V_X2_BCAST 0x91
#define V_X2_LOGICAL 0x92
#define V_X2_ALL_BUT 0x93
#define V_X2_SELF 0x94
#define V_TIMER 0xe0

#define SETTLE 1000000ull

static volatile int count[SMP_MAX_CPUS][256];
static volatile int nmi_count[SMP_MAX_CPUS];
static volatile uint64_t irq_tsc[SMP_MAX_CPUS][256]; /* TSC in the latest handler run */
static int ncpus;
static uint32_t all_mask;

static void irq_handler(struct ex_regs *regs)
{
	int cpu = smp_cpu_index(), v = (int)regs->vector;

	irq_tsc[cpu][v] = rdtsc();
	count[cpu][v]++;
	if (v == V_PING)
		smp_send_ipi(APIC_DM_FIXED | V_PONG, smp_cpus[0].apic_id);
	apic_eoi();
}

static void nmi_handler(struct ex_regs *regs)
{
	nmi_count[smp_cpu_index()]++;
}

static inline void irq_window(void)
{
	asm volatile("sti; nop; cli" ::: "memory");
}

static void noop_fn(void *arg)
{
}

/* everything sent so far has been taken by every CPU */
static bool settle(void)
{
	bool ok = true;

	irq_window();
	tsc_delay(SETTLE);
	for (int i = 1; i < ncpus; i++)
		ok &= smp_call(i, noop_fn, NULL);
	irq_window();
	return ok;
}

static void clear_counts(void)
{
	memset((void *)count, 0, sizeof(count));
	memset((void *)nmi_count, 0, sizeof(nmi_count));
}

static const char *mask_str(char *buf, size_t size, uint32_t mask)
{
	int pos = 0;

	buf[0] = 0;
	for (int i = 0; i < 32 && pos < (int)size - 4; i++)
		if (mask & (1u << i))
			pos += snprintf(buf + pos, size - pos, "%s%d", pos ? "," : "", i);
	if (!pos)
		snprintf(buf, size, "none");
	return buf;
}

/* CPUs that took `vector` exactly once; *extra set if any took it twice or more */
static uint32_t receivers(int vector, bool *extra)
{
	uint32_t m = 0;

	for (int i = 0; i < ncpus; i++) {
		if (count[i][vector] == 1)
			m |= 1u << i;
		else if (count[i][vector] > 1)
			*extra = true;
	}
	return m;
}

static bool expect(int vector, uint32_t want, const char *what)
{
	char got_s[64], want_s[64];
	bool extra = false;
	uint32_t got = receivers(vector, &extra);

	want &= all_mask;
	return report(got == want && !extra, "%s: vector 0x%x taken by CPUs {%s}%s (want {%s})",
		      what, vector, mask_str(got_s, sizeof(got_s), got),
		      extra ? " and more than once" : "", mask_str(want_s, sizeof(want_s), want));
}

static bool expect_nmi(uint32_t want, const char *what)
{
	char got_s[64], want_s[64];
	uint32_t got = 0;
	bool extra = false;

	for (int i = 0; i < ncpus; i++) {
		if (nmi_count[i] == 1)
			got |= 1u << i;
		else if (nmi_count[i] > 1)
			extra = true;
	}
	want &= all_mask;
	return report(got == want && !extra, "%s: NMI taken by CPUs {%s}%s (want {%s})", what,
		      mask_str(got_s, sizeof(got_s), got), extra ? " and more than once" : "",
		      mask_str(want_s, sizeof(want_s), want));
}

/* ---- ping-pong ---------------------------------------------------------------------------- */

static void test_ping_pong(int rounds, const char *mode)
{
	for (int ap = 1; ap < ncpus; ap++) {
		int done = 0;
		clear_counts();
		for (int r = 0; r < rounds; r++) {
			smp_send_ipi(APIC_DM_FIXED | V_PING, smp_cpus[ap].apic_id);
			uint64_t end = rdtsc() + SMP_TIMEOUT;
			while (count[0][V_PONG] != r + 1 && rdtsc() < end) {
				irq_window();
				pause();
			}
			if (count[0][V_PONG] != r + 1)
				break;
			done++;
		}
		settle();
		report(done == rounds && count[ap][V_PING] == rounds && count[0][V_PONG] == rounds,
		       "%s ping-pong with CPU %d: %d/%d round trips, %d pings taken, %d pongs", mode,
		       ap, done, rounds, count[ap][V_PING], count[0][V_PONG]);
	}
}

/* ---- physical destinations ---------------------------------------------------------------- */

static void ap_phys_fn(void *arg)
{
	int me = smp_cpu_index();
	int to = (me + 1) % ncpus;
	smp_send_ipi(APIC_DM_FIXED | (V_AP_PHYS + me), smp_cpus[to].apic_id);
}

static void test_physical(void)
{
	clear_counts();
	for (int i = 0; i < ncpus; i++)
		smp_send_ipi(APIC_DM_FIXED | (V_PHYS + i), smp_cpus[i].apic_id);
	settle();
	for (int i = 0; i < ncpus; i++) {
		char what[48];
		snprintf(what, sizeof(what), "BSP -> physical APIC ID %u", smp_cpus[i].apic_id);
		expect(V_PHYS + i, 1u << i, what);
	}
	if (ncpus > 1) {
		clear_counts();
		smp_call_aps(ap_phys_fn, NULL);
		settle();
		for (int i = 1; i < ncpus; i++) {
			char what[48];
			snprintf(what, sizeof(what), "CPU %d -> physical APIC ID %u", i,
				 smp_cpus[(i + 1) % ncpus].apic_id);
			expect(V_AP_PHYS + i, 1u << ((i + 1) % ncpus), what);
		}
	}
	clear_counts();
	smp_send_ipi(APIC_DM_FIXED | V_BCAST, 0xff);
	settle();
	expect(V_BCAST, all_mask, "BSP -> physical 0xFF (xAPIC broadcast)");
}

/* ---- logical destinations ----------------------------------------------------------------- */

static void set_logical_fn(void *arg)
{
	int me = smp_cpu_index();
	bool cluster = arg != NULL;

	apic_write(APIC_DFR, cluster ? APIC_DFR_CLUSTER : APIC_DFR_FLAT);
	if (cluster)
		apic_write(APIC_LDR, (uint32_t)((me / 4) << 4 | 1u << (me % 4)) << 24);
	else
		apic_write(APIC_LDR, (1u << me) << 24);
}

static void reset_logical_fn(void *arg)
{
	apic_write(APIC_DFR, APIC_DFR_FLAT);
	apic_write(APIC_LDR, 0);
}

/* CPUs whose cluster-model logical ID matches the 8-bit destination */
static uint32_t cluster_cpus(uint32_t dest)
{
	uint32_t m = 0;
	for (int i = 0; i < ncpus; i++)
		if ((uint32_t)(i / 4) == dest >> 4 && (dest & (1u << (i % 4))))
			m |= 1u << i;
	return m;
}

static void test_logical(void)
{
	static const uint32_t flat[] = { 0x02, 0x05, 0xff, 0x80, 0x0c };
	static const uint32_t clus[] = { 0x06, 0x11, 0x0f, 0x1f, 0x09 };
	char what[64];

	if (ncpus > 8) {
		report_skip("logical flat destinations: more than 8 CPUs");
		return;
	}
	set_logical_fn(NULL);
	bool ok = smp_call_aps(set_logical_fn, NULL);
	report(ok && apic_read(APIC_LDR) == 1u << 24 && apic_read(APIC_DFR) == APIC_DFR_FLAT,
	       "flat model: LDR 0x%x DFR 0x%x", apic_read(APIC_LDR), apic_read(APIC_DFR));
	clear_counts();
	for (unsigned k = 0; k < ARRAY_SIZE(flat); k++)
		smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_FIXED | (V_FLAT + k), flat[k]);
	settle();
	for (unsigned k = 0; k < ARRAY_SIZE(flat); k++) {
		snprintf(what, sizeof(what), "logical flat 0x%02x", flat[k]);
		expect(V_FLAT + k, flat[k], what);
	}

	set_logical_fn((void *)1);
	ok = smp_call_aps(set_logical_fn, (void *)1);
	report(ok && apic_read(APIC_DFR) == APIC_DFR_CLUSTER, "cluster model: LDR 0x%x DFR 0x%x",
	       apic_read(APIC_LDR), apic_read(APIC_DFR));
	clear_counts();
	for (unsigned k = 0; k < ARRAY_SIZE(clus); k++)
		smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_FIXED | (V_CLUSTER + k), clus[k]);
	settle();
	for (unsigned k = 0; k < ARRAY_SIZE(clus); k++) {
		snprintf(what, sizeof(what), "logical cluster 0x%02x", clus[k]);
		expect(V_CLUSTER + k, cluster_cpus(clus[k]), what);
	}
	reset_logical_fn(NULL);
	smp_call_aps(reset_logical_fn, NULL);
}

/* ---- shorthands --------------------------------------------------------------------------- */

static void ap_shorthand_fn(void *arg)
{
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_FIXED | V_AP_ALL_BUT, 0);
	smp_send_ipi(APIC_DEST_SELF | APIC_DM_FIXED | V_AP_SELF, 0);
}

static void test_shorthands(void)
{
	clear_counts();
	smp_send_ipi(APIC_DEST_SELF | APIC_DM_FIXED | V_SELF, 0);
	smp_send_ipi(APIC_DEST_ALL_INC | APIC_DM_FIXED | V_ALL_INC, 0);
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_FIXED | V_ALL_BUT, 0);
	settle();
	expect(V_SELF, 1, "BSP self shorthand");
	expect(V_ALL_INC, all_mask, "BSP all-including-self shorthand");
	expect(V_ALL_BUT, all_mask & ~1u, "BSP all-but-self shorthand");
	if (ncpus > 1) {
		clear_counts();
		smp_call(1, ap_shorthand_fn, NULL);
		settle();
		expect(V_AP_ALL_BUT, all_mask & ~2u, "CPU 1 all-but-self shorthand");
		expect(V_AP_SELF, 2, "CPU 1 self shorthand");
	}
}

/* ---- lowest priority ---------------------------------------------------------------------- */

static void set_tpr_fn(void *arg)
{
	apic_write(APIC_TPR, (uint32_t)(uintptr_t)arg);
}

static void test_lowest_priority(void)
{
	char got_s[64];
	bool extra = false;

	if (ncpus > 8) {
		report_skip("lowest priority: more than 8 CPUs");
		return;
	}
	set_logical_fn(NULL);
	smp_call_aps(set_logical_fn, NULL);
	for (int round = 0; round < 4; round++) {
		clear_counts();
		smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_LOWEST | V_LOWEST, all_mask);
		settle();
		extra = false;
		uint32_t got = receivers(V_LOWEST, &extra);
		report(!extra && got && !(got & (got - 1)),
		       "lowest priority to all CPUs, round %d: taken by exactly one, {%s}", round,
		       mask_str(got_s, sizeof(got_s), got));
	}
	if (ncpus < 2)
		goto one_cpu;
	/* every CPU but the last at TPR 0x20: the last one has the lowest priority */
	for (int i = 0; i < ncpus - 1; i++)
		smp_call(i, set_tpr_fn, (void *)0x20ul);
	clear_counts();
	smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_LOWEST | V_LOWEST, all_mask);
	settle();
	extra = false;
	uint32_t got = receivers(V_LOWEST, &extra);
	report(!extra && got && !(got & (got - 1)),
	       "lowest priority with TPR 0x20 on CPUs 0..%d: taken by exactly one, {%s}", ncpus - 2,
	       mask_str(got_s, sizeof(got_s), got));
	report_info("lowest priority: CPU %d has the lowest TPR; the VMM chose {%s}", ncpus - 1,
		    got_s);
	for (int i = 0; i < ncpus - 1; i++)
		smp_call(i, set_tpr_fn, (void *)0ul);
one_cpu:
	clear_counts();
	smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_LOWEST | V_LOWEST, 1u << (ncpus - 1));
	settle();
	expect(V_LOWEST, 1u << (ncpus - 1), "lowest priority to a one-CPU mask");
	reset_logical_fn(NULL);
	smp_call_aps(reset_logical_fn, NULL);
}

/* ---- NMI ---------------------------------------------------------------------------------- */

static volatile bool nmi_spin_seen, nmi_spin_entered;

static void nmi_spin_fn(void *arg)
{
	int me = smp_cpu_index();
	int before = nmi_count[me];
	nmi_spin_entered = true;
	/* IF=0 here: only an NMI gets through */
	nmi_spin_seen = WAIT_UNTIL(nmi_count[me] != before, SMP_TIMEOUT);
}

static volatile bool hlt_entered, hlt_left;
static volatile uint64_t hlt_left_tsc;

static void cli_hlt_fn(void *arg)
{
	hlt_entered = true;
	asm volatile("cli; hlt" ::: "memory");
	hlt_left_tsc = rdtsc();
	hlt_left = true;
}

static void test_nmi(void)
{
	clear_counts();
	for (int i = 1; i < ncpus; i++)
		smp_send_ipi(APIC_DM_NMI, smp_cpus[i].apic_id);
	settle();
	expect_nmi(all_mask & ~1u, "NMI to each AP (physical)");

	clear_counts();
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_NMI, 0);
	settle();
	expect_nmi(all_mask & ~1u, "NMI all-but-self");

	clear_counts();
	smp_send_ipi(APIC_DEST_ALL_INC | APIC_DM_NMI, 0);
	settle();
	expect_nmi(all_mask, "NMI all-including-self");

	if (ncpus < 2)
		return;
	clear_counts();
	nmi_spin_seen = nmi_spin_entered = false;
	bool ok = smp_call_async(1, nmi_spin_fn, NULL) && WAIT_UNTIL(nmi_spin_entered, SMP_TIMEOUT);
	smp_send_ipi(APIC_DM_NMI, smp_cpus[1].apic_id);
	ok &= smp_wait(1);
	report(ok && nmi_spin_seen, "NMI reaches CPU 1 spinning with IF=0");

	hlt_entered = hlt_left = false;
	ok = smp_call_async(1, cli_hlt_fn, NULL) && WAIT_UNTIL(hlt_entered, SMP_TIMEOUT);
	tsc_delay(SETTLE);
	bool asleep = !hlt_left;
	uint64_t sent = rdtsc();
	smp_send_ipi(APIC_DM_NMI, smp_cpus[1].apic_id);
	ok &= smp_wait(1);
	report(ok && asleep && hlt_left && hlt_left_tsc > sent,
	       "NMI wakes CPU 1 from cli; hlt (asleep before: %d, woke after the NMI: %d)", asleep,
	       hlt_left && hlt_left_tsc > sent);
}

/* ---- wake-ups from sti; hlt --------------------------------------------------------------- */

static void sti_hlt_fn(void *arg)
{
	hlt_entered = true;
	asm volatile("sti; hlt; cli" ::: "memory");
	hlt_left_tsc = rdtsc();
	hlt_left = true;
}

static void send_to_bsp_fn(void *arg)
{
	tsc_delay(SETTLE);
	smp_send_ipi(APIC_DM_FIXED | V_WAKE_BSP, smp_cpus[0].apic_id);
}

static void test_wakeup(void)
{
	clear_counts();
	for (int ap = 1; ap < ncpus; ap++) {
		hlt_entered = hlt_left = false;
		bool ok = smp_call_async(ap, sti_hlt_fn, NULL) && WAIT_UNTIL(hlt_entered, SMP_TIMEOUT);
		tsc_delay(SETTLE);
		bool asleep = !hlt_left;
		uint64_t sent = rdtsc();
		smp_send_ipi(APIC_DM_FIXED | V_WAKE, smp_cpus[ap].apic_id);
		ok &= smp_wait(ap);
		report(ok && asleep && hlt_left && count[ap][V_WAKE] == 1 &&
			       irq_tsc[ap][V_WAKE] > sent && hlt_left_tsc > irq_tsc[ap][V_WAKE],
		       "CPU %d sleeps in sti; hlt (%d) until a fixed IPI wakes it (taken %d time(s))",
		       ap, asleep, count[ap][V_WAKE]);
	}
	if (ncpus < 2)
		return;

	/* the BSP in sti; hlt, an AP's IPI wakes it; the LAPIC timer is the safety net */
	clear_counts();
	apic_write(APIC_TDCR, 0xb); /* divide by 1 */
	apic_write(APIC_LVTT, APIC_TIMER_ONESHOT | V_TIMER);
	bool ok = smp_call_async(1, send_to_bsp_fn, NULL);
	apic_write(APIC_TMICT, 100000000); /* 0.1 s */
	if (ok)
		asm volatile("sti; hlt; cli" ::: "memory");
	apic_write(APIC_TMICT, 0);
	apic_write(APIC_LVTT, APIC_LVT_MASKED);
	ok &= smp_wait(1);
	irq_window();
	report(ok && count[0][V_WAKE_BSP] == 1 && count[0][V_TIMER] == 0,
	       "BSP in sti; hlt woken by CPU 1's IPI (IPI %d, timer %d)", count[0][V_WAKE_BSP],
	       count[0][V_TIMER]);
}

/* ---- x2APIC ------------------------------------------------------------------------------- */

static volatile bool x2_ok[SMP_MAX_CPUS];
static volatile uint32_t x2_id[SMP_MAX_CPUS], x2_ldr[SMP_MAX_CPUS];

static void to_x2apic_fn(void *arg)
{
	int me = smp_cpu_index();
	x2_ok[me] = apic_to_x2apic() && apic_is_x2apic();
	if (x2_ok[me]) {
		x2_id[me] = (uint32_t)rdmsr(APIC_MSR(APIC_ID));
		x2_ldr[me] = (uint32_t)rdmsr(APIC_MSR(APIC_LDR));
	}
}

static void to_xapic_fn(void *arg)
{
	apic_to_xapic();
	apic_sw_enable();
}

static void x2_ap_fn(void *arg)
{
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_FIXED | V_X2_ALL_BUT, 0);
	wrmsr(APIC_MSR(APIC_SELF_IPI), V_X2_SELF);
}

static void test_x2apic(int rounds)
{
	bool ok = true;

	if (!cpu_has_x2apic()) {
		report_skip("x2APIC IPIs: x2APIC not advertised");
		return;
	}
	to_x2apic_fn(NULL);
	ok &= smp_call_aps(to_x2apic_fn, NULL);
	for (int i = 0; i < ncpus; i++) {
		uint32_t id = smp_cpus[i].apic_id;
		uint32_t ldr = (id >> 4) << 16 | 1u << (id & 15);
		ok &= x2_ok[i];
		report(x2_ok[i] && x2_id[i] == id && x2_ldr[i] == ldr,
		       "CPU %d in x2APIC mode: ID %u (want %u), LDR 0x%x (want 0x%x)", i, x2_id[i],
		       id, x2_ldr[i], ldr);
	}
	if (!ok)
		goto back;

	clear_counts();
	for (int i = 0; i < ncpus; i++)
		smp_send_ipi(APIC_DM_FIXED | (V_X2_PHYS + i), smp_cpus[i].apic_id);
	/* 32-bit destination: 0x100 + ID is nobody's ID */
	smp_send_ipi(APIC_DM_FIXED | V_X2_FAR, 0x100 | smp_cpus[ncpus - 1].apic_id);
	smp_send_ipi(APIC_DM_FIXED | V_X2_BCAST, 0xffffffffu);
	/* logical: cluster 0, the bits of IDs 1 and 2 */
	smp_send_ipi(APIC_DEST_LOGICAL | APIC_DM_FIXED | V_X2_LOGICAL, 0x6);
	settle();
	for (int i = 0; i < ncpus; i++) {
		char what[64];
		snprintf(what, sizeof(what), "x2APIC physical destination %u", smp_cpus[i].apic_id);
		expect(V_X2_PHYS + i, 1u << i, what);
	}
	expect(V_X2_FAR, 0, "x2APIC physical destination 0x100 + ID (not truncated to 8 bits)");
	expect(V_X2_BCAST, all_mask, "x2APIC broadcast 0xFFFFFFFF");
	expect(V_X2_LOGICAL, 0x6, "x2APIC logical cluster 0 bits 1,2");

	clear_counts();
	smp_send_ipi(APIC_DEST_ALL_BUT | APIC_DM_FIXED | V_ALL_BUT, 0);
	wrmsr(APIC_MSR(APIC_SELF_IPI), V_SELF);
	if (ncpus > 1)
		smp_call(ncpus - 1, x2_ap_fn, NULL);
	settle();
	expect(V_ALL_BUT, all_mask & ~1u, "x2APIC BSP all-but-self");
	expect(V_SELF, 1, "x2APIC BSP SELF_IPI MSR");
	if (ncpus > 1) {
		expect(V_X2_ALL_BUT, all_mask & ~(1u << (ncpus - 1)), "x2APIC last CPU all-but-self");
		expect(V_X2_SELF, 1u << (ncpus - 1), "x2APIC last CPU SELF_IPI MSR");
	}

	clear_counts();
	for (int i = 1; i < ncpus; i++)
		smp_send_ipi(APIC_DM_NMI, smp_cpus[i].apic_id);
	settle();
	expect_nmi(all_mask & ~1u, "x2APIC NMI to each AP");

	test_ping_pong(rounds < 10 ? rounds : 10, "x2APIC");
back:
	smp_call_aps(to_xapic_fn, NULL);
	to_xapic_fn(NULL);
	report(!apic_is_x2apic() && (apic_read(APIC_SPIV) & APIC_SPIV_ENABLE),
	       "back to xAPIC mode");
}

int main(struct multiboot_info *mbi)
{
	const char *cmdline = mbi_cmdline(mbi);
	int rounds = (int)cmdline_u64(cmdline, "rounds", 50);
	bool poll = cmdline_u64(cmdline, "poll", 0);

	printf("smp_ipi test\n");
	for (int v = 0x20; v < 0xf0; v++)
		if (v != USER_RET_VECTOR)
			handle_exception(v, irq_handler);
	handle_exception(NMI_VECTOR, nmi_handler);
	ncpus = smp_init(!poll);
	int online = 1 + smp_start_aps();
	report(online == ncpus, "%d of %d CPUs online", online, ncpus);
	if (online != ncpus)
		ncpus = online; /* the kernel cannot tell which; use the first ones */
	all_mask = ncpus >= 32 ? ~0u : (1u << ncpus) - 1;
	report_info("%d CPUs, vendor %s, APs idle by %s", ncpus, cpu_is_amd() ? "AMD" : "Intel",
		    poll ? "polling" : "HLT");

	test_ping_pong(rounds, "xAPIC");
	test_physical();
	test_logical();
	test_shorthands();
	test_lowest_priority();
	test_nmi();
	test_wakeup();
	test_x2apic(rounds);
	return report_summary();
}
