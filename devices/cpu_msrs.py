# SPDX-License-Identifier: GPL-2.0-or-later
"""Architectural MSRs every x86 CPU has: machine-check banks, MTRRs, identification.

One device per vCPU, constructed as ``CpuMsrs(ctx, cpuid=model)``.  Which MSRs exist follows the
CPUID model at construction time: the vendor, CPUID.1:EDX.MCA (bit 14) and CPUID.1:EDX.MTRR
(bit 12).  Every other index stays unclaimed, so the guest gets #GP as for any unknown MSR.
:meth:`CpuMsrs.advertise` sets CPUID.1:EDX MCE, MCA and MTRR; the machine calls it right after
building the CPUID model and before applying the user's CPUID overrides, so those can still turn
a feature (and with it its MSRs) off.

Machine-check architecture (Intel SDM Vol. 3B ch. 15, AMD APM Vol. 2 ch. 9), when CPUID has MCA:

* IA32_MCG_CAP (0x179) is read-only: ``mce_banks`` banks (default 10, as QEMU) and MCG_CTL_P.
  No other capability is advertised (no CMCI, threshold status, software recovery, LMCE), so
  IA32_MCi_CTL2 (0x280+i), IA32_MCG_EXT_CTL and the extended state MSRs do not exist.
* IA32_MCG_STATUS (0x17A): RIPV, EIPV and MCIP (bits 2:0) are writable, the rest is reserved.
* IA32_MCG_CTL (0x17B) takes all 0s or all 1s (the only two values the SDM defines).
* Bank i at 0x400 + 4*i: MCi_CTL takes any value; MCi_STATUS, MCi_ADDR and MCi_MISC may only be
  cleared (written with 0) by the guest, as the SDM says for all three.  On AMD, HWCR.McStatusWrEn
  lifts that restriction (error injection).  The host may write anything (it stands for the
  hardware that logs errors).  At most 32 banks: bank 32 would start at 0x480, IA32_VMX_BASIC.

MTRRs (SDM Vol. 3A "Memory Type Range Registers"), when CPUID has MTRR, on both vendors:
IA32_MTRRCAP (0xFE) reads 0x508 (8 variable ranges, fixed ranges, WC); IA32_MTRR_DEF_TYPE
(0x2FF), 8 PHYSBASE/PHYSMASK pairs (0x200-0x20F) and 11 fixed-range MTRRs (0x250, 0x258, 0x259,
0x268-0x26F).  Writes #GP on reserved bits (including address bits at or above MAXPHYADDR, from
CPUID 0x80000008) and on memory types other than UC, WC, WT, WP and WB (0, 1, 4, 5, 6).
The machine has no BIOS, so the MTRRs start as firmware leaves them rather than at the SDM's
power-up value (disabled): enabled, default type WB, and variable range 0 marking as UC the
largest naturally aligned block below 4 GiB that holds no RAM (where the MMIO devices live).
Linux 6.1 would turn PAT off too if it found the MTRRs disabled.

Identification: IA32_BIOS_SIGN_ID (0x8B) reads microcode revision 1 in bits 63:32 on Intel;
writes (the "write 0, CPUID, read" protocol) are accepted and change nothing, since the
revision never changes.  On AMD the same index is PATCH_LEVEL, read-only, level 1 in bits 31:0.
Intel only: IA32_PLATFORM_ID (0x17, read-only, platform 0), IA32_FEATURE_CONTROL (0x3A: locked,
VMX and SMX off, so writes #GP) and MSR_PLATFORM_INFO (0xCE, read-only: the TSC runs at ratio 10
of the 100 MHz bus clock, i.e. CPUID 0x16's 1000 MHz; no CPUID faulting, no programmable limits).
AMD only: SYSCFG (0xC0010010: MtrrVarDramEn, so TOP_MEM is in effect), TOP_MEM (0xC001001A: RAM
size rounded up to 8 MiB), TOP_MEM2 (0xC001001D: 0, no RAM above 4 GiB), all read-only because
the guest cannot move RAM; HWCR (0xC0010015): TscFreqSel reads 1 (the TSC counts at P0, which
Linux checks) and ignores writes, McStatusWrEn is writable, every other bit is #GP if set; NB_CFG
(0xC001001F): only EnableCf8ExtCfg (bit 46) is writable, other bits read 0 and #GP if set (it has
no effect: the PCI host serves the 256-byte configuration space only).

Read-only MSRs #GP on guest writes; a host write of the value the MSR holds is accepted, so a
host that saves and restores every MSR it can read works.  :meth:`get_state`/:meth:`set_state`
save and restore all values through the host write rules.

IA32_TSC and IA32_TSC_ADJUST are the hook layer's (vmm/_ucvcpu.pyx), not this device's.

Not supported: CMCI, LMCE, AMD's scalable
MCA and threshold blocks, AMD's fixed-MTRR RdMem/WrMem extension (SYSCFG.MtrrFixDramModEn is
0), IORRs, SMRRs, raising machine-check exceptions, and any effect of memory types (the engine
has no caches): MTRRs only hold what the guest writes.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
from collections.abc import Callable
from typing import NamedTuple

from devices.bus import GP
from devices.device import BusRange, Device, Prop, PropertyError
from vmm.clock import CLOCK_HZ

ALL_ONES = (1 << 64) - 1
STATE_VERSION = 1

# -- machine-check architecture ----------------------------------------------------------------
IA32_MCG_CAP = 0x179
IA32_MCG_STATUS = 0x17A
IA32_MCG_CTL = 0x17B
IA32_MC0_CTL = 0x400
MC_BANK_MSRS = 4                  # CTL, STATUS, ADDR, MISC
MC_CTL, MC_STATUS, MC_ADDR, MC_MISC = range(MC_BANK_MSRS)
MCG_CTL_P = 1 << 8
MCG_STATUS_WRITABLE = 0x7         # RIPV, EIPV, MCIP; LMCE_S (bit 3) would need MCG_LMCE_P
MCE_BANKS = 10
MAX_MCE_BANKS = 32

# -- identification and platform ---------------------------------------------------------------
IA32_PLATFORM_ID = 0x17
IA32_FEATURE_CONTROL = 0x3A
IA32_BIOS_SIGN_ID = 0x8B          # AMD: PATCH_LEVEL
MSR_PLATFORM_INFO = 0xCE
FEATURE_CONTROL_LOCK = 1 << 0
MICROCODE_REVISION = 1
BUS_CLOCK_HZ = 100_000_000        # PLATFORM_INFO ratios are multiples of this clock
PLATFORM_INFO_MAX_NON_TURBO_SHIFT = 8
PLATFORM_INFO_MAX_EFFICIENCY_SHIFT = 40

# -- MTRRs -------------------------------------------------------------------------------------
IA32_MTRRCAP = 0xFE
IA32_MTRR_PHYSBASE0 = 0x200       # pair n: PHYSBASE at 0x200 + 2n, PHYSMASK at 0x201 + 2n
IA32_MTRR_DEF_TYPE = 0x2FF
FIXED_RANGE_MTRRS = (0x250, 0x258, 0x259, *range(0x268, 0x270))
VARIABLE_MTRRS = 8
MTRRCAP_FIX = 1 << 8
MTRRCAP_WC = 1 << 10
MTRR_UC, MTRR_WC, MTRR_WT, MTRR_WP, MTRR_WB = 0, 1, 4, 5, 6
MTRR_TYPES = frozenset({MTRR_UC, MTRR_WC, MTRR_WT, MTRR_WP, MTRR_WB})
MTRR_TYPE_MASK = 0xFF
DEF_TYPE_FE = 1 << 10             # fixed-range MTRRs enabled
DEF_TYPE_E = 1 << 11              # MTRRs enabled
PHYSMASK_VALID = 1 << 11
PAGE_MASK = ~0xFFF
DEFAULT_PHYS_ADDRESS_BITS = 36    # what the SDM says when CPUID 0x80000008 is missing

# -- AMD ---------------------------------------------------------------------------------------
MSR_AMD_SYSCFG = 0xC0010010
MSR_AMD_HWCR = 0xC0010015
MSR_AMD_NB_CFG = 0xC001001F
NB_CFG_ENABLE_CF8_EXT_CFG = 1 << 46     # extended PCI configuration through 0xCF8 (Linux sets it)
MSR_AMD_TOP_MEM = 0xC001001A
MSR_AMD_TOP_MEM2 = 0xC001001D
SYSCFG_MTRR_VAR_DRAM_EN = 1 << 20
HWCR_MC_STATUS_WR_EN = 1 << 18
HWCR_TSC_FREQ_SEL = 1 << 24
TOP_MEM_GRANULE = 8 << 20         # TOP_MEM holds address bits 47:23

FOUR_GIB = 1 << 32

#: ``(current, value, host) -> new value``, or None to refuse the write with #GP.
WriteRule = Callable[[int, int, bool], "int | None"]


class Msr(NamedTuple):
    """One MSR of the table: its reset value and the rule its writes follow."""

    reset: int
    write: WriteRule


def mc_msr(bank: int, register: int) -> int:
    """Index of bank ``bank``'s register ``register`` (MC_CTL, MC_STATUS, MC_ADDR or MC_MISC)."""
    return IA32_MC0_CTL + MC_BANK_MSRS * bank + register


def read_only(current: int, value: int, host: bool) -> int | None:
    """Fixed by the hardware or locked by firmware: only the host may write back what it reads."""
    return current if host and value == current else None


def any_value(current: int, value: int, host: bool) -> int | None:
    return value


def all_or_nothing(current: int, value: int, host: bool) -> int | None:
    return value if value in (0, ALL_ONES) else None


def nb_cfg(current: int, value: int, host: bool) -> int | None:
    return None if value & ~NB_CFG_ENABLE_CF8_EXT_CFG else value


def mcg_status(current: int, value: int, host: bool) -> int | None:
    return None if value & ~MCG_STATUS_WRITABLE else value


def ignored(current: int, value: int, host: bool) -> int | None:
    """Accepted and without effect: the microcode revision is whatever CPUID last loaded, and
    loading never changes it here."""
    return current


def mtrr_fixed(current: int, value: int, host: bool) -> int | None:
    """Eight memory-type bytes, one per sub-range; each must be a valid type."""
    fields = ((value >> shift) & MTRR_TYPE_MASK for shift in range(0, 64, 8))
    return value if all(t in MTRR_TYPES for t in fields) else None


def mtrr_def_type(current: int, value: int, host: bool) -> int | None:
    if value & ~(MTRR_TYPE_MASK | DEF_TYPE_FE | DEF_TYPE_E) or (value & MTRR_TYPE_MASK) not in MTRR_TYPES:
        return None
    return value


def phys_address_bits(cpuid) -> int:
    """MAXPHYADDR: CPUID 0x80000008:EAX[7:0], or 36 without that leaf."""
    if cpuid.query(0x80000000)[0] >= 0x80000008:
        return cpuid.query(0x80000008)[0] & 0xFF
    return DEFAULT_PHYS_ADDRESS_BITS


def uncached_block(ram_size: int) -> int:
    """Size of the largest naturally aligned block that ends at 4 GiB and holds no RAM."""
    size = FOUR_GIB // 2
    while size > 0x1000 and FOUR_GIB - size < ram_size:
        size //= 2
    return size


class CpuMsrs(Device):
    """The architectural MSRs of one vCPU (see the module docstring for the list and the rules)."""

    name = "cpu-msrs"
    description = "architectural MSRs: machine-check banks, MTRRs, microcode and platform identification"
    props = (Prop("mce_banks", int, MCE_BANKS, f"machine-check banks in IA32_MCG_CAP (1-{MAX_MCE_BANKS})"),)
    user_creatable = False

    @staticmethod
    def advertise(cpuid) -> None:
        """Set the CPUID bits this device backs: CPUID.1:EDX MCE (7), MTRR (12) and MCA (14)."""
        for feature in ("mce", "mtrr", "mca"):
            cpuid.set_feature(feature, True)

    def __init__(self, ctx, cpuid, mce_banks: int = MCE_BANKS):
        if not 1 <= mce_banks <= MAX_MCE_BANKS:
            raise PropertyError(f"cpu-msrs: mce_banks {mce_banks} is not 1-{MAX_MCE_BANKS}")
        self.vendor = cpuid.vendor
        self.mce_banks = mce_banks
        self._phys_mask = ((1 << phys_address_bits(cpuid)) - 1) & PAGE_MASK
        self._msrs: dict[int, Msr] = {}
        self._add_identification(ctx)
        if cpuid.has("mca"):
            self._add_machine_check()
        if cpuid.has("mtrr"):
            self._add_mtrrs(ctx.ram_size)
        self.values = {index: msr.reset for index, msr in self._msrs.items()}

    # -- the MSR table ---------------------------------------------------------------------------
    def _add_identification(self, ctx) -> None:
        if self.vendor == "intel":
            ratio = CLOCK_HZ // BUS_CLOCK_HZ    # no frequency scaling: one ratio is base, max and min
            self._msrs |= {
                IA32_PLATFORM_ID: Msr(0, read_only),
                IA32_FEATURE_CONTROL: Msr(FEATURE_CONTROL_LOCK, read_only),
                IA32_BIOS_SIGN_ID: Msr(MICROCODE_REVISION << 32, ignored),
                MSR_PLATFORM_INFO: Msr(ratio << PLATFORM_INFO_MAX_NON_TURBO_SHIFT
                                       | ratio << PLATFORM_INFO_MAX_EFFICIENCY_SHIFT, read_only),
            }
        else:
            top_mem = (ctx.ram_size + TOP_MEM_GRANULE - 1) // TOP_MEM_GRANULE * TOP_MEM_GRANULE   # rounded up
            self._msrs |= {
                IA32_BIOS_SIGN_ID: Msr(MICROCODE_REVISION, read_only),
                MSR_AMD_SYSCFG: Msr(SYSCFG_MTRR_VAR_DRAM_EN, read_only),
                MSR_AMD_HWCR: Msr(HWCR_TSC_FREQ_SEL, self._hwcr),
                MSR_AMD_NB_CFG: Msr(0, nb_cfg),
                MSR_AMD_TOP_MEM: Msr(top_mem, read_only),
                MSR_AMD_TOP_MEM2: Msr(0, read_only),
            }

    def _add_machine_check(self) -> None:
        self._msrs |= {
            IA32_MCG_CAP: Msr(MCG_CTL_P | self.mce_banks, read_only),
            IA32_MCG_STATUS: Msr(0, mcg_status),
            IA32_MCG_CTL: Msr(0, all_or_nothing),
        }
        bank_rules = {MC_CTL: any_value, MC_STATUS: self._error_log, MC_ADDR: self._error_log,
                      MC_MISC: self._error_log}
        for bank in range(self.mce_banks):
            for register, rule in bank_rules.items():
                self._msrs[mc_msr(bank, register)] = Msr(0, rule)

    def _add_mtrrs(self, ram_size: int) -> None:
        self._msrs[IA32_MTRRCAP] = Msr(MTRRCAP_WC | MTRRCAP_FIX | VARIABLE_MTRRS, read_only)
        self._msrs[IA32_MTRR_DEF_TYPE] = Msr(DEF_TYPE_E | MTRR_WB, mtrr_def_type)
        for index in FIXED_RANGE_MTRRS:
            self._msrs[index] = Msr(0, mtrr_fixed)
        # Firmware's map: everything WB (the default type) except the MMIO block below 4 GiB.
        hole = uncached_block(ram_size)
        uncached = (FOUR_GIB - hole | MTRR_UC, self._phys_mask & -hole | PHYSMASK_VALID)
        for n in range(VARIABLE_MTRRS):
            base, mask = uncached if n == 0 else (0, 0)
            self._msrs[IA32_MTRR_PHYSBASE0 + 2 * n] = Msr(base, self._mtrr_physbase)
            self._msrs[IA32_MTRR_PHYSBASE0 + 2 * n + 1] = Msr(mask, self._mtrr_physmask)

    # -- write rules that depend on the configuration or on other MSRs ----------------------------
    def _error_log(self, current: int, value: int, host: bool) -> int | None:
        """MCi_STATUS/ADDR/MISC: the guest may only clear them, unless AMD's McStatusWrEn is set."""
        if value == 0 or host or (self.vendor == "amd" and self.values[MSR_AMD_HWCR] & HWCR_MC_STATUS_WR_EN):
            return value
        return None

    def _hwcr(self, current: int, value: int, host: bool) -> int | None:
        if value & ~(HWCR_MC_STATUS_WR_EN | HWCR_TSC_FREQ_SEL):
            return None
        return value & HWCR_MC_STATUS_WR_EN | HWCR_TSC_FREQ_SEL

    def _mtrr_physbase(self, current: int, value: int, host: bool) -> int | None:
        if value & ~(self._phys_mask | MTRR_TYPE_MASK) or (value & MTRR_TYPE_MASK) not in MTRR_TYPES:
            return None
        return value

    def _mtrr_physmask(self, current: int, value: int, host: bool) -> int | None:
        return None if value & ~(self._phys_mask | PHYSMASK_VALID) else value

    # -- bus protocol ----------------------------------------------------------------------------
    def bus_ranges(self) -> list[BusRange]:
        """The claimed indices, merged into runs of consecutive MSRs."""
        ranges: list[BusRange] = []
        for index in sorted(self._msrs):
            if ranges and ranges[-1].base + ranges[-1].size == index:
                ranges[-1] = ranges[-1]._replace(size=ranges[-1].size + 1)
            else:
                ranges.append(BusRange("msr", index, 1))
        return ranges

    def read(self, access):
        return self.values[access.address]

    def write(self, access, value: int):
        index = access.address
        new = self._msrs[index].write(self.values[index], value & ALL_ONES, access.host)
        if new is None:
            return GP
        self.values[index] = new
        return None

    # -- save/restore ----------------------------------------------------------------------------
    def get_state(self) -> dict:
        return {"version": STATE_VERSION, "msrs": dict(self.values)}

    def set_state(self, state: dict) -> None:
        """Restore every MSR through the host write rules; refuse (changing nothing) a state from
        another version or configuration, or with a value the host could not write."""
        if state.get("version") != STATE_VERSION:
            raise ValueError(f"cpu-msrs: state version {state.get('version')!r}, expected {STATE_VERSION}")
        saved = state["msrs"]
        if saved.keys() != self._msrs.keys():
            raise ValueError("cpu-msrs: state is for a different set of MSRs (vendor, CPUID or bank count)")
        restored = {}
        for index, msr in self._msrs.items():
            new = msr.write(self.values[index], saved[index], True)
            if new is None:
                raise ValueError(f"cpu-msrs: MSR {index:#x} cannot hold {saved[index]:#x}")
            restored[index] = new
        self.values = restored

