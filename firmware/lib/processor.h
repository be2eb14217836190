/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Inline helpers for privileged x86 instructions (32- and 64-bit). */
#ifndef FW_PROCESSOR_H
#define FW_PROCESSOR_H

#include <stdbool.h>
#include <stdint.h>

/* MSRs */
#define MSR_IA32_TSC 0x00000010
#define MSR_IA32_TSC_ADJUST 0x0000003b
#define MSR_TSC_AUX 0xc0000103
#define MSR_IA32_PRED_CMD 0x00000049
#define MSR_IA32_APICBASE 0x0000001b
#define MSR_IA32_SYSENTER_CS 0x00000174
#define MSR_IA32_SYSENTER_ESP 0x00000175
#define MSR_IA32_SYSENTER_EIP 0x00000176
#define MSR_EFER 0xc0000080
#define MSR_STAR 0xc0000081
#define MSR_LSTAR 0xc0000082
#define MSR_CSTAR 0xc0000083
#define MSR_SYSCALL_MASK 0xc0000084
#define MSR_FS_BASE 0xc0000100
#define MSR_GS_BASE 0xc0000101
#define MSR_KERNEL_GS_BASE 0xc0000102

#define EFER_SCE (1ull << 0)
#define EFER_LME (1ull << 8)
#define EFER_LMA (1ull << 10)
#define EFER_NX (1ull << 11)

#define APIC_BASE_BSP (1ull << 8)
#define APIC_BASE_EXTD (1ull << 10)
#define APIC_BASE_EN (1ull << 11)

#define X86_CR0_PE (1ul << 0)
#define X86_CR0_WP (1ul << 16)
#define X86_CR0_PG (1ul << 31)
#define X86_CR4_PAE (1ul << 5)
#define X86_CR4_PCE (1ul << 8)

#define X86_EFLAGS_IF (1ul << 9)
#define X86_EFLAGS_IOPL (3ul << 12)

/* exception vectors */
#define DE_VECTOR 0
#define DB_VECTOR 1
#define NMI_VECTOR 2
#define BP_VECTOR 3
#define OF_VECTOR 4
#define BR_VECTOR 5
#define UD_VECTOR 6
#define NM_VECTOR 7
#define DF_VECTOR 8
#define TS_VECTOR 10
#define NP_VECTOR 11
#define SS_VECTOR 12
#define GP_VECTOR 13
#define PF_VECTOR 14
#define MF_VECTOR 16
#define AC_VECTOR 17

/* port I/O: value first, port second (kvm-unit-tests order) */
static inline uint8_t inb(uint16_t port)
{
	uint8_t v;
	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint16_t inw(uint16_t port)
{
	uint16_t v;
	asm volatile("inw %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline uint32_t inl(uint16_t port)
{
	uint32_t v;
	asm volatile("inl %1, %0" : "=a"(v) : "Nd"(port));
	return v;
}
static inline void outb(uint8_t v, uint16_t port)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outw(uint16_t v, uint16_t port)
{
	asm volatile("outw %0, %1" : : "a"(v), "Nd"(port));
}
static inline void outl(uint32_t v, uint16_t port)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port));
}

struct cpuid {
	uint32_t a, b, c, d;
};

static inline struct cpuid cpuid_indexed(uint32_t fn, uint32_t idx)
{
	struct cpuid r;
	asm volatile("cpuid"
		     : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d)
		     : "0"(fn), "2"(idx));
	return r;
}
static inline struct cpuid cpuid(uint32_t fn)
{
	return cpuid_indexed(fn, 0);
}

static inline uint64_t rdmsr(uint32_t idx)
{
	uint32_t lo, hi;
	asm volatile("rdmsr" : "=a"(lo), "=d"(hi) : "c"(idx) : "memory");
	return lo | ((uint64_t)hi << 32);
}
static inline void wrmsr(uint32_t idx, uint64_t v)
{
	asm volatile("wrmsr"
		     :
		     : "a"((uint32_t)v), "d"((uint32_t)(v >> 32)), "c"(idx)
		     : "memory");
}
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return lo | ((uint64_t)hi << 32);
}

/* RDTSCP: the TSC, and IA32_TSC_AUX in *aux */
static inline uint64_t rdtscp(uint32_t *aux)
{
	uint32_t lo, hi, c;
	asm volatile("rdtscp" : "=a"(lo), "=d"(hi), "=c"(c));
	*aux = c;
	return ((uint64_t)hi << 32) | lo;
}

static inline unsigned long read_cr0(void)
{
	unsigned long v;
	asm volatile("mov %%cr0, %0" : "=r"(v) : : "memory");
	return v;
}
static inline void write_cr0(unsigned long v)
{
	asm volatile("mov %0, %%cr0" : : "r"(v) : "memory");
}
static inline unsigned long read_cr2(void)
{
	unsigned long v;
	asm volatile("mov %%cr2, %0" : "=r"(v) : : "memory");
	return v;
}
static inline unsigned long read_cr3(void)
{
	unsigned long v;
	asm volatile("mov %%cr3, %0" : "=r"(v) : : "memory");
	return v;
}
static inline void write_cr3(unsigned long v)
{
	asm volatile("mov %0, %%cr3" : : "r"(v) : "memory");
}
static inline unsigned long read_cr4(void)
{
	unsigned long v;
	asm volatile("mov %%cr4, %0" : "=r"(v) : : "memory");
	return v;
}
static inline void write_cr4(unsigned long v)
{
	asm volatile("mov %0, %%cr4" : : "r"(v) : "memory");
}
static inline uint16_t read_cs(void)
{
	uint16_t v;
	asm volatile("mov %%cs, %0" : "=r"(v));
	return v;
}
static inline uint16_t read_ss(void)
{
	uint16_t v;
	asm volatile("mov %%ss, %0" : "=r"(v));
	return v;
}
static inline unsigned long read_rflags(void)
{
	unsigned long v;
	asm volatile("pushf; pop %0" : "=r"(v));
	return v;
}
static inline void invlpg(const volatile void *va)
{
	asm volatile("invlpg (%0)" : : "r"(va) : "memory");
}
#ifdef __x86_64__
/*
 * An IRET to the next instruction: the serializing step after another CPU rewrote code (the SDM's
 * cross-modifying-code rule; Linux's sync_core).  The frame IRETQ pops: RIP, CS, RFLAGS, RSP, SS.
 */
static inline void iret_to_self(void)
{
	asm volatile("mov %%rsp, %%rax\n\t"
		     "mov %%ss, %%ecx\n\t"
		     "push %%rcx\n\t"
		     "push %%rax\n\t"
		     "pushfq\n\t"
		     "mov %%cs, %%ecx\n\t"
		     "push %%rcx\n\t"
		     "lea 1f(%%rip), %%rax\n\t"
		     "push %%rax\n\t"
		     "iretq\n"
		     "1:"
		     ::: "rax", "rcx", "memory");
}
#endif
static inline void sti(void) { asm volatile("sti"); }
static inline void cli(void) { asm volatile("cli"); }
static inline void hlt(void) { asm volatile("hlt"); }
static inline void pause(void) { asm volatile("pause"); }

#ifdef __x86_64__
/*
 * Exception fixups (kvm-unit-tests' ASM_TRY): an instruction range between
 * the labels 1111 and 1112 is registered in .fixup_table.  If any exception
 * hits inside the range, the handler records vector and error code in
 * ex_vector / ex_error_code and resumes at 1112.  Usage:
 *	asm volatile(ASM_TRY_BEGIN "insn..." ASM_TRY_END : ...);
 * with ex_vector reset by exception_reset() just before.
 */
struct fixup_entry {
	uint64_t start, end, fixup;
};
extern volatile int ex_vector;
extern volatile uint64_t ex_error_code;

#define ASM_TRY_BEGIN "1111:\n\t"
#define ASM_TRY_END                                                           \
	"\n1112:\n\t"                                                         \
	".pushsection .fixup_table, \"a\"\n\t"                                \
	".balign 8\n\t"                                                       \
	".quad 1111b, 1112b, 1112b\n\t"                                       \
	".popsection\n\t"

static inline void exception_reset(void)
{
	ex_vector = -1;
	ex_error_code = 0;
}
/* vector of the last caught exception, or -1 */
static inline int exception_vector(void) { return ex_vector; }
static inline uint64_t exception_error_code(void) { return ex_error_code; }

/* checked MSR / PMC access: return true when an exception (#GP) happened */
static inline bool rdmsr_safe(uint32_t idx, uint64_t *val)
{
	uint32_t lo = 0, hi = 0;
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "rdmsr" ASM_TRY_END
		     : "+a"(lo), "+d"(hi)
		     : "c"(idx)
		     : "memory");
	*val = lo | ((uint64_t)hi << 32);
	return ex_vector >= 0;
}
static inline bool wrmsr_safe(uint32_t idx, uint64_t val)
{
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "wrmsr" ASM_TRY_END
		     :
		     : "a"((uint32_t)val), "d"((uint32_t)(val >> 32)), "c"(idx)
		     : "memory");
	return ex_vector >= 0;
}
static inline bool rdpmc_safe(uint32_t idx, uint64_t *val)
{
	uint32_t lo = 0, hi = 0;
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "rdpmc" ASM_TRY_END
		     : "+a"(lo), "+d"(hi)
		     : "c"(idx)
		     : "memory");
	*val = lo | ((uint64_t)hi << 32);
	return ex_vector >= 0;
}
/* true when the last checked access raised exactly this vector */
static inline bool faulted_with(int vector) { return ex_vector == vector; }

/* report() that RDMSR / WRMSR of msr raises #GP; what names the case */
void expect_rdmsr_gp(uint32_t msr, const char *what);
void expect_wrmsr_gp(uint32_t msr, uint64_t val, const char *what);
#endif

#endif
