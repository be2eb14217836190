/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Loads of CR0, CR3, CR4 and IA32_EFER that a CPU refuses with #GP(0) (Intel
 * SDM vol. 2 "MOV - Move to/from Control Registers" and "WRMSR", vol. 3
 * sections 2.5, 4.1 and 10.8.5; AMD APM vol. 2 3.1): reserved bits, the bits
 * of features CPUID does not advertise, and illegal combinations, each next
 * to a valid load that must still work.  Most checks run in 64-bit mode; the
 * rules about leaving and entering long mode run during a short trip out of
 * it into legacy protected mode (legacy_trip below), which also takes a
 * SYSEXIT to CPL3 and a SYSENTER back there (the long-mode forms are in
 * sysenter.c).  Then MOV to/from control registers at CPL3.  The expectations follow the CPUID the VMM
 * offers, so one kernel serves every CPU model and --cpuid variant.
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define CR0_PE (1ull << 0)
#define CR0_NW (1ull << 29)
#define CR0_CD (1ull << 30)
#define CR0_PG (1ull << 31)
#define CR4_PSE (1ull << 4)
#define CR4_PAE (1ull << 5)
#define CR4_LA57 (1ull << 12)
#define CR4_PCIDE (1ull << 17)
#define CR3_NOFLUSH (1ull << 63)
#define CR3_PWT_PCD 0x18ull

enum { EAX, EBX, ECX, EDX };

static bool cpuid_has(uint32_t leaf, int reg, int bit)
{
	struct cpuid r = cpuid_indexed(leaf, 0);
	uint32_t regs[4] = { r.a, r.b, r.c, r.d };

	return (regs[reg] >> bit) & 1;
}

#define MOV_TO_CR(n, v) asm volatile(ASM_TRY_BEGIN "mov %0, %%cr" #n ASM_TRY_END : : "r"(v) : "memory")

/* Write control register cr (0, 3, 4 or 8); the vector it raised, or -1. */
static int write_cr(int cr, uint64_t v)
{
	exception_reset();
	switch (cr) {
	case 0: MOV_TO_CR(0, v); break;
	case 3: MOV_TO_CR(3, v); break;
	case 4: MOV_TO_CR(4, v); break;
	case 8: MOV_TO_CR(8, v); break;
	}
	return exception_vector();
}

static int read_cr(int cr)
{
	uint64_t v = 0;

	exception_reset();
	if (cr == 0)
		asm volatile(ASM_TRY_BEGIN "mov %%cr0, %0" ASM_TRY_END : "+r"(v) : : "memory");
	else
		asm volatile(ASM_TRY_BEGIN "mov %%cr8, %0" ASM_TRY_END : "+r"(v) : : "memory");
	return exception_vector();
}

static void expect_gp(int vector, const char *what, uint64_t v)
{
	report(vector == GP_VECTOR && exception_error_code() == 0, "%s -> #GP(0) (0x%lx: vector %d)", what, v,
	       vector);
}

static void expect_ok(int vector, const char *what, uint64_t v)
{
	report(vector < 0, "%s is accepted (0x%lx: vector %d)", what, v, vector);
}

/* a load that must fault; if it did not, put the old value back */
static void cr_gp(int cr, uint64_t v, uint64_t old, const char *what)
{
	int vector = write_cr(cr, v);

	expect_gp(vector, what, v);
	if (vector < 0)
		write_cr(cr, old);
}

/* a load that must work, then the old value again */
static void cr_ok(int cr, uint64_t v, uint64_t old, const char *what)
{
	expect_ok(write_cr(cr, v), what, v);
	write_cr(cr, old);
}

static void check_cr0(void)
{
	uint64_t cr0 = read_cr0();

	cr_gp(0, cr0 | (1ull << 32), cr0, "CR0 bit 32 (CR0[63:32] reserved)");
	cr_gp(0, cr0 | (1ull << 63), cr0, "CR0 bit 63");
	cr_gp(0, cr0 & ~CR0_PE, cr0, "CR0.PG without CR0.PE");
	cr_gp(0, cr0 | CR0_NW, cr0, "CR0.NW without CR0.CD");
	cr_gp(0, cr0 & ~CR0_PG, cr0, "clearing CR0.PG in 64-bit mode");
	cr_gp(0, cr0 & ~(CR0_PG | CR0_PE), cr0, "clearing CR0.PG and CR0.PE in 64-bit mode");
	cr_ok(0, cr0 | CR0_CD | CR0_NW, cr0, "CR0.CD with CR0.NW");
	cr_ok(0, cr0 ^ X86_CR0_WP, cr0, "toggling CR0.WP");
	report(read_cr0() == cr0, "CR0 unchanged (0x%lx)", read_cr0());
}

static void check_cr3(void)
{
	uint64_t cr3 = read_cr3();
	int maxphyaddr = cpuid(0x80000000).a >= 0x80000008 ? (int)(cpuid(0x80000008).a & 0xff) : 36;

	report_info("MAXPHYADDR %d", maxphyaddr);
	cr_gp(3, cr3 | CR3_NOFLUSH, cr3, "CR3 bit 63 with CR4.PCIDE clear");
	cr_gp(3, cr3 | (1ull << maxphyaddr), cr3, "CR3 bit MAXPHYADDR");
	cr_gp(3, cr3 | (1ull << 62), cr3, "CR3 bit 62");
	cr_ok(3, cr3 | CR3_PWT_PCD, cr3, "CR3 with PWT and PCD");
	report(read_cr3() == cr3, "CR3 unchanged (0x%lx)", read_cr3());
}

/* CR4 bits of features CPUID may or may not advertise */
static const struct cr4_feature {
	int cr4_bit;
	uint32_t leaf;
	int reg, bit;
	const char *name;
	bool safe; /* can be set and cleared again here without changing how this kernel runs */
} cr4_features[] = {
	{ 11, 7, ECX, 2, "UMIP", true },    { 13, 1, ECX, 5, "VMXE", true },
	{ 14, 1, ECX, 6, "SMXE", true },    { 16, 7, EBX, 0, "FSGSBASE", true },
	{ 18, 1, ECX, 26, "OSXSAVE", true }, { 19, 7, ECX, 23, "KL", true },
	{ 20, 7, EBX, 7, "SMEP", false },   { 21, 7, EBX, 20, "SMAP", false },
	{ 22, 7, ECX, 3, "PKE", false },    { 23, 7, ECX, 7, "CET", false },
	{ 24, 7, ECX, 31, "PKS", false },
};

static void check_cr4(void)
{
	uint64_t cr4 = read_cr4(), cr3 = read_cr3();
	char what[64];

	cr_gp(4, cr4 | (1ull << 15), cr4, "CR4 bit 15 (reserved)");
	cr_gp(4, cr4 | (1ull << 40), cr4, "CR4 bit 40 (reserved)");
	cr_gp(4, cr4 & ~CR4_PAE, cr4, "clearing CR4.PAE in long mode");
	cr_ok(4, cr4 ^ X86_CR4_PCE, cr4, "toggling CR4.PCE");
	for (unsigned i = 0; i < ARRAY_SIZE(cr4_features); i++) {
		const struct cr4_feature *f = &cr4_features[i];
		uint64_t bit = 1ull << f->cr4_bit;

		if (cr4 & bit)
			continue;
		if (!cpuid_has(f->leaf, f->reg, f->bit)) {
			snprintf(what, sizeof(what), "CR4.%s without CPUID %s", f->name, f->name);
			cr_gp(4, cr4 | bit, cr4, what);
		} else if (f->safe) {
			snprintf(what, sizeof(what), "CR4.%s with CPUID %s", f->name, f->name);
			cr_ok(4, cr4 | bit, cr4, what);
		} else {
			report_info("CPUID %s: CR4.%s not set here (it changes how this kernel runs)", f->name,
				    f->name);
		}
	}
	/* LA57 can only change outside long mode, advertised or not */
	cr_gp(4, cr4 | CR4_LA57, cr4,
	      cpuid_has(7, ECX, 16) ? "setting CR4.LA57 in long mode" : "CR4.LA57 without CPUID LA57");
	if (!cpuid_has(1, ECX, 17)) {
		cr_gp(4, cr4 | CR4_PCIDE, cr4, "CR4.PCIDE without CPUID PCID");
	} else {
		write_cr(3, cr3 | 8);
		cr_gp(4, cr4 | CR4_PCIDE, cr4, "CR4.PCIDE with CR3[11:0] != 0");
		write_cr(3, cr3);
		expect_ok(write_cr(4, cr4 | CR4_PCIDE), "CR4.PCIDE with CR3[11:0] = 0", cr4 | CR4_PCIDE);
		expect_ok(write_cr(3, cr3 | CR3_NOFLUSH), "CR3 bit 63 with CR4.PCIDE set", cr3 | CR3_NOFLUSH);
		report(read_cr3() == cr3, "CR3 bit 63 is not stored (CR3 0x%lx)", read_cr3());
		expect_ok(write_cr(3, cr3 | 5), "CR3 with PCID 5", cr3 | 5);
		write_cr(3, cr3);
		expect_ok(write_cr(4, cr4), "clearing CR4.PCIDE", cr4);
	}
	report(read_cr4() == cr4, "CR4 unchanged (0x%lx)", read_cr4());
}

static int write_efer(uint64_t v)
{
	exception_reset();
	wrmsr_safe(MSR_EFER, v);
	return exception_vector();
}

static const struct efer_feature {
	int efer_bit;
	uint32_t leaf;
	int reg, bit;
	const char *name;
} efer_features[] = {
	{ 0, 0x80000001, EDX, 11, "SCE" },   { 11, 0x80000001, EDX, 20, "NXE" },
	{ 12, 0x80000001, ECX, 2, "SVME" },  { 14, 0x80000001, EDX, 25, "FFXSR" },
	{ 15, 0x80000001, ECX, 17, "TCE" },
};

static void check_efer(void)
{
	uint64_t efer = rdmsr(MSR_EFER);
	char what[64];

	report((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA), "EFER.LME and EFER.LMA set (0x%lx)", efer);
	expect_gp(write_efer(efer | (1ull << 1)), "EFER bit 1 (reserved)", efer | 2);
	expect_gp(write_efer(efer | (1ull << 9)), "EFER bit 9 (reserved)", efer | (1ull << 9));
	expect_gp(write_efer(efer | (1ull << 13)), "EFER.LMSLE", efer | (1ull << 13));
	expect_gp(write_efer(efer | (1ull << 63)), "EFER bit 63 (reserved)", efer | (1ull << 63));
	for (unsigned i = 0; i < ARRAY_SIZE(efer_features); i++) {
		const struct efer_feature *f = &efer_features[i];
		uint64_t v = efer ^ (1ull << f->efer_bit);

		if (cpuid_has(f->leaf, f->reg, f->bit)) {
			snprintf(what, sizeof(what), "toggling EFER.%s with its CPUID bit", f->name);
			expect_ok(write_efer(v), what, v);
			write_efer(efer);
		} else if (!(efer & (1ull << f->efer_bit))) {
			snprintf(what, sizeof(what), "EFER.%s without its CPUID bit", f->name);
			expect_gp(write_efer(v), what, v);
		}
	}
	expect_gp(write_efer(efer & ~EFER_LME), "clearing EFER.LME while CR0.PG = 1", efer & ~EFER_LME);
	expect_ok(write_efer(efer & ~EFER_LMA), "EFER.LMA = 0 (ignored)", efer & ~EFER_LMA);
	report(rdmsr(MSR_EFER) == efer, "EFER unchanged (0x%lx)", rdmsr(MSR_EFER));
}

/*
 * The trip out of long mode: legacy_trip() switches to compatibility mode,
 * clears CR0.PG (leaving long mode) and EFER.LME, runs legacy_ops[] in legacy
 * protected mode with a 32-bit IDT whose stubs record the vector and resume
 * after the operation, then turns paging on again (the operations must leave
 * CR3, CR4 and EFER as long mode needs them) and comes back to 64-bit code.
 */
enum { OP_END, OP_CR0, OP_CR3 = 3, OP_CR4, OP_EFER, OP_SYSENTER };
struct legacy_op {
	uint32_t kind, lo, hi;
	int32_t vector;
	const char *what;
	bool gp;
};
_Static_assert(sizeof(struct legacy_op) == 32, "legacy_trip walks the table in 32-byte steps");
struct legacy_op legacy_ops[24];
uint64_t trip_gdt[4] __attribute__((aligned(16))) = {
	0, 0x00af9b000000ffffull, /* 0x08: 64-bit code */
	0x00cf93000000ffffull,    /* 0x10: data */
	0x00cf9b000000ffffull,    /* 0x18: 32-bit code, DPL0 */
};
struct descriptor_table_ptr trip_gdtr = { sizeof(trip_gdt) - 1, (uintptr_t)trip_gdt };
uint64_t trip_idt[32] __attribute__((aligned(16)));
struct descriptor_table_ptr trip_idtr = { sizeof(trip_idt) - 1, (uintptr_t)trip_idt };
struct descriptor_table_ptr trip_saved_gdtr, trip_saved_idtr;
uint64_t trip_saved_rsp;
uint32_t trip_esp, trip_vector;
/* OP_SYSENTER: SYSEXIT to CPL3, SYSENTER back; the selectors and stack pointers each side saw */
uint32_t trip_user_cs, trip_user_ss, trip_user_esp, trip_kernel_cs, trip_kernel_ss, trip_kernel_esp;
uint32_t trip_kernel_flags;
uint8_t trip_sysenter_stack[256] __attribute__((aligned(16)));
extern char trip_stubs[], trip_sysenter_entry[];
void legacy_trip(void);
/* 32-bit paging, 4 MiB pages: identity map of 4 GiB */
static uint32_t legacy_pd[1024] __attribute__((aligned(4096)));

asm(".text\n"
    ".code64\n"
    ".global legacy_trip\n"
    "legacy_trip:\n"
    "	push %rbx\n"
    "	push %rbp\n"
    "	push %r12\n"
    "	push %r13\n"
    "	push %r14\n"
    "	push %r15\n"
    "	pushfq\n"
    "	cli\n"
    "	sidt trip_saved_idtr(%rip)\n"
    "	sgdt trip_saved_gdtr(%rip)\n"
    "	mov %rsp, trip_saved_rsp(%rip)\n"
    "	lgdt trip_gdtr(%rip)\n"
    "	pushq $0x18\n"
    "	lea trip32(%rip), %rax\n"
    "	pushq %rax\n"
    "	lretq\n"
    ".code32\n"
    "trip32:\n"
    "	mov %cr0, %eax\n"
    "	and $0x7fffffff, %eax\n"
    "	mov %eax, %cr0\n"		/* paging off in compatibility mode: long mode ends */
    "	mov $0xc0000080, %ecx\n"
    "	rdmsr\n"
    "	and $~0x100, %eax\n"
    "	wrmsr\n"			/* EFER.LME off */
    "	lidt trip_idtr\n"
    "	mov %esp, trip_esp\n"
    "	mov $legacy_ops, %esi\n"
    "1:	mov (%esi), %ebx\n"
    "	test %ebx, %ebx\n"
    "	jz 9f\n"
    "	movl $-1, trip_vector\n"
    "	mov 4(%esi), %eax\n"
    "	mov 8(%esi), %edx\n"
    "	cmp $1, %ebx\n"
    "	je 11f\n"
    "	cmp $3, %ebx\n"
    "	je 13f\n"
    "	cmp $4, %ebx\n"
    "	je 14f\n"
    "	cmp $6, %ebx\n"
    "	je 16f\n"
    "	mov $0xc0000080, %ecx\n"
    "	wrmsr\n"
    "	jmp trip_resume\n"
    "11:	mov %eax, %cr0\n"
    "	jmp trip_resume\n"
    "13:	mov %eax, %cr3\n"
    "	jmp trip_resume\n"
    "14:	mov %eax, %cr4\n"
    "	jmp trip_resume\n"
    "16:	mov $trip_user, %edx\n"	/* SYSEXIT to CPL3 on this stack, SYSENTER back */
    "	mov %esp, %ecx\n"
    "	sti\n"			/* SYSEXIT keeps IF, SYSENTER must clear it */
    "	sysexit\n"
    "trip_user:\n"
    "	mov %cs, %eax\n"
    "	mov %eax, trip_user_cs\n"
    "	mov %ss, %eax\n"
    "	mov %eax, trip_user_ss\n"
    "	mov %esp, trip_user_esp\n"
    "	sysenter\n"
    ".global trip_sysenter_entry\n"
    "trip_sysenter_entry:\n"
    "	mov %cs, %eax\n"
    "	mov %eax, trip_kernel_cs\n"
    "	mov %ss, %eax\n"
    "	mov %eax, trip_kernel_ss\n"
    "	mov %esp, trip_kernel_esp\n"
    "	pushf\n"
    "	pop trip_kernel_flags\n"
    "	mov trip_esp, %esp\n"
    "	mov $0x10, %eax\n"
    "	mov %eax, %ss\n"
    "	ljmp $0x18, $trip_resume\n"	/* CS from the GDT again */
    "trip_resume:\n"
    "	mov trip_vector, %eax\n"
    "	mov %eax, 12(%esi)\n"
    "	add $32, %esi\n"
    "	jmp 1b\n"
    "9:	mov %cr0, %eax\n"
    "	or $0x80000000, %eax\n"
    "	mov %eax, %cr0\n"		/* long mode again (compatibility mode) */
    "	ljmp $0x08, $trip64\n"
    "trip_fault:\n"
    "	mov trip_esp, %esp\n"
    "	jmp trip_resume\n"
    "	.balign 16\n"
    "trip_stubs:\n"
    "	.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31\n"
    "	.balign 16\n"
    "	movl $\\v, trip_vector\n"
    "	jmp trip_fault\n"
    "	.endr\n"
    ".code64\n"
    "trip64:\n"
    "	mov trip_saved_rsp(%rip), %rsp\n"
    "	lgdt trip_saved_gdtr(%rip)\n"
    "	lidt trip_saved_idtr(%rip)\n"
    "	popfq\n"
    "	pop %r15\n"
    "	pop %r14\n"
    "	pop %r13\n"
    "	pop %r12\n"
    "	pop %rbp\n"
    "	pop %rbx\n"
    "	ret\n");

static unsigned n_ops;

static void op(uint32_t kind, uint64_t value, bool gp, const char *what)
{
	assert(n_ops + 1 < ARRAY_SIZE(legacy_ops));
	legacy_ops[n_ops++] = (struct legacy_op){ kind, (uint32_t)value, (uint32_t)(value >> 32), -1, what, gp };
	legacy_ops[n_ops].kind = OP_END;
}

static void check_outside_long_mode(void)
{
	uint64_t cr0 = read_cr0() & ~CR0_PG, cr3 = read_cr3(), cr4 = read_cr4();
	uint64_t efer = rdmsr(MSR_EFER) & ~(EFER_LME | EFER_LMA);
	bool pcid = cpuid_has(1, ECX, 17);

	assert(cr3 < (1ull << 32));
	for (unsigned i = 0; i < 1024; i++)
		legacy_pd[i] = (i << 22) | 0x83; /* present, writable, 4 MiB */
	for (int v = 0; v < 32; v++) {
		uint64_t a = (uintptr_t)trip_stubs + 16 * v;

		trip_idt[v] = (a & 0xffff) | (0x18ull << 16) | (0x8eull << 40) | ((a >> 16) << 48);
	}
	op(OP_CR4, cr4 | CR4_PCIDE, true, pcid ? "CR4.PCIDE outside long mode" : "CR4.PCIDE without CPUID PCID");
	op(OP_CR0, (cr0 & ~CR0_PE) | CR0_PG, true, "legacy mode: CR0.PG without CR0.PE");
	op(OP_CR0, cr0 | CR0_NW, true, "legacy mode: CR0.NW without CR0.CD");
	op(OP_CR4, cr4 & ~CR4_PAE, false, "clearing CR4.PAE outside long mode");
	op(OP_EFER, efer | EFER_LME, false, "EFER.LME with paging off");
	op(OP_CR0, cr0 | CR0_PG, true, "CR0.PG with EFER.LME and CR4.PAE clear");
	op(OP_EFER, efer, false, "clearing EFER.LME with paging off");
	op(OP_CR4, (cr4 & ~CR4_PAE) | CR4_PSE, false, "CR4.PSE");
	op(OP_CR3, (uintptr_t)legacy_pd, false, "CR3 = a 32-bit page directory");
	op(OP_CR0, cr0 | CR0_PG, false, "32-bit paging on");
	op(OP_EFER, efer | EFER_LME, true, "setting EFER.LME while CR0.PG = 1");
	op(OP_CR0, cr0, false, "32-bit paging off");
	/* what long mode needs again */
	op(OP_CR3, cr3, false, "CR3 back");
	op(OP_CR4, cr4, false, "CR4 back");
	op(OP_EFER, efer | EFER_LME, false, "EFER.LME back");
	op(OP_SYSENTER, 0, false, "legacy mode: SYSEXIT to CPL3 and SYSENTER back");

	wrmsr(MSR_IA32_SYSENTER_CS, 0x08);
	wrmsr(MSR_IA32_SYSENTER_ESP, (uintptr_t)(trip_sysenter_stack + sizeof(trip_sysenter_stack)));
	wrmsr(MSR_IA32_SYSENTER_EIP, (uintptr_t)trip_sysenter_entry);
	legacy_trip();
	report(rdmsr(MSR_EFER) & EFER_LMA, "back in long mode (EFER 0x%lx)", rdmsr(MSR_EFER));
	for (unsigned i = 0; i < n_ops; i++) {
		struct legacy_op *o = &legacy_ops[i];
		uint64_t v = o->lo | ((uint64_t)o->hi << 32);

		if (o->gp)
			report(o->vector == GP_VECTOR, "%s -> #GP(0) (0x%lx: vector %d)", o->what, v, o->vector);
		else
			report(o->vector < 0, "%s is accepted (0x%lx: vector %d)", o->what, v, o->vector);
	}
	report(trip_user_cs == 0x1b && trip_user_ss == 0x23 && trip_user_esp == trip_esp,
	       "legacy mode SYSEXIT: CS/SS = SYSENTER_CS + 16/24, RPL 3, ESP = ECX (0x%x/0x%x, 0x%x)", trip_user_cs,
	       trip_user_ss, trip_user_esp);
	report(trip_kernel_cs == 0x08 && trip_kernel_ss == 0x10 &&
		       trip_kernel_esp == (uintptr_t)(trip_sysenter_stack + sizeof(trip_sysenter_stack)),
	       "legacy mode SYSENTER: CS/SS = SYSENTER_CS/+8, ESP = SYSENTER_ESP (0x%x/0x%x, 0x%x)", trip_kernel_cs,
	       trip_kernel_ss, trip_kernel_esp);
	report(!(trip_kernel_flags & X86_EFLAGS_IF), "legacy mode SYSENTER clears IF (0x%x)", trip_kernel_flags);
}

/* CPL3: every MOV to or from a control register is a #GP */
static uint64_t user_cr_access(uint64_t what)
{
	switch (what) {
	case 0: return write_cr(0, 0x80000011);
	case 1: return write_cr(3, 0);
	case 2: return write_cr(4, 0);
	case 3: return write_cr(8, 0);
	case 4: return read_cr(0);
	default: return read_cr(8);
	}
}

static void check_cpl3(void)
{
	static const char *const names[] = { "MOV to CR0", "MOV to CR3", "MOV to CR4", "MOV to CR8",
					      "MOV from CR0", "MOV from CR8" };
	uint64_t cr8 = 0;

	for (unsigned i = 0; i < ARRAY_SIZE(names); i++) {
		uint64_t r = run_in_user(user_cr_access, i, 0, false);

		report(r == GP_VECTOR && user_fault_vector < 0, "%s at CPL3 -> #GP (vector %ld)", names[i], (long)r);
	}
	asm volatile("mov %%cr8, %0" : "=r"(cr8));
	report(cr8 == 0, "CR8 still 0 (%lu)", cr8);
}

int main(struct multiboot_info *mbi)
{
	printf("cr_checks test\n");
	check_cr0();
	check_cr3();
	check_cr4();
	check_efer();
	check_outside_long_mode();
	check_cpl3();
	return report_summary();
}
