/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * RDMSR/WRMSR: unknown MSRs #GP, known MSRs keep their values, TSC.
 * TSC (SDM vol. 3 "Time-Stamp Counter"): RDTSCP returns IA32_TSC_AUX as last
 * written, whose bits 63:32 are reserved; with CPUID.7:EBX[1] IA32_TSC_ADJUST
 * starts at 0, a WRMSR to the TSC that moves it by X adds X to TSC_ADJUST, a
 * WRMSR to TSC_ADJUST that changes it by X moves the TSC by X; without the CPUID
 * bit the MSR does not exist (#GP).
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"

static void test_unknown(uint32_t idx)
{
	uint64_t v;
	report(rdmsr_safe(idx, &v) && faulted_with(GP_VECTOR),
	       "RDMSR 0x%x -> #GP", idx);
	report(wrmsr_safe(idx, 0) && faulted_with(GP_VECTOR),
	       "WRMSR 0x%x -> #GP", idx);
}

static void test_rw(uint32_t idx, const char *name, uint64_t val)
{
	uint64_t old, got = 0;
	bool ok = !rdmsr_safe(idx, &old);

	ok = ok && !wrmsr_safe(idx, val);
	ok = ok && !rdmsr_safe(idx, &got);
	report(ok && got == val, "%s (0x%x) write 0x%lx, read 0x%lx", name,
	       idx, val, got);
	wrmsr(idx, old);
}

static void test_vendor(void)
{
	struct cpuid c = cpuid(0);
	char vendor[13];

	memcpy(vendor, &c.b, 4);
	memcpy(vendor + 4, &c.d, 4);
	memcpy(vendor + 8, &c.c, 4);
	vendor[12] = 0;
	report_info("CPUID vendor '%s', max leaf 0x%x", vendor, c.a);
	c = cpuid(0x80000000);
	if (c.a >= 0x80000004) {
		uint32_t brand[13];
		for (int i = 0; i < 3; i++) {
			struct cpuid b = cpuid(0x80000002 + i);
			brand[i * 4] = b.a;
			brand[i * 4 + 1] = b.b;
			brand[i * 4 + 2] = b.c;
			brand[i * 4 + 3] = b.d;
		}
		brand[12] = 0;
		report_info("CPUID brand '%s'", (char *)brand);
	}
}

static bool has_tsc_adjust(void)
{
	return cpuid(0).a >= 7 && (cpuid_indexed(7, 0).b & (1u << 1));
}

static void test_tsc_aux(void)
{
	uint32_t aux = 0;
	uint64_t v = 0;

	if (!(cpuid(0x80000001).d & (1u << 27))) {
		report_skip("RDTSCP not advertised");
		return;
	}
	wrmsr(MSR_TSC_AUX, 0x12345678);
	rdtscp(&aux);
	report(aux == 0x12345678, "RDTSCP returns TSC_AUX 0x12345678: 0x%x", aux);
	wrmsr(MSR_TSC_AUX, 0xfedcba98);
	rdtscp(&aux);
	report(aux == 0xfedcba98 && rdmsr(MSR_TSC_AUX) == 0xfedcba98,
	       "RDTSCP follows a new TSC_AUX 0xfedcba98: 0x%x", aux);
	report(wrmsr_safe(MSR_TSC_AUX, 1ull << 32) && faulted_with(GP_VECTOR),
	       "TSC_AUX bit 32 -> #GP");
	rdtscp(&aux);
	bool ok = !rdmsr_safe(MSR_TSC_AUX, &v);
	report(ok && v == 0xfedcba98 && aux == 0xfedcba98,
	       "TSC_AUX unchanged by the faulting write: 0x%lx", v);
	wrmsr(MSR_TSC_AUX, 0);
}

/* first thing in main: nothing has written the TSC yet */
static void test_tsc_adjust_reset(void)
{
	uint64_t v = 0;

	if (!has_tsc_adjust()) {
		report(rdmsr_safe(MSR_IA32_TSC_ADJUST, &v) &&
			       faulted_with(GP_VECTOR),
		       "no CPUID TSC_ADJUST: RDMSR 0x3b -> #GP");
		report(wrmsr_safe(MSR_IA32_TSC_ADJUST, 0) &&
			       faulted_with(GP_VECTOR),
		       "no CPUID TSC_ADJUST: WRMSR 0x3b -> #GP");
		return;
	}
	report(!rdmsr_safe(MSR_IA32_TSC_ADJUST, &v) && v == 0,
	       "TSC_ADJUST reads 0 before any TSC write: 0x%lx", v);
}

static void test_tsc_adjust(void)
{
	const uint64_t d = 1ull << 36;
	uint64_t a0, a1, t0, t1, x;

	if (!has_tsc_adjust()) {
		report_skip("TSC_ADJUST not advertised");
		return;
	}
	/* a TSC write moving the TSC by X adds X to TSC_ADJUST */
	a0 = rdmsr(MSR_IA32_TSC_ADJUST);
	t0 = rdtsc();
	x = t0 + (1ull << 44);
	wrmsr(MSR_IA32_TSC, x);
	a1 = rdmsr(MSR_IA32_TSC_ADJUST);
	/* the TSC at the write lies in (t0, t0 + 1000) */
	report(a1 - a0 <= (1ull << 44) && a1 - a0 > (1ull << 44) - 1000,
	       "TSC write forward by ~2^44 adds it to TSC_ADJUST (%ld)",
	       (int64_t)(a1 - a0));
	t0 = rdtsc();
	wrmsr(MSR_IA32_TSC, t0 - (1ull << 40));
	x = rdmsr(MSR_IA32_TSC_ADJUST);
	report(a1 - x >= (1ull << 40) && a1 - x < (1ull << 40) + 1000,
	       "TSC write back by ~2^40 subtracts it (%ld)",
	       (int64_t)(x - a1));
	/* a TSC_ADJUST write changing it by X moves the TSC by X */
	a1 = x;
	t0 = rdtsc();
	wrmsr(MSR_IA32_TSC_ADJUST, a1 + d);
	t1 = rdtsc();
	report(t1 - t0 >= d && t1 - t0 < d + 1000 &&
		       rdmsr(MSR_IA32_TSC_ADJUST) == a1 + d,
	       "TSC_ADJUST += 2^36 moves the TSC by it (%lu)", t1 - t0);
	t0 = rdtsc();
	wrmsr(MSR_IA32_TSC_ADJUST, a1 - d);
	t1 = rdtsc();
	report(t0 - t1 <= 2 * d && t0 - t1 > 2 * d - 1000 &&
		       rdmsr(MSR_IA32_TSC_ADJUST) == a1 - d,
	       "TSC_ADJUST -= 2^37 moves the TSC back by it (%ld)",
	       (int64_t)(t1 - t0));
	/* TSC_ADJUST = 0 undoes every adjustment: TSC back near its first reading */
	t0 = rdtsc();
	wrmsr(MSR_IA32_TSC_ADJUST, 0);
	t1 = rdtsc();
	report(t0 - t1 > (a1 - d) - 1000 && t0 - t1 <= a1 - d,
	       "TSC_ADJUST = 0 takes every adjustment back (TSC 0x%lx)", t1);
}

int main(struct multiboot_info *mbi)
{
	uint64_t v;

	printf("msr test\n");
	test_tsc_adjust_reset();
	test_vendor();

	test_unknown(0x12345678);
	test_unknown(0x2ff0);
	if ((cpuid(0).a < 0xa || (cpuid(0xa).a & 0xff) == 0))
		test_unknown(0xc1); /* IA32_PMC0 without a PMU */
	else
		report_skip("MSR 0xc1: PMU version %u present",
			    cpuid(0xa).a & 0xff);
	report(rdpmc_safe(0x12345, &v) && faulted_with(GP_VECTOR),
	       "RDPMC with a bogus index -> #GP");

	uint64_t efer = rdmsr(MSR_EFER);
	report((efer & (EFER_LME | EFER_LMA)) == (EFER_LME | EFER_LMA),
	       "EFER 0x%lx has LME|LMA", efer);
	wrmsr(MSR_EFER, efer | EFER_SCE);
	report(rdmsr(MSR_EFER) & EFER_SCE, "EFER.SCE can be set");
	wrmsr(MSR_EFER, efer & ~EFER_SCE);
	report(!(rdmsr(MSR_EFER) & EFER_SCE), "EFER.SCE can be cleared");
	report(wrmsr_safe(MSR_EFER, efer | (1ull << 2)) &&
		       faulted_with(GP_VECTOR),
	       "EFER reserved bit 2 -> #GP");
	wrmsr(MSR_EFER, efer);

	test_rw(MSR_STAR, "STAR", 0x0023001000000000ull);
	test_rw(MSR_LSTAR, "LSTAR", 0xffffffff81000000ull);
	test_rw(MSR_SYSCALL_MASK, "FMASK", 0x47700);
	test_rw(MSR_FS_BASE, "FS_BASE", 0x00007fffdeadb000ull);
	test_rw(MSR_GS_BASE, "GS_BASE", 0xffff888012345000ull);
	test_rw(MSR_KERNEL_GS_BASE, "KERNEL_GS_BASE", 0x12345678abcull);
	test_rw(MSR_IA32_SYSENTER_CS, "SYSENTER_CS", 0x10);
	test_rw(MSR_IA32_SYSENTER_ESP, "SYSENTER_ESP", 0xffff800000001000ull);
	test_rw(MSR_IA32_SYSENTER_EIP, "SYSENTER_EIP", 0xffff800000002000ull);

	/* FS_BASE is what %fs: accesses use */
	static uint64_t fs_probe = 0xfeedfacecafebeefull;
	uint64_t old_fs = rdmsr(MSR_FS_BASE);
	wrmsr(MSR_FS_BASE, (uintptr_t)&fs_probe);
	asm volatile("mov %%fs:0, %0" : "=r"(v));
	wrmsr(MSR_FS_BASE, old_fs);
	report(v == fs_probe, "%%fs:0 reads through FS_BASE");

	/* SWAPGS exchanges GS_BASE and KERNEL_GS_BASE */
	uint64_t gs = rdmsr(MSR_GS_BASE), kgs = rdmsr(MSR_KERNEL_GS_BASE);
	wrmsr(MSR_KERNEL_GS_BASE, 0x1000);
	asm volatile("swapgs");
	v = rdmsr(MSR_GS_BASE);
	asm volatile("swapgs");
	report(v == 0x1000 && rdmsr(MSR_GS_BASE) == gs, "SWAPGS");
	wrmsr(MSR_KERNEL_GS_BASE, kgs);

	/* TSC */
	uint64_t t1 = rdmsr(MSR_IA32_TSC), t2 = rdtsc(), t3 = rdmsr(MSR_IA32_TSC);
	report(t1 < t2 && t2 < t3, "TSC increases (%lu %lu %lu)", t1, t2, t3);
	wrmsr(MSR_IA32_TSC, 1ull << 40);
	t1 = rdtsc();
	report(t1 >= (1ull << 40) && t1 < (1ull << 40) + (1ull << 32),
	       "TSC write 2^40, read 0x%lx", t1);

	test_tsc_aux();
	test_tsc_adjust();

	/* APIC base */
	uint64_t apic = rdmsr(MSR_IA32_APICBASE);
	report_info("APIC_BASE 0x%lx", apic);
	report((apic & ~0xfffull) == 0xfee00000, "APIC base address 0xfee00000");
	report(apic & APIC_BASE_BSP, "APIC_BASE.BSP set");
	report(apic & APIC_BASE_EN, "APIC_BASE.EN set");
	return report_summary();
}
