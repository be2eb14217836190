/* SPDX-License-Identifier: GPL-2.0-or-later */
/* 16550 UART registers on COM1. */
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

#define THR (SERIAL_BASE + 0)
#define DLL (SERIAL_BASE + 0)
#define IER (SERIAL_BASE + 1)
#define DLM (SERIAL_BASE + 1)
#define IIR (SERIAL_BASE + 2)
#define FCR (SERIAL_BASE + 2)
#define LCR (SERIAL_BASE + 3)
#define MCR (SERIAL_BASE + 4)
#define LSR (SERIAL_BASE + 5)
#define SCR (SERIAL_BASE + 7)

int main(struct multiboot_info *mbi)
{
	printf("serial test\n");

	uint8_t lsr = inb(LSR);
	report(lsr & 0x20, "LSR.THRE set (0x%x)", lsr);
	report(lsr & 0x40, "LSR.TEMT set");

	/* divisor latch: DLAB=1 maps 0x3f8/0x3f9 to DLL/DLM */
	outb(0x83, LCR);
	report(inb(LCR) == 0x83, "LCR readback with DLAB (0x%x)", inb(LCR));
	outb(0x0c, DLL); /* 9600 baud */
	outb(0x00, DLM);
	uint8_t dll = inb(DLL), dlm = inb(DLM);
	outb(0x01, DLL); /* back to 115200 */
	outb(0x03, LCR);
	report(dll == 0x0c && dlm == 0x00, "divisor latch readback (%x %x)",
	       dll, dlm);
	report(inb(LCR) == 0x03, "LCR 8N1, DLAB off");

	outb(0x00, IER);
	report(inb(IER) == 0x00, "IER readback 0 (DLAB off: not DLM)");
	outb(0x05, IER);
	report(inb(IER) == 0x05, "IER readback 0x05 (%x)", inb(IER));
	outb(0x00, IER);

	outb(0xc7, FCR);
	report_info("IIR after enabling FIFOs: 0x%x", inb(IIR));

	outb(0x0b, MCR);
	report((inb(MCR) & 0x1f) == 0x0b, "MCR readback (0x%x)", inb(MCR));

	static const uint8_t pat[] = { 0x00, 0xff, 0x55, 0xaa, 0x3c };
	bool ok = true;
	for (unsigned i = 0; i < ARRAY_SIZE(pat); i++) {
		outb(pat[i], SCR);
		ok &= inb(SCR) == pat[i];
	}
	report(ok, "scratch register round trip");

	report(inb(LSR) & 0x20, "LSR.THRE still set after reprogramming");
	for (int i = 0; i < 3; i++)
		printf("serial line %d: the quick brown fox jumps over the lazy "
		       "dog 0123456789\n", i);
	report(true, "printed lines after reprogramming the UART");
	return report_summary();
}
