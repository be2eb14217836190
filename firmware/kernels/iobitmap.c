/* SPDX-License-Identifier: GPL-2.0-or-later */
/* TSS I/O permission bitmap checks for CPL3 port access. */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "vmware.h"

#define SCRATCH (SERIAL_BASE + 7)

/* each user function returns the caught vector (or -1) in the low byte */
static uint64_t user_outb80(uint64_t val)
{
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "outb %%al, $0x80" ASM_TRY_END
		     : : "a"((uint8_t)val) : "memory");
	return (uint8_t)exception_vector();
}

static uint64_t user_inb(uint64_t port)
{
	uint8_t v = 0;
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "inb %%dx, %%al" ASM_TRY_END
		     : "+a"(v) : "d"((uint16_t)port) : "memory");
	return (uint8_t)exception_vector() | ((uint64_t)v << 8);
}

static uint64_t user_outb(uint64_t port_val)
{
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "outb %%al, %%dx" ASM_TRY_END
		     : : "a"((uint8_t)(port_val >> 16)), "d"((uint16_t)port_val)
		     : "memory");
	return (uint8_t)exception_vector();
}

static uint64_t user_inl(uint64_t port)
{
	uint32_t v = 0;
	exception_reset();
	asm volatile(ASM_TRY_BEGIN "inl %%dx, %%eax" ASM_TRY_END
		     : "+a"(v) : "d"((uint16_t)port) : "memory");
	return (uint8_t)exception_vector();
}

static struct vmware_regs vmw;

static uint64_t user_vmware(uint64_t arg)
{
	exception_reset();
	vmw = vmware_call(VMWARE_CMD_GETVERSION, 0, VMWARE_MAGIC);
	return (uint8_t)exception_vector();
}

#define NOFAULT 0xff
#define GP ((uint8_t)GP_VECTOR)

int main(struct multiboot_info *mbi)
{
	uint64_t r;

	printf("I/O bitmap test\n");
	report(tss.iomap_base == offsetof(struct tss64, iomap),
	       "TSS I/O map base 0x%x", tss.iomap_base);

	io_bitmap_allow(0x80, 1, true);
	r = run_in_user(user_outb80, 0x42, 0, false);
	report(r == NOFAULT, "CPL3 OUT to allowed port 0x80");
	r = run_in_user(user_inb, 0x80, 0, false);
	report((r & 0xff) == NOFAULT, "CPL3 IN from allowed port 0x80");

	r = run_in_user(user_inb, 0x81, 0, false);
	report((r & 0xff) == GP, "CPL3 IN from denied port 0x81 -> #GP");
	r = run_in_user(user_outb, 0x81 | (1 << 16), 0, false);
	report((r & 0xff) == GP, "CPL3 OUT to denied port 0x81 -> #GP");

	/* a 4-byte access needs all four bits clear */
	r = run_in_user(user_inl, 0x80, 0, false);
	report(r == GP, "CPL3 INL at 0x80 with 0x81-0x83 denied -> #GP");
	io_bitmap_allow(0x80, 4, true);
	r = run_in_user(user_inl, 0x80, 0, false);
	report(r == NOFAULT, "CPL3 INL at 0x80 with 0x80-0x83 allowed");
	io_bitmap_allow(0x81, 3, false);

	/* a real device behind an allowed port: UART scratch register */
	io_bitmap_allow(SCRATCH, 1, true);
	r = run_in_user(user_outb, SCRATCH | (0xa5 << 16), 0, false);
	uint64_t rd = run_in_user(user_inb, SCRATCH, 0, false);
	report(r == NOFAULT && (rd & 0xff) == NOFAULT && (rd >> 8) == 0xa5,
	       "CPL3 scratch register round trip (0x%lx)", rd >> 8);
	io_bitmap_allow(SCRATCH, 1, false);
	r = run_in_user(user_outb, SCRATCH | (0x5a << 16), 0, false);
	report(r == GP && inb(SCRATCH) == 0xa5,
	       "denied again: #GP and the write did not happen");

	/* IOPL 3 bypasses the bitmap */
	r = run_in_user(user_inb, 0x81, X86_EFLAGS_IOPL, false);
	report((r & 0xff) == NOFAULT, "IOPL 3: denied port accessible");

	/* CPL0 ignores the bitmap */
	outb(0x3c, SCRATCH);
	report(inb(SCRATCH) == 0x3c, "CPL0 ignores the bitmap");

	/* VMware backdoor: exempt from the bitmap */
	io_bitmap_allow(VMWARE_PORT, 4, false);
	r = run_in_user(user_vmware, 0, 0, false);
	report(r == NOFAULT && user_fault_vector == -1 &&
		       vmw.ebx == VMWARE_MAGIC,
	       "CPL3 VMware backdoor 0x5658 works although denied (fault "
	       "vector %d, ebx 0x%x)", user_fault_vector, vmw.ebx);
	return report_summary();
}
