# Discards go to main only.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
dm_create t "0 32768 remap $M $S" || fail "create failed"
discards() { awk '{ print $12 }' /sys/block/$(basename $1)/stat; }
m0=$(discards $M)
s0=$(discards $S)
blkdiscard -o 1048576 -l 1048576 /dev/mapper/t || fail "blkdiscard failed"
m1=$(discards $M)
s1=$(discards $S)
note "discards: main $m0 -> $m1, spare $s0 -> $s1"
[ "$m1" -gt "$m0" ] || fail "no discard reached main"
[ "$s1" = "$s0" ] || fail "a discard reached the spare"
