# The lost-data report: which main blocks' data is gone, from the module
# (the `lost` message) and from the spare (`dm-remap-tool lost`), and which
# file each belongs to (debugfs icheck/ncheck over the remap device).
# - A block of a file goes bad on main: reading it fails; it is listed by
#   the message, by the tool for the device and, after the device is gone,
#   for its spare; debugfs names the file; rewriting the file ends it.
# - The spare block of a remapped block cannot be read: the block is listed
#   too. A write ends it: on that spare block when it takes writes again, or
#   on a new one when it does not.
# - A write of part of a block whose rest cannot be read: listed.
# - More read errors than the pending list holds (4,572): the rest are
#   counted with their range, kept across remove and create, and forgotten
#   by clear_pending.
# dmr-needs: CONFIG_EXT4_FS
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
dm_wrap w $M0 || fail "wrapper over main refused"
dm_wrap s $S0 || fail "wrapper over the spare refused"
T="0 131072 remap /dev/mapper/w /dev/mapper/s 4 block_size 4096 read_retries 0"
dm_create r "$T" || fail "create failed"
DT=$(dm_devt r)

lost() {
	dmsetup message r 0 lost
}
# head: the first line of the lost reply.
head1() {
	lost | sed -n 1p
}
# tool ARGS...: dm-remap-tool lost ARGS into /tmp/out; its exit status in $rc.
tool() {
	rc=0
	dm-remap-tool lost "$@" >/tmp/out 2>/tmp/err || rc=$?
}
[ "$(lost)" = "blocks 4096 pending 0 unrecorded 0" ] || fail "lost before any error: '$(lost)'"
tool r
[ $rc = 0 ] || fail "lost r: exit $rc with nothing lost: $(cat /tmp/out /tmp/err)"
grep -q "^r: no data lost" /tmp/out || fail "lost r said: $(cat /tmp/out)"

# 1. ext4 with a file whose middle block goes bad.
MNT=/tmp/mnt
mkfs.ext4 -q -F -b 4096 -E lazy_itable_init=0,lazy_journal_init=0 /dev/mapper/r >/tmp/mkfs 2>&1 ||
	fail "mkfs.ext4 failed: $(cat /tmp/mkfs)"
fs_mount /dev/mapper/r $MNT || fail "mount failed"
mkdir $MNT/dir
dd if=/dev/urandom of=/tmp/a bs=64k count=4 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=64k count=4 2>/dev/null
cp /tmp/a $MNT/dir/a.bin && cp /tmp/b $MNT/b.bin || fail "writing the files failed"
sync
l=$(($(stat -c %s $MNT/dir/a.bin) / 4096 / 2))
B=$(filefrag -v $MNT/dir/a.bin | sed -n 's/^ *[0-9]*: *\([0-9]*\)\.\. *\([0-9]*\): *\([0-9]*\)\.\..*/\1 \2 \3/p' |
	awk -v l=$l '$1 <= l && l <= $2 { print $3 + l - $1 }')
[ -n "$B" ] || fail "no block for a.bin in: $(filefrag -v $MNT/dir/a.bin)"
BAD=$((B * 8))
note "a.bin's block $l is file system block $B, main sector $BAD"
dm_rewrap w $M0 $BAD:8
echo 3 >/proc/sys/vm/drop_caches
mark
cat $MNT/dir/a.bin >/dev/null 2>&1 && fail "a.bin read although a block under it went bad"
cmp -s $MNT/b.bin /tmp/b || fail "b.bin, on good blocks, does not read back"
[ "$(lost)" = "blocks 4096 pending 1 unrecorded 0
$BAD" ] || fail "lost after the read error: '$(lost)', want sector $BAD"
tool r --fs-block-size 4096
[ $rc = 1 ] || fail "lost r: exit $rc with a block lost, want 1"
grep -q "^r: 1 main blocks of 4096 bytes lost" /tmp/out || fail "lost r said: $(cat /tmp/out)"
grep -qx "main sector $BAD (file system block $B)" /tmp/out || fail "lost r said: $(cat /tmp/out)"
tool /dev/mapper/r --json --fs-block-size 1024
[ $rc = 1 ] || fail "lost --json: exit $rc"
grep -q "\"pending\":\[$BAD\],\"fs_block_size\":1024,\"fs_blocks\":\[\[$((B * 4)),$((B * 4 + 3))\]\]" /tmp/out ||
	fail "lost --json said: $(cat /tmp/out)"
# The file that block belongs to, as docs/usage.md shows.
ino=$(debugfs -R "icheck $B" /dev/mapper/r 2>/dev/null | awk -v b=$B '$1 == b { print $2 }')
[ -n "$ino" ] || fail "debugfs icheck $B: $(debugfs -R "icheck $B" /dev/mapper/r 2>&1)"
path=$(debugfs -R "ncheck $ino" /dev/mapper/r 2>/dev/null | awk -v i=$ino '$1 == i { print $2 }')
[ "$path" = /dir/a.bin ] || fail "debugfs ncheck $ino: '$path', want /dir/a.bin"
# Rewriting the file replaces what was lost.
dd if=/dev/urandom of=/tmp/a bs=64k count=4 2>/dev/null
dd if=/tmp/a of=$MNT/dir/a.bin bs=64k conv=notrunc,fsync 2>/tmp/err || fail "rewriting a.bin failed: $(cat /tmp/err)"
[ "$(lost)" = "blocks 4096 pending 0 unrecorded 0" ] || fail "lost after the rewrite: '$(lost)'"
echo 3 >/proc/sys/vm/drop_caches
cmp -s $MNT/dir/a.bin /tmp/a || fail "a.bin does not read back after the rewrite"
fs_umount $MNT

# 2. The spare block of a remapped block cannot be read.
# rd SECTOR / wr SECTOR FILE: one block through r, O_DIRECT.
rd() {
	dd if=/dev/mapper/r of=/tmp/got bs=4k skip=$(($1 / 8)) count=1 iflag=direct 2>/dev/null
}
wr() {
	dd if=$2 of=/dev/mapper/r bs=4k seek=$(($1 / 8)) count=1 oflag=direct conv=notrunc 2>/dev/null
}
at() {
	dmsetup message r 0 query $1 | sed -n 's/^spare //p'
}
X=80000 Y=80008
dmsetup message r 0 add_remap $X auto 16 >/dev/null || fail "add_remap $X failed"
PX=$(at $X) PY=$(at $Y)
[ -n "$PX" ] && [ -n "$PY" ] || fail "blocks $X, $Y not remapped: $(dmsetup message r 0 query $X)"
dd if=/dev/urandom of=/tmp/x bs=4k count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/y bs=4k count=1 2>/dev/null
wr $X /tmp/x && wr $Y /tmp/y || fail "writing the remapped blocks failed"
dm_rewrap s $S0 $PX:8 $PY:8
mark
rd $X && fail "read of $X succeeded although its spare block $PX fails"
rd $Y && fail "read of $Y succeeded although its spare block $PY fails"
[ "$(lost)" = "blocks 4096 pending 2 unrecorded 0
$X $Y" ] || fail "lost with two unreadable spare blocks: '$(lost)'"
since_mark | grep -q "dm-remap: $DT: read error on spare sector $PX (main sector $X): pending\$" ||
	fail "no read-error line for spare sector $PX: $(since_mark | grep dm-remap)"
# Y's spare block takes reads and writes again (a transient fault): a write
# lands there and ends its pending state.
dm_rewrap s $S0 $PX:8
dd if=/dev/urandom of=/tmp/y bs=4k count=1 2>/dev/null
mark
wr $Y /tmp/y || fail "write to $Y failed"
[ "$(at $Y)" = "$PY" ] || fail "$Y moved to spare sector $(at $Y), want it kept at $PY"
since_mark | grep -q "dm-remap: $DT: pending sector $Y rewritten on spare sector $PY\$" ||
	fail "no rewrite line for $Y: $(since_mark | grep dm-remap)"
# X's spare block still fails: the write goes to a new one.
wr $X /tmp/x || fail "write to $X failed"
[ -n "$(at $X)" ] && [ "$(at $X)" != "$PX" ] || fail "$X at spare sector '$(at $X)', want a new one"
[ "$(lost)" = "blocks 4096 pending 0 unrecorded 0" ] || fail "lost after the writes: '$(lost)'"
rd $X && cmp -s /tmp/got /tmp/x || fail "$X does not read back"
rd $Y && cmp -s /tmp/got /tmp/y || fail "$Y does not read back"

# 3. Part of a block written over a block whose rest cannot be read: the
# write fails (the block cannot be put together) and the block is listed.
Z=100000
dm_rewrap w $M0 $Z:8
dd if=/dev/urandom of=/dev/mapper/r bs=512 seek=$((Z + 3)) count=1 oflag=direct conv=notrunc 2>/dev/null &&
	fail "512-byte write into unreadable block $Z succeeded"
[ "$(lost)" = "blocks 4096 pending 1 unrecorded 0
$Z" ] || fail "lost after the partial write: '$(lost)'"
# After the device is gone, its spare says the same.
dm_remove r
tool $S0
[ $rc = 1 ] || fail "lost $S0: exit $rc"
grep -qx "main sector $Z" /tmp/out || fail "lost $S0 said: $(cat /tmp/out)"
dm-remap-tool dump $S0 | grep -q "^unrecorded" && fail "dump shows unrecorded reads: $(dm-remap-tool dump $S0)"

# 4. More read errors than the list holds: 512-byte blocks, 4,700 of them
# bad (sectors 4096-8795), read in three bios (2,048, 2,048, 604 blocks):
# the last 128 (8668-8795) do not fit.
M1=$(new_loop 8M)
S1=$(new_loop 8M)
dm_wrap w1 $M1 4096:4700 || fail "wrapper over main refused"
T1="0 16384 remap /dev/mapper/w1 $S1 4 block_size 512 read_retries 0"
dm_create r1 "$T1" || fail "create r1 failed"
for skip in 2 3 4; do
	dd if=/dev/mapper/r1 of=/dev/null bs=1M skip=$skip count=1 iflag=direct 2>/dev/null &&
		fail "read of MiB $skip succeeded over bad blocks"
done
want="blocks 512 pending 4572 unrecorded 128 8668 8795"
[ "$(dmsetup message r1 0 lost | sed -n 1p)" = "$want" ] ||
	fail "lost head: '$(dmsetup message r1 0 lost | sed -n 1p)', want '$want'"
[ "$(dmsetup message r1 0 lost | sed -n 2p | wc -w)" = 4572 ] || fail "lost lists $(dmsetup message r1 0 lost | sed -n 2p | wc -w) sectors, want 4572"
dmsetup message r1 0 lost | sed -n 2p | tr ' ' '\n' >/tmp/listed
seq 4096 8667 | cmp -s - /tmp/listed || fail "listed sectors are not 4096-8667"
[ "$(dmsetup message r1 0 pending | wc -w)" = 4572 ] || fail "pending lists $(dmsetup message r1 0 pending | wc -w)"
dm_remove r1
dm_create r1 "$T1" || fail "re-create r1 failed"
[ "$(dmsetup message r1 0 lost | sed -n 1p)" = "$want" ] || fail "lost head after re-create: '$(dmsetup message r1 0 lost | sed -n 1p)'"
dm-remap-tool lost --json r1 >/tmp/out
grep -q '"unrecorded":{"count":128,"first_sector":8668,"last_sector":8795}' /tmp/out || fail "lost --json r1: $(cut -c1-200 /tmp/out)..."
[ "$(dmsetup message r1 0 clear_pending)" = "cleared 4572" ] || fail "clear_pending did not clear 4572"
[ "$(dmsetup message r1 0 lost)" = "blocks 512 pending 0 unrecorded 0" ] || fail "lost after clear_pending: '$(dmsetup message r1 0 lost)'"
dm_remove r1
tool $S1
[ $rc = 0 ] || fail "lost $S1 after clear_pending: exit $rc: $(cat /tmp/out)"
