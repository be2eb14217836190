/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "fwcfg.h"
#include "processor.h"

void fwcfg_select(uint16_t key)
{
	outw(key, FW_CFG_PORT_SEL);
}

void fwcfg_read(void *buf, unsigned len)
{
	uint8_t *p = buf;
	while (len--)
		*p++ = inb(FW_CFG_PORT_DATA);
}

static uint64_t fwcfg_get(uint16_t key, unsigned len)
{
	uint8_t b[8] = { 0 };
	uint64_t v = 0;

	fwcfg_select(key);
	fwcfg_read(b, len);
	for (unsigned i = len; i; i--)
		v = (v << 8) | b[i - 1]; /* little endian */
	return v;
}

uint8_t fwcfg_get_u8(uint16_t key) { return (uint8_t)fwcfg_get(key, 1); }
uint16_t fwcfg_get_u16(uint16_t key) { return (uint16_t)fwcfg_get(key, 2); }
uint32_t fwcfg_get_u32(uint16_t key) { return (uint32_t)fwcfg_get(key, 4); }
uint64_t fwcfg_get_u64(uint16_t key) { return fwcfg_get(key, 8); }
