/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Debug exceptions around the instructions a VMM emulates (Intel SDM vol. 3
 * chapter 18 "Debug, Branch Profile, TSC, and Intel RDT Features", 18.2 and
 * 18.3; AMD APM vol. 2 chapter 13): CPUID, IN/OUT, RDMSR/WRMSR, RDPMC, MOV
 * to/from CR8, RDTSC/RDTSCP, SYSCALL, SYSENTER and VMCALL/VMMCALL.
 *
 * Single-step: an instruction that starts with RFLAGS.TF=1 and completes is
 * followed by exactly one #DB (a trap: RIP after it, or at the target of a
 * control transfer) with DR6.BS.  SYSENTER keeps TF, so its #DB is taken at
 * SYSENTER_EIP; SYSCALL's trap follows the TF it leaves (after FMASK).  An
 * instruction that faults raises no single-step trap (the trap follows the
 * first instruction the fault handler returns to).  MOV SS delays the trap
 * past the next instruction: one #DB, after that instruction.
 *
 * Breakpoints (DR0-DR3, DR7): an instruction breakpoint is a fault, before
 * the instruction, with DR6.Bn (RF in the frame lets it run on return); a
 * data write breakpoint is a trap after the instruction; a single-step trap
 * and a data breakpoint of the same instruction are one #DB with both bits.
 * I/O breakpoints (CR4.DE=1, R/W = 10b) trap after an IN/OUT to the port.
 *
 * The #DB handler records RIP and DR6 of every #DB, clears DR6 and TF in the
 * frame (so each case steps over one instruction) and sets RF after an
 * instruction breakpoint.  Command line: "kvm" when the VMM offers KVM's
 * hypercalls (VMCALL/VMMCALL are #UD otherwise).
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define X86_EFLAGS_TF (1ul << 8)
#define X86_EFLAGS_RF (1ul << 16)
#define X86_CR4_DE (1ul << 3)
#define DR6_BS (1ul << 14)
#define DR6_B(n) (1ul << (n))
#define DR6_RESET 0xffff0ff0ul
#define DR7_L(n) (1ul << (2 * (n)))
#define DR7_GE (1ul << 9)
#define DR7_RW(n, rw) ((uint64_t)(rw) << (16 + 4 * (n)))
#define DR7_LEN(n, len) ((uint64_t)(len) << (18 + 4 * (n)))
#define RW_EXEC 0
#define RW_WRITE 1
#define RW_IO 2
#define LEN_8 2
#define MAX_DB 4
#define KVM_HC_VAPIC_POLL_IRQ 1

/* what each #DB saw */
static volatile int db_count;
static volatile uint64_t db_rip[MAX_DB], db_dr6[MAX_DB];
/* set by each case: its instruction (label 8) and the one after it (label 9) */
volatile uint64_t step_at, step_after;
/* SYSCALL/SYSENTER targets and state */
volatile uint64_t saved_rsp, saved_flags, data_word;
uint8_t sysenter_stack[8192] __attribute__((aligned(16)));
extern char syscall_target[], sysenter_target[];

#define DEFINE_DR(n)                                                                      \
	static inline uint64_t read_dr##n(void)                                           \
	{                                                                                 \
		uint64_t v;                                                               \
		asm volatile("mov %%dr" #n ", %0" : "=r"(v));                             \
		return v;                                                                 \
	}                                                                                 \
	static inline void write_dr##n(uint64_t v) { asm volatile("mov %0, %%dr" #n : : "r"(v) : "memory"); }
DEFINE_DR(0)
DEFINE_DR(1)
DEFINE_DR(2)
DEFINE_DR(3)
DEFINE_DR(6)
DEFINE_DR(7)

static void db_handler(struct ex_regs *regs)
{
	uint64_t dr6 = read_dr6(), dr7 = read_dr7();
	int n = db_count;

	if (n < MAX_DB) {
		db_rip[n] = regs->rip;
		db_dr6[n] = dr6;
	}
	db_count = n + 1;
	write_dr6(DR6_RESET);
	regs->rflags &= ~X86_EFLAGS_TF;
	for (int i = 0; i < 4; i++)
		if ((dr6 & DR6_B(i)) && ((dr7 >> (16 + 4 * i)) & 3) == RW_EXEC)
			regs->rflags |= X86_EFLAGS_RF;
}

static void db_reset(void)
{
	db_count = 0;
	for (int i = 0; i < MAX_DB; i++)
		db_rip[i] = db_dr6[i] = 0;
	write_dr6(DR6_RESET);
}

/*
 * TF_ON: step_at/step_after = labels 8 and 9, then POPF sets TF, so the first
 * trap follows the instruction at label 8.  TF_OFF clears TF again when no
 * #DB did (a case where none is expected).
 */
#define TF_ON                                                                                    \
	"lea 8f(%%rip), %%r11\n\tmov %%r11, step_at(%%rip)\n\t"                                  \
	"lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"                               \
	"pushfq\n\torq $0x100, (%%rsp)\n\tpopfq\n8:\t"
#define LABEL_AFTER "\n9:\n\t"

/* one #DB at ``rip`` with exactly the DR6 bits ``bits`` among BS and B0-B3 */
static bool one_db(uint64_t rip, uint64_t bits)
{
	return db_count == 1 && db_rip[0] == rip && (db_dr6[0] & (DR6_BS | 0xf)) == bits;
}

static void report_one(uint64_t rip, uint64_t bits, const char *what)
{
	report(one_db(rip, bits), "%s: one #DB at %s, DR6 0x%lx (%d #DB, RIP 0x%lx, DR6 0x%lx)", what,
	       rip == step_after ? "the next instruction" : (rip == step_at ? "the instruction" : "the target"),
	       bits, db_count, db_rip[0], db_dr6[0]);
}

/* -- single-step over each instruction ------------------------------------------------------ */

static void step_cpuid(void)
{
	uint32_t a = 0, b, c = 0, d;

	db_reset();
	asm volatile(TF_ON "cpuid" LABEL_AFTER : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: CPUID");
}

static void step_io(void)
{
	uint8_t v = 0;
	uint16_t lsr = SERIAL_BASE + 5;

	db_reset();
	asm volatile(TF_ON "outb %%al, $0x80" LABEL_AFTER : : "a"(v) : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: OUT imm8");
	db_reset();
	asm volatile(TF_ON "inb %%dx, %%al" LABEL_AFTER : "=a"(v) : "d"(lsr) : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: IN dx");
}

static void step_msr(uint32_t msr, const char *what)
{
	uint32_t lo, hi;

	db_reset();
	asm volatile(TF_ON "rdmsr" LABEL_AFTER : "=a"(lo), "=d"(hi) : "c"(msr) : "r11", "memory");
	report_one(step_after, DR6_BS, what);
	db_reset();
	asm volatile(TF_ON "wrmsr" LABEL_AFTER : : "a"(lo), "d"(hi), "c"(msr) : "r11", "memory");
	report_one(step_after, DR6_BS, "... and WRMSR of the value back");
}

static void step_rdpmc(void)
{
	uint32_t lo, hi;

	db_reset();
	asm volatile(TF_ON "rdpmc" LABEL_AFTER : "=a"(lo), "=d"(hi) : "c"(0) : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: RDPMC");
}

static void step_cr8(void)
{
	uint64_t v;

	db_reset();
	asm volatile(TF_ON "mov %%cr8, %0" LABEL_AFTER : "=r"(v) : : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: MOV from CR8");
	db_reset();
	asm volatile(TF_ON "mov %0, %%cr8" LABEL_AFTER : : "r"(v) : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: MOV to CR8");
}

static void step_tsc(void)
{
	uint32_t lo, hi, aux;

	db_reset();
	asm volatile(TF_ON "rdtsc" LABEL_AFTER : "=a"(lo), "=d"(hi) : : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: RDTSC");
	db_reset();
	asm volatile(TF_ON "rdtscp" LABEL_AFTER : "=a"(lo), "=d"(hi), "=c"(aux) : : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: RDTSCP");
}

/*
 * SYSCALL at CPL0 to syscall_target, which POPFs the flags SYSCALL saved in R11 (TF among
 * them) and jumps back: POPF setting TF traps after the JMP, at label 9.
 */
asm(".text\n"
    "syscall_target:\n"
    "	push %r11\n"
    "	popfq\n"
    "	jmp *%rcx\n");

static void step_syscall(uint64_t fmask, const char *what)
{
	uint64_t star = rdmsr(MSR_STAR), lstar = rdmsr(MSR_LSTAR), mask = rdmsr(MSR_SYSCALL_MASK);

	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
	wrmsr(MSR_STAR, (uint64_t)KERNEL_CS << 32);
	wrmsr(MSR_LSTAR, (uintptr_t)syscall_target);
	wrmsr(MSR_SYSCALL_MASK, fmask);
	db_reset();
	asm volatile(TF_ON "syscall" LABEL_AFTER : : : "rcx", "r11", "memory");
	if (fmask & X86_EFLAGS_TF)
		report_one(step_after, DR6_BS, what);
	else
		report(db_count == 2 && db_rip[0] == (uintptr_t)syscall_target && db_rip[1] == step_after &&
		       (db_dr6[0] & DR6_BS) && (db_dr6[1] & DR6_BS),
		       "%s: #DB at the target, then after the POPF/JMP (%d #DB, RIP 0x%lx, DR6 0x%lx)", what,
		       db_count, db_rip[0], db_dr6[0]);
	wrmsr(MSR_STAR, star);
	wrmsr(MSR_LSTAR, lstar);
	wrmsr(MSR_SYSCALL_MASK, mask);
}

/*
 * SYSENTER at CPL0 to sysenter_target, which takes the stack and flags back and goes on after the
 * case.  On AMD it is #UD: the fixup resumes at the NOP, whose trap is at label 9.
 */
static void __attribute__((noinline)) step_sysenter(bool amd)
{
	wrmsr(MSR_IA32_SYSENTER_CS, KERNEL_CS);
	wrmsr(MSR_IA32_SYSENTER_ESP, (uintptr_t)(sysenter_stack + sizeof(sysenter_stack)));
	wrmsr(MSR_IA32_SYSENTER_EIP, (uintptr_t)sysenter_target);
	db_reset();
	exception_reset();
	asm volatile("pushfq\n\tpopq saved_flags(%%rip)\n\t"
		     "mov %%rsp, saved_rsp(%%rip)\n\t" TF_ON ASM_TRY_BEGIN "sysenter" ASM_TRY_END "nop" LABEL_AFTER
		     "jmp 7f\n"
		     "sysenter_target:\n\t"
		     "mov saved_rsp(%%rip), %%rsp\n\t"
		     "pushq saved_flags(%%rip)\n\t"
		     "popfq\n"
		     "7:\n\t" : : : "r11", "memory");
	if (amd)
		report(exception_vector() == UD_VECTOR && one_db(step_after, DR6_BS),
		       "AMD: TF: SYSENTER in long mode is #UD and raises no #DB of its own "
		       "(vector %d, %d #DB, RIP 0x%lx, DR6 0x%lx)", exception_vector(), db_count, db_rip[0], db_dr6[0]);
	else
		report_one((uintptr_t)sysenter_target, DR6_BS, "TF: SYSENTER (TF kept)");
}

/* A faulting instruction: no trap of its own; the first one follows the NOP after the fixup. */
static void step_faulting_rdmsr(void)
{
	uint32_t lo, hi;

	db_reset();
	exception_reset();
	asm volatile(TF_ON ASM_TRY_BEGIN "rdmsr" ASM_TRY_END "nop" LABEL_AFTER
		     : "=a"(lo), "=d"(hi) : "c"(0x1234) : "r11", "memory");
	report(exception_vector() == GP_VECTOR && one_db(step_after, DR6_BS),
	       "TF: RDMSR of an unknown MSR is #GP with no #DB of its own (vector %d, %d #DB, RIP 0x%lx)",
	       exception_vector(), db_count, db_rip[0]);
}

static void step_hypercall(bool vmmcall, bool kvm)
{
	uint64_t rax = KVM_HC_VAPIC_POLL_IRQ;
	const char *name = vmmcall ? "VMMCALL" : "VMCALL";

	db_reset();
	exception_reset();
	if (vmmcall)
		asm volatile(TF_ON ASM_TRY_BEGIN "vmmcall" ASM_TRY_END "nop" LABEL_AFTER
			     : "+a"(rax) : : "rbx", "rcx", "rdx", "rsi", "r11", "memory");
	else
		asm volatile(TF_ON ASM_TRY_BEGIN "vmcall" ASM_TRY_END "nop" LABEL_AFTER
			     : "+a"(rax) : : "rbx", "rcx", "rdx", "rsi", "r11", "memory");
	if (kvm)
		report(exception_vector() < 0 && rax == 0 && db_count == 1 && db_rip[0] == step_at + 3 &&
		       (db_dr6[0] & DR6_BS), "TF: %s hypercall: one #DB after it (%d #DB, RIP 0x%lx, DR6 0x%lx)",
		       name, db_count, db_rip[0], db_dr6[0]);
	else
		report(exception_vector() == UD_VECTOR && one_db(step_after, DR6_BS),
		       "TF: %s without hypercalls is #UD with no #DB of its own (vector %d, %d #DB, RIP 0x%lx)",
		       name, exception_vector(), db_count, db_rip[0]);
}

/* MOV SS delays the single-step trap past the next instruction: one #DB, after it */
static void step_mov_ss(void)
{
	uint32_t a = 0, b, c = 0, d;

	db_reset();
	asm volatile("mov %%ss, %%esi\n\t" TF_ON "mov %%esi, %%ss\n\tcpuid" LABEL_AFTER
		     : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "rsi", "r11", "memory");
	report_one(step_after, DR6_BS, "TF: MOV SS then CPUID");
	db_reset();
	asm volatile("mov %%ss, %%esi\n\t" TF_ON "mov %%esi, %%ss\n\toutb %%al, $0x80" LABEL_AFTER
		     : : "a"(0) : "rsi", "r11", "memory");
	report_one(step_after, DR6_BS, "TF: MOV SS then OUT");
	db_reset();
	asm volatile("mov %%ss, %%esi\n\t" TF_ON "mov %%esi, %%ss\n\tnop" LABEL_AFTER : : : "rsi", "r11", "memory");
	report_one(step_after, DR6_BS, "TF: MOV SS then NOP");
}

static void step_native(void)
{
	db_reset();
	asm volatile(TF_ON "nop" LABEL_AFTER : : : "r11", "memory");
	report_one(step_after, DR6_BS, "TF: NOP");
	step_msr(MSR_EFER, "TF: RDMSR of EFER (the engine's)");
}

/* -- breakpoints ----------------------------------------------------------------------------- */

/* DR0 = label 8 as an instruction breakpoint (R/W 00, LEN 00) */
#define BP_ON                                                                                    \
	"lea 8f(%%rip), %%r11\n\tmov %%r11, step_at(%%rip)\n\tmov %%r11, %%dr0\n\t"               \
	"lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"                               \
	"mov %[dr7], %%r11\n\tmov %%r11, %%dr7\n8:\t"

static void break_on_each(bool kvm)
{
	uint64_t dr7 = DR7_L(0) | DR7_GE, v;
	uint32_t a, b, c, d;

	db_reset();
	asm volatile(BP_ON "nop" LABEL_AFTER : : [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: NOP");
	a = c = 0;
	db_reset();
	asm volatile(BP_ON "cpuid" LABEL_AFTER : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: CPUID");
	db_reset();
	asm volatile(BP_ON "outb %%al, $0x80" LABEL_AFTER : : "a"(0), [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: OUT");
	db_reset();
	asm volatile(BP_ON "rdmsr" LABEL_AFTER : "=a"(a), "=d"(d) : "c"(MSR_IA32_APICBASE), [dr7] "r"(dr7)
		     : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: RDMSR (an exit)");
	db_reset();
	asm volatile(BP_ON "rdpmc" LABEL_AFTER : "=a"(a), "=d"(d) : "c"(0), [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: RDPMC");
	db_reset();
	asm volatile(BP_ON "mov %%cr8, %0" LABEL_AFTER : "=r"(v) : [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report_one(step_at, DR6_B(0), "DR0 execute: MOV from CR8");
	if (kvm) {
		v = KVM_HC_VAPIC_POLL_IRQ;
		db_reset();
		asm volatile(BP_ON "vmcall" LABEL_AFTER : "+a"(v) : [dr7] "r"(dr7) : "rbx", "rcx", "rdx", "rsi", "r11",
			     "memory");
		write_dr7(0);
		report_one(step_at, DR6_B(0), "DR0 execute: VMCALL");
	}
}

/*
 * RF spares only the instruction it was set for: DR0 on an OUT and DR1 on the NOP after it are two
 * #DB faults (the handler sets RF for the first, the OUT completes and clears it).
 */
static void break_after_emulated(void)
{
	uint64_t dr7 = DR7_L(0) | DR7_L(1) | DR7_GE;

	db_reset();
	asm volatile("lea 8f(%%rip), %%r11\n\tmov %%r11, step_at(%%rip)\n\tmov %%r11, %%dr0\n\t"
		     "lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\tmov %%r11, %%dr1\n\t"
		     "mov %[dr7], %%dr7\n"
		     "8:\toutb %%al, $0x80\n"
		     "9:\tnop\n\t" : : "a"(0), [dr7] "r"(dr7) : "r11", "memory");
	write_dr7(0);
	report(db_count == 2 && db_rip[0] == step_at && (db_dr6[0] & 0xf) == DR6_B(0) && db_rip[1] == step_after &&
	       (db_dr6[1] & 0xf) == DR6_B(1),
	       "DR0 on OUT, DR1 on the next instruction: two #DB faults (%d #DB, RIP 0x%lx/0x%lx, DR6 0x%lx/0x%lx)",
	       db_count, db_rip[0], db_rip[1], db_dr6[0], db_dr6[1]);
}

static void break_on_data(void)
{
	uint64_t dr7 = DR7_L(1) | DR7_RW(1, RW_WRITE) | DR7_LEN(1, LEN_8) | DR7_GE;
	uint32_t a = 0, b, c = 0, d;
	uint64_t v;

	write_dr1((uintptr_t)&data_word);
	write_dr7(dr7);
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "movq $1, data_word(%%rip)" LABEL_AFTER : : : "r11", "memory");
	report_one(step_after, DR6_B(1), "DR1 data write: trap after the store");
	db_reset();
	v = data_word;
	report(db_count == 0, "DR1 data write: a read does not trap (%d #DB)", db_count);
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "movq $2, data_word(%%rip)" LABEL_AFTER "cpuid"
		     : "+a"(a), "=b"(b), "+c"(c), "=d"(d) : : "r11", "memory");
	report_one(step_after, DR6_B(1), "DR1 data write before CPUID: trap before the CPUID");
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "movq $2, data_word(%%rip)" LABEL_AFTER "outb %%al, $0x80" : : "a"(0) : "r11", "memory");
	report_one(step_after, DR6_B(1), "DR1 data write before OUT: trap before the OUT, which then runs once");
	db_reset();
	asm volatile(TF_ON "movq $3, data_word(%%rip)" LABEL_AFTER : : : "r11", "memory");
	report_one(step_after, DR6_BS | DR6_B(1), "TF and DR1 data write: one #DB with BS and B1");
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "movl $5, 4+data_word(%%rip)" LABEL_AFTER : : : "r11", "memory");
	report_one(step_after, DR6_B(1), "DR1 8-byte data write: a store to its upper half traps");

	/* read/write breakpoint, 4 bytes: a read traps; an 8-byte store overlapping it from below too */
	write_dr1((uintptr_t)&data_word + 4);
	write_dr7(DR7_L(1) | DR7_RW(1, 3) | DR7_LEN(1, 3) | DR7_GE);
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "mov data_word(%%rip), %0" LABEL_AFTER : "=r"(v) : : "r11", "memory");
	report_one(step_after, DR6_B(1), "DR1 data read/write: an 8-byte read overlapping it traps");
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "mov data_word(%%rip), %k0" LABEL_AFTER : "=r"(v) : : "r11", "memory");
	report(db_count == 0, "DR1 data read/write: a read of the bytes below it does not trap (%d #DB)", db_count);
	write_dr7(0);
	db_reset();
	data_word = 6;
	report(db_count == 0, "DR7 cleared: no more data traps (%d #DB)", db_count);
}

/* REP STOSB over 16 bytes with a data breakpoint on byte 8: the trap follows that iteration, RIP at
 * the REP STOSB with 7 iterations left; the handler's return finishes it */
static uint8_t rep_buffer[16] __attribute__((aligned(16)));
static volatile uint64_t rep_rcx_at_trap;

static void rep_handler_probe(struct ex_regs *regs)
{
	rep_rcx_at_trap = regs->rcx;
	db_handler(regs);
}

static void break_in_rep(void)
{
	uint64_t rcx = sizeof(rep_buffer);
	void *dst = rep_buffer;

	handle_exception(DB_VECTOR, rep_handler_probe);
	write_dr0((uintptr_t)&rep_buffer[8]);
	write_dr7(DR7_L(0) | DR7_RW(0, RW_WRITE) | DR7_GE);
	db_reset();
	asm volatile("lea 8f(%%rip), %%r11\n\tmov %%r11, step_at(%%rip)\n"
		     "8:\trep stosb" LABEL_AFTER : "+c"(rcx), "+D"(dst) : "a"(0xab) : "r11", "memory");
	write_dr7(0);
	handle_exception(DB_VECTOR, db_handler);
	report(one_db(step_at, DR6_B(0)) && rep_rcx_at_trap == 7 && rcx == 0 && rep_buffer[15] == 0xab,
	       "DR0 data write in REP STOSB: one trap after the 9th iteration, at the instruction "
	       "(%d #DB, RIP 0x%lx, RCX %lu)", db_count, db_rip[0], rep_rcx_at_trap);
}

static void break_on_io(void)
{
	uint64_t dr7 = DR7_L(2) | DR7_RW(2, RW_IO) | DR7_GE;

	write_cr4(read_cr4() | X86_CR4_DE);
	write_dr2(0x80);
	write_dr7(dr7);
	db_reset();
	asm volatile("lea 9f(%%rip), %%r11\n\tmov %%r11, step_after(%%rip)\n\t"
		     "outb %%al, $0x80" LABEL_AFTER : : "a"(0) : "r11", "memory");
	report_one(step_after, DR6_B(2), "DR2 I/O port 0x80: trap after OUT");
	db_reset();
	asm volatile("outb %%al, $0x81" : : "a"(0) : "memory");
	report(db_count == 0, "DR2 I/O port 0x80: OUT to 0x81 does not trap (%d #DB)", db_count);
	db_reset();
	asm volatile(TF_ON "inb $0x80, %%al" LABEL_AFTER : : : "rax", "r11", "memory");
	report_one(step_after, DR6_BS | DR6_B(2), "TF and DR2 I/O: one #DB with BS and B2 after IN");
	write_dr7(0);
	write_cr4(read_cr4() & ~X86_CR4_DE);
}

int main(struct multiboot_info *mbi)
{
	const char *cmdline = mbi_cmdline(mbi);
	bool amd = cpu_is_amd(), kvm = cmdline_has_word(cmdline, "kvm");

	printf("debug traps test\n");
	report_info("vendor %s, hypercalls %s", amd ? "AMD" : "Intel", kvm ? "on" : "off");
	pmu_init();
	handle_exception(DB_VECTOR, db_handler);

	step_native();
	step_cpuid();
	step_io();
	step_msr(MSR_IA32_APICBASE, "TF: RDMSR of APIC_BASE (an exit)");
	step_msr(pmu_sel_msr(0), "TF: RDMSR of a PMU event select (the PMU's C path)");
	step_msr(MSR_IA32_TSC, "TF: RDMSR of the TSC");
	step_rdpmc();
	step_cr8();
	step_tsc();
	step_syscall(0, "TF: SYSCALL with FMASK keeping TF");
	step_syscall(X86_EFLAGS_TF, "TF: SYSCALL with FMASK clearing TF: no #DB at the target");
	step_sysenter(amd);
	step_hypercall(false, kvm);
	step_hypercall(true, kvm);
	step_faulting_rdmsr();
	step_mov_ss();

	break_on_each(kvm);
	break_after_emulated();
	break_on_data();
	break_in_rep();
	break_on_io();
	return report_summary();
}
