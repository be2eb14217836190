# SPDX-License-Identifier: GPL-2.0-or-later
"""pmu-vmm: a minimal x86-64 VMM on Unicorn with an exact, deterministic virtual PMU.

``__version__`` is the project's one version: pyproject.toml reads it from here (setuptools'
``attr:``), so the installed metadata always agrees with it.  Importing this package imports
nothing else; the machine is vmm.machine, the command line vmm.cli.
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
