/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Multiboot entry for 32-bit kernels: stays in 32-bit protected mode. */
#include "boot_common.h"

	MULTIBOOT_HEADER
	BOOT_STACK

	.section .text.entry, "ax"
	.code32
	.global _start
_start:
	cli
	mov $boot_stack_top, %esp
	mov %eax, boot_magic
	push %ebx		/* lib_start(mbi) */
	call lib_start
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
