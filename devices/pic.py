# SPDX-License-Identifier: GPL-2.0-or-later
"""The two cascaded 8259A PICs (master at ports 0x20/0x21, slave at 0xa0/0xa1), as a register stub.

Guests initialise the PICs and then mask every line because they use the (local) APIC instead.
This model accepts the whole initialisation sequence (ICW1 on the command port, then ICW2, ICW3
when cascaded, and ICW4 when ICW1 asks for it, on the data port), OCW2 and OCW3 commands, and
keeps the interrupt mask register (OCW1), which reads back from the data port.  Both chips start
with every line masked; ICW1 clears the mask, as the 8259A datasheet says.  The command port reads
the IRR or ISR (selected by OCW3), which are always 0.

Deliberately not supported: interrupt delivery of any kind (no IRQ lines, no INTA cycle, no
ExtINT through the LAPIC's LINT0) -- the LAPIC is the machine's only interrupt source -- and
the ELCR ports 0x4d0/0x4d1, special mask mode, polling and auto-EOI semantics (accepted, ignored).
"""

from __future__ import annotations

MASTER_BASE = 0x20
SLAVE_BASE = 0xA0
PIC_PORTS = 2

COMMAND_OFFSET = 0
DATA_OFFSET = 1

ICW1_INIT = 0x10
ICW1_NEEDS_ICW4 = 0x01
ICW1_SINGLE = 0x02
ALL_MASKED = 0xFF


class Pic8259:
    """One 8259A; ``icws_due`` counts the initialisation words still expected on the data port."""

    def __init__(self, base: int):
        self.base = base
        self.imr = ALL_MASKED
        self.icws_due = 0

    def register(self, bus) -> None:
        bus.register(self.base, PIC_PORTS, self)

    def read(self, access) -> int:
        return self.imr if access.offset == DATA_OFFSET else 0

    def write(self, access, value: int) -> None:
        value &= 0xFF
        if access.offset == COMMAND_OFFSET:
            if value & ICW1_INIT:
                self.imr = 0
                # ICW2 (vector base) always follows; ICW3 only when cascaded, ICW4 only on request.
                self.icws_due = 1 + (not value & ICW1_SINGLE) + bool(value & ICW1_NEEDS_ICW4)
            # OCW2 (EOI, rotation) and OCW3 (register select, special mask) change nothing we model.
        elif self.icws_due:
            self.icws_due -= 1  # no vectors to remember: nothing is ever delivered
        else:
            self.imr = value


def register_pics(bus) -> tuple[Pic8259, Pic8259]:
    """Create the master and slave PICs on ``bus`` and return them."""
    master, slave = Pic8259(MASTER_BASE), Pic8259(SLAVE_BASE)
    master.register(bus)
    slave.register(bus)
    return master, slave
