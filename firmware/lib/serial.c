/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "libfw.h"
#include "processor.h"

#define UART_THR 0
#define UART_DLL 0
#define UART_IER 1
#define UART_DLM 1
#define UART_FCR 2
#define UART_LCR 3
#define UART_MCR 4
#define UART_LSR 5
#define UART_LSR_THRE 0x20

void serial_init(void)
{
	outb(0x00, SERIAL_BASE + UART_IER); /* no interrupts */
	outb(0x80, SERIAL_BASE + UART_LCR); /* DLAB */
	outb(0x01, SERIAL_BASE + UART_DLL); /* 115200 baud */
	outb(0x00, SERIAL_BASE + UART_DLM);
	outb(0x03, SERIAL_BASE + UART_LCR); /* 8N1, DLAB off */
	outb(0xc7, SERIAL_BASE + UART_FCR); /* FIFO on, cleared */
	outb(0x0b, SERIAL_BASE + UART_MCR); /* DTR RTS OUT2 */
}

void serial_putc(char c)
{
	while (!(inb(SERIAL_BASE + UART_LSR) & UART_LSR_THRE))
		pause();
	outb((uint8_t)c, SERIAL_BASE + UART_THR);
}

void serial_puts(const char *s)
{
	while (*s)
		serial_putc(*s++);
}
