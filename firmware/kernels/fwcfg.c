/* SPDX-License-Identifier: GPL-2.0-or-later */
/* fw_cfg legacy I/O interface (selector 0x510, data 0x511). */
#include "acpi.h"
#include "fwcfg.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

int main(struct multiboot_info *mbi)
{
	char sig[5] = { 0 };
	uint8_t b[8];

	printf("fw_cfg test\n");

	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_read(sig, 4);
	report(!memcmp(sig, "QEMU", 4), "signature '%s'", sig);

	/* reselecting restarts the stream; reads past the end return 0 */
	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_read(b, 2);
	fwcfg_select(FW_CFG_SIGNATURE);
	fwcfg_read(b + 2, 5);
	report(b[0] == 'Q' && b[1] == 'E' && !memcmp(b + 2, "QEMU", 4),
	       "selector write restarts the item");
	report(b[6] == 0, "read past the end of an item returns 0");

	/* NB_CPUS is the number of CPUs the MADT lists (1 unless the VMM runs with --smp N) */
	struct madt_info madt;
	uint16_t ncpus = fwcfg_get_u16(FW_CFG_NB_CPUS);
	if (acpi_parse_madt(&madt) == 0)
		report(ncpus == madt.nr_enabled, "NB_CPUS == MADT's enabled CPUs (%u, %d)", ncpus, madt.nr_enabled);
	else
		report(ncpus == 1, "NB_CPUS == 1 without a MADT (%u)", ncpus);

	uint64_t ram = fwcfg_get_u64(FW_CFG_RAM_SIZE);
	uint64_t mbi_ram = mbi_ram_size(mbi);
	report(ram == mbi_ram,
	       "RAM_SIZE 0x%lx == (mem_upper + 1024) KiB = 0x%lx", ram,
	       mbi_ram);

	uint64_t maxram = fwcfg_get_u64(FW_CFG_MAX_RAM);
	report_info("key 0x11 = 0x%lx", maxram);
	report(maxram == 0, "key 0x11 reads as u64 0");

	fwcfg_select(0x1234);
	fwcfg_read(b, 8);
	uint64_t unk = 0;
	for (int i = 0; i < 8; i++)
		unk |= b[i];
	report(unk == 0, "unknown key reads 0");

	/* the selector is a 16-bit port: an 8-bit data port read works alone */
	report(fwcfg_get_u8(FW_CFG_SIGNATURE) == 'Q', "single byte read");
	return report_summary();
}
