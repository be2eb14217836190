# SPDX-License-Identifier: GPL-2.0-or-later
"""Stateful property test: the Cython core against the pure-Python reference model."""

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from pmu import ALLOW, DENY, MASKED_EVENTS, EventFilter, PmuConfig
from pmu._core import PmuCore
from pmu.reference import ReferencePmu

CONFIGS = [
    PmuConfig(gp_counters=4, gp_width=32, fixed_counters=3, fixed_width=32),
    PmuConfig(gp_counters=2, gp_width=40, fixed_counters=1, fixed_width=36, events_mask=0x21,
              global_ctrl_reset="seed", rdpmc_fast="seed", tsx=True),
    PmuConfig(version=1, gp_counters=2, gp_width=32, fixed_counters=0),
    PmuConfig(gp_counters=2, gp_width=32, pdcm=False, full_width_writes=False),
    PmuConfig(vendor="amd"),
    PmuConfig(vendor="amd", perfctr_core=True, rdpmc_fast="seed"),
    PmuConfig(vendor="amd", perfctr_core=True, perfmon_v2=True, gp_counters=3),
]

INTEL_MSRS = [0xC1, 0xC2, 0xC5, 0x4C1, 0x4C2, 0x186, 0x187, 0x189, 0x309, 0x30A, 0x30B, 0x345, 0x38D, 0x38E,
              0x38F, 0x390]
AMD_MSRS = [0xC0010000, 0xC0010001, 0xC0010003, 0xC0010004, 0xC0010005, 0xC0010007, 0xC0010200, 0xC0010201,
            0xC0010204, 0xC0010205, 0xC001020A, 0xC001020B, 0xC0000300, 0xC0000301, 0xC0000302, 0xC0000303]

EVENT_CODES = [0x3C, 0xC0, 0x13C, 0x4F2E, 0x412E, 0xC4, 0xC5, 0x300, 0x76, 0xC2, 0xC3, 0x77D, 0xD0, 0x1_0000_00C0]

evtsel = st.builds(
    lambda code, en, os_, usr, int_, edge, inv, cmask, junk: (
        code | en << 22 | os_ << 17 | usr << 16 | int_ << 20 | edge << 18 | inv << 23 | cmask << 24 | junk),
    st.sampled_from(EVENT_CODES), st.integers(0, 1), st.integers(0, 1), st.integers(0, 1), st.integers(0, 1),
    st.integers(0, 1), st.integers(0, 1), st.sampled_from([0, 0, 1, 2]),
    st.sampled_from([0, 0, 0, 0, 1 << 21, 1 << 32, 1 << 33, 1 << 40, 1 << 63, 1 << 19]))
counter_value = st.one_of(
    st.sampled_from([0, 1, 0x7FFFFFFF, 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFF8, 0xFF_FFFF_FFFD, (1 << 48) - 2,
                     0xFFFF_FFFF_FFFF_FFFF, 0x8000_0000]),
    st.integers(0, (1 << 64) - 1))
global_value = st.one_of(st.sampled_from([0, 1, 3, 0xF, 0x7 << 32, 0x3 | 1 << 32, 1 << 62, 1 << 8]),
                         st.integers(0, (1 << 64) - 1))
fixed_ctrl = st.one_of(st.sampled_from([0, 1, 2, 3, 0xB, 0xB0, 0x333, 0xBBB, 0x4, 0x1000]), st.integers(0, 0xFFFF))


class CoreVersusReference(RuleBasedStateMachine):
    @initialize(config=st.sampled_from(CONFIGS))
    def setup(self, config):
        self.config = config
        self.core = PmuCore()
        self.core.configure(config)
        self.ref = ReferencePmu(config)
        self.msrs = AMD_MSRS if config.vendor == "amd" else INTEL_MSRS

    def both(self, method, *args):
        a = getattr(self.core, method)(*args)
        b = getattr(self.ref, method)(*args)
        assert a == b, f"{method}{args}: core {a!r} reference {b!r}"

    @rule(data=st.data(), host=st.booleans())
    def write_evtsel_or_counter(self, data, host):
        index = data.draw(st.sampled_from(self.msrs))
        low = index & 0xFFF
        if self.config.vendor == "amd":
            is_sel = (index < 0xC0010004) or (0xC0010200 <= index and not index & 1)
            value = data.draw(evtsel if is_sel and index < 0xC0000300 else
                              global_value if index >= 0xC0000300 else counter_value)
        elif low in (0x38E, 0x38F, 0x390, 0x345):
            value = data.draw(global_value)
        elif low == 0x38D:
            value = data.draw(fixed_ctrl)
        else:
            value = data.draw(evtsel if 0x186 <= low < 0x190 else counter_value)
        self.both("write_msr", index, value, host)

    @rule(n=st.integers(0, 1), distance=st.integers(1, 6), extra=st.sampled_from([0, 0, 1 << 18, 1 << 24]))
    def arm_counter(self, n, distance, extra):
        """Program GP counter n to count instructions with a PMI, a few events before overflow."""
        sel = (1 << 22) | (3 << 16) | (1 << 20) | 0xC0 | extra
        if self.config.vendor == "amd":
            sel_msr, ctr_msr, width = 0xC0010000 + n, 0xC0010004 + n, 48
        else:
            sel_msr, ctr_msr, width = 0x186 + n, 0xC1 + n, self.config.gp_width
        self.both("write_msr", sel_msr, sel, False)
        self.both("write_msr", ctr_msr, (1 << width) - distance, True)

    @rule(data=st.data(), host=st.booleans())
    def read(self, data, host):
        self.both("read_msr", data.draw(st.sampled_from(self.msrs)), host)

    @rule(event=st.integers(0, 7), n=st.integers(0, 12), cpl=st.sampled_from([0, 3]))
    def feed(self, event, n, cpl):
        self.both("feed", event, n, cpl)

    @rule(insns=st.integers(0, 12), branches=st.integers(0, 2), cpl=st.sampled_from([0, 3]))
    def feed_block(self, insns, branches, cpl):
        self.both("feed_block", insns, branches, cpl)

    @rule(ecx=st.sampled_from([0, 1, 2, 3, 5, 6, 0x40000000, 0x40000001, 0x40000003, 0x80000000, 0xC0000001,
                               0x10000, 0x4000_0000 | 1 << 16]),
          cpl=st.sampled_from([0, 3]), cr0=st.sampled_from([0, 1]), cr4=st.sampled_from([0, 1 << 8]))
    def rdpmc(self, ecx, cpl, cr0, cr4):
        self.both("read_pmc", ecx, cpl, cr0, cr4)

    @rule(action=st.sampled_from([ALLOW, DENY]), masked=st.booleans(),
          codes=st.lists(st.sampled_from(EVENT_CODES), max_size=3), fixed=st.integers(0, 7), none=st.booleans())
    def set_filter(self, action, masked, codes, fixed, none):
        if none:
            f = None
        elif masked:
            f = EventFilter(action, [(c & 0xFF) | ((c >> 32) & 0xF) << 32 | 0xF0 << 56 | (c & 0xF000)
                                     for c in codes], fixed, MASKED_EVENTS)
        else:
            f = EventFilter(action, codes, fixed)
        self.core.set_filter(None if f is None else f.compiled())
        self.ref.set_filter(f)

    @rule()
    def service_pmi(self):
        self.both("take_pmi_request")

    @precondition(lambda self: hasattr(self, "core"))
    @rule()
    def reset(self):
        self.core.reset()
        self.ref.reset()

    @invariant()
    def same_state(self):
        if not hasattr(self, "core"):
            return
        for slot in self.ref.widths:
            assert self.core.slot_info(slot)["value"] == self.ref.value[slot], f"slot {slot}"
        assert self.core.global_status == self.ref.global_status
        assert bool(self.core.pmi_requested) == self.ref.pmi_requested


CoreVersusReference.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestCoreVersusReference = CoreVersusReference.TestCase
