/* SPDX-License-Identifier: GPL-2.0-or-later */
/* C entry shared by all entry stubs: descriptor tables, serial, main(). */
#include "libfw.h"
#include "multiboot.h"
#ifdef __x86_64__
#include "desc.h"
#endif

uint32_t boot_magic; /* EAX (multiboot) or RSI (plain ELF64) at entry */
uintptr_t boot_mbi;

void __attribute__((weak)) early_after_idt(void)
{
}

void __attribute__((noreturn, used)) lib_start(uintptr_t mbi)
{
	boot_mbi = mbi;
#ifdef __x86_64__
	setup_gdt_tss();
	setup_idt();
	early_after_idt();
#endif
	serial_init();
	exit(main((struct multiboot_info *)mbi));
}
