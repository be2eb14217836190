/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * xAPIC MMIO register semantics: APIC_BASE MSR, ID, version, TPR/PPR, SPIV
 * software enable/disable and LVT mask forcing, ESR write-before-read,
 * LDR/DFR, ICR read-back and delivery status, read-only and reserved
 * registers, hardware disable through APIC_BASE.EN.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

static volatile int irq_count;

static void irq_handler(struct ex_regs *regs)
{
	irq_count++;
	apic_eoi();
}

static void test_apic_base(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);

	report_info("IA32_APIC_BASE 0x%lx", base);
	report((base & ~0xfffull) == APIC_DEFAULT_BASE,
	       "APIC_BASE address 0xfee00000");
	report(base & APIC_BASE_BSP, "APIC_BASE.BSP (bit 8) set");
	report(base & APIC_BASE_EN, "APIC_BASE.EN (bit 11) set");
	report(!(base & APIC_BASE_EXTD), "APIC_BASE.EXTD (bit 10) clear at boot");
	report(wrmsr_safe(MSR_IA32_APICBASE, base | 1) &&
		       faulted_with(GP_VECTOR),
	       "APIC_BASE reserved bit 0 -> #GP");
	report(wrmsr_safe(MSR_IA32_APICBASE, base | (1ull << 9)) &&
		       faulted_with(GP_VECTOR),
	       "APIC_BASE reserved bit 9 -> #GP");
	report(wrmsr_safe(MSR_IA32_APICBASE, base | (1ull << 62)) &&
		       faulted_with(GP_VECTOR),
	       "APIC_BASE bit 62 (above MAXPHYADDR) -> #GP");
	report(wrmsr_safe(MSR_IA32_APICBASE,
			  (base & ~APIC_BASE_EN) | APIC_BASE_EXTD) &&
		       faulted_with(GP_VECTOR),
	       "APIC_BASE EN=0 EXTD=1 (invalid state) -> #GP");
	report(rdmsr(MSR_IA32_APICBASE) == base, "APIC_BASE unchanged");
}

static void test_id_version(void)
{
	uint32_t id = xapic_read(APIC_ID);
	uint32_t initial = cpuid(1).b >> 24;
	uint32_t ver = xapic_read(APIC_LVR);

	report(id >> 24 == initial && !(id & 0x00ffffff),
	       "ID 0x%x = CPUID.1:EBX[31:24] (%u) << 24", id, initial);
	report((ver & 0xff) >= 0x10 && (ver & 0xff) <= 0x15,
	       "version 0x%x: integrated APIC (0x1x)", ver);
	report(((ver >> 16) & 0xff) == 5,
	       "version: max LVT entry %u = 5 (LVTPC present)",
	       (ver >> 16) & 0xff);
	xapic_write(APIC_LVR, ~ver);
	report(xapic_read(APIC_LVR) == ver, "version is read-only");
	xapic_write(APIC_ID, 0x05000000);
	report(xapic_read(APIC_ID) == 0x05000000, "ID bits 31:24 writable "
						  "(read 0x%x)",
	       xapic_read(APIC_ID));
	xapic_write(APIC_ID, 0x00ffffff | id);
	report(xapic_read(APIC_ID) == id, "ID bits 23:0 ignored");
	xapic_write(APIC_ID, id);
}

static void test_tpr_ppr(void)
{
	xapic_write(APIC_TPR, 0x35);
	report(xapic_read(APIC_TPR) == 0x35, "TPR write 0x35 reads back");
	report(xapic_read(APIC_PPR) == 0x35, "PPR 0x%x = TPR with ISR empty",
	       xapic_read(APIC_PPR));
	xapic_write(APIC_TPR, 0xffffff12);
	report(xapic_read(APIC_TPR) == 0x12, "TPR keeps bits 7:0 only (0x%x)",
	       xapic_read(APIC_TPR));
	xapic_write(APIC_PPR, 0xf0);
	report(xapic_read(APIC_PPR) == 0x12, "PPR is read-only");
	xapic_write(APIC_TPR, 0);
	report(xapic_read(APIC_PPR) == 0, "PPR 0 with TPR 0");
}

static void test_spiv(void)
{
	uint32_t spiv = xapic_read(APIC_SPIV);

	report(spiv == 0xff, "SPIV power-up value 0x%x = 0xff (disabled)",
	       spiv);
	/* LVT masks cannot be cleared while software-disabled */
	xapic_write(APIC_LVT0, 0x40);
	report(xapic_read(APIC_LVT0) == (APIC_LVT_MASKED | 0x40),
	       "LVT0 write while disabled stays masked (0x%x)",
	       xapic_read(APIC_LVT0));
	xapic_write(APIC_SPIV, APIC_SPIV_ENABLE | 0xef);
	report(xapic_read(APIC_SPIV) == (APIC_SPIV_ENABLE | 0xef),
	       "SPIV enable with vector 0xef reads back");
	report(xapic_read(APIC_LVT0) == (APIC_LVT_MASKED | 0x40),
	       "enabling does not unmask LVT0");
	xapic_write(APIC_LVT0, 0x40);
	xapic_write(APIC_LVTPC, 0x41);
	xapic_write(APIC_LVTT, 0x42);
	report(xapic_read(APIC_LVT0) == 0x40 && xapic_read(APIC_LVTPC) == 0x41 &&
		       xapic_read(APIC_LVTT) == 0x42,
	       "LVTs unmask while enabled");
	xapic_write(APIC_SPIV, 0xff);
	report(xapic_read(APIC_LVT0) == (APIC_LVT_MASKED | 0x40) &&
		       xapic_read(APIC_LVTPC) == (APIC_LVT_MASKED | 0x41) &&
		       xapic_read(APIC_LVTT) == (APIC_LVT_MASKED | 0x42),
	       "software disable masks every LVT (0x%x 0x%x 0x%x)",
	       xapic_read(APIC_LVT0), xapic_read(APIC_LVTPC),
	       xapic_read(APIC_LVTT));

	/* a software-disabled APIC does not accept fixed IPIs */
	handle_exception(0x50, irq_handler);
	irq_count = 0;
	xapic_write(APIC_ICR, APIC_DEST_SELF | 0x50);
	report(!apic_vector_bit(APIC_IRR, 0x50),
	       "self-IPI while software-disabled is not accepted");
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 0, "no interrupt while software-disabled");
	apic_sw_enable();
	report(xapic_read(APIC_SPIV) == (APIC_SPIV_ENABLE | 0xff),
	       "SPIV 0x1ff after enable");
}

static void test_lvt_bits(void)
{
	xapic_write(APIC_LVTPC, 0xffffffff);
	report(xapic_read(APIC_LVTPC) == 0x107ff,
	       "LVTPC writable bits 0x107ff (read 0x%x)",
	       xapic_read(APIC_LVTPC));
	xapic_write(APIC_LVTERR, 0xffffffff);
	report(xapic_read(APIC_LVTERR) == 0x100ff,
	       "LVTERR writable bits 0x100ff (read 0x%x)",
	       xapic_read(APIC_LVTERR));
	xapic_write(APIC_LVTT, 0xffffffff & ~(1u << 18));
	report(xapic_read(APIC_LVTT) == 0x300ff,
	       "LVTT periodic, masked, vector 0xff (read 0x%x)",
	       xapic_read(APIC_LVTT));
	xapic_write(APIC_LVT1, 0xffffffff);
	report(xapic_read(APIC_LVT1) == 0x1a7ff,
	       "LVT1 writable bits 0x1a7ff (read 0x%x)",
	       xapic_read(APIC_LVT1));
	xapic_write(APIC_TDCR, 0xffffffff);
	report(xapic_read(APIC_TDCR) == 0xb, "TDCR keeps bits 3,1,0 (0x%x)",
	       xapic_read(APIC_TDCR));
	xapic_write(APIC_TDCR, 0);
	for (unsigned r = APIC_LVTT; r <= APIC_LVTERR; r += 0x10)
		xapic_write(r, APIC_LVT_MASKED);
}

static void test_esr(void)
{
	xapic_write(APIC_ESR, 0);
	report(xapic_read(APIC_ESR) == 0, "ESR 0 after clearing write");
	/* illegal vector 3 sent to ourselves: "send illegal vector" (bit 5) */
	xapic_write(APIC_ICR, APIC_DEST_SELF | 3);
	report(xapic_read(APIC_ESR) == 0,
	       "ESR still 0 before the write that latches it");
	xapic_write(APIC_ESR, 0);
	uint32_t esr = xapic_read(APIC_ESR);
	report(esr & (1u << 5), "ESR send-illegal-vector after the write (0x%x)",
	       esr);
	xapic_write(APIC_ESR, 0);
	report(xapic_read(APIC_ESR) == 0, "next ESR write clears it (0x%x)",
	       xapic_read(APIC_ESR));
}

static void test_ldr_dfr(void)
{
	report(xapic_read(APIC_DFR) == 0xffffffff, "DFR power-up 0x%x (flat)",
	       xapic_read(APIC_DFR));
	xapic_write(APIC_DFR, 0x0fffffff);
	report(xapic_read(APIC_DFR) == 0x0fffffff,
	       "DFR cluster model reads 0x%x", xapic_read(APIC_DFR));
	xapic_write(APIC_DFR, 0);
	report(xapic_read(APIC_DFR) == 0x0fffffff,
	       "DFR bits 27:0 read as ones (0x%x)", xapic_read(APIC_DFR));
	xapic_write(APIC_DFR, 0xffffffff);
	report(xapic_read(APIC_LDR) == 0, "LDR power-up 0");
	xapic_write(APIC_LDR, 0x010000ff);
	report(xapic_read(APIC_LDR) == 0x01000000,
	       "LDR keeps bits 31:24 (0x%x)", xapic_read(APIC_LDR));

	/* flat logical destination matching our LDR reaches us */
	handle_exception(0x51, irq_handler);
	irq_count = 0;
	xapic_write(APIC_ICR2, 0x01000000);
	xapic_write(APIC_ICR, APIC_DEST_LOGICAL | 0x51);
	report(apic_vector_bit(APIC_IRR, 0x51),
	       "logical IPI to LDR bit 0 accepted");
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 1, "logical IPI delivered");
	xapic_write(APIC_ICR2, 0x02000000);
	xapic_write(APIC_ICR, APIC_DEST_LOGICAL | 0x51);
	report(!apic_vector_bit(APIC_IRR, 0x51),
	       "logical IPI to another LDR bit not accepted");
	xapic_write(APIC_LDR, 0);
}

static void test_icr(void)
{
	handle_exception(0x52, irq_handler);
	irq_count = 0;
	xapic_write(APIC_ICR2, 0xffffffff);
	report(xapic_read(APIC_ICR2) == 0xff000000, "ICR2 keeps bits 31:24 "
						    "(0x%x)",
	       xapic_read(APIC_ICR2));
	xapic_write(APIC_ICR2, 0);
	xapic_write(APIC_ICR, 0x52); /* physical, destination 0 = our ID */
	uint32_t icr = xapic_read(APIC_ICR);
	report((icr & 0xfff) == 0x52, "ICR reads back vector 0x52 (0x%x)", icr);
	report(!(icr & APIC_ICR_BUSY), "ICR delivery status reads 0");
	report(apic_vector_bit(APIC_IRR, 0x52), "physical IPI to our ID in IRR");
	report(!apic_vector_bit(APIC_TMR, 0x52), "edge IPI: TMR bit clear");
	sti();
	asm volatile("nop");
	cli();
	report(irq_count == 1 && !apic_vector_bit(APIC_IRR, 0x52) &&
		       !apic_vector_bit(APIC_ISR, 0x52),
	       "physical IPI delivered and EOIed");
	xapic_write(APIC_ICR2, 0x07000000);
	xapic_write(APIC_ICR, 0x52);
	report(!apic_vector_bit(APIC_IRR, 0x52),
	       "physical IPI to another ID not accepted");
	xapic_write(APIC_ICR2, 0);
	xapic_write(APIC_ICR, APIC_DEST_ALL_BUT | 0x52);
	report(!apic_vector_bit(APIC_IRR, 0x52),
	       "all-excluding-self IPI not accepted");
	xapic_write(APIC_ICR, 0xffffffff & ~(3u << 8 | 1u << 10 | 3u << 18));
	report(xapic_read(APIC_ICR) == (0x000ccfff & ~(3u << 8 | 1u << 10 | 3u << 18)),
	       "ICR writable bits (read 0x%x)", xapic_read(APIC_ICR));
	sti();
	asm volatile("nop");
	cli();
	irq_count = 0;
}

static void test_read_only(void)
{
	xapic_write(APIC_IRR + 0x10, 0xffffffff);
	xapic_write(APIC_ISR + 0x10, 0xffffffff);
	xapic_write(APIC_TMR + 0x10, 0xffffffff);
	report(xapic_read(APIC_IRR + 0x10) == 0 &&
		       xapic_read(APIC_ISR + 0x10) == 0 &&
		       xapic_read(APIC_TMR + 0x10) == 0,
	       "IRR/ISR/TMR ignore writes");
	xapic_write(APIC_TMCCT, 12345);
	report(xapic_read(APIC_TMCCT) == 0, "timer current count ignores "
					    "writes");
	xapic_write(APIC_APR, 0xff);
	report(xapic_read(APIC_APR) == 0, "APR ignores writes (0x%x)",
	       xapic_read(APIC_APR));
	xapic_write(0x40, 0x12345678);
	xapic_write(0x3c0, 0x12345678);
	report(xapic_read(0x40) == 0 && xapic_read(0x3c0) == 0 &&
		       xapic_read(0x50) == 0,
	       "reserved offsets read 0");
	report(xapic_read(APIC_EOI) == 0, "EOI reads 0");
}

static void test_hw_disable(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);

	xapic_write(APIC_TPR, 0x20);
	wrmsr(MSR_IA32_APICBASE, base & ~APIC_BASE_EN);
	report(!(rdmsr(MSR_IA32_APICBASE) & APIC_BASE_EN),
	       "APIC_BASE.EN cleared");
	report(xapic_read(APIC_LVR) == 0xffffffff &&
		       xapic_read(APIC_SPIV) == 0xffffffff,
	       "MMIO reads all-ones while hardware-disabled (not decoded)");
	wrmsr(MSR_IA32_APICBASE, base);
	report(rdmsr(MSR_IA32_APICBASE) == base, "APIC_BASE.EN set again");
	report(xapic_read(APIC_SPIV) == 0xff && xapic_read(APIC_TPR) == 0 &&
		       xapic_read(APIC_LVTPC) == APIC_LVT_MASKED,
	       "hardware disable reset the registers (SPIV 0x%x TPR 0x%x "
	       "LVTPC 0x%x)",
	       xapic_read(APIC_SPIV), xapic_read(APIC_TPR),
	       xapic_read(APIC_LVTPC));
	report((xapic_read(APIC_LVR) >> 16 & 0xff) == 5,
	       "version readable again");
}

int main(struct multiboot_info *mbi)
{
	printf("lapic_xapic test\n");
	test_apic_base();
	test_id_version();
	test_spiv();
	test_tpr_ppr();
	test_lvt_bits();
	test_esr();
	test_ldr_dfr();
	test_icr();
	test_read_only();
	test_hw_disable();
	return report_summary();
}
