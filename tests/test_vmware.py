# SPDX-License-Identifier: GPL-2.0-or-later
"""VMware backdoor: GETVERSION, unknown commands, wrong magic and the bus fallback."""

from devices.bus import Bus
from devices.vmware import VMWARE_MAGIC, VMWARE_PORT, VmwareBackdoor


def regs(rax, rcx, rbx=0x1111, rdx=VMWARE_PORT):
    return {"rax": rax, "rbx": rbx, "rcx": rcx, "rdx": rdx}


def test_getversion_reports_version_magic_and_product_type():
    state = regs(VMWARE_MAGIC, 0x0A)
    VmwareBackdoor().handle_in(state)
    assert state == {"rax": 6, "rbx": VMWARE_MAGIC, "rcx": 2, "rdx": VMWARE_PORT}


def test_command_is_cl_only():
    state = regs(VMWARE_MAGIC, 0xABCD000A)
    VmwareBackdoor().handle_in(state)
    assert state["rbx"] == VMWARE_MAGIC


def test_unknown_command_leaves_registers_untouched():
    state = regs(VMWARE_MAGIC, 0x11)
    VmwareBackdoor().handle_in(state)
    assert state == regs(VMWARE_MAGIC, 0x11)


def test_wrong_magic_reads_all_ones_and_leaves_the_rest():
    state = regs(0x12345678, 0x0A)
    VmwareBackdoor().handle_in(state)
    assert state == regs(0xFFFFFFFF, 0x0A)


def test_upper_half_of_rax_is_ignored_and_cleared_like_a_32_bit_in():
    state = regs((0xDEAD << 32) | VMWARE_MAGIC, 0x11)
    VmwareBackdoor().handle_in(state)
    assert state["rax"] == VMWARE_MAGIC
    state = regs((0xDEAD << 32) | VMWARE_MAGIC, 0x0A)
    VmwareBackdoor().handle_in(state)
    assert state["rax"] == 6


def test_bus_reads_without_registers_are_all_ones_and_writes_ignored():
    pio = Bus("pio", 0x10000)
    VmwareBackdoor().register(pio)
    assert pio.read(VMWARE_PORT, 4) == 0xFFFFFFFF
    assert pio.read(VMWARE_PORT + 1, 1) == 0xFF  # 0x5659 is not implemented
    assert pio.write(VMWARE_PORT, 4, 0) is None
