/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VMware backdoor I/O port (0x5658). */
#ifndef FW_VMWARE_H
#define FW_VMWARE_H
#include <stdint.h>

#define VMWARE_MAGIC 0x564D5868
#define VMWARE_PORT 0x5658
#define VMWARE_CMD_GETVERSION 0x0a

struct vmware_regs {
	uint32_t eax, ebx, ecx, edx;
};

/* "inl (%dx)" with EAX = magic (unless overridden), ECX = command */
static inline struct vmware_regs vmware_call(uint32_t cmd, uint32_t ebx,
					     uint32_t magic)
{
	struct vmware_regs r = { magic, ebx, cmd, VMWARE_PORT };
	asm volatile("inl (%%dx), %%eax"
		     : "+a"(r.eax), "+b"(r.ebx), "+c"(r.ecx), "+d"(r.edx)
		     :
		     : "memory");
	return r;
}
#endif
