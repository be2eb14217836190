/* SPDX-License-Identifier: GPL-2.0-or-later */
/* VMware backdoor port from CPL0 and CPL3. */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "processor.h"
#include "vmware.h"

static struct vmware_regs user_result;

static uint64_t user_getversion(uint64_t arg)
{
	user_result = vmware_call(VMWARE_CMD_GETVERSION, 0, VMWARE_MAGIC);
	return read_cs() & 3;
}

int main(struct multiboot_info *mbi)
{
	struct vmware_regs r;

	printf("vmware backdoor test\n");

	r = vmware_call(VMWARE_CMD_GETVERSION, 0, VMWARE_MAGIC);
	report_info("GETVERSION: eax 0x%x ebx 0x%x ecx 0x%x edx 0x%x", r.eax,
		    r.ebx, r.ecx, r.edx);
	report(r.ebx == VMWARE_MAGIC, "CPL0 GETVERSION: EBX = magic");
	report(r.eax != 0xffffffff && r.eax != VMWARE_MAGIC,
	       "CPL0 GETVERSION: EAX holds a version (0x%x)", r.eax);

	r = vmware_call(0x7f, 0x12345678, VMWARE_MAGIC);
	report(r.ebx == 0x12345678, "unknown command leaves EBX untouched "
				    "(0x%x)", r.ebx);

	r = vmware_call(VMWARE_CMD_GETVERSION, 0x12345678, 0xdeadbeef);
	report(r.ebx == 0x12345678, "wrong magic leaves EBX untouched (0x%x)",
	       r.ebx);

	/* CPL3 with the port allowed in the TSS I/O bitmap */
	io_bitmap_allow(VMWARE_PORT, 4, true);
	memset(&user_result, 0, sizeof(user_result));
	uint64_t cpl = run_in_user(user_getversion, 0, 0, false);
	report(cpl == 3 && user_fault_vector == -1 &&
		       user_result.ebx == VMWARE_MAGIC,
	       "CPL3 GETVERSION (port allowed in the bitmap)");

	/* CPL3 with the port denied: still allowed (as KVM does) */
	io_bitmap_allow(VMWARE_PORT, 4, false);
	memset(&user_result, 0, sizeof(user_result));
	cpl = run_in_user(user_getversion, 0, 0, false);
	report(cpl == 3 && user_fault_vector == -1 &&
		       user_result.ebx == VMWARE_MAGIC,
	       "CPL3 GETVERSION (port denied in the bitmap), fault vector %d",
	       user_fault_vector);
	return report_summary();
}
