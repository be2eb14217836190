/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Ends in a guest shutdown the way a broken kernel does: prints a line, then loads an empty
 * IDT and executes ud2.  #UD cannot be delivered (#GP), neither can the #GP (#DF), nor the
 * #DF: a triple fault.  The VMM must report "guest shut down" with this output intact.
 * With "halt" on the command line it instead executes cli; hlt, which nothing can wake; with
 * "wild" it reads physical memory beyond the machine's RAM (all-ones, then it prints a FAIL
 * line: only a VMM run with --strict-memory ends there).
 */
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

int main(struct multiboot_info *mbi)
{
	static const struct { uint16_t limit; uint64_t base; } __attribute__((packed)) empty = { 0, 0 };

	if (cmdline_has_word(mbi_cmdline(mbi), "halt")) {
		printf("halting with interrupts off\n");
		asm volatile("cli; hlt");
	} else if (cmdline_has_word(mbi_cmdline(mbi), "wild")) {
		/* identity-mapped, but far beyond the machine's RAM: no memory behind it */
		printf("reading beyond RAM\n");
		uint32_t v = *(volatile uint32_t *)0xC0000000ull;
		/* all-ones as on a PC; a VMM run with --strict-memory stops here */
		printf("read 0x%x beyond RAM\n", v);
	} else {
		printf("about to triple fault\n");
		asm volatile("lidt %0; ud2" : : "m"(empty));
	}
	printf("FAIL: still running\n");
	return 1;
}
