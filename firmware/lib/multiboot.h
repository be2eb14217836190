/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef FW_MULTIBOOT_H
#define FW_MULTIBOOT_H

#define MULTIBOOT_HEADER_MAGIC 0x1BADB002
#define MULTIBOOT_HEADER_FLAGS 0 /* bit 16 clear: load by ELF headers */
#define MULTIBOOT_BOOT_MAGIC 0x2BADB002

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MBI_FLAG_MEM (1u << 0)
#define MBI_FLAG_CMDLINE (1u << 2)
#define MBI_FLAG_MODS (1u << 3)
#define MBI_FLAG_MMAP (1u << 6)

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower; /* KiB */
	uint32_t mem_upper; /* KiB */
	uint32_t boot_device;
	uint32_t cmdline;
	uint32_t mods_count;
	uint32_t mods_addr;
	uint32_t syms[4];
	uint32_t mmap_length;
	uint32_t mmap_addr;
} __attribute__((packed));

struct multiboot_module {
	uint32_t mod_start;
	uint32_t mod_end;
	uint32_t string;
	uint32_t reserved;
} __attribute__((packed));

/* mbi.c */
const char *mbi_cmdline(const struct multiboot_info *mbi);
uint64_t mbi_ram_size(const struct multiboot_info *mbi);
void mbi_print(const struct multiboot_info *mbi);
void mbi_print_modules(const struct multiboot_info *mbi);
/* "key=word" on a command line into buf ("" when absent) */
void cmdline_word(const char *cmdline, const char *key, char *buf, size_t len);
/* the word appears on the command line on its own (space separated) */
bool cmdline_has_word(const char *cmdline, const char *word);
/* KEY=VALUE lookup in the first module; copies VALUE, returns its length or -1 */
int mbi_env_get(const struct multiboot_info *mbi, const char *key, char *buf,
		int size);
#endif
#endif
