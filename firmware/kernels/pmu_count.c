/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Exact event counts for the reference loop (shared/notes/pmu-semantics.md).
 *
 * The measured sequence, fixed by inline asm (measure() below):
 *
 *	wrmsr                    1  enables the counters: counted
 *	mov  %ecx, %edi          2  keep the MSR index
 *	mov  %rbx, %rcx          3  N
 *	mov  %rsi, %r10          4  buffer start
 *	clflush (%rsi)           5
 *	mfence                   6
 *   1: mov  (%rsi), %r8         \
 *	add  $64, %rsi            | 10 instructions per iteration,
 *	nop x 7                   | N iterations: 10*N instructions,
 *	loop 1b                  /  N branches (taken N-1 times, then not)
 *	mfence                   7
 *	sub  %r10, %rsi          8  bytes walked
 *	shr  $6, %rsi            9  -> iterations (checked == N)
 *	call 2f                 10  branch
 *   2: pop  %rax               11
 *	add  $(3f-2b), %rax     12
 *	jmp  *%rax              13  branch
 *   3: mov  %edi, %ecx         14
 *	xor  %eax, %eax         15
 *	xor  %edx, %edx         16
 *	lfence                  17
 *	wrmsr                       disables the counters: not counted
 *
 * so exactly 10*N + 17 instructions and N + 2 branches (loop x N, call,
 * jmp).  The enabling WRMSR is GLOBAL_CTRL (Intel v2, AMD PerfMonV2) or the
 * event select of the single counter (Intel v1, AMD without PerfMonV2,
 * where the event select is written with EN as the enabling WRMSR and with
 * 0 as the disabling one).  Counters count at CPL0 (OS bit).
 *
 * Checks: instructions and branches exact on every GP counter and fixed
 * counter 0; ranges for core cycles [N, 50N], reference cycles [N, 30N],
 * LLC references [1, 2.5N], LLC misses [1, N] (the buffer is CLFLUSHed first),
 * branch misses [1, 0.1N] after an IBPB ([0, 0.1N] without IBPB); all GP + fixed counters at once; overflow from a preset of
 * 1 - C ends at exactly 1 with the GLOBAL_STATUS bit set; CMASK=2 on
 * instructions counts 0; writing a running counter; overflow with INT/PMI on
 * every counter -> one PMI through LVTPC, held while IF=0 and taken at the
 * next STI, GLOBAL_STATUS cleared through GLOBAL_OVF_CTRL.  AMD: ranges only.
 *
 * Command line: n=ITERATIONS (default 1000000).  The loop reads one cache
 * line per iteration from a buffer at 16 MiB (64*N bytes, must fit in RAM).
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define EXTRA_INSNS 17
#define EXTRA_BRANCHES 2
#define BUF_BASE 0x1000000ul
#define PMI_VECTOR 0x70

/* Intel architectural events (event | umask << 8) */
#define EV_CYCLES 0x003c
#define EV_INSNS 0x00c0
#define EV_REF 0x013c
#define EV_LLC_REF 0x4f2e
#define EV_LLC_MISS 0x412e
#define EV_BRANCHES 0x00c4
#define EV_BR_MISS 0x00c5
/* AMD */
#define AMD_CYCLES 0x0076
#define AMD_INSNS 0x00c0
#define AMD_BRANCHES 0x00c2
#define AMD_BR_MISS 0x00c3
#define AMD_CACHE_REF 0x077d
#define AMD_CACHE_MISS 0x077e

static uint64_t N;
static uint64_t C_INSNS, C_BRANCHES;
static uint64_t walked;

/* run the reference sequence; `msr`/`enable` is the enabling WRMSR */
static void measure(uint32_t msr, uint64_t enable)
{
	uint64_t rsi = BUF_BASE;
	uint32_t lo = (uint32_t)enable, hi = (uint32_t)(enable >> 32);
	uint32_t ecx = msr;

	asm volatile("wrmsr\n\t"
		     "mov %%ecx, %%edi\n\t"
		     "mov %%rbx, %%rcx\n\t"
		     "mov %%rsi, %%r10\n\t"
		     "clflush (%%rsi)\n\t"
		     "mfence\n"
		     "1:\tmov (%%rsi), %%r8\n\t"
		     "add $64, %%rsi\n\t"
		     "nop; nop; nop; nop; nop; nop; nop\n\t"
		     "loop 1b\n\t"
		     "mfence\n\t"
		     "sub %%r10, %%rsi\n\t"
		     "shr $6, %%rsi\n\t"
		     "call 2f\n"
		     "2:\tpop %%rax\n\t"
		     "add $(3f - 2b), %%rax\n\t"
		     "jmp *%%rax\n"
		     "3:\tmov %%edi, %%ecx\n\t"
		     "xor %%eax, %%eax\n\t"
		     "xor %%edx, %%edx\n\t"
		     "lfence\n\t"
		     "wrmsr"
		     : "+S"(rsi), "+a"(lo), "+d"(hi), "+c"(ecx)
		     : "b"(N)
		     : "rdi", "r8", "r10", "memory", "cc");
	walked = rsi;
}

static uint64_t sel(uint64_t ev)
{
	return (ev & 0xffff) | EVNTSEL_OS | EVNTSEL_EN;
}

/* run with the given counters already programmed; global enable bits */
static void run_global(uint64_t bits)
{
	measure(pmu.global_ctrl, bits);
}

/* single GP counter i with event ev from `start`; returns the count */
static uint64_t run_one(int i, uint64_t ev, uint64_t start, uint64_t extra)
{
	pmu_reset_all();
	wrmsr(pmu_ctr_msr(i), start);
	if (pmu.global_ctrl) {
		wrmsr(pmu_sel_msr(i), sel(ev) | extra);
		run_global(1ull << i);
	} else {
		measure(pmu_sel_msr(i), sel(ev) | extra);
	}
	return rdmsr(pmu_ctr_msr(i));
}

static void check_range(const char *name, uint64_t v, uint64_t lo,
			uint64_t hi)
{
	report(v >= lo && v <= hi, "%s: %lu in [%lu, %lu]", name, v, lo, hi);
}

static void test_exact_gp(void)
{
	for (int i = 0; i < pmu.nr_gp; i++) {
		uint64_t v = run_one(i, pmu.amd ? AMD_INSNS : EV_INSNS, 0, 0);
		if (pmu.amd)
			check_range("AMD instructions", v, 10 * N, 10 * N + 10 * N / 50);
		else
			report(v == C_INSNS, "GP%d instructions %lu == 10N+17 = %lu",
			       i, v, C_INSNS);
	}
	report(walked == N, "loop ran %lu iterations (N = %lu)", walked, N);
	uint64_t v = run_one(0, pmu.amd ? AMD_BRANCHES : EV_BRANCHES, 0, 0);
	if (pmu.amd)
		check_range("AMD branches", v, N, N + N / 10);
	else
		report(v == C_BRANCHES, "branches %lu == N+2 = %lu", v, C_BRANCHES);
}

/*
 * Instructions the VMM emulates (CPUID, RDMSR, IN, OUT) and a REP string instruction that the
 * engine iterates 100 times each retire exactly once.  Between the enabling WRMSR (counted) and
 * the disabling one (not counted): 8 instructions + the enabling WRMSR + 3 to set up the
 * disabling WRMSR = 12.  With fep=1 (and the VMM's --forced-emulation) CPUID and IN carry the
 * "ud2; kvm" forced-emulation prefix, which is not an instruction: still 12.
 */
#define FEP "ud2; .byte 0x6b, 0x76, 0x6d\n\t"
#define EMULATED_SEQUENCE(prefix)					\
	"wrmsr\n\t"							\
	"mov $100, %%rcx\n\t"						\
	"rep stosb\n\t"							\
	"xor %%eax, %%eax\n\t"						\
	prefix "cpuid\n\t"						\
	"mov $0x10, %%ecx\n\t"						\
	"rdmsr\n\t"							\
	prefix "inb $0x80, %%al\n\t"					\
	"outb %%al, $0x80\n\t"						\
	"mov %[ctrl], %%ecx\n\t"						\
	"xor %%eax, %%eax\n\t"						\
	"xor %%edx, %%edx\n\t"						\
	"wrmsr"
static void test_exact_emulated(bool fep)
{
	static uint8_t buf[128];
	uint8_t *dst = buf;
	uint64_t a = 1, c = pmu.global_ctrl, d = 0;
	uint32_t ctrl = pmu.global_ctrl;

	pmu_reset_all();
	wrmsr(pmu_sel_msr(0), sel(pmu.amd ? AMD_INSNS : EV_INSNS));
	if (fep)
		asm volatile(EMULATED_SEQUENCE(FEP)
			     : "+a"(a), "+c"(c), "+d"(d), "+D"(dst) : [ctrl] "r"(ctrl) : "rbx", "memory");
	else
		asm volatile(EMULATED_SEQUENCE("")
			     : "+a"(a), "+c"(c), "+d"(d), "+D"(dst) : [ctrl] "r"(ctrl) : "rbx", "memory");
	uint64_t v = rdmsr(pmu_ctr_msr(0));
	report(v == 12, "REP STOSB x100, CPUID, RDMSR, IN, OUT retire once each%s: %lu == 12",
	       fep ? " (forced emulation prefix)" : "", v);
}

/*
 * USR/OS filtering on real CPL3 code: the same user-mode round trip is measured twice, the second
 * time with 10 more user-mode instructions; a USR-only counter must differ by exactly 10 and an
 * OS-only counter by exactly 0 (the kernel side of the round trip is the same code both times).
 */
static uint64_t user_plain(uint64_t arg)
{
	return arg;
}

static uint64_t user_plus10(uint64_t arg)
{
	asm volatile("nop; nop; nop; nop; nop; nop; nop; nop; nop; nop");
	return arg;
}

static void count_user_round_trip(uint64_t (*fn)(uint64_t), uint64_t *usr, uint64_t *os)
{
	uint64_t ev = pmu.amd ? AMD_INSNS : EV_INSNS;

	pmu_reset_all();
	wrmsr(pmu_sel_msr(0), (ev & 0xffff) | EVNTSEL_USR | EVNTSEL_EN);
	wrmsr(pmu_sel_msr(1), (ev & 0xffff) | EVNTSEL_OS | EVNTSEL_EN);
	wrmsr(pmu.global_ctrl, 3);
	run_in_user(fn, 0, 0, false);
	wrmsr(pmu.global_ctrl, 0);
	*usr = rdmsr(pmu_ctr_msr(0));
	*os = rdmsr(pmu_ctr_msr(1));
}

static void test_usr_os(void)
{
	uint64_t usr_a, os_a, usr_b, os_b;

	count_user_round_trip(user_plain, &usr_a, &os_a);
	count_user_round_trip(user_plus10, &usr_b, &os_b);
	report(usr_a > 0 && usr_b - usr_a == 10,
	       "USR-only counter sees exactly the 10 extra CPL3 instructions (%lu -> %lu)", usr_a, usr_b);
	report(os_a > 0 && os_b == os_a, "OS-only counter ignores CPL3 instructions (%lu, %lu)", os_a, os_b);
}

/* IBPB (PRED_CMD bit 0) when CPUID advertises it: Intel CPUID.7:EDX[26], AMD 0x80000008:EBX[12] */
static bool ibpb(void)
{
	bool has = pmu.amd ? (cpuid(0x80000008).b >> 12) & 1 : (cpuid_indexed(7, 0).d >> 26) & 1;

	if (has)
		wrmsr(MSR_IA32_PRED_CMD, 1);
	return has;
}

static void test_ranges(void)
{
	/* the loop CLFLUSHes its buffer first, so at least one LLC miss; after an IBPB at least
	 * one branch miss (0 is allowed only without IBPB) */
	uint64_t min_br_miss;

	if (pmu.amd) {
		check_range("AMD core cycles", run_one(1, AMD_CYCLES, 0, 0), N, 50 * N);
		check_range("AMD cache refs", run_one(2, AMD_CACHE_REF, 0, 0), 1,
			    5 * N / 2);
		check_range("AMD cache misses", run_one(3, AMD_CACHE_MISS, 0, 0), 1, N);
		min_br_miss = ibpb() ? 1 : 0;
		check_range("AMD branch misses", run_one(0, AMD_BR_MISS, 0, 0), min_br_miss,
			    N / 10);
		return;
	}
	struct {
		const char *name;
		uint64_t ev;
		int bit;
		uint64_t lo, hi;
	} ev[] = {
		{ "core cycles", EV_CYCLES, 0, N, 50 * N },
		{ "reference cycles", EV_REF, 2, N, 30 * N },
		{ "LLC references", EV_LLC_REF, 3, 1, 5 * N / 2 },
		{ "LLC misses", EV_LLC_MISS, 4, 1, N },
		{ "branch misses", EV_BR_MISS, 6, 1, N / 10 },
	};
	for (unsigned k = 0; k < ARRAY_SIZE(ev); k++) {
		if (pmu.unavailable & (1u << ev[k].bit)) {
			report_skip("%s unavailable", ev[k].name);
			continue;
		}
		if (ev[k].ev == EV_BR_MISS && !ibpb())
			ev[k].lo = 0;
		check_range(ev[k].name, run_one(k % pmu.nr_gp, ev[k].ev, 0, 0),
			    ev[k].lo, ev[k].hi);
	}
	/* CMASK=2: at most one instruction per cycle, never 2 */
	uint64_t v = run_one(0, EV_INSNS, 0, EVNTSEL_CMASK(2));
	report(v == 0, "instructions with CMASK=2 count 0 (%lu)", v);
}

static void test_all_at_once(void)
{
	static const uint64_t evs[8] = { EV_INSNS, EV_BRANCHES, EV_CYCLES, EV_REF,
					 EV_LLC_REF, EV_LLC_MISS, EV_BR_MISS,
					 EV_INSNS };
	uint64_t v[8], f[3];

	if (pmu.amd || pmu.version < 2)
		return;
	pmu_reset_all();
	for (int i = 0; i < pmu.nr_gp; i++)
		wrmsr(MSR_IA32_EVNTSEL0 + i, sel(evs[i % 8]));
	uint64_t ctrl = 0;
	for (int i = 0; i < pmu.nr_fixed; i++)
		ctrl |= FIXED_OS << (4 * i);
	wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, ctrl);
	run_global(pmu_all_counters_mask());
	for (int i = 0; i < pmu.nr_gp; i++)
		v[i] = rdmsr(MSR_IA32_PERFCTR0 + i);
	for (int i = 0; i < pmu.nr_fixed; i++)
		f[i] = rdmsr(MSR_CORE_PERF_FIXED_CTR0 + i);
	bool ok = true;
	for (int i = 0; i < pmu.nr_gp; i++) {
		uint64_t e = evs[i % 8];
		bool good = e == EV_INSNS	 ? v[i] == C_INSNS
			    : e == EV_BRANCHES ? v[i] == C_BRANCHES
			    : e == EV_CYCLES   ? v[i] >= N && v[i] <= 50 * N
			    : e == EV_REF      ? v[i] >= N && v[i] <= 30 * N
			    : e == EV_LLC_REF  ? v[i] <= 5 * N / 2
			    : e == EV_LLC_MISS ? v[i] <= N
					       : v[i] <= N / 10;
		if (pmu.unavailable & (1u << (e == EV_CYCLES ? 0 : e == EV_REF ? 2 : 9)))
			good = true;
		if (!good) {
			report_info("all at once: GP%d event 0x%lx = %lu", i, e, v[i]);
			ok = false;
		}
	}
	report(ok, "all %d GP counters at once", pmu.nr_gp);
	if (pmu.nr_fixed >= 1)
		report(f[0] == C_INSNS, "fixed 0 (instructions) %lu == %lu", f[0],
		       C_INSNS);
	if (pmu.nr_fixed >= 2)
		check_range("fixed 1 (core cycles)", f[1], N, 50 * N);
	if (pmu.nr_fixed >= 3)
		check_range("fixed 2 (reference cycles)", f[2], N, 30 * N);
	pmu_reset_all();
}

static void test_overflow(void)
{
	uint64_t gpm = pmu_gp_mask();
	uint64_t preset = (1 - C_INSNS) & gpm;

	if (pmu.amd) {
		uint64_t v = run_one(0, AMD_INSNS, preset, 0);
		report_info("AMD overflow from 1-C: 0x%lx", v);
		return;
	}
	for (int i = 0; i < pmu.nr_gp; i++) {
		uint64_t v = run_one(i, EV_INSNS, (uint32_t)preset, 0);
		uint64_t st = pmu.global_status ? rdmsr(pmu.global_status) : 1ull << i;
		report(v == 1 && st == 1ull << i,
		       "GP%d from 1-C (legacy write): 0x%lx, GLOBAL_STATUS 0x%lx", i,
		       v, st);
	}
	if (pmu.full_width) {
		pmu_reset_all();
		wrmsr(MSR_IA32_PMC0, preset);
		wrmsr(MSR_IA32_EVNTSEL0, sel(EV_INSNS));
		run_global(1);
		report(rdmsr(MSR_IA32_PMC0) == 1,
		       "PMC0 from 1-C (full-width write): 0x%lx",
		       rdmsr(MSR_IA32_PMC0));
	}
	/* from -C-1: ends at all-ones, one event short of the wrap */
	uint64_t v = run_one(0, EV_INSNS, (uint32_t)(preset - 2), 0);
	uint64_t st = pmu.global_status ? rdmsr(pmu.global_status) : 0;
	report(v == gpm && st == 0, "from -C-1: ends at 0x%lx, no overflow "
				    "(status 0x%lx)",
	       v, st);
	if (pmu.nr_fixed && pmu.version >= 2) {
		pmu_reset_all();
		wrmsr(MSR_CORE_PERF_FIXED_CTR0, (1 - C_INSNS) & pmu_fixed_mask());
		wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED_OS);
		run_global(1ull << 32);
		v = rdmsr(MSR_CORE_PERF_FIXED_CTR0);
		st = rdmsr(MSR_CORE_PERF_GLOBAL_STATUS);
		report(v == 1 && st == 1ull << 32,
		       "fixed 0 from 1-C: 0x%lx, GLOBAL_STATUS 0x%lx", v, st);
	}
	pmu_reset_all();
}

static void test_write_running(void)
{
	uint64_t v;

	if (pmu.amd || pmu.version < 2)
		return;
	pmu_reset_all();
	wrmsr(MSR_IA32_EVNTSEL0, sel(EV_INSNS));
	/*
	 * enable (counted), 2 movs, then the WRMSR that sets the counter to
	 * 1000: it retires after the write, so it counts on top of 1000, then
	 * 5 nops + 3 instructions, then the disabling WRMSR: 1000 + 1 + 8.
	 */
	asm volatile("wrmsr\n\t"
		     "mov %[ctr], %%ecx\n\t"
		     "mov $1000, %%eax\n\t"
		     "wrmsr\n\t"
		     "nop; nop; nop; nop; nop\n\t"
		     "mov %[gc], %%ecx\n\t"
		     "xor %%eax, %%eax\n\t"
		     "xor %%edx, %%edx\n\t"
		     "wrmsr"
		     :
		     : "a"(1), "d"(0), "c"(MSR_CORE_PERF_GLOBAL_CTRL),
		       [ctr] "i"(MSR_IA32_PERFCTR0),
		       [gc] "i"(MSR_CORE_PERF_GLOBAL_CTRL)
		     : "memory");
	v = rdmsr(MSR_IA32_PERFCTR0);
	report(v == 1009, "writing a running counter: 1000 + 9 = %lu", v);

	/* write a running counter close to overflow: overflow follows the new value */
	pmu_reset_all();
	wrmsr(MSR_IA32_EVNTSEL0, sel(EV_INSNS));
	asm volatile("wrmsr\n\t"
		     "mov %[ctr], %%ecx\n\t"
		     "mov $0xfffffffd, %%eax\n\t" /* -3 */
		     "wrmsr\n\t"                  /* -2 */
		     "nop; nop; nop; nop; nop\n\t" /* +3 */
		     "mov %[gc], %%ecx\n\t"
		     "xor %%eax, %%eax\n\t"
		     "xor %%edx, %%edx\n\t"       /* +6 */
		     "wrmsr"
		     :
		     : "a"(1), "d"(0), "c"(MSR_CORE_PERF_GLOBAL_CTRL),
		       [ctr] "i"(MSR_IA32_PERFCTR0),
		       [gc] "i"(MSR_CORE_PERF_GLOBAL_CTRL)
		     : "memory");
	v = rdmsr(MSR_IA32_PERFCTR0);
	uint64_t st = rdmsr(MSR_CORE_PERF_GLOBAL_STATUS);
	report(v == 6 && st == 1, "running counter written to -3 overflows: %lu, "
				  "status 0x%lx",
	       v, st);
	pmu_reset_all();
}

static volatile int pmis;
static volatile uint64_t pmi_status, pmi_status_after;

static void pmi_handler(struct ex_regs *regs)
{
	pmis++;
	pmi_status = rdmsr(pmu.global_status);
	wrmsr(pmu.global_clear, pmi_status);
	pmi_status_after = rdmsr(pmu.global_status);
	apic_eoi();
}

static void test_pmi(void)
{
	if (pmu.amd || pmu.version < 2) {
		report_skip("PMI test needs Intel arch perfmon v2");
		return;
	}
	handle_exception(PMI_VECTOR, pmi_handler);
	apic_sw_enable();
	apic_write(APIC_LVTPC, PMI_VECTOR);
	pmu_reset_all();
	uint64_t preset = (1 - C_INSNS);
	for (int i = 0; i < pmu.nr_gp; i++) {
		wrmsr(MSR_IA32_PERFCTR0 + i, (uint32_t)preset);
		wrmsr(MSR_IA32_EVNTSEL0 + i, sel(EV_INSNS) | EVNTSEL_INT);
	}
	if (pmu.nr_fixed) {
		wrmsr(MSR_CORE_PERF_FIXED_CTR0, preset & pmu_fixed_mask());
		wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED_OS | FIXED_PMI);
	}
	uint64_t bits = ((1ull << pmu.nr_gp) - 1) | (pmu.nr_fixed ? 1ull << 32 : 0);
	pmis = 0;
	run_global(bits); /* IF=0 throughout */
	uint64_t st = rdmsr(MSR_CORE_PERF_GLOBAL_STATUS);
	bool ones = true;
	for (int i = 0; i < pmu.nr_gp; i++)
		ones = ones && rdmsr(MSR_IA32_PERFCTR0 + i) == 1;
	if (pmu.nr_fixed)
		ones = ones && rdmsr(MSR_CORE_PERF_FIXED_CTR0) == 1;
	report(ones, "every counter ends at 1");
	report(st == bits, "GLOBAL_STATUS 0x%lx == 0x%lx", st, bits);
	report(pmis == 0 && apic_vector_bit(APIC_IRR, PMI_VECTOR),
	       "PMI pending in IRR while IF=0 (handled %d)", pmis);
	report(apic_read(APIC_LVTPC) == (APIC_LVT_MASKED | PMI_VECTOR),
	       "LVTPC masked by the PMI (0x%x)", apic_read(APIC_LVTPC));
	asm volatile("sti; nop; cli");
	report(pmis == 1, "exactly one PMI taken at STI (%d)", pmis);
	report(pmi_status == bits && pmi_status_after == 0,
	       "handler saw GLOBAL_STATUS 0x%lx, cleared by OVF_CTRL to 0x%lx",
	       pmi_status, pmi_status_after);
	/* no INT bit: overflow without PMI */
	apic_write(APIC_LVTPC, PMI_VECTOR);
	pmis = 0;
	run_one(0, EV_INSNS, (uint32_t)preset, 0);
	asm volatile("sti; nop; cli");
	report(pmis == 0 && rdmsr(MSR_CORE_PERF_GLOBAL_STATUS) == 1,
	       "overflow without INT: status bit, no PMI");
	pmu_reset_all();
	apic_write(APIC_LVTPC, APIC_LVT_MASKED);
}

int main(struct multiboot_info *mbi)
{
	printf("pmu_count test\n");
	pmu_init();
	pmu_print();
	N = cmdline_u64(mbi_cmdline(mbi), "n", 1000000);
	if (!N)
		N = 1;
	C_INSNS = 10 * N + EXTRA_INSNS;
	C_BRANCHES = N + EXTRA_BRANCHES;
	report_info("N = %lu: expect %lu instructions, %lu branches", N,
		    C_INSNS, C_BRANCHES);
	if (!pmu.version || !pmu.nr_gp) {
		report_skip("no PMU");
		return report_summary();
	}
	if (!pmu.amd && pmu.version < 2) {
		/* the measurement is bracketed by GLOBAL_CTRL writes, which v1 does not have */
		report_skip("reference loop needs arch perfmon v2 (GLOBAL_CTRL)");
		return report_summary();
	}
	if (BUF_BASE + 64 * N + 64 > mbi_ram_size(mbi)) {
		report_skip("n=%lu needs %lu MiB of RAM", N,
			    (BUF_BASE + 64 * N) >> 20);
		return report_summary();
	}
	test_exact_gp();
	if (pmu.global_ctrl && pmu.nr_gp >= 2)
		test_usr_os();
	if (pmu.global_ctrl) {
		test_exact_emulated(false);
		if (cmdline_u64(mbi_cmdline(mbi), "fep", 0))
			test_exact_emulated(true);
	}
	test_ranges();
	test_all_at_once();
	test_overflow();
	test_write_running();
	test_pmi();
	return report_summary();
}
