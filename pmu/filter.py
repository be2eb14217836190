# SPDX-License-Identifier: GPL-2.0-or-later
"""The PMU event filter: the host's list of events the guest may (or may not) count.

This is the equivalent of KVM_SET_PMU_EVENT_FILTER.  A filter has an action (ALLOW: only the
listed events count; DENY: everything but the listed events counts), a list of event entries
and a bitmap for the fixed counters, which are matched by index only.

Entries come in two formats, chosen by ``flags``:

* plain (flags 0): an event select value; it matches a guest EVTSEL whose event select
  (bits 7:0 and 35:32) and unit mask (bits 15:8) are equal.  Bits outside those fields can never
  match a guest event, so such entries are ignored (as upstream Linux does).
* masked (``MASKED_EVENTS``): bits 7:0 event low, 15:8 umask match, 35:32 event high, 55
  exclude, 63:56 umask mask.  A guest event is *listed* when some include entry has its event
  select and ``umask & mask == match``, and no exclude entry matches it.  Any other bit set is
  an invalid argument.

ALLOW allows exactly the listed events, DENY exactly the unlisted ones.  Invalid arguments raise
:class:`PmuFilterError`; more than :data:`MAX_EVENTS` entries raise :class:`PmuFilterTooBigError`.

This module evaluates filters in Python (for :meth:`EventFilter.allows` / ``explain``); the C
core evaluates the :meth:`EventFilter.compiled` form at reprogram time and must agree.

Not supported: per-vCPU filters (a filter is machine-wide, as in KVM) and filtering by CPL.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
import struct
from typing import NamedTuple

ALLOW = 0
DENY = 1
MASKED_EVENTS = 1 << 0
MAX_EVENTS = 300

#: The bits of an EVTSEL a plain entry is compared on: event select 7:0 and 35:32, unit mask 15:8.
PLAIN_EVENT_BITS = 0xF_0000_FFFF
MASKED_EXCLUDE = 1 << 55
MASKED_VALID_BITS = 0xFF00_000F_0000_FFFF | MASKED_EXCLUDE

#: struct kvm_pmu_event_filter: u32 action, nevents, fixed_counter_bitmap, flags, pad[4]; u64 events[].
_KVM_HEADER = struct.Struct("<8I")


class PmuFilterError(ValueError):
    """An event filter with an invalid argument (the EINVAL of KVM_SET_PMU_EVENT_FILTER)."""


class PmuFilterTooBigError(PmuFilterError):
    """An event filter with more than MAX_EVENTS entries (the E2BIG of KVM_SET_PMU_EVENT_FILTER)."""


def _event_select(value: int) -> int:
    return (value & 0xFF) | ((value >> 24) & 0xF00)


class FilterEntry(NamedTuple):
    """One compiled entry: 12-bit event select, unit-mask match and mask, include or exclude."""

    event_select: int
    umask_match: int
    umask_mask: int
    exclude: bool

    def matches(self, eventsel: int) -> bool:
        return (_event_select(eventsel) == self.event_select
                and ((eventsel >> 8) & 0xFF) & self.umask_mask == self.umask_match)


class EventFilter:
    def __init__(self, action: int = ALLOW, events=(), fixed_counter_bitmap: int = 0, flags: int = 0):
        if action not in (ALLOW, DENY):
            raise PmuFilterError(f"invalid argument: filter action must be ALLOW (0) or DENY (1), not {action!r}")
        if flags not in (0, MASKED_EVENTS):
            raise PmuFilterError(f"invalid argument: filter flags must be 0 or MASKED_EVENTS, not {flags!r}")
        events = tuple(int(e) for e in events)
        if len(events) > MAX_EVENTS:
            raise PmuFilterTooBigError(f"too big: {len(events)} filter events, at most {MAX_EVENTS}")
        if not 0 <= fixed_counter_bitmap <= 0xFFFFFFFF:
            raise PmuFilterError(f"invalid argument: fixed_counter_bitmap {fixed_counter_bitmap:#x} is not a u32")
        for e in events:
            if not 0 <= e < 1 << 64:
                raise PmuFilterError(f"invalid argument: filter event {e:#x} is not a u64")
            if flags & MASKED_EVENTS and e & ~MASKED_VALID_BITS:
                raise PmuFilterError(f"invalid argument: masked filter entry {e:#x} sets reserved bits")
        self.action = action
        self.events = events
        self.fixed_counter_bitmap = fixed_counter_bitmap
        self.flags = flags
        self.entries = tuple(self._compile(e) for e in events if flags or not e & ~PLAIN_EVENT_BITS)

    def _compile(self, e: int) -> FilterEntry:
        if self.flags & MASKED_EVENTS:
            return FilterEntry(_event_select(e), (e >> 8) & 0xFF, (e >> 56) & 0xFF, bool(e & MASKED_EXCLUDE))
        return FilterEntry(_event_select(e), (e >> 8) & 0xFF, 0xFF, False)

    def __repr__(self) -> str:
        action = "ALLOW" if self.action == ALLOW else "DENY"
        return (f"EventFilter({action}, {len(self.events)} events, fixed={self.fixed_counter_bitmap:#x}, "
                f"flags={self.flags:#x})")

    @classmethod
    def from_kvm_bytes(cls, buf: bytes) -> "EventFilter":
        """Parse the kernel's struct kvm_pmu_event_filter (little-endian) with bounds checks."""
        buf = bytes(buf)
        if len(buf) < _KVM_HEADER.size:
            raise PmuFilterError(f"invalid argument: {len(buf)} bytes is shorter than the "
                                 f"{_KVM_HEADER.size}-byte header")
        action, nevents, fixed, flags, *_pad = _KVM_HEADER.unpack_from(buf)
        if nevents > MAX_EVENTS:
            raise PmuFilterTooBigError(f"too big: {nevents} filter events, at most {MAX_EVENTS}")
        end = _KVM_HEADER.size + 8 * nevents
        if len(buf) < end:
            raise PmuFilterError(f"invalid argument: header says {nevents} events but the buffer holds "
                                 f"{(len(buf) - _KVM_HEADER.size) // 8}")
        events = struct.unpack_from(f"<{nevents}Q", buf, _KVM_HEADER.size)
        return cls(action, events, fixed, flags)

    def to_kvm_bytes(self) -> bytes:
        return _KVM_HEADER.pack(self.action, len(self.events), self.fixed_counter_bitmap, self.flags, 0, 0, 0, 0) + \
            struct.pack(f"<{len(self.events)}Q", *self.events)

    # -- evaluation (the C core does the same from compiled()) ------------------------------
    def listed(self, eventsel: int) -> bool:
        include = any(not x.exclude and x.matches(eventsel) for x in self.entries)
        return include and not any(x.exclude and x.matches(eventsel) for x in self.entries)

    def allows(self, eventsel: int) -> bool:
        return self.listed(eventsel) == (self.action == ALLOW)

    def allows_fixed(self, index: int) -> bool:
        return bool(self.fixed_counter_bitmap >> index & 1) == (self.action == ALLOW)

    def explain(self, eventsel: int) -> str:
        sel, umask = _event_select(eventsel), (eventsel >> 8) & 0xFF
        what = f"event {sel:#x} umask {umask:#04x}"
        includes = [x for x in self.entries if not x.exclude and x.matches(eventsel)]
        excludes = [x for x in self.entries if x.exclude and x.matches(eventsel)]
        if includes and excludes:
            why = f"matches include {_show(includes[0])} but also exclude {_show(excludes[0])}, so it is not listed"
        elif includes:
            why = f"is listed by {_show(includes[0])}"
        else:
            why = "matches no filter entry"
        verdict = "allowed" if self.allows(eventsel) else "denied"
        action = "ALLOW" if self.action == ALLOW else "DENY"
        return f"{what} {why}; the filter's action is {action}, so it is {verdict}"

    def compiled(self) -> tuple:
        """``(action, fixed_counter_bitmap, ((event_select, match, mask, exclude), ...))`` for the core."""
        return (self.action, self.fixed_counter_bitmap,
                tuple((x.event_select, x.umask_match, x.umask_mask, x.exclude) for x in self.entries))


def _show(entry: FilterEntry) -> str:
    kind = "exclude" if entry.exclude else "include"
    return f"{kind}(event {entry.event_select:#x}, umask & {entry.umask_mask:#04x} == {entry.umask_match:#04x})"
