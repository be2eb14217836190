# SPDX-License-Identifier: GPL-2.0-or-later
"""Generic event ids and the vendor tables that map an event select to them.

A generic event is what the emulated CPU can actually report: the vCPU feeds retired
instructions, cycles, branches and cache events by generic id, and every counter decodes its
event select to one generic id (or :data:`NOTHING`) when it is (re)programmed.  The ids are the
contract of docs/design.md; the tables here are the single source the C core copies at
configuration time.

One model-specific Intel event is supported because Linux tools ask for it and the CPU model
knows the answer exactly: BR_INST_RETIRED.CONDITIONAL (event 0xC4, umask 0x01, Skylake and
later), retired conditional branches (Jcc, LOOP/LOOPcc, JCXZ/JECXZ/JRCXZ), taken or not.  It has
no CPUID availability bit, so CPUID.0xA:EBX cannot hide it.

Deliberately not supported: other model-specific (non-architectural) Intel events, AMD
northbridge/L3 events, and any event our CPU model cannot produce; they decode to
:data:`NOTHING` and count 0.
"""

from __future__ import annotations

CORE_CYCLES = 0
INSTRUCTIONS = 1
REF_CYCLES = 2
LLC_REFS = 3
LLC_MISSES = 4
BRANCHES = 5
BRANCH_MISSES = 6
STALLED = 7
COND_BRANCHES = 8
#: The decode result of an event select that our model never produces.
NOTHING = -1

NUM_EVENTS = 9

#: Intel EVTSEL bit 32 (TSX only): count only inside transactions, which never happen here.
IN_TX = 1 << 32

NAMES = {
    CORE_CYCLES: "core-cycles",
    INSTRUCTIONS: "instructions",
    REF_CYCLES: "ref-cycles",
    LLC_REFS: "llc-references",
    LLC_MISSES: "llc-misses",
    BRANCHES: "branches",
    BRANCH_MISSES: "branch-misses",
    STALLED: "stalled-cycles",
    COND_BRANCHES: "conditional-branches",
    NOTHING: "nothing",
}

#: Intel architectural events: (event, umask, generic, bit of CPUID.0xA:EBX that marks it unavailable).
#: (0x00, 0x03) is the pseudo-encoding of fixed counter 2; it shares reference cycles' availability bit.
INTEL_ARCH_EVENTS = (
    (0x3C, 0x00, CORE_CYCLES, 0),
    (0xC0, 0x00, INSTRUCTIONS, 1),
    (0x3C, 0x01, REF_CYCLES, 2),
    (0x2E, 0x4F, LLC_REFS, 3),
    (0x2E, 0x41, LLC_MISSES, 4),
    (0xC4, 0x00, BRANCHES, 5),
    (0xC5, 0x00, BRANCH_MISSES, 6),
    (0x00, 0x03, REF_CYCLES, 2),
)

#: Intel model-specific events we count: (event, umask, generic); always available.
INTEL_MODEL_EVENTS = ((0xC4, 0x01, COND_BRANCHES),)

#: What Intel fixed counter n counts.
INTEL_FIXED_EVENTS = (INSTRUCTIONS, CORE_CYCLES, REF_CYCLES)

#: AMD events: (12-bit event select = bits 35:32 and 7:0 of EVNTSEL, umask, generic).
AMD_EVENTS = (
    (0x076, 0x00, CORE_CYCLES),
    (0x0C0, 0x00, INSTRUCTIONS),
    (0x07D, 0x07, LLC_REFS),
    (0x07E, 0x07, LLC_MISSES),
    (0x0C2, 0x00, BRANCHES),
    (0x0C3, 0x00, BRANCH_MISSES),
    (0x0D0, 0x00, STALLED),
    (0x0D1, 0x00, STALLED),
)


def event_select(eventsel: int) -> int:
    """The 12-bit event select of an EVTSEL value: bits 7:0 plus AMD's extension bits 35:32 as 11:8."""
    return (eventsel & 0xFF) | ((eventsel >> 24) & 0xF00)


def unit_mask(eventsel: int) -> int:
    return (eventsel >> 8) & 0xFF


def decode(vendor: str, eventsel: int, unavailable: int = 0) -> int:
    """Generic id of a GP event select for ``vendor``; ``unavailable`` is Intel's EBX-style mask."""
    umask = unit_mask(eventsel)
    if vendor == "intel":
        if eventsel & IN_TX:
            return NOTHING  # our CPU never executes a transaction
        sel = eventsel & 0xFF
        for ev, um, generic, bit in INTEL_ARCH_EVENTS:
            if sel == ev and umask == um and not unavailable >> bit & 1:
                return generic
        for ev, um, generic in INTEL_MODEL_EVENTS:
            if sel == ev and umask == um:
                return generic
        return NOTHING
    sel = event_select(eventsel)
    for ev, um, generic in AMD_EVENTS:
        if sel == ev and umask == um:
            return generic
    return NOTHING
