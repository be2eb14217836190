/* SPDX-License-Identifier: GPL-2.0-or-later */
/* printf subset: %s %c %d %i %u %x %X %p %%, flags '-' '0', width,
 * precision (for %s), length modifiers h l ll z. */
#include "libfw.h"

struct out {
	char *buf; /* NULL: serial */
	size_t size, len;
};

static void out_char(struct out *o, char c)
{
	if (!o->buf)
		serial_putc(c);
	else if (o->len + 1 < o->size)
		o->buf[o->len] = c;
	o->len++;
}

/* n /= base, returns remainder; no libgcc needed on i386 */
static unsigned divmod(uint64_t *n, unsigned base)
{
#ifdef __x86_64__
	unsigned r = *n % base;
	*n /= base;
	return r;
#else
	uint64_t q = 0, r = 0;
	for (int i = 63; i >= 0; i--) {
		r = (r << 1) | ((*n >> i) & 1);
		if (r >= base) {
			r -= base;
			q |= 1ull << i;
		}
	}
	*n = q;
	return (unsigned)r;
#endif
}

static void out_num(struct out *o, uint64_t v, unsigned base, bool neg,
		    int width, char pad, bool left, bool upper, const char *pfx)
{
	char tmp[24];
	int n = 0, len;
	const char *digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";

	do {
		tmp[n++] = digits[divmod(&v, base)];
	} while (v);
	len = n + (neg ? 1 : 0) + (int)strlen(pfx);
	if (!left && pad == ' ')
		for (; width > len; width--)
			out_char(o, ' ');
	if (neg)
		out_char(o, '-');
	while (*pfx)
		out_char(o, *pfx++);
	if (!left && pad == '0')
		for (; width > len; width--)
			out_char(o, '0');
	while (n)
		out_char(o, tmp[--n]);
	if (left)
		for (; width > len; width--)
			out_char(o, ' ');
}

static void do_printf(struct out *o, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		if (*fmt != '%') {
			out_char(o, *fmt);
			continue;
		}
		fmt++;
		bool left = false;
		char pad = ' ';
		int width = 0, lng = 0;
		for (;; fmt++) {
			if (*fmt == '-')
				left = true;
			else if (*fmt == '0')
				pad = '0';
			else
				break;
		}
		if (*fmt == '*') {
			width = va_arg(ap, int);
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + (*fmt++ - '0');
		int prec = -1;
		if (*fmt == '.') {
			fmt++;
			prec = 0;
			if (*fmt == '*') {
				prec = va_arg(ap, int);
				fmt++;
			}
			while (*fmt >= '0' && *fmt <= '9')
				prec = prec * 10 + (*fmt++ - '0');
		}
		for (;; fmt++) {
			if (*fmt == 'l')
				lng++;
			else if (*fmt == 'z')
				lng = sizeof(size_t) == 8 ? 2 : 0;
			else if (*fmt != 'h')
				break;
		}
		if (lng == 1 && sizeof(long) == 8)
			lng = 2;
		uint64_t u;
		switch (*fmt) {
		case 'd':
		case 'i': {
			int64_t s = lng >= 2 ? va_arg(ap, long long)
			            : lng ? va_arg(ap, long) : va_arg(ap, int);
			bool neg = s < 0;
			u = neg ? -(uint64_t)s : (uint64_t)s;
			out_num(o, u, 10, neg, width, pad, left, false, "");
			break;
		}
		case 'u':
		case 'x':
		case 'X':
			u = lng >= 2 ? va_arg(ap, unsigned long long)
			    : lng ? va_arg(ap, unsigned long)
				  : va_arg(ap, unsigned int);
			out_num(o, u, *fmt == 'u' ? 10 : 16, false, width, pad,
				left, *fmt == 'X', "");
			break;
		case 'p':
			u = (uintptr_t)va_arg(ap, void *);
			out_num(o, u, 16, false, width, pad, left, false, "0x");
			break;
		case 'c':
			out_char(o, (char)va_arg(ap, int));
			break;
		case 's': {
			const char *s = va_arg(ap, const char *);
			int len;
			if (!s)
				s = "(null)";
			for (len = 0; s[len] && (prec < 0 || len < prec);)
				len++;
			if (!left)
				for (; width > len; width--)
					out_char(o, ' ');
			for (int i = 0; i < len; i++)
				out_char(o, s[i]);
			for (; width > len; width--)
				out_char(o, ' ');
			break;
		}
		case '%':
			out_char(o, '%');
			break;
		case '\0':
			return;
		default:
			out_char(o, '%');
			out_char(o, *fmt);
		}
	}
}

static volatile int console_word;
static volatile int console_owner = -1;
static int console_depth;

int __attribute__((weak)) fw_cpu_id(void)
{
	return 0;
}

void console_lock(void)
{
	int me = fw_cpu_id();

	if (console_owner == me) {
		console_depth++;
		return;
	}
	while (__atomic_exchange_n(&console_word, 1, __ATOMIC_ACQUIRE))
		while (console_word)
			asm volatile("pause");
	console_owner = me;
	console_depth = 1;
}

void console_unlock(void)
{
	if (--console_depth)
		return;
	console_owner = -1;
	__atomic_store_n(&console_word, 0, __ATOMIC_RELEASE);
}

int vprintf(const char *fmt, va_list ap)
{
	struct out o = { 0 };
	console_lock();
	do_printf(&o, fmt, ap);
	console_unlock();
	return (int)o.len;
}

int printf(const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = vprintf(fmt, ap);
	va_end(ap);
	return r;
}

int vsnprintf(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct out o = { buf, size, 0 };
	do_printf(&o, fmt, ap);
	if (size)
		buf[o.len < size ? o.len : size - 1] = '\0';
	return (int)o.len;
}

int snprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int r;
	va_start(ap, fmt);
	r = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	return r;
}
