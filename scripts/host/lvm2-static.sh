#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked dmsetup or lvm for the guest image (once each;
# cached) and prints its path.
#
#   scripts/host/lvm2-static.sh dmsetup|lvm
#
# Why static: under the debug kernel on TCG a process start costs in
# proportion to the pages it touches, and Debian's dmsetup maps six shared
# libraries (libdevmapper, libselinux, libudev, libpcre2, libm, libc).
# Measured in the guest, 50 calls: `dmsetup version` 19.8 s dynamic, 6.2 s
# static; `dmsetup status` 17.6 s and 5.7 s. The tests call dmsetup
# thousands of times, and lvm (tests/60-lvm-pv.sh) dozens. The build is the
# lvm2 release Debian 12 ships (2.03.16, libdevmapper 1.02.185), from
# Debian's copy of the upstream tarball, checked against a pinned SHA-256
# (the one Debian's lvm2_2.03.16-2.dsc gives); without SELinux, udev
# synchronisation, lvmlockd and dmeventd, which the guest has none of.
set -euo pipefail
. "$(dirname "$0")/common.sh"

PROG=${1:-}
case $PROG in
dmsetup | lvm) ;;
*) die "usage: $0 dmsetup|lvm" ;;
esac
VERSION=2.03.16
build_lvm2() {
	./configure --enable-static_link --disable-selinux --disable-readline \
		--disable-systemd-journal --disable-blkid_wiping \
		--disable-udev-systemd-background-jobs --disable-notify-dbus \
		--disable-app-machineid --disable-use-lvmlockd --disable-use-lvmpolld \
		--disable-dmeventd --with-thin=none --with-cache=none --with-vdo=none \
		--with-writecache=none --with-integrity=none >"$1/configure.log" 2>&1 ||
		{ tail -20 "$1/configure.log" >&2; return 1; }
	case $PROG in
	dmsetup)
		{ make -j"$JOBS" device-mapper && make -C libdm/dm-tools dmsetup.static; } \
			>"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
		cp libdm/dm-tools/dmsetup.static "$1/result"
		;;
	lvm)
		{ make -j"$JOBS" device-mapper && make -j"$JOBS" tools && make -C tools lvm.static; } \
			>"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
		# (lvm takes the name it is started under as its command.)
		tools/lvm.static version >/dev/null 2>&1 || { echo "the static lvm does not run" >&2; return 1; }
		cp tools/lvm.static "$1/result"
		;;
	esac
}
build_pinned "$PROG" $VERSION \
	http://deb.debian.org/debian/pool/main/l/lvm2/lvm2_$VERSION.orig.tar.xz \
	9eee14d34f7962ade7d4624114ce7b6bd3d868d210afb72b3769f8c6a082646e \
	LVM2.$VERSION build_lvm2
