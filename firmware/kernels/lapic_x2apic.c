/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * x2APIC: enabling through APIC_BASE.EXTD, register access through MSRs
 * 0x800-0x8ff (ID, version, TPR, SPIV, LDR, ICR, SELF_IPI, EOI), #GP for
 * reserved registers, reserved bits, writes to read-only and reads of
 * write-only registers, SELF_IPI delivery, the illegal x2APIC -> xAPIC
 * transition, and disabling.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define X2(reg) APIC_MSR(reg)

static volatile int irq_count;
static volatile bool isr_seen;
static volatile int last_vector;

static void irq_handler(struct ex_regs *regs)
{
	irq_count++;
	last_vector = (int)regs->vector;
	isr_seen = apic_vector_bit(APIC_ISR, (int)regs->vector);
	wrmsr(X2(APIC_EOI), 0);
}

static void test_registers(uint32_t xapic_ver, uint32_t initial_id)
{
	uint64_t v;

	bool gp = rdmsr_safe(X2(APIC_ID), &v);
	report(!gp && v == initial_id,
	       "0x802 ID %lu = initial APIC ID %u (32-bit ID)", v, initial_id);
	if (cpuid(0).a >= 0xb)
		report(v == cpuid(0xb).d, "0x802 ID = CPUID.0xB:EDX (%u)",
		       cpuid(0xb).d);
	gp = rdmsr_safe(X2(APIC_LVR), &v);
	report(!gp && v == xapic_ver,
	       "0x803 version 0x%lx = xAPIC version 0x%x", v, xapic_ver);
	wrmsr(X2(APIC_TPR), 0x47);
	report(rdmsr(X2(APIC_TPR)) == 0x47, "0x808 TPR write/read 0x47");
	report(rdmsr(X2(APIC_PPR)) == 0x47, "0x80A PPR = TPR (0x%lx)",
	       rdmsr(X2(APIC_PPR)));
	expect_wrmsr_gp(X2(APIC_TPR), 0x100, "TPR reserved bit 8");
	report(rdmsr(X2(APIC_TPR)) == 0x47, "TPR unchanged after #GP");
	wrmsr(X2(APIC_TPR), 0);
	wrmsr(X2(APIC_SPIV), 0x1ff);
	report(rdmsr(X2(APIC_SPIV)) == 0x1ff, "0x80F SPIV write/read 0x1ff");
	expect_wrmsr_gp(X2(APIC_SPIV), 0x1ff | (1ull << 32), "SPIV bit 32");
	uint32_t ldr = ((initial_id >> 4) << 16) | (1u << (initial_id & 0xf));
	report(rdmsr(X2(APIC_LDR)) == ldr, "0x80D LDR 0x%lx derived from ID "
					   "(0x%x)",
	       rdmsr(X2(APIC_LDR)), ldr);

	/* read-only registers */
	expect_wrmsr_gp(X2(APIC_ID), 0, "ID is read-only");
	expect_wrmsr_gp(X2(APIC_LVR), 0, "version is read-only");
	expect_wrmsr_gp(X2(APIC_LDR), 0, "LDR is read-only");
	expect_wrmsr_gp(X2(APIC_PPR), 0, "PPR is read-only");
	expect_wrmsr_gp(X2(APIC_ISR), 0, "ISR is read-only");
	expect_wrmsr_gp(X2(APIC_IRR), 0, "IRR is read-only");
	expect_wrmsr_gp(X2(APIC_TMCCT), 0, "current count is read-only");
	/* registers that do not exist in x2APIC mode */
	expect_rdmsr_gp(0x804, "reserved");
	expect_rdmsr_gp(X2(APIC_APR), "APR");
	expect_rdmsr_gp(X2(APIC_DFR), "DFR");
	expect_rdmsr_gp(X2(APIC_ICR2), "ICR2");
	expect_wrmsr_gp(X2(APIC_DFR), 0xffffffff, "DFR");
	expect_rdmsr_gp(0x8ff, "reserved");
	/* write-only registers */
	expect_rdmsr_gp(X2(APIC_EOI), "EOI is write-only");
	expect_rdmsr_gp(X2(APIC_SELF_IPI), "SELF_IPI is write-only");
	/* reserved bits */
	expect_wrmsr_gp(X2(APIC_EOI), 1, "non-zero EOI");
	expect_wrmsr_gp(X2(APIC_ESR), 1, "non-zero ESR");
	expect_wrmsr_gp(X2(APIC_LVTPC), 1u << 17, "LVTPC reserved bit 17");
	expect_wrmsr_gp(X2(APIC_LVTERR), APIC_DM_NMI, "LVTERR delivery mode");
	expect_wrmsr_gp(X2(APIC_ICR), APIC_DEST_SELF | APIC_ICR_BUSY | 0x40,
		     "ICR bit 12");
	expect_wrmsr_gp(X2(APIC_TDCR), 0x10, "TDCR bit 4");
	expect_wrmsr_gp(X2(APIC_SELF_IPI), 0x100, "SELF_IPI bit 8");
	gp = wrmsr_safe(X2(APIC_ESR), 0) || rdmsr_safe(X2(APIC_ESR), &v);
	report(!gp && v == 0,
	       "ESR zero write and read (0x%lx)", v);
	wrmsr(X2(APIC_LVTPC), APIC_LVT_MASKED | 0x55);
	report(rdmsr(X2(APIC_LVTPC)) == (APIC_LVT_MASKED | 0x55),
	       "LVTPC write/read");
	wrmsr(X2(APIC_LVTPC), APIC_LVT_MASKED);
}

static void test_self_ipi(void)
{
	handle_exception(0x66, irq_handler);
	handle_exception(0x67, irq_handler);
	irq_count = 0;
	isr_seen = false;
	wrmsr(X2(APIC_SELF_IPI), 0x66);
	report(apic_vector_bit(APIC_IRR, 0x66), "SELF_IPI 0x66 sets IRR");
	report(irq_count == 0, "not delivered with IF=0");
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 1 && last_vector == 0x66 && isr_seen,
	       "SELF_IPI delivered, ISR set in the handler");
	report(!apic_vector_bit(APIC_ISR, 0x66) &&
		       !apic_vector_bit(APIC_IRR, 0x66),
	       "EOI through 0x80B cleared ISR");

	/* 64-bit ICR: physical destination = our 32-bit ID, no shorthand */
	irq_count = 0;
	wrmsr(X2(APIC_ICR), ((uint64_t)rdmsr(X2(APIC_ID)) << 32) | 0x67);
	report(rdmsr(X2(APIC_ICR)) ==
		       (((uint64_t)rdmsr(X2(APIC_ID)) << 32) | 0x67),
	       "0x830 ICR reads back all 64 bits");
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 1 && last_vector == 0x67,
	       "ICR physical IPI to our ID delivered");
	irq_count = 0;
	wrmsr(X2(APIC_ICR), (0xffffffffull << 32) | 0x67);
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 1, "ICR broadcast IPI delivered");
	irq_count = 0;
	wrmsr(X2(APIC_ICR), APIC_DEST_SELF | 3);
	wrmsr(X2(APIC_ESR), 0);
	report(rdmsr(X2(APIC_ESR)) & (1u << 5),
	       "illegal vector: ESR send-illegal-vector");
	wrmsr(X2(APIC_ESR), 0);
}

int main(struct multiboot_info *mbi)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE), v;

	printf("lapic_x2apic test\n");
	if (!cpu_has_x2apic()) {
		report(wrmsr_safe(MSR_IA32_APICBASE, base | APIC_BASE_EXTD) &&
			       faulted_with(GP_VECTOR),
		       "no x2APIC in CPUID: EXTD -> #GP");
		report_skip("x2APIC not advertised");
		return report_summary();
	}
	uint32_t xapic_ver = xapic_read(APIC_LVR);
	uint32_t initial_id = cpuid(1).b >> 24;

	expect_rdmsr_gp(X2(APIC_ID), "x2APIC MSR in xAPIC mode");
	expect_wrmsr_gp(X2(APIC_TPR), 0, "x2APIC MSR in xAPIC mode");
	report(apic_to_x2apic(), "APIC_BASE.EXTD set");
	base = rdmsr(MSR_IA32_APICBASE);
	report((base & (APIC_BASE_EN | APIC_BASE_EXTD)) ==
		       (APIC_BASE_EN | APIC_BASE_EXTD),
	       "APIC_BASE 0x%lx: EN and EXTD", base);
	report(xapic_read(APIC_LVR) == 0xffffffff,
	       "xAPIC MMIO page reads all-ones in x2APIC mode (not decoded)");
	test_registers(xapic_ver, initial_id);
	test_self_ipi();

	expect_wrmsr_gp(MSR_IA32_APICBASE, base & ~APIC_BASE_EXTD,
		     "x2APIC -> xAPIC");
	report(rdmsr(MSR_IA32_APICBASE) == base, "still in x2APIC mode");
	report(!wrmsr_safe(MSR_IA32_APICBASE,
			   base & ~(APIC_BASE_EN | APIC_BASE_EXTD)),
	       "x2APIC -> disabled");
	expect_rdmsr_gp(X2(APIC_ID), "x2APIC MSR while disabled");
	expect_wrmsr_gp(MSR_IA32_APICBASE, base, "disabled -> x2APIC");
	report(!wrmsr_safe(MSR_IA32_APICBASE, base & ~APIC_BASE_EXTD),
	       "disabled -> xAPIC");
	report(xapic_read(APIC_LVR) == xapic_ver &&
		       xapic_read(APIC_SPIV) == 0xff,
	       "xAPIC page back, registers reset (SPIV 0x%x)",
	       xapic_read(APIC_SPIV));
	report(rdmsr_safe(X2(APIC_ID), &v), "x2APIC MSRs gone again");
	return report_summary();
}
