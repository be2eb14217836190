/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Guest-visible semantics of every PMU MSR for the running vendor (CPUID
 * decides; the same image runs with and without --cpu amd).
 * Intel: PERFCTRn legacy writes (low 32 bits sign-extended, masked to the
 * width), PMCn full-width alias (#GP above the width, #GP without
 * PERF_CAPABILITIES bit 13), PERFEVTSELn reserved bits, FIXED_CTRn,
 * FIXED_CTR_CTRL reserved bits, GLOBAL_STATUS read-only, GLOBAL_CTRL reset
 * value and reserved bits, GLOBAL_OVF_CTRL write-1-to-clear (after a real
 * overflow, so it needs instruction counting) and reads 0,
 * PERF_CAPABILITIES read-only, MSRs of absent counters #GP.
 * AMD: legacy and PerfCtrExtCore MSRs and their aliasing, reserved event
 * select bits dropped (no #GP), PerfMonV2 global MSRs when present.
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

static bool wr_rd(uint32_t msr, uint64_t val, uint64_t *got)
{
	*got = ~0ull;
	if (wrmsr_safe(msr, val))
		return false;
	return !rdmsr_safe(msr, got);
}

static void check_wr_rd(uint32_t msr, uint64_t val, uint64_t want,
			const char *what)
{
	uint64_t got;
	bool ok = wr_rd(msr, val, &got);
	report(ok && got == want, "%s: 0x%x write 0x%lx reads 0x%lx (want 0x%lx)",
	       what, msr, val, got, want);
}

static void intel_counters(void)
{
	uint64_t gpm = pmu_gp_mask(), v = 0;

	for (int i = 0; i < pmu.nr_gp; i++) {
		uint32_t ctr = MSR_IA32_PERFCTR0 + i, sel = MSR_IA32_EVNTSEL0 + i;
		check_wr_rd(ctr, 0x12345678, 0x12345678, "PERFCTR");
		check_wr_rd(ctr, 0x87654321, 0xffffffff87654321ull & gpm,
			    "PERFCTR sign-extends bit 31");
		check_wr_rd(ctr, 0xabcd00000001ull, 1,
			    "PERFCTR ignores bits 63:32");
		if (pmu.full_width) {
			uint32_t pmc = MSR_IA32_PMC0 + i;
			check_wr_rd(pmc, 0x123456789abull & gpm,
				    0x123456789abull & gpm, "PMC full width");
			report(!rdmsr_safe(ctr, &v) && v == (0x123456789abull & gpm),
			       "PERFCTR%d aliases PMC%d (0x%lx)", i, i, v);
			check_wr_rd(pmc, gpm, gpm, "PMC all width bits");
			if (pmu.gp_width < 64)
				expect_wrmsr_gp(pmc, gpm + 1, "PMC bit above the width");
			wrmsr(pmc, 0);
		} else {
			expect_wrmsr_gp(MSR_IA32_PMC0 + i, 0, "PMC without full-width writes");
		}
		wrmsr(ctr, 0);
		check_wr_rd(sel, 0x4300c0, 0x4300c0, "PERFEVTSEL");
		check_wr_rd(sel, 0xff8fffff, 0xff8fffff, "PERFEVTSEL all defined bits");
		expect_wrmsr_gp(sel, EVNTSEL_ANY, "AnyThread bit 21");
		expect_wrmsr_gp(sel, 1ull << 32, "bit 32 (IN_TX without TSX)");
		expect_wrmsr_gp(sel, 1ull << 63, "bit 63");
		report(rdmsr(sel) == 0xff8fffff, "PERFEVTSEL unchanged after #GP");
		wrmsr(sel, 0);
	}
	if (pmu.nr_gp < 8) {
		expect_rdmsr_gp(MSR_IA32_PERFCTR0 + pmu.nr_gp, "absent PERFCTR");
		expect_wrmsr_gp(MSR_IA32_EVNTSEL0 + pmu.nr_gp, 0, "absent PERFEVTSEL");
		if (pmu.pdcm)
			expect_rdmsr_gp(MSR_IA32_PMC0 + pmu.nr_gp, "absent PMC");
	}
}

static void intel_fixed_and_global(void)
{
	uint64_t fm = pmu_fixed_mask(), v;

	for (int i = 0; i < pmu.nr_fixed; i++) {
		uint32_t msr = MSR_CORE_PERF_FIXED_CTR0 + i;
		check_wr_rd(msr, 0x1deadbeefull, 0x1deadbeefull & fm,
			    "FIXED_CTR full-width");
		check_wr_rd(msr, ~0ull, fm, "FIXED_CTR masked to the width");
		wrmsr(msr, 0);
	}
	if (pmu.nr_fixed < 3)
		expect_rdmsr_gp(MSR_CORE_PERF_FIXED_CTR0 + pmu.nr_fixed,
			     "absent FIXED_CTR");
	uint64_t ctrl_ok = 0;
	for (int i = 0; i < pmu.nr_fixed; i++)
		ctrl_ok |= 0xbull << (4 * i);
	check_wr_rd(MSR_CORE_PERF_FIXED_CTR_CTRL, ctrl_ok, ctrl_ok,
		    "FIXED_CTR_CTRL OS|USR|PMI");
	expect_wrmsr_gp(MSR_CORE_PERF_FIXED_CTR_CTRL, FIXED_ANY,
		     "FIXED_CTR_CTRL AnyThread");
	expect_wrmsr_gp(MSR_CORE_PERF_FIXED_CTR_CTRL, 1ull << (4 * pmu.nr_fixed),
		     "FIXED_CTR_CTRL field of an absent counter");
	wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0);

	/* GLOBAL_CTRL: reset value has every GP enable bit (fixed bits are policy) */
	uint64_t gp_bits = (1ull << pmu.nr_gp) - 1;
	uint64_t fixed_bits = ((1ull << pmu.nr_fixed) - 1) << 32;
	v = rdmsr(MSR_CORE_PERF_GLOBAL_CTRL);
	report((v & gp_bits) == gp_bits && !(v & ~(gp_bits | fixed_bits)),
	       "GLOBAL_CTRL reset value 0x%lx has all GP enables", v);
	report_info("GLOBAL_CTRL fixed enables at reset: 0x%lx",
		    v & fixed_bits);
	check_wr_rd(MSR_CORE_PERF_GLOBAL_CTRL, gp_bits | fixed_bits,
		    gp_bits | fixed_bits, "GLOBAL_CTRL all counters");
	if (pmu.nr_gp < 32)
		expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, 1ull << pmu.nr_gp,
			     "GLOBAL_CTRL bit of an absent GP counter");
	expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, 1ull << (32 + pmu.nr_fixed),
		     "GLOBAL_CTRL bit of an absent fixed counter");
	expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, 1ull << 63, "GLOBAL_CTRL bit 63");
	wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);

	report(rdmsr(MSR_CORE_PERF_GLOBAL_STATUS) == 0, "GLOBAL_STATUS 0");
	expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_STATUS, 0, "GLOBAL_STATUS read-only");
	expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_STATUS, 1, "GLOBAL_STATUS read-only");
	report(rdmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL) == 0, "GLOBAL_OVF_CTRL reads 0");
	report(!wrmsr_safe(MSR_CORE_PERF_GLOBAL_OVF_CTRL, gp_bits | fixed_bits),
	       "GLOBAL_OVF_CTRL accepts counter bits");
	expect_wrmsr_gp(MSR_CORE_PERF_GLOBAL_OVF_CTRL, 1ull << 40,
		     "GLOBAL_OVF_CTRL reserved bit 40");

	/* a real overflow: PERFCTR0 = -1 counting instructions */
	wrmsr(MSR_IA32_PERFCTR0, 0xffffffff);
	wrmsr(MSR_IA32_EVNTSEL0, EVNTSEL_EN | EVNTSEL_OS | 0xc0);
	wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 1);
	asm volatile("nop; nop; nop");
	wrmsr(MSR_CORE_PERF_GLOBAL_CTRL, 0);
	v = rdmsr(MSR_CORE_PERF_GLOBAL_STATUS);
	uint64_t ctr = rdmsr(MSR_IA32_PERFCTR0);
	report(v == 1, "overflow of PERFCTR0 sets GLOBAL_STATUS bit 0 (0x%lx, "
		       "counter 0x%lx)",
	       v, ctr);
	wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, 2);
	report(rdmsr(MSR_CORE_PERF_GLOBAL_STATUS) == v,
	       "GLOBAL_OVF_CTRL bit 1 leaves bit 0");
	wrmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL, 1);
	report(rdmsr(MSR_CORE_PERF_GLOBAL_STATUS) == 0,
	       "GLOBAL_OVF_CTRL bit 0 clears it");
	report(rdmsr(MSR_CORE_PERF_GLOBAL_OVF_CTRL) == 0,
	       "GLOBAL_OVF_CTRL still reads 0");
	wrmsr(MSR_IA32_EVNTSEL0, 0);
	wrmsr(MSR_IA32_PERFCTR0, 0);
}

static void intel(void)
{
	uint64_t v;

	if (!pmu.version) {
		expect_rdmsr_gp(MSR_IA32_PERFCTR0, "no PMU");
		expect_rdmsr_gp(MSR_IA32_EVNTSEL0, "no PMU");
		expect_rdmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, "no PMU");
		return;
	}
	intel_counters();
	if (pmu.version >= 2) {
		intel_fixed_and_global();
	} else {
		expect_rdmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, "PMU version 1");
		expect_rdmsr_gp(MSR_CORE_PERF_FIXED_CTR0, "PMU version 1");
	}
	if (pmu.pdcm) {
		report(!rdmsr_safe(MSR_IA32_PERF_CAPABILITIES, &v),
		       "PERF_CAPABILITIES readable (0x%lx)", v);
		report(v & PERF_CAP_FW_WRITES,
		       "PERF_CAPABILITIES full-width writes (bit 13)");
		expect_wrmsr_gp(MSR_IA32_PERF_CAPABILITIES, v,
			     "PERF_CAPABILITIES read-only");
		expect_wrmsr_gp(MSR_IA32_PERF_CAPABILITIES, 0,
			     "PERF_CAPABILITIES read-only");
	} else {
		expect_rdmsr_gp(MSR_IA32_PERF_CAPABILITIES, "no PDCM");
	}
	expect_rdmsr_gp(MSR_K7_EVNTSEL0, "AMD MSR on Intel");
	expect_rdmsr_gp(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, "AMD MSR on Intel");
}

static void amd(void)
{
	uint64_t v, gpm = pmu_gp_mask();
	int legacy = pmu.nr_gp < 4 ? pmu.nr_gp : 4;

	for (int i = 0; i < legacy; i++) {
		check_wr_rd(MSR_K7_PERFCTR0 + i, 0x123456789abcull,
			    0x123456789abcull, "legacy PERFCTR");
		check_wr_rd(MSR_K7_PERFCTR0 + i, ~0ull, gpm,
			    "legacy PERFCTR masked to 48 bits");
		check_wr_rd(MSR_K7_EVNTSEL0 + i, 0x4300c0, 0x4300c0,
			    "legacy EVNTSEL");
		/* reserved bits (19, 21, 36-39, 42-63) are dropped, not #GP */
		check_wr_rd(MSR_K7_EVNTSEL0 + i,
			    0x4300c0 | (1ull << 19) | (1ull << 21) | (1ull << 63),
			    0x4300c0, "legacy EVNTSEL reserved bits dropped");
		check_wr_rd(MSR_K7_EVNTSEL0 + i, 0x30f4300c0ull, 0x30f4300c0ull,
			    "EVNTSEL extended event bits 35:32 and host/guest 41:40");
		if (pmu.perfctr_core) {
			uint32_t ctl = MSR_F15H_PERF_CTL0 + 2 * i;
			report(!rdmsr_safe(ctl, &v) && v == 0x30f4300c0ull,
			       "PERF_CTL%d aliases EVNTSEL%d (0x%lx)", i, i, v);
			wrmsr(ctl + 1, 0x5555);
			report(rdmsr(MSR_K7_PERFCTR0 + i) == 0x5555,
			       "PERF_CTR%d aliases PERFCTR%d", i, i);
		}
		wrmsr(MSR_K7_EVNTSEL0 + i, 0);
		wrmsr(MSR_K7_PERFCTR0 + i, 0);
	}
	if (pmu.perfctr_core) {
		for (int i = 0; i < pmu.nr_gp; i++) {
			uint32_t ctl = MSR_F15H_PERF_CTL0 + 2 * i;
			check_wr_rd(ctl + 1, 0xfedcba987654ull, 0xfedcba987654ull,
				    "PERF_CTR");
			check_wr_rd(ctl, 0x4300c2 | (1ull << 21), 0x4300c2,
				    "PERF_CTL reserved bit dropped");
			wrmsr(ctl, 0);
			wrmsr(ctl + 1, 0);
		}
		if (pmu.nr_gp < 6)
			expect_rdmsr_gp(MSR_F15H_PERF_CTL0 + 2 * pmu.nr_gp,
				     "absent PERF_CTL");
	} else {
		expect_rdmsr_gp(MSR_F15H_PERF_CTL0, "PERF_CTL without PerfCtrExtCore");
		expect_wrmsr_gp(MSR_F15H_PERF_CTL0 + 1, 0,
			     "PERF_CTR without PerfCtrExtCore");
	}
	if (pmu.perfmon_v2) {
		uint64_t all = (1ull << pmu.nr_gp) - 1;
		check_wr_rd(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, all, all,
			    "PerfMonV2 GLOBAL_CTL");
		expect_wrmsr_gp(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, 1ull << 40,
			     "GLOBAL_CTL reserved");
		wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, 0);
		/* the checks above ran counters at all-ones with EN set: they overflowed */
		wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, all);
		report(rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS) == 0,
		       "GLOBAL_STATUS 0 after STATUS_CLR");
		report(!wrmsr_safe(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, 1) &&
			       rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS) == 0,
		       "GLOBAL_STATUS write ignored");
		wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET, 5);
		report(rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS) == 5,
		       "STATUS_SET sets bits");
		wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, 1);
		report(rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS) == 4,
		       "STATUS_CLR clears bits");
		report(rdmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR) == 0,
		       "STATUS_CLR reads 0");
		wrmsr(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR, 4);
	} else {
		expect_rdmsr_gp(MSR_AMD64_PERF_CNTR_GLOBAL_CTL, "no PerfMonV2");
		expect_rdmsr_gp(MSR_AMD64_PERF_CNTR_GLOBAL_STATUS, "no PerfMonV2");
	}
	expect_rdmsr_gp(MSR_IA32_PERFCTR0, "Intel MSR on AMD");
	expect_rdmsr_gp(MSR_CORE_PERF_GLOBAL_CTRL, "Intel MSR on AMD");
	expect_rdmsr_gp(MSR_IA32_PERF_CAPABILITIES, "Intel MSR on AMD");
}

int main(struct multiboot_info *mbi)
{
	printf("pmu_msr test\n");
	pmu_init();
	pmu_print();
	if (pmu.amd)
		amd();
	else
		intel();
	return report_summary();
}
