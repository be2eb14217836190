/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Exact instruction counts of code that changes while its linear address and its length stay.
 *
 * A "site" is 6 bytes of code, one translation block ending in RET, in one of these forms:
 *
 *	LONG   nopl 0(%rax,%rax,1); ret              0f 1f 44 00 00 c3   2 instructions
 *	PAIR   xchg %ax,%ax; nopl (%rax); ret        66 90 0f 1f 00 c3   3 instructions
 *	MIXED  nop; nopl 0(%rax); ret                90 0f 1f 40 00 c3   3 instructions
 *	TRIPLE nop; nop; nopl (%rax); ret            90 90 0f 1f 00 c3   4 instructions
 *	SHORT  nop; nop; nop; nop; nop; ret          90 90 90 90 90 c3   6 instructions
 *
 * The counted sequence calls the site K times (fixed by inline asm, measure() below):
 *
 *	wrmsr                    1  enables the counter: counted
 *	mov  %ecx, %edi          2  keep the MSR index
 *	mov  %rbx, %rcx          3  K
 *   1: call *%rsi               \  2 + n instructions per iteration (n: the site's, RET included)
 *	loop 1b                  /
 *	mov  %edi, %ecx          4
 *	xor  %eax, %eax          5
 *	xor  %edx, %edx          6
 *	wrmsr                       disables the counter: not counted
 *
 * so exactly K * (2 + n) + 6 instructions, counted at CPL0 by GP counter 0 (and by fixed counter 0
 * where there is one).
 *
 * Tests, each site run once uncounted first so that its old form is translated and decoded:
 *  (a) self-modifying code: a site in a page of its own rewritten in place, through more forms
 *      than the hook layer keeps decodes of for one block, and back to earlier ones;
 *  (b) remapping: a linear page whose PTE points at one of two physical pages holding LONG and
 *      SHORT, switched by rewriting the PTE and INVLPG, then by rewriting it and reloading CR3;
 *  (c) cross-modifying code (with a second CPU): the AP runs the site, the BSP rewrites it, the AP
 *      runs an IRET to itself (the serializing step the SDM asks for) and counts the new form;
 *  (d) stores through a non-executable alias: a site's page is also mapped NX at another linear
 *      address and written only there, first while it holds no translated code, then beside the
 *      code and over it.  An emulator whose TLB lets stores through such an alias skip its
 *      self-modifying-code check once the page looked like data would run the old form.
 *
 * Command line: k=ITERATIONS (default 20000).
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"
#include "smp.h"

#define EXTRA_INSNS 6
#define EV_INSNS 0x00c0         /* Intel and AMD: retired instructions */
#define REMAP_VA 0x30000000ul   /* a linear page of the identity map the tests remap */
#define ALIAS_VA 0x30001000ul   /* another one, mapped NX onto page_alias */

enum form { LONG, PAIR, MIXED, TRIPLE, SHORT, NR_FORMS };
static const uint8_t forms[NR_FORMS][6] = {
	{0x0f, 0x1f, 0x44, 0x00, 0x00, 0xc3},
	{0x66, 0x90, 0x0f, 0x1f, 0x00, 0xc3},
	{0x90, 0x0f, 0x1f, 0x40, 0x00, 0xc3},
	{0x90, 0x90, 0x0f, 0x1f, 0x00, 0xc3},
	{0x90, 0x90, 0x90, 0x90, 0x90, 0xc3},
};
static const int form_insns[NR_FORMS] = {2, 3, 3, 4, 6};
static const char *const form_names[NR_FORMS] = {"LONG", "PAIR", "MIXED", "TRIPLE", "SHORT"};

static uint8_t site[4096] __attribute__((aligned(4096), section(".text.patch")));
static uint8_t page_long[4096] __attribute__((aligned(4096), section(".text.patch")));
static uint8_t page_short[4096] __attribute__((aligned(4096), section(".text.patch")));
static uint8_t page_alias[4096] __attribute__((aligned(4096), section(".text.patch")));

static uint64_t K;

static uint64_t expected(enum form f)
{
	return K * (2 + form_insns[f]) + EXTRA_INSNS;
}

static void write_form(uint8_t *where, enum form f)
{
	for (int i = 0; i < 6; i++)
		where[i] = forms[f][i];
}

/* the counted sequence of the header */
static void measure(uint32_t msr, uint64_t enable, uintptr_t code, uint64_t k)
{
	uint32_t lo = (uint32_t)enable, hi = (uint32_t)(enable >> 32), ecx = msr;

	asm volatile(PMU_COUNTED_BEGIN
		     "mov %%rbx, %%rcx\n"
		     "1:\tcall *%%rsi\n\t"
		     "loop 1b\n\t"
		     PMU_COUNTED_END
		     : "+a"(lo), "+d"(hi), "+c"(ecx)
		     : "b"(k), "S"(code)
		     : "rdi", "memory", "cc");
}

static bool has_fixed0(void)
{
	return !pmu.amd && pmu.version >= 2 && pmu.nr_fixed >= 1;
}

/* instructions of K calls of the code at `code` (fixed counter 0 in *fixed, or ~0 without one) */
static uint64_t count(uintptr_t code, uint64_t *fixed)
{
	uint64_t sel0 = EV_INSNS | EVNTSEL_OS | EVNTSEL_EN;

	pmu_reset_all();
	*fixed = ~0ull;
	if (pmu.global_ctrl) {
		uint64_t enable = 1;
		wrmsr(pmu_sel_msr(0), sel0);
		if (has_fixed0()) {
			wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED_OS);
			enable |= 1ull << 32;
		}
		measure(pmu.global_ctrl, enable, code, K);
		if (has_fixed0())
			*fixed = rdmsr(MSR_CORE_PERF_FIXED_CTR0);
	} else {
		measure(pmu_sel_msr(0), sel0, code, K);
	}
	return rdmsr(pmu_ctr_msr(0));
}

static void run_once(uintptr_t code)
{
	((void (*)(void))code)();
}

static void check(uintptr_t code, enum form f, const char *what)
{
	uint64_t fixed, got;

	run_once(code);         /* the form is translated (and decoded) before the counted run */
	got = count(code, &fixed);
	printf("COUNT: %s %s %lu\n", what, form_names[f], (unsigned long)got);
	report(got == expected(f), "%s, %s: %lu instructions (expected %lu)", what, form_names[f],
	       (unsigned long)got, (unsigned long)expected(f));
	if (fixed != ~0ull)
		report(fixed == expected(f), "%s, %s: fixed counter 0 %lu", what, form_names[f],
		       (unsigned long)fixed);
}

static void test_self_modifying(void)
{
	static const enum form order[] = {LONG, SHORT, PAIR, TRIPLE, MIXED, TRIPLE, LONG, SHORT};

	for (unsigned i = 0; i < ARRAY_SIZE(order); i++) {
		write_form(site, order[i]);
		check((uintptr_t)site, order[i], "patched in place");
	}
}

static void map_remap_page(uint8_t *page)
{
	uint64_t *pte = get_pte(REMAP_VA);

	assert(pte);
	*pte = (uintptr_t)page | PT_PRESENT | PT_WRITABLE;
}

static void test_remap(void)
{
	write_form(page_long, LONG);
	write_form(page_short, SHORT);
	map_remap_page(page_long);
	invlpg((void *)REMAP_VA);
	check(REMAP_VA, LONG, "remapped with INVLPG");
	map_remap_page(page_short);
	invlpg((void *)REMAP_VA);
	check(REMAP_VA, SHORT, "remapped with INVLPG");
	map_remap_page(page_long);
	invlpg((void *)REMAP_VA);
	check(REMAP_VA, LONG, "remapped with INVLPG");
	map_remap_page(page_short);
	write_cr3(read_cr3());
	check(REMAP_VA, SHORT, "remapped with a CR3 reload");
	map_remap_page(page_long);
	write_cr3(read_cr3());
	check(REMAP_VA, LONG, "remapped with a CR3 reload");
}

/* --- (d): stores through a non-executable alias -------------------------------------------- */

static void test_nx_alias(void)
{
	uint8_t *alias = (uint8_t *)ALIAS_VA;
	uint64_t *pte = get_pte(ALIAS_VA);

	assert(pte);
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NX);
	*pte = (uintptr_t)page_alias | PT_PRESENT | PT_WRITABLE | PT_NX;
	invlpg((void *)ALIAS_VA);
	*(volatile uint8_t *)&alias[2048] = 1;          /* no code in the page yet */
	write_form(alias, LONG);
	check((uintptr_t)page_alias, LONG, "written through an NX alias");
	write_form(alias, SHORT);
	check((uintptr_t)page_alias, SHORT, "written through an NX alias");
	*(volatile uint8_t *)&alias[2048] = 2;          /* beside the code */
	write_form(alias, PAIR);
	check((uintptr_t)page_alias, PAIR, "written through an NX alias");
}

/* --- (c): cross-modifying code ------------------------------------------------------------- */

static struct {
	uint64_t insns, fixed;
} ap_result;

static void ap_run_site(void *arg)
{
	run_once((uintptr_t)site);
}

static void ap_sync_and_count(void *arg)
{
	iret_to_self();
	ap_result.insns = count((uintptr_t)site, &ap_result.fixed);
}

static void test_cross_modifying(void)
{
	static const enum form order[] = {SHORT, LONG, PAIR};

	smp_init(true);
	if (smp_nr_cpus < 2 || smp_start_aps() < 1) {
		report_skip("cross-modifying code: needs a second CPU");
		return;
	}
	write_form(site, LONG);
	smp_call(1, ap_run_site, NULL);
	for (unsigned i = 0; i < ARRAY_SIZE(order); i++) {
		enum form f = order[i];
		write_form(site, f);
		ap_result.insns = ap_result.fixed = 0;
		report(smp_call(1, ap_sync_and_count, NULL), "CPU 1 ran the counted calls");
		printf("COUNT: cross-modified on CPU 1 %s %lu\n", form_names[f], (unsigned long)ap_result.insns);
		report(ap_result.insns == expected(f), "cross-modified, CPU 1 after an IRET to itself, %s: "
		       "%lu instructions (expected %lu)", form_names[f], (unsigned long)ap_result.insns,
		       (unsigned long)expected(f));
		if (ap_result.fixed != ~0ull)
			report(ap_result.fixed == expected(f), "cross-modified, CPU 1, %s: fixed counter 0 %lu",
			       form_names[f], (unsigned long)ap_result.fixed);
	}
}

int main(struct multiboot_info *mbi)
{
	printf("code_patch test\n");
	K = cmdline_u64(mbi_cmdline(mbi), "k", 20000);
	pmu_init();
	if (pmu.nr_gp < 1) {
		report_skip("no general-purpose counter");
		return report_summary();
	}
	test_self_modifying();
	test_remap();
	test_nx_alias();
	test_cross_modifying();
	return report_summary();
}
