# A device is created over two loop devices, has the table's size, holds both
# devices while it exists, and releases them on remove.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
mark
dm_create t "0 65536 remap $M $S" || fail "create failed"
[ -b /dev/mapper/t ] || fail "no /dev/mapper/t"
[ "$(sectors /dev/mapper/t)" = 65536 ] || fail "size $(sectors /dev/mapper/t), want 65536"
[ "$(holders $M)" = 1 ] || fail "main not held by the dm device"
[ "$(holders $S)" = 1 ] || fail "spare not held by the dm device"
deps=$(dmsetup deps t)
echo "$deps" | grep -q "2 dependencies" || fail "dmsetup deps: $deps"
since_mark | grep -q "dm-remap: $(dm_devt t): main $(cat /sys/block/${M#/dev/}/dev) spare $(cat /sys/block/${S#/dev/}/dev): block size 512, 28672 spare blocks" ||
	fail "no constructor line in the kernel log: $(since_mark | grep dm-remap)"
dm_remove t
[ "$(holders $M)" = 0 ] || fail "main still held after remove"
[ "$(holders $S)" = 0 ] || fail "spare still held after remove"
