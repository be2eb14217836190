/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * rdpmc: read perf counters from user space with RDPMC, through perf's mmap page, and compare
 * with what read() on the event returns.  Built with glibc (gcc -static -O2).
 *
 * Usage: rdpmc N1 N2 EVENT...   EVENT: "instructions", "branches" or "rHEX" (a raw event select)
 *
 * First, before any perf mmap exists, it executes RDPMC once: Linux sets CR4.PCE only for a task
 * whose mm has a perf mmap, so this must fault (SIGSEGV from #GP) and prints
 *   rdpmc: without a perf mmap: SIGSEGV
 * Then, for each EVENT, it opens a user-only counting event on this task (exclude_kernel), maps
 * its first page, and for N in N1, N2 takes two readings around spin(N), each reading being an
 * RDPMC through the mmap page protocol immediately followed by read(); it prints
 *   rdpmc: EVENT N index=I width=W rdpmc=DR read=DV
 * with I the page's index field (RDPMC's ECX + 1: 0x40000001 + n for Intel fixed counter n,
 * 1 + n for GP counter n), W its pmc_width, and DR, DV the counts between the two readings as
 * RDPMC and read() saw them.  Both readings run the same instructions between their RDPMC and
 * their read() system call, so DR == DV whenever the counter is exact.  spin(N) runs the
 * workload's loop (5 instructions, 2 branches of which 1 conditional per iteration), so the
 * counts for N2 exceed those for N1 by exactly 5, 2 or 1 x (N2 - N1).
 *
 * Exit status 0; 1 with a message on stderr when an event cannot be opened or mapped, or the
 * page says RDPMC may not be used (cap_user_rdpmc clear or index 0); 2 for bad arguments.
 */
#include <errno.h>
#include <linux/perf_event.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

struct reading {
	uint64_t rdpmc;
	uint64_t read;
	uint32_t index;
	uint32_t width;
};

static sigjmp_buf fault;

static void on_segv(int signal)
{
	siglongjmp(fault, signal);
}

static inline uint64_t rdpmc(uint32_t counter)
{
	uint32_t low, high;

	__asm__ volatile("rdpmc" : "=a"(low), "=d"(high) : "c"(counter));
	return (uint64_t)high << 32 | low;
}

/* The mmap page's self-monitoring protocol (linux/perf_event.h): retry while the kernel updates it. */
static uint64_t mmap_read(volatile struct perf_event_mmap_page *page, uint32_t *index, uint32_t *width)
{
	uint32_t seq;
	uint64_t count;

	do {
		seq = page->lock;
		__asm__ volatile("" ::: "memory");
		*index = page->index;
		*width = page->pmc_width;
		count = page->offset;
		if (page->cap_user_rdpmc && *index) {
			int64_t value = (int64_t)rdpmc(*index - 1);

			/* The counter holds pmc_width bits; sign-extend them (Linux arms it negative). */
			value = (int64_t)((uint64_t)value << (64 - *width)) >> (64 - *width);
			count += value;
		}
		__asm__ volatile("" ::: "memory");
	} while (page->lock != seq);
	return count;
}

/* Never inlined, so both readings run the very same instructions between RDPMC and read(). */
static __attribute__((noinline)) void take_reading(int fd, volatile struct perf_event_mmap_page *page,
						   struct reading *out)
{
	out->rdpmc = mmap_read(page, &out->index, &out->width);
	if (read(fd, &out->read, sizeof out->read) != sizeof out->read) {
		perror("rdpmc: read");
		exit(1);
	}
}

static __attribute__((noinline)) void spin(uint64_t n)
{
	uint64_t a = 0, b = 0;

	if (!n)
		return;
	__asm__ volatile("1: add %[n], %[a]\n\t"
			 "jmp 2f\n"
			 "2: xor %[a], %[b]\n\t"
			 "dec %[n]\n\t"
			 "jnz 1b"
			 : [n] "+r"(n), [a] "+r"(a), [b] "+r"(b));
}

static int parse_event(const char *name, struct perf_event_attr *attr)
{
	char *end;

	memset(attr, 0, sizeof *attr);
	attr->size = sizeof *attr;
	attr->exclude_kernel = 1;
	attr->exclude_hv = 1;
	if (!strcmp(name, "instructions")) {
		attr->type = PERF_TYPE_HARDWARE;
		attr->config = PERF_COUNT_HW_INSTRUCTIONS;
		return 0;
	}
	if (!strcmp(name, "branches")) {
		attr->type = PERF_TYPE_HARDWARE;
		attr->config = PERF_COUNT_HW_BRANCH_INSTRUCTIONS;
		return 0;
	}
	if (name[0] == 'r' && name[1]) {
		attr->type = PERF_TYPE_RAW;
		attr->config = strtoull(name + 1, &end, 16);
		return *end ? -1 : 0;
	}
	return -1;
}

static uint64_t parse_count(const char *text)
{
	char *end;
	unsigned long long value;

	errno = 0;
	value = strtoull(text, &end, 10);
	if (!*text || *end || errno) {
		fprintf(stderr, "usage: rdpmc N1 N2 EVENT...\n");
		exit(2);
	}
	return value;
}

static void measure(const char *name, const struct perf_event_attr *attr, uint64_t n)
{
	struct reading before, after;
	volatile struct perf_event_mmap_page *page;
	int fd = syscall(SYS_perf_event_open, attr, 0, -1, -1, 0);

	if (fd < 0) {
		fprintf(stderr, "rdpmc: perf_event_open %s: %s\n", name, strerror(errno));
		exit(1);
	}
	page = mmap(NULL, sysconf(_SC_PAGESIZE), PROT_READ, MAP_SHARED, fd, 0);
	if (page == MAP_FAILED) {
		fprintf(stderr, "rdpmc: mmap %s: %s\n", name, strerror(errno));
		exit(1);
	}
	take_reading(fd, page, &before);
	spin(n);
	take_reading(fd, page, &after);
	if (!page->cap_user_rdpmc || !after.index) {
		fprintf(stderr, "rdpmc: %s: the mmap page does not allow RDPMC\n", name);
		exit(1);
	}
	printf("rdpmc: %s %llu index=%#x width=%u rdpmc=%llu read=%llu\n", name, (unsigned long long)n,
	       after.index, after.width, (unsigned long long)(after.rdpmc - before.rdpmc),
	       (unsigned long long)(after.read - before.read));
	munmap((void *)page, sysconf(_SC_PAGESIZE));
	close(fd);
}

int main(int argc, char **argv)
{
	struct perf_event_attr attr;
	uint64_t n1, n2;

	if (argc < 4) {
		fprintf(stderr, "usage: rdpmc N1 N2 EVENT...\n");
		return 2;
	}
	n1 = parse_count(argv[1]);
	n2 = parse_count(argv[2]);
	signal(SIGSEGV, on_segv);
	if (sigsetjmp(fault, 1) == 0) {
		rdpmc(0);
		printf("rdpmc: without a perf mmap: allowed\n");
	} else {
		printf("rdpmc: without a perf mmap: SIGSEGV\n");
	}
	signal(SIGSEGV, SIG_DFL);
	for (int i = 3; i < argc; i++) {
		if (parse_event(argv[i], &attr)) {
			fprintf(stderr, "rdpmc: unknown event %s\n", argv[i]);
			return 2;
		}
		measure(argv[i], &attr, n1);
		measure(argv[i], &attr, n2);
	}
	return 0;
}
