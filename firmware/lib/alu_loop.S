/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * The benchmarks' ALU loop (kernels/bench.c, kernels/bench_smp.c): RCX iterations of 10
 * register-only instructions (8 ALU ops, dec, jnz).  One copy, so every bench measures the same
 * bytes; bench/bench_mips.py also runs them in bare Unicorn through the symbols below.
 */
	.text
	.globl bench_alu_loop
	.type bench_alu_loop, @function
bench_alu_loop:
1:	add %rax, %rbx
	xor %rbx, %rdx
	sub %rdx, %r8
	or %r8, %r9
	and %r9, %rax
	add $3, %rbx
	shl $1, %rdx
	inc %r8
	dec %rcx
	jnz 1b
	.globl bench_alu_loop_end
bench_alu_loop_end:
	ret
	.size bench_alu_loop, . - bench_alu_loop
