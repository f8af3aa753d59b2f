#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Benchmark (not a test): what the background scanner costs foreground I/O,
# and whether it keeps to its rate, in one guest run on the perf kernel with
# instruction-counted time:
#
#   cargo xtask guest --kernel perf --icount --script scripts/guest/bench-scan.sh
#
# Main is /dev/nullb0 (no memory backing), 1 GiB; fio does 4 KiB random reads
# (io_uring, queue depth 32, 2 jobs) for 5 s of guest time per round, on
# dm-linear, on dm-remap, and on dm-remap while the scanner runs at its
# default 4 MiB/s; 2 rounds. The scanner's rate is the sectors it advanced
# over the round's guest time.
set -e
truncate -s 16M /tmp/spare
S=$(losetup --show -f /tmp/spare)
LEN=2097152
insmod /lib/dm-remap/dm_remap.ko

iops() { # DEV
	fio --name=b --filename=$1 --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=32 --numjobs=2 --group_reporting --time_based --runtime=5 \
		--size=1G --minimal | awk -F';' '{ print $8 }'
}
pos() {
	dmsetup message r 0 scan status | cut -d' ' -f4
}
now() {
	cut -d' ' -f1 /proc/uptime
}

dmsetup create l --table "0 $LEN linear /dev/nullb0 0"
dmsetup create r --table "0 $LEN remap /dev/nullb0 $S 3 block_size 4096 format"
for round in 1 2; do
	echo "linear $(iops /dev/mapper/l)"
	echo "remap $(iops /dev/mapper/r)"
	dmsetup message r 0 scan start
	p0=$(pos) t0=$(now)
	echo "scanning $(iops /dev/mapper/r)"
	p1=$(pos) t1=$(now)
	dmsetup message r 0 scan stop
	echo "rate $(awk -v a=$p0 -v b=$p1 -v s=$t0 -v e=$t1 'BEGIN { printf "%.3f", (b - a) * 512 / 1048576 / (e - s) }')"
done | tee /tmp/results
# Without foreground I/O the scanner runs at its full rate.
dmsetup message r 0 scan start
p0=$(pos) t0=$(now)
sleep 5
p1=$(pos) t1=$(now)
dmsetup message r 0 scan stop
echo "idle-rate $(awk -v a=$p0 -v b=$p1 -v s=$t0 -v e=$t1 'BEGIN { printf "%.3f", (b - a) * 512 / 1048576 / (e - s) }')" | tee -a /tmp/results
dmsetup remove r
dmsetup remove l
rmmod dm_remap
awk '{ sum[$1] += $2; n[$1]++ }
	END {
		l = sum["linear"] / n["linear"]; r = sum["remap"] / n["remap"]
		s = sum["scanning"] / n["scanning"]
		printf "mean IOPS: linear %.0f, remap %.0f, remap while scanning %.0f\n", l, r, s
		printf "remap / linear: %.3f; scanning / remap: %.3f; scanning / linear: %.3f\n", r / l, s / r, s / l
		printf "scan rate (limit 4 MiB/s): %.2f MiB/s under fio, %.2f MiB/s idle\n", sum["rate"] / n["rate"], sum["idle-rate"]
	}' /tmp/results
