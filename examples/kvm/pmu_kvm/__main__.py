# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m pmu_kvm KERNEL [--cpu intel|amd] [--append TEXT] [--timeout S] [--stats]``

Boots one of pmu-vmm's test kernels (a name from firmware/bin or a path) under KVM with our PMU
and LAPIC, prints the guest's serial output, and exits with the guest's debug-exit status (0 =
every check passed), 124 on timeout, 125 on triple fault, 126 halted forever, 70 on a VMM error,
77 when KVM is not usable here (the reason on stderr).
"""

from __future__ import annotations

import argparse
import sys

import firmware
from pmu_kvm import kvmapi
from pmu_kvm.machine import KvmMachine

STATUS_NO_KVM = 77


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pmu_kvm", description=__doc__.splitlines()[0])
    parser.add_argument("kernel", help="test kernel: a firmware/bin name (pmu_msr) or an ELF path")
    parser.add_argument("--cpu", default="intel", help="CPU model of vmm/cpu_models.py (intel, amd, ...)")
    parser.add_argument("--append", default="", help="kernel command line")
    parser.add_argument("--memory", type=int, default=128, help="RAM in MiB")
    parser.add_argument("--timeout", type=float, default=120.0, help="wall-clock seconds")
    parser.add_argument("--stats", action="store_true", help="print exit counts and stepped instructions")
    args = parser.parse_args(argv)
    path = args.kernel if "/" in args.kernel else str(firmware.image(args.kernel))
    try:
        machine = KvmMachine(cpu=args.cpu, memory=args.memory << 20, cmdline=args.append,
                             console=sys.stdout.buffer)
    except (OSError, RuntimeError) as error:
        print(f"pmu_kvm: KVM not usable: {error}", file=sys.stderr)
        return STATUS_NO_KVM
    try:
        machine.load(path)
        result = machine.run(args.timeout)
    except kvmapi.KvmError as error:
        print(f"pmu_kvm: {error}", file=sys.stderr)
        return 70
    finally:
        sys.stdout.flush()
    if args.stats or result.reason not in ("debug-exit", "poweroff"):
        print(f"pmu_kvm: {result.reason} (status {result.status}) {result.detail}".rstrip(), file=sys.stderr)
        print(f"pmu_kvm: KVM PMU {machine.kvm_pmu}; exits {result.exits}; stepped instructions "
              f"{result.stepped}; stray TF traps {machine.counter.stray_traps}", file=sys.stderr)
    machine.close()
    return result.status


if __name__ == "__main__":
    sys.exit(main())
