# SPDX-License-Identifier: GPL-2.0
# Sourced by /init before every guest job and interactive shell.
#
# busybox's shell runs its own applets in preference to programs in PATH; the
# tests need the real util-linux and e2fsprogs tools where busybox has a
# smaller applet of the same name, so these functions pin them.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp
# No udev in the guest: dmsetup creates the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
losetup() { /usr/sbin/losetup "$@"; }
mke2fs() { /usr/sbin/mke2fs "$@"; }
