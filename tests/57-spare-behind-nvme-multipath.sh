# The spare is an NVMe namespace behind a multipath head (/dev/nvme0n1, on
# QEMU's nvme device). The head passes each bio on to the path's disk by
# rewriting its bi_bdev in place, so a clone that comes back from the spare
# names a disk that is not the spare. A write to a remapped block that fails
# there (fail_make_request on the path, once) is counted as a spare error,
# written again on the spare where the table puts the block, and reads back;
# main's block under it stays as it was. (Telling spare from main by the
# completed clone's bi_bdev took it for a failed write to main.)
# dmr-needs: CONFIG_NVME_MULTIPATH CONFIG_FAIL_MAKE_REQUEST CONFIG_FAULT_INJECTION_DEBUG_FS
. /tests/lib.sh
load_module

[ -b /dev/nvme0n1 ] || fail "no /dev/nvme0n1"
path=
for p in /sys/class/block/nvme0c*n1; do
	[ -e "$p/make-it-fail" ] && path=$p
done
[ -n "$path" ] || fail "no multipath path disk with make-it-fail: $(ls /sys/class/block)"
F=/sys/kernel/debug/fail_make_request
[ -d $F ] || fail "no $F"
# The namespace is this guest's, shared by the tests it runs: start blank.
dd if=/dev/zero of=/dev/nvme0n1 bs=1M count=4 oflag=direct 2>/dev/null || fail "cannot zero the namespace"

M=$(new_loop 32M)
dd if=/dev/urandom of=/tmp/main bs=4096 count=1 2>/dev/null
dd if=/tmp/main of=$M bs=4096 seek=100 count=1 conv=notrunc 2>/dev/null || fail "cannot write main"
dm_create t "0 65536 remap $M /dev/nvme0n1 2 block_size 4096" || fail "create over the NVMe spare failed"
dmsetup message t 0 add_remap 800 auto >/dev/null || fail "add_remap failed"
dd if=/dev/urandom of=/tmp/a bs=4096 count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=4096 count=1 2>/dev/null
dd if=/tmp/a of=/dev/mapper/t bs=4096 seek=100 count=1 oflag=direct conv=notrunc 2>/dev/null ||
	fail "write to the remapped block failed"

# The next bio on the path fails, once (quietly: a stack dump would fail
# the kernel-log gate).
echo 0 >$F/verbose
echo 100 >$F/probability
echo 1 >$F/interval
echo 1 >$F/times
echo 1 >$path/make-it-fail
mark
dd if=/tmp/b of=/dev/mapper/t bs=4096 seek=100 count=1 oflag=direct conv=notrunc 2>/tmp/err
rc=$?
echo 0 >$path/make-it-fail
[ $rc = 0 ] || fail "write with one failure on the spare failed: $(cat /tmp/err) $(since_mark | grep dm-remap)"
[ "$(cat $F/times)" = 0 ] || fail "no failure was injected (times $(cat $F/times))"
[ "$(dm_stat t spare_errors)" = 1 ] || fail "spare_errors $(dm_stat t spare_errors), want 1"
[ "$(dm_stat t main_errors)" = 0 ] || fail "main_errors $(dm_stat t main_errors): the spare's error taken for main's"
dd if=/dev/mapper/t of=/tmp/r bs=4096 skip=100 count=1 iflag=direct 2>/dev/null || fail "read back failed"
cmp -s /tmp/r /tmp/b || fail "the remapped block reads back different data"
dd if=$M of=/tmp/r bs=4096 skip=100 count=1 iflag=direct 2>/dev/null || fail "read of main failed"
cmp -s /tmp/r /tmp/main || fail "main's block under the remap was written"
dm_remove t
dm-remap-tool check /dev/nvme0n1 || fail "check of the NVMe spare found problems"
