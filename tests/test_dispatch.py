# SPDX-License-Identifier: GPL-2.0-or-later
"""The exit dispatcher, fed made-up exits: no CPU, no engine."""

from __future__ import annotations

import pytest

from devices.bus import GP, Bus, Fault
from vmm.cpuid import CpuidModel
from vmm.dispatch import Dispatcher
from vmm.exits import TERMINAL, Exit, ExitKind


class Recorder:
    def __init__(self, value=0x5A):
        self.value = value
        self.accesses = []

    def read(self, access):
        self.accesses.append(("r", access))
        return self.value

    def write(self, access, value):
        self.accesses.append(("w", access, value))
        return None


class MsrDevice(Recorder):
    def write(self, access, value):
        super().write(access, value)
        return GP if value & 1 else None


@pytest.fixture
def setup():
    pio, mmio, msr = Bus("pio", 0x10000, (1, 2, 4)), Bus("mmio", 1 << 52), Bus("msr", 1 << 32, (8,), indexed=True)
    port, page, reg = Recorder(0x42), Recorder(0x1234), MsrDevice(0xABCD)
    pio.register(0x3F8, 8, port)
    mmio.register(0xFEE00000, 0x1000, page)
    msr.register(0x1B, 1, reg)
    return Dispatcher(pio, mmio, msr, CpuidModel("amd"), rdpmc=lambda ecx: GP if ecx > 3 else ecx * 10), port, page, reg


def test_port_io_reaches_the_device_with_offset_and_vcpu(setup):
    d, port, _, _ = setup
    assert d.handle(Exit(ExitKind.IO_IN, 0x3FD, 1, vcpu_id=3)) == 0x42
    d.handle(Exit(ExitKind.IO_OUT, 0x3F8, 1, 0x41))
    (_, access), (_, access2, value) = port.accesses
    assert (access.address, access.offset, access.size, access.vcpu_id) == (0x3FD, 5, 1, 3)
    assert (access2.offset, value) == (0, 0x41)


@pytest.mark.parametrize("size,expected", [(1, 0xFF), (2, 0xFFFF), (4, 0xFFFFFFFF)])
def test_unowned_port_reads_all_ones_and_ignores_writes(setup, size, expected):
    d = setup[0]
    assert d.handle(Exit(ExitKind.IO_IN, 0x1234, size)) == expected
    assert d.handle(Exit(ExitKind.IO_OUT, 0x1234, size, 7)) is None


def test_mmio(setup):
    d, _, page, _ = setup
    assert d.handle(Exit(ExitKind.MMIO_READ, 0xFEE00030, 4)) == 0x1234
    assert page.accesses[0][1].offset == 0x30
    assert d.handle(Exit(ExitKind.MMIO_READ, 0xC0000000, 4)) == 0xFFFFFFFF


def test_msr_value_fault_and_unknown(setup):
    d, _, _, reg = setup
    assert d.handle(Exit(ExitKind.MSR_READ, 0x1B, 8)) == 0xABCD
    assert reg.accesses[0][1].size == 8
    assert d.handle(Exit(ExitKind.MSR_WRITE, 0x1B, 8, 2)) is None
    assert d.handle(Exit(ExitKind.MSR_WRITE, 0x1B, 8, 3)) is GP
    assert d.handle(Exit(ExitKind.MSR_READ, 0xC1, 8)) is GP
    assert d.handle(Exit(ExitKind.MSR_WRITE, 0x12345678, 8, 0)) is GP


def test_rdpmc_and_no_pmu(setup):
    d = setup[0]
    assert d.handle(Exit(ExitKind.RDPMC, 2)) == 20
    assert isinstance(d.handle(Exit(ExitKind.RDPMC, 9)), Fault)
    d.rdpmc = None
    assert d.handle(Exit(ExitKind.RDPMC, 0)) is GP


def test_cpuid_comes_from_the_model(setup):
    d = setup[0]
    _, ebx, ecx, edx = d.handle(Exit(ExitKind.CPUID, 0, value=0))
    assert (ebx.to_bytes(4, "little") + edx.to_bytes(4, "little") + ecx.to_bytes(4, "little")) == b"AuthenticAMD"


@pytest.mark.parametrize("kind", sorted(TERMINAL))
def test_terminal_exits_are_not_dispatched(setup, kind):
    with pytest.raises(ValueError):
        setup[0].handle(Exit(kind))


def test_trace_sees_every_answer(setup):
    d = setup[0]
    seen = []
    d.trace = lambda exit, result: seen.append((exit.kind, result))
    d.handle(Exit(ExitKind.MSR_READ, 0xC1, 8))
    assert seen == [(ExitKind.MSR_READ, GP)]


@pytest.mark.parametrize("address,size,expected,parts", [
    (0x3FE, 4, 0xFFFF0042, [(0x3FE, 6, 2)]),                 # UART's last two ports, then unowned
    (0x3FF, 2, 0xFF42, [(0x3FF, 7, 1)]),
    (0x3F7, 2, 0x42FF, [(0x3F8, 0, 1)]),                     # unowned, then the UART's first port
    (0x3FD, 4, 0xFF424242, [(0x3FD, 5, 1), (0x3FE, 6, 1), (0x3FF, 7, 1)]),   # 3 bytes: byte by byte
])
def test_port_access_across_a_range_end_is_split_per_owner(setup, address, size, expected, parts):
    d, port, _, _ = setup
    assert d.handle(Exit(ExitKind.IO_IN, address, size)) == expected
    assert [(a.address, a.offset, a.size) for _, a in port.accesses] == parts
    port.accesses.clear()
    d.handle(Exit(ExitKind.IO_OUT, address, size, 0x11223344))
    written = [(a.address, a.size, v) for _, a, v in port.accesses]
    assert written == [(a, n, (0x11223344 >> (8 * (a - address))) & ((1 << 8 * n) - 1)) for a, _, n in parts]


def test_access_spanning_two_devices_reaches_both():
    bus = Bus("pio", 0x10000, (1, 2, 4))
    low, high = Recorder(0x1122), Recorder(0x3344)
    bus.register(0x510, 2, low)
    bus.register(0x512, 2, high)
    assert bus.read(0x511, 2) == 0x4422          # each part masked to its size
    assert bus.lookup(0x511, 2) is None and bus.lookup(0x510, 2) == (0x510, low)
    assert bus.write(0x510, 4, 0xAABBCCDD) is None
    assert [(a.address, v) for _, a, v in low.accesses[1:]] == [(0x510, 0xCCDD)]
    assert [(a.address, v) for _, a, v in high.accesses[1:]] == [(0x512, 0xAABB)]
