# SPDX-License-Identifier: GPL-2.0
# Sourced by /init before every guest job and interactive shell.
# The real util-linux and e2fsprogs tools come first in PATH, before the
# busybox applets of the same names.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/tmp
# No udev in the guest: dmsetup creates the /dev/mapper nodes itself.
export DM_DISABLE_UDEV=1
