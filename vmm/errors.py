# SPDX-License-Identifier: GPL-2.0-or-later
"""The VMM's own errors: each carries a one-line message meant for the person running the VMM.

The CLI prints ``str(error)`` and exits non-zero instead of showing a traceback.  Bugs in the VMM
itself are not VmmErrors and keep their tracebacks.
"""


class VmmError(Exception):
    """A problem with the user's input or configuration, explained in one line."""


class LoadError(VmmError):
    """The kernel image (or its command line or module) cannot be loaded into the guest."""
