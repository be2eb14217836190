/* SPDX-License-Identifier: GPL-2.0-or-later */
#ifndef FW_FWCFG_H
#define FW_FWCFG_H
#include <stdint.h>

#define FW_CFG_PORT_SEL 0x510
#define FW_CFG_PORT_DATA 0x511

#define FW_CFG_SIGNATURE 0x00
#define FW_CFG_ID 0x01
#define FW_CFG_RAM_SIZE 0x03
#define FW_CFG_NB_CPUS 0x05
#define FW_CFG_MAX_RAM 0x11

void fwcfg_select(uint16_t key);
void fwcfg_read(void *buf, unsigned len);
uint8_t fwcfg_get_u8(uint16_t key);
uint16_t fwcfg_get_u16(uint16_t key);
uint32_t fwcfg_get_u32(uint16_t key);
uint64_t fwcfg_get_u64(uint16_t key);

#endif
