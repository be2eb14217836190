/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SMP benchmark kernel: one measured operation over the vCPUs, chosen on the command line, timed
 * by the host between two OUTs to the marker port 0x4f0 (as firmware/kernels/bench.c; the host
 * benchmark bench/bench_smp.py registers the port).  The APs are started (INIT, SIPI, SIPI) and
 * idle in `sti; hlt` before the first marker, so start-up is not measured.
 *
 * Command line: op=NAME n=N [workers=K] [wait=spin|hlt]
 *
 *   alu          N iterations in all of bench_alu_loop (the loop of bench.c: 8 register ALU ops +
 *                dec + jnz = 10 instructions), split over the first K CPUs (workers=, default
 *                every CPU): N / K each, the remainder on the BSP, so the total work is the same
 *                whatever the CPU count.  The BSP kicks each working AP through its mailbox
 *                (smp_call_async: a fixed IPI), runs its own share, then waits in `sti; hlt`
 *                until every AP has sent it a "done" IPI: an idle vCPU takes no time slices.
 *   ipi          N ping-pong round trips between the BSP and CPU 1 through the xAPIC page: the
 *                BSP writes ICR2/ICR (fixed IPI, physical destination CPU 1), CPU 1 (idle in
 *                `sti; hlt`) takes it in a bare asm handler that writes ICR2/ICR to send a fixed
 *                IPI back to the BSP and EOIs; the BSP's handler counts the pong and EOIs.  The
 *                BSP waits for each pong spinning on the count (wait=spin, the default) or in
 *                `sti; hlt` (wait=hlt).
 *   ipi_x2apic   the same with both CPUs in x2APIC mode (ICR MSR 0x830, EOI MSR 0x80b).
 *
 * INFO lines: op=, n=, cpus= and workers=; for the ping-pongs tsc_delta= (the TSC across the N
 * round trips: the virtual clock, one tick per instruction retired by any vCPU) and the ping and
 * pong counts.  The status is PASS when every AP finished its share / every ping got its pong,
 * SKIP for a ping-pong with one CPU.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"
#include "smp.h"

#define MARK_PORT 0x4f0
#define V_DONE 0x50
#define V_PING 0x51
#define V_PONG 0x52

#define STR(x) #x
#define XSTR(x) STR(x)
#define XAPIC(reg) (APIC_DEFAULT_BASE + (reg))

void bench_alu_loop(void);     /* lib/alu_loop.S: RCX iterations of 10 instructions */

volatile uint32_t ping_count, pong_count;
uint32_t pong_dest; /* ICR destination of the pong: xAPIC ICR2 value or x2APIC ID */

/*
 * Ping (on CPU 1): count, send the pong to the BSP, EOI.  Pong (on the BSP): count, EOI.
 * Bare stubs, so a round trip is the same few instructions every time.
 */
asm(".text\n"
    "ping_xapic:\n"
    "	push %rax\n"
    "	push %rdx\n"
    "	lock incl ping_count(%rip)\n"
    "	mov pong_dest(%rip), %eax\n"
    "	mov $" XSTR(XAPIC(APIC_ICR2)) ", %edx\n"
    "	movl %eax, (%rdx)\n"
    "	mov $" XSTR(XAPIC(APIC_ICR)) ", %edx\n"
    "	movl $" XSTR(V_PONG) ", (%rdx)\n"
    "	mov $" XSTR(XAPIC(APIC_EOI)) ", %edx\n"
    "	movl $0, (%rdx)\n"
    "	pop %rdx\n"
    "	pop %rax\n"
    "	iretq\n"
    "pong_xapic:\n"
    "	push %rdx\n"
    "	lock incl pong_count(%rip)\n"
    "	mov $" XSTR(XAPIC(APIC_EOI)) ", %edx\n"
    "	movl $0, (%rdx)\n"
    "	pop %rdx\n"
    "	iretq\n"
    "ping_x2apic:\n"
    "	push %rax\n"
    "	push %rcx\n"
    "	push %rdx\n"
    "	lock incl ping_count(%rip)\n"
    "	mov $" XSTR(APIC_MSR(APIC_ICR)) ", %ecx\n"
    "	mov $" XSTR(V_PONG) ", %eax\n"
    "	mov pong_dest(%rip), %edx\n"
    "	wrmsr\n"
    "	mov $" XSTR(APIC_MSR(APIC_EOI)) ", %ecx\n"
    "	xor %eax, %eax\n"
    "	xor %edx, %edx\n"
    "	wrmsr\n"
    "	pop %rdx\n"
    "	pop %rcx\n"
    "	pop %rax\n"
    "	iretq\n"
    "pong_x2apic:\n"
    "	push %rax\n"
    "	push %rcx\n"
    "	push %rdx\n"
    "	lock incl pong_count(%rip)\n"
    "	mov $" XSTR(APIC_MSR(APIC_EOI)) ", %ecx\n"
    "	xor %eax, %eax\n"
    "	xor %edx, %edx\n"
    "	wrmsr\n"
    "	pop %rdx\n"
    "	pop %rcx\n"
    "	pop %rax\n"
    "	iretq\n");
void ping_xapic(void);
void pong_xapic(void);
void ping_x2apic(void);
void pong_x2apic(void);

static void alu_loop(uint64_t n)
{
	if (n)
		asm volatile("call bench_alu_loop"
			     : "+c"(n)
			     :
			     : "rax", "rbx", "rdx", "r8", "r9", "memory", "cc");
}

/* ---- alu ------------------------------------------------------------------------------------ */

static volatile int alu_done;
static uint64_t alu_share[SMP_MAX_CPUS];

static void done_handler(struct ex_regs *regs)
{
	apic_eoi();
}

static void alu_work(void *arg)
{
	alu_loop(*(uint64_t *)arg);
	atomic_inc(&alu_done);
	smp_send_ipi(APIC_DM_FIXED | V_DONE, smp_cpus[0].apic_id);
}

static void run_alu(uint64_t n, int workers)
{
	int kicked = 0;

	for (int i = 0; i < workers; i++)
		alu_share[i] = n / workers;
	alu_share[0] += n % workers;
	handle_exception(V_DONE, done_handler);

	outb(1, MARK_PORT);
	for (int i = 1; i < workers; i++)
		kicked += smp_call_async(i, alu_work, &alu_share[i]);
	alu_loop(alu_share[0]);
	asm volatile("cli" ::: "memory");
	while (__atomic_load_n(&alu_done, __ATOMIC_ACQUIRE) < kicked)
		asm volatile("sti; hlt; cli" ::: "memory");
	asm volatile("sti" ::: "memory");
	outb(2, MARK_PORT);

	bool acked = true;
	for (int i = 1; i < workers; i++)
		acked &= smp_wait(i);
	report_info("share=%lu on the BSP, %lu on each AP", alu_share[0],
		    workers > 1 ? alu_share[1] : 0);
	report(kicked == workers - 1 && alu_done == workers - 1 && acked,
	       "alu: %lu iterations on %d CPUs (%d APs kicked, %d done)", n, workers, kicked,
	       alu_done);
}

/* ---- ping-pong ------------------------------------------------------------------------------ */

static void ap_to_x2apic(void *arg)
{
	*(bool *)arg = apic_to_x2apic();
}

static void run_ipi(uint64_t n, bool x2apic, bool wait_hlt)
{
	uint32_t ap = smp_cpus[1].apic_id;
	uint64_t t0, t1, end;
	uint32_t done = 0;

	if (x2apic) {
		bool ok = false;
		if (!cpu_has_x2apic() || !smp_call(1, ap_to_x2apic, &ok) || !ok ||
		    !apic_to_x2apic()) {
			report(false, "x2APIC mode on the BSP and CPU 1");
			return;
		}
		pong_dest = smp_cpus[0].apic_id;
		set_idt_entry(V_PING, ping_x2apic, 0);
		set_idt_entry(V_PONG, pong_x2apic, 0);
	} else {
		pong_dest = smp_cpus[0].apic_id << 24;
		set_idt_entry(V_PING, ping_xapic, 0);
		set_idt_entry(V_PONG, pong_xapic, 0);
	}
	asm volatile("sti" ::: "memory");

	outb(1, MARK_PORT);
	t0 = rdtsc();
	for (uint32_t i = 1; i <= n; i++) {
		if (x2apic) {
			wrmsr(APIC_MSR(APIC_ICR), ((uint64_t)ap << 32) | APIC_DM_FIXED | V_PING);
		} else {
			xapic_write(APIC_ICR2, ap << 24);
			xapic_write(APIC_ICR, APIC_DM_FIXED | V_PING);
		}
		end = rdtsc() + SMP_TIMEOUT;
		if (wait_hlt) {
			asm volatile("cli" ::: "memory");
			while (pong_count != i && rdtsc() < end)
				asm volatile("sti; hlt; cli" ::: "memory");
			asm volatile("sti" ::: "memory");
		} else {
			while (pong_count != i && rdtsc() < end)
				pause();
		}
		if (pong_count != i)
			break;
		done = i;
	}
	t1 = rdtsc();
	outb(2, MARK_PORT);

	report_info("tsc_delta=%lu pings=%u pongs=%u", t1 - t0, ping_count, pong_count);
	report(done == n && ping_count == n && pong_count == n,
	       "%s: %u/%lu round trips with CPU 1 (BSP waits by %s)", x2apic ? "ipi_x2apic" : "ipi",
	       done, n, wait_hlt ? "hlt" : "spinning");
}

/* ---- main ----------------------------------------------------------------------------------- */

int main(struct multiboot_info *mbi)
{
	const char *cmd = mbi_cmdline(mbi);
	char op[32], wait[16];
	uint64_t n = cmdline_u64(cmd, "n", 1000000);
	int cpus, online, workers;

	cmdline_word(cmd, "op", op, sizeof(op));
	cmdline_word(cmd, "wait", wait, sizeof(wait));
	if (!op[0])
		memcpy(op, "alu", 4);
	if (!n)
		n = 1;
	cpus = smp_init(true);
	online = 1 + smp_start_aps();
	workers = (int)cmdline_u64(cmd, "workers", cpus);
	if (workers < 1 || workers > cpus)
		workers = cpus;
	report_info("op=%s n=%lu cpus=%d workers=%d", op, n, cpus, !strcmp(op, "alu") ? workers : 2);
	if (!report(online == cpus, "%d of %d CPUs online", online, cpus))
		return report_summary();

	if (!strcmp(op, "alu"))
		run_alu(n, workers);
	else if (strcmp(op, "ipi") && strcmp(op, "ipi_x2apic"))
		report(false, "unknown op=%s", op);
	else if (cpus < 2)
		report_skip("%s: needs two CPUs", op);
	else
		run_ipi(n, !strcmp(op, "ipi_x2apic"), !strcmp(wait, "hlt"));
	return report_summary();
}
