# SPDX-License-Identifier: GPL-2.0-or-later
"""Type stub of devices.lapic (Cython): the Python API of the local APIC.

What Python sees of devices/lapic.pyx: the register and bit constants, the enums, the
:class:`Lapic` device (bus protocol, delivery to the vCPU, timer, save/restore, the callbacks the
machine sets, INIT/SIPI latches), the ``*_py`` test wrappers of its C API, and the
:class:`ApicBus` joining the LAPICs of a machine.  The C API the hook layer cimports
(devices/lapic.pxd) is not callable from Python and is not described here.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum
from typing import Any, Final, Protocol

from typing_extensions import disjoint_base

from devices.bus import Access, Bus, Fault
from devices.vcpu import Vcpu
from vmm.cpuid import CpuidModel

MSR_APIC_BASE: Final[int]
MSR_TSC_DEADLINE: Final[int]
X2APIC_MSR_BASE: Final[int]
X2APIC_MSR_COUNT: Final[int]
XAPIC_PAGE_SIZE: Final[int]
DEFAULT_APIC_BASE: Final[int]

APIC_BASE_BSP: Final[int]
APIC_BASE_EXTD: Final[int]
APIC_BASE_EN: Final[int]
APIC_BASE_ADDRESS_MASK: Final[int]
APIC_BASE_LOW_RESERVED: Final[int]

REG_ID: Final[int]
REG_VERSION: Final[int]
REG_TPR: Final[int]
REG_APR: Final[int]
REG_PPR: Final[int]
REG_EOI: Final[int]
REG_LDR: Final[int]
REG_DFR: Final[int]
REG_SPIV: Final[int]
REG_ISR: Final[int]
REG_TMR: Final[int]
REG_IRR: Final[int]
REG_ESR: Final[int]
REG_ICR_LOW: Final[int]
REG_ICR_HIGH: Final[int]
REG_LVT_TIMER: Final[int]
REG_TIMER_INITIAL: Final[int]
REG_TIMER_CURRENT: Final[int]
REG_TIMER_DIVIDE: Final[int]
REG_SELF_IPI: Final[int]
VECTOR_BANK_SIZE: Final[int]

LVT_COUNT: Final[int]
X2APIC_BROADCAST: Final[int]
FIRST_LEGAL_VECTOR: Final[int]

APIC_VERSION: Final[int]
SPIV_VECTOR: Final[int]
SPIV_SW_ENABLE: Final[int]
SPIV_FOCUS_DISABLE: Final[int]
LVT_VECTOR: Final[int]
LVT_MASKED: Final[int]
LVT_LEVEL_TRIGGER: Final[int]
ESR_SEND_ILLEGAL_VECTOR: Final[int]
ESR_RECEIVE_ILLEGAL_VECTOR: Final[int]
ESR_REDIRECTABLE_IPI: Final[int]
ICR_DEST_LOGICAL: Final[int]
ICR_WRITABLE: Final[int]
XAPIC_BROADCAST: Final[int]
DFR_FLAT_MODEL: Final[int]
DFR_RESERVED_ONES: Final[int]

class Lvt(IntEnum):
    """Local vector table entries, in register order (offset 0x320 + 0x10 * entry)."""

    TIMER = 0
    THERMAL = 1
    PMC = 2
    LINT0 = 3
    LINT1 = 4
    ERROR = 5

class DeliveryMode(IntEnum):
    FIXED = 0
    LOWEST_PRIORITY = 1
    SMI = 2
    NMI = 4
    INIT = 5
    STARTUP = 6
    EXTINT = 7

class TimerMode(IntEnum):
    ONE_SHOT = 0
    PERIODIC = 1
    TSC_DEADLINE = 2

class Shorthand(IntEnum):
    NONE = 0
    SELF = 1
    ALL_INCLUDING_SELF = 2
    ALL_EXCLUDING_SELF = 3

class ApicMode(IntEnum):
    """IA32_APIC_BASE[11:10] (EN, EXTD)."""

    DISABLED = 0
    INVALID = 1
    XAPIC = 2
    X2APIC = 3

class LapicStateError(ValueError):
    """A saved LAPIC state has the wrong version, fields or apic_id, or a value the registers cannot hold."""

class _Clock(Protocol):
    def now(self) -> int: ...

@disjoint_base
class Lapic:
    """One vCPU's local APIC: a device on the MMIO bus (xAPIC page) and the MSR bus."""

    clock: _Clock
    cpuid: CpuidModel
    vcpu: Vcpu | None
    #: Called (Python paths only) when an interrupt or NMI becomes newly pending.
    on_wakeup: Callable[[], object]
    #: Called with (old, new) base address after the xAPIC page moved.
    on_base_change: Callable[[int, int], object]
    #: Called after every Python-path register write (CR8 included).
    on_write: Callable[[], object]
    apic_id: int
    #: Set by the C path where the Python path would call on_wakeup(), and by the APIC bus when a
    #: message made something newly pending here; the machine clears it.
    wake_pending: bool
    @property
    def bus(self) -> ApicBus | None:
        """The APIC bus this LAPIC is on; None: standalone (its IPIs reach only itself)."""
    @property
    def init_pending(self) -> bool: ...
    @property
    def sipi_vector(self) -> int:
        """The latched SIPI vector, -1 when none."""
    def __init__(self, clock: _Clock, cpuid: CpuidModel, vcpu: Vcpu | None = None, apic_id: int = 0,
                 bsp: bool = True) -> None: ...
    # test wrappers of the C API
    def x2apic_write_py(self, msr: int, value: int, now: int) -> int: ...
    def x2apic_read_py(self, msr: int, now: int) -> tuple[int, int]: ...
    def xapic_write_py(self, offset: int, size: int, value: int, now: int) -> int: ...
    def xapic_read_py(self, offset: int, size: int, now: int) -> int: ...
    def c_state_py(self) -> tuple[bool, int]: ...
    # modes
    @property
    def base(self) -> int: ...
    @property
    def mode(self) -> ApicMode: ...
    @property
    def hardware_enabled(self) -> bool: ...
    @property
    def software_enabled(self) -> bool: ...
    # the bus protocol
    def attach(self, mmio_bus: Bus, msr_bus: Bus) -> None: ...
    def read(self, access: Access) -> int | Fault: ...
    def write(self, access: Access, value: int) -> Fault | None: ...
    def set_cr8(self, value: int) -> None: ...
    def get_cr8(self) -> int: ...
    # delivery to the vCPU
    def pending_interrupt(self) -> int | None: ...
    def interrupt_for(self, vcpu: Vcpu | None = None) -> int | None: ...
    def accept_interrupt(self, vector: int) -> int: ...
    @property
    def nmi_pending(self) -> bool: ...
    def take_nmi(self) -> bool: ...
    def has_wakeup(self) -> bool: ...
    def take_level_eois(self) -> list[int]: ...
    def receive(self, mode: int, vector: int, level: bool) -> bool: ...
    def accepts_destination(self, destination: int, logical: bool) -> bool: ...
    def take_init(self) -> bool: ...
    def take_sipi(self) -> int | None: ...
    def deliver_local(self, lvt: Lvt | int) -> bool: ...
    def lvt_entry(self, lvt: Lvt | int) -> int: ...
    # timer
    def next_deadline(self) -> int | None: ...
    def tick(self, now: int) -> None: ...
    # save / restore
    def get_state(self) -> dict[str, Any]: ...
    def set_state(self, state: dict[str, Any]) -> None:
        """All or nothing: LapicStateError, with nothing changed, for a state the registers cannot hold."""

@disjoint_base
class ApicBus:
    """The APIC bus of a machine: its LAPICs in APIC-id order, IPIs and I/O APIC messages between them."""

    #: Newly pending events on APICs other than a message's sender; the machine reads and clears it.
    remote_events: int
    def __init__(self) -> None: ...
    def attach(self, lapic: Lapic) -> None: ...
    @property
    def lapics(self) -> tuple[Lapic, ...]: ...
    def deliver(self, destination: int, logical: bool, mode: int, vector: int, level: bool) -> bool: ...
