/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Entry for plain ELF64 kernels (no multiboot header): the VMM enters in
 * long mode with paging on (docs/design.md), RDI = MBI, RSI = 0x2BADB002.
 */
#include "boot_common.h"

	BOOT_STACK

	.section .text.entry, "ax"
	.code64
	.global _start
_start:
	cli
	lea boot_stack_top(%rip), %rsp
	mov %esi, boot_magic(%rip)
	call lib_start		/* RDI = MBI */
1:	cli
	hlt
	jmp 1b

	.section .note.GNU-stack, "", @progbits
