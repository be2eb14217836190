/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Multiboot entry for 64-bit kernels.  Entered in 32-bit protected mode
 * (EAX = 0x2BADB002, EBX = MBI, paging off); switches to long mode itself:
 * identity map of the first 4 GiB with 2 MiB pages, CR4.PAE, EFER.LME,
 * CR0.PG, own GDT, far jump to 64-bit code, then lib_start(mbi).
 * GS_BASE is written with WRMSR while still in 32-bit mode (see desc.h).
 */
#include "boot_common.h"
#include "desc.h"

#define MSR_EFER 0xc0000080
#define MSR_GS_BASE 0xc0000101
#define PDE_FLAGS 0x87	/* present, writable, user, 2 MiB page */
#define TABLE_FLAGS 0x07	/* present, writable, user */

	MULTIBOOT_HEADER
	BOOT_STACK

	.pushsection .bss
	.balign 4096
	.global boot_page_tables
boot_page_tables:		/* PML4, PDPT, 4 page directories */
	.skip 6 * 4096
	.popsection

	.section .text.entry, "ax"
	.code32
	.global _start
_start:
	cli
	mov %eax, boot_magic
	mov $boot_stack_top, %esp
	cld

	/* clear the page tables (EBX = MBI is preserved throughout) */
	mov $boot_page_tables, %edi
	xor %eax, %eax
	mov $(6 * 4096 / 4), %ecx
	rep stosl

	/* PML4[0] -> PDPT */
	movl $(boot_page_tables + 0x1000 + TABLE_FLAGS), boot_page_tables

	/* PDPT[0..3] -> PD0..PD3 */
	mov $(boot_page_tables + 0x1000), %edi
	mov $(boot_page_tables + 0x2000 + TABLE_FLAGS), %eax
	mov $4, %ecx
1:	mov %eax, (%edi)
	add $0x1000, %eax
	add $8, %edi
	loop 1b

	/* 2048 PDEs of 2 MiB: 0 .. 4 GiB */
	mov $(boot_page_tables + 0x2000), %edi
	mov $PDE_FLAGS, %eax
	mov $2048, %ecx
2:	mov %eax, (%edi)
	add $0x200000, %eax
	add $8, %edi
	loop 2b

	mov %cr4, %eax
	or $0x20, %eax			/* CR4.PAE */
	mov %eax, %cr4
	mov $boot_page_tables, %eax
	mov %eax, %cr3

	mov $MSR_EFER, %ecx
	rdmsr
	or $0x100, %eax			/* EFER.LME */
	wrmsr

	/* our GDT; the 6-byte 32-bit form is a prefix of gdt_descr */
	lgdt gdt_descr
	mov $KERNEL_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs

	/* GS_BASE from 32-bit mode; 64-bit code must not reload %gs */
	mov $MSR_GS_BASE, %ecx
	mov $BOOT_GS_BASE_LO, %eax
	mov $BOOT_GS_BASE_HI, %edx
	wrmsr

	mov %cr0, %eax
	or $0x80000001, %eax		/* CR0.PG | CR0.PE */
	mov %eax, %cr0
	ljmp $KERNEL_CS, $start64

	.code64
start64:
	mov $KERNEL_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	lea boot_stack_top(%rip), %rsp
	mov %ebx, %edi			/* lib_start(mbi) */
	call lib_start
3:	cli
	hlt
	jmp 3b

	.section .note.GNU-stack, "", @progbits
