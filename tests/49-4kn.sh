# 4Kn devices: main and spare with 4096-byte logical blocks (`losetup -b
# 4096`) work like 512-byte ones: the spare is formatted (its metadata is
# read and written in whole 4 KiB units), remaps added by message and by a
# write error on main carry the data byte for byte, and survive dmsetup
# remove + create; dm-remap-tool finds the spare clean. A 512/4096 pair is
# refused. The spare copied onto a 512-byte device, with main, still loads
# with every remap and the same data.
. /tests/lib.sh
load_module

M=$(new_loop 32M -b 4096)
S=$(new_loop 16M -b 4096)
M512=$(new_loop 32M)
[ "$(blockdev --getss $S)" = 4096 ] || fail "spare logical block size $(blockdev --getss $S)"
expect_bad_table x "0 65536 remap $M512 $S" "Main and spare have different logical block sizes"

dm_wrap w $M || fail "wrapper over main refused"
T="0 65536 remap /dev/mapper/w $S"
mark
dm_create t "$T" || fail "create on 4Kn devices failed: $(since_mark | grep dm-remap)"
since_mark | grep -q "spare formatted with 5 metadata copies" || fail "not formatted: $(since_mark | grep dm-remap)"
[ "$(dm_field t 5)" = 4096 ] || fail "block size $(dm_field t 5), want 4096"
[ "$(blockdev --getss /dev/mapper/t)" = 4096 ] || fail "mapped device logical block size"
dmsetup message t 0 add_remap 800 auto 64 >/dev/null || fail "add_remap auto failed"
dmsetup message t 0 add_remap 8000 16384 8 >/dev/null || fail "add_remap explicit failed"

# readback DEV: DEV's data, read O_DIRECT into /tmp/got (a file, not a pipe:
# cheaper in the guest), equals /tmp/expect.
readback() {
	dd if=$1 of=/tmp/got bs=1M iflag=direct 2>/dev/null
	cmp /tmp/got /tmp/expect
}
dd if=/dev/urandom of=/tmp/expect bs=1M count=32 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "write failed"
readback /dev/mapper/t || fail "read back differs"

# A write error on main (block 2048, sector 16384) is remapped on its own.
DT=$(dm_devt t)
dm_rewrap w $M 16384:8
mark
dd if=/dev/urandom of=/tmp/chunk bs=4096 count=1 2>/dev/null
dd if=/tmp/chunk of=/dev/mapper/t bs=4096 seek=2048 oflag=direct 2>/dev/null || fail "write error not absorbed"
dd if=/tmp/chunk of=/tmp/expect bs=4096 seek=2048 conv=notrunc 2>/dev/null
since_mark | grep -q "dm-remap: $DT: write error on main sector 16384: remapped to spare sector" ||
	fail "no automatic remap: $(since_mark | grep dm-remap)"
[ "$(dmsetup message t 0 count)" = 10 ] || fail "count $(dmsetup message t 0 count), want 10"
readback /dev/mapper/t || fail "read back after the remap differs"

# Each remapped extent is on the spare, byte for byte.
remaps t >/tmp/list
while read -r main spare nr; do
	# O_DIRECT on a 4Kn device: whole 4 KiB blocks.
	dd if=$S bs=4096 skip=$((spare / 8)) count=$((nr / 8)) iflag=direct 2>/dev/null >/tmp/got
	cmp -s -n $((nr * 512)) -i $((main * 512)):0 /tmp/expect /tmp/got ||
		fail "spare at $spare does not hold main sectors $main+$nr"
done </tmp/list

dm_remove t
dm_create t "$T" || fail "re-create failed"
[ "$(remaps t)" = "$(cat /tmp/list)" ] || fail "remaps after re-create: $(remaps t)"
readback /dev/mapper/t || fail "read back after re-create differs"
dm_remove t
dm_rewrap w $M
dm-remap-tool check $S || fail "dm-remap-tool check found problems"
dm-remap-tool dump $S | grep -q "^format version 3$" || fail "dump: $(dm-remap-tool dump $S)"

# The same spare (and main) on 512-byte devices.
S2=$(new_loop 16M)
M2=$(new_loop 32M)
# O_DIRECT both ways: a buffered copy between block devices is slow here.
dd if=$S of=$S2 bs=1M iflag=direct oflag=direct conv=notrunc 2>/dev/null
dd if=$M of=$M2 bs=1M iflag=direct oflag=direct conv=notrunc 2>/dev/null
dm_create u "0 65536 remap $M2 $S2 2 block_size 4096" || fail "the copied spare does not load on 512-byte devices"
[ "$(remaps u)" = "$(cat /tmp/list)" ] || fail "remaps on 512-byte devices: $(remaps u)"
readback /dev/mapper/u || fail "data on 512-byte devices differs"
dm_remove u
dm-remap-tool check $S2 || fail "check of the copied spare found problems"
