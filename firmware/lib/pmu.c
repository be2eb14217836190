/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "pmu.h"
#include "apic.h"
#include "libfw.h"
#include "processor.h"

struct pmu_info pmu;

void pmu_init(void)
{
	memset(&pmu, 0, sizeof(pmu));
	pmu.amd = cpu_is_amd();
	if (pmu.amd) {
		uint32_t max_ext = cpuid(0x80000000).a;
		if (max_ext >= 0x80000001)
			pmu.perfctr_core = (cpuid(0x80000001).c >> 23) & 1;
		if (max_ext >= 0x80000022)
			pmu.perfmon_v2 = cpuid(0x80000022).a & 1;
		pmu.version = pmu.perfmon_v2 ? 2 : 1;
		pmu.nr_gp = pmu.perfctr_core ? 6 : 4;
		if (pmu.perfmon_v2)
			pmu.nr_gp = cpuid(0x80000022).b & 0xf;
		pmu.gp_width = 48;
		if (pmu.perfctr_core) {
			pmu.sel_base = MSR_F15H_PERF_CTL0;
			pmu.ctr_base = MSR_F15H_PERF_CTL0 + 1;
			pmu.msr_stride = 2;
		} else {
			pmu.sel_base = MSR_K7_EVNTSEL0;
			pmu.ctr_base = MSR_K7_PERFCTR0;
			pmu.msr_stride = 1;
		}
		if (pmu.perfmon_v2) {
			pmu.global_ctrl = MSR_AMD64_PERF_CNTR_GLOBAL_CTL;
			pmu.global_status = MSR_AMD64_PERF_CNTR_GLOBAL_STATUS;
			pmu.global_clear = MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR;
		}
		return;
	}
	if (cpuid(0).a < 0xa)
		return;
	struct cpuid a = cpuid(0xa);
	pmu.version = a.a & 0xff;
	if (!pmu.version)
		return;
	pmu.nr_gp = (a.a >> 8) & 0xff;
	pmu.gp_width = (a.a >> 16) & 0xff;
	unsigned len = (a.a >> 24) & 0xff;
	pmu.unavailable = (a.b | ~((len >= 32) ? ~0u : ((1u << len) - 1))) & 0x7f;
	if (pmu.version >= 2) {
		pmu.nr_fixed = a.d & 0x1f;
		pmu.fixed_width = (a.d >> 5) & 0xff;
		pmu.global_ctrl = MSR_CORE_PERF_GLOBAL_CTRL;
		pmu.global_status = MSR_CORE_PERF_GLOBAL_STATUS;
		pmu.global_clear = MSR_CORE_PERF_GLOBAL_OVF_CTRL;
	}
	pmu.pdcm = (cpuid(1).c >> 15) & 1;
	if (pmu.pdcm)
		rdmsr_safe(MSR_IA32_PERF_CAPABILITIES, &pmu.perf_caps);
	pmu.full_width = pmu.perf_caps & PERF_CAP_FW_WRITES;
	pmu.sel_base = MSR_IA32_EVNTSEL0;
	pmu.ctr_base = MSR_IA32_PERFCTR0;
	pmu.msr_stride = 1;
}

void pmu_print(void)
{
	if (pmu.amd)
		report_info("AMD PMU: version %d, %d counters of %d bits, "
			    "PerfCtrExtCore %d, PerfMonV2 %d",
			    pmu.version, pmu.nr_gp, pmu.gp_width,
			    pmu.perfctr_core, pmu.perfmon_v2);
	else
		report_info("Intel PMU: version %d, %d GP of %d bits, %d fixed "
			    "of %d bits, unavailable events 0x%x, PDCM %d, "
			    "PERF_CAPABILITIES 0x%lx",
			    pmu.version, pmu.nr_gp, pmu.gp_width, pmu.nr_fixed,
			    pmu.fixed_width, pmu.unavailable, pmu.pdcm,
			    pmu.perf_caps);
}

uint64_t pmu_all_counters_mask(void)
{
	uint64_t m = (1ull << pmu.nr_gp) - 1;
	if (!pmu.amd)
		m |= ((1ull << pmu.nr_fixed) - 1) << 32;
	return m;
}

void pmu_reset_all(void)
{
	if (pmu.global_ctrl)
		wrmsr(pmu.global_ctrl, 0);
	for (int i = 0; i < pmu.nr_gp; i++) {
		wrmsr(pmu_sel_msr(i), 0);
		wrmsr(pmu_ctr_msr(i), 0);
	}
	if (!pmu.amd && pmu.version >= 2) {
		wrmsr(MSR_CORE_PERF_FIXED_CTR_CTRL, 0);
		for (int i = 0; i < pmu.nr_fixed; i++)
			wrmsr(MSR_CORE_PERF_FIXED_CTR0 + i, 0);
	}
	if (pmu.global_clear)
		wrmsr(pmu.global_clear, rdmsr(pmu.global_status));
}

uint64_t cmdline_u64(const char *cmdline, const char *key, uint64_t def)
{
	size_t klen = strlen(key);
	const char *p = cmdline;

	while (p && *p) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			const char *v = p + klen + 1;
			uint64_t val = 0;
			int base = 10;
			if (v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
				base = 16;
				v += 2;
			}
			for (;; v++) {
				int d;
				if (*v >= '0' && *v <= '9')
					d = *v - '0';
				else if (base == 16 && *v >= 'a' && *v <= 'f')
					d = *v - 'a' + 10;
				else if (base == 16 && *v >= 'A' && *v <= 'F')
					d = *v - 'A' + 10;
				else
					break;
				val = val * base + d;
			}
			return val;
		}
		while (*p && *p != ' ')
			p++;
	}
	return def;
}
