#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# /init of pmu-vmm's Linux initramfs: mount the pseudo file systems, run the command that
# pmu_vmm.run= on the kernel command line gives (see /bin/pmu-vmm-command), report its exit
# status and power the machine off (ACPI S5 through the kernel).  Lines starting "pmu-vmm: " are
# markers the host looks for (firmware/linux/initramfs.py); nothing here reads the clock.

export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "pmu-vmm: init started"
command=$(pmu-vmm-command /proc/cmdline)
case $? in
0)
	echo "pmu-vmm: running $command"
	sh -c "$command"
	echo "pmu-vmm: exit status $?"
	;;
1)
	echo "pmu-vmm: no command: pmu_vmm.run= is missing or empty"
	;;
*)
	echo "pmu-vmm: bad pmu_vmm.run= parameter"
	;;
esac
poweroff -f
# Only reached if the kernel could not power off: init exiting makes it panic, which says so.
echo "pmu-vmm: poweroff failed"
exit 1
