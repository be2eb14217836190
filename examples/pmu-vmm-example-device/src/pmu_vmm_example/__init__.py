# SPDX-License-Identifier: GPL-2.0-or-later
"""An example of a pmu-vmm device that lives outside the project, found through an entry point.

The package's pyproject.toml names :class:`ExampleScratch` in the ``pmu_vmm.devices`` entry-point
group; pmu-vmm's registry (devices/registry.py) loads it from there, so once this package is
installed ``--device example-scratch`` works and ``--device help`` lists it.  Nothing else is
registered anywhere: the device's own declarations (name, properties, bus ranges) are enough.

Not supported: anything beyond the example itself; it is a template to copy.
"""

from pmu_vmm_example.scratch import DEFAULT_IOBASE, MAGIC, ExampleScratch

__all__ = ["DEFAULT_IOBASE", "MAGIC", "ExampleScratch"]
