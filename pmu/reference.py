# SPDX-License-Identifier: GPL-2.0-or-later
"""A pure-Python reference model of the PMU, written for obviousness rather than speed.

It implements the same rules as the C core (pmu/_core.pyx) in a different way, so that a
property test can compare the two:

* whether a counter runs is recomputed from the architectural state whenever it is needed;
* events are applied one cycle and one increment at a time, so CMASK/INV/EDGE and overflow
  follow their definitions literally (see the core's module docstring for the cycle model);
* MSRs are looked up in a freshly built table of ``index -> (kind, counter)``.

It offers the Python-level API of :class:`pmu._core.PmuCore` (read_msr, write_msr, read_pmc,
feed, feed_block, reset, set_filter, take_pmi_request, pmi_requested, global_status, ...).

Not modelled: the VMware pseudo-PMCs, time-slice housekeeping (cleanup) and save/restore;
feeding large counts is slow by design.
"""

from __future__ import annotations

from pmu import events

GP_SLOTS = 8  # fixed counter i is slot 8 + i, as in the core


def _sign_extend32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


class ReferencePmu:
    def __init__(self, config):
        self.config = config
        self.amd = config.vendor == "amd"
        self.num_gp = config.gp_counters if config.version else 0
        self.num_fixed = config.fixed_counters if config.version else 0
        self.widths = {i: config.gp_width for i in range(self.num_gp)}
        self.widths.update({GP_SLOTS + i: config.fixed_width for i in range(self.num_fixed)})
        self.filter = None
        self.perf_capabilities = config.perf_capabilities if (config.pdcm and config.version) else 0
        self.reset()

    def reset(self) -> None:
        self.value = dict.fromkeys(self.widths, 0)
        self.eventsel = dict.fromkeys(range(self.num_gp), 0)
        self.fixed_ctr_ctrl = 0
        self.global_status = 0
        gp_bits = sum(1 << i for i in range(self.num_gp))
        fixed_bits = sum(1 << (32 + i) for i in range(self.num_fixed))
        self.global_ctrl = gp_bits | (fixed_bits if self.config.global_ctrl_reset == "seed" else 0)
        self.pmi_requested = False
        self.programmed_config: dict[int, int] = {}
        self.prev_cond = dict.fromkeys(self.widths, False)

    # -- counter state --------------------------------------------------------------------------
    def status_bit(self, slot: int) -> int:
        return 1 << slot if slot < GP_SLOTS else 1 << (32 + slot - GP_SLOTS)

    def control(self, slot: int) -> int:
        if slot < GP_SLOTS:
            return self.eventsel[slot]
        return (self.fixed_ctr_ctrl >> (4 * (slot - GP_SLOTS))) & 0xF

    def running(self, slot: int) -> bool:
        ctl = self.control(slot)
        if slot < GP_SLOTS:
            enabled = bool(ctl & (1 << 22))
            allowed = self.filter is None or self.filter.allows(ctl)
        else:
            enabled = bool(ctl & 3)
            allowed = self.filter is None or self.filter.allows_fixed(slot - GP_SLOTS)
        globally = self.config.version < 2 or bool(self.global_ctrl & self.status_bit(slot))
        return enabled and globally and allowed

    def _settle(self) -> None:
        """After any change: a counter that runs with a new configuration starts afresh."""
        for slot in self.widths:
            if self.running(slot) and self.programmed_config.get(slot) != self.control(slot):
                self.programmed_config[slot] = self.control(slot)
                self.prev_cond[slot] = False

    def what(self, slot: int):
        """(generic event, counts at CPL0, counts at CPL>0, cmask, inv, edge, pmi) of a counter."""
        ctl = self.control(slot)
        if slot >= GP_SLOTS:
            return events.INTEL_FIXED_EVENTS[slot - GP_SLOTS], bool(ctl & 1), bool(ctl & 2), 0, False, False, \
                bool(ctl & 8)
        generic = events.decode(self.config.vendor, ctl, self.config.unavailable_events)
        return (generic, bool(ctl >> 17 & 1), bool(ctl >> 16 & 1), (ctl >> 24) & 0xFF, bool(ctl >> 23 & 1),
                bool(ctl >> 18 & 1), bool(ctl >> 20 & 1))

    # -- MSRs -----------------------------------------------------------------------------------
    def msr_table(self) -> dict[int, tuple[str, int]]:
        table: dict[int, tuple[str, int]] = {}
        if self.config.version == 0:
            return table
        if self.amd:
            for i in range(min(self.num_gp, 4)):
                table[0xC0010000 + i] = ("evtsel", i)
                table[0xC0010004 + i] = ("counter", i)
            if self.config.perfctr_core:
                for i in range(self.num_gp):
                    table[0xC0010200 + 2 * i] = ("evtsel", i)
                    table[0xC0010201 + 2 * i] = ("counter", i)
            if self.config.version >= 2:
                table.update({0xC0000300: ("status", 0), 0xC0000301: ("ctrl", 0), 0xC0000302: ("clear", 0),
                              0xC0000303: ("set", 0)})
            return table
        for i in range(self.num_gp):
            table[0xC1 + i] = ("perfctr", i)
            table[0x186 + i] = ("evtsel", i)
            if self.perf_capabilities & (1 << 13):
                table[0x4C1 + i] = ("pmc", i)
        for i in range(self.num_fixed):
            table[0x309 + i] = ("counter", GP_SLOTS + i)
        if self.config.version >= 2:
            table.update({0x38D: ("fixed_ctrl", 0), 0x38E: ("status", 0), 0x38F: ("ctrl", 0), 0x390: ("clear", 0)})
        if self.config.pdcm:
            table[0x345] = ("caps", 0)
        return table

    def ctrl_valid_bits(self) -> int:
        return sum(1 << i for i in range(self.num_gp)) | sum(1 << (32 + i) for i in range(self.num_fixed))

    def status_valid_bits(self) -> int:
        return self.ctrl_valid_bits() | (0 if self.amd else 3 << 62)

    def read_msr(self, index: int, host: bool = False):
        kind, slot = self.msr_table().get(index, (None, 0))
        if kind is None:
            return None
        if kind in ("perfctr", "pmc", "counter"):
            return self.value[slot]
        return {"evtsel": lambda: self.eventsel[slot], "fixed_ctrl": lambda: self.fixed_ctr_ctrl,
                "status": lambda: self.global_status, "ctrl": lambda: self.global_ctrl,
                "caps": lambda: self.perf_capabilities}.get(kind, lambda: 0)()

    def write_msr(self, index: int, value: int, host: bool = False) -> bool:
        kind, slot = self.msr_table().get(index, (None, 0))
        if kind is None:
            return False
        ok = self._write(kind, slot, value, host)
        self._settle()
        return ok

    def _write(self, kind: str, slot: int, value: int, host: bool) -> bool:
        width_mask = (1 << self.widths.get(slot, 64)) - 1
        if kind == "perfctr":
            self.value[slot] = (value if host else _sign_extend32(value)) & width_mask
        elif kind == "pmc":
            if value > width_mask:
                return False
            self.value[slot] = value
        elif kind == "counter":
            self.value[slot] = value & width_mask
        elif kind == "evtsel":
            if self.amd:
                value &= ~0xFFFFFCF000280000
            else:
                reserved = 0xFFFFFFFF00200000 & ~(3 << 32 if self.config.tsx else 0)
                if value & reserved:
                    return False
            self.eventsel[slot] = value
        elif kind == "fixed_ctrl":
            allowed = sum(0xB << (4 * i) for i in range(self.num_fixed))
            if value & ~allowed:
                return False
            self.fixed_ctr_ctrl = value
        elif kind == "ctrl":
            if value & ~self.ctrl_valid_bits():
                return False
            self.global_ctrl = value
        elif kind == "status":
            if not host:
                return self.amd
            if value & ~self.status_valid_bits():
                return False
            self.global_status = value
        elif kind in ("clear", "set"):
            lenient = self.amd and kind == "clear"  # AMD's STATUS_CLR ignores bits without a counter
            if value & ~self.status_valid_bits() and not lenient:
                return False
            if not host:
                self.global_status = self.global_status & ~value if kind == "clear" else self.global_status | value
        elif kind == "caps":
            if not host or value & ~(1 << 13):
                return False
            self.perf_capabilities = value
        return True

    def set_filter(self, event_filter) -> None:
        self.filter = event_filter
        self._settle()

    # -- RDPMC ------------------------------------------------------------------------------------
    def read_pmc(self, ecx: int, cpl: int, cr0: int, cr4: int):
        if self.config.version == 0:
            return None
        seed = self.config.rdpmc_fast == "seed"
        fast = seed and bool(ecx & (1 << 31))
        index = ecx & 0x3FFFFFFF if seed else ecx
        if self.amd:
            slot = index if index < self.num_gp else None
        else:
            fixed = bool(ecx & (1 << 30)) if seed else (ecx >> 16) == 0x4000
            if not seed and (ecx >> 16) not in (0, 0x4000):
                return None
            if not seed:
                index = ecx & 0xFFFF
            if fixed:
                slot = GP_SLOTS + index if index < self.num_fixed else None
            else:
                slot = index if index < self.num_gp else None
        if slot is None:
            return None
        if not cr4 & (1 << 8) and cpl != 0 and cr0 & 1:
            return None
        value = self.value[slot]
        return value & 0xFFFFFFFF if fast else value

    # -- counting ---------------------------------------------------------------------------------
    def _increment(self, slot: int) -> None:
        self.value[slot] += 1
        if self.value[slot] == 1 << self.widths[slot]:
            self.value[slot] = 0
            self.global_status |= self.status_bit(slot)
            if self.what(slot)[6]:
                self.pmi_requested = True

    def _cycle(self, increments: dict[int, int], cpl: int) -> None:
        """One cycle in which generic event e increments by increments[e] (absent: not fed)."""
        for slot in self.widths:
            if not self.running(slot):
                continue
            generic, kernel, user, cmask, inv, edge, _ = self.what(slot)
            if generic not in increments or not (user if cpl else kernel):
                continue
            inc = increments[generic]
            if cmask == 0 and not edge:
                for _ in range(inc):
                    self._increment(slot)
                continue
            cond = inc >= 1 if cmask == 0 else (inc < cmask if inv else inc >= cmask)
            if edge:
                if cond and not self.prev_cond[slot]:
                    self._increment(slot)
                self.prev_cond[slot] = cond
            elif cond:
                self._increment(slot)

    def feed(self, event: int, n: int, cpl: int) -> None:
        for _ in range(n):
            self._cycle({event: 1}, cpl)

    def feed_block(self, insns: int, branches: int, cpl: int, conditional: int = 0) -> None:
        branches = min(branches, insns)
        conditional = min(conditional, branches)
        for i in range(insns):
            self._cycle({events.INSTRUCTIONS: 1, events.CORE_CYCLES: 1, events.REF_CYCLES: 1,
                         events.BRANCHES: int(i >= insns - branches),
                         events.COND_BRANCHES: int(i >= insns - conditional)}, cpl)

    def take_pmi_request(self) -> bool:
        pending, self.pmi_requested = self.pmi_requested, False
        return pending
