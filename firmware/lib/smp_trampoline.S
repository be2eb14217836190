/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * AP start-up trampoline.  smp_install_trampoline() copies smp_trampoline_start ..
 * smp_trampoline_end to a page below 1 MiB and fills the parameters at its end (CR3, EFER,
 * GDTR and IDTR of the BSP, the address of the copy's temporary GDT); a SIPI with that page's
 * number as vector starts an AP here in real mode at CS = vector << 8, IP = 0, in the post-INIT
 * state.  The code takes its base from CS and writes nothing into its page (several APs may run
 * one copy at once), so one image serves every vector.
 *
 * real mode:  keep EDX (CPU signature), CR0 and EFLAGS as found, and CS; CPUID.1 gives the
 *             initial APIC ID, which picks a 16-byte scratch stack at SMP_SCRATCH_ADDR + 16 * id
 *             (several APs may run this at once); load a temporary GDT, CR0.PE, far return
 * 32-bit:     CR4.PAE, the BSP's CR3 and EFER (LME), CR0.PG, far return to the 64-bit selector
 * 64-bit:     the kernel's GDT and IDT, CS/DS/ES/SS reloaded, RSP = smp_ap_stack_top[id], then
 *             smp_ap_entry(id, EFLAGS << 16 | CS, EDX, CR0), which does not return.
 *
 * Nothing here changes EFLAGS before PUSHFL reads it (MOV, CPUID, BSWAP, MOVZX and LEA leave
 * the flags alone).
 */
#include "desc.h"
#include "smp.h"

#define MSR_EFER 0xc0000080
#define OFF(label) ((label) - smp_trampoline_start)
#define TMP_CS32 0x08
#define TMP_DS 0x10
#define TMP_CS64 0x18

	.section .rodata.smp_trampoline, "a"
	.balign 16
	.global smp_trampoline_start, smp_trampoline_end
	.global smp_tr_cr3, smp_tr_efer, smp_tr_gdtr64, smp_tr_idtr64
	.global smp_tr_gdt32, smp_tr_gdtr32
	.code16
smp_trampoline_start:
	mov %edx, %edi			/* EDX as INIT left it */
	mov %cr0, %ebp			/* CR0 as INIT left it */
	mov %cs, %si			/* SIPI vector << 8 */
	mov $1, %eax
	cpuid				/* EBX[31:24]: initial APIC ID */
	bswap %ebx
	movzbl %bl, %ebx
	mov $0, %ax
	mov %ax, %ss
	leal SMP_SCRATCH_ADDR + 16(,%ebx,8), %esp
	leal (%esp,%ebx,8), %esp	/* SS:SP = 0:SMP_SCRATCH_ADDR + 16 * (id + 1) */
	pushfl
	popl %eax			/* EFLAGS as INIT left it */
	cli
	cld
	shl $16, %eax
	movzwl %si, %esi
	or %eax, %esi			/* ESI = EFLAGS[15:0] << 16 | CS */

	mov %cs, %ax
	mov %ax, %ds
	movzwl %si, %edx
	shl $4, %edx			/* EDX = linear address of this copy */
	lgdtl OFF(smp_tr_gdtr32)	/* its base was set for this copy */
	mov %cr0, %eax
	and $~0x60000000, %eax		/* caches on: CD = NW = 0 */
	or $1, %eax			/* PE */
	mov %eax, %cr0
	pushl $TMP_CS32
	leal OFF(pm32)(%edx), %eax
	pushl %eax
	lretl

	.code32
pm32:
	mov $TMP_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %eax, %fs
	mov %eax, %gs
	movzwl %sp, %esp
	movzwl %si, %edx
	shl $4, %edx
	mov %cr4, %eax
	or $0x20, %eax			/* PAE */
	mov %eax, %cr4
	mov OFF(smp_tr_cr3)(%edx), %eax
	mov %eax, %cr3
	push %edx
	mov OFF(smp_tr_efer)(%edx), %eax
	xor %edx, %edx
	mov $MSR_EFER, %ecx
	wrmsr				/* LME (and the BSP's SCE/NXE) */
	pop %edx
	mov %cr0, %eax
	or $0x80000000, %eax		/* PG: long mode, compatibility code */
	mov %eax, %cr0
	push $TMP_CS64
	leal OFF(lm64)(%edx), %eax
	push %eax
	lret

	.code64
lm64:
	mov %edx, %edx
	lgdt OFF(smp_tr_gdtr64)(%rdx)
	lidt OFF(smp_tr_idtr64)(%rdx)
	pushq $KERNEL_CS
	leaq 1f(%rip), %rax
	pushq %rax
	lretq
1:	mov $KERNEL_DS, %eax
	mov %eax, %ds
	mov %eax, %es
	mov %eax, %ss
	mov %ebx, %ecx
	movabs $smp_ap_stack_top, %rax
	mov (%rax,%rcx,8), %rsp
	test %rsp, %rsp
	jz 2f				/* an APIC ID nobody expected: stop here */
	mov %edi, %edx			/* EDX at INIT */
	mov %ebx, %edi			/* APIC ID */
	mov %esi, %esi			/* EFLAGS << 16 | CS */
	mov %ebp, %ecx			/* CR0 at INIT */
	movabs $smp_ap_entry, %rax
	call *%rax
2:	cli
	hlt
	jmp 2b

	.balign 8
smp_tr_gdt32:
	.quad 0
	.quad 0x00cf9a000000ffff	/* TMP_CS32: 32-bit code, flat */
	.quad 0x00cf92000000ffff	/* TMP_DS: data, flat */
	.quad 0x00af9a000000ffff	/* TMP_CS64: 64-bit code */
smp_tr_gdtr32:
	.word 4 * 8 - 1
	.long 0				/* linear address of smp_tr_gdt32 in this copy */
	.balign 8
smp_tr_cr3:
	.long 0
smp_tr_efer:
	.long 0
	.balign 8
smp_tr_gdtr64:
	.word 0
	.quad 0
	.balign 8
smp_tr_idtr64:
	.word 0
	.quad 0
smp_trampoline_end:

	.section .note.GNU-stack, "", @progbits
