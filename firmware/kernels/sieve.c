/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * Compute-bound kernel for comparing the VMM's speed with QEMU TCG on ordinary code: a sieve of
 * Eratosthenes over a byte array of a few MiB, mostly byte stores and loads, under paging set up
 * the way a real kernel has it.  Not a test of the VMM's features.
 *
 * Command line: n=N (sieve 0..N-1, default 8 MiB, at most SIEVE_MAX) reps=R (default 4).
 *
 * Paging: 4-level page tables of its own, EFER.NXE set: the 4 KiB pages holding .text are
 * present, read-only and executable; every other page of the first 4 GiB (data, bss with the
 * array, the stack, the page tables themselves) is writable and NX, in 2 MiB pages except around
 * the image.  CR0.WP on.  So the code's pages are the only executable ones, and the stores of the
 * sieve go to pages no translated code lives in.
 *
 * Each repetition clears the array, marks the composites and folds the primes into a checksum:
 * their count and FNV-1a over their 64-bit values (h = (h ^ p) * 0x100000001b3 from
 * 0xcbf29ce484222325).  Output: INFO lines with n, reps, the count and checksum (the same in every
 * repetition, else FAIL), then SUMMARY.  tests/test_sieve.py checks them against Python.  The
 * image is ELF32 holding 64-bit code (objcopy, like kvm-unit-tests' x86_64 images), so that QEMU's
 * -kernel takes it too.
 */
#include "desc.h"
#include "libfw.h"
#include "multiboot.h"
#include "pmu.h"
#include "processor.h"

#define SIEVE_MAX (16u << 20)
#define PAGE_4K 0x1000ull
#define PAGE_2M 0x200000ull
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define CPUID_EXT_NX (1u << 20) /* CPUID 0x80000001 EDX */

extern char __image_start[], __text_end[];

static uint8_t composite[SIEVE_MAX] __attribute__((aligned(4096)));

/* PML4, PDPT, 4 page directories (0-4 GiB) and one page table for the 2 MiB around the image */
static uint64_t pml4[512] __attribute__((aligned(4096)));
static uint64_t pdpt[512] __attribute__((aligned(4096)));
static uint64_t pd[4][512] __attribute__((aligned(4096)));
static uint64_t pt_image[512] __attribute__((aligned(4096)));

static void setup_paging(void)
{
	uint64_t text_begin = (uintptr_t)__image_start & ~(PAGE_4K - 1);
	uint64_t text_end = ((uintptr_t)__text_end + PAGE_4K - 1) & ~(PAGE_4K - 1);
	uint64_t image_2m = text_begin & ~(PAGE_2M - 1);
	uint64_t data = PT_PRESENT | PT_WRITABLE | PT_NX;

	/* the text must not reach past the one 2 MiB region pt_image maps */
	assert(text_end <= image_2m + PAGE_2M);
	for (int i = 0; i < 512; i++) {
		uint64_t a = image_2m + i * PAGE_4K;
		pt_image[i] = a >= text_begin && a < text_end ? a | PT_PRESENT : a | data;
	}
	for (int g = 0; g < 4; g++)
		for (int i = 0; i < 512; i++) {
			uint64_t a = ((uint64_t)g << 30) + i * PAGE_2M;
			pd[g][i] = a == image_2m ? (uintptr_t)pt_image | PT_PRESENT | PT_WRITABLE
						 : a | data | PT_PAGE_SIZE;
		}
	for (int g = 0; g < 4; g++)
		pdpt[g] = (uintptr_t)pd[g] | PT_PRESENT | PT_WRITABLE;
	pml4[0] = (uintptr_t)pdpt | PT_PRESENT | PT_WRITABLE;
	wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_NX);
	write_cr3((uintptr_t)pml4);
	write_cr0(read_cr0() | X86_CR0_WP);
}

/* one repetition: the number of primes below n, and their FNV-1a hash in *hash */
static uint64_t sieve(uint32_t n, uint64_t *hash)
{
	uint64_t count = 0, h = FNV_OFFSET;

	for (uint32_t i = 0; i < n; i++)
		composite[i] = 0;
	for (uint32_t i = 2; (uint64_t)i * i < n; i++)
		if (!composite[i])
			for (uint32_t j = i * i; j < n; j += i)
				composite[j] = 1;
	for (uint32_t i = 2; i < n; i++)
		if (!composite[i]) {
			count++;
			h = (h ^ i) * FNV_PRIME;
		}
	*hash = h;
	return count;
}

int main(struct multiboot_info *mbi)
{
	const char *cmd = mbi_cmdline(mbi);
	uint64_t n = cmdline_u64(cmd, "n", 8u << 20), reps = cmdline_u64(cmd, "reps", 4);
	uint64_t count = 0, hash = 0, c, h;
	bool same = true;

	if (!(cpuid(0x80000001).d & CPUID_EXT_NX)) {
		report_skip("no NX (CPUID 0x80000001 EDX[20]): paging as a real kernel has it needs it");
		return report_summary();
	}
	if (n < 2 || n > SIEVE_MAX || reps < 1) {
		report(false, "n=%lu (2..%u) reps=%lu (>= 1)", (unsigned long)n, SIEVE_MAX, (unsigned long)reps);
		return report_summary();
	}
	setup_paging();
	for (uint64_t r = 0; r < reps; r++) {
		c = sieve(n, &h);
		if (r == 0) {
			count = c;
			hash = h;
		}
		same = same && c == count && h == hash;
	}
	report_info("sieve n=%lu reps=%lu primes=%lu checksum=0x%lx", (unsigned long)n, (unsigned long)reps,
		    (unsigned long)count, (unsigned long)hash);
	report(same, "every repetition found the same primes");
	return report_summary();
}
