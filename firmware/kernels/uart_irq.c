/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The 16550A driven by interrupts, as an interrupt-driven driver (Linux's 8250) drives it, next to
 * the xAPIC page's registers, so that the VMM's answers to both can be compared byte for byte
 * between its C paths and its exits (tests/test_c_exits.py):
 * - THR-empty interrupts (IER.ETBEI, IRQ 4 through the I/O APIC, edge-triggered) send a line one
 *   byte per interrupt, next to a line the interrupted code prints by polling;
 * - received-data interrupts (IER.ERBFI) take whatever input the host fed (reported, not checked);
 * - loopback: a transmitted byte comes back in RBR, not on the console, and MSR mirrors MCR;
 * - the scratch register next to other exits (port 0x80, xAPIC TPR/EOI writes, CPUID), with
 *   console output in between;
 * - the xAPIC timer's current count read twice, and how many instructions after an xAPIC ICR
 *   self-IPI its handler runs (both reported: they must not depend on the path);
 * - the xAPIC page moved (IA32_APIC_BASE) over a RAM page and back;
 * - with several CPUs (--smp N), every CPU prints lines at once, byte by byte without a lock.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "smp.h"

#define RBR (SERIAL_BASE + 0)
#define THR (SERIAL_BASE + 0)
#define IER (SERIAL_BASE + 1)
#define IIR (SERIAL_BASE + 2)
#define MCR (SERIAL_BASE + 4)
#define LSR (SERIAL_BASE + 5)
#define MSR (SERIAL_BASE + 6)
#define SCR (SERIAL_BASE + 7)
#define IER_RX 0x01
#define IER_THRE 0x02
#define LSR_DR 0x01

#define UART_PIN 4 /* ISA IRQ 4 is I/O APIC pin 4 (no override) */
#define UART_VECTOR 0x64
#define IPI_VECTOR 0x65
#define SPIN_LIMIT 100000

static const char tx_line[] = "sent one byte per THR-empty interrupt\n";
static volatile const char *tx_next;
static volatile int thre_irqs, rx_irqs, other_irqs;
static char rx_buf[64];
static volatile int rx_len;
static volatile uint64_t ipi_tsc;

static void uart_handler(struct ex_regs *regs)
{
	uint8_t iir = inb(IIR) & 0x0f;
	uint8_t ier = inb(IER);

	if (iir == 0x02) {
		thre_irqs++;
		if (tx_next && *tx_next) {
			outb((uint8_t)*tx_next++, THR);
			/* ETBEI off and on: the line falls and rises, an edge for the next byte */
			outb(ier & ~IER_THRE, IER);
			outb(ier, IER);
		} else {
			outb(ier & ~IER_THRE, IER);
		}
	} else if (iir == 0x04 || iir == 0x0c) {
		rx_irqs++;
		while (inb(LSR) & LSR_DR) {
			char c = (char)inb(RBR);
			if (rx_len < (int)sizeof(rx_buf) - 1)
				rx_buf[rx_len++] = c;
		}
	} else {
		other_irqs++;
	}
	apic_eoi();
}

static void ipi_handler(struct ex_regs *regs)
{
	ipi_tsc = rdtsc();
	apic_eoi();
}

static void test_thre_interrupts(void)
{
	int spins = 0;

	tx_next = tx_line;
	outb(IER_THRE, IER); /* THR is empty: the interrupt is pending at once */
	asm volatile("sti" ::: "memory");
	printf("a line printed by polling while the interrupts send another\n");
	while (*tx_next && spins++ < SPIN_LIMIT)
		pause();
	asm volatile("cli" ::: "memory");
	report(!*tx_next && thre_irqs == (int)sizeof(tx_line), "THRE: %d interrupts sent %d bytes",
	       thre_irqs, (int)sizeof(tx_line) - 1);
	report(!(inb(IER) & IER_THRE) && (inb(IIR) & 1), "THRE: disabled, no interrupt pending");
}

static void test_rx_interrupts(void)
{
	outb(IER_RX, IER);
	asm volatile("sti; nop; nop; nop; cli" ::: "memory");
	outb(0, IER);
	rx_buf[rx_len] = 0;
	report_info("received %d bytes in %d interrupts: '%s'", rx_len, rx_irqs, rx_buf);
}

static void test_loopback(void)
{
	bool back;
	uint8_t lines;

	outb(0x1b, MCR); /* loopback with DTR, RTS, OUT2: nothing can be printed until it ends */
	outb('L', THR);
	back = (inb(LSR) & LSR_DR) && inb(RBR) == 'L' && !(inb(LSR) & LSR_DR);
	lines = inb(MSR) & 0xf0;
	outb(0x0b, MCR);
	inb(MSR); /* clear the deltas */
	report(back, "loopback: the byte came back in RBR");
	report(lines == 0xb0, "loopback: MSR mirrors DTR, RTS and OUT2 (0x%x)", lines);
}

static void test_scratch_among_exits(void)
{
	bool ok = true;

	for (unsigned i = 0; i < 1000; i++) {
		if (i % 20 == 0)
			serial_putc(i == 980 ? '\n' : '.');
		outb((uint8_t)i, SCR);
		outb((uint8_t)i, 0x80);
		xapic_write(APIC_TPR, (i & 7) << 4);
		xapic_write(APIC_EOI, 0);
		cpuid(1);
		ok &= inb(SCR) == (uint8_t)i && xapic_read(APIC_TPR) == (i & 7) << 4;
	}
	xapic_write(APIC_TPR, 0);
	report(ok, "scratch register and TPR read back among other exits");
}

static void test_xapic_timing(void)
{
	uint32_t a, b;
	uint64_t t0;
	int spins = 0;

	xapic_write(APIC_TDCR, 0xb); /* divide by 1 */
	xapic_write(APIC_LVTT, APIC_LVT_MASKED | 0x40);
	xapic_write(APIC_TMICT, 1000000);
	a = xapic_read(APIC_TMCCT);
	b = xapic_read(APIC_TMCCT);
	xapic_write(APIC_TMICT, 0);
	report(a > b && a <= 1000000 && xapic_read(APIC_TMCCT) == 0, "timer: current count %u then %u, 0 stopped",
	       a, b);

	asm volatile("sti" ::: "memory");
	t0 = rdtsc();
	xapic_write(APIC_ICR, APIC_DEST_SELF | IPI_VECTOR);
	while (!ipi_tsc && spins++ < SPIN_LIMIT)
		pause();
	asm volatile("cli" ::: "memory");
	report(ipi_tsc > t0, "self-IPI through the xAPIC ICR taken");
	report_info("self-IPI handler ran %lu TSC ticks after the write", (unsigned long)(ipi_tsc - t0));
}

static volatile uint8_t shadowed[4096] __attribute__((aligned(4096)));

/* the xAPIC page moved over a RAM page (which it hides) and back */
static void test_xapic_relocation(void)
{
	uint64_t apic_base = rdmsr(MSR_IA32_APICBASE);
	uintptr_t page = (uintptr_t)shadowed;
	volatile uint32_t *tpr = (volatile uint32_t *)(page + APIC_TPR);
	uint32_t at_new, at_old;
	bool back;

	shadowed[APIC_TPR] = 0x5a;
	wrmsr(MSR_IA32_APICBASE, page | (apic_base & 0xfff));
	*tpr = 0x20;
	at_new = *tpr;
	at_old = *(volatile uint32_t *)(APIC_DEFAULT_BASE + APIC_TPR);
	wrmsr(MSR_IA32_APICBASE, apic_base);
	back = xapic_read(APIC_TPR) == 0x20 && shadowed[APIC_TPR] == 0x5a;
	xapic_write(APIC_TPR, 0);
	report(at_new == 0x20, "moved xAPIC page: TPR written and read at its new place (0x%x)", at_new);
	report(at_old == 0xffffffff, "moved xAPIC page: nothing left at the old place (0x%x)", at_old);
	report(back, "moved xAPIC page: back home with its TPR, the RAM it hid untouched");
}

static void print_lines(void *arg)
{
	char line[80];

	for (int i = 0; i < 8; i++) {
		snprintf(line, sizeof(line), "cpu %d line %d: pack my box with five dozen liquor jugs\n",
			 smp_cpu_index(), i);
		serial_puts(line); /* no console lock: the CPUs' bytes interleave */
	}
}

static void test_smp_output(void)
{
	int cpus = smp_init(true);
	int online = 1 + smp_start_aps();
	bool ok = true;

	report(online == cpus, "%d of %d CPUs online", online, cpus);
	for (int i = 1; i < online; i++)
		ok &= smp_call_async(i, print_lines, NULL);
	print_lines(NULL);
	for (int i = 1; i < online; i++)
		ok &= smp_wait(i);
	report(ok, "%d CPUs printed at once", online);
}

int main(struct multiboot_info *mbi)
{
	printf("uart_irq test\n");
	apic_sw_enable();
	handle_exception(UART_VECTOR, uart_handler);
	handle_exception(IPI_VECTOR, ipi_handler);
	ioapic_write(IOAPIC_REDIR(UART_PIN) + 1, 0); /* destination: APIC ID 0 */
	ioapic_write(IOAPIC_REDIR(UART_PIN), UART_VECTOR);

	test_thre_interrupts();
	test_rx_interrupts();
	test_loopback();
	test_scratch_among_exits();
	test_xapic_timing();
	test_xapic_relocation();
	test_smp_output();
	return report_summary();
}
