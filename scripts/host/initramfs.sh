#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Builds the guest's initramfs.
#
#   scripts/host/initramfs.sh OUT MODULE JOB [FILE...]
#
# OUT     the cpio archive to write
# MODULE  dm_remap.ko, installed as /lib/dm-remap/dm_remap.ko
# JOB     the script /init runs once the system is up (its exit status is the
#         guest's); FILEs are copied to /run/files/
#
# DMR_TOOL, if set, is the dm-remap-tool binary to include; DMR_REPLAY, if
# set, the dmr-log-replay binary. DMR_KMODS, if set, is a directory of kernel
# modules and their `load-order` (a kernel that has device mapper, loop and
# the rest as modules: Debian's), which /init loads first.
#
# The image holds a static dash as /bin/sh, static busybox for the other
# commands, the user-space tools the tests drive (static dmsetup, fio, GNU dd,
# grep, cmp, util-linux losetup, lvm and mdadm, built by scripts/*-static.sh; bash,
# mke2fs/e2fsck/filefrag with the shared libraries ldd reports for them),
# scripts/guest/guest-init.sh as /init, and tests/.
set -euo pipefail
. "$(dirname "$0")/common.sh"

[ $# -ge 3 ] || die "usage: $0 OUT MODULE JOB [FILE...]"
out=$1 module=$2 job=$3
shift 3

stage=$(mktemp -d "${TMPDIR:-/tmp}/dmr-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,etc,proc,sys,dev,tmp,run/files,lib/dm-remap,tests}
cp /bin/busybox "$stage/bin/busybox"
for applet in $(/bin/busybox --list); do
	# A link named busybox would point at itself (ELOOP at boot).
	[ "$applet" = busybox ] || ln -sf busybox "$stage/bin/$applet"
done

# Copies a dynamically linked program and the libraries it needs.
add_prog() {
	local prog=$1 dest=$2 lib
	cp -L "$prog" "$stage$dest"
	for lib in $(ldd "$prog" | grep -o '/[^ ]*'); do
		[ -e "$stage$lib" ] && continue
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
}
# dash is the shell: busybox's sh would run its own applets in preference to
# the real tools in PATH (losetup, mke2fs), surprising scripts. Static: a fork
# costs in proportion to the parent's mappings (scripts/host/dash-static.sh).
rm "$stage/bin/sh"
cp "$(bash "$DMR_ROOT/scripts/host/dash-static.sh")" "$stage/bin/sh"
# Static: a process start is dear under the debug kernel on TCG, and the tests
# run dmsetup thousands of times (scripts/host/lvm2-static.sh has the figures).
dmsetup=$(bash "$DMR_ROOT/scripts/host/lvm2-static.sh" dmsetup)
cp "$dmsetup" "$stage/usr/sbin/dmsetup"
# Static GNU dd, grep, cmp and util-linux losetup, started thousands of times
# (scripts/host/gnu-static.sh). GNU dd: busybox dd silently ignores a failing
# O_DIRECT. GNU cmp: busybox cmp reads byte by byte (getc), which takes 10 s
# and more for the 64 MiB the tests compare in the guest.
for p in dd:/usr/bin/dd grep:/usr/bin/grep cmp:/usr/bin/cmp losetup:/usr/sbin/losetup; do
	cp "$(bash "$DMR_ROOT/scripts/host/gnu-static.sh" "${p%%:*}")" "$stage${p#*:}"
done
# bash, GNU grep -P and a pass-through sudo: users' monitoring scripts
# ("sudo dmesg") run unchanged; the guest runs everything as root.
add_prog /bin/bash /bin/bash
printf '#!/bin/sh\nexec "$@"\n' >"$stage/usr/bin/sudo"
chmod +x "$stage/usr/bin/sudo"
# A static fio: Debian's maps 64 shared libraries (scripts/host/fio-static.sh).
fio=$(bash "$DMR_ROOT/scripts/host/fio-static.sh")
cp "$fio" "$stage/usr/bin/fio"
# Static LVM and mdadm, for the tests that stack them on a remap device
# (scripts/host/lvm2-static.sh, mdadm-static.sh). lvm runs as any of its
# commands by the name it is started under, as Debian links them.
cp "$(bash "$DMR_ROOT/scripts/host/lvm2-static.sh" lvm)" "$stage/usr/sbin/lvm"
for c in pvcreate pvremove pvs pvscan vgcreate vgchange vgremove vgs lvcreate lvchange lvremove lvs lvmdevices; do
	ln -s lvm "$stage/usr/sbin/$c"
done
cp "$(bash "$DMR_ROOT/scripts/host/mdadm-static.sh")" "$stage/usr/sbin/mdadm"
add_prog /sbin/mke2fs /usr/sbin/mke2fs
ln -s mke2fs "$stage/usr/sbin/mkfs.ext4"
add_prog /sbin/e2fsck /usr/sbin/e2fsck
# filefrag: where a file's blocks are, to plant faults under file data.
add_prog /usr/sbin/filefrag /usr/sbin/filefrag
# debugfs: which file a lost block belongs to (icheck, ncheck).
add_prog /sbin/debugfs /usr/sbin/debugfs
# The host tool (dm-remap-tool check/dump), when the caller built it.
[ -z "${DMR_TOOL:-}" ] || add_prog "$DMR_TOOL" /usr/bin/dm-remap-tool
# The log replayer (crash points from a dm-log-writes log).
[ -z "${DMR_REPLAY:-}" ] || add_prog "$DMR_REPLAY" /usr/bin/dmr-log-replay
cp /etc/mke2fs.conf "$stage/etc/" 2>/dev/null || true

cp "$module" "$stage/lib/dm-remap/dm_remap.ko"
[ -z "${DMR_KMODS:-}" ] || cp -r "$DMR_KMODS" "$stage/lib/kmods"
cp "$DMR_ROOT/scripts/guest/guest-init.sh" "$stage/init"
cp "$DMR_ROOT/scripts/guest/guest-env.sh" "$stage/etc/dmr-env.sh"
cp "$job" "$stage/run/job.sh"
cp -r "$DMR_ROOT"/tests/. "$stage/tests/"
for f in "$@"; do cp "$f" "$stage/run/files/"; done
chmod +x "$stage/init" "$stage/run/job.sh" "$stage"/tests/*.sh

(cd "$stage" && find . -print0 | cpio --null -o -H newc --quiet) | gzip -1 >"$out.tmp"
mv "$out.tmp" "$out"
