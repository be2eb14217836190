/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Assembler macros shared by the entry stubs. */
#ifndef FW_BOOT_COMMON_H
#define FW_BOOT_COMMON_H
#include "multiboot.h"

#define BOOT_STACK_SIZE (16 * 1024)

/* Multiboot v1 header; the linker script keeps .multiboot first. */
.macro MULTIBOOT_HEADER
	.pushsection .multiboot, "a"
	.balign 4
	.long MULTIBOOT_HEADER_MAGIC
	.long MULTIBOOT_HEADER_FLAGS
	.long -(MULTIBOOT_HEADER_MAGIC + MULTIBOOT_HEADER_FLAGS)
	.popsection
.endm

.macro BOOT_STACK
	.pushsection .bss
	.balign 16
	.global boot_stack, boot_stack_top
boot_stack:
	.skip BOOT_STACK_SIZE
boot_stack_top:
	.popsection
.endm

#endif
