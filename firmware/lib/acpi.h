/* SPDX-License-Identifier: GPL-2.0-or-later */
/* Just enough ACPI for the SMP kernels: find the RSDP, a table, the MADT's local APICs (64-bit). */
#ifndef FW_ACPI_H
#define FW_ACPI_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct acpi_rsdp {
	char signature[8]; /* "RSD PTR " */
	uint8_t checksum;  /* over the first 20 bytes */
	char oem_id[6];
	uint8_t revision; /* 0: ACPI 1.0 (RSDT only), 2: ACPI 2.0+ (XSDT) */
	uint32_t rsdt_address;
	uint32_t length;
	uint64_t xsdt_address;
	uint8_t extended_checksum;
	uint8_t reserved[3];
} __attribute__((packed));

struct acpi_sdt_header {
	char signature[4];
	uint32_t length;
	uint8_t revision;
	uint8_t checksum;
	char oem_id[6];
	char oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

/* MADT entry types the parser understands */
#define MADT_LOCAL_APIC 0
#define MADT_LOCAL_X2APIC 9
#define MADT_LAPIC_ENABLED (1u << 0)
#define MADT_LAPIC_ONLINE_CAPABLE (1u << 1)

#define MADT_MAX_CPUS 64

struct madt_info {
	uint32_t lapic_address; /* the MADT's 32-bit local APIC address */
	uint32_t flags;         /* bit 0 PCAT_COMPAT */
	int nr_enabled;         /* enabled processor local APICs (xAPIC and x2APIC entries) */
	int nr_disabled;        /* listed but not enabled */
	uint32_t apic_ids[MADT_MAX_CPUS]; /* APIC IDs of the enabled ones, in table order */
	uint32_t uids[MADT_MAX_CPUS];     /* their ACPI processor UIDs */
	int bad_entries;        /* entries of length 0 or running past the table */
};

/* sum of len bytes is 0 mod 256 */
bool acpi_checksum_ok(const void *p, size_t len);
/* scan 0xE0000-0xFFFFF (16-byte steps) for "RSD PTR " with a valid checksum; NULL if none */
const struct acpi_rsdp *acpi_find_rsdp(void);
/* a table by signature through the XSDT (revision >= 2) or the RSDT; NULL if absent or its
 * checksum is wrong */
const struct acpi_sdt_header *acpi_find_table(const char *sig);
/* 0 on success, -1 no RSDP, -2 no MADT */
int acpi_parse_madt(struct madt_info *info);
#endif
