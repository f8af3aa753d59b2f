# migrate_to refuses a new spare that shares sectors with main or the old
# spare through a partition table: a partition of the disk that is the old
# spare, and the disk whose partitions are main and the old spare. The
# kernel will not open either while the live table holds the other (EBUSY);
# the refusal names the overlap. Each reload is refused with that message
# in the kernel log, and the live table and the device's data stay as they
# were. Two partitions of one disk do not overlap: a third partition of the
# disk that holds main and the old spare is taken, and the move to it keeps
# every byte. A table line whose main and spare overlap that way is
# refused with the constructor's message for it.
. /tests/lib.sh
load_module

# le32 N: N as 4 little-endian bytes (printf escapes).
le32() {
	for _s in 0 8 16 24; do
		printf '\\%03o' $((($1 >> _s) & 255))
	done
}

# partitioned SIZE START:SECTORS...: a loop device (partition scanning on)
# with an MBR partition table of the given primary partitions (type 83).
partitioned() {
	_pd=$(new_loop "$1" -P)
	shift
	_mbr=
	for _p; do
		_mbr="$_mbr\\000\\000\\000\\000\\203\\000\\000\\000$(le32 ${_p%:*})$(le32 ${_p#*:})"
	done
	printf "$_mbr" | dd of=$_pd bs=1 seek=446 conv=notrunc 2>/dev/null &&
		printf '\125\252' | dd of=$_pd bs=1 seek=510 conv=notrunc 2>/dev/null ||
		fail "writing the partition table of $_pd failed"
	blockdev --rereadpt $_pd || fail "rereading the partition table of $_pd failed"
	echo "$_pd"
}

# D: main (p1, 16 MiB), the spare (p2, 16 MiB) and a third partition (p3,
# 20 MiB). E: a whole-disk spare holding a partition table (p1, 8 MiB).
D=$(partitioned 56M 2048:32768 34816:32768 67584:40960)
E=$(partitioned 24M 2048:16384)
for p in ${D}p1 ${D}p2 ${D}p3 ${E}p1; do
	[ -b $p ] || fail "no partition $p"
done
M=$(new_loop 16M)

# setup NAME LINE: a device NAME of 16 MiB from table LINE, with 512
# remapped blocks and random data, which /tmp/NAME.want keeps.
setup() {
	dm_create $1 "$2" || fail "create of $1 failed"
	dmsetup message $1 0 add_remap 8192 auto 512 >/dev/null || fail "add_remap on $1 failed"
	dd if=/dev/urandom of=/dev/mapper/$1 bs=1M count=16 oflag=direct 2>/dev/null &&
		dd if=/dev/mapper/$1 of=/tmp/$1.want bs=1M iflag=direct 2>/dev/null ||
		fail "pattern on $1 failed"
}
# same NAME WHEN: NAME reads what setup wrote.
same() {
	dd if=/dev/mapper/$1 of=/tmp/$1.now bs=1M iflag=direct 2>/dev/null &&
		cmp -s /tmp/$1.want /tmp/$1.now || fail "$1 reads other data ($2)"
}

# refused NAME LINE NEW: a reload of NAME with LINE and migrate_to NEW
# fails with the overlap message in the kernel log and leaves NAME as it
# was.
refused() {
	_was=$(dmsetup table $1)
	mark
	dmsetup reload $1 --table "$2 2 migrate_to $3" 2>/dev/null &&
		fail "reload of $1 with migrate_to $3 accepted"
	since_mark | grep -qF "remap: migrate_to device overlaps the main or the spare device: one is a partition of the other" ||
		fail "no overlap message for migrate_to $3 (got: $(since_mark | grep 'remap:'))"
	dmsetup info $1 | grep -q "Tables present: *LIVE$" || fail "an inactive table is left by migrate_to $3"
	[ "$(dmsetup table $1)" = "$_was" ] || fail "table of $1 changed by migrate_to $3"
	same $1 "after migrate_to $3"
}

# The old spare is the whole disk E (formatted over its partition table):
# its partition is refused.
U="0 32768 remap $M $E"
setup u "$U 1 format"
refused u "$U" ${E}p1
# Main and the old spare are partitions of D: D itself is refused.
T="0 32768 remap ${D}p1 ${D}p2"
setup t "$T"
refused t "$T" $D

# A third partition of D is another device: the move to it goes through.
mark
dmsetup reload t --table "$T 2 migrate_to ${D}p3" ||
	fail "reload with migrate_to ${D}p3 refused: $(since_mark | grep 'remap:')"
dmsetup resume t || fail "resume with migrate_to ${D}p3 failed"
move_ended
since_mark | grep -q "moved 512 remapped blocks from spare" || fail "the move stopped: $(since_mark | grep 'remap:')"
read -r p1 <"/sys/class/block/${D#/dev/}p1/dev"
read -r p3 <"/sys/class/block/${D#/dev/}p3/dev"
[ "$(dmsetup table t)" = "0 32768 remap $p1 $p3" ] ||
	fail "table after the move: $(dmsetup table t)"
same t "after the move"
dm_remove t
dm_remove u

# The table line itself: a spare that is main's disk, or a partition of
# the disk that is main, is refused the same way.
expect_bad_table v "0 16384 remap ${E}p1 $E" "Main and spare overlap: one is a partition of the other"
expect_bad_table v "0 16384 remap $E ${E}p1" "Main and spare overlap: one is a partition of the other"
rm -f /tmp/t.want /tmp/t.now /tmp/u.want /tmp/u.now
