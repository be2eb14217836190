/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SYSENTER and SYSEXIT in IA-32e mode (Intel SDM vol. 2 "SYSENTER",
 * "SYSEXIT"; AMD APM vol. 3).  Intel: SYSENTER from 64-bit and from
 * compatibility-mode user code enters 64-bit kernel code at SYSENTER_EIP
 * with RSP = SYSENTER_ESP, CS = SYSENTER_CS and SS = CS + 8, RFLAGS.IF
 * cleared and nothing saved; SYSEXIT returns to 64-bit user code (REX.W:
 * CS = SYSENTER_CS + 32, SS = + 40) or to compatibility mode (+ 16, + 24),
 * RPL 3, RSP = RCX, RIP = RDX, as fixed flat segments (the GDT is not read:
 * here SS + 40 is the TSS descriptor's selector).  #GP(0): SYSENTER_CS[15:2]
 * = 0, SYSEXIT at CPL3, SYSEXIT to a non-canonical RCX/RDX.  AMD: both are
 * #UD in long mode.  (Legacy protected mode: cr_checks' trip out of long mode.)
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define NONCANONICAL 0x0000800000000000ull

/* what the kernel entry saw, and what user code saw after SYSEXIT */
volatile uint64_t se_rsp, se_rcx, se_rdx, se_cs, se_ss, se_rflags, se_hits, se_mode;
volatile uint64_t u_cs, u_ss, u_rsp;
uint8_t se_stack[4096] __attribute__((aligned(16)));
extern char sysenter_entry[], user64_cont[], user32_cont[];

/*
 * The SYSENTER_EIP entry (CPL0, 64-bit): records the state, then by se_mode:
 * 0 ends the CPL3 run (run_in_user returns 0x5e), 1 SYSEXITs to user64_cont
 * and 2 to user32_cont (compatibility mode), with RSP = the RCX user code
 * passed.  user64_cont ends the run with 0x64, user32_cont SYSENTERs again.
 */
asm(".text\n"
    ".code64\n"
    "sysenter_entry:\n"
    "	mov %rsp, se_rsp(%rip)\n"
    "	mov %rcx, se_rcx(%rip)\n"
    "	mov %rdx, se_rdx(%rip)\n"
    "	mov %cs, %eax\n"
    "	mov %rax, se_cs(%rip)\n"
    "	mov %ss, %eax\n"
    "	mov %rax, se_ss(%rip)\n"
    "	pushfq\n"
    "	popq se_rflags(%rip)\n"
    "	incq se_hits(%rip)\n"
    "	mov se_mode(%rip), %rax\n"
    "	movq $0, se_mode(%rip)\n"
    "	cmp $1, %rax\n"
    "	je 1f\n"
    "	cmp $2, %rax\n"
    "	je 2f\n"
    "	mov $0x5e, %edi\n"
    "	jmp user_return_to_kernel\n"
    "1:	lea user64_cont(%rip), %rdx\n"
    "	.byte 0x48, 0x0f, 0x35\n"		/* sysexit with REX.W */
    "2:	mov $user32_cont, %edx\n"
    "	sysexitl\n"
    "user64_cont:\n"
    "	mov %cs, %eax\n"
    "	mov %rax, u_cs(%rip)\n"
    "	mov %ss, %eax\n"
    "	mov %rax, u_ss(%rip)\n"
    "	mov %rsp, u_rsp(%rip)\n"
    "	mov $0x64, %edi\n"
    "	int $0x81\n"			/* USER_RET_VECTOR */
    ".code32\n"
    "user32_cont:\n"
    "	mov %cs, %eax\n"
    "	mov %eax, u_cs\n"
    "	mov %ss, %eax\n"
    "	mov %eax, u_ss\n"
    "	mov %esp, u_rsp\n"
    "	mov %esp, %ecx\n"
    "	sysenter\n"
    ".code64\n");

/* CPL3: SYSENTER with RCX = RSP (the stack SYSEXIT returns to) and RDX = 0x1234; mode 0 (run with
 * IOPL 3) sets IF first */
static uint64_t user_sysenter(uint64_t mode)
{
	se_mode = mode;
	if (mode == 0)
		sti();
	asm volatile("mov %%rsp, %%rcx\n\t"
		     "mov $0x1234, %%edx\n\t"
		     "sysenter" ::: "rcx", "rdx", "memory");
	return 0; /* not reached */
}

/* CPL3: SYSENTER or SYSEXIT that must fault; the vector */
static uint64_t user_try(uint64_t sysexit)
{
	exception_reset();
	if (sysexit)
		asm volatile(ASM_TRY_BEGIN "sysexitl" ASM_TRY_END ::: "memory");
	else
		asm volatile(ASM_TRY_BEGIN "sysenter" ASM_TRY_END ::: "memory");
	return (uint64_t)exception_vector();
}

/* CPL3, 64-bit: far return into the 32-bit user code segment, SYSENTER there */
static uint64_t compat_sysenter(uint64_t arg)
{
	asm volatile("pushq $0x1b\n\t"
		     "lea 1f(%%rip), %%rax\n\t"
		     "pushq %%rax\n\t"
		     "lretq\n\t"
		     ".code32\n"
		     "1:	sysenter\n\t"
		     "ud2\n\t"
		     ".code64\n" ::: "rax", "memory");
	return 0;
}

/* CPL0: SYSEXIT (REX.W if to64) with RCX/RDX; returns the vector, -1 if it did not fault */
static int kernel_sysexit(bool to64, uint64_t rcx, uint64_t rdx)
{
	exception_reset();
	if (to64)
		asm volatile(ASM_TRY_BEGIN ".byte 0x48, 0x0f, 0x35" ASM_TRY_END : : "c"(rcx), "d"(rdx) : "memory");
	else
		asm volatile(ASM_TRY_BEGIN "sysexitl" ASM_TRY_END : : "c"(rcx), "d"(rdx) : "memory");
	return exception_vector();
}

static void check_intel(void)
{
	uint64_t r, stack_top = (uintptr_t)(se_stack + sizeof(se_stack));

	r = run_in_user(user_sysenter, 0, X86_EFLAGS_IOPL, false);
	report(r == 0x5e && se_hits == 1, "SYSENTER from 64-bit code enters at SYSENTER_EIP (0x%lx)", r);
	report(se_cs == KERNEL_CS && se_ss == KERNEL_DS, "CS = SYSENTER_CS, SS = CS + 8 (0x%lx/0x%lx)", se_cs,
	       se_ss);
	report(se_rsp == stack_top, "RSP = SYSENTER_ESP (0x%lx)", se_rsp);
	report(!(se_rflags & X86_EFLAGS_IF) && (se_rflags & X86_EFLAGS_IOPL) == X86_EFLAGS_IOPL,
	       "RFLAGS.IF cleared, IOPL kept (0x%lx)", se_rflags);
	report(se_rdx == 0x1234 && se_rcx >= (uintptr_t)user_stack && se_rcx <= (uintptr_t)user_stack_top,
	       "RCX and RDX untouched (0x%lx/0x%lx)", se_rcx, se_rdx);

	r = run_in_user(user_sysenter, 1, 0, false);
	report(r == 0x64 && se_hits == 2, "SYSEXIT with REX.W returns to 64-bit code at RDX (0x%lx)", r);
	report(u_cs == KERNEL_CS + 32 + 3 && u_ss == KERNEL_CS + 40 + 3,
	       "CS = SYSENTER_CS + 32, SS = + 40, RPL 3 (0x%lx/0x%lx)", u_cs, u_ss);
	report(u_rsp == se_rcx, "RSP = RCX (0x%lx)", u_rsp);

	u_cs = u_ss = 0;
	r = run_in_user(user_sysenter, 2, 0, false);
	report(u_cs == USER_CS32 && u_ss == USER_DS, "SYSEXIT returns to compatibility mode: CS/SS 0x%lx/0x%lx",
	       u_cs, u_ss);
	report(r == 0x5e && se_hits == 4 && se_cs == KERNEL_CS,
	       "SYSENTER from compatibility mode enters 64-bit code (0x%lx, CS 0x%lx)", r, se_cs);

	report(run_in_user(user_try, 1, 0, false) == GP_VECTOR, "SYSEXIT at CPL3 -> #GP");
	report(kernel_sysexit(true, (uintptr_t)user_stack_top, NONCANONICAL) == GP_VECTOR,
	       "SYSEXIT to a non-canonical RDX -> #GP");
	report(kernel_sysexit(true, NONCANONICAL, (uintptr_t)user64_cont) == GP_VECTOR,
	       "SYSEXIT with a non-canonical RCX -> #GP");
	for (uint64_t cs = 0; cs < 4; cs += 3) {
		wrmsr(MSR_IA32_SYSENTER_CS, cs);
		report(run_in_user(user_try, 0, 0, false) == GP_VECTOR, "SYSENTER with SYSENTER_CS = %lu -> #GP", cs);
		report(kernel_sysexit(false, 0, 0) == GP_VECTOR, "SYSEXIT with SYSENTER_CS = %lu -> #GP", cs);
	}
}

static void check_amd(void)
{
	uint64_t r;

	report(run_in_user(user_try, 0, 0, false) == UD_VECTOR, "AMD: SYSENTER from 64-bit code -> #UD");
	r = run_in_user(compat_sysenter, 0, 0, false);
	report(r == ~0ull && user_fault_vector == UD_VECTOR, "AMD: SYSENTER from compatibility mode -> #UD (vector %d)",
	       user_fault_vector);
	report(kernel_sysexit(true, (uintptr_t)user_stack_top, (uintptr_t)user64_cont) == UD_VECTOR,
	       "AMD: SYSEXIT in long mode -> #UD");
	report(run_in_user(user_try, 1, 0, false) == UD_VECTOR, "AMD: SYSEXIT at CPL3 in long mode -> #UD");
	report(se_hits == 0, "the entry point never ran");
}

int main(struct multiboot_info *mbi)
{
	bool amd = cpu_is_amd();

	printf("sysenter test\n");
	report_info("vendor %s", amd ? "AMD" : "Intel");
	report(cpuid(1).d & (1u << 11), "CPUID.1:EDX.SEP");
	wrmsr(MSR_IA32_SYSENTER_CS, KERNEL_CS);
	wrmsr(MSR_IA32_SYSENTER_ESP, (uintptr_t)(se_stack + sizeof(se_stack)));
	wrmsr(MSR_IA32_SYSENTER_EIP, (uintptr_t)sysenter_entry);
	if (amd)
		check_amd();
	else
		check_intel();
	return report_summary();
}
