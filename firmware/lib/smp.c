/* SPDX-License-Identifier: GPL-2.0-or-later */
/* SMP support for the test kernels: see smp.h. */
#include "smp.h"
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "processor.h"

#define AP_STACK_SIZE (16 * 1024)

struct smp_cpu smp_cpus[SMP_MAX_CPUS];
int smp_nr_cpus = 1;
struct madt_info smp_madt;
int smp_madt_status = -1;

/* read by the trampoline: stack top per initial APIC ID (0: not one of ours) */
uint64_t smp_ap_stack_top[256];
static uint8_t ap_stacks[SMP_MAX_CPUS][AP_STACK_SIZE] __attribute__((aligned(16)));
static int8_t index_of_apic[256];
static volatile bool smp_ready;

extern const char smp_trampoline_start[], smp_trampoline_end[];
extern const char smp_tr_cr3[], smp_tr_efer[], smp_tr_gdtr64[], smp_tr_idtr64[];
extern const char smp_tr_gdt32[], smp_tr_gdtr32[];

/* libfw's console lock asks who is printing */
int fw_cpu_id(void)
{
	return smp_ready ? this_cpu()->index : 0;
}

int smp_cpu_index(void)
{
	return fw_cpu_id();
}

uint32_t smp_lapic_id(void)
{
	uint32_t id = apic_read(APIC_ID);
	return apic_is_x2apic() ? id : id >> 24;
}

int smp_index_of_apic(uint32_t apic_id)
{
	return apic_id < 256 ? index_of_apic[apic_id] : -1;
}

void tsc_delay(uint64_t ticks)
{
	uint64_t end = rdtsc() + ticks;
	while (rdtsc() < end)
		pause();
}

static void kick_handler(struct ex_regs *regs)
{
	apic_eoi();
}

void smp_install_trampoline(uintptr_t addr)
{
	uint8_t *dst = (uint8_t *)addr;
	size_t size = smp_trampoline_end - smp_trampoline_start;
	struct descriptor_table_ptr gdtr, idtr;

	assert(addr && addr < 0x100000 && !(addr & 0xfff) && size <= 4096);
	memcpy(dst, smp_trampoline_start, size);
	uint32_t cr3 = (uint32_t)read_cr3(), efer = (uint32_t)(rdmsr(MSR_EFER) & ~EFER_LMA);
	asm volatile("sgdt %0" : "=m"(gdtr));
	asm volatile("sidt %0" : "=m"(idtr));
	assert(read_cr3() < (1ull << 32));
	memcpy(dst + (smp_tr_cr3 - smp_trampoline_start), &cr3, 4);
	memcpy(dst + (smp_tr_efer - smp_trampoline_start), &efer, 4);
	memcpy(dst + (smp_tr_gdtr64 - smp_trampoline_start), &gdtr, 10);
	memcpy(dst + (smp_tr_idtr64 - smp_trampoline_start), &idtr, 10);
	uint32_t gdt32 = (uint32_t)addr + (uint32_t)(smp_tr_gdt32 - smp_trampoline_start);
	memcpy(dst + (smp_tr_gdtr32 - smp_trampoline_start) + 2, &gdt32, 4);
}

int smp_init(bool idle_hlt)
{
	uint32_t bsp_id;

	apic_sw_enable();
	bsp_id = smp_lapic_id();
	memset(index_of_apic, -1, sizeof(index_of_apic));
	smp_madt_status = acpi_parse_madt(&smp_madt);
	smp_nr_cpus = 1;
	smp_cpus[0].apic_id = bsp_id;
	if (!smp_madt_status) {
		for (int i = 0; i < smp_madt.nr_enabled && i < MADT_MAX_CPUS; i++) {
			uint32_t id = smp_madt.apic_ids[i];
			if (id == bsp_id || smp_nr_cpus >= SMP_MAX_CPUS || id >= 256)
				continue;
			smp_cpus[smp_nr_cpus++].apic_id = id;
		}
	}
	for (int i = 0; i < smp_nr_cpus; i++) {
		struct smp_cpu *c = &smp_cpus[i];
		c->self = c;
		c->index = i;
		c->idle_hlt = idle_hlt;
		c->stack_top = ap_stacks[i] + AP_STACK_SIZE;
		if (c->apic_id < 256) {
			index_of_apic[c->apic_id] = (int8_t)i;
			if (i)
				smp_ap_stack_top[c->apic_id] = (uintptr_t)c->stack_top;
		}
	}
	smp_cpus[0].online = 1;
	smp_cpus[0].starts = 1;
	wrmsr(MSR_GS_BASE, (uintptr_t)&smp_cpus[0]);
	smp_ready = true;
	handle_exception(SMP_KICK_VECTOR, kick_handler);
	smp_install_trampoline(SMP_TRAMPOLINE_ADDR);
	return smp_nr_cpus;
}

/* xAPIC: wait for the delivery status bit (the VMM's reads 0 at once) */
static void icr_wait_idle(void)
{
	if (apic_is_x2apic())
		return;
	for (int i = 0; i < 100000 && (xapic_read(APIC_ICR) & APIC_ICR_BUSY); i++)
		pause();
}

void smp_send_ipi(uint32_t icr_low, uint32_t dest)
{
	apic_icr_write(icr_low, dest);
	icr_wait_idle();
}

void smp_send_init(uint32_t apic_id)
{
	smp_send_ipi(APIC_INT_LEVELTRIG | APIC_INT_ASSERT | APIC_DM_INIT, apic_id);
}

void smp_send_init_deassert(uint32_t apic_id)
{
	smp_send_ipi(APIC_INT_LEVELTRIG | APIC_DM_INIT, apic_id);
}

void smp_send_sipi(uint32_t apic_id, unsigned vector)
{
	smp_send_ipi(APIC_DM_STARTUP | (vector & 0xff), apic_id);
}

bool smp_start_ap(int cpu, unsigned vector)
{
	struct smp_cpu *c = &smp_cpus[cpu];

	if (cpu <= 0 || cpu >= smp_nr_cpus)
		return false;
	__atomic_store_n(&c->online, 0, __ATOMIC_SEQ_CST);
	c->dead = false;
	c->req = c->ack = 0;
	smp_send_init(c->apic_id);
	smp_send_init_deassert(c->apic_id);
	tsc_delay(SMP_INIT_DELAY);
	smp_send_sipi(c->apic_id, vector);
	tsc_delay(SMP_SIPI_DELAY);
	smp_send_sipi(c->apic_id, vector);
	if (!WAIT_UNTIL(c->online, SMP_TIMEOUT)) {
		c->dead = true;
		return false;
	}
	return true;
}

int smp_start_aps(void)
{
	int n = 0;
	for (int i = 1; i < smp_nr_cpus; i++)
		n += smp_start_ap(i, SMP_TRAMPOLINE_VECTOR);
	return n;
}

static void record_boot(struct smp_cpu *c, uint32_t cpuid_id, uint32_t cs_flags, uint32_t edx,
			uint32_t cr0)
{
	struct smp_boot_record *b = &c->boot;
	uint32_t any = 0;

	b->tsc = rdtsc();
	b->cs = cs_flags & 0xffff;
	b->flags = cs_flags >> 16;
	b->edx = edx;
	b->cr0 = cr0;
	b->cpuid_apic_id = cpuid_id;
	b->x2apic_id = cpuid(0).a >= 0xb ? cpuid_indexed(0xb, 0).d : ~0u;
	b->apic_base = rdmsr(MSR_IA32_APICBASE);
	b->lapic_id = smp_lapic_id();
	b->spiv = apic_read(APIC_SPIV);
	b->tpr = apic_read(APIC_TPR);
	b->ldr = apic_read(APIC_LDR);
	b->dfr = apic_is_x2apic() ? 0 : apic_read(APIC_DFR);
	b->lvtt = apic_read(APIC_LVTT);
	b->lvtpc = apic_read(APIC_LVTPC);
	b->lvt0 = apic_read(APIC_LVT0);
	b->lvt1 = apic_read(APIC_LVT1);
	b->lvterr = apic_read(APIC_LVTERR);
	for (int i = 0; i < 8; i++)
		any |= apic_read(APIC_IRR + 0x10 * i) | apic_read(APIC_ISR + 0x10 * i);
	b->irr_isr = any;
}

void __attribute__((weak)) smp_ap_main(int cpu)
{
}

/* called by the trampoline on the AP's own stack with IF=0 */
void __attribute__((noreturn, used)) smp_ap_entry(uint32_t cpuid_id, uint32_t cs_flags,
						   uint32_t edx, uint32_t cr0)
{
	int idx = smp_index_of_apic(cpuid_id);
	struct smp_cpu *c;

	if (idx <= 0)
		for (;;)
			asm volatile("cli; hlt");
	c = &smp_cpus[idx];
	wrmsr(MSR_GS_BASE, (uintptr_t)c);
	record_boot(c, cpuid_id, cs_flags, edx, cr0);
	atomic_inc(&c->starts);
	/* a fresh start forgets any call that was in flight */
	c->ack = c->req;
	apic_sw_enable();
	__atomic_store_n(&c->online, 1, __ATOMIC_SEQ_CST);
	smp_ap_main(idx);
	smp_idle();
}

void smp_idle(void)
{
	struct smp_cpu *c = this_cpu();

	for (;;) {
		/* take what is pending before looking at the mailbox */
		asm volatile("sti; nop; cli" ::: "memory");
		uint32_t req = __atomic_load_n(&c->req, __ATOMIC_ACQUIRE);
		if (req != c->ack) {
			c->fn(c->arg);
			__atomic_store_n(&c->ack, req, __ATOMIC_RELEASE);
			continue;
		}
		c->heartbeat++;
		if (c->idle_hlt)
			asm volatile("sti; hlt; cli" ::: "memory");
		else
			pause();
	}
}

bool smp_call_async(int cpu, void (*fn)(void *), void *arg)
{
	struct smp_cpu *c = &smp_cpus[cpu];

	if (cpu <= 0 || cpu >= smp_nr_cpus || c->dead || !c->online || c->req != c->ack)
		return false;
	c->fn = fn;
	c->arg = arg;
	__atomic_store_n(&c->req, c->req + 1, __ATOMIC_SEQ_CST);
	if (c->idle_hlt)
		smp_send_ipi(APIC_DM_FIXED | SMP_KICK_VECTOR, c->apic_id);
	return true;
}

bool smp_wait(int cpu)
{
	struct smp_cpu *c = &smp_cpus[cpu];

	if (cpu <= 0 || cpu >= smp_nr_cpus || c->dead)
		return false;
	if (!WAIT_UNTIL(__atomic_load_n(&c->ack, __ATOMIC_ACQUIRE) == c->req, SMP_TIMEOUT)) {
		c->dead = true;
		return false;
	}
	return true;
}

bool smp_call(int cpu, void (*fn)(void *), void *arg)
{
	if (cpu == 0 && smp_cpu_index() == 0) {
		fn(arg);
		return true;
	}
	return smp_call_async(cpu, fn, arg) && smp_wait(cpu);
}

bool smp_call_aps(void (*fn)(void *), void *arg)
{
	bool ok = true;
	for (int i = 1; i < smp_nr_cpus; i++)
		ok &= smp_call(i, fn, arg);
	return ok;
}
