/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * RDPMC: CPL0, CPL3 with and without CR4.PCE (#GP without), GP and (Intel)
 * fixed-counter indexes (bit 30), invalid indexes #GP, values masked to the
 * counter width, the "fast" read bit 31 (either policy: #GP or 32 bits),
 * and the VMware backdoor pseudo-PMCs 0x10000-0x10002 readable from CPL3
 * with CR4.PCE=0 (0x10000 runs with the TSC).
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

/* results of the CPL3 side */
static volatile uint64_t user_val[4];
static volatile int user_vec[4];

static uint64_t user_rdpmc(uint64_t idx)
{
	uint64_t v;
	bool f = rdpmc_safe((uint32_t)idx, &v);
	user_val[0] = v;
	user_vec[0] = f ? exception_vector() : -1;
	return read_cs() & 3;
}

static uint64_t user_vmware(uint64_t unused)
{
	uint64_t v;
	uint64_t t0 = rdtsc();
	bool f = rdpmc_safe(VMWARE_PMC_HOST_TSC, &v);
	uint64_t t1 = rdtsc();
	user_vec[0] = f ? exception_vector() : -1;
	user_val[0] = v;
	user_val[2] = t0;
	user_val[3] = t1;
	f = rdpmc_safe(VMWARE_PMC_REAL_NS, &v);
	user_vec[1] = f ? exception_vector() : -1;
	user_val[1] = v;
	f = rdpmc_safe(VMWARE_PMC_APPARENT_NS, &v);
	user_vec[2] = f ? exception_vector() : -1;
	f = rdpmc_safe(0x10003, &v);
	user_vec[3] = f ? exception_vector() : -1;
	return read_cs() & 3;
}

static void check_index(uint32_t idx, uint64_t want, const char *what)
{
	uint64_t v;
	bool f = rdpmc_safe(idx, &v);
	report(!f && v == want, "CPL0 RDPMC 0x%x (%s) = 0x%lx (want 0x%lx)",
	       idx, what, v, want);
}

static void expect_gp(uint32_t idx, const char *what)
{
	uint64_t v;
	report(rdpmc_safe(idx, &v) && faulted_with(GP_VECTOR),
	       "CPL0 RDPMC 0x%x (%s) -> #GP", idx, what);
}

static void test_user(uint32_t idx, uint64_t want)
{
	unsigned long cr4 = read_cr4();

	write_cr4(cr4 & ~X86_CR4_PCE);
	uint64_t cpl = run_in_user(user_rdpmc, idx, 0, false);
	report(cpl == 3 && user_vec[0] == GP_VECTOR,
	       "CPL3 RDPMC 0x%x with CR4.PCE=0 -> #GP (vector %d)", idx,
	       user_vec[0]);
	write_cr4(cr4 | X86_CR4_PCE);
	cpl = run_in_user(user_rdpmc, idx, 0, false);
	report(cpl == 3 && user_vec[0] == -1 && user_val[0] == want,
	       "CPL3 RDPMC 0x%x with CR4.PCE=1 = 0x%lx (want 0x%lx)", idx,
	       user_val[0], want);
	write_cr4(cr4);
}

int main(struct multiboot_info *mbi)
{
	printf("pmu_rdpmc test\n");
	pmu_init();
	pmu_print();
	if (!pmu.version) {
		expect_gp(0, "no PMU");
		expect_gp(VMWARE_PMC_HOST_TSC, "no PMU: pseudo-PMC");
		return report_summary();
	}
	pmu_reset_all();
	uint64_t gpm = pmu_gp_mask();
	for (int i = 0; i < pmu.nr_gp; i++)
		wrmsr(pmu_ctr_msr(i), 0x1000 + i);
	for (int i = 0; i < pmu.nr_gp; i++)
		check_index(i, 0x1000 + i, "GP counter");
	expect_gp(pmu.nr_gp, "first absent GP counter");
	expect_gp(0x1234, "bogus index");
	if (pmu.amd) {
		expect_gp(RDPMC_FIXED, "fixed space on AMD");
		wrmsr(pmu_ctr_msr(0), ~0ull);
		check_index(0, gpm, "masked to 48 bits");
	} else {
		wrmsr(MSR_IA32_PERFCTR0, 0x80000000); /* sign-extends */
		check_index(0, gpm & 0xffffffff80000000ull,
			    "sign-extended legacy write, masked to the width");
		if (pmu.full_width) {
			wrmsr(MSR_IA32_PMC0, 0x123400000000ull & gpm);
			check_index(0, 0x123400000000ull & gpm,
				    "full-width value");
		}
		for (int i = 0; i < pmu.nr_fixed; i++) {
			wrmsr(MSR_CORE_PERF_FIXED_CTR0 + i, 0x2000 + i);
			check_index(RDPMC_FIXED | i, 0x2000 + i, "fixed counter");
		}
		expect_gp(RDPMC_FIXED | pmu.nr_fixed, "absent fixed counter");
		if (pmu.nr_fixed) {
			wrmsr(MSR_CORE_PERF_FIXED_CTR0, ~0ull);
			check_index(RDPMC_FIXED, pmu_fixed_mask(),
				    "fixed counter masked to the width");
		}
		/* "fast" 32-bit read: #GP (upstream policy) or low 32 bits (seed) */
		wrmsr(MSR_IA32_PERFCTR0, 0x87654321);
		uint64_t v;
		bool f = rdpmc_safe(0x80000000u, &v);
		report((f && faulted_with(GP_VECTOR)) || (!f && v == 0x87654321),
		       "fast RDPMC 0x80000000: %s (0x%lx)",
		       f ? "#GP (upstream policy)" : "32-bit read (seed policy)", v);
	}
	wrmsr(pmu_ctr_msr(1), 0x4242);
	test_user(1, 0x4242);
	if (!pmu.amd && pmu.nr_fixed) {
		wrmsr(MSR_CORE_PERF_FIXED_CTR0, 0x77);
		test_user(RDPMC_FIXED, 0x77);
	}

	/* VMware pseudo-PMCs: CPL3, CR4.PCE=0 */
	write_cr4(read_cr4() & ~X86_CR4_PCE);
	uint64_t cpl = run_in_user(user_vmware, 0, 0, false);
	report(cpl == 3 && user_vec[0] == -1,
	       "CPL3 PCE=0 RDPMC 0x10000 readable (vector %d)", user_vec[0]);
	report(user_vec[0] == -1 && user_val[0] >= user_val[2] &&
		       user_val[0] <= user_val[3],
	       "0x10000 between two RDTSCs (%lu <= %lu <= %lu)", user_val[2],
	       user_val[0], user_val[3]);
	report(user_vec[1] == -1 && user_val[1] > 0,
	       "CPL3 RDPMC 0x10001 (real ns %lu)", user_val[1]);
	report(user_vec[2] == -1, "CPL3 RDPMC 0x10002 readable");
	report(user_vec[3] == GP_VECTOR, "CPL3 RDPMC 0x10003 -> #GP");
	uint64_t a, b;
	bool fa = rdpmc_safe(VMWARE_PMC_REAL_NS, &a);
	for (int i = 0; i < 1000; i++)
		asm volatile("nop");
	bool fb = rdpmc_safe(VMWARE_PMC_REAL_NS, &b);
	report(!fa && !fb && b >= a, "real-time pseudo-PMC monotonic");
	pmu_reset_all();
	return report_summary();
}
