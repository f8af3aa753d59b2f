# 20 create/remove cycles, each with a write and a read, leave nothing behind
# (the runner checks the kernel log; the suite's last check asks kmemleak).
. /tests/lib.sh
load_module

M=$(new_loop 8M)
S=$(new_loop 8M)
dd if=/dev/urandom of=/tmp/blk bs=4k count=1 2>/dev/null
i=0
while [ $i -lt 20 ]; do
	dm_create t "0 16384 remap $M $S" || fail "create $i failed"
	dd if=/tmp/blk of=/dev/mapper/t bs=4k seek=$i oflag=direct 2>/dev/null || fail "write $i"
	dd if=/dev/mapper/t bs=4k skip=$i count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/blk ||
		fail "read $i differs"
	dm_remove t
	i=$((i + 1))
done
[ "$(holders $M)" = 0 ] && [ "$(holders $S)" = 0 ] || fail "devices still held"
