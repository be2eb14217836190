# SPDX-License-Identifier: GPL-2.0-or-later
"""Build: the Cython extensions (vCPU hook layer, PMU core) and the firmware, from source.

The extensions do not link libunicorn or libcapstone: the hook layer resolves the engine's entry
points at run time from the library the unicorn Python binding has loaded, so both share one engine,
and the block decoder capstone's from the library vmm/decode.py has loaded.
The firmware (boot trampoline and test kernels) is built with the system gcc/as/ld by
`make -C firmware` and shipped as package data.
"""

import os
import subprocess

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class BuildWithFirmware(build_py):
    def run(self):
        subprocess.check_call(["make", "-C", os.path.join(HERE, "firmware"), "-j2"])
        super().run()


extensions = [
    # The hook layer's concerns are module-level C functions (vmm/_ucvcpu_*.pxi): without the flag gcc
    # inlines each cold one with a single caller into it (decoding a new block, bulk retirement into the
    # block hook), and the larger frame costs every block.
    Extension("vmm._ucvcpu", ["vmm/_ucvcpu.pyx"], extra_compile_args=["-O2", "-fno-inline-functions-called-once"]),
    Extension("pmu._core", ["pmu/_core.pyx"], extra_compile_args=["-O2"]),
    Extension("vmm._uarch", ["vmm/_uarch.pyx"], extra_compile_args=["-O2"]),
    Extension("devices.lapic", ["devices/lapic.pyx"], extra_compile_args=["-O2"]),
    Extension("devices._uart", ["devices/_uart.pyx"], extra_compile_args=["-O2"]),
    Extension("vmm._trace", ["vmm/_trace.pyx"], extra_compile_args=["-O2"]),
    # The block decoder calls capstone through the addresses of the functions in the library
    # vmm/decode.py loads, as the hook layer does libunicorn's: it links nothing either.
    Extension("vmm._decode", ["vmm/_decode.pyx"], extra_compile_args=["-O2"]),
]

setup(
    ext_modules=cythonize(extensions, compiler_directives={"language_level": "3"}),
    cmdclass={"build_py": BuildWithFirmware},
)
