# SPDX-License-Identifier: GPL-2.0-or-later
"""The Linux guest: a stock Debian kernel and a busybox initramfs with our /init and test programs.

Nothing here is committed except sources: ``python -m firmware.linux.assets fetch`` downloads the
Debian packages with apt, extracts them into a cache directory and builds the initramfs there
(:mod:`firmware.linux.assets`).  :mod:`firmware.linux.initramfs` writes the cpio archive and
defines how the kernel command line tells /init what to run; :mod:`firmware.linux.programs` builds
the static test programs and states the workload's exact instruction and branch counts.
"""
