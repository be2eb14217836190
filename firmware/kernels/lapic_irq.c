/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * LAPIC interrupt delivery (xAPIC mode): self-IPIs with handler and EOI,
 * priority classes (highest first, nesting, same-class blocking, EOI clears
 * the highest ISR bit), TPR/CR8 masking, NMIs (ICR NMI to self, LVTPC in NMI
 * mode), "sti; hlt" wake-ups and the STI shadow, and a PMI-style LVTPC
 * delivery through the VMM test hook (port 0x5F0, needs --test-hooks): vector
 * delivered, LVTPC masked afterwards on Intel only, held pending while IF=0
 * and taken right after the STI shadow.
 *
 * Command line: hooks=1 makes a missing test hook a failure instead of a skip.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define TEST_HOOK_PORT 0x5f0
#define TEST_HOOK_DELIVER_LVTPC 1

static volatile int log_buf[32];
static volatile int log_len;
static volatile int count[256];
static volatile bool no_eoi[256];
static void (*volatile hook[256])(void);
static volatile uint64_t last_rip;
static volatile int nmi_count;
static volatile uint64_t nmi_rip;

static void log_push(int v)
{
	if (log_len < (int)ARRAY_SIZE(log_buf))
		log_buf[log_len++] = v;
}

static void log_reset(void)
{
	log_len = 0;
	for (int i = 0; i < 256; i++)
		count[i] = 0;
}

static bool log_is(int n, const int *want)
{
	if (log_len != n)
		return false;
	for (int i = 0; i < n; i++)
		if (log_buf[i] != want[i])
			return false;
	return true;
}

static void log_print(const char *what)
{
	char buf[160];
	int pos = 0;
	for (int i = 0; i < log_len && pos < 140; i++)
		pos += snprintf(buf + pos, sizeof(buf) - pos, " 0x%x",
				log_buf[i]);
	buf[pos] = 0;
	report_info("%s: log%s", what, buf);
}

static void irq_handler(struct ex_regs *regs)
{
	int v = (int)regs->vector;

	last_rip = regs->rip;
	count[v]++;
	log_push(v);
	if (hook[v])
		hook[v]();
	if (!no_eoi[v])
		apic_eoi();
}

static void nmi_handler(struct ex_regs *regs)
{
	nmi_count++;
	nmi_rip = regs->rip;
}

static void self_ipi(int vector)
{
	xapic_write(APIC_ICR2, 0);
	xapic_write(APIC_ICR, APIC_DEST_SELF | APIC_DM_FIXED | vector);
}

/* open an interrupt window of exactly one instruction after STI */
static inline void irq_window(void)
{
	asm volatile("sti; nop; cli" ::: "memory");
}

static void test_self_ipi(void)
{
	log_reset();
	self_ipi(0x30);
	report(apic_vector_bit(APIC_IRR, 0x30) && count[0x30] == 0,
	       "self-IPI 0x30 pending in IRR with IF=0");
	irq_window();
	report(count[0x30] == 1, "self-IPI delivered once after STI");
	report(!apic_vector_bit(APIC_IRR, 0x30) &&
		       !apic_vector_bit(APIC_ISR, 0x30),
	       "IRR and ISR clear after EOI");
}

static volatile bool nested_isr_ok;
static volatile uint32_t nested_ppr;
static volatile int blocked_count;

static void hook_nest_outer(void)
{
	self_ipi(0x91);
	irq_window(); /* 0x91 (class 9) preempts 0x41 (class 4) */
	log_push(0x141);
}

static void hook_nest_inner(void)
{
	nested_isr_ok = apic_vector_bit(APIC_ISR, 0x41) &&
			apic_vector_bit(APIC_ISR, 0x91);
	nested_ppr = xapic_read(APIC_PPR);
}

static void hook_same_class(void)
{
	self_ipi(0x43);
	irq_window(); /* 0x43 is class 4 like 0x42: blocked */
	blocked_count = count[0x43];
	apic_eoi();
	irq_window(); /* now it is taken */
	log_push(0x142);
}

static volatile uint32_t isr_before_eoi, isr_after_eoi1, isr_after_eoi2;

static void hook_eoi_order(void)
{
	self_ipi(0x92);
	irq_window(); /* nested 0x92 returns without EOI */
	isr_before_eoi = (apic_vector_bit(APIC_ISR, 0x44) ? 1 : 0) |
			 (apic_vector_bit(APIC_ISR, 0x92) ? 2 : 0);
	apic_eoi();
	isr_after_eoi1 = (apic_vector_bit(APIC_ISR, 0x44) ? 1 : 0) |
			 (apic_vector_bit(APIC_ISR, 0x92) ? 2 : 0);
	apic_eoi();
	isr_after_eoi2 = (apic_vector_bit(APIC_ISR, 0x44) ? 1 : 0) |
			 (apic_vector_bit(APIC_ISR, 0x92) ? 2 : 0);
}

static void test_priority(void)
{
	log_reset();
	self_ipi(0x40);
	self_ipi(0x90);
	report(apic_vector_bit(APIC_IRR, 0x40) &&
		       apic_vector_bit(APIC_IRR, 0x90),
	       "two pending vectors 0x40 and 0x90 in IRR");
	irq_window();
	log_print("pending 0x40 + 0x90");
	report(log_is(2, (int[]){ 0x90, 0x40 }),
	       "higher class 0x90 taken before 0x40");

	log_reset();
	hook[0x41] = hook_nest_outer;
	hook[0x91] = hook_nest_inner;
	self_ipi(0x41);
	irq_window();
	log_print("nested");
	report(log_is(3, (int[]){ 0x41, 0x91, 0x141 }),
	       "0x91 nests inside the 0x41 handler");
	report(nested_isr_ok, "ISR holds 0x41 and 0x91 while nested");
	report(nested_ppr == 0x90, "PPR 0x%x = 0x90 while 0x91 in service",
	       nested_ppr);
	report(!apic_vector_bit(APIC_ISR, 0x41) &&
		       !apic_vector_bit(APIC_ISR, 0x91),
	       "ISR empty after both EOIs");

	log_reset();
	hook[0x42] = hook_same_class;
	no_eoi[0x42] = true;
	self_ipi(0x42);
	irq_window();
	log_print("same class");
	report(blocked_count == 0, "same-class 0x43 blocked while 0x42 in "
				   "service");
	report(log_is(3, (int[]){ 0x42, 0x43, 0x142 }),
	       "0x43 taken after the EOI of 0x42");

	log_reset();
	hook[0x44] = hook_eoi_order;
	no_eoi[0x44] = true;
	no_eoi[0x92] = true;
	self_ipi(0x44);
	irq_window();
	report(isr_before_eoi == 3, "ISR holds 0x44 and 0x92 before EOI");
	report(isr_after_eoi1 == 1, "first EOI clears the highest (0x92), "
				    "0x%x",
	       isr_after_eoi1);
	report(isr_after_eoi2 == 0, "second EOI clears 0x44");
	report(xapic_read(APIC_PPR) == 0, "PPR back to 0");
}

static void test_tpr(void)
{
	log_reset();
	xapic_write(APIC_TPR, 0x50);
	self_ipi(0x45);
	irq_window();
	report(count[0x45] == 0 && apic_vector_bit(APIC_IRR, 0x45),
	       "TPR 0x50 holds vector 0x45 in IRR");
	report(xapic_read(APIC_PPR) == 0x50, "PPR = TPR 0x50");
	xapic_write(APIC_TPR, 0x4f);
	irq_window();
	report(count[0x45] == 0, "TPR 0x4f (same class) still holds it");
	sti();
	xapic_write(APIC_TPR, 0x30);
	int seen = count[0x45];
	cli();
	report(seen == 1, "lowering TPR to 0x30 with IF=1 delivers it at once");

	/* CR8 is TPR[7:4] */
	asm volatile("mov %0, %%cr8" : : "r"(6ul));
	report(xapic_read(APIC_TPR) == 0x60, "MOV CR8 6 -> TPR 0x%x",
	       xapic_read(APIC_TPR));
	self_ipi(0x65);
	irq_window();
	report(count[0x65] == 0, "CR8 6 holds vector 0x65");
	unsigned long cr8;
	xapic_write(APIC_TPR, 0x70);
	asm volatile("mov %%cr8, %0" : "=r"(cr8));
	report(cr8 == 7, "TPR 0x70 -> CR8 %lu", cr8);
	asm volatile("mov %0, %%cr8" : : "r"(0ul));
	irq_window();
	report(count[0x65] == 1 && xapic_read(APIC_TPR) == 0,
	       "CR8 0 releases it (TPR 0x%x)", xapic_read(APIC_TPR));
	xapic_write(APIC_TPR, 0);
	irq_window();
}

static void test_nmi(void)
{
	nmi_count = 0;
	xapic_write(APIC_ICR2, 0);
	xapic_write(APIC_ICR, APIC_DEST_SELF | APIC_DM_NMI);
	int seen = nmi_count;
	report(seen == 1, "ICR NMI to self delivered with IF=0");
	for (int i = 0; i < 10 && nmi_count == seen; i++)
		asm volatile("nop");
	report_info("nmi_count %d after a few instructions", nmi_count);
	irq_window();
	report_info("nmi_count %d after an STI window", nmi_count);
	xapic_write(APIC_LVT1, APIC_DM_NMI);
	report(xapic_read(APIC_LVT1) == APIC_DM_NMI,
	       "LINT1 programmed as NMI (0x%x)", xapic_read(APIC_LVT1));
	xapic_write(APIC_LVT1, APIC_LVT_MASKED);
}

static void hlt_handler_fixup(void)
{
	/* taken in the STI shadow, before HLT: skip it so we do not hang */
	if (*(volatile uint8_t *)last_rip == 0xf4)
		last_rip |= 1ull << 63;
}

static void test_hlt(void)
{
	uint64_t after;

	log_reset();
	hook[0x46] = hlt_handler_fixup;
	self_ipi(0x46);
	asm volatile("lea 1f(%%rip), %0\n\t"
		     "sti\n\t"
		     "hlt\n"
		     "1:\tcli"
		     : "=r"(after)
		     :
		     : "memory");
	report(count[0x46] == 1, "sti; hlt with a pending IPI wakes up");
	report(last_rip == after,
	       "interrupt taken after HLT, not in the STI shadow "
	       "(rip 0x%lx, after-hlt 0x%lx)",
	       last_rip, after);
}

static int expected_hook_count;

static void test_pmi_hook(struct multiboot_info *mbi)
{
	bool required = cmdline_u64(mbi_cmdline(mbi), "hooks", 0);
	bool amd = cpu_is_amd();
	uint64_t expected, rip;

	log_reset();
	xapic_write(APIC_LVTPC, 0x60);
	outl(TEST_HOOK_DELIVER_LVTPC, TEST_HOOK_PORT);
	if (!apic_vector_bit(APIC_IRR, 0x60) &&
	    xapic_read(APIC_LVTPC) == 0x60 && !required) {
		report_skip("PMI test hook: nothing delivered; run with "
			    "--test-hooks (and hooks=1 to require it)");
		xapic_write(APIC_LVTPC, APIC_LVT_MASKED);
		return;
	}
	report(apic_vector_bit(APIC_IRR, 0x60) && count[0x60] == 0,
	       "hook PMI: vector 0x60 pending with IF=0");
	uint32_t lvtpc = xapic_read(APIC_LVTPC);
	if (amd)
		report(lvtpc == 0x60, "AMD: LVTPC not masked by delivery (0x%x)",
		       lvtpc);
	else
		report(lvtpc == (APIC_LVT_MASKED | 0x60),
		       "Intel: LVTPC mask bit set by delivery (0x%x)", lvtpc);
	asm volatile("lea 1f(%%rip), %0\n\t"
		     "sti\n\t"
		     "nop\n"
		     "1:\tcli"
		     : "=r"(expected)
		     :
		     : "memory");
	report(count[0x60] == 1, "pending PMI taken after STI");
	report(last_rip == expected,
	       "taken right after the STI shadow (rip 0x%lx, expected 0x%lx)",
	       last_rip, expected);
	expected_hook_count = 1;
	if (!amd) {
		outl(TEST_HOOK_DELIVER_LVTPC, TEST_HOOK_PORT);
		irq_window();
		report(count[0x60] == 1 && !apic_vector_bit(APIC_IRR, 0x60),
		       "masked LVTPC: second PMI not delivered");
	}
	/* re-armed, IF=1: taken right after the OUT */
	xapic_write(APIC_LVTPC, 0x60);
	asm volatile("lea 1f(%%rip), %0\n\t"
		     "sti\n\t"
		     "outl %%eax, %%dx\n"
		     "1:\tcli"
		     : "=&r"(rip)
		     : "a"(TEST_HOOK_DELIVER_LVTPC), "d"(TEST_HOOK_PORT)
		     : "memory");
	report(count[0x60] == 2 && last_rip == rip,
	       "re-armed LVTPC, IF=1: PMI right after the OUT (rip 0x%lx, "
	       "expected 0x%lx)",
	       last_rip, rip);

	/* LVTPC in NMI mode */
	nmi_count = 0;
	xapic_write(APIC_LVTPC, APIC_DM_NMI);
	outl(TEST_HOOK_DELIVER_LVTPC, TEST_HOOK_PORT);
	int seen = nmi_count;
	report(seen == 1, "LVTPC NMI mode: NMI delivered with IF=0 right after "
			  "the OUT");
	for (int i = 0; i < 10 && nmi_count == seen; i++)
		asm volatile("nop");
	report_info("LVTPC NMI: nmi_count %d after a few more instructions",
		    nmi_count);
	lvtpc = xapic_read(APIC_LVTPC);
	report(lvtpc == (amd ? APIC_DM_NMI : APIC_LVT_MASKED | APIC_DM_NMI),
	       "LVTPC after NMI PMI 0x%x", lvtpc);

	/* masked: nothing */
	nmi_count = 0;
	xapic_write(APIC_LVTPC, APIC_LVT_MASKED | 0x60);
	outl(TEST_HOOK_DELIVER_LVTPC, TEST_HOOK_PORT);
	irq_window();
	report(count[0x60] == 2 && nmi_count == 0 &&
		       !apic_vector_bit(APIC_IRR, 0x60),
	       "masked LVTPC delivers nothing (count %d, NMIs %d)",
	       count[0x60], nmi_count);
}

int main(struct multiboot_info *mbi)
{
	printf("lapic_irq test\n");
	for (int v = 0x20; v < 0xff; v++)
		handle_exception(v, irq_handler);
	handle_exception(NMI_VECTOR, nmi_handler);
	apic_sw_enable();

	test_self_ipi();
	test_priority();
	test_tpr();
	test_hlt();
	test_pmi_hook(mbi);
	test_nmi();
	return report_summary();
}
