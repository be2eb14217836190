# SPDX-License-Identifier: GPL-2.0-or-later
"""Property test: IRR/ISR/PPR priority selection of the LAPIC against a tiny pure-Python reference model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.lapic_harness import Harness, bits_of


class ReferenceApic:
    """SDM priority rules with sets instead of bitmaps: nothing else."""

    def __init__(self):
        self.irr: set[int] = set()
        self.isr: set[int] = set()
        self.tpr = 0

    def ppr(self) -> int:
        isrv = max(self.isr, default=0)
        return self.tpr if self.tpr >> 4 >= isrv >> 4 else isrv & 0xF0

    def pending(self) -> int | None:
        highest = max(self.irr, default=None)
        return highest if highest is not None and highest >> 4 > self.ppr() >> 4 else None

    def accept(self, vector: int) -> int:
        if vector in self.irr and vector >> 4 > self.ppr() >> 4:
            self.irr.discard(vector)
            self.isr.add(vector)
            return vector
        return 0xFF  # the harness's SPIV vector

    def eoi(self) -> None:
        if self.isr:
            self.isr.discard(max(self.isr))


vectors = st.integers(16, 255)
operations = st.lists(st.one_of(
    st.tuples(st.just("raise"), vectors),
    st.tuples(st.just("tpr"), st.integers(0, 255)),
    st.tuples(st.just("accept_pending"), st.none()),
    st.tuples(st.just("accept"), vectors),
    st.tuples(st.just("eoi"), st.none()),
), max_size=60)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_priority_selection_matches_reference_model(ops):
    h = Harness()
    model = ReferenceApic()
    for op, arg in ops:
        if op == "raise":
            h.write(0x300, 0x40000 | arg)  # fixed self-IPI
            model.irr.add(arg)
        elif op == "tpr":
            h.write(0x80, arg)
            model.tpr = arg
        elif op == "accept_pending":
            vector = h.lapic.pending_interrupt()
            if vector is not None:
                assert h.lapic.accept_interrupt(vector) == model.accept(vector) == vector
        elif op == "accept":
            assert h.lapic.accept_interrupt(arg) == model.accept(arg)
        else:
            h.write(0xB0, 0)
            model.eoi()
        assert h.lapic.pending_interrupt() == model.pending()
        assert h.read(0xA0) == model.ppr()
        assert bits_of(h, 0x200) == sum(1 << v for v in model.irr)
        assert bits_of(h, 0x100) == sum(1 << v for v in model.isr)
        assert h.lapic.has_wakeup() == (model.pending() is not None)
