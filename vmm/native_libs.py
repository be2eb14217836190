# SPDX-License-Identifier: GPL-2.0-or-later
"""Where the C libraries that Python packages ship lie, found without importing the packages.

Importing the ``unicorn`` or ``capstone`` binding costs far more than the VMM needs of it (every
architecture's ctypes structures and constants: ~100 M host instructions for unicorn, a quarter
of a command-line run), so vmm/engine.py and vmm/decode.py load the packages' libraries
themselves with bindings of the x86 part only.  :func:`packaged_library` finds such a library
from the package's import spec, which locating a package does not execute.

Not here: loading the libraries or checking their versions (each binding module does).
"""

import importlib.util
import os


def packaged_library(package: str, *parts: str) -> str | None:
    """The path of ``parts`` (e.g. ``"lib", "libunicorn.so.2"``) under the installed ``package``'s
    directory, or None if the package or the file is not there."""
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        return None
    path = os.path.join(os.path.dirname(spec.origin), *parts)
    return path if os.path.exists(path) else None
