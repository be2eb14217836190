# SPDX-License-Identifier: GPL-2.0-or-later
"""Type stub of vmm._ucvcpu (Cython): the Python API of the Unicorn vCPU backend.

What Python sees of vmm/_ucvcpu.pyx (and the vmm/_ucvcpu_*.pxi it includes): :class:`UcVcpu`'s
constructor, the view devices use (it provides :class:`devices.vcpu.Vcpu`), the machine's controls
(run, stop, MMIO windows, the LAPIC and PMU fast paths, the objects it answers exits with) and its
public fields.  The hooks and C internals are not callable from Python and are not described here;
``BlockTable`` is the layer's decoded-block cache (vmm/_ucvcpu_blocks.pxi), with nothing to call.
"""

from collections.abc import Callable
from typing import Protocol, final

from unicorn import Uc

from devices._uart import UartCore
from devices.bus import Fault
from devices.lapic import Lapic
from pmu._core import PmuCore
from vmm._trace import TraceBuffer
from vmm._uarch import BranchPredictor, CacheModel
from vmm.engine import Engine
from vmm.exits import Exit

class _ExitHandler(Protocol):
    """Answers every non-terminal exit: a read's value, a Fault, CPUID's registers, or None."""

    def handle(self, exit: Exit, /) -> int | Fault | tuple[int, int, int, int] | None: ...

class _InterruptSource(Protocol):
    """The NMI or (if ``interrupts``) maskable interrupt to inject now, as (vector, is_nmi)."""

    def next_injection(self, interrupts: bool, /) -> tuple[int, bool] | None: ...

class _Platform(Protocol):
    """The VMware backdoor (reads and updates rax/rbx/rcx/rdx in place) and CR8."""

    def backdoor(self, port: int, regs: dict[str, int], /) -> None: ...
    def read_cr8(self) -> int: ...
    def write_cr8(self, value: int, /) -> None: ...

@final
class BlockTable:
    def __init__(self) -> None: ...

@final
class UcVcpu:
    """One vCPU on a unicorn engine: a vmm.engine.Engine, or the binding's ``Uc``.  ``handler``
    answers exits (vmm.dispatch.Dispatcher)."""

    handler: _ExitHandler | None
    platform: _Platform | None
    intc: _InterruptSource | None
    #: Called on the vCPU side when kick()ed or at ``deadline`` (timers, PMIs), after queued work; during a
    #: run with a timeout also every few million ns of virtual time (the vCPU's clock checks).
    on_attention: Callable[[], object] | None
    retired: int
    tsc_offset: int
    in_guest: bool
    attention: bool
    irq_pending: bool
    nmi_check: bool
    forced_emulation: bool
    #: An IRET that returns to the next instruction drops the engine's translations (SMP machines).
    sync_translations: bool
    #: How many times it did.
    translation_flushes: int
    #: Another vCPU ran since the last drop (set by the machine; only then is there anything to drop).
    others_ran: bool
    #: An access to unmapped physical memory ends the run instead of reading all-ones.
    strict_memory: bool
    #: Accesses to unmapped physical memory (reads all-ones, writes dropped) so far.
    unmapped_reads: int
    unmapped_writes: int
    vcpu_id: int
    #: Virtual ns at which on_attention must run (2**64 - 1: none), as last set.
    deadline: int
    #: Machine time this vCPU did not retire itself (HLT skips, other vCPUs' work): now() = retired + clock_offset.
    clock_offset: int
    max_insns: int
    #: IA32_TSC_AUX (the engine's MSR, which WRMSR sets and RDTSCP returns).
    tsc_aux: int
    #: IA32_TSC_ADJUST of this vCPU (signed).
    tsc_adjust: int
    #: Retire iterations of ``loop .``, ``dec reg; jnz`` and ``jmp .`` self-loops in bulk (exact; off: one by one).
    bulk_loops: bool
    #: Self-loop iterations retired in bulk so far.
    bulk_iterations: int
    #: Let the block hook's fast path run (exact; off: every block takes the slow path).
    fast_blocks: bool
    #: Let REP string iterations after the first take the fast path's case for them (exact; off: the slow path).
    fast_rep: bool
    #: Block hooks that took the slow path so far.
    slow_blocks: int
    #: The engine's stop checks after memory accesses and code hooks, which code hooks added on the engine
    #: need to stop before their instruction (a debugger's breakpoints); off by default.
    engine_exit_checks: bool
    #: Decoded blocks compared with the code at their address again (after a store into code, a TLB flush ...).
    code_checks: int
    code_marks: int
    @property
    def code_pages(self) -> list[tuple[int, int]]: ...
    #: ... and found changed (the decode of the new code taken, the block re-translated).
    code_changes: int
    cache: CacheModel
    predictor: BranchPredictor
    def __init__(self, engine: Engine | Uc, handler: _ExitHandler | None = None, vcpu_id: int = 0) -> None: ...
    def self_test(self) -> list[str]: ...
    def now(self) -> int: ...
    def nmi_blocked(self) -> bool: ...
    def flush_branch_predictor(self) -> None: ...
    def void_regions(self) -> list[tuple[int, int]]: ...
    def cpuid(self, leaf: int, subleaf: int = 0) -> tuple[int, int, int, int] | None: ...
    # the view devices use (devices.vcpu.Vcpu)
    def cpl(self) -> int: ...
    def cr0(self) -> int: ...
    def cr4(self) -> int: ...
    def interrupts_enabled(self) -> bool: ...
    def kick(self) -> None: ...
    def queue_work(self, fn: Callable[[], object]) -> None: ...
    # the machine's controls
    def request_stop(self, text: str = "stopped by the VMM") -> None: ...
    def request_yield(self) -> None: ...
    def stop_before_this_instruction(self, text: str) -> None: ...
    def read_virtual(self, address: int, size: int) -> bytes | None: ...
    def write_virtual(self, address: int, data: bytes) -> bool: ...
    def load_real_mode_segments(self, cs_selector: int) -> None: ...
    def map_mmio(self, base: int, size: int) -> None: ...
    def unmap_mmio(self, base: int, size: int) -> None: ...
    def set_port_exits(self, base: int, size: int, exits: bool) -> None: ...
    def set_uart(self, base: int, core: UartCore | None) -> bool: ...
    def attach_lapic(self, lapic: Lapic, xapic_page: bool = True) -> None: ...
    def attach_pmu(self, core: PmuCore) -> None: ...
    def attach_trace(self, buffer: TraceBuffer | None, mask: int) -> None: ...
    def trace_clock(self) -> None: ...
    def trace_point(self) -> tuple[int, int]: ...
    def run(self, timeout: float = 0.0, steps: int = 0) -> Exit: ...
    def service(self) -> Exit | None: ...
