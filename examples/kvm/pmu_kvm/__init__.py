# SPDX-License-Identifier: GPL-2.0-or-later
"""pmu_kvm: a minimal KVM-based VMM that embeds pmu-vmm's PMU, LAPIC, buses and dispatcher.

Modules, one concern each:

* :mod:`pmu_kvm.kvmapi` -- the KVM ioctls and structures this example uses (ctypes, fcntl, mmap);
* :mod:`pmu_kvm.vcpu` -- :class:`KvmVcpu`: one KVM vCPU, providing devices.vcpu.Vcpu for our devices;
* :mod:`pmu_kvm.counting` -- exact instruction/branch counts by single-stepping;
* :mod:`pmu_kvm.machine` -- :class:`KvmMachine`: RAM, CPUID, MSR filter, devices, boot, run loop;
* ``python -m pmu_kvm KERNEL`` (:mod:`pmu_kvm.__main__`) -- boot a test kernel.

See examples/kvm/README.md for what is and is not supported.
"""
