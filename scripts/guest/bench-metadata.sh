#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test) of metadata commits, run in the guest:
#
#   cargo xtask guest --kernel perf --icount --script scripts/guest/bench-metadata.sh
#
# - the time of one add_remap (one block) with 1,000 and with 100,000 remaps
#   already present: a commit writes the changed entry sector and the header
#   of each copy, so the two should be close;
# - the time to make 100,000 remaps durable in one message (add_remap with
#   auto and nr_sectors), the fastest documented path.
# Guest time from /proc/uptime (10 ms resolution); under --icount it counts
# instructions, so figures repeat from run to run. Each timed add_remap
# includes starting dmsetup. Two metadata copies: with 512-byte blocks five
# copies describe only 49,837 spare blocks.
set -e
insmod /lib/dm-remap/dm_remap.ko
truncate -s 128M /tmp/main /tmp/spare
M=$(losetup --show -f /tmp/main)
S=$(losetup --show -f /tmp/spare)
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }

one_adds() { # FIRST_SECTOR: time 100 single-block add_remaps, print ms each
	t0=$(ms)
	i=0
	while [ $i -lt 100 ]; do
		dmsetup message b 0 add_remap $(($1 + i)) auto >/dev/null
		i=$((i + 1))
	done
	t1=$(ms)
	echo $(((t1 - t0) * 10 / 100))
}

dmsetup create b --table "0 262144 remap $M $S 2 copies 2"
dmsetup message b 0 add_remap 0 auto 1000 >/dev/null
at1k=$(one_adds 200000)
dmsetup message b 0 add_remap 1000 auto 99000 >/dev/null
at100k=$(one_adds 200100)
echo "one add_remap with 1k remaps present:   $((at1k / 10)).$((at1k % 10)) ms"
echo "one add_remap with 100k remaps present: $((at100k / 10)).$((at100k % 10)) ms"
echo "ratio 100k/1k: $(awk "BEGIN { printf \"%.2f\", $at100k / $at1k }")"
dmsetup remove b

dd if=/dev/zero of=$S bs=1M count=2 conv=notrunc 2>/dev/null
dmsetup create b --table "0 262144 remap $M $S 2 copies 2"
t0=$(ms)
dmsetup message b 0 add_remap 0 auto 100000 >/dev/null
t1=$(ms)
echo "100k remaps made durable in one message: $((t1 - t0)) ms"
dmsetup status b
dmsetup remove b
dm-remap-tool check $S
losetup -d $M $S
