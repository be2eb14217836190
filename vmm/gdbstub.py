# SPDX-License-Identifier: GPL-2.0-or-later
"""A gdb server for the machine (GDB's remote serial protocol over TCP): break, step, look, go on.

``--gdb [HOST:]PORT`` (QEMU: ``-s``, ``-gdb tcp::PORT``, ``-S``) makes the machine listen; gdb
connects with ``target remote :PORT``.  vCPUs are gdb threads (thread id = vCPU index + 1).  While
gdb is attached and the guest stopped, nothing runs: no instruction, no timer, so stepping and
breakpoints change no count the guest can see (a stepped instruction retires exactly as in a free
run; an instruction gdb stops at has not retired).

Supported packets: ``qSupported``, ``qXfer:features:read`` (an x86-64 target description: the 16
general registers, RIP, EFLAGS, the six selectors, FS/GS base, x87 registers that read as zero),
``?``, ``g``/``G``, ``p``/``P``, ``m``/``M`` (virtual addresses, through the guest's page tables),
``c``, ``s``, ``vCont`` (``c``, ``s``; a step runs only the stepped vCPU), ``Z0``/``Z1``/``z0``/``z1``
(breakpoints on every vCPU), ``H``, ``T``, ``qfThreadInfo``/``qsThreadInfo``, ``qC``, ``qAttached``,
``D``, ``k``, and Ctrl-C while the guest runs (seen within ~1 ms of guest time).  Everything else
gets the empty reply ("not supported"), as the protocol asks.

Why not a library: udbserver, the gdbserver for Unicorn, runs the engine itself (its own emulation
loop and hooks); under it our run loop, devices, exact counting and SMP scheduling would not run.

Not supported: watchpoints (Z2-Z4), writing x87/SSE registers, non-stop mode, more than one gdb
connection at a time, reverse execution.
"""

from __future__ import annotations

import socket

from unicorn import UC_HOOK_CODE
from unicorn import x86_const as uxc

from vmm.errors import VmmError

SIGTRAP = 5
SIGINT = 2
TICK_NS = 1 << 20           # how often a running guest looks for Ctrl-C or a new connection
#: The 'g' packet's registers: (name, bits, gdb type, unicorn register or None for "reads as 0").
REGISTERS = (
    *((name, 64, "int64", getattr(uxc, f"UC_X86_REG_{name.upper()}"))
      for name in ("rax", "rbx", "rcx", "rdx", "rsi", "rdi")),
    ("rbp", 64, "data_ptr", uxc.UC_X86_REG_RBP), ("rsp", 64, "data_ptr", uxc.UC_X86_REG_RSP),
    *((f"r{n}", 64, "int64", getattr(uxc, f"UC_X86_REG_R{n}")) for n in range(8, 16)),
    ("rip", 64, "code_ptr", uxc.UC_X86_REG_RIP), ("eflags", 32, "int32", uxc.UC_X86_REG_EFLAGS),
    *((seg, 32, "int32", getattr(uxc, f"UC_X86_REG_{seg.upper()}")) for seg in ("cs", "ss", "ds", "es", "fs", "gs")),
    *((f"st{n}", 80, "i387_ext", None) for n in range(8)),
    *((name, 32, "int", None) for name in ("fctrl", "fstat", "ftag", "fiseg", "fioff", "foseg", "fooff", "fop")),
    ("fs_base", 64, "int64", uxc.UC_X86_REG_FS_BASE), ("gs_base", 64, "int64", uxc.UC_X86_REG_GS_BASE),
)
CORE_END = 16 + 2 + 6 + 8 + 8       # registers of feature org.gnu.gdb.i386.core; the rest: .segments


def target_xml() -> str:
    def regs(entries):
        return "".join(f'<reg name="{n}" bitsize="{b}" type="{t}"/>' for n, b, t, _ in entries)
    return ('<?xml version="1.0"?><!DOCTYPE target SYSTEM "gdb-target.dtd"><target>'
            '<architecture>i386:x86-64</architecture>'
            f'<feature name="org.gnu.gdb.i386.core">{regs(REGISTERS[:CORE_END])}</feature>'
            f'<feature name="org.gnu.gdb.i386.segments">{regs(REGISTERS[CORE_END:])}</feature>'
            '</target>')


def checksum(payload: bytes) -> int:
    return sum(payload) & 0xFF


def frame(payload: bytes) -> bytes:
    return b"$" + payload + b"#" + f"{checksum(payload):02x}".encode()


def parse_listen_address(text: str) -> tuple[str, int]:
    """``PORT``, ``:PORT``, ``HOST:PORT`` or QEMU's ``tcp::PORT`` / ``tcp:HOST:PORT`` -> (host, port)."""
    spec = text.removeprefix("tcp:")
    host, _, port = spec.rpartition(":")
    if not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{text!r}: expected [tcp:][HOST]:PORT with a port from 0 (any free one) to 65535")
    return host or "127.0.0.1", int(port)


class GdbServer:
    """The machine's debugger side.  ``start_stopped``: the guest waits for gdb (QEMU's -S); else it
    runs and gdb may attach at any time."""

    def __init__(self, address: str, start_stopped: bool = True):
        host, port = parse_listen_address(address)
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self.listener.bind((host, port))
        except OSError as e:
            raise VmmError(f"--gdb {address}: cannot listen on {host}:{port}: {e.strerror}") from None
        self.listener.listen(1)
        self.port = self.listener.getsockname()[1]
        self.start_stopped = start_stopped
        self.conn: socket.socket | None = None
        self.machine = None
        self.breakpoints: dict[int, list] = {}     # address -> [(engine, hook handle)] one per vCPU
        self.thread = 1                            # vCPU index + 1 of 'g', 'm', 'Z' requests
        self._pending = b""
        self._next: int | None = 0
        self._retired = -1
        self._quiet = False

    # -- the machine's side ---------------------------------------------------------------------
    def attach(self, machine) -> None:
        self.machine = machine
        machine.timers.append(self)

    def next_deadline(self) -> int | None:
        """Look at the socket now and then while the guest runs (a timer that raises no interrupt);
        disarmed while no instruction retires, so it never keeps halted vCPUs waiting for it."""
        if self._next is None and self.machine.retired != self._retired:
            self._next = self.machine.clock.now() + TICK_NS
        return self._next

    def tick(self, now: int) -> None:
        halted = self.machine.retired == self._retired
        self._retired = self.machine.retired
        self._next = None if halted else now + TICK_NS
        if self.conn is None:
            self.listener.setblocking(False)
            try:
                self._accept(*self.listener.accept())
            except BlockingIOError:
                return
            finally:
                self.listener.setblocking(True)
            self.machine.debug_break()
            return
        self.conn.setblocking(False)
        try:
            data = self.conn.recv(4096)
        except BlockingIOError:
            data = None
        finally:
            self.conn.setblocking(True)
        if data == b"":
            self._disconnected()
            return
        self._pending += data or b""
        if b"\x03" in self._pending:       # Ctrl-C, maybe sent right behind the last command
            self._pending = self._pending.replace(b"\x03", b"")
            self.machine.debug_break()

    def wait_at_start(self) -> bool:
        """Before the first instruction: wait for gdb if asked to; True if the guest starts stopped."""
        if not self.start_stopped:
            return False
        self._accept(*self.listener.accept())
        return True

    def stopped(self, cpu_index: int, signal: int = SIGTRAP, report: bool = True):
        """The guest stopped (breakpoint, step, Ctrl-C, start): answer gdb until it resumes.
        Returns ("continue", None) or ("step", vCPU index); ("continue", None) once gdb is gone."""
        if self.conn is None:
            return "continue", None
        self.thread = cpu_index + 1
        if report and not self._quiet:
            self._send(f"T{signal:02x}thread:{cpu_index + 1:x};".encode())
        self._quiet = False
        while self.conn is not None:
            packet = self._receive()
            if packet is None:
                break
            action = self._handle(packet)
            if action is not None:
                return action
        return "continue", None

    def ended(self, status: int) -> None:
        """The run ended: gdb hears that the process exited."""
        if self.conn is not None:
            self._send(f"W{status & 0xFF:02x}".encode())
            self._disconnected()
        self.listener.close()

    # -- connection --------------------------------------------------------------------------------
    def _accept(self, conn, _address) -> None:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = conn
        self._pending = b""
        self._quiet = True      # gdb asks with '?' why the target it attached to is stopped

    def _disconnected(self) -> None:
        self._remove_all_breakpoints()
        if self.conn is not None:
            self.conn.close()
        self.conn = None

    def _send(self, payload: bytes) -> None:
        try:
            while True:
                self.conn.sendall(frame(payload))
                ack = self._read(1)
                if ack != b"-":
                    return
        except OSError:
            self._disconnected()

    def _read(self, n: int) -> bytes:
        while len(self._pending) < n:
            data = self.conn.recv(4096)
            if not data:
                raise ConnectionError("gdb closed the connection")
            self._pending += data
        out, self._pending = self._pending[:n], self._pending[n:]
        return out

    def _receive(self) -> bytes | None:
        """The next packet's payload (acknowledged), or None when gdb is gone."""
        try:
            while True:
                start = self._read(1)
                if start == b"\x03":
                    continue            # Ctrl-C while stopped: nothing to interrupt
                if start != b"$":
                    continue            # acks and noise between packets
                payload = b""
                while (ch := self._read(1)) != b"#":
                    payload += ch
                if int(self._read(2), 16) == checksum(payload):
                    self.conn.sendall(b"+")
                    return payload
                self.conn.sendall(b"-")
        except (OSError, ValueError):
            self._disconnected()
            return None

    # -- packets ------------------------------------------------------------------------------------
    def _cpu(self, thread: int | None = None):
        cpus = self.machine.cpus
        index = (self.thread if thread is None or thread <= 0 else thread) - 1
        return cpus[index] if 0 <= index < len(cpus) else cpus[0]

    def _handle(self, packet: bytes):
        text = packet.decode("latin-1")
        kind = text[:1]
        try:
            if text.startswith("qSupported"):
                self._send(b"PacketSize=4000;qXfer:features:read+;vContSupported+")
            elif text.startswith("qXfer:features:read:target.xml:"):
                offset, length = (int(x, 16) for x in text.rsplit(":", 1)[1].split(","))
                xml = target_xml().encode()
                chunk = xml[offset:offset + length]
                self._send((b"l" if offset + length >= len(xml) else b"m") + chunk)
            elif text == "?":
                self._send(f"T{SIGTRAP:02x}thread:{self.thread:x};".encode())
            elif kind == "H":
                thread = int(text[2:], 16) if text[2:] not in ("", "-1") else 0
                if thread > 0:
                    self.thread = thread
                self._send(b"OK")
            elif kind == "T":
                self._send(b"OK" if 0 < int(text[1:], 16) <= len(self.machine.cpus) else b"E01")
            elif text == "qfThreadInfo":
                self._send(("m" + ",".join(f"{i + 1:x}" for i in range(len(self.machine.cpus)))).encode())
            elif text == "qsThreadInfo":
                self._send(b"l")
            elif text == "qC":
                self._send(f"QC{self.thread:x}".encode())
            elif text == "qAttached":
                self._send(b"1")
            elif kind == "g":
                self._send(self._read_registers().hex().encode())
            elif kind == "G":
                self._write_registers(bytes.fromhex(text[1:]))
                self._send(b"OK")
            elif kind == "p":
                self._send(self._register_bytes(int(text[1:], 16)).hex().encode())
            elif kind == "P":
                number, value = text[1:].split("=")
                self._set_register(int(number, 16), bytes.fromhex(value))
                self._send(b"OK")
            elif kind == "m":
                address, length = (int(x, 16) for x in text[1:].split(","))
                data = self._cpu().vcpu.read_virtual(address, min(length, 0x1000))
                self._send(b"E14" if data is None else data.hex().encode())
            elif kind == "M":
                where, data = text[1:].split(":")
                address, _ = (int(x, 16) for x in where.split(","))
                self._send(b"OK" if self._cpu().vcpu.write_virtual(address, bytes.fromhex(data)) else b"E14")
            elif kind in "Zz" and text[1:2] in ("0", "1"):
                address = int(text[3:].split(",")[0], 16)
                (self._add_breakpoint if kind == "Z" else self._remove_breakpoint)(address)
                self._send(b"OK")
            elif kind == "c":
                return "continue", None
            elif kind == "s":
                return "step", self.thread - 1
            elif text == "vCont?":
                self._send(b"vCont;c;s")
            elif text.startswith("vCont;"):
                return self._vcont(text[6:])
            elif kind == "D":
                self._send(b"OK")
                self._disconnected()
                return "continue", None
            elif kind == "k":
                self._disconnected()
                self.machine.kill("killed by gdb")
                return "continue", None
            else:
                self._send(b"")
        except (ValueError, IndexError):
            self._send(b"E01")
        return None

    def _vcont(self, actions: str):
        """The first action that names a thread or applies to all: a step runs only its vCPU."""
        for action in actions.split(";"):
            verb, _, thread = action.partition(":")
            if verb == "s":
                return "step", (int(thread, 16) - 1) if thread and thread != "-1" else self.thread - 1
            if verb == "c":
                return "continue", None
        self._send(b"E01")
        return None

    # -- registers ---------------------------------------------------------------------------------
    def _register_bytes(self, number: int) -> bytes:
        name, bits, _, reg = REGISTERS[number]
        value = 0 if reg is None else self._cpu().engine.reg_read(reg)
        return (value & ((1 << bits) - 1)).to_bytes(bits // 8, "little")

    def _set_register(self, number: int, data: bytes) -> None:
        name, bits, _, reg = REGISTERS[number]
        if reg is not None:
            self._cpu().engine.reg_write(reg, int.from_bytes(data[:bits // 8], "little"))

    def _read_registers(self) -> bytes:
        return b"".join(self._register_bytes(i) for i in range(len(REGISTERS)))

    def _write_registers(self, data: bytes) -> None:
        offset = 0
        for i, (_, bits, _, _) in enumerate(REGISTERS):
            size = bits // 8
            if offset + size > len(data):
                break
            if i < 16 + 2:        # general registers, RIP and EFLAGS: selectors and bases need loads
                self._set_register(i, data[offset:offset + size])
            offset += size

    # -- breakpoints ---------------------------------------------------------------------------------
    def _add_breakpoint(self, address: int) -> None:
        if address in self.breakpoints:
            return
        hooks = []
        for cpu in self.machine.cpus:
            vcpu = cpu.vcpu
            vcpu.engine_exit_checks = True  # the hook's stop must end the block before the instruction
            handle = cpu.engine.hook_add(UC_HOOK_CODE, lambda _uc, _a, _s, _d, v=vcpu: v.stop_before_this_instruction(
                "breakpoint"), begin=address, end=address)
            cpu.engine.ctl_remove_cache(address, address + 1)
            hooks.append((cpu.engine, handle))
            vcpu.bulk_loops = False     # a breakpoint in a self-loop stops at every iteration
        self.breakpoints[address] = hooks

    def _remove_breakpoint(self, address: int) -> None:
        for engine, handle in self.breakpoints.pop(address, ()):
            engine.hook_del(handle)
            engine.ctl_remove_cache(address, address + 1)
        if not self.breakpoints:
            for cpu in self.machine.cpus:
                cpu.vcpu.bulk_loops = True
                cpu.vcpu.engine_exit_checks = False

    def _remove_all_breakpoints(self) -> None:
        for address in list(self.breakpoints):
            self._remove_breakpoint(address)
