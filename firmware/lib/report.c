/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "libfw.h"
#include "processor.h"

static int tests, failures, xfailures, skipped;

/* the caller holds the console lock: a line and its counters change together */
static void vreport(const char *tag, const char *fmt, va_list ap)
{
	printf("%s: ", tag);
	vprintf(fmt, ap);
	printf("\n");
}

bool report(bool pass, const char *fmt, ...)
{
	va_list ap;
	console_lock();
	tests++;
	if (!pass)
		failures++;
	va_start(ap, fmt);
	vreport(pass ? "PASS" : "FAIL", fmt, ap);
	va_end(ap);
	console_unlock();
	return pass;
}

bool report_xfail(bool xfail, bool pass, const char *fmt, ...)
{
	va_list ap;
	const char *tag = pass ? (xfail ? "XPASS" : "PASS")
			       : (xfail ? "XFAIL" : "FAIL");
	console_lock();
	tests++;
	if (xfail && !pass)
		xfailures++;
	else if (xfail == pass)
		failures++;
	va_start(ap, fmt);
	vreport(tag, fmt, ap);
	va_end(ap);
	console_unlock();
	return pass;
}

void report_skip(const char *fmt, ...)
{
	va_list ap;
	console_lock();
	tests++;
	skipped++;
	va_start(ap, fmt);
	vreport("SKIP", fmt, ap);
	va_end(ap);
	console_unlock();
}

void report_info(const char *fmt, ...)
{
	va_list ap;
	console_lock();
	va_start(ap, fmt);
	vreport("INFO", fmt, ap);
	va_end(ap);
	console_unlock();
}

int report_summary(void)
{
	int status;

	console_lock();
	printf("SUMMARY: %d tests", tests);
	if (failures)
		printf(", %d unexpected failures", failures);
	if (xfailures)
		printf(", %d expected failures", xfailures);
	if (skipped)
		printf(", %d skipped", skipped);
	printf("\n");
	if (failures)
		status = 1;
	else if (tests == skipped)
		status = 38; /* debug-exit status 77: everything skipped */
	else
		status = 0;
	console_unlock();
	return status;
}

void exit(int code)
{
	const char *s = "Shutdown";

	outl((uint32_t)code, 0xf4); /* isa-debug-exit */
	while (*s)                  /* Bochs/QEMU shutdown port fallback */
		outb((uint8_t)*s++, 0x8900);
	for (;;)
		asm volatile("cli; hlt");
}

void abort(void)
{
	exit(EXIT_ABORT);
}
