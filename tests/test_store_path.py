# SPDX-License-Identifier: GPL-2.0-or-later
"""Which guest stores take the engine's fast path (vmm/_ucvcpu_stores.pxi).

The engine keeps a page's stores on its slow path (the one that drops translations a store
overlaps) only while a memory hook's range holds the page, so the hook layer keeps "marker" ranges
over exactly the physical pages it has seen translated code in.  These tests check that the marks
follow the code and leave data alone; tests/test_guest_code_patch.py checks that code written
through a non-executable alias of its page is still seen (the case marks exist for).
"""

from __future__ import annotations

import io

from elftools.elf.elffile import ELFFile

import firmware
from vmm.machine import Machine, MachineConfig

PAGE = 0x1000


def _run(kernel: str, **config) -> Machine:
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, **config))
    machine.load(str(firmware.image(kernel)))
    machine.run()
    return machine


def _section_pages(kernel: str, name: str) -> range:
    with open(firmware.image(kernel), "rb") as f:
        section = ELFFile(f).get_section_by_name(name)
        first = section["sh_addr"] // PAGE * PAGE
        return range(first, section["sh_addr"] + section["sh_size"], PAGE)


def _marked(machine: Machine, page: int) -> bool:
    return any(first <= page <= last for first, last in machine.cpus[0].vcpu.code_pages)


def test_pages_with_code_are_marked_and_data_pages_are_not():
    machine = _run("hello64")
    vcpu = machine.cpus[0].vcpu
    assert vcpu.code_pages == sorted(vcpu.code_pages)
    assert 0 < len(vcpu.code_pages) <= vcpu.code_marks
    text = _section_pages("hello64", ".text")
    assert _marked(machine, text[0])                    # the entry point's page
    bss = [page for page in _section_pages("hello64", ".bss") if page not in text]
    assert bss, "the kernel's .bss should have pages of its own"
    assert not any(_marked(machine, page) for page in bss), vcpu.code_pages


def test_marks_are_the_same_run_after_run():
    """Where stores stay slow depends on the guest only: two runs mark the same pages as often."""
    runs = [_run("code_patch") for _ in range(2)]
    vcpus = [machine.cpus[0].vcpu for machine in runs]
    assert vcpus[0].code_pages == vcpus[1].code_pages
    assert vcpus[0].code_marks == vcpus[1].code_marks
