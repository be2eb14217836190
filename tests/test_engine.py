# SPDX-License-Identifier: GPL-2.0-or-later
"""vmm.engine: libunicorn driven without the binding, and the binding's ``Uc`` over the same engine.

The module's ids must be the binding's (the hook layer registers hooks and reads registers by
them); its Engine must behave as the binding's methods of the same names do; the binding view must
drive the very engine the VMM runs (a hook added through it fires in a VMM run) and must not close
it; and a command-line run must not import the binding at all (the point of the module).
"""

from __future__ import annotations

import ctypes
import gc
import io
import subprocess
import sys
from pathlib import Path

import pytest
import unicorn
from unicorn import unicorn_const, x86_const

from vmm import engine as ucapi
from vmm._ucvcpu import UcVcpu
from vmm.engine import Engine, EngineError, as_engine
from vmm.machine import Machine, MachineConfig

ROOT = Path(__file__).resolve().parent.parent
HELLO32 = ROOT / "firmware" / "bin" / "hello32.elf"
CODE = 0x1000


def test_every_id_is_the_bindings():
    names = [name for name in vars(ucapi) if name.startswith("UC_") and name != "UC_CTL_IO_WRITE"]
    assert len(names) > 50
    for name in names:
        source = x86_const if name.startswith("UC_X86_") else unicorn_const
        assert getattr(ucapi, name) == getattr(source, name), name
    assert ucapi.UC_CTL_IO_WRITE == unicorn_const.UC_CTL_IO_WRITE
    assert ucapi.API_VERSION == (unicorn_const.UC_API_MAJOR, unicorn_const.UC_API_MINOR)


def test_same_library_as_the_binding():
    binding = sys.modules["unicorn.unicorn_py3.unicorn"]
    assert ucapi.address_of("uc_open") == ctypes.cast(binding.uclib.uc_open, ctypes.c_void_p).value


def test_engine_runs_code_and_reads_back_what_the_binding_reads():
    e = Engine()
    e.mem_map(CODE, 0x1000)
    e.mem_write(CODE, b"\x48\xff\xc3\x48\x01\xd8\xf4")      # inc rbx; add rax, rbx; hlt
    e.reg_write(ucapi.UC_X86_REG_RBX, 41)
    e.reg_write(ucapi.UC_X86_REG_RAX, 1)
    e.emu_start(CODE, CODE + 6)
    assert (e.reg_read(ucapi.UC_X86_REG_RBX), e.reg_read(ucapi.UC_X86_REG_RAX)) == (42, 43)
    assert e.reg_read(ucapi.UC_X86_REG_RIP) == CODE + 6
    assert e.mem_read(CODE, 3) == bytearray(b"\x48\xff\xc3")
    assert list(e.mem_regions()) == [(CODE, CODE + 0xFFF, ucapi.UC_PROT_ALL)]
    e.emu_start(CODE, CODE + 6, count=1)            # one instruction only
    assert e.reg_read(ucapi.UC_X86_REG_RBX) == 43 and e.reg_read(ucapi.UC_X86_REG_RIP) == CODE + 3
    uc = e.uc
    for reg in (ucapi.UC_X86_REG_RAX, ucapi.UC_X86_REG_RBX, ucapi.UC_X86_REG_RIP, ucapi.UC_X86_REG_CR0,
                ucapi.UC_X86_REG_RFLAGS, ucapi.UC_X86_REG_GDTR, ucapi.UC_X86_REG_TR):
        assert e.reg_read(reg) == uc.reg_read(reg), reg


def test_table_registers_and_msrs_take_the_bindings_shapes():
    e = Engine()
    e.reg_write(ucapi.UC_X86_REG_TR, (0x28, 0x12345000, 0x2067, 0x8900))
    e.reg_write(ucapi.UC_X86_REG_GDTR, (0, 0xFFFF_8000_0000_1000, 0x7F, 0))
    assert e.reg_read(ucapi.UC_X86_REG_TR) == (0x28, 0x12345000, 0x2067, 0x8900)
    assert e.uc.reg_read(ucapi.UC_X86_REG_GDTR) == (0, 0xFFFF_8000_0000_1000, 0x7F, 0)
    e.msr_write(0xC0000103, 0x1234_5678)           # IA32_TSC_AUX
    assert e.msr_read(0xC0000103) == 0x1234_5678 == e.uc.msr_read(0xC0000103)
    e.reg_write(ucapi.UC_X86_REG_RAX, -1)           # ints wrap to 64 bits, as the binding's do
    assert e.reg_read(ucapi.UC_X86_REG_RAX) == 2**64 - 1


def test_errors_say_what_failed():
    e = Engine()
    with pytest.raises(EngineError, match=r"^unmapping 0x5000\+0x1000: .*\(UC_ERR_NOMEM\)$") as info:
        e.mem_unmap(0x5000, 0x1000)
    assert info.value.errno == unicorn_const.UC_ERR_NOMEM
    with pytest.raises(EngineError, match="reading 0x9000"):
        e.mem_read(0x9000, 4)
    assert str(EngineError(unicorn_const.UC_ERR_FETCH_PROT)) == str(unicorn.UcError(unicorn_const.UC_ERR_FETCH_PROT))


def test_binding_view_does_not_own_the_engine():
    e = Engine()
    e.mem_map(CODE, 0x1000)
    view = e.uc
    assert e.uc is view and view._vmm_engine is e
    del view
    gc.collect()
    e.mem_write(CODE, b"\xf4")      # still open: the view closed nothing
    e.emu_start(CODE, CODE + 1)
    assert e.reg_read(ucapi.UC_X86_REG_RIP) == CODE + 1


def test_a_binding_uc_is_taken_as_is():
    uc = unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64)
    e = as_engine(uc)
    assert e.handle == uc._uch.value and e.uc is uc and as_engine(e) is e
    uc.reg_write(x86_const.UC_X86_REG_RCX, 7)
    assert e.reg_read(ucapi.UC_X86_REG_RCX) == 7
    vcpu = UcVcpu(uc)           # the hook layer on a binding Uc, as before
    assert vcpu.self_test()
    with pytest.raises(TypeError, match="not a unicorn engine"):
        as_engine(object())


def test_another_library_is_refused(monkeypatch):
    monkeypatch.setattr(ucapi, "address_of", lambda name: 1)
    with pytest.raises(RuntimeError, match="two engine libraries in one process"):
        as_engine(unicorn.Uc(unicorn.UC_ARCH_X86, unicorn.UC_MODE_64))
    with pytest.raises(RuntimeError, match="two engine libraries in one process"):
        _ = Engine().uc


def test_hooks_added_through_the_binding_view_fire_in_a_vmm_run():
    machine = Machine(MachineConfig(serial=io.BytesIO()))
    machine.load(str(HELLO32))
    seen = []
    machine.engine.hook_add(unicorn.UC_HOOK_CODE, lambda uc, address, size, data: seen.append(address),
                            begin=machine.boot.entry, end=machine.boot.entry)
    machine.vcpu.engine_exit_checks = True
    result = machine.run()
    assert result.status == 1
    assert seen == [machine.boot.entry]
    assert machine.cpus[0].engine is machine.engine


def test_a_vmm_run_does_not_import_the_binding():
    code = ("import io, sys\n"
            "from vmm.machine import Machine, MachineConfig\n"
            "m = Machine(MachineConfig(serial=io.BytesIO()))\n"
            f"m.load({str(HELLO32)!r})\n"
            "assert m.run().status == 1\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] == 'unicorn'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"
