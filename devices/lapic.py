# SPDX-License-Identifier: GPL-2.0-or-later
"""The local APIC of our single vCPU: xAPIC MMIO page, x2APIC MSRs, IA32_APIC_BASE, timer, LVT delivery.

Semantics follow the Intel SDM vol. 3, chapter "Advanced Programmable Interrupt Controller".

Access paths (one device object on two buses, see :meth:`Lapic.attach`):

* the xAPIC page at ``IA32_APIC_BASE[47:12]`` (default 0xFEE00000, relocatable; the machine hears
  about a move through ``on_base_change(old, new)``).  Registers sit at 16-byte aligned offsets and
  are accessed with 32-bit loads and stores; any other size or a misaligned access reads 0 and a
  write is ignored.  Reserved offsets read 0 and ignore writes.  While the APIC is hardware-disabled
  or in x2APIC mode the page behaves like a globally disabled xAPIC: reads return 0, writes are
  ignored (there is no RAM behind it in our machine);
* MSR 0x1B (IA32_APIC_BASE) with the SDM's mode transitions (disabled <-> xAPIC -> x2APIC ->
  disabled); a guest write that would go x2APIC -> xAPIC, disabled -> x2APIC, to the invalid state
  EN=0/EXTD=1, set EXTD without CPUID x2APIC, or set reserved bits (0-7, 9, >= MAXPHYADDR) is #GP.
  Host writes (``access.host``) skip only the transition rules.  Going to the disabled state resets
  every APIC register to its power-up value;
* MSRs 0x800-0x8FF in x2APIC mode (#GP otherwise): RsvdZ checking (a write with a reserved bit set
  is #GP), 64-bit ICR at 0x830, SELF IPI at 0x83F, read-only ID/LDR (LDR derived from the ID),
  #GP for unknown registers, writes to read-only and reads of write-only registers, a non-zero
  EOI or ESR write;
* MSR 0x6E0 (IA32_TSC_DEADLINE) when CPUID advertises TSC-deadline (#GP otherwise); it reads 0 and
  ignores writes unless the timer LVT is in TSC-deadline mode.

Interrupt delivery to the vCPU is pulled, not pushed: the vCPU asks :meth:`Lapic.interrupt_for`
(or :meth:`Lapic.pending_interrupt` plus its own RFLAGS.IF/shadow check), then calls
:meth:`Lapic.accept_interrupt`, which returns the vector to deliver through the IDT (the spurious
vector from SPIV if the interrupt is no longer deliverable).  NMIs are a one-deep latch consumed
by :meth:`Lapic.take_nmi`; blocking NMIs until IRET is the vCPU's business.  Whenever an IRR bit
or the NMI latch becomes newly set, ``on_wakeup()`` runs so the machine can kick a halted vCPU.

Time comes only from the injected clock (virtual ns; the APIC bus and the TSC run at 1 GHz, so one
timer count lasts "divide value" ns).  :meth:`Lapic.next_deadline` and :meth:`Lapic.tick` let the
run loop fire the timer exactly at its deadline.

Not supported:

* other CPUs: IPIs reach only this APIC (shorthand self or all-including-self, physical
  destination equal to our ID, logical destinations matching our LDR, broadcast); all-excluding-self
  and every other destination are dropped silently.  xAPIC cluster logical model (DFR = 0) matches
  nothing; x2APIC lowest-priority IPIs set the ESR "redirectable IPI" bit and are dropped (as the
  x2APIC spec says); in xAPIC mode a lowest-priority IPI to ourselves acts as fixed;
* INIT, SIPI and SMI (as IPIs or LVT delivery modes) and ExtINT LVT entries: the registers accept
  them, delivery through them does nothing (no INIT/SIPI state machine, no SMM, no 8259 INTA path);
* an I/O APIC: EOIs of level-triggered vectors are not broadcast; EOI-broadcast suppression
  (SPIV bit 12, version bit 24) is absent; remote IRR and delivery-status bits always read 0;
* LVT CMCI, remote read (RRD), focus-processor checking (SPIV bit 9 is only stored), ESR
  checksum/accept/illegal-register-address errors, APIC virtualisation;
* relocating the xAPIC page over another device's MMIO range: the APIC_BASE write is #GP;
* concurrency: call everything from the vCPU thread (others go through ``vcpu.queue_work``).
"""

from __future__ import annotations

from enum import IntEnum

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

LVT_COUNT = 6
#: 0x14 = integrated APIC; bits 23:16 = number of LVT entries minus one.
APIC_VERSION = 0x14 | ((LVT_COUNT - 1) << 16)

SPIV_VECTOR = 0xFF
SPIV_SW_ENABLE = 1 << 8
SPIV_FOCUS_DISABLE = 1 << 9

LVT_VECTOR = 0xFF
LVT_MASKED = 1 << 16
LVT_LEVEL_TRIGGER = 1 << 15

ESR_SEND_ILLEGAL_VECTOR = 1 << 5
ESR_RECEIVE_ILLEGAL_VECTOR = 1 << 6
ESR_REDIRECTABLE_IPI = 1 << 4

ICR_DEST_LOGICAL = 1 << 11
ICR_WRITABLE = 0x000CCFFF  # vector, delivery mode, destination mode, level, trigger, shorthand
XAPIC_BROADCAST = 0xFF
X2APIC_BROADCAST = 0xFFFFFFFF
DFR_FLAT_MODEL = 0xF0000000
DFR_RESERVED_ONES = 0x0FFFFFFF

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
_VECTOR_MODE_MASK = LVT_MASKED | 0x7FF  # vector + delivery mode
_LVT_WRITABLE = {
    Lvt.TIMER: LVT_MASKED | LVT_VECTOR | (1 << 17),  # + bit 18 with TSC-deadline, see _writable_mask
    Lvt.THERMAL: _VECTOR_MODE_MASK,
    Lvt.PMC: _VECTOR_MODE_MASK,
    Lvt.LINT0: _VECTOR_MODE_MASK | LVT_LEVEL_TRIGGER | (1 << 13),  # + polarity
    Lvt.LINT1: _VECTOR_MODE_MASK | LVT_LEVEL_TRIGGER | (1 << 13),
    Lvt.ERROR: LVT_MASKED | LVT_VECTOR,
}
_STATE_VERSION = 1
_STATE_KEYS = frozenset({
    "version", "apic_id", "apic_base", "xapic_id", "tpr", "ldr", "dfr", "spiv", "irr", "isr", "tmr",
    "esr", "esr_accumulated", "icr", "lvt", "timer_initial_count", "timer_divide_config", "timer_deadline",
    "nmi_pending",
})


class LapicStateError(ValueError):
    """A saved LAPIC state has the wrong version, fields or apic_id."""


def _highest_vector(bits: int) -> int:
    """Highest set vector of a 256-bit IRR/ISR/TMR bitmap, or -1 when empty."""
    return bits.bit_length() - 1


def _divide_value(config: int) -> int:
    """Divide configuration bits 3,1,0 -> 2, 4, ... 128, and 0b111 -> 1."""
    code = ((config >> 1) & 4) | (config & 3)
    return 1 if code == 7 else 2 << code


_MODES_BY_BITS = tuple(ApicMode(bits) for bits in range(4))   # APIC_BASE bits 11:10 -> mode


class Lapic:
    """One vCPU's local APIC; see the module docstring for the access paths and what is left out."""

    def __init__(self, clock, cpuid, vcpu=None, apic_id: int = 0, bsp: bool = True):
        self.clock = clock
        self.cpuid = cpuid
        self.vcpu = vcpu
        self.apic_id = apic_id
        #: Called when an interrupt or NMI becomes newly pending (the machine kicks the vCPU).
        self.on_wakeup = vcpu.kick if vcpu is not None else (lambda: None)
        #: Called with (old, new) base address after the xAPIC page moved.
        self.on_base_change = lambda old, new: None
        #: Called after every register write (any path, CR8 included): timers or priorities may
        #: have changed, so the machine re-reads next_deadline() and re-checks for interrupts.
        self.on_write = lambda: None
        self._mmio_bus = None
        self._apic_base = DEFAULT_APIC_BASE | APIC_BASE_EN | (APIC_BASE_BSP if bsp else 0)
        self._reset_registers()

    def _reset_registers(self) -> None:
        """Power-up values of everything but IA32_APIC_BASE (SDM: also what a hardware disable leaves)."""
        self._xapic_id = self.apic_id & 0xFF
        self._tpr = 0
        self._ldr = 0
        self._dfr = DFR_FLAT_MODEL
        self._spiv = SPIV_VECTOR
        self._irr = 0
        self._isr = 0
        self._tmr = 0
        self._esr = 0
        # Errors collect here; a write to ESR moves them into the readable _esr (write-before-read).
        self._esr_accumulated = 0
        self._icr = 0
        self._lvt = [LVT_MASKED] * LVT_COUNT
        self._timer_initial_count = 0
        self._timer_divide_config = 0
        # Absolute virtual ns of the next timer expiry (one-shot/periodic) or the armed TSC deadline.
        self._timer_deadline: int | None = None
        self._nmi_pending = False

    # -- modes -----------------------------------------------------------------------------
    @property
    def base(self) -> int:
        """Physical address of the xAPIC page."""
        return self._apic_base & APIC_BASE_ADDRESS_MASK

    @property
    def mode(self) -> ApicMode:
        return _MODES_BY_BITS[(self._apic_base >> 10) & 3]   # no enum construction per access

    @property
    def hardware_enabled(self) -> bool:
        return bool(self._apic_base & APIC_BASE_EN)

    @property
    def software_enabled(self) -> bool:
        return bool(self._spiv & SPIV_SW_ENABLE)

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
            return self._apic_base
        if range_base == MSR_TSC_DEADLINE:
            return self._read_tsc_deadline()
        if range_base == X2APIC_MSR_BASE:
            return self._read_x2apic(access.address)
        return self._read_mmio(access)

    def write(self, access, value: int):
        result = self._write(access, value)
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

    def _mmio_usable(self, access) -> bool:
        return self.mode == ApicMode.XAPIC and access.size == 4 and not access.offset & 0xF

    def _read_mmio(self, access) -> int:
        if not self._mmio_usable(access):
            return 0
        value = self._read_register(access.offset, x2apic=False)
        return 0 if value is None else value

    def _write_mmio(self, access, value: int) -> None:
        if self._mmio_usable(access):
            self._write_register(access.offset, value, x2apic=False)

    def _read_x2apic(self, msr: int):
        if self.mode != ApicMode.X2APIC:
            return GP
        value = self._read_register((msr - X2APIC_MSR_BASE) << 4, x2apic=True)
        return GP if value is None else value

    def _write_x2apic(self, msr: int, value: int):
        if self.mode != ApicMode.X2APIC:
            return GP
        return None if self._write_register((msr - X2APIC_MSR_BASE) << 4, value, x2apic=True) else GP

    # -- IA32_APIC_BASE --------------------------------------------------------------------
    def _write_apic_base(self, value: int, host: bool):
        max_phys_addr = self.cpuid.query(0x80000008)[0] & 0xFF
        reserved = APIC_BASE_LOW_RESERVED | (-1 << max_phys_addr)
        if not self.cpuid.has("x2apic"):
            reserved |= APIC_BASE_EXTD
        if value & reserved:
            return GP
        old_mode, new_mode = self.mode, ApicMode((value >> 10) & 3)
        if new_mode == ApicMode.INVALID:
            return GP
        if not host and (old_mode, new_mode) in ((ApicMode.X2APIC, ApicMode.XAPIC),
                                                  (ApicMode.DISABLED, ApicMode.X2APIC)):
            return GP
        old_base, new_base = self.base, value & APIC_BASE_ADDRESS_MASK
        if new_base != old_base and not self._remap(old_base, new_base):
            return GP
        self._apic_base = value
        if old_mode != ApicMode.DISABLED and new_mode == ApicMode.DISABLED:
            self._reset_registers()
        if new_base != old_base:
            self.on_base_change(old_base, new_base)
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

    # -- register file (shared by MMIO and x2APIC MSRs) ------------------------------------
    def _read_register(self, offset: int, x2apic: bool) -> int | None:
        """The register's value, or None where the offset is reserved or write-only in this mode."""
        if offset == REG_ID:
            return self.apic_id if x2apic else self._xapic_id << 24
        if offset == REG_VERSION:
            return APIC_VERSION
        if offset == REG_TPR:
            return self._tpr
        if offset == REG_APR:
            return None if x2apic else self._apr()
        if offset == REG_PPR:
            return self._ppr()
        if offset == REG_EOI:
            return None if x2apic else 0
        if offset == REG_LDR:
            return self._x2apic_ldr() if x2apic else self._ldr
        if offset == REG_DFR:
            return None if x2apic else self._dfr | DFR_RESERVED_ONES
        if offset == REG_SPIV:
            return self._spiv
        for bank_offset, bits in ((REG_ISR, self._isr), (REG_TMR, self._tmr), (REG_IRR, self._irr)):
            if bank_offset <= offset < bank_offset + VECTOR_BANK_SIZE:
                return (bits >> (2 * (offset - bank_offset))) & 0xFFFFFFFF  # 16 bytes per 32 vectors
        if offset == REG_ESR:
            return self._esr
        if offset == REG_ICR_LOW:
            return self._icr if x2apic else self._icr & 0xFFFFFFFF
        if offset == REG_ICR_HIGH:
            return None if x2apic else self._icr >> 32
        if offset in _LVT_OFFSETS:
            return self._lvt[(offset - REG_LVT_TIMER) >> 4]
        if offset == REG_TIMER_INITIAL:
            return self._timer_initial_count
        if offset == REG_TIMER_CURRENT:
            return self._timer_current_count(self.clock.now())
        if offset == REG_TIMER_DIVIDE:
            return self._timer_divide_config
        return None

    def _writable_mask(self, offset: int, x2apic: bool) -> int | None:
        """Bits software may write at ``offset``, or None if the register is not writable there."""
        if offset == REG_TPR:
            return 0xFF
        if offset in (REG_EOI, REG_ESR):
            return 0  # the written value is ignored; x2APIC demands 0
        if offset == REG_SPIV:
            return SPIV_VECTOR | SPIV_SW_ENABLE | SPIV_FOCUS_DISABLE
        if offset == REG_ICR_LOW:
            return (0xFFFFFFFF << 32 | ICR_WRITABLE) if x2apic else ICR_WRITABLE
        if offset in _LVT_OFFSETS:
            lvt = Lvt((offset - REG_LVT_TIMER) >> 4)
            deadline_bit = 1 << 18 if lvt == Lvt.TIMER and self.cpuid.has("tsc_deadline") else 0
            return _LVT_WRITABLE[lvt] | deadline_bit
        if offset == REG_TIMER_INITIAL:
            return 0xFFFFFFFF
        if offset == REG_TIMER_DIVIDE:
            return 0xB
        if x2apic:
            return 0xFF if offset == REG_SELF_IPI else None
        if offset in (REG_ID, REG_LDR, REG_ICR_HIGH):
            return 0xFF000000
        if offset == REG_DFR:
            return DFR_FLAT_MODEL
        return None

    def _write_register(self, offset: int, value: int, x2apic: bool) -> bool:
        """Apply a register write; False means x2APIC mode must raise #GP (MMIO ignores it)."""
        writable = self._writable_mask(offset, x2apic)
        if writable is None or (x2apic and value & ~writable):
            return False
        value &= writable
        if offset == REG_LVT_TIMER and (value >> 17) & 3 == 3:
            # Timer mode 0b11 is reserved: #GP in x2APIC, and the xAPIC page keeps only bit 17.
            if x2apic:
                return False
            value &= ~(1 << 18)
        if offset == REG_TPR:
            self._tpr = value
        elif offset == REG_EOI:
            self._eoi()
        elif offset == REG_SPIV:
            self._spiv = value
            if not self.software_enabled:
                self._lvt = [entry | LVT_MASKED for entry in self._lvt]
        elif offset == REG_ESR:
            self._esr, self._esr_accumulated = self._esr_accumulated, 0
        elif offset == REG_ICR_LOW:
            self._icr = value if x2apic else (self._icr & ~0xFFFFFFFF) | value
            self._send_ipi(x2apic)
        elif offset == REG_ICR_HIGH:
            self._icr = (self._icr & 0xFFFFFFFF) | value << 32
        elif offset in _LVT_OFFSETS:
            self._write_lvt(Lvt((offset - REG_LVT_TIMER) >> 4), value)
        elif offset == REG_TIMER_INITIAL:
            self._write_timer_initial(value)
        elif offset == REG_TIMER_DIVIDE:
            self._write_timer_divide(value)
        elif offset == REG_SELF_IPI:
            self._send_fixed_ipi_to_self(value)
        elif offset == REG_ID:
            self._xapic_id = value >> 24
        elif offset == REG_LDR:
            self._ldr = value
        elif offset == REG_DFR:
            self._dfr = value
        return True

    def _write_lvt(self, lvt: Lvt, value: int) -> None:
        if not self.software_enabled:
            value |= LVT_MASKED  # SDM: masks cannot be cleared while the APIC is software-disabled
        if lvt == Lvt.TIMER:
            self._timer_catch_up()
            old_deadline_mode = self._timer_mode() == TimerMode.TSC_DEADLINE
            if old_deadline_mode != ((value >> 17) & 3 == TimerMode.TSC_DEADLINE):
                # SDM: switching to or from TSC-deadline mode disarms the timer.
                self._timer_initial_count = 0
                self._timer_deadline = None
        self._lvt[lvt] = value

    # -- priorities ------------------------------------------------------------------------
    def _ppr(self) -> int:
        isrv = max(_highest_vector(self._isr), 0)
        return self._tpr if self._tpr >> 4 >= isrv >> 4 else isrv & 0xF0

    def _apr(self) -> int:
        isrv = max(_highest_vector(self._isr), 0)
        irrv = max(_highest_vector(self._irr), 0)
        if self._tpr >> 4 >= irrv >> 4 and self._tpr >> 4 > isrv >> 4:
            return self._tpr
        return max(self._tpr & 0xF0, isrv & 0xF0, irrv & 0xF0)

    def _x2apic_ldr(self) -> int:
        """x2APIC LDR: cluster (ID[31:4]) in bits 31:16, one bit for ID[3:0] in bits 15:0."""
        return ((self.apic_id >> 4) << 16) | (1 << (self.apic_id & 0xF))

    def set_cr8(self, value: int) -> None:
        """MOV to CR8: TPR[7:4] = CR8[3:0], TPR[3:0] = 0 (reserved CR8 bits are the vCPU's #GP)."""
        self._tpr = (value & 0xF) << 4
        self.on_write()

    def get_cr8(self) -> int:
        return self._tpr >> 4

    # -- delivery to the vCPU --------------------------------------------------------------
    def pending_interrupt(self) -> int | None:
        """Highest IRR vector whose priority class is above the PPR's, or None."""
        vector = _highest_vector(self._irr)
        if vector >= 0 and vector >> 4 > self._ppr() >> 4:
            return vector
        return None

    def interrupt_for(self, vcpu=None) -> int | None:
        """:meth:`pending_interrupt` if ``vcpu`` (default: ours) can take one now (IF=1, no shadow)."""
        vcpu = self.vcpu if vcpu is None else vcpu
        return self.pending_interrupt() if vcpu.interrupts_enabled() else None

    def accept_interrupt(self, vector: int) -> int:
        """The vCPU acknowledges ``vector``: IRR -> ISR.  Returns the vector to deliver through the IDT.

        If ``vector`` is no longer deliverable (it left the IRR or the PPR rose since it was
        offered), nothing changes and the SPIV spurious vector is returned; a spurious interrupt
        needs no EOI.
        """
        if (self._irr >> vector) & 1 and vector >> 4 > self._ppr() >> 4:
            self._irr &= ~(1 << vector)
            self._isr |= 1 << vector
            return vector
        return self._spiv & SPIV_VECTOR

    @property
    def nmi_pending(self) -> bool:
        """An NMI is latched and not yet taken by the vCPU."""
        return self._nmi_pending

    def take_nmi(self) -> bool:
        """Consume the pending NMI, if any.  IF does not block NMIs; NMI-blocking until IRET is the vCPU's."""
        taken, self._nmi_pending = self._nmi_pending, False
        return taken

    def has_wakeup(self) -> bool:
        """Whether an NMI or an interrupt above the PPR is pending (what ends HLT; IF is the vCPU's check)."""
        return self._nmi_pending or self.pending_interrupt() is not None

    def _eoi(self) -> None:
        vector = _highest_vector(self._isr)
        if vector >= 0:
            self._isr &= ~(1 << vector)

    # -- accepting interrupts into the IRR ---------------------------------------------------
    def _set_irr(self, vector: int, level: bool) -> bool:
        """Accept a fixed interrupt with a legal vector; a software-disabled APIC refuses it."""
        if not self.software_enabled:
            return False
        bit = 1 << vector
        # SDM: acceptance into the IRR sets the TMR bit for level-triggered and clears it for edge.
        self._tmr = self._tmr | bit if level else self._tmr & ~bit
        if not self._irr & bit:
            self._irr |= bit
            self.on_wakeup()
        return True

    def _raise_nmi(self) -> None:
        if not self._nmi_pending:
            self._nmi_pending = True
            self.on_wakeup()

    def _record_error(self, bits: int) -> None:
        """Latch an error into the ESR accumulator and raise the LVT error interrupt if unmasked."""
        self._esr_accumulated |= bits
        entry = self._lvt[Lvt.ERROR]
        if entry & LVT_MASKED:
            return
        vector = entry & LVT_VECTOR
        if vector < FIRST_LEGAL_VECTOR:
            # An illegal error vector is one more error, but never a second error interrupt.
            self._esr_accumulated |= ESR_RECEIVE_ILLEGAL_VECTOR
        else:
            self._set_irr(vector, level=False)

    def deliver_local(self, lvt: Lvt) -> bool:
        """Raise a local interrupt source through its LVT entry; True if an interrupt or NMI is now pending.

        Nothing happens when the entry is masked or the APIC is disabled.  Fixed mode puts the
        vector in the IRR (a vector below 16 sets ESR "receive illegal vector" instead); NMI mode
        latches an NMI; SMI, INIT and ExtINT entries deliver nothing.  On Intel, a PMI (Lvt.PMC)
        sets the LVTPC mask bit after delivery, as the SDM says; AMD does not.
        """
        entry = self._lvt[lvt]
        if not self.hardware_enabled or entry & LVT_MASKED:
            return False
        mode = (entry >> 8) & 7  # always FIXED for the timer and error entries (bits reserved there)
        if mode == DeliveryMode.FIXED:
            vector = entry & LVT_VECTOR
            if vector < FIRST_LEGAL_VECTOR:
                self._record_error(ESR_RECEIVE_ILLEGAL_VECTOR)
                return False
            level = lvt in (Lvt.LINT0, Lvt.LINT1) and bool(entry & LVT_LEVEL_TRIGGER)
            delivered = self._set_irr(vector, level)
        elif mode == DeliveryMode.NMI:
            self._raise_nmi()
            delivered = True
        else:
            return False
        if delivered and lvt == Lvt.PMC and self.cpuid.vendor == "intel":
            self._lvt[Lvt.PMC] |= LVT_MASKED
        return delivered

    # -- IPIs (only ever to ourselves) ------------------------------------------------------
    def _send_ipi(self, x2apic: bool) -> None:
        vector = self._icr & 0xFF
        mode = (self._icr >> 8) & 7
        if mode == DeliveryMode.LOWEST_PRIORITY and x2apic:
            self._record_error(ESR_REDIRECTABLE_IPI)
            return
        if mode in (DeliveryMode.FIXED, DeliveryMode.LOWEST_PRIORITY):
            if vector < FIRST_LEGAL_VECTOR:
                self._record_error(ESR_SEND_ILLEGAL_VECTOR)
            elif self._ipi_reaches_self(x2apic):
                self._set_irr(vector, level=False)  # IPIs are edge-triggered (ICR trigger bit: INIT only)
        elif mode == DeliveryMode.NMI and self._ipi_reaches_self(x2apic):
            self._raise_nmi()

    def _send_fixed_ipi_to_self(self, vector: int) -> None:
        if vector < FIRST_LEGAL_VECTOR:
            self._record_error(ESR_SEND_ILLEGAL_VECTOR)
        else:
            self._set_irr(vector, level=False)

    def _ipi_reaches_self(self, x2apic: bool) -> bool:
        shorthand = (self._icr >> 18) & 3
        if shorthand != Shorthand.NONE:
            return shorthand in (Shorthand.SELF, Shorthand.ALL_INCLUDING_SELF)
        if x2apic:
            destination = self._icr >> 32
            if destination == X2APIC_BROADCAST:
                return True
            if self._icr & ICR_DEST_LOGICAL:
                ldr = self._x2apic_ldr()
                return destination >> 16 == ldr >> 16 and bool(destination & ldr & 0xFFFF)
            return destination == self.apic_id
        destination = self._icr >> 56
        if destination == XAPIC_BROADCAST:
            return True
        if self._icr & ICR_DEST_LOGICAL:
            return self._dfr == DFR_FLAT_MODEL and bool(destination & self._ldr >> 24)
        return destination == self._xapic_id

    # -- timer -----------------------------------------------------------------------------
    def _timer_mode(self) -> int:
        return (self._lvt[Lvt.TIMER] >> 17) & 3

    def _timer_divide(self) -> int:
        return _divide_value(self._timer_divide_config)

    def _timer_period(self) -> int:
        return self._timer_initial_count * self._timer_divide()

    def _timer_current_count(self, now: int) -> int:
        deadline = self._timer_deadline
        if deadline is None or self._timer_mode() == TimerMode.TSC_DEADLINE:
            return 0
        if now >= deadline:
            if self._timer_mode() != TimerMode.PERIODIC:
                return 0
            # The run loop has not ticked yet: the counter already reloaded, maybe several times.
            period = self._timer_period()
            deadline += period * ((now - deadline) // period + 1)
        return -((now - deadline) // self._timer_divide())  # counts left, rounded up

    def _timer_catch_up(self) -> None:
        """Fire an overdue expiry before the timer is reprogrammed, as hardware would have."""
        self.tick(self.clock.now())

    def _write_timer_initial(self, count: int) -> None:
        if self._timer_mode() == TimerMode.TSC_DEADLINE:
            return  # SDM: ignored in TSC-deadline mode
        self._timer_catch_up()
        self._timer_initial_count = count
        self._timer_deadline = self.clock.now() + count * self._timer_divide() if count else None

    def _write_timer_divide(self, config: int) -> None:
        self._timer_catch_up()
        now = self.clock.now()
        remaining = self._timer_current_count(now)
        self._timer_divide_config = config
        if self._timer_deadline is not None and self._timer_mode() != TimerMode.TSC_DEADLINE:
            # The counts left keep counting, at the new rate.
            self._timer_deadline = now + remaining * self._timer_divide()

    def _read_tsc_deadline(self):
        if not self.cpuid.has("tsc_deadline"):
            return GP
        if self._timer_mode() != TimerMode.TSC_DEADLINE or self._timer_deadline is None:
            return 0
        return self._timer_deadline

    def _write_tsc_deadline(self, value: int):
        if not self.cpuid.has("tsc_deadline"):
            return GP
        if self._timer_mode() != TimerMode.TSC_DEADLINE:
            return None
        self._timer_deadline = value or None
        self._timer_catch_up()  # a deadline already in the past fires at once
        return None

    def next_deadline(self) -> int | None:
        """Absolute virtual ns at which :meth:`tick` has something to do, or None when the timer is idle."""
        return self._timer_deadline

    def tick(self, now: int) -> None:
        """Fire the timer if its deadline is at or before ``now``.

        One-shot and TSC-deadline timers disarm (the TSC_DEADLINE MSR then reads 0).  A periodic
        timer re-arms from its previous deadline, not from ``now``, so late ticks do not drift; if
        several periods elapsed it delivers one interrupt and re-arms at the first future period.
        A masked timer expires the same way, without an interrupt.
        """
        deadline = self._timer_deadline
        if deadline is None or now < deadline:
            return
        if self._timer_mode() == TimerMode.PERIODIC:
            period = self._timer_period()
            self._timer_deadline = deadline + period * ((now - deadline) // period + 1)
        else:
            self._timer_deadline = None
        self.deliver_local(Lvt.TIMER)

    # -- save / restore --------------------------------------------------------------------
    def get_state(self) -> dict:
        """Every register, pending interrupt and the timer as a plain dict (``"version": 1``)."""
        return {
            "version": _STATE_VERSION,
            "apic_id": self.apic_id,
            "apic_base": self._apic_base,
            "xapic_id": self._xapic_id,
            "tpr": self._tpr,
            "ldr": self._ldr,
            "dfr": self._dfr,
            "spiv": self._spiv,
            "irr": self._irr,
            "isr": self._isr,
            "tmr": self._tmr,
            "esr": self._esr,
            "esr_accumulated": self._esr_accumulated,
            "icr": self._icr,
            "lvt": list(self._lvt),
            "timer_initial_count": self._timer_initial_count,
            "timer_divide_config": self._timer_divide_config,
            "timer_deadline": self._timer_deadline,
            "nmi_pending": self._nmi_pending,
        }

    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned; remaps the xAPIC page if its base differs.

        Raises :class:`LapicStateError` (nothing changed) on a version, field or apic_id mismatch.
        """
        if state.get("version") != _STATE_VERSION:
            raise LapicStateError(f"LAPIC state version {state.get('version')!r}, expected {_STATE_VERSION}")
        if set(state) != _STATE_KEYS:
            missing, unknown = sorted(_STATE_KEYS - set(state)), sorted(set(state) - _STATE_KEYS)
            raise LapicStateError(f"LAPIC state fields wrong: missing {missing}, unknown {unknown}")
        if state["apic_id"] != self.apic_id:
            raise LapicStateError(f"LAPIC state is for APIC ID {state['apic_id']}, this one is {self.apic_id}")
        if len(state["lvt"]) != LVT_COUNT:
            raise LapicStateError(f"LAPIC state has {len(state['lvt'])} LVT entries, expected {LVT_COUNT}")
        old_base, new_base = self.base, state["apic_base"] & APIC_BASE_ADDRESS_MASK
        if new_base != old_base and not self._remap(old_base, new_base):
            raise LapicStateError(f"LAPIC state puts the xAPIC page at {new_base:#x}, which is taken")
        self._apic_base = state["apic_base"]
        self._xapic_id = state["xapic_id"]
        self._tpr = state["tpr"]
        self._ldr = state["ldr"]
        self._dfr = state["dfr"]
        self._spiv = state["spiv"]
        self._irr = state["irr"]
        self._isr = state["isr"]
        self._tmr = state["tmr"]
        self._esr = state["esr"]
        self._esr_accumulated = state["esr_accumulated"]
        self._icr = state["icr"]
        self._lvt = list(state["lvt"])
        self._timer_initial_count = state["timer_initial_count"]
        self._timer_divide_config = state["timer_divide_config"]
        self._timer_deadline = state["timer_deadline"]
        self._nmi_pending = state["nmi_pending"]
        if new_base != old_base:
            self.on_base_change(old_base, new_base)
