/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * QEMU's pc-testdev (-device pc-testdev), used the way kvm-unit-tests use it:
 * - the data register at ports 0xe0-0xe3: 32-bit round trip, byte and word
 *   lanes, REP OUTSB forwards and backwards (the last byte written stays),
 *   REP INSB into the scratch memory across a page boundary;
 * - its byte-wide alias at 0xe8-0xeb;
 * - the flush-page port 0xe4: accepted, the page keeps its contents;
 * - the IRQ line ports 0x2000 + N, through the IOAPIC: an edge-triggered
 *   pin raises one interrupt per rising edge, a level-triggered pin
 *   re-delivers after EOI while high, a word write is ignored;
 * - the scratch memory at 0xff000000: every access size, a word across a
 *   page boundary, REP MOVSB.
 * Without the device the port checks fail (unclaimed ports read all-ones) and
 * the first scratch memory access ends the run (nothing is mapped there).
 *
 * Command line: x2apic=1 runs the IRQ tests with the local APIC in x2APIC mode
 * (EOIs through the MSR, not the xAPIC page).
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define DATA_PORT 0xe0
#define FLUSH_PORT 0xe4
#define DATA_BYTE_PORT 0xe8
#define IRQ_PORT(line) (0x2000 + (line))
#define IOMEM ((volatile uint8_t *)0xff000000ul)

#define REDIR_LEVEL (1u << 15)
#define REDIR_REMOTE_IRR (1u << 14)
#define REDIR_MASKED (1u << 16)
#define IRQ_LINE 14
#define IRQ_VECTOR 0x61

static volatile int irq_count;
static volatile bool irq_eoi = true;
static volatile bool irq_lowers_line;

/* a level-triggered source stays asserted until the handler quiets it */
static void irq_handler(struct ex_regs *regs)
{
	irq_count++;
	if (irq_lowers_line)
		outb(0, IRQ_PORT(IRQ_LINE));
	if (irq_eoi)
		apic_eoi();
}

static void irq_window(void)
{
	asm volatile("sti; nop; nop; cli" ::: "memory");
}

static void test_data_register(void)
{
	static const char text[] = "abcdefghijklmnop";
	const void *src;
	unsigned long n;

	outl(0x12345678, DATA_PORT);
	report(inl(DATA_PORT) == 0x12345678, "data: 32-bit round trip");
	report(inb(DATA_PORT + 1) == 0x56 && inw(DATA_PORT + 2) == 0x1234,
	       "data: byte and word lanes read");
	outb(0xab, DATA_PORT + 2);
	outw(0xcdef, DATA_PORT);
	report(inl(DATA_PORT) == 0x12abcdef, "data: byte and word lanes write "
	       "(0x%x)", inl(DATA_PORT));
	outb(0x11, DATA_BYTE_PORT + 3);
	report(inl(DATA_PORT) == 0x11abcdef && inl(DATA_BYTE_PORT) == 0x11abcdef,
	       "data: 0xe8 is the same register");

	src = text;
	n = sizeof(text) - 1;
	asm volatile("cld; rep outsb" : "+S"(src), "+c"(n) : "d"(DATA_PORT) : "memory");
	report(inb(DATA_PORT) == 'p', "data: REP OUTSB up leaves the last byte");
	src = text + sizeof(text) - 2;
	n = sizeof(text) - 1;
	asm volatile("std; rep outsb; cld" : "+S"(src), "+c"(n) : "d"(DATA_PORT) : "memory");
	report(inb(DATA_PORT) == 'a', "data: REP OUTSB down leaves the first byte");
}

static void test_string_in_to_iomem(void)
{
	volatile uint8_t *dst = IOMEM + 4032;
	unsigned long n = 1024;
	bool ok = true;

	outw(0x9999, DATA_PORT);
	asm volatile("cld; rep insb" : "+D"(dst), "+c"(n) : "d"(DATA_PORT) : "memory");
	for (int i = 0; i < 1024; i++)
		ok &= IOMEM[4032 + i] == 0x99;
	report(ok && n == 0, "data: REP INSB into the scratch memory across a page");
}

static uint8_t flush_page[4096] __attribute__((aligned(4096)));

static void test_flush(void)
{
	flush_page[100] = 0x42;
	outl((uint32_t)(uintptr_t)flush_page, FLUSH_PORT);
	report(flush_page[100] == 0x42, "flush: page keeps its contents");
	report(inl(FLUSH_PORT) == 0xffffffff && inb(IRQ_PORT(0)) == 0xff,
	       "flush and IRQ ports read all-ones");
}

static void test_iomem(void)
{
	volatile uint64_t *q = (volatile uint64_t *)(IOMEM + 0x100);
	volatile uint16_t *across = (volatile uint16_t *)(IOMEM + 4095);
	char out[16];
	const void *src = "scratch memory!";
	void *dst = (void *)(IOMEM + 0x200);
	unsigned long n = 16;

	*q = 0x0102030405060708ull;
	report(*q == 0x0102030405060708ull && IOMEM[0x100] == 0x08 &&
		       *(volatile uint16_t *)(IOMEM + 0x106) == 0x0102 &&
		       *(volatile uint32_t *)(IOMEM + 0x102) == 0x03040506,
	       "iomem: quadword written, bytes/words/dwords read little-endian");
	IOMEM[4095] = 0x99;
	IOMEM[4096] = 0x77;
	report(*across == 0x7799, "iomem: word read across a page");
	*across = 0x88aa;
	report(IOMEM[4095] == 0xaa && IOMEM[4096] == 0x88,
	       "iomem: word write across a page");
	asm volatile("cld; rep movsb" : "+S"(src), "+D"(dst), "+c"(n) : : "memory");
	for (int i = 0; i < 16; i++)
		out[i] = (char)IOMEM[0x200 + i];
	report(!memcmp(out, "scratch memory!", 16), "iomem: REP MOVSB");
	report(IOMEM[0xffff] == 0, "iomem: the last byte is there");
}

static void route(uint32_t flags)
{
	ioapic_write(IOAPIC_REDIR(IRQ_LINE) + 1, 0); /* destination: APIC ID 0 */
	ioapic_write(IOAPIC_REDIR(IRQ_LINE), IRQ_VECTOR | flags);
}

static void test_irq_lines(void)
{
	apic_sw_enable();
	handle_exception(IRQ_VECTOR, irq_handler);

	route(0);
	irq_count = 0;
	outb(1, IRQ_PORT(IRQ_LINE));
	irq_window();
	outb(0, IRQ_PORT(IRQ_LINE));
	outb(0x80, IRQ_PORT(IRQ_LINE));
	irq_window();
	report(irq_count == 2, "irq: two rising edges, two interrupts (%d)",
	       irq_count);
	outb(1, IRQ_PORT(IRQ_LINE)); /* still high: no edge */
	irq_window();
	outb(0, IRQ_PORT(IRQ_LINE));
	outw(1, IRQ_PORT(IRQ_LINE));
	irq_window();
	report(irq_count == 2, "irq: a held line and a word write raise nothing");

	route(REDIR_LEVEL);
	irq_count = 0;
	irq_eoi = false;
	outb(1, IRQ_PORT(IRQ_LINE));
	irq_window();
	report(irq_count == 1 && (ioapic_read(IOAPIC_REDIR(IRQ_LINE)) & REDIR_REMOTE_IRR),
	       "irq: level-triggered line delivered, remote IRR set");
	irq_eoi = true;
	irq_lowers_line = true;
	apic_eoi();
	irq_window();
	report(irq_count == 2, "irq: EOI with the line high delivers again");
	irq_window();
	report(irq_count == 2 && !(ioapic_read(IOAPIC_REDIR(IRQ_LINE)) & REDIR_REMOTE_IRR),
	       "irq: the handler lowered the line: nothing more, remote IRR clear");
	irq_lowers_line = false;
	route(REDIR_MASKED);
}

int main(struct multiboot_info *mbi)
{
	if (cmdline_u64(mbi_cmdline(mbi), "x2apic", 0)) {
		bool on = apic_to_x2apic();

		report(on, "x2APIC mode for the IRQ tests");
		if (!on)
			return report_summary();
	}
	test_data_register();
	test_string_in_to_iomem();
	test_flush();
	test_iomem();
	test_irq_lines();
	return report_summary();
}
