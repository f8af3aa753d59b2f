#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked fio for the guest image (once; cached) and prints
# its path.
#
#   scripts/host/fio-static.sh
#
# Why: Debian's fio links 64 shared libraries (Ceph, RBD, GlusterFS, ICU,
# GnuTLS, ...), 72 MiB that the guest image carried and that every fio start
# mapped and relocated: the kernel spent about 8 s of each guest's boot
# unpacking them, and a fio start took seconds under the debug kernel. The
# guest needs the psync and io_uring engines only. The build is the release
# Debian 12 ships (3.33), from Debian's copy of the upstream tarball, checked
# against a pinned SHA-256, without the engines that need other libraries.
set -euo pipefail
. "$(dirname "$0")/common.sh"

VERSION=3.33
build_fio() {
	./configure --build-static --disable-native --disable-numa --disable-rdma \
		--disable-rados --disable-rbd --disable-http --disable-gfapi \
		--disable-libnfs --disable-lex --disable-pmem --disable-xnvme \
		--disable-libzbc --disable-tcmalloc --disable-dfs >"$1/configure.log" 2>&1 ||
		{ tail -20 "$1/configure.log" >&2; return 1; }
	make -j"$JOBS" fio >"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
	./fio --enghelp | grep -qw io_uring || { echo "the static fio has no io_uring engine" >&2; return 1; }
	cp fio "$1/result"
}
build_pinned fio $VERSION \
	http://deb.debian.org/debian/pool/main/f/fio/fio_$VERSION.orig.tar.gz \
	d2410e13e0f379d061d077cc5ae325835bb7c6186aa7bafc1df954cbc9b014fc \
	fio-$VERSION build_fio
