/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * KVM's paravirtual interface as a KVM guest sees it (Documentation/virt/kvm/x86/cpuid.rst and
 * hypercalls.rst), or its absence.
 *
 * Command line: expect=pv (the VMM runs with --kvm-pv) or expect=none (it does not).
 *
 * expect=none: CPUID 0x40000000 is an out-of-range leaf (on Intel it answers as the highest basic
 * leaf), and VMCALL and VMMCALL are #UD.
 *
 * expect=pv: CPUID 0x40000000 has the signature "KVMKVMKVM\0\0\0" and 0x40000001 as its highest
 * leaf; 0x40000001 offers NOP_IO_DELAY and PV_SEND_IPI and nothing this VMM does not model
 * (kvmclock). Hypercalls, through VMCALL and VMMCALL alike (KVM takes both on either vendor):
 * an unknown number returns -KVM_ENOSYS, KVM_HC_VAPIC_POLL_IRQ returns 0, the argument registers
 * come back unchanged, a call from CPL3 returns -KVM_EPERM. KVM_HC_SEND_IPI with every AP
 * started: a fixed IPI to all APs through the bitmap, to one AP through a shifted bitmap (a2),
 * NMIs, and bitmaps naming no CPU; the return value counts the CPUs that took it.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "smp.h"

#define KVM_ENOSYS 1000
#define KVM_EPERM 1
#define KVM_HC_VAPIC_POLL_IRQ 1
#define KVM_HC_SEND_IPI 10
#define KVM_FEATURE_CLOCKSOURCE (1u << 0)
#define KVM_FEATURE_NOP_IO_DELAY (1u << 1)
#define KVM_FEATURE_CLOCKSOURCE2 (1u << 3)
#define KVM_FEATURE_PV_SEND_IPI (1u << 11)
#define V_PV_IPI 0x45

static volatile int ipi_count[SMP_MAX_CPUS];
static volatile int nmi_count[SMP_MAX_CPUS];

struct hc_regs {
	uint64_t rax, rbx, rcx, rdx, rsi;
};

/* a hypercall through VMCALL (vendor 0) or VMMCALL; the registers as the call left them */
static struct hc_regs hypercall(bool vmmcall, uint64_t nr, uint64_t a0, uint64_t a1, uint64_t a2,
				uint64_t a3)
{
	struct hc_regs r = { nr, a0, a1, a2, a3 };

	exception_reset();
	if (vmmcall)
		asm volatile(ASM_TRY_BEGIN "vmmcall" ASM_TRY_END
			     : "+a"(r.rax), "+b"(r.rbx), "+c"(r.rcx), "+d"(r.rdx), "+S"(r.rsi) :: "memory");
	else
		asm volatile(ASM_TRY_BEGIN "vmcall" ASM_TRY_END
			     : "+a"(r.rax), "+b"(r.rbx), "+c"(r.rcx), "+d"(r.rdx), "+S"(r.rsi) :: "memory");
	return r;
}

static uint64_t user_hypercall(uint64_t vmmcall)
{
	return hypercall(vmmcall, KVM_HC_VAPIC_POLL_IRQ, 0, 0, 0, 0).rax;
}

static void ipi_handler(struct ex_regs *regs)
{
	ipi_count[smp_cpu_index()]++;
	apic_eoi();
}

static void nmi_handler(struct ex_regs *regs)
{
	nmi_count[smp_cpu_index()]++;
}

static void clear_counts(void)
{
	memset((void *)ipi_count, 0, sizeof(ipi_count));
	memset((void *)nmi_count, 0, sizeof(nmi_count));
}

/* every CPU's count is what `want` says (bit i: CPU i got exactly one), within the SMP timeout */
static bool counts_are(volatile int *count, uint32_t want)
{
	bool ok = true;

	for (int i = 0; i < smp_nr_cpus; i++) {
		int expected = (want >> i) & 1;
		ok &= WAIT_UNTIL(count[i] == expected, expected ? SMP_TIMEOUT : 0);
	}
	tsc_delay(SMP_TIMEOUT / 20);        /* nothing more arrives later */
	for (int i = 0; i < smp_nr_cpus; i++)
		ok &= count[i] == (int)((want >> i) & 1);
	return ok;
}

static void test_absent(void)
{
	struct cpuid hv = cpuid(0x40000000), top = cpuid(cpuid(0).a);

	if (!cpu_is_amd())
		report(hv.a == top.a && hv.b == top.b && hv.c == top.c && hv.d == top.d,
		       "CPUID 0x40000000 answers as the highest basic leaf (no hypervisor leaves)");
	for (int vmmcall = 0; vmmcall <= 1; vmmcall++) {
		hypercall(vmmcall, KVM_HC_VAPIC_POLL_IRQ, 0, 0, 0, 0);
		report(exception_vector() == UD_VECTOR, "%s without a hypervisor -> #UD (vector %d)",
		       vmmcall ? "VMMCALL" : "VMCALL", exception_vector());
	}
}

static void test_send_ipi(void)
{
	uint32_t aps = 0, id_bits = 0, min_id = ~0u;
	struct hc_regs r;
	int started = smp_start_aps();

	report(started == smp_nr_cpus - 1, "%d APs started", started);
	if (smp_nr_cpus < 2) {
		report_skip("KVM_HC_SEND_IPI: needs --smp 2 or more");
		return;
	}
	for (int i = 1; i < smp_nr_cpus; i++) {
		aps |= 1u << i;
		id_bits |= 1u << smp_cpus[i].apic_id;
		if (smp_cpus[i].apic_id < min_id)
			min_id = smp_cpus[i].apic_id;
	}
	clear_counts();
	r = hypercall(false, KVM_HC_SEND_IPI, id_bits, 0, 0, APIC_DM_FIXED | V_PV_IPI);
	report(r.rax == (uint64_t)(smp_nr_cpus - 1) && counts_are(ipi_count, aps),
	       "SEND_IPI fixed to every AP: returns %ld, each AP took it once", (long)r.rax);

	clear_counts();
	r = hypercall(true, KVM_HC_SEND_IPI, 1, 0, smp_cpus[1].apic_id, APIC_DM_FIXED | V_PV_IPI);
	report(r.rax == 1 && counts_are(ipi_count, 1u << 1),
	       "SEND_IPI through VMMCALL, bitmap starting at APIC id %u: only that CPU (returns %ld)",
	       smp_cpus[1].apic_id, (long)r.rax);

	clear_counts();
	r = hypercall(false, KVM_HC_SEND_IPI, id_bits >> min_id, 0, min_id, APIC_DM_NMI);
	report(r.rax == (uint64_t)(smp_nr_cpus - 1) && counts_are(nmi_count, aps),
	       "SEND_IPI NMI to every AP (returns %ld)", (long)r.rax);

	clear_counts();
	r = hypercall(false, KVM_HC_SEND_IPI, 0, 1, 0, APIC_DM_FIXED | V_PV_IPI);
	report(r.rax == 0 && counts_are(ipi_count, 0), "SEND_IPI to APIC id 64 (a1 bit 0): nobody (returns %ld)",
	       (long)r.rax);
	r = hypercall(false, KVM_HC_SEND_IPI, 1, 0, SMP_MAX_CPUS + 100, APIC_DM_FIXED | V_PV_IPI);
	report(r.rax == 0 && counts_are(ipi_count, 0), "SEND_IPI above the last APIC id: nobody (returns %ld)",
	       (long)r.rax);
}

static void test_present(void)
{
	struct cpuid sig = cpuid(0x40000000), features = cpuid(0x40000001);
	char name[13];

	memcpy(name, &sig.b, 4);
	memcpy(name + 4, &sig.c, 4);
	memcpy(name + 8, &sig.d, 4);
	name[12] = 0;
	report(!memcmp(name, "KVMKVMKVM\0\0\0", 12), "CPUID 0x40000000 signature \"%s\"", name);
	report(sig.a == 0x40000001, "highest hypervisor leaf 0x%x", sig.a);
	report((features.a & KVM_FEATURE_NOP_IO_DELAY) && (features.a & KVM_FEATURE_PV_SEND_IPI) &&
	       !(features.a & (KVM_FEATURE_CLOCKSOURCE | KVM_FEATURE_CLOCKSOURCE2)) && features.d == 0,
	       "features 0x%x: NOP_IO_DELAY and PV_SEND_IPI, no kvmclock; hints 0x%x", features.a, features.d);

	for (int vmmcall = 0; vmmcall <= 1; vmmcall++) {
		const char *insn = vmmcall ? "VMMCALL" : "VMCALL";
		struct hc_regs r = hypercall(vmmcall, 0x1234, 0x11, 0x22, 0x33, 0x44);

		report(exception_vector() == -1 && r.rax == (uint64_t)-KVM_ENOSYS,
		       "%s of an unknown hypercall returns -KVM_ENOSYS (%ld)", insn, (long)r.rax);
		report(r.rbx == 0x11 && r.rcx == 0x22 && r.rdx == 0x33 && r.rsi == 0x44,
		       "%s leaves the argument registers alone", insn);
		r = hypercall(vmmcall, KVM_HC_VAPIC_POLL_IRQ, 0, 0, 0, 0);
		report(exception_vector() == -1 && r.rax == 0, "%s KVM_HC_VAPIC_POLL_IRQ returns 0", insn);
		report(run_in_user(user_hypercall, vmmcall, 0, false) == (uint64_t)-KVM_EPERM,
		       "%s at CPL3 returns -KVM_EPERM", insn);
	}
	test_send_ipi();
}

int main(struct multiboot_info *mbi)
{
	char expect[8];

	cmdline_word(mbi_cmdline(mbi), "expect", expect, sizeof(expect));
	printf("kvm_pv test (expect=%s)\n", expect);
	smp_init(true);
	handle_exception(V_PV_IPI, ipi_handler);
	handle_exception(NMI_VECTOR, nmi_handler);
	if (!strcmp(expect, "pv"))
		test_present();
	else if (!strcmp(expect, "none"))
		test_absent();
	else
		report(false, "expect=pv or expect=none on the command line");
	return report_summary();
}
