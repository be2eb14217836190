/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Paging helpers on the live identity-mapped page tables, and SYSCALL setup. */
#include "desc.h"
#include "libfw.h"
#include "processor.h"

#define PT_POOL_PAGES 16
static uint64_t pt_pool[PT_POOL_PAGES][512] __attribute__((aligned(4096)));
static int pt_used;

/* replace the large-page entry *e (at level 3 = 1 GiB or 2 = 2 MiB) by a table */
static void split_large_page(uint64_t *e, int level)
{
	uint64_t child = 1ull << (12 + 9 * (level - 2));
	uint64_t base = *e & PT_ADDR_MASK & ~((child << 9) - 1);
	uint64_t flags = *e & (0x1f | PT_NX); /* P RW US PWT PCD, NX */
	uint64_t *t;

	assert(pt_used < PT_POOL_PAGES);
	t = pt_pool[pt_used++];
	for (int i = 0; i < 512; i++)
		t[i] = (base + i * child) | flags | (level > 2 ? PT_PAGE_SIZE : 0);
	*e = (uintptr_t)t | (*e & 0x1f) | PT_PRESENT;
	write_cr3(read_cr3()); /* flush everything */
}

uint64_t *get_pte(uintptr_t va)
{
	uint64_t *table = (uint64_t *)(uintptr_t)(read_cr3() & PT_ADDR_MASK);

	for (int level = 4; level > 1; level--) {
		uint64_t *e = &table[(va >> (12 + 9 * (level - 1))) & 511];
		if (!(*e & PT_PRESENT))
			return NULL;
		if (level < 4 && (*e & PT_PAGE_SIZE))
			split_large_page(e, level);
		table = (uint64_t *)(uintptr_t)(*e & PT_ADDR_MASK);
	}
	return &table[(va >> 12) & 511];
}

void set_page_flags(const volatile void *va, uint64_t set, uint64_t clear)
{
	uint64_t *pte = get_pte((uintptr_t)va);

	assert(pte);
	*pte = (*pte | set) & ~clear;
	invlpg(va);
}

extern char syscall_entry[];
extern syscall_handler_t syscall_handler;

void setup_syscall(syscall_handler_t handler)
{
	syscall_handler = handler;
	wrmsr(MSR_STAR, ((uint64_t)(USER_CS32 & ~3) << 48) |
				((uint64_t)KERNEL_CS << 32));
	wrmsr(MSR_LSTAR, (uintptr_t)syscall_entry);
	wrmsr(MSR_SYSCALL_MASK, 0x47700); /* TF IF DF IOPL NT AC */
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
}
