/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Plain ELF64 kernel (no multiboot header), entered by the VMM in long mode. */
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

int main(struct multiboot_info *mbi)
{
	printf("Hello from hello64\n");
	report_info("cmdline: '%s'", mbi_cmdline(mbi));
	report(rdmsr(MSR_EFER) & EFER_LMA, "running in long mode");
	return report_summary();
}
