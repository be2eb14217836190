# SPDX-License-Identifier: GPL-2.0-or-later
"""The guest's initramfs: a gzip-compressed newc cpio archive, and the /init command-line convention.

Archive contents (:func:`initramfs_entries`)::

    /init                   init.sh: mounts proc, sysfs, devtmpfs; runs the command; powers off
    /bin/busybox            busybox-static, with a symlink /bin/APPLET for each of APPLETS
    /bin/pmu-vmm-command    pmu-vmm-command.sh: extracts the command from the kernel command line
    /bin/PROGRAM            each test program (firmware/linux/programs.py), and perf in the perf image
    /dev/console            character device 5:1, so the kernel can give /init its console
    /proc /sys /tmp         mount points and scratch directory

With :class:`Libraries` (for dynamically linked programs such as perf), also::

    /lib/x86_64-linux-gnu/SONAME    every shared library they need, as a regular file
    /lib64/ld-linux-x86-64.so.2     the dynamic loader (their PT_INTERP): a symbolic link to the
                                    library of that name, as on Debian

The convention: the kernel command line carries ``pmu_vmm.run="COMMAND"`` (:func:`run_parameter`
writes it); /init prints :data:`INIT_STARTED`, runs COMMAND with ``sh -c``, prints
``pmu-vmm: exit status N`` (:func:`exit_status` finds it in the console output) and powers the
machine off with ``poweroff -f`` (ACPI S5).  COMMAND cannot contain a double quote: the kernel
command line has no way to escape one.  Without the parameter, /init says so and powers off.

Every build of the same inputs gives the same bytes: entries come in a fixed order with inode
numbers counted from 1, owner root, modification time 0, and the gzip header (when compressed)
has no name or time.

newc writer (:func:`newc_archive`): directories, regular files, symbolic links and character
devices.  Not supported: hard links (every entry has its own inode), block devices, FIFOs,
sockets, the "crc" variant (070702), file names that are not plain relative paths.
"""

from __future__ import annotations

import gzip
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

SOURCE_DIR = Path(__file__).resolve().parent
INIT_SCRIPT = SOURCE_DIR / "init.sh"
COMMAND_SCRIPT = SOURCE_DIR / "pmu-vmm-command.sh"

NEWC_MAGIC = b"070701"
NEWC_ALIGNMENT = 4
TRAILER_NAME = "TRAILER!!!"

INIT_STARTED = "pmu-vmm: init started"
EXIT_STATUS = re.compile(r"^pmu-vmm: exit status (\d+)\r?$", re.MULTILINE)
RUN_PARAMETER = "pmu_vmm.run"

#: Busybox applets linked into /bin: what /init needs and what a test command commonly uses.
APPLETS = tuple(
    "[ cat cut dmesg echo env false grep halt head kill ls mkdir mount poweroff printf ps reboot sed sh sleep "
    "sync tail test tr true umount uname wc".split()
)

CONSOLE_DEVICE = (5, 1)  # the kernel's /dev/console major:minor
LIBRARY_DIR = "lib/x86_64-linux-gnu"  # where Debian's loader looks first without an ld.so.cache


@dataclass(frozen=True)
class CpioEntry:
    """One archive member: ``path`` relative to the root, ``mode`` as in st_mode (type and permissions)."""

    path: str
    mode: int
    data: bytes = b""  # a regular file's contents or a symbolic link's target
    rdev: tuple[int, int] = (0, 0)  # a device's major and minor numbers


def directory(path: str, permissions: int = 0o755) -> CpioEntry:
    return CpioEntry(path, stat.S_IFDIR | permissions)


def regular_file(path: str, data: bytes, permissions: int = 0o644) -> CpioEntry:
    return CpioEntry(path, stat.S_IFREG | permissions, data)


def symlink(path: str, target: str) -> CpioEntry:
    return CpioEntry(path, stat.S_IFLNK | 0o777, target.encode())


def char_device(path: str, major: int, minor: int, permissions: int = 0o600) -> CpioEntry:
    return CpioEntry(path, stat.S_IFCHR | permissions, rdev=(major, minor))


@dataclass(frozen=True)
class Libraries:
    """What dynamically linked programs need: soname -> library contents, and their loader's path."""

    files: Mapping[str, bytes]
    interpreter: str  # PT_INTERP, e.g. /lib64/ld-linux-x86-64.so.2; a library of that name must be in files

    def entries(self) -> list[CpioEntry]:
        loader_dir, _, loader_name = self.interpreter.lstrip("/").rpartition("/")
        if not self.interpreter.startswith("/") or loader_name not in self.files:
            raise ValueError(f"the loader {self.interpreter!r} is not an absolute path to one of the libraries")
        entries = [directory("lib"), directory(LIBRARY_DIR)]
        entries += [regular_file(f"{LIBRARY_DIR}/{name}", self.files[name], 0o755) for name in sorted(self.files)]
        if loader_dir != LIBRARY_DIR:
            if loader_dir != "lib":
                entries.append(directory(loader_dir))
            entries.append(symlink(f"{loader_dir}/{loader_name}", f"/{LIBRARY_DIR}/{loader_name}"))
        return entries


def newc_archive(entries: Iterable[CpioEntry]) -> bytes:
    """The newc ("070701") cpio archive of ``entries``, in order, ending with the trailer.

    Refuses (ValueError) a path that is absolute, empty, has "." or ".." components, repeats an
    earlier one, or whose parent directory is not an earlier entry: the kernel unpacks in order and
    cannot create a file in a directory that does not exist yet.
    """
    archive = bytearray()
    directories = {""}
    seen: set[str] = set()
    for inode, entry in enumerate(entries, start=1):
        _check_path(entry.path, seen, directories)
        seen.add(entry.path)
        if stat.S_ISDIR(entry.mode):
            directories.add(entry.path)
        elif not (stat.S_ISREG(entry.mode) or stat.S_ISLNK(entry.mode) or stat.S_ISCHR(entry.mode)):
            raise ValueError(f"cpio entry {entry.path}: unsupported file type {stat.S_IFMT(entry.mode):#o}")
        links = 2 if stat.S_ISDIR(entry.mode) else 1  # a directory's "." plus its name
        archive += _member(entry.path, inode, entry.mode, links, entry.data, entry.rdev)
    archive += _member(TRAILER_NAME, 0, 0, 1, b"", (0, 0))
    return bytes(archive)


def _check_path(path: str, seen: set[str], directories: set[str]) -> None:
    parts = path.split("/")
    if not path or path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise ValueError(f"cpio path {path!r} is not a plain relative path")
    if path in seen:
        raise ValueError(f"cpio path {path!r} appears twice")
    parent = "/".join(parts[:-1])
    if parent not in directories:
        raise ValueError(f"cpio path {path!r} comes before its directory {parent!r}")


def _member(name: str, inode: int, mode: int, links: int, data: bytes, rdev: tuple[int, int]) -> bytes:
    encoded_name = name.encode() + b"\0"
    # ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize,
    # check: 8 hex digits each.  Owner root, time 0, device 0:0 for every member.
    fields = (inode, mode, 0, 0, links, 0, len(data), 0, 0, *rdev, len(encoded_name), 0)
    header = NEWC_MAGIC + b"".join(b"%08X" % field for field in fields)
    member = bytearray(header + encoded_name)
    member += bytes(-len(member) % NEWC_ALIGNMENT)
    member += data
    member += bytes(-len(data) % NEWC_ALIGNMENT)
    return bytes(member)


def initramfs_entries(busybox: bytes, programs: Mapping[str, bytes],
                      libraries: Libraries | None = None) -> list[CpioEntry]:
    """The initramfs's members (see the module docstring); ``programs`` maps /bin names to executables."""
    clashes = sorted(set(programs) & {*APPLETS, "busybox", COMMAND_SCRIPT.stem})
    if clashes:
        raise ValueError(f"test program names clash with other /bin entries: {', '.join(clashes)}")
    return [
        directory("bin"),
        directory("dev"),
        directory("proc", 0o555),
        directory("sys", 0o555),
        directory("tmp", 0o1777),
        char_device("dev/console", *CONSOLE_DEVICE),
        regular_file("init", INIT_SCRIPT.read_bytes(), 0o755),
        regular_file("bin/busybox", busybox, 0o755),
        *(symlink(f"bin/{applet}", "busybox") for applet in sorted(APPLETS)),
        regular_file(f"bin/{COMMAND_SCRIPT.stem}", COMMAND_SCRIPT.read_bytes(), 0o755),
        *(regular_file(f"bin/{name}", programs[name], 0o755) for name in sorted(programs)),
        *(libraries.entries() if libraries is not None else ()),
    ]


def build_initramfs(busybox: bytes, programs: Mapping[str, bytes], libraries: Libraries | None = None, *,
                    compress: bool = True) -> bytes:
    """The initramfs (gzip-compressed unless ``compress`` is false), byte-identical for identical inputs."""
    archive = newc_archive(initramfs_entries(busybox, programs, libraries))
    return gzip.compress(archive, compresslevel=9, mtime=0) if compress else archive


def run_parameter(command: str) -> str:
    """The kernel command-line parameter that makes /init run ``command`` (with ``sh -c``)."""
    if not command.strip():
        raise ValueError("the command for /init is empty")
    forbidden = sorted({char for char in command if char in '"\n\0'})
    if forbidden:
        raise ValueError(f"the command for /init cannot contain {forbidden!r}: the kernel command line cannot quote it")
    return f'{RUN_PARAMETER}="{command}"'


def exit_status(console: str) -> int | None:
    """The exit status /init reported for the command in ``console`` output, or None if it did not."""
    found = EXIT_STATUS.search(console)
    return int(found.group(1)) if found else None
