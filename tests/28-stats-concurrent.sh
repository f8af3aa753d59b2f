# Reading every stat file in a loop while two fio jobs run random I/O
# (the runner fails the test on lockdep, KASAN or RCU reports); counters
# never go backwards.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 32M)
dm_create t "0 65536 remap $M $S" || fail "create failed"
dmsetup message t 0 add_remap 64 auto 64 >/dev/null || fail "add"
D=/sys/module/dm_remap/stat/$(dm_kname t)
fio --name=load --filename=/dev/mapper/t --size=16M --rw=randrw --bs=4k --direct=1 \
	--ioengine=psync --numjobs=2 --time_based --runtime=15 --output=/tmp/fio.out &
fio_pid=$!
last=0
reads=0
while kill -0 $fio_pid 2>/dev/null; do
	# Every file of the tree, in one process (a process start costs 50 to
	# 80 ms here; one per file let fio's start-up decide how many passes
	# fit). The write-only `reset` files refuse to be read.
	cat $D/* /sys/module/dm_remap/stat/all_devs/* >/dev/null 2>&1
	now=$(cat $D/total_cnt)
	[ "$now" -ge "$last" ] || fail "total_cnt went backwards: $last -> $now"
	last=$now
	reads=$((reads + 1))
done
wait $fio_pid || { cat /tmp/fio.out; fail "fio failed"; }
note "stat tree read $reads times during fio; total_cnt $last"
[ "$reads" -ge 3 ] || fail "too few reads"
[ "$last" -gt 0 ] || fail "nothing counted"
