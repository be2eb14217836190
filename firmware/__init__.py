# SPDX-License-Identifier: GPL-2.0-or-later
"""Firmware built from source at install time: the boot trampoline and our test kernels.

``make -C firmware`` (run by setup.py's build step) puts every image in firmware/bin/.
"""

from __future__ import annotations

from pathlib import Path

BIN = Path(__file__).resolve().parent / "bin"


class FirmwareMissingError(FileNotFoundError):
    pass


def image(name: str) -> Path:
    """Path of a built image, e.g. image("hello64") -> .../firmware/bin/hello64.elf."""
    path = BIN / (name if "." in name else f"{name}.elf")
    if not path.is_file():
        raise FirmwareMissingError(f"firmware image {path} is missing: build it with `make -C firmware` "
                                   f"(pip install does this)")
    return path


def kernels() -> list[str]:
    """Names of every built test kernel."""
    return sorted(p.stem for p in BIN.glob("*.elf") if p.stem != "trampoline")


def trampoline() -> bytes:
    return image("trampoline.bin").read_bytes()
