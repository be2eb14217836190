/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Exception delivery through the guest IDT: vectors, RIPs, error codes, CR2. */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

/* #UD executed as the very first thing after the IDT is loaded */
static int early_ud_vector = -2;

void early_after_idt(void)
{
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "ud2" ASM_TRY_END ::: "memory");
	early_ud_vector = exception_vector();
}

/* a handler that records the frame and resumes after a fixed-length insn */
static struct ex_regs last;
static int hits;
static unsigned skip_len;

static void record_handler(struct ex_regs *regs)
{
	last = *regs;
	hits++;
	regs->rip += skip_len;
}

static void expect_handler(int vector, unsigned len)
{
	handle_exception(vector, record_handler);
	hits = 0;
	skip_len = len;
	memset(&last, 0, sizeof(last));
}

static void inc_rax_handler(struct ex_regs *regs)
{
	last = *regs;
	regs->rax++;
}

static void test_ud(void)
{
	uintptr_t at;

	report(early_ud_vector == UD_VECTOR,
	       "#UD from ud2 right after loading the IDT (vector %d)",
	       early_ud_vector);

	expect_handler(UD_VECTOR, 2);
	asm volatile("lea 1f(%%rip), %0\n1: ud2" : "=r"(at) : : "memory");
	handle_exception(UD_VECTOR, NULL);
	report(hits == 1 && last.vector == UD_VECTOR && last.rip == at,
	       "#UD handler: RIP points at ud2 (0x%lx)", last.rip);
	report(last.cs == KERNEL_CS && last.error_code == 0,
	       "#UD frame: CS 0x%lx, no error code", last.cs);

	/* "forced emulation prefix": ud2 followed by 'kvm' */
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "ud2; .byte 0x6b, 0x76, 0x6d; nop"
		     ASM_TRY_END ::: "memory");
	report_info("forced emulation prefix: %s",
		    exception_vector() == UD_VECTOR ? "#UD (not supported)"
						    : "honoured");
}

static void test_gp(void)
{
	uint64_t v = 0, ptr = 0x8000000000000000ull;
	uint16_t sel = 0x1000; /* beyond the GDT limit */

	exception_reset();
	asm volatile(ASM_TRY_BEGIN "mov (%1), %0" ASM_TRY_END
		     : "+r"(v)
		     : "r"(ptr)
		     : "memory");
	report(faulted_with(GP_VECTOR) && exception_error_code() == 0,
	       "#GP(0) on non-canonical load (vector %d, error 0x%lx)",
	       exception_vector(), exception_error_code());

	exception_reset();
	asm volatile(ASM_TRY_BEGIN "mov %0, %%es" ASM_TRY_END
		     :
		     : "r"(sel)
		     : "memory");
	report(faulted_with(GP_VECTOR) && exception_error_code() == sel,
	       "#GP error code = selector beyond GDT limit (0x%lx)",
	       exception_error_code());
	asm volatile("mov %0, %%es" : : "r"(KERNEL_DS));

	report(wrmsr_safe(0x12345678, 0) && faulted_with(GP_VECTOR),
	       "#GP on WRMSR to a reserved MSR");

	static const struct {
		uint32_t msr;
		const char *name;
	} bases[] = {
		{ MSR_FS_BASE, "FS_BASE" },
		{ MSR_GS_BASE, "GS_BASE" },
		{ MSR_KERNEL_GS_BASE, "KERNEL_GS_BASE" },
		{ MSR_LSTAR, "LSTAR" },
	};
	for (unsigned i = 0; i < ARRAY_SIZE(bases); i++) {
		uint64_t old = rdmsr(bases[i].msr);
		bool gp = wrmsr_safe(bases[i].msr, 0x8000000000001000ull) &&
			  faulted_with(GP_VECTOR);
		report(gp && rdmsr(bases[i].msr) == old,
		       "#GP on non-canonical WRMSR to %s, value kept",
		       bases[i].name);
	}
}

static uint8_t pf_page[4096] __attribute__((aligned(4096)));

static void pf_fix_handler(struct ex_regs *regs)
{
	last = *regs;
	hits++;
	set_page_flags((void *)read_cr2(), PT_PRESENT, 0);
}

static void test_pf(void)
{
	volatile uint8_t *p = pf_page + 0x123;
	uint8_t v = 0;

	pf_page[0x123] = 0x5a;
	set_page_flags(pf_page, 0, PT_PRESENT);

	expect_handler(PF_VECTOR, 0);
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "movb (%1), %0" ASM_TRY_END
		     : "+r"(v)
		     : "r"(p)
		     : "memory");
	uint64_t cr2 = read_cr2();
	report(faulted_with(PF_VECTOR) && cr2 == (uintptr_t)p,
	       "#PF on read of a not-present page, CR2 0x%lx", cr2);
	report(exception_error_code() == 0,
	       "#PF read error code 0 (got 0x%lx)", exception_error_code());

	exception_reset();
	asm volatile(ASM_TRY_BEGIN "movb $1, (%0)" ASM_TRY_END
		     :
		     : "r"(p + 1)
		     : "memory");
	cr2 = read_cr2();
	report(faulted_with(PF_VECTOR) && cr2 == (uintptr_t)(p + 1) &&
		       exception_error_code() == 2,
	       "#PF on write: CR2 0x%lx, error code 0x%lx (want 2)", cr2,
	       exception_error_code());

	/* present but read-only, CR0.WP set: write -> error code P|W */
	set_page_flags(pf_page, PT_PRESENT, PT_WRITABLE);
	write_cr0(read_cr0() | X86_CR0_WP);
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "movb $2, (%0)" ASM_TRY_END
		     :
		     : "r"(p)
		     : "memory");
	report(faulted_with(PF_VECTOR) && exception_error_code() == 3,
	       "#PF on write to read-only page, error code 0x%lx (want 3)",
	       exception_error_code());
	set_page_flags(pf_page, PT_WRITABLE, 0);
	handle_exception(PF_VECTOR, NULL);
	report(*p == 0x5a, "page readable again after remapping");

	/* fix-and-retry: the handler maps the page, the access re-executes */
	uintptr_t at;
	set_page_flags(pf_page, 0, PT_PRESENT);
	handle_exception(PF_VECTOR, pf_fix_handler);
	hits = 0;
	v = 0;
	asm volatile("lea 1f(%%rip), %0\n1: movb (%2), %1\n"
		     : "=&r"(at), "+q"(v)
		     : "r"(p)
		     : "memory");
	handle_exception(PF_VECTOR, NULL);
	report(hits == 1 && last.rip == at && last.error_code == 0 && v == 0x5a,
	       "#PF handler: RIP at the faulting insn, retried after mapping");
}

static void test_de(void)
{
	uint32_t a = 10, d = 0, zero = 0;

	exception_reset();
	asm volatile(ASM_TRY_BEGIN "divl %2" ASM_TRY_END
		     : "+a"(a), "+d"(d)
		     : "r"(zero)
		     : "memory");
	report(faulted_with(DE_VECTOR) && exception_error_code() == 0,
	       "#DE on division by zero");

	/* quotient overflow is a #DE as well */
	a = 0;
	d = 2;
	uint32_t one = 1;
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "divl %2" ASM_TRY_END
		     : "+a"(a), "+d"(d)
		     : "r"(one)
		     : "memory");
	report(faulted_with(DE_VECTOR), "#DE on quotient overflow");
}

static void test_int(void)
{
	uintptr_t after;

	expect_handler(BP_VECTOR, 0);
	asm volatile("int3\n1: lea 1b(%%rip), %0" : "=r"(after) : : "memory");
	handle_exception(BP_VECTOR, NULL);
	report(hits == 1 && last.rip == after,
	       "INT3: #BP with RIP after the int3 (0x%lx vs 0x%lx)", last.rip,
	       after);

	expect_handler(0x80, 0);
	asm volatile("int $0x80\n1: lea 1b(%%rip), %0" : "=r"(after) : : "memory");
	handle_exception(0x80, NULL);
	report(hits == 1 && last.vector == 0x80 && last.rip == after,
	       "INT $0x80 reaches its handler, RIP after the insn");

	/* the handler sees and can change the interrupted registers */
	uint64_t rax = 41;
	handle_exception(0x80, inc_rax_handler);
	asm volatile("int $0x80" : "+a"(rax) : : "memory");
	handle_exception(0x80, NULL);
	report(last.rax == 41 && rax == 42,
	       "handler reads and modifies the saved RAX");

	/* INT to a not-present gate: #NP, error code = vector*8 + 2 (IDT) */
	set_idt_present(0x99, false);
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "int $0x99" ASM_TRY_END ::: "memory");
	set_idt_present(0x99, true);
	report(faulted_with(NP_VECTOR) &&
		       exception_error_code() == 0x99 * 8 + 2,
	       "#NP on not-present gate, error code 0x%lx (want 0x%x)",
	       exception_error_code(), 0x99 * 8 + 2);
}

static uint8_t code_page[4096] __attribute__((aligned(4096)));

static void test_written_code(void)
{
	/* mov $imm32, %eax; ret */
	static const uint8_t code[] = { 0xb8, 42, 0, 0, 0, 0xc3 };
	int (*fn)(void) = (int (*)(void))(uintptr_t)code_page;

	memcpy(code_page, code, sizeof(code));
	report(fn() == 42, "execute code just written to a data page");
	code_page[1] = 7; /* modify it: the next call must see the new code */
	asm volatile("" : : : "memory");
	report(fn() == 7, "re-execute after modifying the code");
}

int main(struct multiboot_info *mbi)
{
	printf("exceptions test\n");
	test_ud();
	test_gp();
	test_pf();
	test_de();
	test_int();
	test_written_code();
	return report_summary();
}
