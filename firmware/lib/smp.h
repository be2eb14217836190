/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * SMP for the test kernels (64-bit): the MADT's CPUs, AP start-up with INIT + SIPI through a
 * real-mode trampoline (smp_trampoline.S, copied below 1 MiB), per-CPU data reached through
 * GS_BASE, and a mailbox per AP to run a function on it.
 *
 * CPU indexes: 0 is the BSP, 1.. the other enabled local APICs in MADT order.  Each AP, once
 * started, records what it saw on its first instructions (struct smp_boot_record), enables its
 * LAPIC (SPIV) itself, calls the kernel's optional smp_ap_main() and then idles in smp_idle():
 * with interrupts enabled, either in HLT (woken by an SMP_KICK_VECTOR IPI, the default) or
 * polling its mailbox (smp_init(false)).  Only the BSP should print: APs leave their results in
 * memory.  Every wait is bounded by a TSC timeout (the TSC is the machine's one clock, advanced
 * by every vCPU), so a broken VMM gives FAIL lines, not a hang.
 */
#ifndef FW_SMP_H
#define FW_SMP_H

#define SMP_MAX_CPUS 16
/* the trampoline's default home: vector 8, CS 0x800 */
#define SMP_TRAMPOLINE_ADDR 0x8000
#define SMP_TRAMPOLINE_VECTOR (SMP_TRAMPOLINE_ADDR >> 12)
/* the trampoline's per-AP scratch stacks: 16 bytes per initial APIC ID from here (to 0x5000) */
#define SMP_SCRATCH_ADDR 0x4000
#define SMP_KICK_VECTOR 0xf8

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>
#include "acpi.h"
#include "processor.h"

/* TSC ticks (the virtual clock runs at 1 GHz) */
#define SMP_TIMEOUT 200000000ull   /* 0.2 s: any wait for another CPU */
#define SMP_INIT_DELAY 10000000ull /* 10 ms after INIT (MP specification) */
#define SMP_SIPI_DELAY 200000ull   /* 200 us between the two SIPIs */

/* ICR fields not in apic.h */
#define APIC_DM_LOWEST (1u << 8)
#define APIC_DM_SMI (2u << 8)
#define APIC_DM_INIT (5u << 8)
#define APIC_DM_STARTUP (6u << 8)
#define APIC_INT_ASSERT (1u << 14)
#define APIC_INT_LEVELTRIG (1u << 15)
#define APIC_DFR_FLAT 0xffffffffu
#define APIC_DFR_CLUSTER 0x0fffffffu

/* what an AP saw at its latest start, before it changed anything */
struct smp_boot_record {
	uint16_t cs;            /* real-mode CS at the first instruction: SIPI vector << 8 */
	uint16_t flags;         /* EFLAGS[15:0] at the first instruction */
	uint32_t edx;           /* EDX at the first instruction (the CPU signature after INIT) */
	uint32_t cr0;           /* CR0 at the first instruction */
	uint32_t cpuid_apic_id; /* CPUID.1:EBX[31:24], read by the trampoline */
	uint32_t x2apic_id;     /* CPUID.0xB:EDX, ~0 without leaf 0xB */
	uint32_t lapic_id;      /* LAPIC ID register (xAPIC: bits 31:24) */
	uint64_t apic_base;     /* IA32_APIC_BASE */
	uint32_t spiv, tpr, ldr, dfr, lvtt, lvtpc, lvt0, lvt1, lvterr;
	uint32_t irr_isr;       /* OR of every IRR and ISR word */
	uint64_t tsc;           /* RDTSC at the C entry */
};

struct smp_cpu {
	struct smp_cpu *self; /* %gs:0 */
	int index;
	uint32_t apic_id; /* from the MADT */
	volatile int starts; /* times this AP's C entry ran */
	volatile int online; /* set by the AP once its LAPIC is enabled */
	struct smp_boot_record boot;
	/* mailbox: the BSP (or any CPU) stores fn/arg, then bumps req; the AP acks */
	void (*volatile fn)(void *);
	void *volatile arg;
	volatile uint32_t req, ack;
	volatile bool idle_hlt; /* idle in HLT (needs a kick IPI) or poll */
	volatile bool dead;     /* a call to it timed out: do not wait for it again */
	volatile uint64_t heartbeat; /* idle loop iterations */
	uint8_t *stack_top;
};

extern struct smp_cpu smp_cpus[SMP_MAX_CPUS];
extern int smp_nr_cpus;           /* CPUs we use: the MADT's enabled ones, at most SMP_MAX_CPUS */
extern struct madt_info smp_madt; /* filled by smp_init() */
extern int smp_madt_status;       /* acpi_parse_madt()'s result */

/*
 * Parse the MADT, set up the BSP's per-CPU data (GS_BASE), the AP stacks and the trampoline at
 * SMP_TRAMPOLINE_ADDR, register the kick handler and enable the BSP's LAPIC.  idle_hlt: APs idle
 * in HLT (true) or poll (false).  Returns smp_nr_cpus (1 without a usable MADT).
 */
int smp_init(bool idle_hlt);
/* index of the calling CPU (0 before smp_init) */
int smp_cpu_index(void);
static inline struct smp_cpu *this_cpu(void)
{
	struct smp_cpu *c;
	asm volatile("mov %%gs:0, %0" : "=r"(c));
	return c;
}
/* the LAPIC ID of the calling CPU: xAPIC ID[31:24] or the x2APIC ID */
uint32_t smp_lapic_id(void);
/* CPU index for an APIC ID, -1 if none */
int smp_index_of_apic(uint32_t apic_id);

/* copy the trampoline to addr (page aligned, below 1 MiB) with this CPU's CR3/EFER/GDT/IDT */
void smp_install_trampoline(uintptr_t addr);

/* ICR write (xAPIC ICR2+ICR or x2APIC MSR 0x830) to a physical or logical destination */
void smp_send_ipi(uint32_t icr_low, uint32_t dest);
void smp_send_init(uint32_t apic_id);          /* INIT, level assert */
void smp_send_init_deassert(uint32_t apic_id); /* INIT level de-assert (a no-op on xAPICs) */
void smp_send_sipi(uint32_t apic_id, unsigned vector);
/*
 * The MP specification's start sequence for CPU `cpu`: INIT assert + de-assert, 10 ms, SIPI,
 * 200 us, SIPI; then wait for the AP to come online.  Clears `online` first.
 */
bool smp_start_ap(int cpu, unsigned vector);
/* smp_start_ap() for every AP in turn; returns how many came online */
int smp_start_aps(void);

/* run fn(arg) on `cpu` (an AP, or 0 for the caller itself when it is the BSP) */
bool smp_call_async(int cpu, void (*fn)(void *), void *arg);
/* wait for the last call to `cpu` to finish; false (and the CPU marked dead) after SMP_TIMEOUT */
bool smp_wait(int cpu);
bool smp_call(int cpu, void (*fn)(void *), void *arg);
/* smp_call() on every online AP in turn; false if any failed */
bool smp_call_aps(void (*fn)(void *), void *arg);

/* the AP's idle loop (exported for kernels that want an AP back in it) */
void __attribute__((noreturn)) smp_idle(void);
/* optional kernel hook, run on each AP after its start records, before smp_idle() */
void smp_ap_main(int cpu);

void tsc_delay(uint64_t ticks);
/* poll cond (with PAUSE) until true or `ticks` of TSC passed; evaluates to the final cond */
#define WAIT_UNTIL(cond, ticks)                                              \
	({                                                                   \
		uint64_t __end = rdtsc() + (ticks);                          \
		while (!(cond) && rdtsc() < __end)                           \
			pause();                                             \
		(bool)(cond);                                                \
	})

typedef struct {
	volatile int v;
} spinlock_t;
static inline void spin_lock(spinlock_t *l)
{
	while (__atomic_exchange_n(&l->v, 1, __ATOMIC_ACQUIRE))
		while (l->v)
			pause();
}
static inline void spin_unlock(spinlock_t *l)
{
	__atomic_store_n(&l->v, 0, __ATOMIC_RELEASE);
}
static inline int atomic_inc(volatile int *p)
{
	return __atomic_add_fetch(p, 1, __ATOMIC_SEQ_CST);
}
#endif /* __ASSEMBLER__ */
#endif
