/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Local APIC hardware enable state (IA32_APIC_BASE.EN), from xAPIC and from
 * x2APIC mode:
 * - CPUID.1:EDX.APIC follows EN;
 * - a disabled APIC's page is not decoded (every read all-ones, writes lost,
 *   as kvm-unit-tests' apic test expects), its x2APIC MSRs #GP, the
 *   TSC-deadline MSR is inert, CR8 still reads back what was written;
 * - nothing is delivered while disabled (a pending self-IPI and an armed
 *   timer are dropped);
 * - enabling again gives the power-up register values (ID = the initial APIC
 *   ID from CPUID.1:EBX[31:24], even after software changed it), and the APIC
 *   works again.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define CPUID_1_EDX_APIC (1u << 9)
#define VECTOR 0x50

static volatile int irq_count;

static void irq_handler(struct ex_regs *regs)
{
	irq_count++;
	apic_eoi();
}

static bool cpuid_apic(void)
{
	return cpuid(1).d & CPUID_1_EDX_APIC;
}

static uint64_t read_cr8(void)
{
	uint64_t v;

	asm volatile("mov %%cr8, %0" : "=r"(v));
	return v;
}

static void write_cr8(uint64_t v)
{
	asm volatile("mov %0, %%cr8" : : "r"(v) : "memory");
}

static void irq_window(void)
{
	asm volatile("sti; nop; nop; cli" ::: "memory");
}

/* every register at its power-up value; returns the offset of the first that
 * is not, or 0 */
static unsigned first_not_at_power_up(uint32_t initial_id, uint32_t version)
{
	for (unsigned reg = 0x20; reg < 0x400; reg += 0x10) {
		uint32_t want = 0;

		if (reg == APIC_ID)
			want = initial_id << 24;
		else if (reg == APIC_LVR)
			want = version;
		else if (reg == APIC_DFR)
			want = 0xffffffff;
		else if (reg == APIC_SPIV)
			want = 0xff;
		else if (reg >= APIC_LVTT && reg <= APIC_LVTERR)
			want = APIC_LVT_MASKED;
		if (xapic_read(reg) != want) {
			report_info("register 0x%x: 0x%x, power-up 0x%x", reg,
				    xapic_read(reg), want);
			return reg;
		}
	}
	return 0;
}

/* leave registers, a pending interrupt and an armed timer behind */
static void make_busy(void)
{
	apic_sw_enable();
	apic_write(APIC_TPR, 0x60); /* holds the self-IPI in the IRR */
	apic_write(APIC_LVT0, 0x8038);
	apic_write(APIC_TDCR, 0xb);
	apic_write(APIC_LVTT, VECTOR);
	apic_write(APIC_TMICT, 1000);
	apic_icr_write(APIC_DEST_SELF | VECTOR, 0);
	if (!apic_is_x2apic())
		xapic_write(APIC_ID, 0x0f000000);
}

static void check_disabled(const char *from)
{
	uint32_t all = 0xffffffff;
	uint64_t v;

	report(!(rdmsr(MSR_IA32_APICBASE) & (APIC_BASE_EN | APIC_BASE_EXTD)),
	       "%s: APIC_BASE.EN and EXTD clear", from);
	report(!cpuid_apic(), "%s: CPUID.1:EDX.APIC clear", from);
	memset((void *)APIC_DEFAULT_BASE, 0xff, 0x1000);
	for (unsigned reg = 0; reg < 0x1000; reg += 4)
		all &= xapic_read(reg);
	report(all == 0xffffffff && xapic_read(APIC_LVR) == 0xffffffff,
	       "%s: the page reads all-ones", from);
	report(*(volatile uint8_t *)(APIC_DEFAULT_BASE + APIC_TPR) == 0xff &&
		       *(volatile uint64_t *)(APIC_DEFAULT_BASE + 0x28) == ~0ull,
	       "%s: byte and quadword reads all-ones too", from);
	report(rdmsr_safe(APIC_MSR(APIC_ID), &v) &&
		       faulted_with(GP_VECTOR) &&
		       wrmsr_safe(APIC_MSR(APIC_TPR), 0) &&
		       wrmsr_safe(APIC_MSR(APIC_SELF_IPI), VECTOR),
	       "%s: x2APIC MSRs #GP", from);
	if (cpu_has_tsc_deadline()) {
		wrmsr(MSR_IA32_TSC_DEADLINE, rdtsc() + 100);
		report(rdmsr(MSR_IA32_TSC_DEADLINE) == 0,
		       "%s: TSC_DEADLINE ignores writes", from);
	}
	write_cr8(9);
	report(read_cr8() == 9, "%s: CR8 reads back (9)", from);
	write_cr8(0); /* a leftover IRR bit would now be delivered */
	irq_count = 0;
	for (int i = 0; i < 3000; i++)
		irq_window();
	report(irq_count == 0,
	       "%s: no interrupt from the self-IPI or the timer", from);
}

static void check_enabled_again(const char *from, uint32_t initial_id,
				uint32_t version)
{
	report(rdmsr(MSR_IA32_APICBASE) & APIC_BASE_EN && cpuid_apic(),
	       "%s: enabled again, CPUID.1:EDX.APIC set", from);
	report(first_not_at_power_up(initial_id, version) == 0,
	       "%s: every register at its power-up value", from);
	report(read_cr8() == 0, "%s: CR8 reads the reset TPR", from);
	apic_sw_enable();
	irq_count = 0;
	apic_icr_write(APIC_DEST_SELF | VECTOR, 0);
	irq_window();
	report(irq_count == 1, "%s: a self-IPI is delivered again", from);
}

int main(struct multiboot_info *mbi)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE) & ~(APIC_BASE_EN | APIC_BASE_EXTD);
	uint32_t initial_id = cpuid(1).b >> 24;
	uint32_t version = xapic_read(APIC_LVR);

	handle_exception(VECTOR, irq_handler);
	report(rdmsr(MSR_IA32_APICBASE) & APIC_BASE_EN && cpuid_apic(),
	       "power-up: APIC_BASE.EN and CPUID.1:EDX.APIC set");

	make_busy();
	wrmsr(MSR_IA32_APICBASE, base);
	check_disabled("from xAPIC");
	wrmsr(MSR_IA32_APICBASE, base | APIC_BASE_EN);
	check_enabled_again("from xAPIC", initial_id, version);

	if (!cpu_has_x2apic()) {
		report_skip("from x2APIC: x2APIC not advertised");
		return report_summary();
	}
	report(apic_to_x2apic(), "x2APIC mode");
	make_busy();
	wrmsr(MSR_IA32_APICBASE, base);
	check_disabled("from x2APIC");
	wrmsr(MSR_IA32_APICBASE, base | APIC_BASE_EN);
	check_enabled_again("from x2APIC", initial_id, version);
	return report_summary();
}
