#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# pmu-vmm-command [FILE]: print the command the kernel command line in FILE (default /proc/cmdline)
# asks /init to run.
#
# The convention (firmware/linux/initramfs.py writes such parameters): pmu_vmm.run=VALUE, where
# VALUE is either a double-quoted string without a double quote inside (the kernel keeps the
# spaces of a quoted value in one parameter) or a bare word ending at the next space.  The first
# pmu_vmm.run= parameter counts.  Its dotted name makes the kernel take it for a module parameter,
# so it reaches neither /init's arguments nor its environment: /proc/cmdline is where it is.
#
# Exit status: 0 with the command on stdout; 1 when there is no pmu_vmm.run= parameter or its
# value is empty; 2, with a message on stderr, when a quoted value has no closing quote.

cmdline=$(cat "${1:-/proc/cmdline}") || exit 2
padded=" $cmdline"
case $padded in
*" pmu_vmm.run="*) value=${padded#*" pmu_vmm.run="} ;;
*) exit 1 ;;
esac
case $value in
\"*\"*)
	value=${value#\"}
	value=${value%%\"*}
	;;
\"*)
	echo "pmu-vmm-command: the value of pmu_vmm.run= has no closing double quote" >&2
	exit 2
	;;
*)
	value=${value%%[[:space:]]*}
	;;
esac
[ -n "$value" ] || exit 1
printf '%s\n' "$value"
