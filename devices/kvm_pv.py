# SPDX-License-Identifier: GPL-2.0-or-later
"""KVM's paravirtual interface, as a guest of KVM sees it: the hypervisor CPUID leaves and the
hypercalls a KVM host answers without user space.

Off by default (a PC's CPU has neither); ``--kvm-pv`` (``-device kvm-pv``; the QEMU front end with
``-accel kvm`` / ``-enable-kvm`` unless ``-cpu ...,kvm=off``) adds it.  Then every vCPU's CPUID
carries, as KVM documents them (Documentation/virt/kvm/x86/cpuid.rst):

* 0x40000000: EAX = 0x40000001 (the highest hypervisor leaf), EBX/ECX/EDX = "KVMKVMKVM\\0\\0\\0";
* 0x40000001: EAX = the features below, EDX = 0 (no hints).

Features advertised, and only those (a guest that sees a feature uses it): NOP_IO_DELAY (bit 1:
port-0x80 delays are not needed) and PV_SEND_IPI (bit 11: the SEND_IPI hypercall).  Not
advertised because not modelled: kvmclock, async page faults, steal time, PV EOI, PV unhalt/
kick, PV TLB flush, poll control, sched-yield (Linux uses it only with steal time).

Hypercalls (Documentation/virt/kvm/x86/hypercalls.rst): the vCPU layer implements the ABI --
VMCALL or VMMCALL on either vendor (KVM accepts both), the number in RAX, up to four arguments
in RBX, RCX, RDX, RSI, the result in RAX, everything truncated to 32 bits outside 64-bit code,
-KVM_EPERM at CPL > 0, -KVM_ENOSYS for a number no device claims -- and hands each call to the
device that claims its number on the machine's ``hypercall`` bus.  This device claims:

* KVM_HC_VAPIC_POLL_IRQ (1): returns 0 (interrupts are checked at every block boundary anyway);
* KVM_HC_SEND_IPI (10): a0/a1 are a bitmap of destination APIC ids starting at a2 (bit 0 of a0 is
  APIC id a2; a1 continues where a0 ends: 64 ids each in 64-bit code, 32 otherwise), a3 the ICR
  low word whose vector, delivery mode and level are sent to each destination as a physical
  message; returns how many destinations accepted it.  Ids above the last CPU reach nobody.

Not supported: KVM_HC_KICK_CPU, KVM_HC_CLOCK_PAIRING, KVM_HC_SCHED_YIELD, KVM_HC_MAP_GPA_RANGE
(-KVM_ENOSYS), KVM's MSRs (0x4b564dxx: #GP as any unknown MSR), patching the guest's hypercall
instruction to the vendor's own (both simply work).
"""

from __future__ import annotations

from devices.device import BusRange, Device

KVM_SIGNATURE = b"KVMKVMKVM\0\0\0"
KVM_CPUID_SIGNATURE = 0x40000000
KVM_CPUID_FEATURES = 0x40000001
KVM_FEATURE_NOP_IO_DELAY = 1 << 1
KVM_FEATURE_PV_SEND_IPI = 1 << 11

KVM_HC_VAPIC_POLL_IRQ = 1
KVM_HC_SEND_IPI = 10

#: KVM's hypercall error numbers (returned negated in RAX).
KVM_ENOSYS = 1000
KVM_EPERM = 1

ICR_VECTOR = 0xFF
ICR_MODE_SHIFT = 8
ICR_LEVEL_ASSERT = 1 << 14


class KvmPv(Device):
    """The KVM paravirtual CPUID leaves and hypercalls (see the module docstring)."""

    name = "kvm-pv"
    description = "KVM paravirtual interface: CPUID 0x40000000 leaves, VMCALL/VMMCALL hypercalls (SEND_IPI)"

    def __init__(self, ctx, **props):
        self.ctx = ctx

    def bus_ranges(self) -> list[BusRange]:
        return [BusRange("hypercall", KVM_HC_VAPIC_POLL_IRQ, 1), BusRange("hypercall", KVM_HC_SEND_IPI, 1)]

    def advertise(self, cpuid) -> None:
        """Put the hypervisor leaves into one vCPU's CPUID model."""
        words = [int.from_bytes(KVM_SIGNATURE[i:i + 4], "little") for i in (0, 4, 8)]
        cpuid.set_leaf(KVM_CPUID_SIGNATURE, 0, KVM_CPUID_FEATURES, *words)
        cpuid.set_leaf(KVM_CPUID_FEATURES, 0, KVM_FEATURE_NOP_IO_DELAY | KVM_FEATURE_PV_SEND_IPI, 0, 0, 0)

    def hypercall(self, nr: int, args: tuple[int, int, int, int], vcpu_id: int, long_mode: bool) -> int:
        if nr == KVM_HC_SEND_IPI:
            return self._send_ipi(*args, long_mode)
        return 0        # KVM_HC_VAPIC_POLL_IRQ

    def _send_ipi(self, low: int, high: int, first_id: int, icr: int, long_mode: bool) -> int:
        width = 64 if long_mode else 32
        bitmap = (low & ((1 << width) - 1)) | (high & ((1 << width) - 1)) << width
        vector, mode, level = icr & ICR_VECTOR, (icr >> ICR_MODE_SHIFT) & 7, bool(icr & ICR_LEVEL_ASSERT)
        accepted = 0
        apic_id = first_id
        while bitmap and apic_id < self.ctx.nb_cpus:
            if bitmap & 1 and self.ctx.send_interrupt(apic_id, False, mode, vector, level):
                accepted += 1
            bitmap >>= 1
            apic_id += 1
        return accepted
