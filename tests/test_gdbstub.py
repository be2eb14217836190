# SPDX-License-Identifier: GPL-2.0-or-later
"""The gdb server (vmm/gdbstub.py): the protocol with a small client of our own, and real gdb.

The machine runs in a thread and the test talks GDB's remote protocol to it over TCP.  What matters
most: a guest stopped, stepped and continued under gdb ends exactly as a free run does (same
instruction count, same output), and breakpoints stop before the instruction.
"""

from __future__ import annotations

import io
import re
import shutil
import socket
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET

import pytest
from elftools.elf.elffile import ELFFile

import firmware
from tests.guest import ROOT
from vmm.gdbstub import REGISTERS, GdbServer, checksum, frame, parse_listen_address, target_xml
from vmm.machine import Machine, MachineConfig

RIP = next(i for i, r in enumerate(REGISTERS) if r[0] == "rip")


def symbol(kernel: str, name: str) -> int:
    with open(firmware.image(kernel), "rb") as f:
        return ELFFile(f).get_section_by_name(".symtab").get_symbol_by_name(name)[0]["st_value"]


class Client:
    """Just enough of gdb's side of the protocol."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buffer = b""

    def _packet(self) -> str:
        while not re.search(rb"\$[^#]*#..", self.buffer):
            data = self.sock.recv(4096)
            assert data, "the server closed the connection"
            self.buffer += data
        match = re.search(rb"\$([^#]*)#(..)", self.buffer)
        self.buffer = self.buffer[match.end():]
        assert int(match.group(2), 16) == checksum(match.group(1))
        self.sock.sendall(b"+")
        return match.group(1).decode()

    def ask(self, payload: str) -> str:
        self.sock.sendall(frame(payload.encode()))
        return self._packet()

    def kill(self) -> None:
        """'k' has no reply: the server closes the connection."""
        self.sock.sendall(frame(b"k"))

    def interrupt(self) -> str:
        self.sock.sendall(b"\x03")
        return self._packet()

    def register(self, index: int) -> int:
        return int.from_bytes(bytes.fromhex(self.ask(f"p{index:x}")), "little")


def debug(kernel: str, smp: int = 1, start_stopped: bool = True, **config):
    """A machine running ``kernel`` under a gdb server in a thread; returns (client, thread, result dict)."""
    server = GdbServer("127.0.0.1:0", start_stopped=start_stopped)
    machine = Machine(MachineConfig(serial=io.BytesIO(), smp=smp, timeout=60, **config))
    machine.load(str(firmware.image(kernel)))
    machine.attach_debugger(server)
    out = {"machine": machine}
    thread = threading.Thread(target=lambda: out.setdefault("result", machine.run()), daemon=True)
    thread.start()
    return Client(server.port), thread, out


def free_run(kernel: str, **config):
    machine = Machine(MachineConfig(serial=io.BytesIO(), timeout=60, **config))
    machine.load(str(firmware.image(kernel)))
    return machine.run()


def test_framing_and_addresses():
    assert frame(b"OK") == b"$OK#9a" and checksum(b"") == 0
    assert parse_listen_address("1234") == ("127.0.0.1", 1234)
    assert parse_listen_address("tcp::1234") == ("127.0.0.1", 1234)
    assert parse_listen_address("tcp:0.0.0.0:9") == ("0.0.0.0", 9)
    for bad in ("", "tcp:", "x:y", "70000", "tcp::-1"):
        with pytest.raises(ValueError):
            parse_listen_address(bad)


def test_target_description_matches_the_register_packet():
    root = ET.fromstring(target_xml())
    regs = root.findall(".//reg")
    assert [r.get("name") for r in regs] == [r[0] for r in REGISTERS]
    assert root.find("architecture").text == "i386:x86-64"
    client, thread, out = debug("hello64")
    assert client.ask("qSupported:multiprocess+").startswith("PacketSize=")
    xml = client.ask("qXfer:features:read:target.xml:0,fff")
    assert xml[0] == "l" and xml[1:] == target_xml()
    assert len(client.ask("g")) == 2 * sum(bits // 8 for _, bits, _, _ in REGISTERS)
    client.ask("c")
    thread.join(60)


def test_stepping_and_breaking_leave_the_run_exactly_as_a_free_run():
    expected = free_run("hello64")
    main = symbol("hello64", "main")
    client, thread, out = debug("hello64")
    assert client.ask("?") == "T05thread:1;"
    rips = [client.register(RIP)]
    for _ in range(25):
        assert client.ask("s") == "T05thread:1;"
        rips.append(client.register(RIP))
    assert len(set(rips)) > 10          # it moved, one instruction at a time
    assert client.ask(f"Z0,{main:x},1") == "OK"
    assert client.ask("c") == "T05thread:1;"
    assert client.register(RIP) == main     # stopped before main's first instruction
    assert client.ask(f"z0,{main:x},1") == "OK"
    for _ in range(5):
        client.ask("s")
    assert client.ask("c") == f"W{expected.status:02x}"
    thread.join(60)
    result = out["result"]
    assert (result.instructions, result.serial, result.status) == \
           (expected.instructions, expected.serial, expected.status)


def test_registers_and_memory_read_and_write():
    main = symbol("hello64", "main")
    client, thread, out = debug("hello64")
    client.ask(f"Z0,{main:x},1")
    client.ask("c")
    code = bytes.fromhex(client.ask(f"m{main:x},8"))
    with open(firmware.image("hello64"), "rb") as f:
        elf = ELFFile(f)
        text = elf.get_section_by_name(".text")
        assert code == text.data()[main - text["sh_addr"]:][:8]
    assert client.ask("m10000000000,4") == "E14"       # nothing mapped there
    scratch = 0x200000
    assert client.ask(f"M{scratch:x},4:11223344") == "OK"
    assert client.ask(f"m{scratch:x},4") == "11223344"
    rax = REGISTERS.index(next(r for r in REGISTERS if r[0] == "rax"))
    assert client.ask(f"P{rax:x}=efbeadde00000000") == "OK"
    assert client.register(rax) == 0xDEADBEEF
    client.kill()
    thread.join(60)
    assert (out["result"].reason, out["result"].status) == ("killed", 137)


def test_vcpus_are_threads_and_a_step_runs_only_its_vcpu():
    client, thread, out = debug("smp_boot", smp=2)
    assert client.ask("qfThreadInfo") == "m1,2" and client.ask("qsThreadInfo") == "l"
    assert client.ask("T2") == "OK" and client.ask("T3") == "E01"
    client.ask("Hg2")
    ap_rip = client.register(RIP)
    client.ask("Hg1")
    assert client.ask("vCont;s:1") == "T05thread:1;"
    client.ask("Hg2")
    assert client.register(RIP) == ap_rip           # the AP (waiting for SIPI) did not move
    assert client.ask("vCont;c") == "W01"
    thread.join(60)


def test_ctrl_c_stops_a_running_guest_and_gdb_may_attach_late():
    client, thread, out = debug("spin", start_stopped=False)
    assert client.ask("?") == "T05thread:1;"        # attaching stopped the guest quietly
    client.sock.sendall(frame(b"c"))
    reply = client.interrupt()
    assert reply == "T02thread:1;"
    rip = client.register(RIP)
    assert client.ask(f"m{rip:x},2") == "ebfe"      # inside `jmp .`
    client.kill()
    thread.join(60)
    assert out["result"].reason == "killed"


def test_a_step_in_a_self_loop_retires_one_instruction():
    """`jmp .` is retired in bulk when running free; a step still retires exactly one."""
    client, thread, out = debug("spin", start_stopped=False)
    client.ask("?")
    client.sock.sendall(frame(b"c"))
    client.interrupt()
    machine = out["machine"]
    before = machine.retired
    for _ in range(5):
        assert client.ask("s") == "T05thread:1;"
    assert machine.retired == before + 5
    rip = client.register(RIP)
    for _ in range(3):      # as gdb continues from a breakpoint: step over it, insert it, continue
        assert client.ask(f"z0,{rip:x},1") == "OK" and client.ask("s") == "T05thread:1;"
        assert client.ask(f"Z0,{rip:x},1") == "OK" and client.ask("c") == "T05thread:1;"
    assert machine.retired == before + 5 + 3       # the breakpoint stopped the loop at every iteration
    client.kill()
    thread.join(60)


def test_cli_announces_the_port_and_runs_to_the_guests_status():
    proc = subprocess.Popen([sys.executable, "-m", "vmm", "run", "hello64", "--gdb", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = proc.stderr.readline().decode()
    port = int(re.search(r"waiting for gdb on port (\d+)", line).group(1))
    client = Client(port)
    assert client.ask("c") == "W01"
    assert proc.wait(60) == 0
    assert b"PASS: running in long mode" in proc.stdout.read()


@pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed")
def test_real_gdb_breaks_steps_and_sees_the_exit():
    proc = subprocess.Popen([sys.executable, "-m", "vmm", "run", "hello64", "--gdb", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    port = int(re.search(r"port (\d+)", proc.stderr.readline().decode()).group(1))
    gdb = subprocess.run(["gdb", "-batch", "-nx", "-ex", f"file {firmware.image('hello64')}",
                          "-ex", f"target remote 127.0.0.1:{port}", "-ex", "break main", "-ex", "continue",
                          "-ex", "info registers rip", "-ex", "stepi", "-ex", "info threads", "-ex", "continue"],
                         capture_output=True, text=True, timeout=60)
    assert proc.wait(60) == 0, gdb.stdout + gdb.stderr
    assert re.search(r"Breakpoint 1, main \(", gdb.stdout), gdb.stdout
    assert re.search(rf"rip\s+{symbol('hello64', 'main'):#x}", gdb.stdout), gdb.stdout
    assert "exited with code 01" in gdb.stdout
