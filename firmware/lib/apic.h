/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Local APIC access (xAPIC MMIO or x2APIC MSRs) for the test kernels (64-bit). */
#ifndef FW_APIC_H
#define FW_APIC_H
#include <stdbool.h>
#include <stdint.h>

#define APIC_DEFAULT_BASE 0xfee00000ul

/* register offsets in the xAPIC page; x2APIC MSR = 0x800 + (offset >> 4) */
#define APIC_ID 0x20
#define APIC_LVR 0x30
#define APIC_TPR 0x80
#define APIC_APR 0x90
#define APIC_PPR 0xa0
#define APIC_EOI 0xb0
#define APIC_LDR 0xd0
#define APIC_DFR 0xe0
#define APIC_SPIV 0xf0
#define APIC_ISR 0x100
#define APIC_TMR 0x180
#define APIC_IRR 0x200
#define APIC_ESR 0x280
#define APIC_ICR 0x300
#define APIC_ICR2 0x310
#define APIC_LVTT 0x320
#define APIC_LVTTHMR 0x330
#define APIC_LVTPC 0x340
#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_LVTERR 0x370
#define APIC_TMICT 0x380
#define APIC_TMCCT 0x390
#define APIC_TDCR 0x3e0
#define APIC_SELF_IPI 0x3f0

#define APIC_MSR(reg) (0x800 + ((reg) >> 4))
#define MSR_IA32_TSC_DEADLINE 0x6e0

#define APIC_SPIV_ENABLE (1u << 8)
#define APIC_LVT_MASKED (1u << 16)
#define APIC_LVT_LEVEL (1u << 15)
#define APIC_DM_FIXED (0u << 8)
#define APIC_DM_NMI (4u << 8)
#define APIC_DEST_LOGICAL (1u << 11)
#define APIC_ICR_BUSY (1u << 12)
#define APIC_DEST_SELF (1u << 18)
#define APIC_DEST_ALL_INC (2u << 18)
#define APIC_DEST_ALL_BUT (3u << 18)
#define APIC_TIMER_ONESHOT (0u << 17)
#define APIC_TIMER_PERIODIC (1u << 17)
#define APIC_TIMER_TSC_DEADLINE (2u << 17)

#define APIC_SPURIOUS_VECTOR 0xff

/* x2APIC mode is chosen by IA32_APIC_BASE.EXTD; these follow the live mode */
bool apic_is_x2apic(void);
uint32_t apic_read(unsigned reg);
void apic_write(unsigned reg, uint32_t val);
/* raw xAPIC MMIO, whatever the mode */
uint32_t xapic_read(unsigned reg);
void xapic_write(unsigned reg, uint32_t val);
/* ICR: xAPIC writes ICR2 then ICR; x2APIC one 64-bit MSR write */
void apic_icr_write(uint32_t low, uint32_t dest);
void apic_eoi(void);
/* software-enable with spurious vector APIC_SPURIOUS_VECTOR, TPR 0, all LVTs masked */
void apic_sw_enable(void);
/* bit of a vector in the IRR/ISR/TMR bank at offset bank */
bool apic_vector_bit(unsigned bank, int vector);
/* EN=1 EXTD=0 (from x2APIC this goes through disabled, which resets the APIC) */
void apic_to_xapic(void);
/* EN=1 EXTD=1; false if the WRMSR faulted */
bool apic_to_x2apic(void);
bool cpu_has_x2apic(void);
bool cpu_has_tsc_deadline(void);
/* CPUID vendor "AuthenticAMD" (or "HygonGenuine") */
bool cpu_is_amd(void);

/* the I/O APIC at its default address: indirect registers through IOREGSEL/IOWIN */
#define IOAPIC_BASE 0xfec00000ul
#define IOAPIC_REDIR(pin) (0x10 + 2 * (pin))
void ioapic_write(unsigned reg, uint32_t value);
uint32_t ioapic_read(unsigned reg);
#endif
