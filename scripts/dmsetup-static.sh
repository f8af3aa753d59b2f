#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked dmsetup for the guest image (once; cached) and
# prints its path.
#
#   scripts/dmsetup-static.sh
#
# Why: under the debug kernel on TCG a process start costs in proportion to the
# pages it touches, and Debian's dmsetup maps six shared libraries (libdevmapper,
# libselinux, libudev, libpcre2, libm, libc). Measured in the guest, 50 calls:
# `dmsetup version` 19.8 s dynamic, 6.2 s static; `dmsetup status` 17.6 s and
# 5.7 s. The tests call dmsetup thousands of times. The build is the same
# libdevmapper release Debian 12 ships (1.02.185, from lvm2 2.03.16), from
# Debian's copy of the upstream tarball, checked against a pinned SHA-256;
# without SELinux and udev synchronisation, which the guest has neither of.
set -euo pipefail
. "$(dirname "$0")/common.sh"

VERSION=2.03.16
TARBALL=lvm2_$VERSION.orig.tar.xz
URL=http://deb.debian.org/debian/pool/main/l/lvm2/$TARBALL
SHA256=9eee14d34f7962ade7d4624114ce7b6bd3d868d210afb72b3769f8c6a082646e
CONFIGURE=(--enable-static_link --disable-selinux --disable-readline
	--disable-systemd-journal --disable-blkid_wiping
	--disable-udev-systemd-background-jobs --disable-notify-dbus
	--disable-app-machineid)

key=$( (echo "$VERSION ${CONFIGURE[*]}"; gcc -dumpfullversion; getconf GNU_LIBC_VERSION) |
	sha256sum | cut -c1-16)
out=$DMR_CACHE/tools/dmsetup-$VERSION-$key
if [ ! -x "$out" ]; then
	mkdir -p "$DMR_CACHE/tools"
	work=$(mktemp -d "$DMR_CACHE/tools/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	log "building a static dmsetup (lvm2 $VERSION, under a minute)"
	curl -fsSL -o "$work/$TARBALL" "$URL" || die "cannot download $URL"
	echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet - ||
		die "$TARBALL does not match its pinned SHA-256"
	tar -C "$work" -xf "$work/$TARBALL"
	src=$work/LVM2.$VERSION
	(cd "$src" && ./configure "${CONFIGURE[@]}" >"$work/configure.log" 2>&1) ||
		{ tail -20 "$work/configure.log" >&2; die "lvm2 configure failed"; }
	(cd "$src" && make -j"$JOBS" device-mapper >"$work/make.log" 2>&1 &&
		make -C libdm/dm-tools dmsetup.static >>"$work/make.log" 2>&1) ||
		{ tail -20 "$work/make.log" >&2; die "building dmsetup.static failed"; }
	strip -o "$out.tmp" "$src/libdm/dm-tools/dmsetup.static"
	mv "$out.tmp" "$out"
fi
echo "$out"
