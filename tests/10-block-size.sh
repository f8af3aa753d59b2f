# block_size raises the device's logical block size: smaller I/O is refused,
# block-sized I/O passes through unchanged, and status counts spare blocks of
# that size.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
dm_create t "0 65536 remap $M $S 2 block_size 4096" || fail "create failed"
dm=$(dm_kname t)
[ "$(cat /sys/block/$dm/queue/logical_block_size)" = 4096 ] ||
	fail "logical block size $(cat /sys/block/$dm/queue/logical_block_size)"
dmsetup status t | grep -q ' ok 4096 0 0/3584 64 0 0 0 ok on idle 0 0$' || fail "status: $(dmsetup status t)"
dd if=/dev/zero of=/dev/mapper/t bs=512 count=1 oflag=direct 2>/dev/null &&
	fail "512-byte direct write accepted on a 4 KiB device"
dd if=/dev/urandom of=/tmp/pat bs=4k count=64 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=4k seek=100 oflag=direct 2>/dev/null || fail "4k write failed"
dd if=$M bs=4k skip=100 count=64 2>/dev/null | cmp - /tmp/pat || fail "main differs"
dd if=/dev/mapper/t bs=4k skip=100 count=64 iflag=direct 2>/dev/null | cmp - /tmp/pat ||
	fail "read back differs"
