/* SPDX-License-Identifier: GPL-2.0-or-later */
/*
 * libfw: a tiny libc-free library for the VMM's guest test kernels.
 * Output goes to COM1; results follow the kvm-unit-tests protocol
 * (PASS:/FAIL:/SKIP:/INFO: lines, then SUMMARY:, then exit via port 0xf4).
 */
#ifndef LIBFW_H
#define LIBFW_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define NORETURN __attribute__((noreturn))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))

/* string.c */
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);
int strncmp(const char *a, const char *b, size_t n);

/* serial.c: 16550 UART on COM1 */
#define SERIAL_BASE 0x3f8
void serial_init(void);
void serial_putc(char c);
void serial_puts(const char *s);

/* printf.c */
int vprintf(const char *fmt, va_list ap);
int printf(const char *fmt, ...) PRINTF_LIKE(1, 2);
int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap);
int snprintf(char *buf, size_t size, const char *fmt, ...) PRINTF_LIKE(3, 4);

/*
 * Console lock: one CPU prints a whole printf() or report line at a time.  Recursive per CPU
 * (an exception handler may print while its CPU holds it); fw_cpu_id() names the CPU: 0 unless
 * a kernel links smp.c, which overrides this weak default.
 */
int fw_cpu_id(void);
void console_lock(void);
void console_unlock(void);

/* report.c: kvm-unit-tests style results */
bool report(bool pass, const char *fmt, ...) PRINTF_LIKE(2, 3);
bool report_xfail(bool xfail, bool pass, const char *fmt, ...) PRINTF_LIKE(3, 4);
void report_skip(const char *fmt, ...) PRINTF_LIKE(1, 2);
void report_info(const char *fmt, ...) PRINTF_LIKE(1, 2);
int report_summary(void);

/* exit: status via isa-debug-exit (0xf4), then Bochs "Shutdown", then hlt */
#define EXIT_ABORT 63
NORETURN void exit(int code);
NORETURN void abort(void);
#define assert(cond)                                                          \
	do {                                                                  \
		if (!(cond)) {                                                \
			printf("assert failed: %s (%s:%d)\n", #cond,          \
			       __FILE__, __LINE__);                           \
			abort();                                              \
		}                                                             \
	} while (0)

/* setup.c: filled by the entry stubs */
extern uint32_t boot_magic;
extern uintptr_t boot_mbi;
struct multiboot_info;
int main(struct multiboot_info *mbi);
/* optional hook, run right after the IDT is loaded (64-bit only) */
void early_after_idt(void);

#endif
