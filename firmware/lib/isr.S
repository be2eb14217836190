/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * 256 interrupt stubs, 16 bytes apart starting at isr_stubs.  Each pushes a
 * dummy error code when the CPU does not, then the vector, and jumps to
 * isr_common, which saves all GPRs (struct ex_regs) and calls
 * do_handle_exception(regs).  Handlers may change the frame (e.g. RIP).
 */
	.text
	.code64
	.balign 16
	.global isr_stubs
isr_stubs:
	.set vec, 0
	.rept 256
	.balign 16
	.if !(vec == 8 || (vec >= 10 && vec <= 14) || vec == 17 || vec == 21 || vec == 29 || vec == 30)
	pushq $0
	.endif
	pushq $vec
	jmp isr_common
	.set vec, vec + 1
	.endr
	/* each stub is at most 2 + 5 + 5 = 12 bytes, so .balign 16 keeps
	 * stub N at isr_stubs + 16 * N */

isr_common:
	push %rax
	push %rbx
	push %rcx
	push %rdx
	push %rsi
	push %rdi
	push %rbp
	push %r8
	push %r9
	push %r10
	push %r11
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, %rdi
	cld
	call do_handle_exception
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %r11
	pop %r10
	pop %r9
	pop %r8
	pop %rbp
	pop %rdi
	pop %rsi
	pop %rdx
	pop %rcx
	pop %rbx
	pop %rax
	add $16, %rsp		/* vector, error code */
	iretq

	.section .note.GNU-stack, "", @progbits
