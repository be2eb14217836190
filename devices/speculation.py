# SPDX-License-Identifier: GPL-2.0-or-later
"""Speculation-control MSRs: IA32_SPEC_CTRL (0x48) and IA32_PRED_CMD (0x49).

Present when CPUID advertises them (Intel CPUID.7:EDX[26], AMD CPUID.0x80000008:EBX[12]); the
machine registers this device only then, so without the bit both MSRs #GP like any unknown one.

* PRED_CMD is write-only: bit 0 = IBPB, which flushes the branch predictor model (the only
  predictor state we have), so branches after it cannot be steered by branches before it.
  Reads and reserved bits #GP.
* SPEC_CTRL holds IBRS (0), STIBP (1) and SSBD (2); they have no effect on a model without
  speculation.  Reserved bits #GP.

Not modelled: IA32_FLUSH_CMD (L1D flush), ARCH_CAPABILITIES, any timing effect.
"""

from __future__ import annotations

from devices.bus import GP

SPEC_CTRL = 0x48
PRED_CMD = 0x49
SPEC_CTRL_BITS = 0x7      # IBRS | STIBP | SSBD
PRED_CMD_IBPB = 0x1


class SpeculationControl:
    def __init__(self, on_ibpb):
        self._on_ibpb = on_ibpb
        self.spec_ctrl = 0
        self.ibpb_count = 0

    def register(self, msr_bus) -> None:
        msr_bus.register(SPEC_CTRL, 2, self)

    def read(self, access):
        if access.address == SPEC_CTRL:
            return self.spec_ctrl
        return GP   # PRED_CMD is write-only

    def write(self, access, value: int):
        if access.address == SPEC_CTRL:
            if value & ~SPEC_CTRL_BITS:
                return GP
            self.spec_ctrl = value
            return None
        if value & ~PRED_CMD_IBPB:
            return GP
        if value & PRED_CMD_IBPB:
            self.ibpb_count += 1
            self._on_ibpb()
        return None
