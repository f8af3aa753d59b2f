#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked dmsetup for the guest image (once; cached) and
# prints its path.
#
#   scripts/host/dmsetup-static.sh
#
# Why: under the debug kernel on TCG a process start costs in proportion to the
# pages it touches, and Debian's dmsetup maps six shared libraries (libdevmapper,
# libselinux, libudev, libpcre2, libm, libc). Measured in the guest, 50 calls:
# `dmsetup version` 19.8 s dynamic, 6.2 s static; `dmsetup status` 17.6 s and
# 5.7 s. The tests call dmsetup thousands of times. The build is the same
# libdevmapper release Debian 12 ships (1.02.185, from lvm2 2.03.16), from
# Debian's copy of the upstream tarball, checked against a pinned SHA-256;

set -euo pipefail
. "$(dirname "$0")/common.sh"

VERSION=2.03.16
build_dmsetup() {
	# Without SELinux and udev synchronisation, which the guest has neither of.
	./configure --enable-static_link --disable-selinux --disable-readline \
		--disable-systemd-journal --disable-blkid_wiping \
		--disable-udev-systemd-background-jobs --disable-notify-dbus \
		--disable-app-machineid >"$1/configure.log" 2>&1 ||
		{ tail -20 "$1/configure.log" >&2; return 1; }
	{ make -j"$JOBS" device-mapper && make -C libdm/dm-tools dmsetup.static; } >"$1/make.log" 2>&1 ||
		{ tail -20 "$1/make.log" >&2; return 1; }
	cp libdm/dm-tools/dmsetup.static "$1/result"
}
build_pinned dmsetup $VERSION \
	http://deb.debian.org/debian/pool/main/l/lvm2/lvm2_$VERSION.orig.tar.xz \
	9eee14d34f7962ade7d4624114ce7b6bd3d868d210afb72b3769f8c6a082646e \
	LVM2.$VERSION build_dmsetup
