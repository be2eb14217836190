# SPDX-License-Identifier: GPL-2.0-or-later
"""The vCPU layer's C answers (a UART's ports through its C core, the xAPIC page through the LAPIC's C
path, ports nobody owns) against the exits they replace, which a run with every exit traced still
takes: the guest sees the same thing, byte for byte and instruction for instruction, and the serial
sink gets every byte however the run ends."""

from __future__ import annotations

import io
import re

import pytest

import firmware
from devices.registry import DeviceSpec
from tests.guest import assert_all_pass
from vmm.exits import ExitKind
from vmm.machine import Machine, MachineConfig


def _run(kernel: str, exits: bool, feed: bytes = b"", **config):
    """(RunResult, what reached the sink, the BSP's dispatcher counts); ``exits``: every exit traced
    (the trace itself dropped), so the C answers are exits to the Python devices again."""
    sink = io.BytesIO()
    machine = Machine(MachineConfig(serial=sink, timeout=120, trace_exits=exits, trace_file=io.StringIO(),
                                    **config))
    for cpu in machine.cpus:
        cpu.dispatcher.trace = None
    machine.load(str(firmware.image(kernel)))
    machine.uart.feed(feed)
    result = machine.run()
    return result, sink.getvalue(), machine.dispatcher.counts


def _same_on_both_paths(kernel: str, **config):
    c_result, c_sink, c_counts = _run(kernel, False, **config)
    py_result, py_sink, py_counts = _run(kernel, True, **config)
    assert (c_result.reason, c_result.status, c_result.detail) == (py_result.reason, py_result.status,
                                                                   py_result.detail)
    assert c_result.instructions == py_result.instructions
    assert c_result.serial == py_result.serial, (c_result.serial.decode(), py_result.serial.decode())
    assert c_sink == c_result.serial and py_sink == py_result.serial      # every byte reached the sink
    return c_result, c_counts, py_counts


@pytest.mark.parametrize("smp,quantum", [(1, 50_000), (2, 150), (3, 150)])
def test_uart_interrupts_loopback_and_xapic_same_on_both_paths(smp, quantum):
    result, c_counts, py_counts = _same_on_both_paths("uart_irq", smp=smp, quantum=quantum, feed=b"ping\n")
    assert_all_pass(result, result.serial.decode())
    assert b"INFO: received 4 bytes in 1 interrupts: 'ing\n'" in result.serial   # 'p' went in the FIFO reset
    assert result.serial.count(b"j") == 8 * smp       # each CPU's 8 lines of "... liquor jugs", whole or not
    if smp > 1:     # the CPUs' lines interleave byte by byte
        whole = re.findall(rb"^cpu \d line \d: pack my box with five dozen liquor jugs$", result.serial, re.M)
        assert len(whole) < 8 * smp
    # The C paths took the UART's ports and the LAPIC page: the BSP's exits are a few Python devices'.
    assert py_counts[ExitKind.IO_OUT] > 3000 and c_counts[ExitKind.IO_OUT] < 10
    assert py_counts[ExitKind.MMIO_WRITE] > 2000 and c_counts[ExitKind.MMIO_WRITE] < 10
    assert py_counts[ExitKind.MMIO_READ] > 1000 and c_counts[ExitKind.MMIO_READ] == 0


@pytest.mark.parametrize("kernel,config", [
    ("serial", {}),
    ("lapic_xapic", {}),
    ("lapic_irq", {}),
    ("lapic_timer", {}),
    ("lapic_enable", {}),
    ("pc_testdev", {"devices": [DeviceSpec("pc-testdev")]}),      # level-triggered EOIs to the I/O APIC
    ("pc_testdev", {"devices": [DeviceSpec("pc-testdev")], "cmdline": "x2apic=1"}),   # ... through the EOI MSR
    ("pmu_msr", {}),
    ("smp_pmu", {"smp": 2}),                            # PMIs through each vCPU's LVTPC, EOIs in the page
    ("smp_ipi", {"smp": 2, "cmdline": "rounds=3"}),
    ("smp_boot", {"smp": 3}),
])
def test_kernels_same_on_both_paths(kernel, config):
    result, _, _ = _same_on_both_paths(kernel, **config)
    assert_all_pass(result, result.serial.decode())


@pytest.mark.parametrize("kernel,config,reason,tail", [
    ("shutdown", {}, "shutdown", b"about to triple fault\n"),
    ("serial", {"max_insns": 50_000}, "limit", b"PASS: divisor la"),      # stopped mid-line
    ("serial", {"max_insns": 55_000}, "limit", b"INFO: IIR after enabling "),
])
def test_every_byte_reaches_the_sink_however_the_run_ends(kernel, config, reason, tail):
    result, _, _ = _same_on_both_paths(kernel, **config)
    assert result.reason == reason and result.serial.endswith(tail)


def test_every_uart_hands_its_partial_line_to_the_sink_and_a_fifth_stays_an_exit():
    # (-device isa-serial replaces the board's: COM1 comes first again, the console)
    bases = (0x3F8, 0x2F8, 0x3E8, 0x2E8, 0x238)
    uarts = [DeviceSpec("isa-serial", {"iobase": hex(base), "irq": "3"}) for base in bases]
    sink = io.BytesIO()
    machine = Machine(MachineConfig(serial=sink, timeout=60, devices=uarts))
    machine.load(str(firmware.image("hello64")))
    for n, uart in enumerate(machine.uarts[1:]):
        machine.pio.write(uart.iobase, 1, ord("a") + n)        # a byte with no newline after it
    result = machine.run()
    assert sink.getvalue() == result.serial + b"abcd"          # the console's line, then the others'
    # The vCPU layer answers four UARTs in C; the fifth's ports stay exits (the same device answers).
    assert machine.vcpu.set_uart(0x1000, machine.uarts[0].core) is False
