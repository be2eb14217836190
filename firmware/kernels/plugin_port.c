/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * A device from an installed plugin, reached by the guest: the example package
 * examples/pmu-vmm-example-device (`-device example-scratch`).  Its I/O ports
 * at iobase (default 0x520; `--append iobase=N` follows a moved device) are
 * eight bytes, little-endian: a 32-bit scratch register at +0 and a read-only
 * magic at +4, each reachable with 1-, 2- and 4-byte accesses.
 *
 * Without the device every port reads all-ones and ignores writes, so the
 * checks FAIL and the exit status says so.
 */
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define SCRATCH 0
#define MAGIC 4
#define MAGIC_VALUE 0x4c505845u /* "EXPL" in memory order */

int main(struct multiboot_info *mbi)
{
	uint16_t base = (uint16_t)cmdline_u64(mbi_cmdline(mbi), "iobase", 0x520);
	uint32_t v;

	printf("plugin device test at port 0x%x\n", base);

	v = inl(base + MAGIC);
	report(v == MAGIC_VALUE, "magic reads 0x%x (0x%x)", MAGIC_VALUE, v);

	outl(0x12345678, base + SCRATCH);
	v = inl(base + SCRATCH);
	report(v == 0x12345678, "scratch round trip (0x%x)", v);

	outl(0xa5a55a5a, base + SCRATCH);
	v = inl(base + SCRATCH);
	report(v == 0xa5a55a5a, "scratch holds the latest write (0x%x)", v);

	outb(0x3c, base + SCRATCH + 1);
	outw(0xbeef, base + SCRATCH + 2);
	v = inl(base + SCRATCH);
	report(v == 0xbeef3c5a, "byte and word writes land in their lanes (0x%x)",
	       v);
	report(inb(base + SCRATCH + 3) == 0xbe && inw(base + SCRATCH) == 0x3c5a,
	       "byte and word reads of the scratch register");

	outl(0, base + MAGIC);
	outb(0, base + MAGIC + 2);
	v = inl(base + MAGIC);
	report(v == MAGIC_VALUE, "magic ignores writes (0x%x)", v);
	report(inl(base + SCRATCH) == 0xbeef3c5a,
	       "a write to the magic leaves the scratch alone");
	return report_summary();
}
