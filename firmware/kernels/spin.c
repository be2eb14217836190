/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Never ends on its own: prints one line, then spins in `jmp .` with interrupts off, touching
 * no device.  Only the VMM can stop it (a signal, --timeout, --max-insns), so it is the kernel
 * for testing how the VMM ends a run it has to interrupt.
 *
 * Command line: wake=1 first halts until a LAPIC timer interrupt and acknowledges it through
 * the xAPIC page, then spins in a two-instruction loop (which the VMM does not retire in bulk):
 * after the wake-up nothing reaches the VMM's Python side.
 */
#include "apic.h"
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"

#define TIMER_VECTOR 0x40

static volatile int ticks;

static void timer_handler(struct ex_regs *regs)
{
	ticks++;
	xapic_write(APIC_EOI, 0);
}

int main(struct multiboot_info *mbi)
{
	if (cmdline_u64(mbi_cmdline(mbi), "wake", 0)) {
		apic_sw_enable();
		handle_exception(TIMER_VECTOR, timer_handler);
		xapic_write(APIC_TDCR, 0xb); /* divide by 1 */
		xapic_write(APIC_LVTT, TIMER_VECTOR);
		xapic_write(APIC_TMICT, 5000000); /* 5 ms of virtual time */
		while (!ticks)
			asm volatile("sti; hlt; cli" ::: "memory");
	}
	printf("spinning with interrupts off\n");
	if (ticks)
		asm volatile("cli; 1: pause; jmp 1b");
	asm volatile("cli; 1: jmp 1b");
	return 1;
}
