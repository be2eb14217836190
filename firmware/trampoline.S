/* SPDX-License-Identifier: GPL-2.0-or-later
 *
 * Boot trampoline, loaded by the VMM at 0x8000 and entered first.
 *
 * Unicorn's 64-bit engine starts in a synthetic long mode (paging off, CS cache empty), so the
 * guest always starts here: load the VMM's GDT, turn on 4-level paging over the identity map
 * the VMM built, reload every segment register, then either jump to a 64-bit kernel or drop
 * to 32-bit protected mode with paging off for a multiboot kernel.
 *
 * The VMM fills the parameter block (boot area layout in docs/design.md):
 *   0x1080 GDTR (limit, base)      0x1100 entry     0x1108 MBI address
 *   0x1110 initial RSP             0x1118 mode: 64 = plain ELF64 entry, 32 = multiboot entry
 */
        .set PARAMS, 0x1100
        .set PML4, 0x10000
        .set MB_MAGIC, 0x2BADB002

        .text
        .code64
        .globl _start
_start:
        mov     PARAMS + 0x10, %rsp
        lgdt    0x1080
        mov     %cr4, %rax
        or      $0x20, %rax                 /* PAE */
        mov     %rax, %cr4
        mov     $PML4, %rax
        mov     %rax, %cr3
        mov     %cr0, %rax
        or      $0x80010022, %eax           /* PG | WP | NE | MP */
        mov     %rax, %cr0
        pushq   $0x08
        lea     1f(%rip), %rax
        pushq   %rax
        lretq
1:      mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        cmpl    $32, PARAMS + 0x18
        je      to_protected_mode
        mov     PARAMS + 0x08, %rdi
        mov     $MB_MAGIC, %esi
        xor     %eax, %eax
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
        mov     $0x10, %ax
        mov     %ax, %ds
        mov     %ax, %es
        mov     %ax, %ss
        mov     %ax, %fs
        mov     %ax, %gs
        mov     PARAMS + 0x08, %ebx
        mov     $MB_MAGIC, %eax
        jmp     *PARAMS
