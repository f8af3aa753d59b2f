#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked GNU dd, cmp or grep, or util-linux losetup, for
# the guest image (once each; cached) and prints its path.
#
#   scripts/host/gnu-static.sh dd|cmp|grep|losetup
#
# Why: the tests start these thousands of times, and under the debug kernel a
# dynamically linked program costs about 40 ms of guest time per start (the
# loader maps and relocates libc and the rest, every mapping with KASAN,
# kmemleak and lockdep bookkeeping) against 15.5 ms for a static one (counted
# in instructions, docs/testing.md). Each is the release Debian 12 ships, from
# Debian's copy of the upstream tarball, checked against a pinned SHA-256.
# GNU rather than busybox for what busybox lacks: dd reports a failing
# O_DIRECT, cmp compares blocks rather than bytes, grep has -P (users'
# monitoring scripts run unchanged in the guest).
set -euo pipefail
. "$(dirname "$0")/common.sh"

configure_static() { # LOG-DIR ARGS...
	local dir=$1
	shift
	./configure LDFLAGS=-static --disable-nls "$@" >"$dir/configure.log" 2>&1 ||
		{ tail -20 "$dir/configure.log" >&2; return 1; }
}
build_dd() {
	# FORCE_UNSAFE_CONFIGURE: the build may run as root.
	FORCE_UNSAFE_CONFIGURE=1 configure_static "$1" --without-openssl --without-selinux \
		--disable-libcap --disable-acl --disable-xattr --without-gmp || return 1
	# Only dd: the generated headers (BUILT_SOURCES), then dd and its library.
	local built
	built=$(printf 'dmr-built:\n\t@echo $(BUILT_SOURCES)\n' | make -s -f Makefile -f - dmr-built)
	# shellcheck disable=SC2086 # one word per file
	{ make -j"$JOBS" $built && make -j"$JOBS" src/dd; } >"$1/make.log" 2>&1 ||
		{ tail -20 "$1/make.log" >&2; return 1; }
	cp src/dd "$1/result"
}
build_cmp() {
	configure_static "$1" || return 1
	make -j"$JOBS" >"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
	cp src/cmp "$1/result"
}
build_grep() {
	configure_static "$1" --enable-perl-regexp || return 1
	grep -q '^#define HAVE_LIBPCRE 1' config.h || { echo "grep was configured without -P" >&2; return 1; }
	make -j"$JOBS" >"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
	cp src/grep "$1/result"
}
build_losetup() {
	./configure --disable-all-programs --enable-losetup --enable-libsmartcols \
		--enable-static-programs=losetup --without-python --without-systemd \
		--without-udev --disable-nls >"$1/configure.log" 2>&1 ||
		{ tail -20 "$1/configure.log" >&2; return 1; }
	make -j"$JOBS" losetup.static >"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
	cp losetup.static "$1/result"
}

case ${1:-} in
dd) build_pinned dd 9.1 \
	http://deb.debian.org/debian/pool/main/c/coreutils/coreutils_9.1.orig.tar.xz \
	61a1f410d78ba7e7f37a5a4f50e6d1320aca33375484a3255eddf17a38580423 \
	coreutils-9.1 build_dd ;;
cmp) build_pinned cmp 3.8 \
	http://deb.debian.org/debian/pool/main/d/diffutils/diffutils_3.8.orig.tar.xz \
	a6bdd7d1b31266d11c4f4de6c1b748d4607ab0231af5188fc2533d0ae2438fec \
	diffutils-3.8 build_cmp ;;
grep) build_pinned grep 3.8 \
	http://deb.debian.org/debian/pool/main/g/grep/grep_3.8.orig.tar.xz \
	498d7cc1b4fb081904d87343febb73475cf771e424fb7e6141aff66013abc382 \
	grep-3.8 build_grep ;;
losetup) build_pinned losetup 2.38.1 \
	http://deb.debian.org/debian/pool/main/u/util-linux/util-linux_2.38.1.orig.tar.xz \
	60492a19b44e6cf9a3ddff68325b333b8b52b6c59ce3ebd6a0ecaa4c5117e84f \
	util-linux-2.38.1 build_losetup ;;
*) die "usage: $0 dd|cmp|grep|losetup" ;;
esac
