/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * workload N: a loop with exactly known instruction and branch counts, for counting with perf.
 *
 * No libc (gcc -static -nostdlib): everything the process runs in user mode is below, so the
 * counts hold for the whole process as well as between its two marker lines.  It prints
 * "workload: start", runs the loop N times, prints "workload: done" and exits 0.  A missing,
 * empty or non-decimal argument, or one of 2**63 and more, prints a usage line on stderr and
 * exits 2.
 *
 * The loop (5 instructions, 2 branches per iteration):
 *
 *	1: add %rcx, %r8 ; jmp 2f ; 2: xor %r8, %r9 ; dec %rcx ; jnz 1b
 *
 * Exact counts for N given as D decimal digits.  SYSCALL is counted apart because whether a
 * user-mode count includes it (and as a far branch) is the PMU's convention, not the program's:
 *
 *	                                      instructions   branches      conditional  SYSCALLs
 *	between the markers: after the first  5N + 7         2N + 1        N + 1        1
 *	marker's SYSCALL, up to and including
 *	the second marker's SYSCALL
 *	whole process: from _start to the     5N + 12D + 24  2N + 5D + 4   N + 4D + 4   3
 *	exit SYSCALL included
 *
 * "branches" are the jumps and conditional branches retired, taken or not.  Per argument digit
 * the parser runs 12 instructions and 5 branches (see .Ldigit); firmware/linux/programs.py
 * holds the same formulas and tests/test_linux_boot.py checks them by emulating this program.
 * "conditional" are the Jcc among them: per digit 4 (jz, ja, jo, js; the jmp is not), plus the
 * argc check, the terminating NUL's jz, the no-digit check, spin's zero check, and the loop's jnz
 * once per iteration.
 *
 * Symbols (kept in the executable for perf report): _start parses the argument and prints the
 * first marker, spin is the loop, finish prints the second marker and exits, usage the error
 * path.  They are labels in one straight-line program, not called functions: the symbol table
 * gives each its size, so a profiler attributes every address to exactly one of them.
 */

#define SYS_write 1
#define SYS_exit 60
#define STDOUT 1
#define STDERR 2

	/* Name the file symbol: without it the assembler names it after gcc's random temporary file. */
	.file	"workload.S"
	.text
	.globl	_start
	.type	_start, @function
_start:
	mov	(%rsp), %rax		/* argc */
	cmp	$2, %rax
	jne	usage
	mov	16(%rsp), %rsi		/* argv[1] */
	mov	%rsi, %rdi		/* where the digits start */
	xor	%ebx, %ebx		/* N */
.Ldigit:				/* 12 instructions and 5 branches per digit */
	movzbl	(%rsi), %eax
	test	%eax, %eax
	jz	.Lparsed
	sub	$'0', %eax
	cmp	$9, %eax
	ja	usage
	imul	$10, %rbx, %rbx
	jo	usage		/* 10 x N >= 2**63 */
	add	%rax, %rbx
	js	usage		/* N >= 2**63 */
	inc	%rsi
	jmp	.Ldigit
.Lparsed:
	cmp	%rdi, %rsi		/* no digits at all */
	je	usage

	mov	$SYS_write, %eax	/* first marker */
	mov	$STDOUT, %edi
	lea	start_message(%rip), %rsi
	mov	$start_length, %edx
	syscall
	.size	_start, . - _start

	.type	spin, @function
spin:
	mov	%rbx, %rcx
	test	%rcx, %rcx
	jz	finish
1:	add	%rcx, %r8
	jmp	2f
2:	xor	%r8, %r9
	dec	%rcx
	jnz	1b
	.size	spin, . - spin

	.type	finish, @function
finish:
	mov	$SYS_write, %eax	/* second marker */
	mov	$STDOUT, %edi
	lea	done_message(%rip), %rsi
	mov	$done_length, %edx
	syscall

	mov	$SYS_exit, %eax
	xor	%edi, %edi
	syscall
	.size	finish, . - finish

	.type	usage, @function
usage:
	mov	$SYS_write, %eax
	mov	$STDERR, %edi
	lea	usage_message(%rip), %rsi
	mov	$usage_length, %edx
	syscall
	mov	$SYS_exit, %eax
	mov	$2, %edi
	syscall
	.size	usage, . - usage

	.section .rodata
start_message:
	.ascii	"workload: start\n"
	.set	start_length, . - start_message
done_message:
	.ascii	"workload: done\n"
	.set	done_length, . - done_message
usage_message:
	.ascii	"usage: workload ITERATIONS (a decimal number below 2**63)\n"
	.set	usage_length, . - usage_message

	.section .note.GNU-stack, "", @progbits
