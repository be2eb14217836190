# SPDX-License-Identifier: GPL-2.0-or-later
"""Exact counts of code that changes under the same linear address: firmware/kernels/code_patch.c.

The hook layer commits each translation block's instruction count from its decoded-block cache,
so a decode that outlived the code it was made from would count wrong.  The kernel runs 6-byte
sites (one block each) in forms of 2 to 6 instructions: patched in place (self-modifying code,
through more forms than the hook layer keeps decodes of for one block, and back), swapped under one
linear page by rewriting its PTE (INVLPG, CR3 reload), written only through a non-executable alias
of its page (which the engine would let take its fast store path, skipping its self-modifying-code
check, if the hook layer did not keep code pages marked: vmm/_ucvcpu_stores.pxi), and, with a second
vCPU, patched by the BSP and run by the AP after an IRET to itself.  The kernel checks the
instructions counter (GP counter 0 and fixed counter 0) against the exact count; these tests check
that every case ran and that the counts are the same run after run.
"""

from __future__ import annotations

import re

import pytest

from tests.guest import assert_all_pass, boot

K = 20000       # the kernel's default number of calls per count
INSNS = {"LONG": 2, "PAIR": 3, "MIXED": 3, "TRIPLE": 4, "SHORT": 6}


def _counts(serial: str) -> list[tuple[str, str, int]]:
    return [(m[1], m[2], int(m[3])) for m in re.finditer(r"^COUNT: (.+) ([A-Z]+) (\d+)$", serial, re.M)]


def _expected(form: str) -> int:
    return K * (2 + INSNS[form]) + 6


@pytest.mark.parametrize("cpu", ["intel", "amd"])
def test_patched_and_remapped_code_counts_exactly(cpu):
    result, serial = boot("code_patch", cpu=cpu)
    assert_all_pass(result, serial)
    counts = _counts(serial)
    assert [(what, form) for what, form, _ in counts] == [
        *(("patched in place", form)
          for form in ("LONG", "SHORT", "PAIR", "TRIPLE", "MIXED", "TRIPLE", "LONG", "SHORT")),
        ("remapped with INVLPG", "LONG"), ("remapped with INVLPG", "SHORT"), ("remapped with INVLPG", "LONG"),
        ("remapped with a CR3 reload", "SHORT"), ("remapped with a CR3 reload", "LONG"),
        *(("written through an NX alias", form) for form in ("LONG", "SHORT", "PAIR")),
    ], serial
    assert all(n == _expected(form) for _, form, n in counts), counts
    assert "SKIP: cross-modifying code: needs a second CPU" in serial, serial


@pytest.mark.parametrize("smp", [2, 3])
def test_cross_modified_code_counts_exactly_after_serializing(smp):
    result, serial = boot("code_patch", smp=smp)
    assert_all_pass(result, serial)
    cross = [(form, n) for what, form, n in _counts(serial) if what == "cross-modified on CPU 1"]
    assert cross == [(form, _expected(form)) for form in ("SHORT", "LONG", "PAIR")], serial


def test_counts_are_deterministic():
    """Two runs give byte-identical serial output (counts, TSC values and all)."""
    outputs = []
    for _ in range(2):
        result, serial = boot("code_patch", smp=2)
        assert_all_pass(result, serial)
        outputs.append(serial)
    assert outputs[0] == outputs[1]
