/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Physical memory with neither RAM nor a device behind it, as on a PC: reads
 * return all-ones (every size), writes are dropped, and nothing stops the
 * machine.  Checked below RAM's end and the device windows, across RAM's end,
 * above 4 GiB (through a remapped PTE), in a sweep of thousands of pages, on an
 * AP (every CPU sees the same), and around the xAPIC page moved into such
 * memory and back (the devices keep working around it).
 *
 * Command line: "fetch" calls into unmapped memory first thing, "fetch-read"
 * after reading it: both must end the run (the VMM reports an internal error;
 * the kernel then prints FAIL).  Under --strict-memory the first access ends
 * the run.
 */
#include "apic.h"
#include "desc.h"
#include "fwcfg.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "smp.h"

#define HOLE 0xC0000000ull       /* identity-mapped, no RAM (guest RAM < 3 GiB) */
#define IOAPIC 0xFEC00000ull
#define ONES64 0xffffffffffffffffull

static uint8_t window[4096] __attribute__((aligned(4096)));

static uint64_t rd(uint64_t pa, int size)
{
	volatile void *p = (volatile void *)(uintptr_t)pa;

	switch (size) {
	case 1: return *(volatile uint8_t *)p;
	case 2: return *(volatile uint16_t *)p;
	case 4: return *(volatile uint32_t *)p;
	default: return *(volatile uint64_t *)p;
	}
}

static void wr(uint64_t pa, int size, uint64_t v)
{
	volatile void *p = (volatile void *)(uintptr_t)pa;

	switch (size) {
	case 1: *(volatile uint8_t *)p = v; break;
	case 2: *(volatile uint16_t *)p = v; break;
	case 4: *(volatile uint32_t *)p = v; break;
	default: *(volatile uint64_t *)p = v; break;
	}
}

static uint64_t ones(int size)
{
	return size == 8 ? ONES64 : (1ull << (8 * size)) - 1;
}

/* every size reads all-ones; a write of each size changes nothing */
static bool check_all_ones(uint64_t pa)
{
	bool ok = true;

	for (int size = 1; size <= 8; size *= 2) {
		ok = ok && rd(pa, size) == ones(size);
		wr(pa, size, 0);
		ok = ok && rd(pa, size) == ones(size) && rd(pa, 8) == ONES64;
	}
	return ok;
}

/* map the page `window` to physical `pa`; returns its virtual address */
static uint64_t remap_window(uint64_t pa)
{
	uint64_t *pte = get_pte((uintptr_t)window);

	assert(pte);
	*pte = (pa & PT_ADDR_MASK) | PT_PRESENT | PT_WRITABLE;
	invlpg(window);
	return (uintptr_t)window;
}

static uint32_t ioapic_version(void)
{
	*(volatile uint32_t *)(uintptr_t)IOAPIC = 1;
	return *(volatile uint32_t *)(uintptr_t)(IOAPIC + 0x10);
}

static void ap_probe(void *arg)
{
	uint64_t *out = arg;

	/* this CPU has touched none of it yet */
	out[0] = rd(HOLE + 0x10000000, 8);
	wr(HOLE + 0x10000000, 4, 0x12345678);
	out[1] = rd(HOLE + 0x10000000, 4);
	out[2] = rd(IOAPIC - 8, 8);
}

static void test_apic_move(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);
	uint64_t moved = HOLE + 0x1000;
	uint32_t lvr = xapic_read(APIC_LVR), v;

	if (base & (1ull << 10)) {
		report_skip("xAPIC page move: x2APIC mode");
		return;
	}
	wrmsr(MSR_IA32_APICBASE, moved | (base & 0xfff));
	v = *(volatile uint32_t *)(uintptr_t)(moved + APIC_LVR);
	report(v == lvr && rd(moved - 8, 8) == ONES64 &&
		       rd(moved + 0x1000, 8) == ONES64,
	       "xAPIC page moved into unmapped memory: LVR 0x%x there, all-ones around it",
	       v);
	report(rd(0xfee00000 + APIC_LVR, 4) == 0xffffffff,
	       "its old place reads all-ones");
	wrmsr(MSR_IA32_APICBASE, base);
	v = xapic_read(APIC_LVR);
	report(v == lvr && rd(moved + APIC_LVR, 4) == 0xffffffff &&
		       rd(moved - 8, 8) == ONES64,
	       "xAPIC page moved back: LVR 0x%x, its place in the hole all-ones again",
	       v);
}

int main(struct multiboot_info *mbi)
{
	const char *cmdline = mbi_cmdline(mbi);
	uint64_t ram = mbi_ram_size(mbi);
	uint64_t v;
	int bad;

	printf("unmapped physical memory test\n");
	if (cmdline_has_word(cmdline, "fetch") || cmdline_has_word(cmdline, "fetch-read")) {
		if (cmdline_has_word(cmdline, "fetch-read"))
			report(rd(HOLE, 8) == ONES64, "read before the fetch");
		printf("calling into unmapped memory\n");
		((void (*)(void))(uintptr_t)HOLE)();
		report(false, "still running after a fetch from unmapped memory");
		return report_summary();
	}
	report_info("RAM ends at 0x%lx", ram);
	report(ram <= HOLE, "RAM below 3 GiB");

	v = rd(HOLE, 8);
	report(v == ONES64, "8-byte read at 0x%llx: 0x%lx", HOLE, v);
	report(check_all_ones(HOLE + 0x123), "1/2/4/8-byte reads all-ones, writes dropped");
	report(check_all_ones(ram), "first byte after RAM");
	report(check_all_ones(IOAPIC - 8), "last bytes below the IOAPIC");
	report((ioapic_version() & 0xff0000) == 0x170000,
	       "IOAPIC still answers (version 0x%x)", ioapic_version());
	v = xapic_read(APIC_LVR);
	report(v != 0xffffffff && (v & 0xff) >= 0x10, "LAPIC still answers (LVR 0x%lx)", v);

	/* across the end of RAM: the RAM half is RAM, the rest all-ones */
	wr(ram - 4, 4, 0x11223344);
	v = rd(ram - 4, 8);
	report(v == 0xffffffff11223344ull, "8-byte read across RAM's end: 0x%lx", v);
	wr(ram - 4, 8, 0xaabbccdd55667788ull);
	report(rd(ram - 4, 4) == 0x55667788 && rd(ram, 4) == 0xffffffff,
	       "8-byte write across RAM's end: RAM half written, the rest dropped");

	/* a sweep: one access in every 256 KiB up to the device windows */
	bad = 0;
	int pages = 0;
	for (uint64_t pa = (ram + 0xfff) & ~0xfffull; pa < IOAPIC; pa += 0x40000, pages++) {
		wr(pa + 8, 4, 0);
		bad += rd(pa + 8, 4) != 0xffffffff;
	}
	report(bad == 0 && pages > 10000, "sweep of %d pages below 4 GiB: all-ones", pages);

	/* above 4 GiB, through a remapped page */
	static const uint64_t high[] = { 0x100000000ull, 0x123456000ull, 0x4000000000ull, 0xfffffff000ull };
	bad = 0;
	for (unsigned i = 0; i < sizeof(high) / sizeof(high[0]); i++)
		bad += !check_all_ones(remap_window(high[i]) + 0x10);
	report(bad == 0, "above 4 GiB: all-ones, writes dropped");
	bad = 0;
	for (int i = 0; i < 512; i++) {
		uint64_t va = remap_window(0x100000000ull + (uint64_t)i * 0x7fff000ull);
		wr(va, 8, i);
		bad += rd(va, 8) != ONES64;
	}
	report(bad == 0, "sweep of 512 pages above 4 GiB");
	remap_window((uintptr_t)window);

	test_apic_move();

	int ncpus = fwcfg_get_u16(0x05);
	if (ncpus > 1) {
		static uint64_t out[3];
		smp_init(true);
		bool ok = smp_start_aps() >= 1 && smp_call(1, ap_probe, out);
		report(ok && out[0] == ONES64 && out[1] == 0xffffffff && out[2] == ONES64,
		       "an AP sees the same: 0x%lx 0x%lx 0x%lx", out[0], out[1], out[2]);
	} else {
		report_skip("AP: one CPU");
	}
	return report_summary();
}
