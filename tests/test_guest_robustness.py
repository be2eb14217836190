# SPDX-License-Identifier: GPL-2.0-or-later
"""What a guest can do to the VMM, case by case: HLT that can or cannot wake, timeouts that look
like HLT, the task-register states the engine would abort on, port I/O across device ranges and
an xAPIC page moved onto RAM.  Kernels come from tests/guest_fuzz.py and run in its worker
process, so a regression to an abort or a hang fails a test instead of ending or stalling the
session.  (tests/test_fuzz_guest.py fuzzes all of this.)"""

from __future__ import annotations

import io

import pytest

from tests import guest_fuzz
from tests.guest_fuzz import LAPIC, Op
from vmm.machine import Machine, MachineConfig

PERIODIC, MASKED, VECTOR = 1 << 17, 1 << 16, 0x40
TIMER = Op("lapic_timer", (PERIODIC | VECTOR, 0xB, 1000))          # periodic, every 1000 ns
MASKED_TIMER = Op("lapic_timer", (MASKED | PERIODIC | VECTOR, 0xB, 1000))
PIT_RATE = Op("pit", (2, 1000))                                    # rate generator on IRQ 0
NMI_ON_PIT = Op("ioapic", (2, 4 << 8))                             # IOAPIC pin 2 (IRQ 0): NMI, unmasked
MARK = Op("port", (0x3F8, 1, ord("!"), True))


@pytest.fixture
def boot(runner):
    """``boot(plan, bits, timeout, max_insns, load_tr)``: run a fuzz-frame kernel in the worker and
    return its Outcome, after checking it ended in a documented way."""
    def boot(plan, bits=64, timeout=30.0, max_insns=0, load_tr=True):
        outcome = runner.run(guest_fuzz.kernel(bits, plan, load_tr=load_tr), timeout, max_insns)
        assert not guest_fuzz.problems(outcome, timeout, max_insns), outcome
        return outcome
    return boot


# -- HLT ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [64, 32])
def test_cli_hlt_with_a_periodic_timer_is_halted_forever_at_once(boot, bits):
    outcome = boot([[TIMER, Op("insn", ("cli; hlt",))]], bits)
    assert (outcome.reason, outcome.status) == ("halted", 126), outcome
    assert "interrupts are disabled" in outcome.detail and outcome.wall < 10     # not the 30 s timeout


def test_sti_hlt_with_only_a_masked_periodic_timer_is_halted_forever(boot):
    outcome = boot([[MASKED_TIMER, Op("insn", ("sti; hlt",))]])
    assert (outcome.reason, outcome.status) == ("halted", 126), outcome
    assert "no timer can raise one" in outcome.detail and outcome.wall < 10


def test_a_periodic_timer_wakes_sti_hlt(boot):
    outcome = boot([[TIMER, Op("insn", ("sti; hlt",)), MARK]])
    assert (outcome.reason, outcome.serial) == ("debug-exit", b"fuzz:!\n"), outcome
    assert outcome.interrupts()[VECTOR] >= 1


def test_an_nmi_through_the_ioapic_wakes_cli_hlt_and_a_masked_pin_does_not(boot):
    outcome = boot([[PIT_RATE, NMI_ON_PIT, Op("insn", ("cli; hlt",)), MARK]])
    assert (outcome.reason, outcome.serial) == ("debug-exit", b"fuzz:!\n"), outcome
    assert outcome.interrupts()[2] >= 1
    outcome = boot([[PIT_RATE, Op("ioapic", (2, MASKED | 4 << 8)), Op("insn", ("cli; hlt",))]])
    assert outcome.reason == "halted" and outcome.wall < 10, outcome


def test_hlt_in_an_nmi_handler_is_halted_forever_whatever_raises_nmis(boot):
    """A self-NMI enters a handler that halts with interrupts off: NMIs stay blocked until an IRET
    that never comes, so a periodic NMI source changes nothing."""
    plan = [[PIT_RATE, NMI_ON_PIT, Op("mmio", (LAPIC + 0xF0, 0x1FF, True)), Op("mmio", (LAPIC + 0x300, 0x44400, True)),
             Op("gate", (2,)), Op("insn", ("cli; hlt",))]]
    outcome = boot(plan, timeout=10.0)
    assert outcome.detail == "guest halted forever: interrupts are disabled and NMIs blocked", outcome
    assert outcome.wall < 5


def test_the_timeout_is_for_the_whole_run_even_when_hlt_keeps_waking(boot):
    """sti; hlt; jmp back, woken every microsecond of virtual time: the run still ends at the timeout
    (each guest entry used to get a timeout of its own, so the run never ended)."""
    outcome = boot([[TIMER, Op("raw", (b"\xFB\xF4\xEB\xFC",))]], timeout=0.5)
    assert outcome.reason == "timeout" and outcome.wall >= 0.5, outcome
    assert outcome.interrupts()[VECTOR] > 10


def test_the_instruction_limit_holds_across_hlt_wakes(boot):
    outcome = boot([[TIMER, Op("raw", (b"\xFB\xF4\xEB\xFC",))]], max_insns=20_000)
    assert outcome.reason == "limit" and 20_000 <= outcome.instructions < 21_000, outcome


def test_a_timeout_in_a_loop_after_an_f4_byte_is_not_hlt(boot):
    """`mov $0xf4, %cl; jmp .`: the byte before RIP is 0xF4, but nothing halted."""
    outcome = boot([[Op("raw", (b"\xB1\xF4\xEB\xFE",))]], timeout=0.3)
    assert (outcome.reason, outcome.status) == ("timeout", 124), outcome
    outcome = boot([[Op("raw", (b"\xB1\xF4\xEB\xFE",))]], max_insns=5000)
    assert outcome.reason == "limit", outcome


def test_a_timeout_ends_an_exception_storm_that_retires_nothing(boot):
    """A #UD handler that is its own UD2, its stack beyond RAM (pushes dropped): the engine delivers
    #UD after #UD and virtual time stands still, so the vCPU's clock checks come from the deliveries."""
    asm = guest_fuzz.Asm(32)
    outcome = boot([[Op("raw", (asm.mov_imm(4, 0xF0000000),)), Op("gate", (6,)), Op("insn", ("ud2",))]], 32,
                   timeout=0.5)
    assert (outcome.reason, outcome.status) == ("timeout", 124) and outcome.wall < 5, outcome


@pytest.mark.parametrize("bits", [64, 32])
def test_a_timeout_ends_a_rep_string_instruction_of_hours(boot, bits):
    """`rep stosb` with RCX = 2^40 (2^32 - 1 in 32-bit code), mostly into memory beyond RAM: one
    instruction, so virtual time stands still through its iterations."""
    asm = guest_fuzz.Asm(bits)
    count = (1 << 40) if bits == 64 else 0xFFFFFFFF
    outcome = boot([[Op("raw", (asm.mov_imm(1, count) + asm.mov_imm(7, 0x200000) + b"\xF3\xAA",))]], bits,
                   timeout=0.5)
    assert (outcome.reason, outcome.status) == ("timeout", 124) and outcome.wall < 5, outcome


def test_a_stop_request_ends_the_hlt_wait():
    """A timer the machine knows nothing about may wake the vCPU, so the wait ticks it; here it asks
    for a stop, the way the CLI's signal handlers do (queued work) and directly.  (In this process:
    the timer is a Python object.)"""

    class Stopper:
        def __init__(self, machine, queued):
            self.machine, self.queued, self.deadline = machine, queued, 5000

        def next_deadline(self):
            return self.deadline

        def tick(self, now):
            self.deadline = None
            vcpu = self.machine.vcpu
            if self.queued:
                vcpu.queue_work(lambda: vcpu.request_stop("stopped by test"))
            else:
                vcpu.request_stop("stopped by test")

    for queued in (True, False):
        machine = Machine(MachineConfig(memory=16 << 20, serial=io.BytesIO(), timeout=30))
        machine.load(guest_fuzz.kernel(64, [[Op("insn", ("cli; hlt",))]]))
        machine.timers.append(Stopper(machine, queued))
        result = machine.run()
        assert result.detail == "stopped by test" and result.serial == b"fuzz:", result


# -- the task register -------------------------------------------------------------------------
@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("ltr", [Op("selector", ("ltr", 0)), Op("ltr_memory", (3,))])
def test_ltr_of_a_null_selector_is_a_gp_at_the_ltr(boot, bits, ltr):
    """Then an exception through an IST gate / a stack switch: no engine abort, the serial kept."""
    outcome = boot([[ltr], [Op("user", (2,))], [Op("insn", ("int 0x80",))], [Op("insn", ("int 8",))], [MARK]], bits)
    assert (outcome.reason, outcome.serial) == ("debug-exit", b"fuzz:!\n"), outcome
    vector, error_code, rip = outcome.exceptions()[0]
    assert (vector, error_code) == (13, 0)
    assert guest_fuzz.STEPS < rip < guest_fuzz.STEPS + 0x20       # the LTR itself, in step 0
    assert outcome.interrupts() == {0x80: 1}                       # the TSS loaded at boot still works


@pytest.mark.parametrize("bits", [64, 32])
@pytest.mark.parametrize("trigger", [[Op("user", (2,)), Op("insn", ("int 0x80",))],
                                     [Op("user", (2,)), Op("call_gate", (3,))],
                                     [Op("insn", ("int 2",))]])
def test_stack_switches_before_any_ltr_do_not_abort(boot, bits, trigger):
    """Without an LTR the TSS is at linear 0 (TR as a CPU leaves reset): the stack it holds there is
    garbage, so the guest shuts down -- at once, with its output, not an engine abort or a spin."""
    outcome = boot([trigger, [MARK]], bits, timeout=10.0, load_tr=False)
    assert outcome.reason in ("shutdown", "debug-exit") and outcome.wall < 5.0, outcome


@pytest.mark.parametrize("bits", [64, 32])
def test_a_call_gate_to_ring_0_uses_the_tss_stack(boot, bits):
    outcome = boot([[Op("user", (2,)), Op("call_gate", (3,))]], bits)
    assert (outcome.reason, outcome.serial) == ("debug-exit", b"fuzz:\n"), outcome
    assert outcome.exceptions() == []


@pytest.mark.parametrize("bits", [64, 32])
def test_an_idt_beyond_ram_ends_the_run_instead_of_spinning_in_the_engine(boot, bits):
    """Delivering #UD reads the IDT from unmapped memory, all-ones: gates whose selector 0xFFFF is
    beyond the GDT, so #GP, #DF and a triple fault, at once (the engine used to retry such a delivery
    for ever, deaf to timeouts and signals).  tests/test_guest_fidelity.py has the --strict-memory
    ending."""
    outcome = boot([[Op("load_table", (3, 0xFFF, 0xC0000000)), Op("insn", ("ud2",))]], bits, timeout=1.0)
    assert outcome.reason == "shutdown" and outcome.wall < 1.0, outcome


# -- port I/O and MMIO the way a PC decodes it ----------------------------------------------------
@pytest.mark.parametrize("bits", [64, 32])
def test_port_io_across_device_ranges_is_split_per_owner(boot, bits):
    def inp(port, size, slot):
        return [Op("port", (port, size, 0, False)), Op("save", (0, slot))]

    plan = [[Op("port", (0x3FF, 1, 0x5A, True)), *inp(0x3FF, 4, 0),     # UART scratch, then unowned ports
             Op("port", (0x510, 2, 0, True)), *inp(0x511, 4, 1),        # fw_cfg signature byte "Q"
             Op("port", (0x21, 1, 0x12, True)), *inp(0x21, 2, 2),       # PIC mask, then port 0x22
             *inp(0x3F7, 2, 3),                                           # unowned, then UART RBR
             Op("port", (0x3FE, 4, 0, True)), Op("port", (0x88FF, 2, 0, True)), Op("port", (0x5659, 4, 0, True)),
             Op("string_io", (0x3FE, 4, 2, True)), MARK],
            [Op("port", (0xF3, 4, 0x100, True))]]              # debug-exit gets its second byte: status 1 << 1 | 1
    outcome = boot(plan, bits)
    assert (outcome.reason, outcome.status) == ("debug-exit", 3), outcome
    assert outcome.serial.startswith(b"fuzz:") and b"!" in outcome.serial
    results = outcome.results()
    assert [v & 0xFFFFFFFF for v in results[:2]] == [0xFFFFFF5A, 0xFFFFFF51]
    assert results[2] & 0xFFFF == 0xFF12 and results[3] & 0xFF == 0xFF


def test_the_xapic_page_moved_onto_ram_shadows_it_and_gives_it_back(boot):
    plan = [[Op("wrmsr", (0x1B, 0x200900)), Op("mmio", (0x200030, 0, False)), Op("save", (1, 0)),
             Op("wrmsr", (0x1B, 0xFEE00900)), Op("mmio", (0x200030, 0x1234, True)), Op("mmio", (0x200030, 0, False)),
             Op("save", (1, 1)), Op("mmio", (LAPIC + 0x30, 0, False)), Op("save", (1, 2))]]
    outcome = boot(plan)
    assert outcome.reason == "debug-exit" and outcome.exceptions() == [], outcome
    version, ram, version_back_home = outcome.results()[:3]
    assert version == version_back_home and version & 0xFF in (0x14, 0x15)
    assert ram == 0x1234


def test_port_io_in_16_bit_code_has_16_bit_operands(boot):
    """IN %dx, %ax in a 16-bit code segment (no operand-size prefix) writes AX, not EAX."""
    code16 = (b"\x66\xB8\x78\x56\x34\x12"                                   # mov $0x12345678, %eax
              b"\x66\xBA\xFC\x03\x00\x00"                                   # mov $0x3fc, %edx (UART MCR)
              b"\xED"                                                       # in %dx, %ax
              b"\x67\x66\x89\x05" + guest_fuzz.u32(guest_fuzz.RESULTS) +   # mov %eax, RESULTS
              b"\x0F\x0B")                                                  # ud2: back to 32-bit code, next step
    plan = [[Op("descriptor", (9, guest_fuzz.descriptor(0, 0xFFFFF, 0x9A, 0x8))),   # 0x48: 16-bit code
             Op("far", ("jmp", 0x48, True)), Op("raw", (code16,))], [MARK]]
    outcome = boot(plan, bits=32)
    assert outcome.serial == b"fuzz:!\n" and outcome.exceptions()[0][0] == 6, outcome
    assert outcome.results()[0] >> 16 == 0x1234
