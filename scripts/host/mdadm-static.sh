#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds a statically linked mdadm for the guest image (once; cached) and
# prints its path.
#
#   scripts/host/mdadm-static.sh
#
# The guest makes md RAID1 arrays with a remap device as one leg
# (tests/61-md-raid1.sh) with the mdadm release Debian 12 ships (4.2, from
# Debian's copy of the upstream tarball, checked against the SHA-256 Debian's
# mdadm_4.2-5.dsc gives). Static for the reason dmsetup is
# (scripts/host/lvm2-static.sh); without libudev, which the guest lacks
# (mdadm then makes the /dev/md nodes itself).
set -euo pipefail
. "$(dirname "$0")/common.sh"

VERSION=4.2
build_mdadm() {
	make -j"$JOBS" mdadm.static CWFLAGS=-Wall CXFLAGS="-O2 -DNO_LIBUDEV" \
		>"$1/make.log" 2>&1 || { tail -20 "$1/make.log" >&2; return 1; }
	./mdadm.static --version 2>&1 | grep -q "v$VERSION" ||
		{ echo "the static mdadm does not run" >&2; return 1; }
	cp mdadm.static "$1/result"
}
build_pinned mdadm $VERSION \
	http://deb.debian.org/debian/pool/main/m/mdadm/mdadm_$VERSION.orig.tar.gz \
	c83447797cccc772d1c389b1917a2bfda59bd7545480bdccd792b57b310b428e \
	mdadm-$VERSION build_mdadm
