/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Multiboot ELF32 kernel that stays in 32-bit protected mode. */
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

int main(struct multiboot_info *mbi)
{
	char buf[64];

	printf("Hello from hello32\n");
	report(boot_magic == MULTIBOOT_BOOT_MAGIC, "EAX magic 0x%x at entry",
	       boot_magic);
	report(mbi != NULL, "EBX points to the multiboot info (%p)",
	       (void *)mbi);
	report(mbi->mem_lower == 640, "mem_lower == 640 KiB (%u)",
	       mbi->mem_lower);
	report(mbi->mem_upper >= 1024 && mbi->mem_upper < 0x400000,
	       "mem_upper plausible (%u KiB, RAM %u MiB)", mbi->mem_upper,
	       (mbi->mem_upper + 1024) / 1024);
	report(!(read_cr0() & X86_CR0_PG) && (read_cr0() & X86_CR0_PE),
	       "protected mode, paging off");
	report((read_cs() & 3) == 0, "CPL 0");
	mbi_print(mbi);
	report(mbi->cmdline != 0, "cmdline pointer valid");
	if (mbi->mods_count) {
		mbi_print_modules(mbi);
		const struct multiboot_module *m =
			(const void *)(uintptr_t)mbi->mods_addr;
		report(m->mod_end >= m->mod_start, "module bounds");
		if (mbi_env_get(mbi, "NR_CPUS", buf, sizeof(buf)) >= 0)
			report_info("env NR_CPUS=%s", buf);
	} else {
		report_skip("no module (environment) passed");
	}
	return report_summary();
}
