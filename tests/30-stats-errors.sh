# I/O errors are counted by the device they came from: main_errors for
# main, spare_errors for the spare's data pool.
. /tests/lib.sh
load_module

S0=$(new_loop 16M)
dmsetup create merr --table "0 32768 error" || fail "error main"
echo merr >>$_STATE/devs
printf '0 4096 linear %s 0\n4096 28672 error\n' $S0 | dmsetup create serr || fail "spare wrapper"
echo serr >>$_STATE/devs
dm_create t "0 32768 remap /dev/mapper/merr /dev/mapper/serr" || fail "create failed"
D=/sys/module/dm_remap/stat/$(dm_kname t)

dd if=/dev/mapper/t of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null && fail "read of a failing main succeeded"
[ "$(cat $D/main_errors)" = 1 ] || fail "main_errors $(cat $D/main_errors)"
[ "$(cat $D/spare_errors)" = 0 ] || fail "spare_errors $(cat $D/spare_errors)"
# Metadata lives in the working part of the spare; data goes to the failing pool.
dmsetup message t 0 add_remap 64 auto 8 >/dev/null || fail "add failed"
dd if=/dev/zero of=/dev/mapper/t bs=4k seek=8 count=1 oflag=direct 2>/dev/null && fail "write to a failing spare succeeded"
[ "$(cat $D/spare_errors)" = 1 ] || fail "spare_errors $(cat $D/spare_errors)"
[ "$(cat $D/main_errors)" = 1 ] || fail "main_errors changed: $(cat $D/main_errors)"
grep -q "	spare errors: 1" $D/summary || fail "summary"
