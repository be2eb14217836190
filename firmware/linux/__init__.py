# SPDX-License-Identifier: GPL-2.0-or-later
"""The Linux guest: a stock Debian kernel and a busybox initramfs with our /init and test programs.

Nothing here is committed except sources: ``python -m firmware.linux.assets fetch`` downloads the
Debian packages with apt, extracts them into a cache directory and builds the initramfs there
(:mod:`firmware.linux.assets`), together with Debian's perf and the shared libraries it needs
(:mod:`firmware.linux.libraries` finds them) for a second, perf-carrying initramfs.
:mod:`firmware.linux.initramfs` writes the cpio archives and defines how the kernel command line
tells /init what to run; :mod:`firmware.linux.programs` builds the static test programs and states
the workload's exact instruction and branch counts; :mod:`firmware.linux.perf_output` runs several
perf commands in one boot and reads their output back.
"""
