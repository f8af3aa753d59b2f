#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked fio for the guest image (once; cached) and prints
# its path.
#
#   scripts/fio-static.sh
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
TARBALL=fio_$VERSION.orig.tar.gz
URL=http://deb.debian.org/debian/pool/main/f/fio/$TARBALL
SHA256=d2410e13e0f379d061d077cc5ae325835bb7c6186aa7bafc1df954cbc9b014fc
CONFIGURE=(--build-static --disable-native --disable-numa --disable-rdma
	--disable-rados --disable-rbd --disable-http --disable-gfapi
	--disable-libnfs --disable-lex --disable-pmem --disable-xnvme
	--disable-libzbc --disable-tcmalloc --disable-dfs)

key=$( (echo "$VERSION ${CONFIGURE[*]}"; gcc -dumpfullversion; getconf GNU_LIBC_VERSION) |
	sha256sum | cut -c1-16)
out=$DMR_CACHE/tools/fio-$VERSION-$key
if [ ! -x "$out" ]; then
	mkdir -p "$DMR_CACHE/tools"
	work=$(mktemp -d "$DMR_CACHE/tools/build.XXXXXX")
	trap 'rm -rf "$work"' EXIT
	log "building a static fio ($VERSION, about a minute)"
	curl -fsSL -o "$work/$TARBALL" "$URL" || die "cannot download $URL"
	echo "$SHA256  $work/$TARBALL" | sha256sum -c --quiet - ||
		die "$TARBALL does not match its pinned SHA-256"
	tar -C "$work" -xf "$work/$TARBALL"
	src=$work/fio-$VERSION
	(cd "$src" && ./configure "${CONFIGURE[@]}" >"$work/configure.log" 2>&1) ||
		{ tail -20 "$work/configure.log" >&2; die "fio configure failed"; }
	(cd "$src" && make -j"$JOBS" fio >"$work/make.log" 2>&1) ||
		{ tail -20 "$work/make.log" >&2; die "building fio failed"; }
	"$src/fio" --enghelp | grep -qw io_uring || die "the static fio has no io_uring engine"
	strip -o "$out.tmp" "$src/fio"
	mv "$out.tmp" "$out"
fi
echo "$out"
