/* SPDX-License-Identifier: GPL-2.0-or-later */
#include "acpi.h"
#include "libfw.h"

#define BIOS_AREA_START 0xe0000ul
#define BIOS_AREA_END 0x100000ul

bool acpi_checksum_ok(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum += *b++;
	return sum == 0;
}

const struct acpi_rsdp *acpi_find_rsdp(void)
{
	for (uintptr_t a = BIOS_AREA_START; a < BIOS_AREA_END; a += 16) {
		const struct acpi_rsdp *r = (const struct acpi_rsdp *)a;
		if (memcmp(r->signature, "RSD PTR ", 8) || !acpi_checksum_ok(r, 20))
			continue;
		if (r->revision >= 2 && !acpi_checksum_ok(r, r->length))
			continue;
		return r;
	}
	return NULL;
}

static const struct acpi_sdt_header *table_at(uint64_t addr, const char *sig)
{
	const struct acpi_sdt_header *h = (const struct acpi_sdt_header *)(uintptr_t)addr;

	if (!addr || addr >= (1ull << 32))
		return NULL;
	if (memcmp(h->signature, sig, 4) || h->length < sizeof(*h))
		return NULL;
	return acpi_checksum_ok(h, h->length) ? h : NULL;
}

const struct acpi_sdt_header *acpi_find_table(const char *sig)
{
	const struct acpi_rsdp *rsdp = acpi_find_rsdp();
	const struct acpi_sdt_header *root;
	bool xsdt = false;

	if (!rsdp)
		return NULL;
	root = rsdp->revision >= 2 ? table_at(rsdp->xsdt_address, "XSDT") : NULL;
	if (root)
		xsdt = true;
	else
		root = table_at(rsdp->rsdt_address, "RSDT");
	if (!root)
		return NULL;
	unsigned width = xsdt ? 8 : 4;
	unsigned n = (root->length - sizeof(*root)) / width;
	const uint8_t *p = (const uint8_t *)(root + 1);
	for (unsigned i = 0; i < n; i++) {
		uint64_t a = 0;
		memcpy(&a, p + i * width, width);
		const struct acpi_sdt_header *t = table_at(a, sig);
		if (t)
			return t;
	}
	return NULL;
}

int acpi_parse_madt(struct madt_info *info)
{
	const struct acpi_sdt_header *madt;

	memset(info, 0, sizeof(*info));
	if (!acpi_find_rsdp())
		return -1;
	madt = acpi_find_table("APIC");
	if (!madt || madt->length < sizeof(*madt) + 8)
		return -2;
	const uint8_t *base = (const uint8_t *)madt;
	memcpy(&info->lapic_address, base + 36, 4);
	memcpy(&info->flags, base + 40, 4);
	for (uint32_t off = 44; off + 2 <= madt->length;) {
		uint8_t type = base[off], len = base[off + 1];
		uint32_t id, uid, flags;
		if (len < 2 || off + len > madt->length) {
			info->bad_entries++;
			break;
		}
		if (type == MADT_LOCAL_APIC && len >= 8) {
			uid = base[off + 2];
			id = base[off + 3];
			memcpy(&flags, base + off + 4, 4);
		} else if (type == MADT_LOCAL_X2APIC && len >= 16) {
			memcpy(&id, base + off + 4, 4);
			memcpy(&flags, base + off + 8, 4);
			memcpy(&uid, base + off + 12, 4);
		} else {
			off += len;
			continue;
		}
		if (flags & MADT_LAPIC_ENABLED) {
			if (info->nr_enabled < MADT_MAX_CPUS) {
				info->apic_ids[info->nr_enabled] = id;
				info->uids[info->nr_enabled] = uid;
			}
			info->nr_enabled++;
		} else {
			info->nr_disabled++;
		}
		off += len;
	}
	return 0;
}
