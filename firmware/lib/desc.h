/* SPDX-License-Identifier: GPL-2.0-or-later */
/* GDT, IDT, TSS, exception handlers, CPL3 and SYSCALL helpers (64-bit). */
#ifndef FW_DESC_H
#define FW_DESC_H

#define KERNEL_CS 0x08
#define KERNEL_DS 0x10
#define USER_CS32 0x1b /* STAR[63:48] base for SYSRET */
#define USER_DS 0x23
#define USER_CS 0x2b
#define TSS_SEL 0x30
#define GDT_ENTRIES 8

/* gate used by run_in_user() to come back from CPL3 (DPL 3) */
#define USER_RET_VECTOR 0x81
/* RAX value of the SYSCALL that ends run_in_user() */
#define SYSCALL_USER_RET 0x7e7e7e7e

/* value the multiboot 32->64 stub writes to GS_BASE while in 32-bit mode */
#define BOOT_GS_BASE_HI 0x00007e57
#define BOOT_GS_BASE_LO 0x00c0ffee

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

struct ex_regs {
	uint64_t r15, r14, r13, r12, r11, r10, r9, r8;
	uint64_t rbp, rdi, rsi, rdx, rcx, rbx, rax;
	uint64_t vector, error_code;
	uint64_t rip, cs, rflags, rsp, ss; /* hardware frame */
};

struct tss64 {
	uint32_t res0;
	uint64_t rsp0, rsp1, rsp2;
	uint64_t res1;
	uint64_t ist[7];
	uint64_t res2;
	uint16_t res3;
	uint16_t iomap_base;
	uint8_t iomap[8192];
	uint8_t iomap_end; /* must be 0xff */
} __attribute__((packed));

struct descriptor_table_ptr {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

extern uint64_t gdt[GDT_ENTRIES];
extern struct descriptor_table_ptr gdt_descr;
extern struct tss64 tss;
/* stacks: RSP0 (CPL3 -> CPL0 switch), user stack for run_in_user() */
extern uint8_t rsp0_stack[], rsp0_stack_top[];
extern uint8_t user_stack[], user_stack_top[];

void setup_gdt_tss(void);
void setup_idt(void);

typedef void (*handler_t)(struct ex_regs *regs);
/* register a C handler for a vector; returns the previous one */
handler_t handle_exception(int vector, handler_t handler);
void set_idt_entry(int vector, void *addr, int dpl);
void set_idt_dpl(int vector, int dpl);
void set_idt_present(int vector, bool present);
const char *exception_name(int vector);

/* TSS I/O permission bitmap; the default denies every port to CPL3 */
void io_bitmap_allow(uint16_t port, unsigned count, bool allow);

/*
 * Run fn(arg) at CPL3 on user_stack with the given RFLAGS (IOPL etc.),
 * then come back to CPL0 either with "int $USER_RET_VECTOR" (via_syscall
 * false) or with SYSCALL (via_syscall true; needs setup_syscall()).
 * Returns fn's result.  An exception at CPL3 that no fixup or handler
 * consumes ends the run: user_fault_vector is set and ~0 is returned.
 */
uint64_t run_in_user(uint64_t (*fn)(uint64_t), uint64_t arg, uint64_t rflags,
		     bool via_syscall);
extern volatile int user_fault_vector;
extern volatile uint64_t user_fault_error_code;
extern volatile bool in_user_run;
/* used by the exception dispatcher: abandon the CPL3 run */
void __attribute__((noreturn)) user_return_to_kernel(uint64_t rax);

/* SYSCALL/SYSRET: STAR/LSTAR/FMASK, EFER.SCE; handler runs at CPL0 */
typedef uint64_t (*syscall_handler_t)(uint64_t nr, uint64_t arg);
void setup_syscall(syscall_handler_t handler);
static inline uint64_t do_syscall(uint64_t nr, uint64_t arg)
{
	uint64_t ret;
	asm volatile("syscall"
		     : "=a"(ret), "+D"(arg)
		     : "0"(nr)
		     : "rcx", "r11", "rsi", "rdx", "r8", "r9", "r10", "memory");
	return ret;
}

/* vm.c: paging helpers working on the live CR3 (identity map) */
#define PT_PRESENT (1ull << 0)
#define PT_WRITABLE (1ull << 1)
#define PT_USER (1ull << 2)
#define PT_PAGE_SIZE (1ull << 7)
#define PT_NX (1ull << 63)
#define PT_ADDR_MASK 0x000ffffffffff000ull
/* pointer to the 4 KiB PTE mapping va, splitting large pages; NULL if unmapped */
uint64_t *get_pte(uintptr_t va);
/* change the flags of the 4 KiB page holding va and flush it */
void set_page_flags(const volatile void *va, uint64_t set, uint64_t clear);
#endif
#endif
