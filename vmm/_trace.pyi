# SPDX-License-Identifier: GPL-2.0-or-later
"""Typing stub of vmm/_trace.pyx: the trace ring's owner."""

from collections.abc import Callable
from typing import final

DEFAULT_CAPACITY: int

#: A record as it leaves the ring: (time, vcpu, rip, kind, flags, a, b, c).
_Record = tuple[int, int, int, int, int, int, int, int]

@final
class TraceBuffer:
    consumer: Callable[[list[_Record]], object] | None
    error: BaseException | None
    def __init__(self, capacity: int = ..., consumer: Callable[[list[_Record]], object] | None = None) -> None: ...
    @property
    def capacity(self) -> int: ...
    @property
    def count(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    def take(self) -> list[_Record]: ...
    def flush(self) -> None: ...
    def emit(self, kind: int, flags: int, a: int = 0, b: int = 0, c: int = 0, *, time: int = 0, rip: int = 0,
             vcpu: int = 0) -> None: ...
