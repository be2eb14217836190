/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Boot trampoline, loaded by the VMM at 0xF1000 (vmm/firmware_area.py) and entered first.
 *
 * Unicorn's 64-bit engine starts in a synthetic long mode (paging off, CS cache empty), so the
 * guest always starts here: load the GDT the VMM chose, turn on 4-level paging over the identity
 * map the VMM built, reload every segment register, then enter the kernel in one of three ways:
 *   mode 64   (plain ELF64): long mode, CS 0x08, data 0x10, RDI = boot info, RSI = multiboot magic
 *   mode 0x4C (Linux 64-bit boot protocol): CS 0x10 (__BOOT_CS), data 0x18 (__BOOT_DS), RSI = zero page
 *   mode 32   (multiboot, PVH): 32-bit protected mode with paging off, CS 0x18, data 0x10,
 *             EAX = multiboot magic, EBX = boot info (MBI or PVH start info)
 *
 * The VMM fills the parameter block:
 *   0xF0080 GDTR (limit, base)   0xF0100 entry   0xF0108 boot info address
 *   0xF0110 initial RSP          0xF0118 mode
 */
        .set GDTR, 0xF0080
        .set PARAMS, 0xF0100
        .set PML4, 0xF2000
        .set MB_MAGIC, 0x2BADB002
        .set MODE_PROTECTED32, 32
        .set MODE_LINUX64, 0x4C

/* Load every data segment register with one selector (through %ax). */
        .macro load_data_segments selector
        mov     $\selector, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        .endm

        .text
        .code64
        .globl _start
_start:
        mov     PARAMS + 0x10, %rsp
        lgdt    GDTR
        mov     %cr4, %rax
        or      $0x20, %rax                 /* PAE */
        mov     %rax, %cr4
        mov     $PML4, %rax
        mov     %rax, %cr3
        mov     %cr0, %rax
        or      $0x80010022, %eax           /* PG | WP | NE | MP */
        mov     %rax, %cr0
        cmpl    $MODE_LINUX64, PARAMS + 0x18
        je      to_linux
        pushq   $0x08
        lea     1f(%rip), %rax
        pushq   %rax
        lretq
1:      load_data_segments 0x10
        cmpl    $MODE_PROTECTED32, PARAMS + 0x18
        je      to_protected_mode
        mov     PARAMS + 0x08, %rdi
        mov     $MB_MAGIC, %esi
        xor     %eax, %eax
        jmp     *PARAMS

to_linux:
        pushq   $0x10
        lea     2f(%rip), %rax
        pushq   %rax
        lretq
2:      load_data_segments 0x18
        mov     PARAMS + 0x08, %rsi
        xor     %eax, %eax
        xor     %edi, %edi
        jmp     *PARAMS

to_protected_mode:
        pushq   $0x18
        lea     pm32(%rip), %rax
        pushq   %rax
        lretq

        .code32
pm32:
        mov     %cr0, %eax
        and     $0x7fffffff, %eax           /* paging off: leaves long mode */
        mov     %eax, %cr0
        mov     $0xC0000080, %ecx
        rdmsr
        and     $~0x100, %eax               /* EFER.LME off */
        wrmsr
        mov     %cr4, %eax
        and     $~0x20, %eax                /* PAE off */
        mov     %eax, %cr4
        load_data_segments 0x10
        mov     PARAMS + 0x08, %ebx
        mov     $MB_MAGIC, %eax
        jmp     *PARAMS
