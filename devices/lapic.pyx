# SPDX-License-Identifier: GPL-2.0-or-later
# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, annotation_typing=False
"""A vCPU's local APIC (xAPIC MMIO page, x2APIC MSRs, IA32_APIC_BASE, timer, LVT delivery) and the
APIC bus that carries IPIs and I/O APIC messages between the local APICs of a machine.

Semantics follow the Intel SDM vol. 3, chapter "Advanced Programmable Interrupt Controller".

Access paths (one device object on two buses, see :meth:`Lapic.attach`):

* the xAPIC page at ``IA32_APIC_BASE[47:12]`` (default 0xFEE00000, relocatable; the machine hears
  about a move through ``on_base_change(old, new)``).  Registers sit at 16-byte aligned offsets and
  are accessed with 32-bit loads and stores; any other size or a misaligned access reads 0 and a
  write is ignored.  Reserved offsets read 0 and ignore writes.  While the APIC is hardware-disabled
  the page is not decoded (SDM: the processor acts as one without an on-chip APIC), and in x2APIC
  mode the SDM makes it behave the same way: nothing answers, so reads return all-ones and writes
  are lost, as for any address with no device and no RAM behind it (KVM with QEMU answers the
  same; kvm-unit-tests' apic test checks it);
* MSR 0x1B (IA32_APIC_BASE) with the SDM's mode transitions (disabled <-> xAPIC -> x2APIC ->
  disabled); a guest write that would go x2APIC -> xAPIC, disabled -> x2APIC, to the invalid state
  EN=0/EXTD=1, set EXTD without CPUID x2APIC, or set reserved bits (0-7, 9, >= MAXPHYADDR) is #GP.
  Host writes (``access.host``) skip only the transition rules.  Every change of EN resets all APIC
  registers to their power-up values (the ID register to the initial APIC ID): the SDM lets a
  disable lose the APIC's state and we always do, and an APIC enabled again starts from its
  power-up state whatever CR8 wrote to the TPR meanwhile.  CPUID.1:EDX.APIC follows EN, as the SDM
  says (the LAPIC sets it in its cpuid model);
* MSRs 0x800-0x8FF in x2APIC mode (#GP otherwise): RsvdZ checking (a write with a reserved bit set
  is #GP; an LVT's read-only delivery-status and remote-IRR bits are not reserved: ignored), 64-bit ICR at 0x830, SELF IPI at 0x83F, read-only ID/LDR (LDR derived from the ID),
  #GP for unknown registers, writes to read-only and reads of write-only registers, a non-zero
  EOI or ESR write;
* MSR 0x6E0 (IA32_TSC_DEADLINE) when CPUID advertises TSC-deadline (#GP otherwise); it reads 0 and
  ignores writes unless the timer LVT is in TSC-deadline mode.

:meth:`Lapic.set_state` applies a whole saved state or, raising :class:`LapicStateError`, nothing:
it refuses the values a guest's MSR and MMIO writes refuse or cannot produce (reserved APIC_BASE
bits and modes, reserved register bits, vectors 0-15 in IRR/ISR/TMR, pending work in a disabled
APIC, values of the wrong type or width).

Interrupt delivery to the vCPU is pulled, not pushed: the vCPU asks :meth:`Lapic.interrupt_for`
(or :meth:`Lapic.pending_interrupt` plus its own RFLAGS.IF/shadow check), then calls
:meth:`Lapic.accept_interrupt`, which returns the vector to deliver through the IDT (the spurious
vector from SPIV if the interrupt is no longer deliverable).  NMIs are a one-deep latch consumed
by :meth:`Lapic.take_nmi`; blocking NMIs until IRET is the vCPU's business.  Whenever an IRR bit,
the NMI latch, an INIT or a SIPI becomes newly pending, ``on_wakeup()`` runs so the machine can
kick a halted vCPU.

APIC bus (:class:`ApicBus`).  The machine puts its LAPICs on one bus in APIC-id order
(``bus.attach(lapic)``; ``lapic.bus``); a LAPIC on no bus is standalone and its IPIs can reach only
itself, as on a bus of one.  Messages are delivered at once, so the ICR delivery-status bit always
reads 0 (idle).

* Who is selected: the ICR shorthand (self, all including self, all excluding self) or else the
  destination: physical (the xAPIC ID register, 8 bits; the 32-bit x2APIC ID) or logical (xAPIC LDR
  in the flat model -- a bitmap -- or the cluster model -- cluster in bits 7:4, member bitmap in
  bits 3:0 -- as each target's DFR says; in x2APIC mode the LDR derived from the ID: cluster ID[31:4]
  in bits 31:16, bit ID[3:0] of bits 15:0).  0xFF is broadcast in 8-bit messages (xAPIC ICR,
  I/O APIC) whatever the target's mode, 0xFFFFFFFF in 32-bit ones (x2APIC ICR).  Messages from an
  I/O APIC enter through :meth:`ApicBus.deliver`.
* Delivery modes: fixed, NMI, INIT and SIPI reach every selected APIC; lowest priority reaches one:
  among the selected APICs that are hardware- and software-enabled, the one with the lowest
  arbitration priority (the APR: TPR, in-service and pending classes, as the SDM defines it), a tie
  going to the lowest APIC id (the SDM leaves ties to the bus arbitration ids; we want a
  deterministic choice).  In x2APIC mode a lowest-priority IPI is refused with the ESR
  "redirectable IPI" error, as the x2APIC specification says; a fixed or lowest-priority IPI with a
  vector below 16 is refused with "send illegal vector" (nothing is sent).  An INIT "level
  de-assert" (ICR trigger level, level 0) does nothing, as on the Pentium 4 and later.  SMI is
  dropped (no SMM).  The SDM's invalid shorthand/mode pairs (a lowest-priority, NMI, INIT or SIPI
  with the self shorthand, for instance) are delivered as their fields say.
* Targets: a hardware-disabled APIC takes nothing, INIT and SIPI included: the SDM makes the
  processor then "functionally equivalent to" one without an on-chip APIC, and messages reach a
  processor only through its APIC (an INIT# pin or machine reset is the machine's business).  A
  software-disabled APIC refuses fixed and lowest-priority interrupts and takes NMI, INIT and SIPI,
  as the SDM says.
* INIT resets the target's registers to their power-up values except what the SDM keeps across
  INIT: the APIC ID register (also a software-written xAPIC ID) and the arbitration ID (the APIC
  ID here); the timer stops, pending and in-service interrupts and a latched NMI are dropped.
  IA32_APIC_BASE -- mode, page address, BSP flag -- is untouched, as the SDM's x2APIC state
  diagram shows (INIT keeps xAPIC, x2APIC or disabled mode).  It forgets a SIPI latched
  before it and latches ``init_pending``.  A SIPI latches its vector in ``sipi_vector`` unless one
  is latched already (a CPU leaves wait-for-SIPI at the first).  The CPU side (wait-for-SIPI,
  starting at vector * 0x1000, the BSP's INIT) is the machine's: it consumes the latches with
  :meth:`Lapic.take_init` and :meth:`Lapic.take_sipi` and drops a SIPI that finds its CPU not
  waiting for one.
* Wake-ups: what a message makes newly pending on an APIC other than its sender (an IRR bit, the
  NMI latch, INIT, SIPI) sets that APIC's ``wake_pending`` and counts one in
  ``ApicBus.remote_events``, on every path and without a Python call; the Python paths (MMIO and
  MSR-bus writes, :meth:`ApicBus.deliver`) also call the target's ``on_wakeup()`` once per event.
  When an x2APIC ICR write on the C path made something newly pending elsewhere, the sender's
  ``wake_pending`` is set too, so the hook layer hands control to the machine, which reads and
  clears ``remote_events`` (and ends the sender's time slice so the targets run soon).

Time comes only from the injected clock (virtual ns; the APIC bus and the TSC run at 1 GHz, so one
timer count lasts "divide value" ns).  :meth:`Lapic.next_deadline` and :meth:`Lapic.tick` let the
run loop fire the timer exactly at its deadline.

C API (devices/lapic.pxd).  The register file is C state of the ``cdef class Lapic``; the vCPU hook
layer may cimport it and serve x2APIC MSR accesses with ``x2apic_read``/``x2apic_write`` (passing the
current virtual time), then poll ``c_interrupt_pending()``, ``c_next_deadline()`` and the
``wake_pending`` flag.  That path calls no Python: no ``on_wakeup()``, no ``on_write()``.  The Python
bus path runs the very same C helpers and reports newly pending events through ``on_wakeup()``
(once per event, after the access).

Not supported:

* SMI (as IPI, I/O APIC message or LVT delivery mode), INIT as an LVT delivery mode and ExtINT:
  the registers accept them, delivery through them does nothing (no SMM, no 8259 INTA path);
* the APIC-bus protocol itself (arbitration cycles, retries, checksums), focus-processor checking
  (SPIV bit 9 is only stored), a lowest-priority IPI with the all-excluding-self shorthand going
  back to its sender (model-specific in the SDM; here the sender never takes part), extended
  (above 8-bit) destinations in I/O APIC messages;
* INIT and SIPI latches in saved states: get_state()/set_state() leave them out (the machine
  holds the CPU's INIT/SIPI state);
* an I/O APIC: EOIs of level-triggered vectors are not broadcast; EOI-broadcast suppression
  (SPIV bit 12, version bit 24) is absent; remote IRR and delivery-status bits always read 0;
* LVT CMCI, remote read (RRD), ESR checksum/accept/illegal-register-address errors, APIC
  virtualisation;
* relocating the xAPIC page over another device's MMIO range: the APIC_BASE write is #GP;
* concurrency: call everything from the thread that runs the vCPUs (others go through
  ``vcpu.queue_work``); the APICs of one bus share it, unlocked.
"""

from __future__ import annotations

from enum import IntEnum

from libc.stdint cimport uint32_t, uint64_t

from devices.bus import GP, BusError

MSR_APIC_BASE = 0x1B
MSR_TSC_DEADLINE = 0x6E0
X2APIC_MSR_BASE = 0x800
X2APIC_MSR_COUNT = 0x100
XAPIC_PAGE_SIZE = 0x1000
DEFAULT_APIC_BASE = 0xFEE00000

APIC_BASE_BSP = 1 << 8
APIC_BASE_EXTD = 1 << 10
APIC_BASE_EN = 1 << 11
APIC_BASE_ADDRESS_MASK = ~0xFFF
#: Bits 0-7 and 9 are reserved; bits at and above MAXPHYADDR are added per CPUID.
APIC_BASE_LOW_RESERVED = 0x2FF

# Register offsets in the xAPIC page (x2APIC MSR = 0x800 + offset >> 4).
REG_ID = 0x20
REG_VERSION = 0x30
REG_TPR = 0x80
REG_APR = 0x90
REG_PPR = 0xA0
REG_EOI = 0xB0
REG_LDR = 0xD0
REG_DFR = 0xE0
REG_SPIV = 0xF0
REG_ISR = 0x100
REG_TMR = 0x180
REG_IRR = 0x200
REG_ESR = 0x280
REG_ICR_LOW = 0x300
REG_ICR_HIGH = 0x310
REG_LVT_TIMER = 0x320
REG_TIMER_INITIAL = 0x380
REG_TIMER_CURRENT = 0x390
REG_TIMER_DIVIDE = 0x3E0
REG_SELF_IPI = 0x3F0

#: ISR, TMR and IRR are each eight 32-bit registers, 16 bytes apart.
VECTOR_BANK_SIZE = 0x80

LVT_COUNT = LAPIC_LVT_COUNT
#: 0x14 = integrated APIC; bits 23:16 = number of LVT entries minus one.




X2APIC_BROADCAST = 0xFFFFFFFF

#: Vectors 0-15 are exceptions and may not be sent or received as interrupts.
FIRST_LEGAL_VECTOR = 16


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


_LVT_OFFSETS = range(REG_LVT_TIMER, REG_LVT_TIMER + 0x10 * LVT_COUNT, 0x10)
_STATE_VERSION = 1
_STATE_KEYS = frozenset({
    "version", "apic_id", "apic_base", "xapic_id", "tpr", "ldr", "dfr", "spiv", "irr", "isr", "tmr",
    "esr", "esr_accumulated", "icr", "lvt", "timer_initial_count", "timer_divide_config", "timer_deadline",
    "nmi_pending",
})


#: The fields of a state that hold plain integers.
_STATE_INTS = tuple(sorted(_STATE_KEYS - {"version", "apic_id", "lvt", "timer_deadline", "nmi_pending"}))


class LapicStateError(ValueError):
    """A saved LAPIC state has the wrong version, fields or apic_id, or a value the registers cannot hold."""


cdef extern from *:
    int __builtin_clzll(unsigned long long x) nogil

# C-side copies of the register map and bit definitions (the Python names above are the public ones).
cdef enum:
    O_ID = 0x20
    O_VERSION = 0x30
    O_TPR = 0x80
    O_APR = 0x90
    O_PPR = 0xA0
    O_EOI = 0xB0
    O_LDR = 0xD0
    O_DFR = 0xE0
    O_SPIV = 0xF0
    O_ISR = 0x100
    O_TMR = 0x180
    O_IRR = 0x200
    O_ESR = 0x280
    O_ICR_LOW = 0x300
    O_ICR_HIGH = 0x310
    O_LVT_TIMER = 0x320
    O_LVT_END = 0x380        # one past the last LVT register (ERROR at 0x370)
    O_TIMER_INITIAL = 0x380
    O_TIMER_CURRENT = 0x390
    O_TIMER_DIVIDE = 0x3E0
    O_SELF_IPI = 0x3F0
    O_BANK_SIZE = 0x80

    L_TIMER = 0
    L_THERMAL = 1
    L_PMC = 2
    L_LINT0 = 3
    L_LINT1 = 4
    L_ERROR = 5

    DM_FIXED = 0
    DM_LOWEST = 1
    DM_NMI = 4
    DM_INIT = 5
    DM_STARTUP = 6

    TM_ONE_SHOT = 0
    TM_PERIODIC = 1
    TM_TSC_DEADLINE = 2

    SH_NONE = 0
    SH_SELF = 1
    SH_ALL_INCLUDING_SELF = 2
    SH_ALL_EXCLUDING_SELF = 3

    C_APIC_BASE_EN = 1 << 11
    C_SPIV_VECTOR = 0xFF
    C_SPIV_SW_ENABLE = 1 << 8
    C_SPIV_FOCUS_DISABLE = 1 << 9
    C_LVT_VECTOR = 0xFF
    C_LVT_MASKED = 1 << 16
    C_LVT_LEVEL = 1 << 15
    C_ESR_SEND_ILLEGAL = 1 << 5
    C_ESR_RECEIVE_ILLEGAL = 1 << 6
    C_ESR_REDIRECTABLE = 1 << 4
    C_ICR_DEST_LOGICAL = 1 << 11
    C_ICR_LEVEL_ASSERT = 1 << 14
    C_ICR_TRIGGER_LEVEL = 1 << 15
    C_ICR_WRITABLE = 0x000CCFFF   # vector, delivery mode, destination mode, level, trigger, shorthand
    C_XAPIC_BROADCAST = 0xFF
    C_DFR_FLAT = 0xF0000000
    C_DFR_RESERVED_ONES = 0x0FFFFFFF
    C_FIRST_LEGAL_VECTOR = 16
    C_VECTOR_MODE_MASK = (1 << 16) | 0x7FF

cdef uint32_t C_APIC_VERSION = 0x14 | ((LAPIC_LVT_COUNT - 1) << 16)
cdef uint32_t C_X2APIC_BROADCAST = 0xFFFFFFFF
cdef uint64_t LOW32 = 0xFFFFFFFFULL
cdef uint64_t NO_DEADLINE = 0xFFFFFFFFFFFFFFFFULL
cdef uint32_t C_X2APIC_MSR_BASE = 0x800
cdef uint32_t C_X2APIC_MSR_END = 0x900
cdef uint32_t C_MSR_TIMER_CURRENT = 0x839

# The Python names of the register constants (tests, tools) are the C definitions above.
APIC_VERSION = C_APIC_VERSION
SPIV_VECTOR = C_SPIV_VECTOR
SPIV_SW_ENABLE = C_SPIV_SW_ENABLE
SPIV_FOCUS_DISABLE = C_SPIV_FOCUS_DISABLE
LVT_VECTOR = C_LVT_VECTOR
LVT_MASKED = C_LVT_MASKED
LVT_LEVEL_TRIGGER = C_LVT_LEVEL
ESR_SEND_ILLEGAL_VECTOR = C_ESR_SEND_ILLEGAL
ESR_RECEIVE_ILLEGAL_VECTOR = C_ESR_RECEIVE_ILLEGAL
ESR_REDIRECTABLE_IPI = C_ESR_REDIRECTABLE
ICR_DEST_LOGICAL = C_ICR_DEST_LOGICAL
ICR_WRITABLE = C_ICR_WRITABLE
XAPIC_BROADCAST = C_XAPIC_BROADCAST
DFR_FLAT_MODEL = <uint32_t>C_DFR_FLAT   # an enum constant is a C int: 0xF0000000 would read negative
DFR_RESERVED_ONES = C_DFR_RESERVED_ONES

# Writable bits of each LVT entry (the timer gains bit 18 with CPUID tsc_deadline, see writable_mask).
cdef uint32_t LVT_WRITABLE_C[LAPIC_LVT_COUNT]
LVT_WRITABLE_C[:] = [
    C_LVT_MASKED | C_LVT_VECTOR | (1 << 17),
    C_VECTOR_MODE_MASK,
    C_VECTOR_MODE_MASK,
    C_VECTOR_MODE_MASK | C_LVT_LEVEL | (1 << 13),
    C_VECTOR_MODE_MASK | C_LVT_LEVEL | (1 << 13),
    C_LVT_MASKED | C_LVT_VECTOR,
]
# Read-only bits of each LVT entry: delivery status (bit 12), and remote IRR (bit 14) of LINT0/1.
# They are not reserved: an x2APIC write with them set is no #GP (Linux's disconnect_bsp_APIC sets
# both in its LINT0 write at every shutdown); like every read-only bit, the write leaves them alone.
cdef uint32_t LVT_READ_ONLY_C[LAPIC_LVT_COUNT]
LVT_READ_ONLY_C[:] = [1 << 12, 1 << 12, 1 << 12, (1 << 12) | (1 << 14), (1 << 12) | (1 << 14), 1 << 12]


cdef inline int highest_vector(const uint64_t *bits) noexcept nogil:
    """Highest set vector of a 256-bit IRR/ISR/TMR bitmap (four 64-bit words), or -1 when empty."""
    cdef int i
    for i in range(3, -1, -1):
        if bits[i]:
            return 64 * i + 63 - __builtin_clzll(bits[i])
    return -1


cdef inline bint test_bit(const uint64_t *bits, int vector) noexcept nogil:
    return (bits[vector >> 6] >> (vector & 63)) & 1


cdef inline void set_bit(uint64_t *bits, int vector) noexcept nogil:
    bits[vector >> 6] |= 1ULL << (vector & 63)


cdef inline void clear_bit(uint64_t *bits, int vector) noexcept nogil:
    bits[vector >> 6] &= ~(1ULL << (vector & 63))


cdef inline uint64_t bank_word(const uint64_t *bits, uint32_t index) noexcept nogil:
    """32-bit register ``index`` (0..7) of a vector bank."""
    return (bits[index >> 1] >> (32 * (index & 1))) & LOW32


cdef object bits_to_int(const uint64_t *bits):
    return int(bits[0]) | int(bits[1]) << 64 | int(bits[2]) << 128 | int(bits[3]) << 192


cdef int bits_from_int(uint64_t *bits, object value) except -1:
    cdef int i
    if value < 0 or value >> 256:
        raise OverflowError(f"256-bit vector bitmap out of range: {value!r}")
    for i in range(4):
        bits[i] = (value >> (64 * i)) & 0xFFFFFFFFFFFFFFFF
    return 0


cdef inline uint64_t divide_value(uint32_t config) noexcept nogil:
    """Divide configuration bits 3,1,0 -> 2, 4, ... 128, and 0b111 -> 1."""
    cdef uint32_t code = ((config >> 1) & 4) | (config & 3)
    return 1 if code == 7 else 2ULL << code


def _divide_value(config: int) -> int:
    return divide_value(config)


def _highest_vector(bits: int) -> int:
    """Highest set vector of a 256-bit IRR/ISR/TMR bitmap, or -1 when empty."""
    return bits.bit_length() - 1


_MODES_BY_BITS = tuple(ApicMode(bits) for bits in range(4))   # APIC_BASE bits 11:10 -> mode


cdef class Lapic:
    """One vCPU's local APIC; see the module docstring for the access paths and what is left out.

    The register file lives in C fields (devices/lapic.pxd); the hook layer may cimport this class
    and use its C API (x2apic_read/x2apic_write, c_interrupt_pending, c_next_deadline).
    """

    def __init__(self, clock, cpuid, vcpu=None, apic_id: int = 0, bsp: bool = True):
        self.clock = clock
        self.cpuid = cpuid
        self.vcpu = vcpu
        self.apic_id = apic_id
        #: Called when an interrupt or NMI becomes newly pending (the machine kicks the vCPU).
        #: Only the Python paths call it; the C API sets ``wake_pending`` instead.
        self.on_wakeup = vcpu.kick if vcpu is not None else (lambda: None)
        #: Called with (old, new) base address after the xAPIC page moved.
        self.on_base_change = lambda old, new: None
        #: Called after every Python-path register write (CR8 included): timers or priorities may
        #: have changed, so the machine re-reads next_deadline() and re-checks for interrupts.
        self.on_write = lambda: None
        self._mmio_bus = None
        self.wake_pending = False
        self.wakeups = 0
        self.init_pending = False
        self.sipi_vector = -1
        self._sample_cpuid()
        self.apic_base = DEFAULT_APIC_BASE | APIC_BASE_EN | (APIC_BASE_BSP if bsp else 0)
        self.reset_registers()

    def _sample_cpuid(self) -> None:
        """Refresh the C copies of the CPUID facts the C paths need."""
        self.has_tsc_deadline = self.cpuid.has("tsc_deadline")
        self.is_intel = self.cpuid.vendor == "intel"

    cdef void reset_registers(self) noexcept:
        """Power-up values of everything but IA32_APIC_BASE (SDM: also what a hardware disable leaves)."""
        cdef int i
        self.xapic_id = self.apic_id & 0xFF
        self.tpr = 0
        self.ldr = 0
        self.dfr = C_DFR_FLAT
        self.spiv = C_SPIV_VECTOR
        for i in range(4):
            self.irr[i] = 0
            self.isr[i] = 0
            self.tmr[i] = 0
            self.level_eois[i] = 0
        self.esr = 0
        # Errors collect here; a write to ESR moves them into the readable esr (write-before-read).
        self.esr_accumulated = 0
        self.icr = 0
        for i in range(LAPIC_LVT_COUNT):
            self.lvt[i] = C_LVT_MASKED
        self.timer_initial_count = 0
        self.timer_divide_config = 0
        # Absolute virtual ns of the next timer expiry (one-shot/periodic) or the armed TSC deadline.
        self.timer_armed = False
        self.timer_deadline = 0
        self.nmi_latched = False

    cdef int flush_wakeups(self) except -1:
        """Report newly pending events of a Python-path operation through on_wakeup(), one call each."""
        while self.wakeups:
            self.wakeups -= 1
            self.on_wakeup()
        return 0

    cdef int report_wakeups(self) except -1:
        """flush_wakeups() after a Python-path write: an ICR write may have made something pending
        on the other APICs of the bus too, and each of them reports its own."""
        if self.bus is None:
            return self.flush_wakeups()
        return self.bus.flush_wakeups()

    # -- the C API (devices/lapic.pxd) ----------------------------------------------------
    cdef int x2apic_write(self, uint32_t msr, uint64_t value, uint64_t now) noexcept:
        cdef uint64_t remote_before = self.bus.remote_events if self.bus is not None else 0
        cdef int result = self.x2apic_write_core(msr, value, now)
        if result == LAPIC_DONE and msr == C_X2APIC_MSR_BASE + (O_EOI >> 4) and self.has_level_eois():
            return LAPIC_SETTLE         # the I/O APIC must hear of it now (settle_write)
        self.wakeups_to_flag(remote_before)
        return result

    cdef void wakeups_to_flag(self, uint64_t remote_before) noexcept:
        """After a C-path write: newly pending events are reported in wake_pending, not on_wakeup()."""
        if self.wakeups:
            self.wakeups = 0
            self.wake_pending = True
        if self.bus is not None and self.bus.remote_events != remote_before:
            # An IPI made something newly pending on another APIC.  Delivery set that APIC's
            # wake_pending already; our own tells the hook layer to let the machine see it now.
            self.bus.forget_wakeups()
            self.wake_pending = True

    cdef uint64_t xapic_read(self, uint32_t offset, uint32_t size, uint64_t now) noexcept:
        """A read of ``size`` bytes at ``offset`` in the xAPIC page (the module docstring says what
        answers: all-ones unless in xAPIC mode, 0 for other sizes, misaligned and reserved offsets)."""
        cdef uint64_t value = 0
        if ((self.apic_base >> 10) & 3) != 2:
            return 0xFFFFFFFFFFFFFFFFULL if size >= 8 else (1ULL << (8 * size)) - 1
        if size != 4 or offset & 0xF or not self.read_register(offset, False, now, &value):
            return 0
        return value

    cdef int xapic_write(self, uint32_t offset, uint32_t size, uint64_t value, uint64_t now) noexcept:
        cdef uint64_t remote_before = self.bus.remote_events if self.bus is not None else 0
        if offset == O_LVT_TIMER:
            return LAPIC_UNHANDLED      # the Python path samples CPUID's TSC-deadline bit first
        if not self.xapic_write_core(offset, size, value, now):
            return LAPIC_DONE
        if offset == O_EOI and self.has_level_eois():
            return LAPIC_SETTLE         # the I/O APIC must hear of it now (settle_write)
        self.wakeups_to_flag(remote_before)
        return LAPIC_DONE

    cdef bint xapic_write_core(self, uint32_t offset, uint32_t size, uint64_t value, uint64_t now) noexcept:
        """Apply a write to the xAPIC page; False if it is ignored (not in xAPIC mode, another size than
        4, a misaligned offset).  Reserved offsets and read-only registers ignore it too."""
        if ((self.apic_base >> 10) & 3) != 2 or size != 4 or offset & 0xF:
            return False
        self.write_register(offset, value & LOW32, False, now)
        return True

    cdef int settle_write(self) except -1:
        """What write() does after every write: report newly pending events through on_wakeup(),
        then call on_write()."""
        self.report_wakeups()
        self.on_write()
        return 0

    cdef int x2apic_write_core(self, uint32_t msr, uint64_t value, uint64_t now) noexcept:
        if ((self.apic_base >> 10) & 3) != 3 or msr < C_X2APIC_MSR_BASE or msr >= C_X2APIC_MSR_END:
            return LAPIC_UNHANDLED
        if self.write_register((msr - C_X2APIC_MSR_BASE) << 4, value, True, now):
            return LAPIC_DONE
        return LAPIC_GP

    cdef int x2apic_read(self, uint32_t msr, uint64_t *value, uint64_t now) noexcept:
        if ((self.apic_base >> 10) & 3) != 3 or msr < C_X2APIC_MSR_BASE or msr >= C_X2APIC_MSR_END:
            return LAPIC_UNHANDLED
        if self.read_register((msr - C_X2APIC_MSR_BASE) << 4, True, now, value):
            return LAPIC_DONE
        return LAPIC_GP

    cdef bint c_interrupt_pending(self) noexcept:
        return self.nmi_latched or self.pending_vector() >= 0

    cdef uint64_t c_next_deadline(self) noexcept:
        return self.timer_deadline if self.timer_armed else NO_DEADLINE

    def x2apic_write_py(self, msr: int, value: int, now: int) -> int:
        """Test wrapper of the C API x2apic_write(): 0 done, 1 #GP, 2 not handled (no callbacks run)."""
        return self.x2apic_write(msr, value, now)

    def x2apic_read_py(self, msr: int, now: int) -> tuple:
        """Test wrapper of the C API x2apic_read(): (0/1/2, value)."""
        cdef uint64_t value = 0
        cdef int result = self.x2apic_read(msr, &value, now)
        return result, value

    def xapic_write_py(self, offset: int, size: int, value: int, now: int) -> int:
        """Test wrapper of the C API xapic_write(): 0 done, 2 not handled, 3 settle (no callbacks run)."""
        return self.xapic_write(offset, size, value, now)

    def xapic_read_py(self, offset: int, size: int, now: int) -> int:
        """Test wrapper of the C API xapic_read()."""
        return self.xapic_read(offset, size, now)

    def c_state_py(self) -> tuple:
        """Test wrapper: (c_interrupt_pending(), c_next_deadline())."""
        return self.c_interrupt_pending(), self.c_next_deadline()

    # -- modes -----------------------------------------------------------------------------
    @property
    def base(self) -> int:
        """Physical address of the xAPIC page."""
        return self.apic_base & APIC_BASE_ADDRESS_MASK

    @property
    def mode(self) -> ApicMode:
        return _MODES_BY_BITS[(self.apic_base >> 10) & 3]   # no enum construction per access

    @property
    def hardware_enabled(self) -> bool:
        return bool(self.apic_base & C_APIC_BASE_EN)

    @property
    def software_enabled(self) -> bool:
        return bool(self.spiv & C_SPIV_SW_ENABLE)

    # -- bus glue --------------------------------------------------------------------------
    def attach(self, mmio_bus, msr_bus) -> None:
        """Own the xAPIC page at the current base and MSRs 0x1B, 0x6E0 and 0x800-0x8FF."""
        mmio_bus.register(self.base, XAPIC_PAGE_SIZE, self)
        msr_bus.register(MSR_APIC_BASE, 1, self)
        msr_bus.register(MSR_TSC_DEADLINE, 1, self)
        msr_bus.register(X2APIC_MSR_BASE, X2APIC_MSR_COUNT, self)
        self._mmio_bus = mmio_bus

    def read(self, access):
        # The start of the range the access hit tells the buses apart: the xAPIC page is
        # 4 KiB aligned, so it can never start at 0x1B, 0x6E0 or 0x800.
        range_base = access.address - access.offset
        if range_base == MSR_APIC_BASE:
            return self.apic_base
        if range_base == MSR_TSC_DEADLINE:
            return self._read_tsc_deadline()
        if range_base == X2APIC_MSR_BASE:
            return self._read_x2apic(access.address)
        return self._read_mmio(access)

    def write(self, access, value: int):
        try:
            result = self._write(access, value)
        finally:
            self.report_wakeups()
        self.on_write()
        return result

    def _write(self, access, value: int):
        range_base = access.address - access.offset
        if range_base == MSR_APIC_BASE:
            return self._write_apic_base(value, access.host)
        if range_base == MSR_TSC_DEADLINE:
            return self._write_tsc_deadline(value)
        if range_base == X2APIC_MSR_BASE:
            return self._write_x2apic(access.address, value)
        self._write_mmio(access, value)
        return None

    def _now_for(self, offset: int) -> int:
        """clock.now() for the registers whose access depends on time, else 0 (saves a clock call)."""
        if offset in (REG_LVT_TIMER, REG_TIMER_INITIAL, REG_TIMER_CURRENT, REG_TIMER_DIVIDE):
            return self.clock.now()
        return 0

    def _read_mmio(self, access) -> int:
        return self.xapic_read(access.offset, access.size, self._now_for(access.offset))

    def _write_mmio(self, access, value: int) -> None:
        offset = access.offset
        if offset == REG_LVT_TIMER:
            self._sample_cpuid()
        self.xapic_write_core(offset, access.size, value, self._now_for(offset))

    def _read_x2apic(self, msr: int):
        cdef uint64_t value = 0
        now = self.clock.now() if msr == C_MSR_TIMER_CURRENT else 0
        result = self.x2apic_read(msr, &value, now)
        if result == LAPIC_DONE:
            return value
        return GP

    def _write_x2apic(self, msr: int, value: int):
        if ((self.apic_base >> 10) & 3) != ApicMode.X2APIC:
            return GP
        offset = (msr - X2APIC_MSR_BASE) << 4
        if value < 0 or value >> 64:
            return GP
        if offset == REG_LVT_TIMER:
            self._sample_cpuid()
        result = self.x2apic_write_core(msr, value, self._now_for(offset))
        return None if result == LAPIC_DONE else GP

    # -- IA32_APIC_BASE --------------------------------------------------------------------
    def _write_apic_base(self, value: int, host: bool):
        self._sample_cpuid()
        if self._apic_base_refused(value) is not None:
            return GP
        old_mode, new_mode = self.mode, ApicMode((value >> 10) & 3)
        if not host and (old_mode, new_mode) in ((ApicMode.X2APIC, ApicMode.XAPIC),
                                                  (ApicMode.DISABLED, ApicMode.X2APIC)):
            return GP
        old_base, new_base = self.base, value & APIC_BASE_ADDRESS_MASK
        if new_base != old_base and not self._remap(old_base, new_base):
            return GP
        old_enabled = self.apic_base & C_APIC_BASE_EN
        self.apic_base = value
        if (value & C_APIC_BASE_EN) != old_enabled:
            self.reset_registers()
            self.cpuid.set_feature("apic", bool(value & C_APIC_BASE_EN))
        if new_base != old_base:
            self.on_base_change(old_base, new_base)
        return None

    def _apic_base_refused(self, value: int):
        """Why no write, not even the host's, may put ``value`` in IA32_APIC_BASE; None if one may."""
        max_phys_addr = self.cpuid.query(0x80000008)[0] & 0xFF
        reserved = APIC_BASE_LOW_RESERVED | (-1 << max_phys_addr)
        if not self.cpuid.has("x2apic"):
            reserved |= APIC_BASE_EXTD
        if value < 0 or value & reserved:
            return "sets reserved bits"
        if (value >> 10) & 3 == ApicMode.INVALID:
            return "is the invalid mode EN=0 EXTD=1"
        return None

    def _remap(self, old_base: int, new_base: int) -> bool:
        """Move our MMIO registration; False (registration unchanged) if the new page is taken."""
        if self._mmio_bus is None:
            return True
        self._mmio_bus.unregister(old_base)
        try:
            self._mmio_bus.register(new_base, XAPIC_PAGE_SIZE, self)
        except BusError:
            self._mmio_bus.register(old_base, XAPIC_PAGE_SIZE, self)
            return False
        return True

    # -- register file (shared by MMIO, x2APIC MSRs and the C API) --------------------------
    cdef bint read_register(self, uint32_t offset, bint x2apic, uint64_t now, uint64_t *value) noexcept:
        """Store the register's value; False where the offset is reserved or write-only in this mode."""
        cdef uint64_t v
        if offset == O_ID:
            v = self.apic_id if x2apic else <uint64_t>self.xapic_id << 24
        elif offset == O_VERSION:
            v = C_APIC_VERSION
        elif offset == O_TPR:
            v = self.tpr
        elif offset == O_APR:
            if x2apic:
                return False
            v = self.c_apr()
        elif offset == O_PPR:
            v = self.c_ppr()
        elif offset == O_EOI:
            if x2apic:
                return False
            v = 0
        elif offset == O_LDR:
            v = self.c_x2apic_ldr() if x2apic else self.ldr
        elif offset == O_DFR:
            if x2apic:
                return False
            v = self.dfr | C_DFR_RESERVED_ONES
        elif offset == O_SPIV:
            v = self.spiv
        elif O_ISR <= offset < O_ISR + O_BANK_SIZE:
            v = bank_word(self.isr, (offset - O_ISR) >> 4)    # 16 bytes per 32 vectors
        elif O_TMR <= offset < O_TMR + O_BANK_SIZE:
            v = bank_word(self.tmr, (offset - O_TMR) >> 4)
        elif O_IRR <= offset < O_IRR + O_BANK_SIZE:
            v = bank_word(self.irr, (offset - O_IRR) >> 4)
        elif offset == O_ESR:
            v = self.esr
        elif offset == O_ICR_LOW:
            v = self.icr if x2apic else self.icr & LOW32
        elif offset == O_ICR_HIGH:
            if x2apic:
                return False
            v = self.icr >> 32
        elif O_LVT_TIMER <= offset < O_LVT_END and not offset & 0xF:
            v = self.lvt[(offset - O_LVT_TIMER) >> 4]
        elif offset == O_TIMER_INITIAL:
            v = self.timer_initial_count
        elif offset == O_TIMER_CURRENT:
            v = self.timer_current_count(now)
        elif offset == O_TIMER_DIVIDE:
            v = self.timer_divide_config
        else:
            return False
        value[0] = v
        return True

    cdef bint writable_mask(self, uint32_t offset, bint x2apic, uint64_t *mask) noexcept:
        """Store the bits software may write at ``offset``; False if the register is not writable there."""
        cdef uint64_t m
        cdef int lvt
        if offset == O_TPR:
            m = 0xFF
        elif offset == O_EOI or offset == O_ESR:
            m = 0  # the written value is ignored; x2APIC demands 0
        elif offset == O_SPIV:
            m = C_SPIV_VECTOR | C_SPIV_SW_ENABLE | C_SPIV_FOCUS_DISABLE
        elif offset == O_ICR_LOW:
            m = (LOW32 << 32 | C_ICR_WRITABLE) if x2apic else C_ICR_WRITABLE
        elif O_LVT_TIMER <= offset < O_LVT_END and not offset & 0xF:
            lvt = (offset - O_LVT_TIMER) >> 4
            m = LVT_WRITABLE_C[lvt]
            if lvt == L_TIMER and self.has_tsc_deadline:
                m |= 1 << 18
        elif offset == O_TIMER_INITIAL:
            m = LOW32
        elif offset == O_TIMER_DIVIDE:
            m = 0xB
        elif x2apic:
            if offset != O_SELF_IPI:
                return False
            m = 0xFF
        elif offset == O_ID or offset == O_LDR or offset == O_ICR_HIGH:
            m = 0xFF000000
        elif offset == O_DFR:
            m = C_DFR_FLAT
        else:
            return False
        mask[0] = m
        return True

    cdef bint write_register(self, uint32_t offset, uint64_t value, bint x2apic, uint64_t now) noexcept:
        """Apply a register write; False means x2APIC mode must raise #GP (MMIO ignores it)."""
        cdef uint64_t writable = 0, read_only = 0
        cdef int i
        if O_LVT_TIMER <= offset < O_LVT_END and not offset & 0xF:
            read_only = LVT_READ_ONLY_C[(offset - O_LVT_TIMER) >> 4]
        if not self.writable_mask(offset, x2apic, &writable) or (x2apic and value & ~(writable | read_only)):
            return False
        value &= writable
        if offset == O_LVT_TIMER and ((value >> 17) & 3) == 3:
            # Timer mode 0b11 is reserved: #GP in x2APIC, and the xAPIC page keeps only bit 17.
            if x2apic:
                return False
            value &= ~(1ULL << 18)
        if offset == O_TPR:
            self.tpr = <uint32_t>value
        elif offset == O_EOI:
            self.c_eoi()
        elif offset == O_SPIV:
            self.spiv = <uint32_t>value
            if not self.spiv & C_SPIV_SW_ENABLE:
                for i in range(LAPIC_LVT_COUNT):
                    self.lvt[i] |= C_LVT_MASKED
        elif offset == O_ESR:
            self.esr = self.esr_accumulated
            self.esr_accumulated = 0
        elif offset == O_ICR_LOW:
            self.icr = value if x2apic else (self.icr & ~LOW32) | value
            self.send_ipi(x2apic)
        elif offset == O_ICR_HIGH:
            self.icr = (self.icr & LOW32) | value << 32
        elif O_LVT_TIMER <= offset < O_LVT_END:
            self.write_lvt((offset - O_LVT_TIMER) >> 4, <uint32_t>value, now)
        elif offset == O_TIMER_INITIAL:
            self.write_timer_initial(<uint32_t>value, now)
        elif offset == O_TIMER_DIVIDE:
            self.write_timer_divide(<uint32_t>value, now)
        elif offset == O_SELF_IPI:
            self.send_fixed_ipi_to_self(<uint32_t>value)
        elif offset == O_ID:
            self.xapic_id = <uint32_t>(value >> 24)
        elif offset == O_LDR:
            self.ldr = <uint32_t>value
        elif offset == O_DFR:
            self.dfr = <uint32_t>value
        return True

    cdef void write_lvt(self, int lvt, uint32_t value, uint64_t now) noexcept:
        cdef bint old_deadline_mode
        if not self.spiv & C_SPIV_SW_ENABLE:
            value |= C_LVT_MASKED  # SDM: masks cannot be cleared while the APIC is software-disabled
        if lvt == L_TIMER:
            self.c_tick(now)   # fire an overdue expiry before the timer is reprogrammed
            old_deadline_mode = self.timer_mode() == TM_TSC_DEADLINE
            if old_deadline_mode != (((value >> 17) & 3) == TM_TSC_DEADLINE):
                # SDM: switching to or from TSC-deadline mode disarms the timer.
                self.timer_initial_count = 0
                self.timer_armed = False
        self.lvt[lvt] = value

    # -- priorities ------------------------------------------------------------------------
    cdef uint32_t c_ppr(self) noexcept:
        cdef int isrv = highest_vector(self.isr)
        if isrv < 0:
            isrv = 0
        return self.tpr if (self.tpr >> 4) >= <uint32_t>(isrv >> 4) else <uint32_t>(isrv & 0xF0)

    cdef uint32_t c_apr(self) noexcept:
        cdef int isrv = highest_vector(self.isr)
        cdef int irrv = highest_vector(self.irr)
        cdef uint32_t result
        if isrv < 0:
            isrv = 0
        if irrv < 0:
            irrv = 0
        if (self.tpr >> 4) >= <uint32_t>(irrv >> 4) and (self.tpr >> 4) > <uint32_t>(isrv >> 4):
            return self.tpr
        result = self.tpr & 0xF0
        if <uint32_t>(isrv & 0xF0) > result:
            result = isrv & 0xF0
        if <uint32_t>(irrv & 0xF0) > result:
            result = irrv & 0xF0
        return result

    cdef uint32_t c_x2apic_ldr(self) noexcept:
        """x2APIC LDR: cluster (ID[31:4]) in bits 31:16, one bit for ID[3:0] in bits 15:0."""
        return ((self.apic_id >> 4) << 16) | (1U << (self.apic_id & 0xF))

    def set_cr8(self, value: int) -> None:
        """MOV to CR8: TPR[7:4] = CR8[3:0], TPR[3:0] = 0 (reserved CR8 bits are the vCPU's #GP)."""
        self.tpr = (value & 0xF) << 4
        self.on_write()

    def get_cr8(self) -> int:
        return self.tpr >> 4

    # -- delivery to the vCPU --------------------------------------------------------------
    cdef int pending_vector(self) noexcept:
        cdef int vector = highest_vector(self.irr)
        if vector >= 0 and <uint32_t>(vector >> 4) > (self.c_ppr() >> 4):
            return vector
        return -1

    def pending_interrupt(self):
        """Highest IRR vector whose priority class is above the PPR's, or None."""
        cdef int vector = self.pending_vector()
        return None if vector < 0 else vector

    def interrupt_for(self, vcpu=None):
        """:meth:`pending_interrupt` if ``vcpu`` (default: ours) can take one now (IF=1, no shadow)."""
        vcpu = self.vcpu if vcpu is None else vcpu
        return self.pending_interrupt() if vcpu.interrupts_enabled() else None

    def accept_interrupt(self, int vector) -> int:
        """The vCPU acknowledges ``vector``: IRR -> ISR.  Returns the vector to deliver through the IDT.

        If ``vector`` is no longer deliverable (it left the IRR or the PPR rose since it was
        offered), nothing changes and the SPIV spurious vector is returned; a spurious interrupt
        needs no EOI.
        """
        if 0 <= vector < 256 and test_bit(self.irr, vector) and <uint32_t>(vector >> 4) > (self.c_ppr() >> 4):
            clear_bit(self.irr, vector)
            set_bit(self.isr, vector)
            return vector
        return self.spiv & C_SPIV_VECTOR

    @property
    def nmi_pending(self) -> bool:
        """An NMI is latched and not yet taken by the vCPU."""
        return self.nmi_latched

    def take_nmi(self) -> bool:
        """Consume the pending NMI, if any.  IF does not block NMIs; NMI-blocking until IRET is the vCPU's."""
        taken = self.nmi_latched
        self.nmi_latched = False
        return taken

    def has_wakeup(self) -> bool:
        """Whether an NMI or an interrupt above the PPR is pending (what ends HLT; IF is the vCPU's check)."""
        return self.c_interrupt_pending()

    cdef void c_eoi(self) noexcept:
        cdef int vector = highest_vector(self.isr)
        if vector >= 0:
            clear_bit(self.isr, vector)
            if test_bit(self.tmr, vector):
                # The IOAPIC that sent it must hear of it (remote IRR); the machine collects these
                # through take_level_eois() when it is told something happened.
                set_bit(self.level_eois, vector)
                self.wakeups += 1

    cdef bint has_level_eois(self) noexcept:
        return (self.level_eois[0] | self.level_eois[1] | self.level_eois[2] | self.level_eois[3]) != 0

    def take_level_eois(self) -> list:
        """Level-triggered vectors EOIed since the last call (for the IOAPIC's remote IRR), then forget them."""
        if not self.has_level_eois():
            return []       # (the machine asks at every timer sync: usually none)
        vectors = [v for v in range(256) if test_bit(self.level_eois, v)]
        for v in vectors:
            clear_bit(self.level_eois, v)
        return vectors

    def receive(self, int mode, int vector, bint level) -> bool:
        """An interrupt message addressed to this APIC (one target of an APIC-bus message): True if
        it is now pending or latched.  See :meth:`ApicBus.deliver` for messages that must find
        their targets.

        Fixed and lowest-priority messages go to the IRR (TMR set for level-triggered ones; a
        vector below 16 is a receive-illegal-vector error instead; a software-disabled APIC
        refuses them), NMI latches an NMI, INIT resets the registers and latches ``init_pending``,
        SIPI latches its vector for :meth:`take_sipi`.  A hardware-disabled APIC accepts nothing.
        SMI and ExtINT are not modelled."""
        cdef bint accepted
        if not 0 <= vector < 256:
            return False
        try:
            accepted = self.c_accept_message(mode, vector, level)
        finally:
            self.flush_wakeups()
        return accepted

    def accepts_destination(self, uint32_t destination, bint logical) -> bool:
        """Whether an APIC-bus message for ``destination`` (physical id, or logical in flat/cluster
        model; x2APIC uses 32-bit ids) selects this APIC; 0xFF (0xFFFFFFFF in x2APIC) is broadcast."""
        return accepts(self, destination, logical, ((self.apic_base >> 10) & 3) == 3)

    cdef bint c_accept_message(self, uint32_t mode, uint32_t vector, bint level) noexcept:
        """Take one message as its target (see :meth:`receive`); True if accepted."""
        if not self.apic_base & C_APIC_BASE_EN:
            return False    # SDM: the processor then acts as one without an APIC: nothing arrives
        if mode == DM_FIXED or mode == DM_LOWEST:
            if vector < C_FIRST_LEGAL_VECTOR:
                self.record_error(C_ESR_RECEIVE_ILLEGAL)
                return False
            return self.set_irr(vector, level)
        if mode == DM_NMI:
            self.raise_nmi()
            return True
        if mode == DM_INIT:
            self.c_init()
            return True
        if mode == DM_STARTUP:
            # One-deep latch: a CPU leaves wait-for-SIPI at the first SIPI and ignores the next.
            if self.sipi_vector < 0:
                self.sipi_vector = vector
                self.wakeups += 1
            return True
        return False

    cdef void c_init(self) noexcept:
        """INIT: the registers return to their power-up values except what the SDM keeps across an
        INIT (the APIC ID register -- also a software-written xAPIC ID -- and the arbitration ID,
        which is the APIC ID here); so the timer stops and pending, in-service and NMI-latched
        interrupts are dropped with the CPU context they were for.  IA32_APIC_BASE, hence the
        mode and the page address, is untouched, as is the record of level-triggered EOIs not yet
        collected for the IOAPIC.  A SIPI latched before the INIT is forgotten: only one after it
        may start the CPU."""
        cdef uint32_t xapic_id = self.xapic_id
        cdef uint64_t level_eois[4]
        cdef int i
        for i in range(4):
            level_eois[i] = self.level_eois[i]
        self.reset_registers()
        self.xapic_id = xapic_id
        for i in range(4):
            self.level_eois[i] = level_eois[i]
        self.sipi_vector = -1
        if not self.init_pending:
            self.init_pending = True
            self.wakeups += 1

    def take_init(self) -> bool:
        """Consume a received INIT: True once per INIT latched since the last call (the machine
        puts the CPU through INIT: wait-for-SIPI for an AP)."""
        taken = self.init_pending
        self.init_pending = False
        return taken

    def take_sipi(self):
        """Consume a received SIPI: its vector (the CPU starts at vector * 0x1000), or None.  The
        machine drops it if the CPU was not waiting for a SIPI."""
        cdef int vector = self.sipi_vector
        self.sipi_vector = -1
        return None if vector < 0 else vector

    # -- accepting interrupts into the IRR ---------------------------------------------------
    cdef bint set_irr(self, int vector, bint level) noexcept:
        """Accept a fixed interrupt with a legal vector; a software-disabled APIC refuses it."""
        if not self.spiv & C_SPIV_SW_ENABLE:
            return False
        # SDM: acceptance into the IRR sets the TMR bit for level-triggered and clears it for edge.
        if level:
            set_bit(self.tmr, vector)
        else:
            clear_bit(self.tmr, vector)
        if not test_bit(self.irr, vector):
            set_bit(self.irr, vector)
            self.wakeups += 1
        return True

    cdef void raise_nmi(self) noexcept:
        if not self.nmi_latched:
            self.nmi_latched = True
            self.wakeups += 1

    cdef void record_error(self, uint32_t bits) noexcept:
        """Latch an error into the ESR accumulator and raise the LVT error interrupt if unmasked."""
        cdef uint32_t entry = self.lvt[L_ERROR]
        cdef uint32_t vector
        self.esr_accumulated |= bits
        if entry & C_LVT_MASKED:
            return
        vector = entry & C_LVT_VECTOR
        if vector < C_FIRST_LEGAL_VECTOR:
            # An illegal error vector is one more error, but never a second error interrupt.
            self.esr_accumulated |= C_ESR_RECEIVE_ILLEGAL
        else:
            self.set_irr(vector, False)

    cdef bint c_deliver_local(self, int lvt) noexcept:
        cdef uint32_t entry, mode, vector
        cdef bint level, delivered
        if lvt < 0 or lvt >= LAPIC_LVT_COUNT:
            return False
        entry = self.lvt[lvt]
        if not self.apic_base & C_APIC_BASE_EN or entry & C_LVT_MASKED:
            return False
        mode = (entry >> 8) & 7  # always FIXED for the timer and error entries (bits reserved there)
        if mode == DM_FIXED:
            vector = entry & C_LVT_VECTOR
            if vector < C_FIRST_LEGAL_VECTOR:
                self.record_error(C_ESR_RECEIVE_ILLEGAL)
                return False
            level = (lvt == L_LINT0 or lvt == L_LINT1) and (entry & C_LVT_LEVEL) != 0
            delivered = self.set_irr(vector, level)
        elif mode == DM_NMI:
            self.raise_nmi()
            delivered = True
        else:
            return False
        if delivered and lvt == L_PMC and self.is_intel:
            self.lvt[L_PMC] |= C_LVT_MASKED
        return delivered

    def deliver_local(self, lvt) -> bool:
        """Raise a local interrupt source through its LVT entry; True if an interrupt or NMI is now pending.

        Nothing happens when the entry is masked or the APIC is disabled.  Fixed mode puts the
        vector in the IRR (a vector below 16 sets ESR "receive illegal vector" instead); NMI mode
        latches an NMI; SMI, INIT and ExtINT entries deliver nothing.  On Intel, a PMI (Lvt.PMC)
        sets the LVTPC mask bit after delivery, as the SDM says; AMD does not.
        """
        index = int(lvt)
        if not 0 <= index < LVT_COUNT:
            raise IndexError(f"no LVT entry {lvt!r}")
        self.is_intel = self.cpuid.vendor == "intel"
        try:
            return self.c_deliver_local(index)
        finally:
            self.flush_wakeups()

    def lvt_entry(self, lvt) -> int:
        """The LVT entry as its register reads (the trace shows LVTPC with each PMI)."""
        index = int(lvt)
        if not 0 <= index < LVT_COUNT:
            raise IndexError(f"no LVT entry {lvt!r}")
        return self.lvt[index]

    # -- IPIs -------------------------------------------------------------------------------
    cdef void send_ipi(self, bint x2apic) noexcept:
        """Send the message the ICR now holds (delivery is immediate: ICR bit 12 stays 0)."""
        cdef uint32_t vector = self.icr & 0xFF
        cdef uint32_t mode = (self.icr >> 8) & 7
        cdef uint32_t destination = <uint32_t>(self.icr >> 32) if x2apic else <uint32_t>(self.icr >> 56)
        if mode == DM_FIXED or mode == DM_LOWEST:
            if mode == DM_LOWEST and x2apic:
                # The x2APIC spec makes lowest-priority IPIs a "redirectable IPI" error.
                self.record_error(C_ESR_REDIRECTABLE)
                return
            if vector < C_FIRST_LEGAL_VECTOR:
                self.record_error(C_ESR_SEND_ILLEGAL)
                return
        elif mode == DM_INIT:
            if self.icr & C_ICR_TRIGGER_LEVEL and not self.icr & C_ICR_LEVEL_ASSERT:
                return  # INIT level de-assert: only P6 and older APICs act on it (arbitration ids)
        elif mode != DM_NMI and mode != DM_STARTUP:
            return      # SMI (no SMM here) and the reserved modes 3 and 7 deliver nothing
        # IPIs are edge-triggered: the ICR trigger bit matters only for INIT.
        route_message(self.bus, self, (self.icr >> 18) & 3, destination, (self.icr & C_ICR_DEST_LOGICAL) != 0,
                      x2apic, mode, vector, False)

    cdef void send_fixed_ipi_to_self(self, uint32_t vector) noexcept:
        if vector < C_FIRST_LEGAL_VECTOR:
            self.record_error(C_ESR_SEND_ILLEGAL)
        else:
            self.set_irr(vector, False)

    # -- timer -----------------------------------------------------------------------------
    cdef int timer_mode(self) noexcept:
        return (self.lvt[L_TIMER] >> 17) & 3

    cdef uint64_t timer_divide(self) noexcept:
        return divide_value(self.timer_divide_config)

    cdef uint64_t timer_current_count(self, uint64_t now) noexcept:
        cdef uint64_t deadline = self.timer_deadline
        cdef uint64_t period, divide
        if not self.timer_armed or self.timer_mode() == TM_TSC_DEADLINE:
            return 0
        if now >= deadline:
            if self.timer_mode() != TM_PERIODIC:
                return 0
            # The run loop has not ticked yet: the counter already reloaded, maybe several times.
            period = self.timer_initial_count * self.timer_divide()
            if period == 0:
                return 0
            deadline += period * ((now - deadline) // period + 1)
        divide = self.timer_divide()
        return (deadline - now + divide - 1) // divide  # counts left, rounded up

    cdef void write_timer_initial(self, uint32_t count, uint64_t now) noexcept:
        if self.timer_mode() == TM_TSC_DEADLINE:
            return  # SDM: ignored in TSC-deadline mode
        self.c_tick(now)
        self.timer_initial_count = count
        if count:
            self.timer_deadline = now + count * self.timer_divide()
            self.timer_armed = True
        else:
            self.timer_armed = False

    cdef void write_timer_divide(self, uint32_t config, uint64_t now) noexcept:
        cdef uint64_t remaining
        self.c_tick(now)
        remaining = self.timer_current_count(now)
        self.timer_divide_config = config
        if self.timer_armed and self.timer_mode() != TM_TSC_DEADLINE:
            # The counts left keep counting, at the new rate.
            self.timer_deadline = now + remaining * self.timer_divide()

    def _tsc_offset(self) -> int:
        """The vCPU's TSC minus the clock (IA32_TSC / TSC_ADJUST writes move it), modulo 2**64."""
        return getattr(self.vcpu, "tsc_offset", 0) & 0xFFFFFFFFFFFFFFFF

    def _read_tsc_deadline(self):
        if not self.cpuid.has("tsc_deadline"):
            return GP
        if self.timer_mode() != TM_TSC_DEADLINE or not self.timer_armed:
            return 0
        # An armed deadline is always in the future (a past one fired at its write), so this
        # gives back exactly the TSC value written.
        return (self.timer_deadline + self._tsc_offset()) & 0xFFFFFFFFFFFFFFFF

    def _write_tsc_deadline(self, value: int):
        if not self.cpuid.has("tsc_deadline"):
            return GP
        if self.timer_mode() != TM_TSC_DEADLINE:
            return None
        if value:
            # The deadline is a TSC value: the clock reaches it when the vCPU's TSC does.
            now = self.clock.now()
            now_tsc = (now + self._tsc_offset()) & 0xFFFFFFFFFFFFFFFF
            self.timer_deadline = now + (value - now_tsc) if value > now_tsc else now
            self.timer_armed = True
        else:
            self.timer_armed = False
        self.c_tick(self.clock.now())  # a deadline already in the past fires at once
        return None

    def next_deadline(self):
        """Absolute virtual ns at which :meth:`tick` has something to do, or None when the timer is idle."""
        return self.timer_deadline if self.timer_armed else None

    cdef void c_tick(self, uint64_t now) noexcept:
        cdef uint64_t deadline = self.timer_deadline
        cdef uint64_t period
        if not self.timer_armed or now < deadline:
            return
        period = self.timer_initial_count * self.timer_divide()
        if self.timer_mode() == TM_PERIODIC and period:
            self.timer_deadline = deadline + period * ((now - deadline) // period + 1)
        else:
            self.timer_armed = False
        self.c_deliver_local(L_TIMER)

    def tick(self, now: int) -> None:
        """Fire the timer if its deadline is at or before ``now``.

        One-shot and TSC-deadline timers disarm (the TSC_DEADLINE MSR then reads 0).  A periodic
        timer re-arms from its previous deadline, not from ``now``, so late ticks do not drift; if
        several periods elapsed it delivers one interrupt and re-arms at the first future period.
        A masked timer expires the same way, without an interrupt.
        """
        try:
            self.c_tick(now)
        finally:
            self.flush_wakeups()

    # -- save / restore --------------------------------------------------------------------
    def get_state(self) -> dict:
        """Every register, pending interrupt and the timer as a plain dict (``"version": 1``)."""
        return {
            "version": _STATE_VERSION,
            "apic_id": self.apic_id,
            "apic_base": self.apic_base,
            "xapic_id": self.xapic_id,
            "tpr": self.tpr,
            "ldr": self.ldr,
            "dfr": self.dfr,
            "spiv": self.spiv,
            "irr": bits_to_int(self.irr),
            "isr": bits_to_int(self.isr),
            "tmr": bits_to_int(self.tmr),
            "esr": self.esr,
            "esr_accumulated": self.esr_accumulated,
            "icr": self.icr,
            "lvt": [self.lvt[i] for i in range(LAPIC_LVT_COUNT)],
            "timer_initial_count": self.timer_initial_count,
            "timer_divide_config": self.timer_divide_config,
            "timer_deadline": self.timer_deadline if self.timer_armed else None,
            "nmi_pending": self.nmi_latched,
        }

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned; remaps the xAPIC page if its base differs.

        All or nothing: raises :class:`LapicStateError`, having changed nothing, on a version, field
        or apic_id mismatch and on any value the registers cannot hold (see :meth:`_state_refused`).
        """
        cdef uint64_t irr[4]
        cdef uint64_t isr[4]
        cdef uint64_t tmr[4]
        cdef uint32_t lvt[LAPIC_LVT_COUNT]
        cdef uint64_t apic_base, icr, deadline = 0
        cdef uint32_t xapic_id, tpr, ldr, dfr, spiv, esr, esr_accumulated, initial, divide
        cdef bint armed
        cdef int i
        if not isinstance(state, dict):
            raise LapicStateError(f"LAPIC state must be a dict, not {type(state).__name__}")
        if state.get("version") != _STATE_VERSION:
            raise LapicStateError(f"LAPIC state version {state.get('version')!r}, expected {_STATE_VERSION}")
        if set(state) != _STATE_KEYS:
            missing, unknown = sorted(_STATE_KEYS - set(state)), sorted(set(state) - _STATE_KEYS)
            raise LapicStateError(f"LAPIC state fields wrong: missing {missing}, unknown {unknown}")
        if state["apic_id"] != self.apic_id:
            raise LapicStateError(f"LAPIC state is for APIC ID {state['apic_id']}, this one is {self.apic_id}")
        if not isinstance(state["nmi_pending"], bool):
            raise LapicStateError(f"LAPIC state has a bad value: nmi_pending {state['nmi_pending']!r} is not a bool")
        if not isinstance(state["lvt"], (list, tuple)) or len(state["lvt"]) != LVT_COUNT:
            raise LapicStateError(f"LAPIC state has a bad value: lvt {state['lvt']!r} is not {LVT_COUNT} LVT entries")
        numbers = [state[name] for name in _STATE_INTS] + list(state["lvt"])
        if state["timer_deadline"] is not None:
            numbers.append(state["timer_deadline"])
        for value in numbers:
            if not isinstance(value, int):
                raise LapicStateError(f"LAPIC state has a bad value: {value!r} is not an integer")
        # Convert everything first, so a bad value changes nothing.
        try:
            apic_base = state["apic_base"]
            xapic_id = state["xapic_id"]
            tpr = state["tpr"]
            ldr = state["ldr"]
            dfr = state["dfr"]
            spiv = state["spiv"]
            bits_from_int(irr, state["irr"])
            bits_from_int(isr, state["isr"])
            bits_from_int(tmr, state["tmr"])
            esr = state["esr"]
            esr_accumulated = state["esr_accumulated"]
            icr = state["icr"]
            for i in range(LAPIC_LVT_COUNT):
                lvt[i] = state["lvt"][i]
            initial = state["timer_initial_count"]
            divide = state["timer_divide_config"]
            armed = state["timer_deadline"] is not None
            if armed:
                deadline = state["timer_deadline"]
        except OverflowError as exc:
            raise LapicStateError(f"LAPIC state has a bad value: {exc}") from exc
        self._sample_cpuid()
        refused = self._apic_base_refused(apic_base)
        if refused is not None:
            refused = f"apic_base {apic_base:#x} {refused}"
        else:
            refused = self._state_refused(state)
        if refused is not None:
            raise LapicStateError(f"LAPIC state refused: {refused}")
        old_base, new_base = self.base, apic_base & APIC_BASE_ADDRESS_MASK
        if new_base != old_base and not self._remap(old_base, new_base):
            raise LapicStateError(f"LAPIC state puts the xAPIC page at {new_base:#x}, which is taken")
        self.apic_base = apic_base
        self.xapic_id = xapic_id
        self.tpr = tpr
        self.ldr = ldr
        self.dfr = dfr
        self.spiv = spiv
        for i in range(4):
            self.irr[i] = irr[i]
            self.isr[i] = isr[i]
            self.tmr[i] = tmr[i]
        self.esr = esr
        self.esr_accumulated = esr_accumulated
        self.icr = icr
        for i in range(LAPIC_LVT_COUNT):
            self.lvt[i] = lvt[i]
        self.timer_initial_count = initial
        self.timer_divide_config = divide
        self.timer_armed = armed
        self.timer_deadline = deadline
        self.nmi_latched = state["nmi_pending"]
        self.cpuid.set_feature("apic", bool(apic_base & C_APIC_BASE_EN))
        if new_base != old_base:
            self.on_base_change(old_base, new_base)

    def _state_refused(self, state: dict):
        """Why a state that set_state() could convert cannot be the register file's, or None.

        Register values must fit what the MSR and MMIO writes let through (writable_mask(): the
        same masks, the timer's bit 18 only with CPUID TSC-deadline); beyond that, the state must
        be one the registers can reach: no vector below 16 in IRR/ISR/TMR, only the error bits this
        APIC reports, LVT masks set while software-disabled, never timer mode 0b11, an armed timer
        with something to count, and nothing pending, in service or armed while hardware-disabled.
        """
        cdef uint64_t mask = 0
        apic_base, lvt, spiv = state["apic_base"], state["lvt"], state["spiv"]
        x2apic = (apic_base >> 10) & 3 == ApicMode.X2APIC
        for name, offset in (("tpr", O_TPR), ("ldr", O_LDR), ("dfr", O_DFR), ("spiv", O_SPIV),
                             ("timer_divide_config", O_TIMER_DIVIDE)):
            self.writable_mask(offset, False, &mask)
            if state[name] & ~mask:
                return f"{name} {state[name]:#x} has bits outside {mask:#x}"
        for i, entry in enumerate(lvt):
            self.writable_mask(O_LVT_TIMER + 0x10 * i, False, &mask)
            if entry & ~mask:
                return f"lvt[{i}] {entry:#x} has bits outside {mask:#x}"
            if not spiv & C_SPIV_SW_ENABLE and not entry & C_LVT_MASKED:
                return f"lvt[{i}] {entry:#x} is unmasked in a software-disabled APIC"
        timer_mode = (lvt[L_TIMER] >> 17) & 3
        if timer_mode == 3:
            return f"the timer LVT {lvt[L_TIMER]:#x} is in the reserved mode 0b11"
        # xAPIC: the low half of the ICR and the destination byte of ICR2; x2APIC: one 64-bit ICR.
        self.writable_mask(O_ICR_LOW, x2apic, &mask)
        icr_mask = mask
        if not x2apic:
            self.writable_mask(O_ICR_HIGH, False, &mask)
            icr_mask |= mask << 32
        if state["icr"] & ~icr_mask:
            return f"icr {state['icr']:#x} has bits outside {icr_mask:#x}"
        if state["xapic_id"] > 0xFF:
            return f"xapic_id {state['xapic_id']:#x} is wider than 8 bits"
        errors = state["esr"] | state["esr_accumulated"]
        if errors & ~(C_ESR_REDIRECTABLE | C_ESR_SEND_ILLEGAL | C_ESR_RECEIVE_ILLEGAL):
            return f"esr/esr_accumulated {errors:#x} hold errors this APIC never reports"
        if (state["irr"] | state["isr"] | state["tmr"]) & 0xFFFF:
            return "irr/isr/tmr hold vectors below 16"
        deadline = state["timer_deadline"]
        to_count = deadline if timer_mode == TM_TSC_DEADLINE else state["timer_initial_count"]
        if deadline is not None and to_count == 0:
            return "the timer is armed with nothing to count (deadline or initial count 0)"
        if not apic_base & C_APIC_BASE_EN and (state["irr"] or state["isr"] or deadline is not None
                                               or state["nmi_pending"]):
            return "a hardware-disabled APIC has interrupts pending or in service, an NMI or a timer"
        return None


cdef class ApicBus:
    """The APIC bus of a machine: the local APICs (one per CPU, in APIC-id order) and the messages
    between them.  See the module docstring ("APIC bus") for the delivery rules.

    ICR writes on its APICs and :meth:`deliver` route here without calling Python on the way.
    Each newly pending event (IRR bit, NMI, INIT or SIPI latched) on an APIC other than the
    message's sender sets that APIC's ``wake_pending`` and counts one in :attr:`remote_events`,
    which the machine reads and clears; the Python paths (MMIO and MSR-bus writes, deliver())
    also call each target's ``on_wakeup()`` once per event.
    """

    def __cinit__(self):
        self.members = []
        self.count = 0
        self.remote_events = 0

    def attach(self, Lapic lapic) -> None:
        """Put ``lapic`` on this bus.  APICs join in APIC-id order: its apic_id must be the number
        of APICs already here, so the bus index is the APIC id (and the arbitration id)."""
        if lapic.bus is not None:
            raise ValueError(f"LAPIC {lapic.apic_id} is already on an APIC bus")
        if lapic.apic_id != self.count:
            raise ValueError(f"LAPIC {lapic.apic_id} cannot join an APIC bus whose next APIC id is {self.count}")
        self.members.append(lapic)
        self.count += 1
        lapic.bus = self

    @property
    def lapics(self) -> tuple:
        """The APICs on the bus, index = APIC id."""
        return tuple(self.members)

    def deliver(self, uint32_t destination, bint logical, int mode, int vector, bint level) -> bool:
        """An interrupt message from an I/O APIC (or an MSI): True if some APIC accepted it.

        ``destination`` is an 8-bit physical or logical destination (0xFF: every APIC, whatever
        its mode), ``mode`` a :class:`DeliveryMode`.  Fixed, NMI, INIT and SIPI go to every
        selected APIC, lowest priority to the one that wins the arbitration; ``level`` sets the
        TMR bit of a fixed or lowest-priority vector.  SMI and ExtINT deliver nothing."""
        if not 0 <= vector < 256 or not 0 <= mode < 8:
            return False
        try:
            return route_message(self, None, SH_NONE, destination, logical, False, mode, vector, level)
        finally:
            self.flush_wakeups()

    cdef void forget_wakeups(self) noexcept:
        """The C path reported the members' newly pending events through wake_pending: drop the
        counts a Python path would have turned into on_wakeup() calls."""
        cdef Py_ssize_t i
        for i in range(self.count):
            (<Lapic>self.members[i]).wakeups = 0

    cdef int flush_wakeups(self) except -1:
        """Python paths: every member reports its newly pending events through on_wakeup()."""
        cdef Py_ssize_t i
        for i in range(self.count):
            (<Lapic>self.members[i]).flush_wakeups()
        return 0


cdef bint route_message(ApicBus bus, Lapic sender, uint32_t shorthand, uint32_t destination, bint logical,
                        bint wide, uint32_t mode, uint32_t vector, bint level) noexcept:
    """Deliver one message to the APICs it selects; True if any accepted it.

    ``bus`` None: ``sender`` is a standalone APIC, the only one a message can reach; the self
    shorthand too reaches only the sender, so the bus is not walked.  ``sender`` None: the
    message comes from outside the CPUs (an IOAPIC).  Lowest priority: among the selected APICs
    that are hardware- and software-enabled, the one with the lowest arbitration priority (APR)
    wins, a tie going to the lowest APIC id; the SDM leaves the tie to the bus arbitration ids,
    we want a deterministic choice.  Focus-processor checking is not modelled.
    """
    cdef Py_ssize_t i
    cdef bint sender_only = bus is None or shorthand == SH_SELF
    cdef Py_ssize_t count = 1 if sender_only else bus.count
    cdef Lapic target
    cdef Lapic winner = None
    cdef uint32_t priority
    cdef uint32_t lowest = 0x100     # above every APR
    cdef bint accepted = False
    for i in range(count):
        target = sender if sender_only else <Lapic>bus.members[i]
        if not selected(target, sender, shorthand, destination, logical, wide):
            continue
        if mode == DM_LOWEST:
            if target.apic_base & C_APIC_BASE_EN and target.spiv & C_SPIV_SW_ENABLE:
                priority = target.c_apr()
                if priority < lowest:    # strictly lower: the first (lowest id) keeps a tie
                    lowest = priority
                    winner = target
        elif deliver_to(bus, sender, target, mode, vector, level):
            accepted = True
    if winner is not None:
        accepted = deliver_to(bus, sender, winner, mode, vector, level)
    return accepted


cdef inline bint deliver_to(ApicBus bus, Lapic sender, Lapic target, uint32_t mode, uint32_t vector,
                            bint level) noexcept:
    """One target takes the message; what became newly pending on an APIC other than the sender
    is flagged for the machine right away (wake_pending, remote_events), without a Python call."""
    cdef bint accepted = target.c_accept_message(mode, vector, level)
    if bus is not None and target is not sender and target.wakeups:
        bus.remote_events += target.wakeups
        target.wake_pending = True
    return accepted


cdef inline bint accepts(Lapic target, uint32_t destination, bint logical, bint wide) noexcept:
    """Whether a message for ``destination`` selects ``target``.

    ``wide``: the message carries a 32-bit x2APIC destination (0xFFFFFFFF is broadcast), as an
    ICR write in x2APIC mode does; otherwise the destination is 8 bits (0xFF is broadcast),
    as in an xAPIC ICR or an IOAPIC message.  An APIC in x2APIC mode compares its 32-bit ID,
    or its LDR derived from the ID (cluster in bits 31:16, one member bit in bits 15:0); in
    xAPIC mode the low 8 bits of the destination against its ID register, or its LDR in the
    flat model (a bitmap) or the cluster model (cluster in bits 7:4, member bits in 3:0), as
    the DFR selects."""
    cdef uint32_t ldr
    if ((target.apic_base >> 10) & 3) == 3:
        if not wide:
            destination &= 0xFF
            if destination == C_XAPIC_BROADCAST:
                return True
        elif destination == C_X2APIC_BROADCAST:
            return True
        if logical:
            ldr = target.c_x2apic_ldr()
            return (destination >> 16) == (ldr >> 16) and (destination & ldr & 0xFFFF) != 0
        return destination == target.apic_id
    destination &= 0xFF     # an xAPIC-mode APIC sees 8 bits, whatever the message carries
    if destination == C_XAPIC_BROADCAST:
        return True
    if logical:
        if target.dfr == C_DFR_FLAT:
            return (destination & (target.ldr >> 24)) != 0
        ldr = target.ldr >> 24
        return (destination >> 4) == (ldr >> 4) and (destination & ldr & 0xF) != 0
    return destination == target.xapic_id


cdef inline bint selected(Lapic target, Lapic sender, uint32_t shorthand, uint32_t destination, bint logical,
                          bint wide) noexcept:
    """Whether a message from ``sender`` (None: not an IPI) with this shorthand and destination
    selects ``target``."""
    if shorthand == SH_SELF:
        return target is sender
    if shorthand == SH_ALL_INCLUDING_SELF:
        return True
    if shorthand == SH_ALL_EXCLUDING_SELF:
        return target is not sender
    return accepts(target, destination, logical, wide)
