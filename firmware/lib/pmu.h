/* SPDX-License-Identifier: GPL-2.0-or-later */
/* PMU MSRs and the PMU shape as CPUID describes it (Intel arch perfmon, AMD). */
#ifndef FW_PMU_H
#define FW_PMU_H
#include <stdbool.h>
#include <stdint.h>

/* Intel */
#define MSR_IA32_PERFCTR0 0xc1
#define MSR_IA32_PMC0 0x4c1
#define MSR_IA32_EVNTSEL0 0x186
#define MSR_CORE_PERF_FIXED_CTR0 0x309
#define MSR_IA32_PERF_CAPABILITIES 0x345
#define MSR_CORE_PERF_FIXED_CTR_CTRL 0x38d
#define MSR_CORE_PERF_GLOBAL_STATUS 0x38e
#define MSR_CORE_PERF_GLOBAL_CTRL 0x38f
#define MSR_CORE_PERF_GLOBAL_OVF_CTRL 0x390
#define PERF_CAP_FW_WRITES (1ull << 13)
/* AMD */
#define MSR_K7_EVNTSEL0 0xc0010000
#define MSR_K7_PERFCTR0 0xc0010004
#define MSR_F15H_PERF_CTL0 0xc0010200 /* CTLn = +2n, CTRn = +2n+1 */
#define MSR_AMD64_PERF_CNTR_GLOBAL_STATUS 0xc0000300
#define MSR_AMD64_PERF_CNTR_GLOBAL_CTL 0xc0000301
#define MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_CLR 0xc0000302
#define MSR_AMD64_PERF_CNTR_GLOBAL_STATUS_SET 0xc0000303

/* event select bits */
#define EVNTSEL_USR (1ull << 16)
#define EVNTSEL_OS (1ull << 17)
#define EVNTSEL_EDGE (1ull << 18)
#define EVNTSEL_INT (1ull << 20)
#define EVNTSEL_ANY (1ull << 21)
#define EVNTSEL_EN (1ull << 22)
#define EVNTSEL_INV (1ull << 23)
#define EVNTSEL_CMASK(n) ((uint64_t)(n) << 24)

/* fixed counter control: 4 bits per counter */
#define FIXED_OS 1ull
#define FIXED_USR 2ull
#define FIXED_ANY 4ull
#define FIXED_PMI 8ull

/* RDPMC index spaces */
#define RDPMC_FIXED (1u << 30)
#define VMWARE_PMC_HOST_TSC 0x10000
#define VMWARE_PMC_REAL_NS 0x10001
#define VMWARE_PMC_APPARENT_NS 0x10002

struct pmu_info {
	bool amd;
	int version;
	int nr_gp;
	int gp_width;
	int nr_fixed;
	int fixed_width;
	uint32_t unavailable; /* Intel: bit i = architectural event i absent */
	bool pdcm;
	uint64_t perf_caps;
	bool full_width;      /* Intel PERF_CAPABILITIES bit 13 */
	bool perfctr_core;    /* AMD CPUID 0x80000001 ECX[23] */
	bool perfmon_v2;      /* AMD CPUID 0x80000022 EAX[0] */
	/* MSR addresses of GP counter n's select and counter (vendor specific) */
	uint32_t sel_base, ctr_base, msr_stride;
	/* global control/status/clear MSRs, 0 when absent */
	uint32_t global_ctrl, global_status, global_clear;
};

extern struct pmu_info pmu;
/* fill `pmu` from CPUID (and PERF_CAPABILITIES when PDCM) */
void pmu_init(void);
void pmu_print(void);
static inline uint32_t pmu_sel_msr(int n)
{
	return pmu.sel_base + n * pmu.msr_stride;
}
static inline uint32_t pmu_ctr_msr(int n)
{
	return pmu.ctr_base + n * pmu.msr_stride;
}
static inline uint64_t pmu_gp_mask(void)
{
	return pmu.gp_width >= 64 ? ~0ull : (1ull << pmu.gp_width) - 1;
}
static inline uint64_t pmu_fixed_mask(void)
{
	return pmu.fixed_width >= 64 ? ~0ull : (1ull << pmu.fixed_width) - 1;
}
/* GLOBAL_CTRL value enabling every counter */
uint64_t pmu_all_counters_mask(void);
/* zero every select, counter, FIXED_CTR_CTRL; clear GLOBAL_STATUS */
void pmu_reset_all(void);
static inline uint64_t rdpmc(uint32_t idx)
{
	uint32_t lo, hi;
	asm volatile("rdpmc" : "=a"(lo), "=d"(hi) : "c"(idx));
	return lo | ((uint64_t)hi << 32);
}

/*
 * Inline-asm text around a counted sequence: the enabling WRMSR (ECX = MSR, EDX:EAX = value), which
 * retires under the new state and is counted, the MSR index kept in EDI (clobbered), ..., then the
 * disabling WRMSR (EDX:EAX = 0), not counted: 2 instructions before the body, 3 after it.
 */
#define PMU_COUNTED_BEGIN "wrmsr\n\tmov %%ecx, %%edi\n\t"
#define PMU_COUNTED_END "mov %%edi, %%ecx\n\txor %%eax, %%eax\n\txor %%edx, %%edx\n\twrmsr"

/* "key=value" (decimal or 0x hex) in a command line; def when absent */
uint64_t cmdline_u64(const char *cmdline, const char *key, uint64_t def);
#endif
