# ext4 on dm-remap while blocks under its files go bad: data written after
# the fault (in-place rewrites, buffered and O_DIRECT, appends, new files)
# reaches the disk without an error, reads back after the page cache is
# dropped, and the file system checks clean; every bad block that was
# rewritten is remapped automatically.
#
# What is checked: data written after the fault, and data that only ever
# lived on good blocks. A block that went bad under data nobody rewrote has
# lost that data: reading it fails with EIO and makes the block pending, which
# is right. So the files with such blocks (f39, f40) are expected to fail to
# read, and are left out of the checksums.
# dmr-needs: CONFIG_EXT4_FS
. /tests/lib.sh
load_module

M0=$(new_loop 256M)
S=$(new_loop 32M)
dm_wrap w $M0 || fail "wrapper over main refused"
dm_create r "0 524288 remap /dev/mapper/w $S 2 block_size 4096" || fail "create failed"
DT=$(dm_devt r)
MNT=/tmp/mnt
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/r >/tmp/mkfs 2>&1 ||
	fail "mkfs.ext4 failed: $(cat /tmp/mkfs)"
fs_mount /dev/mapper/r $MNT || fail "mount failed"

# f1-f40, 128-384 KiB each; /tmp/src keeps what each file should hold.
mkdir -p /tmp/src
i=1
while [ $i -le 40 ]; do
	dd if=/dev/urandom of=/tmp/src/f$i bs=64k count=$((i % 5 + 2)) 2>/dev/null
	cp /tmp/src/f$i $MNT/f$i || fail "writing f$i failed"
	i=$((i + 1))
done
sync

# phys FILE: the file system block (4 KiB, so sector = 8 * block) that holds
# the middle block of FILE, from filefrag's extent list.
phys() {
	l=$(($(stat -c %s "$1") / 4096 / 2))
	filefrag -v "$1" | sed -n 's/^ *[0-9]*: *\([0-9]*\)\.\. *\([0-9]*\): *\([0-9]*\)\.\..*/\1 \2 \3/p' |
		awk -v l=$l '$1 <= l && l <= $2 { print $3 + l - $1 }'
}
# The middle block of f1-f10 (rewritten below) and of f39, f40 (left alone)
# goes bad while the file system is mounted.
: >/tmp/bad
for i in 1 2 3 4 5 6 7 8 9 10 39 40; do
	b=$(phys $MNT/f$i)
	[ -n "$b" ] || fail "no block for f$i in: $(filefrag -v $MNT/f$i)"
	echo "$((b * 8)) f$i" >>/tmp/bad
done
sort -n /tmp/bad >/tmp/bad.sorted
[ "$(cut -d' ' -f1 /tmp/bad.sorted | uniq | wc -l)" = 12 ] || fail "bad blocks not distinct: $(cat /tmp/bad.sorted)"
mark
# shellcheck disable=SC2046
dm_rewrap w $M0 $(awk '{ printf "%s:8 ", $1 }' /tmp/bad.sorted)
note "bad sectors: $(cut -d' ' -f1 /tmp/bad.sorted | tr '\n' ' ')"

# f1-f10: rewritten in place (the same blocks), f1-f3 with O_DIRECT.
i=1
while [ $i -le 10 ]; do
	n=$(($(stat -c %s /tmp/src/f$i) / 65536))
	dd if=/dev/urandom of=/tmp/src/f$i bs=64k count=$n 2>/dev/null
	if [ $i -le 3 ]; then
		flags="oflag=direct conv=notrunc,fsync"
	else
		flags="conv=notrunc,fsync"
	fi
	# shellcheck disable=SC2086
	dd if=/tmp/src/f$i of=$MNT/f$i bs=64k $flags 2>/tmp/err || fail "rewriting f$i failed: $(cat /tmp/err)"
	i=$((i + 1))
done
# f11-f20: appended to.
while [ $i -le 20 ]; do
	dd if=/dev/urandom of=/tmp/more bs=64k count=1 2>/dev/null
	cat /tmp/more >>/tmp/src/f$i
	dd if=/tmp/more of=$MNT/f$i bs=64k oflag=append conv=notrunc,fsync 2>/tmp/err ||
		fail "appending to f$i failed: $(cat /tmp/err)"
	i=$((i + 1))
done
# f41-f50: new.
i=41
while [ $i -le 50 ]; do
	dd if=/dev/urandom of=/tmp/src/f$i bs=64k count=3 2>/dev/null
	dd if=/tmp/src/f$i of=$MNT/f$i bs=64k conv=fsync 2>/tmp/err || fail "writing new f$i failed: $(cat /tmp/err)"
	i=$((i + 1))
done
sync
since_mark | grep -E "EXT4-fs (error|warning)|I/O error|Remounting" &&
	fail "the file system saw errors (above) although dm-remap should absorb them"

[ "$(dm_stat r auto_remaps)" = 10 ] || fail "auto_remaps $(dm_stat r auto_remaps), want 10 (the rewritten bad blocks)"
[ "$(dm_field r 6)" = 10 ] || fail "status shows $(dm_field r 6) remaps, want 10"
got=$(since_mark | sed -n "s/.*dm-remap: $DT: write error on main sector \([0-9]*\): remapped.*/\1/p" | sort -n | tr '\n' ' ')
want=$(grep -v 'f39$\|f40$' /tmp/bad.sorted | cut -d' ' -f1 | tr '\n' ' ')
[ "$got" = "$want" ] || fail "write errors logged at '$got', want '$want'"

# Checksums of everything but f39 and f40, read from disk.
(cd /tmp/src && rm f39 f40 && sha256sum f*) >/tmp/sums
[ "$(wc -l </tmp/sums)" = 48 ] || fail "checksum list has $(wc -l </tmp/sums) files, want 48"
echo 3 >/proc/sys/vm/drop_caches
(cd $MNT && sha256sum -c /tmp/sums) >/tmp/check 2>&1 ||
	fail "files differ after drop_caches: $(grep -v ': OK$' /tmp/check)"

# f39 and f40 lost a block: reading them fails and makes exactly it pending.
for f in f39 f40; do
	cat $MNT/$f >/dev/null 2>&1 && fail "$f read although a block under it went bad"
done
want=$(grep 'f39$\|f40$' /tmp/bad.sorted | cut -d' ' -f1 | tr '\n' ' ')
got="$(dmsetup message r 0 pending) "
[ "$got" = "$want" ] || fail "pending '$got', want '$want' (the blocks of f39, f40)"

fs_umount $MNT
e2fsck -fn /dev/mapper/r >/tmp/fsck 2>&1 || fail "e2fsck -fn: $(cat /tmp/fsck)"
