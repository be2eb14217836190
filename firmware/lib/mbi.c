/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "libfw.h"
#include "multiboot.h"

const char *mbi_cmdline(const struct multiboot_info *mbi)
{
	return mbi->cmdline ? (const char *)(uintptr_t)mbi->cmdline : "";
}

uint64_t mbi_ram_size(const struct multiboot_info *mbi)
{
	return ((uint64_t)mbi->mem_upper + 1024) * 1024;
}

void mbi_print(const struct multiboot_info *mbi)
{
	report_info("mbi at %p: flags 0x%x mem_lower %u KiB mem_upper %u KiB",
		    (const void *)mbi, mbi->flags, mbi->mem_lower,
		    mbi->mem_upper);
	report_info("cmdline: '%s'", mbi_cmdline(mbi));
}

static const struct multiboot_module *first_module(
	const struct multiboot_info *mbi)
{
	if (!mbi->mods_count || !mbi->mods_addr)
		return NULL;
	return (const struct multiboot_module *)(uintptr_t)mbi->mods_addr;
}

void mbi_print_modules(const struct multiboot_info *mbi)
{
	const struct multiboot_module *m =
		(const struct multiboot_module *)(uintptr_t)mbi->mods_addr;

	report_info("%u module(s)", mbi->mods_count);
	for (uint32_t i = 0; m && i < mbi->mods_count; i++, m++) {
		const char *p = (const char *)(uintptr_t)m->mod_start;
		const char *end = (const char *)(uintptr_t)m->mod_end;
		report_info("module %u: 0x%x-0x%x", i, m->mod_start, m->mod_end);
		while (p < end) {
			const char *line = p;
			while (p < end && *p != '\n' && *p)
				p++;
			if (p > line)
				report_info("  env: %.*s", (int)(p - line), line);
			if (p < end && !*p)
				break;
			p++;
		}
	}
}

int mbi_env_get(const struct multiboot_info *mbi, const char *key, char *buf,
		int size)
{
	const struct multiboot_module *m = first_module(mbi);
	size_t klen = strlen(key);

	if (!m)
		return -1;
	const char *p = (const char *)(uintptr_t)m->mod_start;
	const char *end = (const char *)(uintptr_t)m->mod_end;
	while (p < end && *p) {
		const char *line = p;
		while (p < end && *p && *p != '\n')
			p++;
		if ((size_t)(p - line) > klen && !memcmp(line, key, klen) &&
		    line[klen] == '=') {
			int n = (int)(p - line - klen - 1);
			if (n >= size)
				n = size - 1;
			memcpy(buf, line + klen + 1, n);
			buf[n] = '\0';
			return n;
		}
		if (p < end && *p == '\n')
			p++;
	}
	return -1;
}

void cmdline_word(const char *cmdline, const char *key, char *buf, size_t len)
{
	size_t klen = strlen(key), i = 0;

	buf[0] = 0;
	for (const char *p = cmdline; p && *p;) {
		while (*p == ' ')
			p++;
		if (!strncmp(p, key, klen) && p[klen] == '=') {
			for (p += klen + 1; *p && *p != ' ' && i + 1 < len; p++)
				buf[i++] = *p;
			buf[i] = 0;
			return;
		}
		while (*p && *p != ' ')
			p++;
	}
}

bool cmdline_has_word(const char *cmdline, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = cmdline; *p; p++)
		if ((p == cmdline || p[-1] == ' ') && (p[n] == ' ' || p[n] == 0) && strncmp(p, word, n) == 0)
			return true;
	return false;
}
