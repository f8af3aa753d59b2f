#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job of `cargo xtask bench` (a benchmark, not a test): the I/O path's
# cost against dm-linear, the remap table at up to a million remaps, and the
# error path's cost, in one guest run on the perf kernel with
# instruction-counted time (-icount shift=0,sleep=off), so that figures
# repeat from run to run. Guest time is what every figure counts.
#
# 1. Data path. Main is a 16 GiB null_blk device, spare 5 GiB (no memory
#    backing: nothing below the mapping costs time); block_size 4096, so the
#    pool holds the format's 1,048,576 blocks. fio (io_uring, queue depth 32,
#    2 jobs each on its half of the region, RUNTIME guest seconds per run) runs
#    four workloads: randread and randwrite of 4 KiB, read and write of
#    128 KiB sequential. Devices: main itself (raw, at 0 remaps only),
#    dm-linear and dm-remap on it, taking turns in ROUNDS rounds (order
#    reversed every other round), in phases of 0, 10,000, 100,000 and
#    1,000,000 scattered remaps (block i * 2654435761 mod 2^22 for
#    i = 0, 1, ...: all distinct), each reached by importing more of the same
#    list. Region "all" is the whole device (mostly misses: at 1M remaps a
#    quarter of the blocks are remapped); region "hits" is a 32 MiB region at
#    8 GiB whose 8,192 blocks are all remapped (added with add_remaps after the
#    first 10,000), inside a table that also holds the scattered remaps; its
#    linear rows run fio on the same region of dm-linear.
# 2. Imports: dm-remap-tool import --format sectors of the list, durable when
#    it returns, timed per command; import N is the sum of the commands that
#    brought the list from 0 to N. Then 10,000 more with --carry.
# 3. Resizes and memory: a fresh device imports the list up to 1,000,000
#    remaps, Slab + VmallocUsed sampled every 50 ms meanwhile. The table
#    rebuilds a segment (or splits it) whenever one would pass 85 % full, so
#    from 900,000 to 1M remaps it resizes dozens of times: those 99,999
#    blocks are imported with fio randread 4 KiB at queue depth 1 on the
#    device around them (the guest has one CPU, the perf kernel no
#    preemption), and the last block alone, for comparison.
# 4. Error path on a 1 GiB main (null_blk with bad blocks) and a 16 MiB
#    spare behind dm-delay whose flushes take 10 ms (memory-backed null_blk
#    with a write cache, so flushes reach it): writes that hit a bad block
#    and get remapped automatically, add_remap commits, and fio randread
#    4 KiB at queue depth 1 on unremapped blocks beside each.
#
# Output: between the lines DMR-BENCH-BEGIN and DMR-BENCH-END (which cargo
# xtask bench turns into docs/benchmarks.md and docs/benchmarks.png), a
# header line "dm-remap bench 2", a settings line, a kernel line, then one
# row per workload, region and device:
#
#   <workload> <region> <device> <remaps> <IOPS> <ratio> <to_spare>
#
# remaps is the device's remap count in the phase ("-" for raw and linear);
# IOPS the mean over the rounds; ratio IOPS over dm-linear's mean in the same
# phase and region (raw: at 0 remaps; linear: 1); to_spare the share of
# requests dm-remap sent to the spare (from its statistics; "-" for raw and
# linear). Then:
#
#   import <blocks> <ms>          guest ms to import the first <blocks>
#                                 (10,000, 100,000, 1,000,000)
#   import-carry 10000 <ms>       10,000 more with --carry (suspend, copy,
#                                 commit, resume per 4096 blocks)
#   resize-wait <max_us> <p99_us> <resizes>
#                                 latency of fio randread 4 KiB qd1 around
#                                 the import of blocks 900,001 to 999,999,
#                                 and the resizes (logged resize lines) the
#                                 import made
#   add-wait <max_us> <p99_us> <resizes>
#                                 the same for the millionth block alone
#   memory <remaps> <bytes>       growth of Slab + VmallocUsed from before
#                                 the device was created to after the
#                                 import, per remap (all the target
#                                 allocates)
#   memory-peak <remaps> <bytes>  the highest growth sampled during the
#                                 import, per remap at its end
#   write-good <mean_us> <max_us> 16 O_DIRECT 4 KiB writes (qd1) to good
#                                 blocks: their latency
#   write-remap <mean_us> <max_us> the same for 32 writes to bad blocks, each
#                                 remapped by the error path (retry, spare
#                                 write, commit)
#   commit <ms>                   one add_remap (one block, one commit, with
#                                 the start of dmsetup), mean of 20
#   commit-wait <max_us> <p99_us> fio randread qd1 on unremapped blocks
#                                 during those 20 commits
#   remap-wait <max_us> <p99_us>  the same during 16 more remapping writes
#
# fio latencies are its total latency (lat: submission to completion) in
# guest microseconds, maximum and 99th percentile (--lat_percentiles=1).
# Times in ms are from /proc/uptime (10 ms resolution). Rows are stable from
# bench 2 on: later versions add rows, never change these. (Bench 1 had
# "<workload> <device> <IOPS> <ratio> <to_spare>" rows on a 1 GiB main.)
set -e
# /run/files/bench.conf may set ROUNDS and RUNTIME (cargo xtask bench
# --rounds, --runtime).
ROUNDS=2
RUNTIME=1
[ -f /run/files/bench.conf ] && . /run/files/bench.conf

NB=/sys/kernel/config/nullb
nullb() { # NAME SIZE_MB [CACHE_MB]: no memory backing unless CACHE_MB is given
	mkdir $NB/$1
	echo "$2" >$NB/$1/size
	echo 512 >$NB/$1/blocksize
	if [ -n "$3" ]; then
		echo 1 >$NB/$1/memory_backed
		echo "$3" >$NB/$1/cache_size
	else
		echo 0 >$NB/$1/memory_backed
	fi
	echo 1 >$NB/$1/power
	[ -b /dev/$1 ] || { echo "no /dev/$1" >&2; exit 1; }
}
ms() { awk '{ printf "%d", $1 * 1000 }' /proc/uptime; }
kb() { awk '/^Slab:/ { s = $2 } /^VmallocUsed:/ { v = $2 } END { print s + v }' /proc/meminfo; }
minor() { dmsetup info -c --noheadings -o minor $1 | tr -d " "; }
# lat FILE r|w: "<max_us> <p99_us> <mean_us>" of the latency (submission to
# completion: with io_uring null_blk completes most reads before the
# submission returns, so completion latency alone says nothing) in fio's
# terse output (format 3: read lat min, max, mean at fields 38-40 and, with
# --lat_percentiles=1, its percentiles at 18-37; write at 79-81 and 59-78).
lat() {
	awk -F';' -v d=$2 '/^3;/ {
		o = (d == "r" ? 0 : 41)
		p = "-"
		for (i = 18 + o; i <= 37 + o; i++) if ($i ~ /^99\.000000%=/) { sub(/.*=/, "", $i); p = $i }
		printf "%d %s %d\n", $(39 + o), p, $(40 + o)
	}' $1
}
# qd1 DEVICE OFFSET SIZE OUT: fio randread 4 KiB, queue depth 1, in the
# background until it gets SIGTERM (it then reports); sets qd1_pid.
qd1() {
	fio --name=q --filename=$1 --rw=randread --bs=4k --direct=1 --ioengine=io_uring \
		--iodepth=1 --offset=$2 --size=$3 --norandommap --time_based --runtime=3600 \
		--lat_percentiles=1 --minimal >$4 &
	qd1_pid=$!
	sleep 1
}
qd1_stop() {
	kill -TERM $qd1_pid
	wait $qd1_pid || true
}

insmod /lib/dm-remap/dm_remap.ko

# --- 1. Data path --------------------------------------------------------
nullb nullb1 16384
nullb nullb2 5120
M=/dev/nullb1 S=/dev/nullb2
LEN=$((16384 * 2048))
HIT_SECTOR=16777216 HIT_SECTORS=65536
dmsetup create l --table "0 $LEN linear $M 0"
dmsetup create r --table "0 $LEN remap $M $S 3 block_size 4096 format"
STAT=/sys/module/dm_remap/stat/dm-$(minor r)

# run WORKLOAD DEVICE REGION PHASE: one fio run; appends
# "PHASE WORKLOAD REGION DEVICE IOPS SHARE" to /tmp/results.
run() {
	case $1 in
	rand*) bs=4k ;;
	*) bs=128k ;;
	esac
	case $2 in
	raw) dev=$M ;;
	*) dev=/dev/mapper/$2 ;;
	esac
	if [ "$3" = hits ]; then
		off=$((HIT_SECTOR * 512)) half=$((HIT_SECTORS * 256))
	else
		off=0 half=$((LEN * 256))
	fi
	[ "$2" = r ] && echo 1 >$STAT/reset
	fio --name=b --filename=$dev --rw=$1 --bs=$bs --direct=1 \
		--ioengine=io_uring --iodepth=32 --numjobs=2 --group_reporting \
		--offset=$off --size=$half --offset_increment=$half \
		--time_based --runtime=$RUNTIME --norandommap --minimal >/tmp/fio.out
	# Terse format 3: field 8 is read IOPS, field 49 write IOPS.
	iops=$(awk -F';' -v w=$1 '{ print (w ~ /read/ ? $8 : $49) }' /tmp/fio.out)
	share=-
	if [ "$2" = r ]; then
		share=$(awk -v a=$(cat $STAT/remapped_reads) -v b=$(cat $STAT/remapped_writes) \
			-v t=$(cat $STAT/total_cnt) 'BEGIN { printf "%.4f", t ? (a + b) / t : 0 }')
	fi
	case $2 in
	l) d=linear ;;
	r) d=remap ;;
	*) d=raw ;;
	esac
	echo "$4 $1 $3 $d $iops $share" >>/tmp/results
}

# phase PHASE REGION...: the rounds, the devices taking turns.
phase() {
	p=$1
	shift
	order1="l r" order2="r l"
	[ "$p" = 0 ] && order1="raw l r" order2="r l raw"
	i=1
	while [ $i -le "$ROUNDS" ]; do
		devs=$order1
		[ $((i % 2)) = 1 ] || devs=$order2
		for w in randread randwrite read write; do
			for reg in "$@"; do
				for d in $devs; do run $w $d $reg $p; done
			done
		done
		i=$((i + 1))
	done
	echo "$p $(dmsetup message r 0 count)" >>/tmp/counts
	echo "bench: data path with $p scattered remaps done at $(ms) ms"
}

# list FROM TO: the sectors of scattered blocks FROM..TO-1.
list() {
	awk -v a=$1 -v b=$2 'BEGIN { for (i = a; i < b; i++) print (i * 2654435761) % 4194304 * 8 }'
}
# import FILE [--carry]: prints the guest ms it took.
import() {
	t0=$(ms)
	dm-remap-tool import $2 --format sectors r $1 >/dev/null
	t1=$(ms)
	echo $((t1 - t0))
}
list 0 10000 >/tmp/l10k
list 10000 100000 >/tmp/l90k
list 100000 1000000 >/tmp/l900k
list 1000000 1010000 >/tmp/lc10k

: >/tmp/results
: >/tmp/counts
phase 0 all
t10k=$(import /tmp/l10k)
dmsetup message r 0 add_remaps $HIT_SECTOR+$HIT_SECTORS >/dev/null
phase 10000 all hits
t90k=$(import /tmp/l90k)
phase 100000 all hits
t900k=$(import /tmp/l900k)
phase 1000000 all hits
tc=$(import /tmp/lc10k --carry)
dmsetup remove r
dmsetup remove l

# --- 3. Resizes and memory, on a fresh device -------------------------------
cat /tmp/l10k /tmp/l90k /tmp/l900k >/tmp/l1m
head -n 900000 /tmp/l1m >/tmp/l900000
sed -n '900001,999999p' /tmp/l1m >/tmp/llast
sed -n '1000000p' /tmp/l1m >/tmp/l1b
sync
echo 3 >/proc/sys/vm/drop_caches
before=$(kb)
dmsetup create r --table "0 $LEN remap $M $S 3 block_size 4096 format"
n=$(dmsetup message r 0 count)
[ "$n" = 0 ] || { echo "count $n on a formatted spare" >&2; exit 1; }
resizes() { dmsetup status r | awk '{ print $9 }'; }
(while [ ! -e /tmp/stop ]; do kb; sleep 0.05; done) >/tmp/kbs &
sampler=$!
dm-remap-tool import --format sectors r /tmp/l900000 >/dev/null
# The last 99,999 blocks to 1M, with fio beside: the table rebuilds and
# splits segments as they fill (the resizes it logs). Then the last block
# alone, for comparison.
rs0=$(resizes)
qd1 /dev/mapper/r 0 $((LEN * 512)) /tmp/resize.out
dm-remap-tool import --format sectors r /tmp/llast >/dev/null
sleep 1
qd1_stop
rs1=$(resizes)
qd1 /dev/mapper/r 0 $((LEN * 512)) /tmp/add.out
dm-remap-tool import --format sectors r /tmp/l1b >/dev/null
sleep 1
qd1_stop
rs2=$(resizes)
touch /tmp/stop
wait $sampler
n=$(dmsetup message r 0 count)
[ "$n" = 1000000 ] || { echo "count $n after importing 1000000 blocks" >&2; exit 1; }
echo "bench: imports on a fresh device done at $(ms) ms"
peak=$(awk 'BEGIN { m = 0 } $1 > m { m = $1 } END { print m }' /tmp/kbs)
echo 3 >/proc/sys/vm/drop_caches
after=$(kb)
dmsetup remove r

# --- 4. Error path ----------------------------------------------------------
nullb nullb3 1024
nullb nullb4 16 16
# Blocks 1024-1039 (sectors 8192-8319) and 1536-1551 fail on main.
echo "+8192-8319" >$NB/nullb3/badblocks
echo "+12288-12415" >$NB/nullb3/badblocks
dmsetup create slow --table "0 32768 delay /dev/nullb4 0 0 /dev/nullb4 0 0 /dev/nullb4 0 10"
dmsetup create e --table "0 2097152 remap /dev/nullb3 /dev/mapper/slow 3 block_size 4096 format"
E=/dev/mapper/e
# write16 SECTOR OUT: 16 O_DIRECT 4 KiB writes from SECTOR on, queue depth 1.
write16() {
	fio --name=w --filename=$E --rw=write --bs=4k --direct=1 --ioengine=psync \
		--offset=$(($1 * 512)) --size=64k --minimal >>$2
}
write16 4096 /tmp/good.out
write16 8192 /tmp/remap.out
qd1 $E $((512 << 20)) $((256 << 20)) /tmp/commit-wait.out
t0=$(ms)
i=0
while [ $i -lt 20 ]; do
	dmsetup message e 0 add_remap $((65536 + i * 8)) auto 8 >/dev/null
	i=$((i + 1))
done
t1=$(ms)
qd1_stop
qd1 $E $((512 << 20)) $((256 << 20)) /tmp/remap-wait.out
write16 12288 /tmp/remap.out
qd1_stop
n=$(dmsetup message e 0 count)
[ "$n" = 52 ] || { echo "count $n after 32 remapping writes and 20 add_remap" >&2; exit 1; }
dmsetup remove e
dmsetup remove slow
rmmod dm_remap

echo DMR-BENCH-BEGIN
echo "dm-remap bench 2"
echo "settings: fio io_uring qd32 jobs2 runtime ${RUNTIME}s rounds $ROUNDS, randread/randwrite 4k, read/write 128k sequential; null_blk main 16384MiB spare 5120MiB no memory backing; block_size 4096; scattered remaps 0 10000 100000 1000000, hits region 8192 blocks at 8GiB"
echo "kernel: $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPU(s)"
awk '
	FILENAME == "/tmp/counts" { count[$1] = $2; next }
	{
		k = $1 " " $2 " " $3 " " $4; sum[k] += $5; n[k]++; share[k] += ($6 == "-" ? 0 : $6)
		phases[$1] = 1
	}
	function mean(k) { return sum[k] / n[k] }
	END {
		printf "%-9s %-6s %-6s %8s %10s %7s %9s\n", "workload", "region", "device", "remaps", "IOPS", "ratio", "to_spare"
		np = split("0 10000 100000 1000000", ps, " ")
		split("randread randwrite read write", ws, " ")
		split("all hits", regs, " ")
		for (wi = 1; wi <= 4; wi++) for (ri = 1; ri <= 2; ri++) {
			w = ws[wi]; reg = regs[ri]
			lin = 0; ln = 0
			for (pi = 1; pi <= np; pi++) {
				k = ps[pi] " " w " " reg " linear"
				if (k in n) { lin += sum[k]; ln += n[k] }
			}
			if (!ln) continue
			if (reg == "all") {
				k = "0 " w " all raw"
				printf "%-9s %-6s %-6s %8s %10.0f %7.3f %9s\n", w, reg, "raw", "-", mean(k), mean(k) / mean("0 " w " all linear"), "-"
			}
			printf "%-9s %-6s %-6s %8s %10.0f %7.3f %9s\n", w, reg, "linear", "-", lin / ln, 1, "-"
			for (pi = 1; pi <= np; pi++) {
				k = ps[pi] " " w " " reg " remap"
				if (!(k in n)) continue
				printf "%-9s %-6s %-6s %8d %10.0f %7.3f %9.4f\n", w, reg, "remap", count[ps[pi]], mean(k),
					mean(k) / mean(ps[pi] " " w " " reg " linear"), share[k] / n[k]
			}
		}
	}' /tmp/counts /tmp/results
echo "import 10000 $t10k"
echo "import 100000 $((t10k + t90k))"
echo "import 1000000 $((t10k + t90k + t900k))"
echo "import-carry 10000 $tc"
echo "resize-wait $(lat /tmp/resize.out r | cut -d' ' -f1,2) $((rs1 - rs0))"
echo "add-wait $(lat /tmp/add.out r | cut -d' ' -f1,2) $((rs2 - rs1))"
per() { awk -v a=$1 -v b=$before 'BEGIN { printf "%.1f", (a - b) * 1024 / 1000000 }'; }
echo "memory 1000000 $(per $after)"
echo "memory-peak 1000000 $(per $peak)"
echo "write-good $(lat /tmp/good.out w | awk '{ print $3, $1 }')"
echo "write-remap $(lat /tmp/remap.out w | awk '{ m += $3; x = ($1 > x ? $1 : x) } END { printf "%d %d\n", m / NR, x }')"
echo "commit $(awk -v t=$((t1 - t0)) 'BEGIN { printf "%.1f", t / 20 }')"
echo "commit-wait $(lat /tmp/commit-wait.out r | cut -d' ' -f1,2)"
echo "remap-wait $(lat /tmp/remap-wait.out r | cut -d' ' -f1,2)"
echo DMR-BENCH-END
