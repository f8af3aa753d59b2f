#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# /init of the dm-remap test guest: mounts the pseudo file systems, runs
# /run/job.sh, prints its exit status on a marker line the host looks for, and
# powers off (QEMU runs with -no-reboot, so the reboot ends it).

/bin/busybox mkdir -p /proc /sys /dev /tmp
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sysfs /sys
/bin/busybox mount -t devtmpfs devtmpfs /dev 2>/dev/null
/bin/busybox mount -t tmpfs tmpfs /tmp
# A kernel with device mapper, loop and the rest as modules (Debian's): load
# them, in dependency order, before anything needs them. They are the
# distribution's signed modules: the kernel checks each signature against
# its built-in key, and they load without tainting it.
if [ -f /lib/kmods/load-order ]; then
	while read -r m; do
		/bin/busybox insmod "/lib/kmods/$m" || echo "guest-init: insmod $m failed"
	done </lib/kmods/load-order
fi
# busybox modinfo reads modules.dep before it looks at a module file.
/bin/busybox mkdir -p "/lib/modules/$(/bin/busybox uname -r)"
/bin/busybox touch "/lib/modules/$(/bin/busybox uname -r)/modules.dep"
/bin/busybox mount -t debugfs debugfs /sys/kernel/debug
/bin/busybox mount -t configfs configfs /sys/kernel/config

. /etc/dmr-env.sh

cd /tmp
echo "DMR-BEGIN"
if grep -q 'dmr.shell' /proc/cmdline; then
	ENV=/etc/dmr-env.sh setsid cttyhack sh -i
	rc=$?
else
	sh -c '. /etc/dmr-env.sh; . /run/job.sh' </dev/null
	rc=$?
fi
echo "DMR-EXIT $rc"
sync
reboot -f
