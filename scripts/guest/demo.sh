#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job of `cargo xtask demo`: the main job of dm-remap on a small default
# setup, narrated. Exits non-zero if any step fails.
set -e

say() { printf '\n=== %s\n' "$*"; }
run() { echo "# $*"; "$@"; }

say "Load the module"
run insmod /lib/dm-remap/dm_remap.ko
run dmsetup targets

say "Make a 64 MiB main and a 64 MiB spare (loop devices over files)"
truncate -s 64M /tmp/main.img /tmp/spare.img
MAIN=$(losetup --show -f /tmp/main.img)
SPARE=$(losetup --show -f /tmp/spare.img)
echo "main=$MAIN spare=$SPARE"

say "Create the remap device"
SECTORS=$(blockdev --getsz "$MAIN")
run dmsetup create demo --table "0 $SECTORS remap $MAIN $SPARE"
run blockdev --getsize64 /dev/mapper/demo

say "Write 4 MiB of random data through it and read it back"
dd if=/dev/urandom of=/tmp/data bs=1M count=4 2>/dev/null
run dd if=/tmp/data of=/dev/mapper/demo bs=1M seek=8 oflag=direct
run dd if=/dev/mapper/demo of=/tmp/back bs=1M skip=8 count=4 iflag=direct
run cmp /tmp/data /tmp/back && echo "read back: identical"
dd if="$MAIN" bs=1M skip=8 count=4 2>/dev/null | cmp - /tmp/data && echo "main at the same offset: identical"

say "Table, status and messages"
run dmsetup table demo
run dmsetup status demo
run dmsetup message demo 0 help

say "Remap 4 KiB at sector 2048 (a failing spot of main) to the spare"
run dmsetup message demo 0 add_remap 2048 auto 8
run dmsetup message demo 0 query 2048
dd if=/dev/urandom of=/tmp/blk bs=4k count=1 2>/dev/null
run dd if=/tmp/blk of=/dev/mapper/demo bs=4k seek=256 oflag=direct
SPARE_SECTOR=$(dmsetup message demo 0 query 2048 | cut -d' ' -f2)
dd if="$SPARE" bs=512 skip="$SPARE_SECTOR" count=8 2>/dev/null | cmp - /tmp/blk &&
	echo "the write landed on the spare at sector $SPARE_SECTOR"
dd if="$MAIN" bs=4k skip=256 count=1 2>/dev/null | cmp -s - /tmp/blk ||
	echo "main at sector 2048 was not touched"

say "The remap is on the spare: remove the device and create it again"
run dmsetup remove demo
run dmsetup create demo --table "0 $SECTORS remap $MAIN $SPARE"
run dmsetup message demo 0 list
dd if=/dev/mapper/demo bs=4k skip=256 count=1 iflag=direct 2>/dev/null | cmp - /tmp/blk &&
	echo "read back through the new device: identical"
run dmsetup status demo

say "Statistics"
KN=dm-$(dmsetup info -c --noheadings -o minor demo | tr -d ' ')
run cat /sys/module/dm_remap/stat/$KN/summary
run dm-remap-tool stats --prometheus

say "Kernel log lines of the module"
dmesg | grep 'dm-remap' || true

say "Clean up"
run dmsetup remove demo
run dm-remap-tool check "$SPARE"
losetup -d "$MAIN" "$SPARE"
run rmmod dm_remap
echo "demo finished"
