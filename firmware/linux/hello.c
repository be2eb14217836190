/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * hello: the smallest check that user space works in the guest.  Built with glibc
 * (gcc -static -O2), so it also exercises what every static program's startup does:
 * TLS setup, CPUID-based function selection, IRELATIVE relocations, brk.
 * Prints one line and exits 0.
 */
#include <stdio.h>

int main(void)
{
	puts("hello: static glibc program running");
	return 0;
}
