/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * CPL3 round trips: run_in_user() IRETQs to user mode; the user side ends
 * with "int $USER_RET_VECTOR" (DPL 3 gate) or with SYSCALL, and both paths
 * restore the kernel stack saved at entry.  Also the SYSCALL entry point.
 */
#include "desc.h"

	.text
	.code64

/* uint64_t run_in_user(fn, arg, rflags, via_syscall) */
	.global run_in_user
run_in_user:
	push %rbx
	push %rbp
	push %r12
	push %r13
	push %r14
	push %r15
	mov %rsp, kernel_rsp(%rip)
	movl $-1, user_fault_vector(%rip)
	movq $0, user_fault_error_code(%rip)
	movb $1, in_user_run(%rip)

	pushq $USER_DS			/* SS */
	lea user_stack_top(%rip), %rax
	pushq %rax			/* RSP */
	and $~0x200, %rdx		/* never IF: no interrupt sources here */
	or $2, %rdx
	pushq %rdx			/* RFLAGS */
	pushq $USER_CS			/* CS */
	lea user_trampoline(%rip), %rax
	pushq %rax			/* RIP */
	mov %rdi, %rax			/* fn */
	mov %rsi, %rdi			/* arg */
	mov %rax, %rsi			/* fn */
	mov %rcx, %rdx			/* via_syscall */
	iretq

/* CPL3: rdi = arg, rsi = fn, rdx = via_syscall */
user_trampoline:
	push %rdx
	push %rdx			/* keeps RSP 16-byte aligned at the call */
	call *%rsi
	pop %rdx
	pop %rdx
	mov %rax, %rdi
	test %rdx, %rdx
	jnz 1f
	int $USER_RET_VECTOR
1:	mov $SYSCALL_USER_RET, %eax
	syscall
	ud2				/* not reached */

/* IDT gate USER_RET_VECTOR (DPL 3): rdi = return value */
	.global user_ret_entry
user_ret_entry:
	mov %rdi, %rax
	jmp back_to_kernel

/* noreturn void user_return_to_kernel(uint64_t rax) */
	.global user_return_to_kernel
user_return_to_kernel:
	mov %rdi, %rax
back_to_kernel:
	mov $KERNEL_DS, %ecx
	mov %ecx, %ds
	mov %ecx, %es
	mov %ecx, %ss
	mov kernel_rsp(%rip), %rsp
	movb $0, in_user_run(%rip)
	pop %r15
	pop %r14
	pop %r13
	pop %r12
	pop %rbp
	pop %rbx
	ret

/* LSTAR: CPL0, RSP is still the user stack, RCX = RIP, R11 = RFLAGS */
	.global syscall_entry
syscall_entry:
	cmp $SYSCALL_USER_RET, %rax
	jne 1f
	cmpb $0, in_user_run(%rip)
	je 1f
	mov %rdi, %rax
	jmp back_to_kernel
1:	mov %rsp, syscall_user_rsp(%rip)
	lea syscall_stack_top(%rip), %rsp
	push %rcx
	push %r11
	push %rdi
	push %rsi
	push %rdx
	push %r8
	push %r9
	push %r10
	mov %rdi, %rsi			/* arg */
	mov %rax, %rdi			/* nr */
	call *syscall_handler(%rip)
	pop %r10
	pop %r9
	pop %r8
	pop %rdx
	pop %rsi
	pop %rdi
	pop %r11
	pop %rcx
	mov syscall_user_rsp(%rip), %rsp
	sysretq

	.data
	.balign 8
kernel_rsp:	.quad 0
syscall_user_rsp: .quad 0
	.global syscall_handler, user_fault_vector, user_fault_error_code
	.global in_user_run
syscall_handler: .quad 0
user_fault_error_code: .quad 0
user_fault_vector: .long -1
in_user_run:	.byte 0

	.bss
	.balign 16
	.skip 8192
syscall_stack_top:

	.section .note.GNU-stack, "", @progbits
