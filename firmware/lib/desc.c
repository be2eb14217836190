/* SPDX-License-Identifier: GPL-2.0-or-later */
/* GDT with kernel/user segments and a TSS, IDT with 256 gates, C dispatch. */
#include "desc.h"
#include "libfw.h"
#include "processor.h"

uint64_t gdt[GDT_ENTRIES] __attribute__((aligned(16))) = {
	[0] = 0,
	[KERNEL_CS >> 3] = 0x00af9b000000ffffull, /* 64-bit code, DPL0 */
	[KERNEL_DS >> 3] = 0x00cf93000000ffffull, /* data, DPL0 */
	[USER_CS32 >> 3] = 0x00cffb000000ffffull, /* 32-bit code, DPL3 */
	[USER_DS >> 3] = 0x00cff3000000ffffull,   /* data, DPL3 */
	[USER_CS >> 3] = 0x00affb000000ffffull,   /* 64-bit code, DPL3 */
	/* TSS_SEL: 16-byte descriptor filled at run time */
};

struct descriptor_table_ptr gdt_descr = {
	.limit = sizeof(gdt) - 1,
	.base = (uint64_t)(uintptr_t)gdt,
};

struct tss64 tss __attribute__((aligned(16)));

#define STACK_SIZE (16 * 1024)
uint8_t rsp0_stack[STACK_SIZE] __attribute__((aligned(16)));
uint8_t user_stack[STACK_SIZE] __attribute__((aligned(16)));
static uint8_t df_stack[4096] __attribute__((aligned(16)));
/* the _top symbols are the first byte past each stack */
asm(".global rsp0_stack_top, user_stack_top\n"
    ".set rsp0_stack_top, rsp0_stack + 16384\n"
    ".set user_stack_top, user_stack + 16384\n");

struct idt_entry {
	uint16_t offset0;
	uint16_t selector;
	uint8_t ist;
	uint8_t type; /* P, DPL, 0xE = 64-bit interrupt gate */
	uint16_t offset1;
	uint32_t offset2;
	uint32_t reserved;
} __attribute__((packed));

static struct idt_entry idt[256] __attribute__((aligned(16)));
static handler_t handlers[256];
extern char isr_stubs[]; /* isr.S: 256 stubs, 16 bytes apart */
extern char user_ret_entry[];
extern const struct fixup_entry __fixup_start[], __fixup_end[];

volatile int ex_vector = -1;
volatile uint64_t ex_error_code;

void setup_gdt_tss(void)
{
	uint64_t base = (uintptr_t)&tss, limit = sizeof(tss) - 1;

	tss.rsp0 = (uintptr_t)rsp0_stack_top;
	tss.ist[0] = (uintptr_t)(df_stack + sizeof(df_stack));
	tss.iomap_base = offsetof(struct tss64, iomap);
	memset(tss.iomap, 0xff, sizeof(tss.iomap)); /* deny all to CPL3 */
	tss.iomap_end = 0xff;

	gdt[TSS_SEL >> 3] = (limit & 0xffff) | ((base & 0xffffff) << 16) |
			    (0x89ull << 40) | (((limit >> 16) & 0xf) << 48) |
			    (((base >> 24) & 0xff) << 56);
	gdt[(TSS_SEL >> 3) + 1] = base >> 32;

	/* reload CS/DS/ES/SS; FS/GS are left alone (their base is set) */
	asm volatile("lgdt %0\n\t"
		     "pushq %1\n\t"
		     "leaq 1f(%%rip), %%rax\n\t"
		     "pushq %%rax\n\t"
		     "lretq\n"
		     "1:\n\t"
		     "mov %2, %%ds\n\t"
		     "mov %2, %%es\n\t"
		     "mov %2, %%ss\n\t"
		     "ltr %w3"
		     :
		     : "m"(gdt_descr), "i"(KERNEL_CS), "r"(KERNEL_DS),
		       "r"(TSS_SEL)
		     : "rax", "memory");
}

void set_idt_entry(int vector, void *addr, int dpl)
{
	struct idt_entry *e = &idt[vector];
	uint64_t a = (uintptr_t)addr;

	e->offset0 = a & 0xffff;
	e->offset1 = (a >> 16) & 0xffff;
	e->offset2 = a >> 32;
	e->selector = KERNEL_CS;
	e->ist = vector == DF_VECTOR ? 1 : 0;
	e->type = 0x80 | (dpl << 5) | 0xe;
	e->reserved = 0;
}

void set_idt_dpl(int vector, int dpl)
{
	idt[vector].type = (idt[vector].type & ~0x60) | (dpl << 5);
}

void set_idt_present(int vector, bool present)
{
	if (present)
		idt[vector].type |= 0x80;
	else
		idt[vector].type &= ~0x80;
}

void setup_idt(void)
{
	static struct descriptor_table_ptr idt_descr = {
		.limit = sizeof(idt) - 1,
		.base = (uint64_t)(uintptr_t)idt,
	};

	for (int v = 0; v < 256; v++)
		set_idt_entry(v, isr_stubs + 16 * v, 0);
	set_idt_entry(USER_RET_VECTOR, user_ret_entry, 3);
	asm volatile("lidt %0" : : "m"(idt_descr) : "memory");
}

handler_t handle_exception(int vector, handler_t handler)
{
	handler_t old = handlers[vector];
	handlers[vector] = handler;
	return old;
}

void io_bitmap_allow(uint16_t port, unsigned count, bool allow)
{
	for (unsigned p = port; p < port + count && p < 0x10000; p++) {
		if (allow)
			tss.iomap[p / 8] &= ~(1u << (p % 8));
		else
			tss.iomap[p / 8] |= 1u << (p % 8);
	}
}

const char *exception_name(int vector)
{
	static const char *const names[] = {
		"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
		"#DF", "CSO", "#TS", "#NP", "#SS", "#GP", "#PF", "15",
		"#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
	};
	if (vector >= 0 && vector < (int)ARRAY_SIZE(names))
		return names[vector];
	return "interrupt";
}

/* called by isr.S with the saved frame; may modify it */
void __attribute__((used)) do_handle_exception(struct ex_regs *regs)
{
	if (regs->vector < 32) {
		for (const struct fixup_entry *f = __fixup_start;
		     f < __fixup_end; f++) {
			if (regs->rip >= f->start && regs->rip < f->end) {
				ex_vector = (int)regs->vector;
				ex_error_code = regs->error_code;
				regs->rip = f->fixup;
				return;
			}
		}
	}
	if (handlers[regs->vector]) {
		handlers[regs->vector](regs);
		return;
	}
	if (in_user_run && (regs->cs & 3) == 3) {
		user_fault_vector = (int)regs->vector;
		user_fault_error_code = regs->error_code;
		user_return_to_kernel(~0ull);
	}
	printf("Unhandled exception %lu (%s) at rip 0x%lx, error code 0x%lx, "
	       "cs 0x%lx rsp 0x%lx cr2 0x%lx\n",
	       regs->vector, exception_name((int)regs->vector), regs->rip,
	       regs->error_code, regs->cs, regs->rsp, read_cr2());
	printf("rax %lx rbx %lx rcx %lx rdx %lx rsi %lx rdi %lx\n", regs->rax,
	       regs->rbx, regs->rcx, regs->rdx, regs->rsi, regs->rdi);
	abort();
}

void expect_rdmsr_gp(uint32_t msr, const char *what)
{
	uint64_t v;

	report(rdmsr_safe(msr, &v) && faulted_with(GP_VECTOR),
	       "RDMSR 0x%x (%s) -> #GP", msr, what);
}

void expect_wrmsr_gp(uint32_t msr, uint64_t val, const char *what)
{
	report(wrmsr_safe(msr, val) && faulted_with(GP_VECTOR),
	       "WRMSR 0x%x = 0x%lx (%s) -> #GP", msr, val, what);
}
