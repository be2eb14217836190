# SPDX-License-Identifier: GPL-2.0-or-later
"""One generic bus for the three address spaces of a vCPU: port I/O, MMIO and MSR indices.

Devices are registered over half-open ranges ``[base, base + size)``.  Ranges are kept
sorted; a new range that overlaps an existing one, is empty, or runs past the end of the
address space is refused at registration with a typed error.  Lookup is a bisect over the
range starts, never a scan.

Every access carries an :class:`Access`: the absolute address, the offset inside the
device's range, the access size in bytes, the vCPU id and whether the host (not the guest)
made it (save/restore of MSRs bypasses guest-only rules).

Device protocol (plain objects, duck-typed):

* ``read(access) -> int | Fault``
* ``write(access, value) -> None | Fault``

MSR handlers return a value or a :data:`GP` fault and never raise into the CPU loop; port
I/O and MMIO devices return plain values.

An access that does not lie inside one range (a 4-byte IN at the UART's last port, a word write
that ends on the first port of a device) is split at the range boundaries, as a PC's chipset
does: each owner gets the part inside its range, as one access when that part has a size the bus
accepts and byte by byte otherwise; bytes nobody owns read all-ones and drop writes.  An access
of a size the bus does not accept is a misuse of the bus by the VMM and raises
:class:`InvalidAccessError`.

Not supported: partial overlaps resolved by priority (QEMU-style memory regions), and
ranges registered for only one direction.
"""

# No `from __future__ import annotations`: see docs/design.md, "Start-up cost".
from bisect import bisect_right
from dataclasses import dataclass
from typing import NamedTuple


class BusError(Exception):
    """Base class of the bus's closed set of errors."""


class OverlapError(BusError):
    """A registration overlaps a range that is already registered."""


class InvalidRangeError(BusError):
    """A registration is empty, negative or outside the address space."""


class InvalidAccessError(BusError):
    """An access has a size the bus does not accept."""


class DeviceNotFoundError(BusError):
    """No device is registered at the base given to unregister()."""


@dataclass(frozen=True, slots=True)
class Fault:
    """An architectural fault a handler asks the vCPU to raise in the guest."""

    vector: int
    error_code: int = 0
    name: str = ""

    def __repr__(self) -> str:
        return f"Fault({self.name or self.vector}, error_code={self.error_code})"


#: General-protection fault with error code 0: what a rejected RDMSR/WRMSR/RDPMC raises.
GP = Fault(13, 0, "#GP")


class Access(NamedTuple):
    """Who accesses what: absolute address, offset in the device's range, size, vCPU, host.

    A NamedTuple (immutable, and cheap to build: one is made per device access)."""

    address: int
    offset: int
    size: int
    vcpu_id: int = 0
    host: bool = False


class Bus:
    """Sorted, non-overlapping ranges of one address space, each owned by one device."""

    def __init__(self, name: str, limit: int, sizes: tuple[int, ...] = (1, 2, 4, 8), indexed: bool = False):
        """``indexed``: an access of any size occupies one address (MSR indices: an 8-byte
        RDMSR of index 0x1B touches only 0x1B); otherwise it occupies ``size`` addresses."""
        self.name = name
        self.limit = limit
        self._sizes = sizes
        self._indexed = indexed
        # Range starts, then one no access reaches: there is always a next start to compare with.
        self._starts: list[int] = [limit + max(sizes)]
        self._entries: list[tuple[int, int, object]] = []  # (base, end, device)
        #: Called as on_change(base, size, owned) after each register/unregister: a copy of who owns
        #: what (the vCPU layer's map of port I/O that needs no exit, vmm.machine) stays exact.
        self.on_change = None

    def register(self, base: int, size: int, device: object) -> None:
        """Own ``[base, base + size)`` for ``device``; refuse empty, overflowing or overlapping ranges."""
        if size <= 0 or base < 0 or base + size > self.limit:
            raise InvalidRangeError(
                f"{self.name} bus: range {base:#x}+{size:#x} is empty or outside 0..{self.limit:#x}"
            )
        i = bisect_right(self._starts, base)
        end = base + size
        if i > 0 and self._entries[i - 1][1] > base:
            other = self._entries[i - 1]
            raise OverlapError(f"{self.name} bus: {base:#x}-{end - 1:#x} overlaps {other[0]:#x}-{other[1] - 1:#x}")
        if i < len(self._entries) and self._entries[i][0] < end:
            other = self._entries[i]
            raise OverlapError(f"{self.name} bus: {base:#x}-{end - 1:#x} overlaps {other[0]:#x}-{other[1] - 1:#x}")
        self._starts.insert(i, base)
        self._entries.insert(i, (base, end, device))
        if self.on_change is not None:
            self.on_change(base, size, True)

    def unregister(self, base: int) -> object:
        """Remove the range that starts at ``base`` and return its device."""
        i = bisect_right(self._starts, base) - 1
        if not 0 <= i < len(self._entries) or self._starts[i] != base:
            raise DeviceNotFoundError(f"{self.name} bus: no range starts at {base:#x}")
        del self._starts[i]
        start, end, device = self._entries.pop(i)
        if self.on_change is not None:
            self.on_change(start, end - start, False)
        return device

    def ranges(self) -> list[tuple[int, int, object]]:
        """``(base, size, device)`` of every registered range, in address order."""
        return [(b, e - b, d) for b, e, d in self._entries]

    def lookup(self, address: int, size: int = 1) -> tuple[int, object] | None:
        """The ``(base, device)`` owning all of ``[address, address + size)``, or None."""
        entry = self._entry(address, size)
        return None if entry is None or entry is _SPLIT else (entry[0], entry[2])

    def _entry(self, address: int, span: int):
        """The registered ``(base, end, device)`` holding ``[address, address + span)``; None when
        no range has any of it, _SPLIT when it is not inside one range."""
        i = bisect_right(self._starts, address) - 1
        end = address + span
        if i >= 0:
            entry = self._entries[i]
            if end <= entry[1]:
                return entry
            if address < entry[1]:
                return _SPLIT
        return _SPLIT if self._starts[i + 1] < end else None

    def _route(self, address: int, size: int):
        if size not in self._sizes:
            raise InvalidAccessError(f"{self.name} bus: access size {size} not one of {self._sizes}")
        return self._entry(address, 1 if self._indexed else size)

    def _parts(self, address: int, size: int) -> list[tuple[int, int, tuple | None]]:
        """What a split access becomes: ``(address, size, entry)`` for each owner's part (byte by
        byte when the part's size is not one the bus accepts) and ``entry`` None for each unowned byte."""
        parts: list[tuple[int, int, tuple | None]] = []
        end = address + size
        while address < end:
            i = bisect_right(self._starts, address) - 1
            entry = self._entries[i] if 0 <= i < len(self._entries) and address < self._entries[i][1] else None
            n = 1 if entry is None else min(end, entry[1]) - address
            if n in self._sizes:
                parts.append((address, n, entry))
            else:
                parts += [(a, 1, entry) for a in range(address, address + n)]
            address += n
        return parts

    def read(self, address: int, size: int, vcpu_id: int = 0, host: bool = False):
        """The device's answer (int or Fault), or None when no device owns the address.  A split
        access is the parts' values, little-endian, all-ones where nobody answers with a number."""
        entry = self._route(address, size)
        if entry is None:
            return None
        if entry is not _SPLIT:
            return entry[2].read(Access(address, address - entry[0], size, vcpu_id, host))
        value = 0
        for part, n, owner in self._parts(address, size):
            got = None if owner is None else owner[2].read(Access(part, part - owner[0], n, vcpu_id, host))
            ones = (1 << (8 * n)) - 1
            value |= ((got & ones) if isinstance(got, int) else ones) << (8 * (part - address))
        return value

    def write(self, address: int, size: int, value: int, vcpu_id: int = 0, host: bool = False):
        """Deliver a write; returns the device's Fault if it refused, False when unowned, else None.
        The parts of a split write go to their owners in address order (MSR accesses never split)."""
        entry = self._route(address, size)
        if entry is None:
            return False
        if entry is not _SPLIT:
            return entry[2].write(Access(address, address - entry[0], size, vcpu_id, host), value)
        for part, n, owner in self._parts(address, size):
            if owner is not None:
                owner[2].write(Access(part, part - owner[0], n, vcpu_id, host),
                               (value >> (8 * (part - address))) & ((1 << (8 * n)) - 1))
        return None


#: What Bus._entry() returns for an access that is not inside one range.
_SPLIT = object()
