# SPDX-License-Identifier: GPL-2.0-or-later
"""The architectural MSR device: which MSRs exist per vendor and CPUID, reset values, write rules."""

from __future__ import annotations

import pytest

from devices.bus import GP, Bus
from devices.cpu_msrs import ALL_ONES, FIXED_RANGE_MTRRS, CpuMsrs, mc_msr
from devices.device import PropertyError
from devices.lapic import Lapic
from devices.speculation import SpeculationControl
from pmu import PmuConfig
from tests.fake_context import FakeContext
from tests.pmu_fixtures import make_pmu
from vmm.clock import CLOCK_HZ, FakeClock
from vmm.cpuid import DEFAULT_FEATURES, CpuidModel
from vmm.fake_vcpu import FakeVcpu

MIB, GIB = 1 << 20, 1 << 30
DEVICE_FEATURES = ("mce", "mca", "mtrr")
BASE_FEATURES = tuple(f for f in DEFAULT_FEATURES if f not in DEVICE_FEATURES)

# Reset values with the default 10 banks, 128 MiB of RAM and MAXPHYADDR 48.
MTRR_RESET = {
    0xFE: 0x508,                                   # 8 variable ranges, fixed ranges, WC
    0x2FF: 0x806,                                  # enabled, default type WB, fixed ranges off
    0x200: 0x8000_0000,                            # 2-4 GiB (no RAM there) is UC...
    0x201: 0xFFFF_8000_0800,                       # ...through a valid 2 GiB mask
    **{index: 0 for index in range(0x202, 0x210)},
    **{index: 0 for index in FIXED_RANGE_MTRRS},
}
MCA_RESET = {
    0x179: 0x10A,                                  # MCG_CTL_P, 10 banks
    0x17A: 0,
    0x17B: 0,
    **{index: 0 for index in range(0x400, 0x428)},
}
INTEL_RESET = {
    0x17: 0,
    0x3A: 1,                                       # locked, VMX and SMX off
    0x8B: 1 << 32,                                 # microcode revision 1
    0xCE: 10 << 40 | 10 << 8,                      # ratio 10 of 100 MHz, base and minimum
    **MCA_RESET, **MTRR_RESET,
}
AMD_RESET = {
    0x8B: 1,                                       # patch level 1
    0xC0010010: 1 << 20,                           # MtrrVarDramEn
    0xC0010015: 1 << 24,                           # TscFreqSel
    0xC001001F: 0,                                 # NB_CFG
    0xC001001A: 128 * MIB,
    0xC001001D: 0,
    **MCA_RESET, **MTRR_RESET,
}
# Handled inside the engine (vmm/_ucvcpu.pyx): the device must never claim them.
ENGINE_MSRS = (0x10, 0x174, 0x175, 0x176, 0x1A0, 0x277, *range(0xC0000080, 0xC0000085), *range(0xC0000100, 0xC0000104))


def make(vendor="intel", features=BASE_FEATURES, advertise=True, ram_size=128 * MIB, cpuid=None, **props):
    cpuid = cpuid or CpuidModel(vendor, features=features)
    if advertise:
        CpuMsrs.advertise(cpuid)
    device = CpuMsrs(FakeContext(ram_size=ram_size), cpuid=cpuid, **props)
    bus = Bus("msr", 1 << 32, (8,), indexed=True)
    device.register(bus)
    return bus, device


def rd(bus, index, host=False):
    return bus.read(index, 8, host=host)


def wr(bus, index, value, host=False):
    return bus.write(index, 8, value, host=host)


def claimed(device) -> set[int]:
    return {r.base + i for r in device.bus_ranges() for i in range(r.size)}


def assert_absent(bus, index):
    """Unowned: the machine turns both accesses into #GP."""
    assert rd(bus, index) is None and wr(bus, index, 0) is False, hex(index)


def assert_refused(bus, index, value, host=False):
    before = rd(bus, index, host=True)
    assert wr(bus, index, value, host=host) is GP, (hex(index), hex(value))
    assert rd(bus, index, host=True) == before


# -- CPUID and which MSRs exist -------------------------------------------------------------------
@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_advertise_sets_mce_mtrr_and_mca_in_cpuid_1_edx(vendor):
    cpuid = CpuidModel(vendor, features=BASE_FEATURES)
    edx_before = cpuid.query(1)[3]
    CpuMsrs.advertise(cpuid)
    assert cpuid.query(1)[3] == edx_before | 1 << 7 | 1 << 12 | 1 << 14


@pytest.mark.parametrize("vendor, reset", [("intel", INTEL_RESET), ("amd", AMD_RESET)])
def test_every_msr_and_its_reset_value(vendor, reset):
    bus, device = make(vendor)
    assert claimed(device) == set(reset)
    for index, value in reset.items():
        assert rd(bus, index) == value, hex(index)


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_never_claims_an_engine_msr(vendor):
    _, device = make(vendor)
    assert not claimed(device) & set(ENGINE_MSRS)


@pytest.mark.parametrize("vendor, other_vendors_msrs", [
    ("intel", (0xC0010010, 0xC0010015, 0xC001001A, 0xC001001D)),
    ("amd", (0x17, 0x3A, 0xCE)),
])
def test_the_other_vendors_msrs_are_absent(vendor, other_vendors_msrs):
    bus, _ = make(vendor)
    for index in other_vendors_msrs:
        assert_absent(bus, index)


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_without_mca_in_cpuid_there_are_no_machine_check_msrs(vendor):
    bus, _ = make(vendor, features=(*BASE_FEATURES, "mce", "mtrr"), advertise=False)
    for index in (0x179, 0x17A, 0x17B, 0x400, 0x401, 0x427):
        assert_absent(bus, index)
    assert rd(bus, 0xFE) == 0x508


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_without_mtrr_in_cpuid_there_are_no_mtrrs(vendor):
    bus, _ = make(vendor, features=(*BASE_FEATURES, "mce", "mca"), advertise=False)
    for index in (0xFE, 0x2FF, 0x200, 0x20F, *FIXED_RANGE_MTRRS):
        assert_absent(bus, index)
    assert rd(bus, 0x179) == 0x10A


@pytest.mark.parametrize("vendor, pmu_config", [
    ("intel", PmuConfig(vendor="intel")),
    ("amd", PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True)),
])
def test_shares_the_msr_bus_with_the_lapic_pmu_and_speculation_control(vendor, pmu_config):
    bus, _ = make(vendor)
    cpuid = CpuidModel(vendor, features=BASE_FEATURES)
    Lapic(FakeClock(), cpuid, FakeVcpu()).attach(Bus("mmio", 1 << 52), bus)
    make_pmu(pmu_config)[0].attach(bus)
    SpeculationControl(lambda: None).register(bus)     # raises OverlapError on any clash
    assert rd(bus, 0x179) == 0x10A


# -- machine-check architecture -----------------------------------------------------------------------
@pytest.mark.parametrize("banks", [1, 3, 32])
def test_bank_count_matches_mcg_cap(banks):
    bus, _ = make(mce_banks=banks)
    assert rd(bus, 0x179) & 0xFF == banks
    for register in range(4):
        assert rd(bus, mc_msr(banks - 1, register)) == 0
    assert_absent(bus, mc_msr(banks, 0))


def test_default_bank_count_and_refused_counts():
    assert CpuMsrs.parse_props({}) == {"mce_banks": 10}
    for banks in (0, 33):
        with pytest.raises(PropertyError):
            make(mce_banks=banks)


def test_no_cmci_so_no_mci_ctl2():
    bus, _ = make()
    assert not rd(bus, 0x179) & 1 << 10
    assert_absent(bus, 0x280)


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_mcg_cap_is_read_only_and_the_host_may_only_write_it_back(vendor):
    bus, _ = make(vendor)
    assert_refused(bus, 0x179, 0x10A)
    assert_refused(bus, 0x179, 0x10B, host=True)
    assert wr(bus, 0x179, 0x10A, host=True) is None


def test_mcg_status_bits_2_to_0_are_writable_and_the_rest_reserved():
    bus, _ = make()
    for value in (0x7, 0x4, 0):
        assert wr(bus, 0x17A, value) is None and rd(bus, 0x17A) == value
    for value in (1 << 3, 1 << 63):   # LMCE_S needs MCG_LMCE_P
        assert_refused(bus, 0x17A, value)
        assert_refused(bus, 0x17A, value, host=True)


def test_mcg_ctl_takes_all_ones_or_all_zeros_only():
    bus, _ = make()
    assert wr(bus, 0x17B, ALL_ONES) is None and rd(bus, 0x17B) == ALL_ONES
    for value in (1, 0xFFFF_FFFF, ALL_ONES >> 1):
        assert_refused(bus, 0x17B, value)
    assert wr(bus, 0x17B, 0) is None and rd(bus, 0x17B) == 0


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_mci_ctl_takes_any_value(vendor):
    bus, _ = make(vendor)
    for value in (ALL_ONES, 0x1234_5678_9ABC_DEF0, 0):
        assert wr(bus, mc_msr(4, 0), value) is None and rd(bus, mc_msr(4, 0)) == value


@pytest.mark.parametrize("vendor", ["intel", "amd"])
@pytest.mark.parametrize("register", [1, 2, 3], ids=["status", "addr", "misc"])
def test_guest_may_only_clear_the_error_log_and_the_host_may_write_it(vendor, register):
    bus, _ = make(vendor)
    index = mc_msr(2, register)
    error = 0xB200_0000_0001_0005
    assert_refused(bus, index, error)
    assert wr(bus, index, error, host=True) is None and rd(bus, index) == error
    assert_refused(bus, index, 1)
    assert wr(bus, index, 0) is None and rd(bus, index) == 0


@pytest.mark.parametrize("register", [1, 2, 3], ids=["status", "addr", "misc"])
def test_amd_mc_status_wr_en_lets_the_guest_write_the_error_log(register):
    bus, _ = make("amd")
    index = mc_msr(0, register)
    assert wr(bus, 0xC0010015, 1 << 18) is None
    assert wr(bus, index, 0x9C00_0000_0000_0135) is None and rd(bus, index) == 0x9C00_0000_0000_0135
    assert wr(bus, 0xC0010015, 0) is None
    assert_refused(bus, index, 0x9C00_0000_0000_0135)


# -- AMD HWCR, SYSCFG, TOP_MEM -----------------------------------------------------------------------
def test_hwcr_tsc_freq_sel_stays_set_and_only_mc_status_wr_en_is_writable():
    bus, _ = make("amd")
    assert wr(bus, 0xC0010015, 1 << 18) is None and rd(bus, 0xC0010015) == 1 << 24 | 1 << 18
    assert wr(bus, 0xC0010015, 0) is None and rd(bus, 0xC0010015) == 1 << 24
    for bit in (0, 9, 30, 63):
        assert_refused(bus, 0xC0010015, 1 << 24 | 1 << bit)


@pytest.mark.parametrize("index", [0xC0010010, 0xC001001A, 0xC001001D])
def test_amd_memory_map_msrs_are_read_only(index):
    bus, _ = make("amd")
    assert_refused(bus, index, rd(bus, index))
    assert_refused(bus, index, 0x4000_0000)


@pytest.mark.parametrize("ram_size, top_mem", [
    (128 * MIB, 128 * MIB), (100 * MIB + 4096, 104 * MIB), (3 * GIB, 3 * GIB),
])
def test_top_mem_is_the_ram_size_rounded_up_to_8_mib(ram_size, top_mem):
    bus, _ = make("amd", ram_size=ram_size)
    assert rd(bus, 0xC001001A) == top_mem


# -- identification and platform ------------------------------------------------------------------
@pytest.mark.parametrize("index", [0x17, 0x3A, 0xCE])
def test_intel_platform_msrs_are_read_only(index):
    bus, _ = make()
    value = rd(bus, index)
    assert_refused(bus, index, value)
    assert_refused(bus, index, value | 1 << 2)
    assert_refused(bus, index, value | 1 << 2, host=True)
    assert wr(bus, index, value, host=True) is None


def test_feature_control_is_locked_with_vmx_and_smx_off():
    bus, _ = make()
    assert rd(bus, 0x3A) == 1
    assert_refused(bus, 0x3A, 1 | 1 << 2)       # enabling VMX outside SMX: locked


def test_microcode_revision_protocol_write_zero_cpuid_read():
    bus, _ = make()
    assert wr(bus, 0x8B, 0) is None
    assert rd(bus, 0x8B) == 1 << 32
    assert wr(bus, 0x8B, 0xDEAD_0000_0000) is None and rd(bus, 0x8B) == 1 << 32


def test_amd_patch_level_is_read_only():
    bus, _ = make("amd")
    assert rd(bus, 0x8B) == 1
    assert_refused(bus, 0x8B, 0)


def test_platform_info_ratio_gives_the_tsc_and_cpuid_0x16_frequency():
    bus, _ = make()
    cpuid_base_mhz = CpuidModel("intel").query(0x16)[0]
    ratio = rd(bus, 0xCE) >> 8 & 0xFF
    assert ratio * 100_000_000 == CLOCK_HZ == cpuid_base_mhz * 1_000_000
    assert not rd(bus, 0xCE) & 1 << 31       # no CPUID faulting


# -- MTRRs ---------------------------------------------------------------------------------------------
def test_mtrrcap_is_read_only():
    bus, _ = make()
    assert_refused(bus, 0xFE, 0x508)
    assert_refused(bus, 0xFE, 0x50A)


@pytest.mark.parametrize("vendor", ["intel", "amd"])
def test_mtrr_def_type_accepts_the_five_memory_types(vendor):
    bus, _ = make(vendor)
    for memory_type in (0, 1, 4, 5, 6):
        value = 1 << 11 | 1 << 10 | memory_type
        assert wr(bus, 0x2FF, value) is None and rd(bus, 0x2FF) == value


@pytest.mark.parametrize("memory_type", [2, 3, 7, 8, 0xFF])
def test_mtrr_def_type_refuses_reserved_memory_types(memory_type):
    bus, _ = make()
    assert_refused(bus, 0x2FF, 1 << 11 | memory_type)


@pytest.mark.parametrize("bit", [8, 9, 12, 63])
def test_mtrr_def_type_refuses_reserved_bits(bit):
    bus, _ = make()
    assert_refused(bus, 0x2FF, 1 << 11 | 6 | 1 << bit)


def test_variable_mtrr_pair_rules():
    bus, _ = make()
    assert wr(bus, 0x202, 0x7FFF_FFFF_F000 | 6) is None     # highest base below MAXPHYADDR 48, WB
    assert wr(bus, 0x203, 0xFFFF_FFFF_F800) is None          # full mask, valid
    for bad_base in (1 << 8 | 6, 1 << 11 | 6, 1 << 48 | 6, 2, 7):
        assert_refused(bus, 0x204, bad_base)
    for bad_mask in (1, 1 << 10, 1 << 48 | 1 << 11):
        assert_refused(bus, 0x205, bad_mask)


def test_maxphyaddr_comes_from_cpuid_0x80000008():
    cpuid = CpuidModel("intel", features=BASE_FEATURES)
    eax, ebx, ecx, edx = cpuid.query(0x80000008)
    cpuid.set_leaf(0x80000008, 0, eax & ~0xFF | 36, ebx, ecx, edx)
    bus, _ = make(cpuid=cpuid)
    assert rd(bus, 0x201) == 0xF_8000_0800                   # the reset mask stops at bit 35
    assert wr(bus, 0x202, 1 << 35 | 6) is None
    assert_refused(bus, 0x202, 1 << 36 | 6)
    assert_refused(bus, 0x203, 1 << 36 | 1 << 11)


@pytest.mark.parametrize("ram_size, base, mask", [
    (128 * MIB, 0x8000_0000, 0xFFFF_8000_0800),
    (2 * GIB + 4096, 0xC000_0000, 0xFFFF_C000_0800),
    (3 * GIB, 0xC000_0000, 0xFFFF_C000_0800),
])
def test_reset_mtrrs_mark_the_block_above_ram_uncached(ram_size, base, mask):
    bus, _ = make(ram_size=ram_size)
    assert (rd(bus, 0x200), rd(bus, 0x201)) == (base, mask)
    assert base >= ram_size and base + ((~mask & 0xFFFF_FFFF_F000) + 0x1000) == 1 << 32


@pytest.mark.parametrize("index", FIXED_RANGE_MTRRS)
def test_fixed_range_mtrrs_take_eight_valid_types(index):
    bus, _ = make()
    assert wr(bus, index, 0x0605_0401_0006_0504) is None and rd(bus, index) == 0x0605_0401_0006_0504


@pytest.mark.parametrize("byte", range(8))
@pytest.mark.parametrize("bad_type", [2, 3, 7, 0x16])
def test_fixed_range_mtrrs_refuse_a_reserved_type_in_any_byte(byte, bad_type):
    bus, _ = make()
    assert_refused(bus, 0x268, 0x0606_0606_0606_0606 & ~(0xFF << 8 * byte) | bad_type << 8 * byte)


# -- save/restore -------------------------------------------------------------------------------------
def _dirty(bus):
    wr(bus, 0xC0010015, 1 << 18)
    wr(bus, mc_msr(1, 0), ALL_ONES)
    wr(bus, mc_msr(1, 1), 0x8000_0000_0000_0001, host=True)
    wr(bus, 0x17B, ALL_ONES)
    wr(bus, 0x268, 0x0505_0505_0505_0505)


def test_state_round_trips():
    bus, device = make("amd")
    _dirty(bus)
    fresh_bus, fresh = make("amd")
    fresh.set_state(device.get_state())
    assert fresh.get_state() == device.get_state()
    assert rd(fresh_bus, mc_msr(1, 1)) == 0x8000_0000_0000_0001
    assert rd(fresh_bus, 0xC0010015) == 1 << 24 | 1 << 18


@pytest.mark.parametrize("change", [
    lambda s: s.update(version=2),
    lambda s: s["msrs"].pop(0x400),
    lambda s: s["msrs"].update({0x179: 0x10B}),          # read-only: another bank count
    lambda s: s["msrs"].update({0x17B: 1}),              # MCG_CTL: neither all 0s nor all 1s
    lambda s: s["msrs"].update({0x2FF: 0x802}),          # reserved memory type
])
def test_set_state_refuses_bad_states_and_changes_nothing(change):
    bus, device = make("amd")
    _dirty(bus)
    state = device.get_state()
    state = {**state, "msrs": dict(state["msrs"])}
    change(state)
    fresh_bus, fresh = make("amd")
    before = fresh.get_state()
    with pytest.raises(ValueError):
        fresh.set_state(state)
    assert fresh.get_state() == before


def test_amd_nb_cfg_keeps_only_the_extended_configuration_bit():
    from devices.bus import GP
    from devices.cpu_msrs import MSR_AMD_NB_CFG, NB_CFG_ENABLE_CF8_EXT_CFG
    bus, _ = make("amd")
    assert rd(bus, MSR_AMD_NB_CFG) == 0
    assert wr(bus, MSR_AMD_NB_CFG, NB_CFG_ENABLE_CF8_EXT_CFG) is None
    assert rd(bus, MSR_AMD_NB_CFG) == NB_CFG_ENABLE_CF8_EXT_CFG
    assert wr(bus, MSR_AMD_NB_CFG, 1) is GP
    assert rd(make("intel")[0], MSR_AMD_NB_CFG) is None
