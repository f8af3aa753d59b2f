# A flush of the remap device reaches both main and spare (the spare will hold
# data and metadata that must be durable too).
. /tests/lib.sh
load_module

M=$(new_loop 8M)
S=$(new_loop 8M)
dm_create t "0 16384 remap $M $S" || fail "create failed"
for d in ${M#/dev/} ${S#/dev/} $(dm_kname t); do
	wc=$(cat /sys/block/$d/queue/write_cache)
	[ "$wc" = "write back" ] || fail "$d has write cache '$wc'; the test needs write back"
done
m0=$(flushes $M)
s0=$(flushes $S)
dd if=/dev/zero of=/dev/mapper/t bs=4k count=1 conv=fsync 2>/dev/null || fail "write+fsync failed"
m1=$(flushes $M)
s1=$(flushes $S)
note "flushes: main $m0 -> $m1, spare $s0 -> $s1"
[ "$m1" -gt "$m0" ] || fail "no flush reached main"
[ "$s1" -gt "$s0" ] || fail "no flush reached the spare"
