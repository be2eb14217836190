/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Multiboot ELF64: the guest's own 32->64 switch (lib/entry_mb64.S). */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

int main(struct multiboot_info *mbi)
{
	uint64_t efer = rdmsr(MSR_EFER);
	uint64_t gs = rdmsr(MSR_GS_BASE);
	uint64_t want = ((uint64_t)BOOT_GS_BASE_HI << 32) | BOOT_GS_BASE_LO;

	printf("Hello from boot64\n");
	mbi_print(mbi);
	report(boot_magic == MULTIBOOT_BOOT_MAGIC, "EAX magic 0x%x at entry",
	       boot_magic);
	report(efer & EFER_LME, "EFER.LME set (0x%lx)", efer);
	report(efer & EFER_LMA, "EFER.LMA set: long mode active");
	report((read_cr0() & (X86_CR0_PG | X86_CR0_PE)) ==
		       (X86_CR0_PG | X86_CR0_PE) && (read_cr4() & X86_CR4_PAE),
	       "CR0.PG, CR0.PE, CR4.PAE");
	report(read_cs() == KERNEL_CS, "CS is the 64-bit code selector");
	report(gs == want, "GS_BASE written in 32-bit mode survives (0x%lx)",
	       gs);
	/* the GS base is really used for %gs: accesses */
	static uint64_t gs_probe = 0x1122334455667788ull;
	uint64_t old = gs, v;
	wrmsr(MSR_GS_BASE, (uintptr_t)&gs_probe);
	asm volatile("mov %%gs:0, %0" : "=r"(v));
	wrmsr(MSR_GS_BASE, old);
	report(v == gs_probe, "%%gs:0 reads through GS_BASE");
	/* identity map covers the top of the 4 GiB map */
	report(get_pte(0xfffff000ul) != NULL, "identity map reaches 4 GiB");
	report(mbi->mem_lower == 640, "mem_lower == 640 (%u)", mbi->mem_lower);
	return report_summary();
}
