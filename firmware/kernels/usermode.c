/* SPDX-License-Identifier: GPL-2.0-or-later */
/* CPL3 round trips: IRETQ + INT gate, SYSCALL/SYSRET, faults with RSP0 switch. */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

static uint64_t user_cpl(uint64_t arg)
{
	return (read_cs() & 3) | ((uint64_t)(read_ss() & 3) << 8) |
	       (arg << 16);
}

static volatile uint64_t syscall_cpl, syscall_nr;

static uint64_t my_syscall(uint64_t nr, uint64_t arg)
{
	syscall_cpl = read_cs() & 3;
	syscall_nr = nr;
	return arg * 2 + 1;
}

static uint64_t user_syscall(uint64_t arg)
{
	uint64_t r = do_syscall(7, arg);
	return r == arg * 2 + 1 && (read_cs() & 3) == 3;
}

/* #GP at CPL3 handled by a CPL0 handler that skips the instruction */
static volatile uint64_t gp_frame, gp_cs, gp_ss, gp_rsp, gp_error, gp_hits;
static volatile uint64_t gp_handler_rsp;

static void user_gp_handler(struct ex_regs *regs)
{
	uint64_t rsp;

	asm volatile("mov %%rsp, %0" : "=r"(rsp));
	gp_handler_rsp = rsp;
	gp_frame = (uintptr_t)regs;
	gp_cs = regs->cs;
	gp_ss = regs->ss;
	gp_rsp = regs->rsp;
	gp_error = regs->error_code;
	gp_hits++;
	regs->rip += 1; /* cli is one byte */
}

static uint64_t user_cli(uint64_t arg)
{
	asm volatile("cli" ::: "memory");
	return arg + 1;
}

static bool on_stack(uint64_t p, uint8_t *lo, uint8_t *hi)
{
	return p >= (uintptr_t)lo && p < (uintptr_t)hi;
}

/* exceptions caught at CPL3 via fixups: returns vector | error << 8 */
static uint64_t user_try_int80(uint64_t arg)
{
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "int $0x80" ASM_TRY_END ::: "memory");
	return (uint64_t)exception_vector() | (exception_error_code() << 8);
}

static uint64_t user_try_priv(uint64_t which)
{
	uint64_t v = 0;
	exception_reset();
	switch (which) {
	case 0:
		asm volatile(ASM_TRY_BEGIN "mov %%cr0, %0" ASM_TRY_END
			     : "+r"(v) : : "memory");
		break;
	case 1:
		asm volatile(ASM_TRY_BEGIN "hlt" ASM_TRY_END ::: "memory");
		break;
	case 2:
		asm volatile(ASM_TRY_BEGIN "rdmsr" ASM_TRY_END
			     : "+a"(v)
			     : "c"(MSR_EFER)
			     : "rdx", "memory");
		break;
	case 3:
		asm volatile(ASM_TRY_BEGIN "rdpmc" ASM_TRY_END
			     : "+a"(v)
			     : "c"(0)
			     : "rdx", "memory");
		break;
	}
	return (uint64_t)exception_vector() | (exception_error_code() << 8);
}

static uint8_t kernel_page[4096] __attribute__((aligned(4096)));

static uint64_t user_read(uint64_t addr)
{
	return *(volatile uint8_t *)addr;
}

static uint64_t user_ud(uint64_t arg)
{
	asm volatile("ud2");
	return 0;
}

int main(struct multiboot_info *mbi)
{
	uint64_t r;

	printf("usermode test\n");

	/* IRETQ to CPL3, back through the DPL3 gate */
	r = run_in_user(user_cpl, 0x55, 0, false);
	report((r & 0xff) == 3 && ((r >> 8) & 0xff) == 3 && (r >> 16) == 0x55,
	       "IRETQ to CPL3: CS.RPL 3, SS.RPL 3, argument passed (0x%lx)", r);
	report((read_cs() & 3) == 0 && read_cs() == KERNEL_CS,
	       "back at CPL0 via INT gate (CS 0x%x)", read_cs());
	r = run_in_user(user_cpl, 0x66, 0, false);
	report((r & 3) == 3 && (r >> 16) == 0x66, "second round trip");

	/* SYSCALL/SYSRET */
	setup_syscall(my_syscall);
	report(rdmsr(MSR_EFER) & EFER_SCE, "EFER.SCE set");
	r = run_in_user(user_cpl, 0x77, 0, true);
	report((r & 3) == 3 && (r >> 16) == 0x77 && read_cs() == KERNEL_CS,
	       "CPL3 run ending with SYSCALL returns to CPL0");
	syscall_cpl = 99;
	r = run_in_user(user_syscall, 20, 0, false);
	report(r == 1 && syscall_nr == 7,
	       "SYSCALL from CPL3, SYSRET back to CPL3 with the result");
	report(syscall_cpl == 0, "SYSCALL handler runs at CPL0");

	/* #GP at CPL3: handler on the TSS.RSP0 stack */
	handle_exception(GP_VECTOR, user_gp_handler);
	r = run_in_user(user_cli, 41, 0, false);
	handle_exception(GP_VECTOR, NULL);
	report(gp_hits == 1 && r == 42, "CLI at CPL3 (IOPL 0) -> #GP, resumed");
	report((gp_cs & 3) == 3 && (gp_ss & 3) == 3 && gp_error == 0,
	       "#GP frame: CS 0x%lx SS 0x%lx error 0x%lx", gp_cs, gp_ss,
	       gp_error);
	report(on_stack(gp_frame, rsp0_stack, rsp0_stack_top) &&
		       on_stack(gp_handler_rsp, rsp0_stack, rsp0_stack_top),
	       "handler runs on the TSS.RSP0 stack (frame %lx)", gp_frame);
	report((uint64_t)rsp0_stack_top - gp_frame == sizeof(struct ex_regs),
	       "hardware frame starts at RSP0 (aligned)");
	report(on_stack(gp_rsp, user_stack, user_stack_top),
	       "saved RSP is the user stack (0x%lx)", gp_rsp);

	/* INT n to a DPL0 gate from CPL3: #GP(vector*8+2) */
	r = run_in_user(user_try_int80, 0, 0, false);
	report((r & 0xff) == GP_VECTOR && (r >> 8) == 0x80 * 8 + 2,
	       "INT $0x80 to a DPL0 gate from CPL3: #GP error 0x%lx (want "
	       "0x%x)", r >> 8, 0x80 * 8 + 2);

	static const char *const priv[] = { "MOV from CR0", "HLT", "RDMSR",
					     "RDPMC (CR4.PCE=0)" };
	write_cr4(read_cr4() & ~X86_CR4_PCE);
	for (unsigned i = 0; i < ARRAY_SIZE(priv); i++) {
		r = run_in_user(user_try_priv, i, 0, false);
		report((r & 0xff) == GP_VECTOR && (r >> 8) == 0,
		       "%s at CPL3 -> #GP(0)", priv[i]);
	}

	/* supervisor page read from CPL3: #PF with P|U (error code 5) */
	kernel_page[5] = 9;
	r = run_in_user(user_read, (uintptr_t)&kernel_page[5], 0, false);
	report(r == 9 && user_fault_vector == -1, "user page readable at CPL3");
	set_page_flags(kernel_page, 0, PT_USER);
	r = run_in_user(user_read, (uintptr_t)&kernel_page[5], 0, false);
	uint64_t cr2 = read_cr2();
	set_page_flags(kernel_page, PT_USER, 0);
	report(user_fault_vector == PF_VECTOR && user_fault_error_code == 5 &&
		       cr2 == (uintptr_t)&kernel_page[5],
	       "supervisor page at CPL3: #PF error 0x%lx (want 5), CR2 ok",
	       user_fault_error_code);

	/* an unhandled exception at CPL3 ends the run, kernel continues */
	r = run_in_user(user_ud, 0, 0, false);
	report(r == ~0ull && user_fault_vector == UD_VECTOR &&
		       read_cs() == KERNEL_CS,
	       "unhandled #UD at CPL3 returns to the kernel");
	return report_summary();
}
