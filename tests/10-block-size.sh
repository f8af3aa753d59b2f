# block_size sets the remap granularity, not the device's logical block size:
# the mapped device keeps the devices' own (512 here), so data laid out in
# 512-byte units on main still fits; it prefers block-sized I/O (physical
# block size and minimum I/O size), passes any I/O through unchanged, and
# status counts spare blocks of that size. Every documented size activates.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
dm_create t "0 65536 remap $M $S 2 block_size 4096" || fail "create failed"
dm=$(dm_kname t)
q=/sys/block/$dm/queue
[ "$(cat $q/logical_block_size)" = 512 ] || fail "logical block size $(cat $q/logical_block_size), want 512 (the devices')"
[ "$(cat $q/physical_block_size)" = 4096 ] || fail "physical block size $(cat $q/physical_block_size), want 4096"
[ "$(cat $q/minimum_io_size)" = 4096 ] || fail "minimum I/O size $(cat $q/minimum_io_size), want 4096"
dmsetup status t | grep -q ' ok 4096 0 0/3584 14 0 0 0 ok on idle 0 0$' || fail "status: $(dmsetup status t)"
dd if=/dev/urandom of=/tmp/pat bs=4k count=64 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=4k seek=100 oflag=direct 2>/dev/null || fail "4k write failed"
dd if=$M bs=4k skip=100 count=64 2>/dev/null | cmp - /tmp/pat || fail "main differs"
dd if=/dev/mapper/t bs=4k skip=100 count=64 iflag=direct 2>/dev/null | cmp - /tmp/pat ||
	fail "read back differs"
# 512-byte I/O inside a block, on main and on a remapped block.
dd if=/dev/urandom of=/tmp/s bs=512 count=1 2>/dev/null
dd if=/tmp/s of=/dev/mapper/t bs=512 seek=803 oflag=direct 2>/dev/null || fail "512-byte write to main failed"
dd if=$M bs=512 skip=803 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/s || fail "512-byte write did not reach main sector 803"
dmsetup message t 0 add_remap 1600 auto >/dev/null || fail "add_remap 1600 failed"
dd if=/tmp/s of=/dev/mapper/t bs=512 seek=1605 oflag=direct 2>/dev/null || fail "512-byte write to a remapped block failed"
dd if=/dev/mapper/t bs=512 skip=1605 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/s ||
	fail "512-byte read of a remapped block differs"
sp=$(dmsetup message t 0 query 1605 | awk '{ print $2 }')
dd if=$S bs=512 skip=$sp count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/s || fail "the write is not at spare sector $sp"
dm_remove t
dd if=/dev/zero of=$S bs=1M count=2 oflag=direct 2>/dev/null

# A spare whose size is not a multiple of the block size: the tail shorter
# than a block is not used, and the table activates.
S2=$(new_loop $((16 * 1024 * 1024 + 512)))
dm_create t2 "0 65536 remap $M $S2 2 block_size 4096" || fail "spare of 16 MiB + 512 bytes refused"
dmsetup status t2 | grep -q ' ok 4096 0 0/3584 ' || fail "status: $(dmsetup status t2)"
dm_remove t2

# Every documented block size activates, with the devices' logical block
# size, and carries data at its granularity.
for bs in 512 1024 2048 4096 8192 16384 32768 65536; do
	dm_create t "0 65536 remap $M $S 2 block_size $bs" || fail "block_size $bs: create failed"
	dm=$(dm_kname t)
	[ "$(cat /sys/block/$dm/queue/logical_block_size)" = 512 ] ||
		fail "block_size $bs: logical block size $(cat /sys/block/$dm/queue/logical_block_size)"
	dmsetup message t 0 add_remap $((bs / 512 * 20)) auto >/dev/null || fail "block_size $bs: add_remap failed"
	dd if=/dev/urandom of=/tmp/blk bs=$bs count=1 2>/dev/null
	dd if=/tmp/blk of=/dev/mapper/t bs=$bs seek=20 oflag=direct 2>/dev/null || fail "block_size $bs: write failed"
	dd if=/dev/mapper/t bs=$bs skip=20 count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/blk ||
		fail "block_size $bs: read back differs"
	dmsetup message t 0 clear_remaps >/dev/null || fail "block_size $bs: clear_remaps failed"
	dm_remove t
	# A different block size is a different device pair: start blank.
	dd if=/dev/zero of=$S bs=1M count=2 oflag=direct 2>/dev/null
done
