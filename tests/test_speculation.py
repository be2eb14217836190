# SPDX-License-Identifier: GPL-2.0-or-later
from __future__ import annotations

from devices.bus import GP, Bus
from devices.speculation import PRED_CMD, SPEC_CTRL, SpeculationControl


def _setup():
    flushes = []
    bus = Bus("msr", 1 << 32, (8,), indexed=True)
    SpeculationControl(lambda: flushes.append(1)).register(bus)
    return bus, flushes


def test_ibpb_flushes_the_predictor_and_pred_cmd_is_write_only():
    bus, flushes = _setup()
    assert bus.write(PRED_CMD, 8, 1) is None
    assert flushes == [1]
    assert bus.write(PRED_CMD, 8, 0) is None and flushes == [1]
    assert bus.write(PRED_CMD, 8, 2) is GP
    assert bus.read(PRED_CMD, 8) is GP


def test_spec_ctrl_bits():
    bus, _ = _setup()
    assert bus.write(SPEC_CTRL, 8, 5) is None
    assert bus.read(SPEC_CTRL, 8) == 5
    assert bus.write(SPEC_CTRL, 8, 8) is GP
    assert bus.read(SPEC_CTRL, 8) == 5
