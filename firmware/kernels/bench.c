/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Benchmark kernel: runs exactly one measured loop, chosen on the command
 * line, and exits.  Used by the host benchmarks (bench/), which time the
 * loop between two OUTs to the marker port 0x4f0 (a device the benchmark
 * registers; nobody owns the port otherwise, so the writes are ignored).
 *
 * Command line: op=NAME n=ITERATIONS counters=none|insn_branch|all
 *
 *   alu             bench_alu_loop: 8 register ALU ops + dec + jnz per
 *                   iteration (10 instructions); the host runs the same
 *                   bytes in bare Unicorn (symbols bench_alu_loop and
 *                   bench_alu_loop_end)
 *   plain           mov %rax,%rdx (the baseline of every op below)
 *   out             outb to the unowned port 0x80
 *   out_uart        outb to the UART scratch register (0x3ff)
 *   rdmsr_pmc       RDMSR 0xc1 (IA32_PERFCTR0)
 *   wrmsr_evtsel    WRMSR 0x186 (IA32_PERFEVTSEL0) = EN|OS|USR|0xc0
 *   rdmsr_apicbase  RDMSR 0x1b (IA32_APIC_BASE, a Python device)
 *   rdpmc           RDPMC 0
 *   cpuid           CPUID leaf 1 (EAX=1, ECX=0 set again each iteration)
 *   loopdelay       "1: loop 1b" with RCX = n: one self-looping LOOP
 *   decloop         "1: dec %rcx; jnz 1b" with RCX = n
 *   store           movl to a RAM page with no code in it
 *   rep_stosb       lea buf, %rdi; mov len, %rcx; mov %edx, %eax; rep stosb
 *                   (len= bytes, default 4096, at most 65536): one REP
 *                   instruction of len iterations per loop iteration
 *   rep_movsb       lea; lea; mov len, %rcx; rep movsb: one buffer into
 *                   another (filled with a pattern before the loop); both
 *                   print a checksum of the buffers (INFO sum=)
 *   eoi_mmio, tpr_mmio, timer_mmio          xAPIC MMIO write of EOI, TPR,
 *                                           timer initial count
 *   eoi_x2apic, tpr_x2apic, timer_x2apic    the same as x2APIC WRMSRs
 *   selfipi, selfipi_x2apic  self-IPI (xAPIC ICR / x2APIC SELF_IPI) with
 *                   IF=1, wait for the handler; reports the summed TSC
 *                   delta (1 TSC tick = 1 retired instruction) between an
 *                   RDTSC just before the ICR write and one in the handler,
 *                   and fixed_insns, the instructions in that window that
 *                   are not waiting (RDTSC, setup, the write, two pushes):
 *                   delta - fixed_insns = instructions run after the write
 *                   before the handler's first instruction
 *
 * Every loop is one inline asm block with a fixed instruction sequence per
 * iteration (body, dec %rsi, jnz; the REP loops count in %rdx), no calls.
 * counters= programs the PMU (Intel arch events) before the first marker
 * and reads it after the second; the counts are printed as INFO lines.
 *
 * counters=sample period=P samples the loop like perf record: GP0 counts
 * instructions and GP1 branches, each with a PMI (periods P and P/2 + 3);
 * the loop runs with IF=1 and the PMI handler re-arms the counters that
 * overflowed and folds the interrupted RIP and RCX, the TSC (1 tick = 1
 * retired instruction) and GLOBAL_STATUS into a checksum (INFO pmis=,
 * pmi_sum=, last_rcx=, last_tsc=; pmis_mid_rep= for the REP loops: those
 * that came between two iterations of the REP, 0 < RCX < len).  The host
 * compares these runs with the hook layer's fast paths on and off.
 * counters=sample_llc: the same with GP0 counting LLC references (0x4f2e),
 * whose PMI comes at a block boundary, e.g. between two iterations of a
 * REP string instruction.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define MARK_PORT 0x4f0
#define IPI_VECTOR 0x40
#define TIMER_COUNT 1000000000 /* far beyond any loop: never expires */
#define EN_OS_USR (EVNTSEL_EN | EVNTSEL_OS | EVNTSEL_USR)

#define STR(x) #x
#define XSTR(x) STR(x)

volatile uint32_t bench_irq_tsc, bench_irq_seen;
#define PMI_VECTOR 0x41
static volatile uint64_t pmis, pmi_sum, pmi_last_rcx, pmi_last_tsc;
static uint64_t sample_period[2];
static uint64_t rep_len, pmis_mid_rep; /* PMIs between two iterations of a REP */
uint32_t bench_store_buf[1024] __attribute__((aligned(4096)));
#define REP_BUF 65536
uint8_t bench_rep_buf[2][REP_BUF] __attribute__((aligned(4096)));

void bench_alu_loop(void);     /* lib/alu_loop.S: RCX iterations of 10 instructions */

/*
 * Interrupt handlers for the self-IPI loops: RDTSC as early as possible
 * (after two pushes), note it, EOI, return.
 */
asm(".text\n"
    "bench_irq_xapic:\n"
    "	push %rax\n"
    "	push %rdx\n"
    "	rdtsc\n"
    "	mov %eax, bench_irq_tsc(%rip)\n"
    "	movl $1, bench_irq_seen(%rip)\n"
    "	mov $" XSTR(APIC_DEFAULT_BASE + APIC_EOI) ", %edx\n"
    "	movl $0, (%rdx)\n"
    "	pop %rdx\n"
    "	pop %rax\n"
    "	iretq\n"
    "bench_irq_x2apic:\n"
    "	push %rax\n"
    "	push %rdx\n"
    "	rdtsc\n"
    "	mov %eax, bench_irq_tsc(%rip)\n"
    "	movl $1, bench_irq_seen(%rip)\n"
    "	push %rcx\n"
    "	mov $" XSTR(APIC_MSR(APIC_EOI)) ", %ecx\n"
    "	xor %eax, %eax\n"
    "	xor %edx, %edx\n"
    "	wrmsr\n"
    "	pop %rcx\n"
    "	pop %rdx\n"
    "	pop %rax\n"
    "	iretq\n");
void bench_irq_xapic(void);
void bench_irq_x2apic(void);

/* one loop: SETUP once, then N x (BODY; dec %rsi; jnz) */
#define LOOP(n, setup, body)                                                  \
	asm volatile(setup "\n1:\n\t" body "\n\tdec %%rsi\n\tjnz 1b"          \
		     : "+S"(n)                                                \
		     :                                                        \
		     : "rax", "rcx", "rdx", "rdi", "r8", "r9", "r10", "r11",  \
		       "memory", "cc")

#define MOV_ECX(v) "mov $" XSTR(v) ", %%ecx\n\t"
#define MOV_EDI(v) "mov $" XSTR(v) ", %%edi\n\t"
#define ZERO_EAX_EDX "xor %%eax, %%eax\n\txor %%edx, %%edx\n\t"
#define XAPIC(reg) (APIC_DEFAULT_BASE + (reg))

/* self-IPI loop: returns the sum of the TSC deltas over n interrupts */
static uint64_t selfipi_loop(uint64_t n, bool x2apic)
{
	register uint64_t sum asm("r10") = 0;

	/*
	 * r11 = ICR value (xAPIC) or SELF_IPI vector (x2APIC); the ICR write
	 * is "movl %r11d, (%rdi)" or "wrmsr" with ECX/EAX/EDX preset again
	 * each iteration (RDTSC clobbers EAX/EDX).
	 */
	if (!x2apic)
		asm volatile("sti\n\t"
			     MOV_EDI(XAPIC(APIC_ICR))
			     "mov $" XSTR(APIC_DEST_SELF | IPI_VECTOR) ", %%r11d\n"
			     "1:\n\t"
			     "movl $0, bench_irq_seen(%%rip)\n\t"
			     "rdtsc\n\t"
			     "mov %%eax, %%r9d\n\t"
			     "movl %%r11d, (%%rdi)\n"
			     "2:\n\t"
			     "cmpl $0, bench_irq_seen(%%rip)\n\t"
			     "je 2b\n\t"
			     "mov bench_irq_tsc(%%rip), %%eax\n\t"
			     "sub %%r9d, %%eax\n\t"
			     "add %%rax, %%r10\n\t"
			     "dec %%rsi\n\t"
			     "jnz 1b\n\t"
			     "cli"
			     : "+S"(n), "+r"(sum)
			     :
			     : "rax", "rcx", "rdx", "rdi", "r9", "r11", "memory",
			       "cc");
	else
		asm volatile("sti\n\t"
			     "mov $" XSTR(IPI_VECTOR) ", %%r11d\n"
			     "1:\n\t"
			     "movl $0, bench_irq_seen(%%rip)\n\t"
			     MOV_ECX(APIC_MSR(APIC_SELF_IPI))
			     "rdtsc\n\t"
			     "mov %%eax, %%r9d\n\t"
			     "mov %%r11d, %%eax\n\t"
			     "xor %%edx, %%edx\n\t"
			     "wrmsr\n"
			     "2:\n\t"
			     "cmpl $0, bench_irq_seen(%%rip)\n\t"
			     "je 2b\n\t"
			     "mov bench_irq_tsc(%%rip), %%eax\n\t"
			     "sub %%r9d, %%eax\n\t"
			     "add %%rax, %%r10\n\t"
			     "dec %%rsi\n\t"
			     "jnz 1b\n\t"
			     "cli"
			     : "+S"(n), "+r"(sum)
			     :
			     : "rax", "rcx", "rdx", "rdi", "r9", "r11", "memory",
			       "cc");
	return sum;
}

/* what the REP loops left in their buffers */
static uint64_t rep_checksum(void)
{
	uint64_t sum = 0;

	for (int i = 0; i < REP_BUF; i += 8)
		sum = sum * 31 + *(uint64_t *)&bench_rep_buf[1][i] +
		      *(uint64_t *)&bench_rep_buf[0][i];
	return sum;
}

static int run_loop(const char *op, uint64_t n, uint64_t len, uint64_t *tsc_sum)
{
	if (!strcmp(op, "alu"))
		asm volatile("call bench_alu_loop"
			     : "+c"(n)
			     :
			     : "rax", "rbx", "rdx", "r8", "r9", "memory", "cc");
	else if (!strcmp(op, "plain"))
		LOOP(n, "", "mov %%rax, %%rdx");
	else if (!strcmp(op, "out"))
		LOOP(n, "", "outb %%al, $0x80");
	else if (!strcmp(op, "out_uart"))
		LOOP(n, "mov $0x3ff, %%edx\n\t", "outb %%al, %%dx");
	else if (!strcmp(op, "rdmsr_pmc"))
		LOOP(n, MOV_ECX(MSR_IA32_PERFCTR0), "rdmsr");
	else if (!strcmp(op, "wrmsr_evtsel"))
		LOOP(n, MOV_ECX(MSR_IA32_EVNTSEL0) "mov $0x4300c0, %%eax\n\t"
			"xor %%edx, %%edx\n\t", "wrmsr");
	else if (!strcmp(op, "rdmsr_apicbase"))
		LOOP(n, MOV_ECX(MSR_IA32_APICBASE), "rdmsr");
	else if (!strcmp(op, "rdpmc"))
		LOOP(n, "xor %%ecx, %%ecx\n\t", "rdpmc");
	else if (!strcmp(op, "cpuid"))
		asm volatile("1:\n\tmov $1, %%eax\n\txor %%ecx, %%ecx\n\tcpuid"
			     "\n\tdec %%rsi\n\tjnz 1b"
			     : "+S"(n) : : "rax", "rbx", "rcx", "rdx", "memory", "cc");
	else if (!strcmp(op, "loopdelay"))
		asm volatile("1: loop 1b" : "+c"(n) : : "memory");
	else if (!strcmp(op, "decloop"))
		asm volatile("1: dec %%rcx\n\tjnz 1b" : "+c"(n) : : "memory", "cc");
	else if (!strcmp(op, "store"))
		LOOP(n, "lea bench_store_buf(%%rip), %%rdi\n\t",
		     "movl %%eax, (%%rdi)");
	else if (!strcmp(op, "rep_stosb"))
		asm volatile("1:\n\tlea bench_rep_buf(%%rip), %%rdi\n\t"
			     "mov %[len], %%rcx\n\tmov %%edx, %%eax\n\trep stosb\n\t"
			     "dec %%rdx\n\tjnz 1b"
			     : "+d"(n)
			     : [len] "r"(len)
			     : "rax", "rcx", "rdi", "memory", "cc");
	else if (!strcmp(op, "rep_movsb"))
		asm volatile("1:\n\tlea bench_rep_buf(%%rip), %%rsi\n\t"
			     "lea bench_rep_buf+" XSTR(REP_BUF) "(%%rip), %%rdi\n\t"
			     "mov %[len], %%rcx\n\trep movsb\n\tdec %%rdx\n\tjnz 1b"
			     : "+d"(n)
			     : [len] "r"(len)
			     : "rcx", "rsi", "rdi", "memory", "cc");
	else if (!strcmp(op, "eoi_mmio"))
		LOOP(n, MOV_EDI(XAPIC(APIC_EOI)) "xor %%eax, %%eax\n\t",
		     "movl %%eax, (%%rdi)");
	else if (!strcmp(op, "tpr_mmio"))
		LOOP(n, MOV_EDI(XAPIC(APIC_TPR)) "xor %%eax, %%eax\n\t",
		     "movl %%eax, (%%rdi)");
	else if (!strcmp(op, "timer_mmio"))
		LOOP(n, MOV_EDI(XAPIC(APIC_TMICT)) "mov $" XSTR(TIMER_COUNT)
			", %%eax\n\t", "movl %%eax, (%%rdi)");
	else if (!strcmp(op, "eoi_x2apic"))
		LOOP(n, MOV_ECX(APIC_MSR(APIC_EOI)) ZERO_EAX_EDX, "wrmsr");
	else if (!strcmp(op, "tpr_x2apic"))
		LOOP(n, MOV_ECX(APIC_MSR(APIC_TPR)) ZERO_EAX_EDX, "wrmsr");
	else if (!strcmp(op, "timer_x2apic"))
		LOOP(n, MOV_ECX(APIC_MSR(APIC_TMICT)) "mov $" XSTR(TIMER_COUNT)
			", %%eax\n\txor %%edx, %%edx\n\t", "wrmsr");
	else if (!strcmp(op, "selfipi"))
		*tsc_sum = selfipi_loop(n, false);
	else if (!strcmp(op, "selfipi_x2apic"))
		*tsc_sum = selfipi_loop(n, true);
	else
		return -1;
	return 0;
}

/* Intel events for counters=all, one per GP counter */
static const uint16_t all_events[] = {
	0x003c, 0x00c0, 0x013c, 0x4f2e, 0x412e, 0x00c4, 0x00c5, 0x00c0,
};

static void write_period(int n, uint64_t period)
{
	uint64_t v = 0 - period;

	wrmsr(pmu_ctr_msr(n), pmu.full_width ? v & pmu_gp_mask() : (uint32_t)v);
}

static void sample_pmi(struct ex_regs *regs)
{
	uint64_t st = rdmsr(pmu.global_status), tsc = rdtsc();

	pmis++;
	pmi_sum = pmi_sum * 31 + regs->rip * 7 + regs->rcx * 3 + tsc + st;
	pmi_last_rcx = regs->rcx;
	pmi_last_tsc = tsc;
	if (regs->rcx && regs->rcx < rep_len)
		pmis_mid_rep++;
	for (int i = 0; i < 2; i++)
		if (st & (1ull << i))
			write_period(i, sample_period[i]);
	wrmsr(pmu.global_clear, st);
	apic_write(APIC_LVTPC, PMI_VECTOR); /* the PMI masked it */
	apic_eoi();
}

static int program_sampling(uint64_t period, bool llc)
{
	if (pmu.amd || pmu.version < 2 || pmu.nr_gp < 2)
		return -1;
	pmu_reset_all();
	handle_exception(PMI_VECTOR, sample_pmi);
	apic_write(APIC_LVTPC, PMI_VECTOR);
	sample_period[0] = period;
	sample_period[1] = period / 2 + 3;
	write_period(0, sample_period[0]);
	write_period(1, sample_period[1]);
	wrmsr(pmu_sel_msr(0), EN_OS_USR | EVNTSEL_INT | (llc ? 0x4f2e : 0xc0));
	wrmsr(pmu_sel_msr(1), EN_OS_USR | EVNTSEL_INT | 0xc4);
	wrmsr(pmu.global_ctrl, 3);
	return 2;
}

static int program_counters(const char *which, uint64_t period)
{
	int gp = 0;

	if (!strcmp(which, "none") || !which[0])
		return 0;
	if (!strcmp(which, "sample") || !strcmp(which, "sample_llc"))
		return program_sampling(period, which[6] != 0);
	if (pmu.amd || pmu.version < 2)
		return -1;
	pmu_reset_all();
	if (!strcmp(which, "insn_branch")) {
		wrmsr(pmu_sel_msr(0), EN_OS_USR | 0xc0);
		wrmsr(pmu_sel_msr(1), EN_OS_USR | 0xc4);
		gp = 2;
		wrmsr(pmu.global_ctrl, 3);
	} else if (!strcmp(which, "all")) {
		for (; gp < pmu.nr_gp && gp < (int)ARRAY_SIZE(all_events); gp++)
			wrmsr(pmu_sel_msr(gp), EN_OS_USR | all_events[gp]);
		wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0x333 & ((1u << (4 * pmu.nr_fixed)) - 1));
		wrmsr(pmu.global_ctrl, pmu_all_counters_mask());
	} else {
		return -1;
	}
	return gp;
}

static void print_counters(int gp, const char *which)
{
	if (!gp)
		return;
	wrmsr(pmu.global_ctrl, 0);
	for (int i = 0; i < gp; i++)
		report_info("pmc%d=%lu evtsel=0x%lx", i, rdmsr(pmu_ctr_msr(i)),
			    rdmsr(pmu_sel_msr(i)));
	if (!strcmp(which, "all"))
		for (int i = 0; i < pmu.nr_fixed; i++)
			report_info("fixed%d=%lu", i,
				    rdmsr(MSR_CORE_PERF_FIXED_CTR0 + i));
}

static void setup_apic(const char *op)
{
	size_t len = strlen(op);
	bool x2 = len > 7 && !strcmp(op + len - 7, "_x2apic");

	if (x2 && !apic_to_x2apic()) {
		report(false, "x2APIC mode for %s", op);
		exit(report_summary());
	}
	apic_sw_enable();
	set_idt_entry(IPI_VECTOR, x2 ? bench_irq_x2apic : bench_irq_xapic, 0);
}

int main(struct multiboot_info *mbi)
{
	const char *cmd = mbi_cmdline(mbi);

	char op[32], which[32];
	uint64_t n = cmdline_u64(cmd, "n", 1000000), tsc_sum = 0;
	uint64_t len = cmdline_u64(cmd, "len", 4096);
	uint32_t calib;

	cmdline_word(cmd, "op", op, sizeof(op));
	cmdline_word(cmd, "counters", which, sizeof(which));
	if (!op[0])
		memcpy(op, "alu", 4);
	if (!n)
		n = 1;
	if (len > REP_BUF)
		len = REP_BUF;
	if (!strncmp(op, "rep_", 4))
		rep_len = len;
	pmu_init();
	setup_apic(op);
	/* calibration: TSC delta over "rdtsc; mov" (2 if 1 tick = 1 insn) */
	asm volatile("rdtsc\n\tmov %%eax, %%ecx\n\trdtsc\n\tsub %%ecx, %%eax"
		     : "=a"(calib) : : "rcx", "rdx");
	for (int i = 0; i < REP_BUF; i++)
		bench_rep_buf[0][i] = (uint8_t)(i * 7 + (i >> 8));
	int gp = program_counters(which, cmdline_u64(cmd, "period", 1000));
	if (gp < 0) {
		report(false, "counters=%s not supported on this PMU", which);
		return report_summary();
	}

	bool sampling = !strncmp(which, "sample", 6);
	outb(1, MARK_PORT);
	if (sampling)
		sti();
	int err = run_loop(op, n, len, &tsc_sum);
	if (sampling)
		cli();
	outb(2, MARK_PORT);

	print_counters(gp, which);
	report_info("op=%s n=%lu counters=%s", op, n, which[0] ? which : "none");
	if (!strncmp(op, "rep_", 4))
		report_info("len=%lu sum=%lu", len, rep_checksum());
	if (!strncmp(op, "selfipi", 7))
		report_info("tsc_sum=%lu fixed_insns=%d tsc_calib=%u", tsc_sum,
			    strcmp(op, "selfipi") ? 7 : 5, calib);
	if (sampling)
		report_info("pmis=%lu pmi_sum=%lu last_rcx=%lu last_tsc=%lu", pmis,
			    pmi_sum, pmi_last_rcx, pmi_last_tsc);
	if (sampling && rep_len)
		report_info("pmis_mid_rep=%lu", pmis_mid_rep);
	report(!err, "ran loop %s", op);
	return report_summary();
}
