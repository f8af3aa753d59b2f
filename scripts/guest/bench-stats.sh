#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): the cost of dm-remap's I/O counting, as fio IOPS
# over null_blk for dm-linear, dm-remap, and dm-remap built without counting,
# all in one guest run on the perf kernel with instruction-counted time:
#
#   cp "$(cargo xtask build --kernel perf --no-stats)" /tmp/dm_remap_nostats.ko
#   cargo xtask guest --kernel perf --icount --file /tmp/dm_remap_nostats.ko \
#       --script scripts/guest/bench-stats.sh
#
# 4 KiB random reads, io_uring, queue depth 32, 2 jobs, 5 s of guest time per
# round, 2 rounds; the main device is /dev/nullb0 (no memory backing: pure
# stack overhead), the spare a loop device.
set -e
NOSTATS=/run/files/dm_remap_nostats.ko
[ -f $NOSTATS ] || { echo "missing $NOSTATS (see the header)"; exit 2; }
truncate -s 16M /tmp/spare
S=$(losetup --show -f /tmp/spare)
LEN=2097152

iops() { # DEV
	fio --name=b --filename=$1 --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=32 --numjobs=2 --group_reporting --time_based --runtime=5 \
		--size=1G --minimal | awk -F';' '{ print $8 }'
}

run() { # MODULE LABEL
	insmod $1
	dd if=/dev/zero of=$S bs=1M count=2 conv=notrunc 2>/dev/null
	dmsetup create r --table "0 $LEN remap /dev/nullb0 $S"
	echo "$2 $(iops /dev/mapper/r)"
	dmsetup remove r
	rmmod dm_remap
}

dmsetup create l --table "0 $LEN linear /dev/nullb0 0"
for round in 1 2; do
	echo "linear $(iops /dev/mapper/l)"
	run /lib/dm-remap/dm_remap.ko remap
	run $NOSTATS remap-nostats
done | tee /tmp/results
dmsetup remove l
awk '{ sum[$1] += $2; n[$1]++ }
	END {
		l = sum["linear"] / n["linear"]; r = sum["remap"] / n["remap"]
		x = sum["remap-nostats"] / n["remap-nostats"]
		printf "mean IOPS: linear %.0f, remap %.0f, remap without counting %.0f\n", l, r, x
		printf "remap / linear: %.3f; without counting / linear: %.3f\n", r / l, x / l
		printf "counting overhead: remap / remap without counting = %.3f\n", r / x
	}' /tmp/results
