#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job of `cargo xtask bench` (a benchmark, not a test): the I/O path's
# cost against dm-linear, in one guest run on the perf kernel with
# instruction-counted time (-icount shift=0,sleep=off), so that figures repeat
# from run to run.
#
# Main and spare are null_blk devices without memory backing (nothing below
# the mapping costs time): main 1 GiB, spare 16 MiB. dm-linear and dm-remap
# (block_size 4096) sit on the same main. fio does 4 KiB random reads and
# random writes (io_uring, queue depth 32, 2 jobs, RUNTIME seconds of
# guest time per run) on each device, linear and remap alternating in
# ROUNDS rounds, first with 0 remaps, then with as many scattered
# remaps as the spare holds (one 4 KiB block each, spread evenly over main).
#
# Output (stable; later versions add rows, never change these): a header
# line "dm-remap bench 1", a line of settings, then one row per workload and
# device:
#
#   <workload> <device> <IOPS> <ratio> <to_spare>
#
# IOPS is the mean over the rounds; ratio is IOPS over dm-linear's mean in the
# same phase (rounds run next to each other); to_spare is the share of
# requests dm-remap sent to the spare (from its statistics; "-" for linear).
#
# Then bulk imports and the memory they take, on a main of 16 GiB and a
# spare of 5 GiB (null_blk, no memory backing; block_size 4096, so the pool
# holds the format's 1,048,576 blocks), of scattered blocks (block
# i * 2654435761 mod 2^22 for i = 0, 1, ...: all distinct):
#
#   import <blocks> <ms>          dm-remap-tool import --format sectors of
#                                 100,000 blocks, then of 900,000 more (the
#                                 row says 1000000), durable when it returns
#   import-carry <blocks> <ms>    10,000 more with --carry (suspend, copy,
#                                 commit, resume per 4096 blocks)
#   memory <remaps> <bytes>       growth of Slab + VmallocUsed from before the
#                                 device was created to after the import, per
#                                 remap (all the target allocates)
#
# Times are guest milliseconds from /proc/uptime (10 ms resolution).
set -e
# /run/files/bench.conf may set ROUNDS and RUNTIME (cargo xtask bench
# --rounds, --runtime).
ROUNDS=2
RUNTIME=5
[ -f /run/files/bench.conf ] && . /run/files/bench.conf

NB=/sys/kernel/config/nullb
nullb() { # NAME SIZE_MB
	mkdir $NB/$1
	echo "$2" >$NB/$1/size
	echo 512 >$NB/$1/blocksize
	echo 0 >$NB/$1/memory_backed
	echo 1 >$NB/$1/power
	[ -b /dev/$1 ] || { echo "no /dev/$1" >&2; exit 1; }
}
nullb nullb1 1024
nullb nullb2 16
M=/dev/nullb1 S=/dev/nullb2
LEN=2097152
insmod /lib/dm-remap/dm_remap.ko
dmsetup create l --table "0 $LEN linear $M 0"
dmsetup create r --table "0 $LEN remap $M $S 3 block_size 4096 format"
STAT=/sys/module/dm_remap/stat/dm-$(dmsetup info -c --noheadings -o minor r | tr -d " ")

# run WORKLOAD DEVICE LABEL: one fio run; appends "WORKLOAD LABEL IOPS SHARE".
run() {
	[ "$2" = r ] && echo 1 >$STAT/reset
	fio --name=b --filename=/dev/mapper/$2 --rw=$1 --bs=4k --direct=1 \
		--ioengine=io_uring --iodepth=32 --numjobs=2 --group_reporting \
		--time_based --runtime=$RUNTIME --size=1G --norandommap --minimal >/tmp/fio.out
	# Terse format 3: field 8 is read IOPS, field 49 write IOPS.
	iops=$(awk -F';' -v w=$1 '{ print (w == "randread" ? $8 : $49) }' /tmp/fio.out)
	share=-
	if [ "$2" = r ]; then
		share=$(awk -v a=$(cat $STAT/remapped_reads) -v b=$(cat $STAT/remapped_writes) \
			-v t=$(cat $STAT/total_cnt) 'BEGIN { printf "%.4f", t ? (a + b) / t : 0 }')
	fi
	echo "$1 $3 $iops $share" >>/tmp/results
}

# phase LABEL: the rounds, linear and remap alternating.
phase() {
	i=1
	while [ $i -le "$ROUNDS" ]; do
		for w in randread randwrite; do
			if [ $((i % 2)) = 1 ]; then
				run $w l linear-$1
				run $w r $1
			else
				run $w r $1
				run $w l linear-$1
			fi
		done
		i=$((i + 1))
	done
}

: >/tmp/results
phase remap-0

# As many remaps as the spare holds, scattered over main: status field 7 is
# <remaps>/<capacity>.
cap=$(dmsetup status r | awk '{ split($7, a, "/"); print a[2] }')
blocks=$((LEN / 8))
i=0
while [ $i -lt "$cap" ]; do
	dmsetup message r 0 add_remap $((i * blocks / cap * 8)) auto 8 >/dev/null
	i=$((i + 1))
done
n=$(dmsetup message r 0 count)
[ "$n" = $((cap * 8)) ] || [ "$n" = "$cap" ] || { echo "count $n after adding $cap remaps" >&2; exit 1; }
phase remap-$cap

echo "dm-remap bench 1"
echo "settings: fio 4k io_uring qd32 jobs2 runtime ${RUNTIME}s rounds $ROUNDS; null_blk main 1024MiB spare 16MiB no memory backing; block_size 4096; remaps 0 and $cap"
awk '
	{ k = $1 " " $2; sum[k] += $3; n[k]++; share[k] += ($4 == "-" ? 0 : $4); label[$2] = 1 }
	END {
		printf "%-10s %-12s %10s %7s %9s\n", "workload", "device", "IOPS", "ratio", "to_spare"
		split("randread randwrite", ws, " ")
		for (wi = 1; wi <= 2; wi++) {
			w = ws[wi]
			lin = 0; ln = 0
			for (l in label) if (l ~ /^linear-/) { lin += sum[w " " l]; ln += n[w " " l] }
			printf "%-10s %-12s %10.0f %7.3f %9s\n", w, "linear", lin / ln, 1, "-"
			# remap-0 first, then remap-<N>.
			for (p = 0; p < 2; p++) for (l in label) {
				if (l ~ /^linear-/) continue
				if ((p == 0) != (l == "remap-0")) continue
				k = w " " l; base = sum[w " linear-" l] / n[w " linear-" l]
				printf "%-10s %-12s %10.0f %7.3f %9.4f\n", w, l, sum[k] / n[k], sum[k] / n[k] / base, share[k] / n[k]
			}
		}
	}' /tmp/results

dmsetup remove r
dmsetup remove l

nullb nullb3 16384
nullb nullb4 5120
BIG=$((16384 * 2048))
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
kb() { awk '/^Slab:/ { s = $2 } /^VmallocUsed:/ { v = $2 } END { print s + v }' /proc/meminfo; }
# list FROM TO: the sectors of scattered blocks FROM..TO-1.
list() {
	awk -v a=$1 -v b=$2 'BEGIN { for (i = a; i < b; i++) print (i * 2654435761) % 4194304 * 8 }'
}
list 0 100000 >/tmp/l100k
list 100000 1000000 >/tmp/l900k
list 1000000 1010000 >/tmp/l10k
sync
echo 3 >/proc/sys/vm/drop_caches
before=$(kb)
dmsetup create i --table "0 $BIG remap /dev/nullb3 /dev/nullb4 3 block_size 4096 format"
t0=$(ms)
dm-remap-tool import --format sectors i /tmp/l100k >/dev/null
t1=$(ms)
dm-remap-tool import --format sectors i /tmp/l900k >/dev/null
t2=$(ms)
n=$(dmsetup message i 0 count)
[ "$n" = 1000000 ] || { echo "count $n after importing 1000000 blocks" >&2; exit 1; }
echo 3 >/proc/sys/vm/drop_caches
after=$(kb)
t3=$(ms)
dm-remap-tool import --carry --format sectors i /tmp/l10k >/dev/null
t4=$(ms)
echo "import 100000 $((t1 - t0))"
echo "import 1000000 $((t2 - t0))"
echo "import-carry 10000 $((t4 - t3))"
echo "memory $n $(awk -v a=$after -v b=$before -v n=$n 'BEGIN { printf "%.1f", (a - b) * 1024 / n }')"
dmsetup remove i
rmmod dm_remap
