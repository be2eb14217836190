# SPDX-License-Identifier: GPL-2.0-or-later
"""The closed set of vCPU exits.

Every backend (the Unicorn hook layer, a fake vCPU in tests, later KVM) reports what the
guest asked of the VMM as an :class:`Exit` of one of the :class:`ExitKind` values below, and
one dispatcher (vmm.dispatch) turns an exit into device accesses.  Exits that ask a device
for something (I/O, MMIO, MSR, RDPMC, CPUID) are answered and the guest goes on; the others
(HLT, shutdown, internal error, stop, the end of a time slice) end ``vcpu.run()``.

Deliberately absent: exits for features we do not model (EPT violations, debug exceptions to
the host, dirty-ring), and a "generic unknown" kind.  Hypercalls are not exits either: the vCPU
asks its platform (vmm.machine.Machine.hypercall, devices/kvm_pv.py), as for the VMware backdoor.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class ExitKind(IntEnum):
    IO_IN = 0
    IO_OUT = 1
    MMIO_READ = 2
    MMIO_WRITE = 3
    MSR_READ = 4
    MSR_WRITE = 5
    RDPMC = 6
    CPUID = 7
    HLT = 8               # the guest halted (the engine's halted state); the machine waits for a wakeup
    SHUTDOWN = 9          # triple fault: the guest cannot go on
    INTERNAL_ERROR = 10   # the VMM or the engine could not go on (unmapped memory, engine error)
    STOPPED = 11          # the VMM asked the vCPU to stop (debug-exit, instruction limit, timeout, signal)
    YIELD = 12            # the vCPU's time slice ended (SMP round robin): the machine runs another vCPU


#: Exits that end vcpu.run(); the rest are answered by the dispatcher while the guest waits.
TERMINAL = frozenset({ExitKind.HLT, ExitKind.SHUTDOWN, ExitKind.INTERNAL_ERROR, ExitKind.STOPPED, ExitKind.YIELD})


@dataclass(slots=True)
class Exit:
    """One exit: ``address`` is the port, physical address, MSR index, RDPMC ECX or CPUID leaf;
    ``value`` is the written value (or the CPUID subleaf); ``reason`` explains terminal exits."""

    kind: ExitKind
    address: int = 0
    size: int = 0
    value: int = 0
    vcpu_id: int = 0
    reason: str = ""
