# SPDX-License-Identifier: GPL-2.0-or-later
"""The shared libraries a dynamically linked x86-64 program needs, found in an unpacked Debian tree.

:func:`needed_libraries` starts from a program's ELF ``DT_NEEDED`` entries and follows those of
every library it finds, the way the dynamic loader would on Debian 12 with no ld.so.cache: each
soname is looked up in :data:`SEARCH_DIRS` of the tree, in order.  Symbolic links inside the tree
are followed, with absolute targets taken relative to the tree's root, so the result maps each
soname to the real file behind it.  :func:`interpreter` gives the program's ``PT_INTERP``.

This is what ``ldd`` answers, without running anything from the tree on the host.

Not supported: ``DT_RPATH``/``DT_RUNPATH`` and ``$ORIGIN`` (Debian's packages use neither for the
libraries we collect), ``LD_LIBRARY_PATH``, hardware-capability subdirectories, libraries loaded
with dlopen() at run time, and 32-bit programs.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from elftools.elf.dynamic import DynamicSection
from elftools.elf.elffile import ELFFile

#: Where the loader looks, relative to the root: Debian's multiarch directories, then the classic ones.
SEARCH_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")
_MAX_LINKS = 40  # symbolic links followed for one path before giving up (a loop)


class LibraryError(RuntimeError):
    """A needed library is missing from the tree, or a file is not what it should be; one line."""


def needed_libraries(program: Path, root: Path) -> dict[str, Path]:
    """Soname -> real file in ``root`` of every library ``program`` needs, directly or not, in sorted order."""
    found: dict[str, Path] = {}
    pending = [(soname, program) for soname in _needed(program)]
    while pending:
        soname, needed_by = pending.pop()
        if soname in found:
            continue
        path = _find(soname, root)
        if path is None:
            raise LibraryError(f"{needed_by.name} needs {soname}, which is not in {', '.join(SEARCH_DIRS)} of {root}")
        found[soname] = path
        pending.extend((dependency, path) for dependency in _needed(path))
    return dict(sorted(found.items()))


def interpreter(program: Path) -> str | None:
    """The program's PT_INTERP (its dynamic loader's absolute path), or None for a static program."""
    with open(program, "rb") as file:
        for segment in ELFFile(file).iter_segments():
            if segment["p_type"] == "PT_INTERP":
                return segment.get_interp_name()
    return None


def resolve(path: PurePosixPath, root: Path) -> Path | None:
    """The regular file an absolute in-tree ``path`` names, following symbolic links inside ``root``."""
    parts = list(path.parts[1:])
    current = root
    links = 0
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root  # as the kernel does at "/"
            continue
        candidate = current / part
        if candidate.is_symlink():
            links += 1
            if links > _MAX_LINKS:
                return None
            target = PurePosixPath(str(candidate.readlink()))
            if target.is_absolute():
                current = root
            parts = [p for p in target.parts if p != "/"] + parts
        elif candidate.exists():
            current = candidate
        else:
            return None
    return current if current.is_file() else None


def _find(soname: str, root: Path) -> Path | None:
    for directory in SEARCH_DIRS:
        path = resolve(PurePosixPath("/", directory, soname), root)
        if path is not None:
            return path
    return None


def _needed(path: Path) -> list[str]:
    try:
        with open(path, "rb") as file:
            elf = ELFFile(file)
            if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
                raise LibraryError(f"{path} is not an x86-64 ELF file")
            return [tag.needed for section in elf.iter_sections() if isinstance(section, DynamicSection)
                    for tag in section.iter_tags() if tag.entry.d_tag == "DT_NEEDED"]
    except OSError as error:
        raise LibraryError(f"cannot read {path}: {error.strerror}") from None
