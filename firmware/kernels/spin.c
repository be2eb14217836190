/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Never ends on its own: prints one line, then spins in `jmp .` with interrupts off, touching
 * no device.  Only the VMM can stop it (a signal, --timeout, --max-insns), so it is the kernel
 * for testing how the VMM ends a run it has to interrupt.
 */
#include "libfw.h"
#include "multiboot.h"

int main(struct multiboot_info *mbi)
{
	printf("spinning with interrupts off\n");
	asm volatile("cli; 1: jmp 1b");
	return 1;
}
