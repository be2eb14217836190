/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SYSCALL outside 64-bit code (Intel SDM / AMD APM "SYSCALL"): from
 * compatibility mode at CPL3, Intel CPUs raise #UD; AMD CPUs enter the
 * kernel at CSTAR (not LSTAR) with RCX = the next instruction, R11 = RFLAGS
 * (RF clear) and CS/SS from STAR[47:32].  The vendor comes from CPUID.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

volatile uint64_t cstar_rcx, cstar_r11, cstar_cs, cstar_ss, cstar_hits;
extern char cstar_entry[], compat_syscall_next[];

/* CSTAR: CPL0, 64-bit kernel code, still on the user stack */
asm(".text\n"
    "cstar_entry:\n"
    "	mov %rcx, cstar_rcx(%rip)\n"
    "	mov %r11, cstar_r11(%rip)\n"
    "	mov %cs, %rax\n"
    "	mov %rax, cstar_cs(%rip)\n"
    "	mov %ss, %rax\n"
    "	mov %rax, cstar_ss(%rip)\n"
    "	incq cstar_hits(%rip)\n"
    "	mov $0xc57a, %edi\n"
    "	jmp user_return_to_kernel\n");

static uint64_t lstar_handler(uint64_t nr, uint64_t arg)
{
	return nr == 3 && arg == 4 ? 0x15a7 : 0;
}

static uint64_t syscall64(uint64_t arg)
{
	return do_syscall(3, 4);
}

/* CPL3, 64-bit: far return into the 32-bit user code segment, SYSCALL there */
static uint64_t compat_syscall(uint64_t arg)
{
	asm volatile("pushq $" "0x1b" "\n\t"
		     "lea 1f(%%rip), %%rax\n\t"
		     "pushq %%rax\n\t"
		     "lretq\n\t"
		     ".code32\n"
		     "1:	mov $0x1234, %%eax\n\t"
		     "syscall\n\t"
		     ".global compat_syscall_next\n"
		     "compat_syscall_next:\n\t"
		     "ud2\n\t"
		     ".code64\n"
		     ::: "rax", "rcx", "r11", "memory");
	return 0;
}

int main(struct multiboot_info *mbi)
{
	bool amd = cpu_is_amd();
	uint64_t r;

	printf("syscall_modes test\n");
	report_info("vendor %s", amd ? "AMD" : "Intel");
	setup_syscall(lstar_handler);
	wrmsr(MSR_CSTAR, (uintptr_t)cstar_entry);
	report(USER_CS32 == 0x1b && KERNEL_CS == 0x08, "GDT layout as expected");

	r = run_in_user(compat_syscall, 0, 0, false);
	if (amd) {
		report(r == 0xc57a && cstar_hits == 1, "compatibility-mode SYSCALL enters at CSTAR (0x%lx)", r);
		report(cstar_rcx == (uintptr_t)compat_syscall_next,
		       "RCX = the next instruction (0x%lx)", cstar_rcx);
		report((cstar_r11 & 0x2) && !(cstar_r11 & 0x10000),
		       "R11 = RFLAGS (0x%lx)", cstar_r11);
		report(cstar_cs == KERNEL_CS && cstar_ss == KERNEL_CS + 8,
		       "CS/SS from STAR[47:32] (0x%lx/0x%lx)", cstar_cs, cstar_ss);
	} else {
		report(r == ~0ull && user_fault_vector == UD_VECTOR && cstar_hits == 0,
		       "compatibility-mode SYSCALL -> #UD (vector %d)", user_fault_vector);
	}
	/* 64-bit SYSCALL still goes to LSTAR */
	r = run_in_user(syscall64, 0, 0, false);
	report(r == 0x15a7 && cstar_hits == (amd ? 1u : 0u),
	       "64-bit SYSCALL at CPL3 enters at LSTAR (0x%lx)", r);
	/* EFER.SCE clear: #UD, delivered with RIP at the SYSCALL */
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) & ~EFER_SCE);
	r = run_in_user(syscall64, 0, 0, false);
	report(r == ~0ull && user_fault_vector == UD_VECTOR, "SYSCALL with EFER.SCE clear -> #UD (vector %d)",
	       user_fault_vector);
	return report_summary();
}
