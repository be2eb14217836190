/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "apic.h"
#include "libfw.h"
#include "processor.h"

uint32_t xapic_read(unsigned reg)
{
	return *(volatile uint32_t *)(APIC_DEFAULT_BASE + reg);
}

void xapic_write(unsigned reg, uint32_t val)
{
	*(volatile uint32_t *)(APIC_DEFAULT_BASE + reg) = val;
}

bool apic_is_x2apic(void)
{
	return (rdmsr(MSR_IA32_APICBASE) & (APIC_BASE_EN | APIC_BASE_EXTD)) ==
	       (APIC_BASE_EN | APIC_BASE_EXTD);
}

uint32_t apic_read(unsigned reg)
{
	if (apic_is_x2apic())
		return (uint32_t)rdmsr(APIC_MSR(reg));
	return xapic_read(reg);
}

void apic_write(unsigned reg, uint32_t val)
{
	if (apic_is_x2apic())
		wrmsr(APIC_MSR(reg), val);
	else
		xapic_write(reg, val);
}

void apic_icr_write(uint32_t low, uint32_t dest)
{
	if (apic_is_x2apic()) {
		wrmsr(APIC_MSR(APIC_ICR), ((uint64_t)dest << 32) | low);
	} else {
		xapic_write(APIC_ICR2, dest << 24);
		xapic_write(APIC_ICR, low);
	}
}

void apic_eoi(void)
{
	apic_write(APIC_EOI, 0);
}

void apic_sw_enable(void)
{
	apic_write(APIC_SPIV, APIC_SPIV_ENABLE | APIC_SPURIOUS_VECTOR);
	apic_write(APIC_TPR, 0);
	for (unsigned r = APIC_LVTT; r <= APIC_LVTERR; r += 0x10)
		apic_write(r, APIC_LVT_MASKED);
}

bool apic_vector_bit(unsigned bank, int vector)
{
	return (apic_read(bank + 0x10 * (vector / 32)) >> (vector % 32)) & 1;
}

void apic_to_xapic(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);

	if (base & APIC_BASE_EXTD)
		wrmsr(MSR_IA32_APICBASE,
		      base & ~(APIC_BASE_EN | APIC_BASE_EXTD));
	base &= ~(APIC_BASE_EN | APIC_BASE_EXTD);
	wrmsr(MSR_IA32_APICBASE, base | APIC_BASE_EN);
}

bool apic_to_x2apic(void)
{
	uint64_t base = rdmsr(MSR_IA32_APICBASE);
	return !wrmsr_safe(MSR_IA32_APICBASE,
			   base | APIC_BASE_EN | APIC_BASE_EXTD);
}

bool cpu_has_x2apic(void)
{
	return (cpuid(1).c >> 21) & 1;
}

bool cpu_has_tsc_deadline(void)
{
	return (cpuid(1).c >> 24) & 1;
}

bool cpu_is_amd(void)
{
	struct cpuid c = cpuid(0);
	return (c.b == 0x68747541 && c.d == 0x69746e65 && c.c == 0x444d4163) ||
	       (c.b == 0x6f677948 && c.d == 0x6e65476e && c.c == 0x656e6975);
}

void ioapic_write(unsigned reg, uint32_t value)
{
	*(volatile uint32_t *)IOAPIC_BASE = reg;
	*(volatile uint32_t *)(IOAPIC_BASE + 0x10) = value;
}

uint32_t ioapic_read(unsigned reg)
{
	*(volatile uint32_t *)IOAPIC_BASE = reg;
	return *(volatile uint32_t *)(IOAPIC_BASE + 0x10);
}
