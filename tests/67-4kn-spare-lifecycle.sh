# A 4Kn pair (4096-byte logical blocks) through a spare's life: remapped
# blocks (by message and by a write error) and a block whose data is lost;
# the spare grown under the live device; then moved offline to a new 4Kn
# spare. At each stage every block but the lost one reads back byte for
# byte and the lost-data report names exactly that block. A new spare with
# 512-byte logical blocks is refused.
. /tests/lib.sh
load_module

M=$(new_loop 32M -b 4096)
S0=$(new_loop 64M -b 4096)
S2=$(new_loop 64M -b 4096)
S512=$(new_loop 64M)
# The spare: a linear "LV" over the start of S0, 16 MiB at first.
dmsetup create sv --table "0 32768 linear $S0 0" || fail "sv create failed"
echo sv >>$_STATE/devs
[ "$(blockdev --getss /dev/mapper/sv)" = 4096 ] || fail "spare logical block size $(blockdev --getss /dev/mapper/sv)"
dm_wrap mw $M || fail "wrapper over main refused"
T="0 65536 remap /dev/mapper/mw /dev/mapper/sv 2 block_size 4096"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 800 auto 16 >/dev/null || fail "add_remap failed"
dd if=/dev/urandom of=/tmp/expect bs=1M count=32 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "write failed"

# Main block 200 (sector 1600) stops reading: its data is lost. Block 3000
# (sector 24000) fails a write: remapped with the new data.
dm_rewrap mw $M 1600:8 24000:8
dd if=/dev/mapper/t of=/dev/null bs=4k skip=200 count=1 iflag=direct 2>/dev/null &&
	fail "a read of failing main block 200 passed"
dd if=/dev/urandom of=/tmp/blk bs=4k count=1 2>/dev/null
dd if=/tmp/blk of=/dev/mapper/t bs=4k seek=3000 oflag=direct 2>/dev/null || fail "write to block 3000 failed"
dd if=/tmp/blk of=/tmp/expect bs=4k seek=3000 conv=notrunc 2>/dev/null

# same DEV WHEN: DEV reads back as /tmp/expect except block 200; the lost
# report names block 200 only; 3 remaps.
same() {
	# In units of BS: the first MiB around block 200 in 4 KiB reads, the
	# rest in 1 MiB ones.
	for r in "4k 0 200" "4k 201 55" "1M 1 31"; do
		set -- $r
		dd if=/dev/mapper/$DEV of=/tmp/got bs=$1 skip=$2 count=$3 iflag=direct 2>/dev/null ||
			fail "$WHEN: read of $3 x $1 from $2 failed"
		dd if=/tmp/expect bs=$1 skip=$2 count=$3 2>/dev/null | cmp -s - /tmp/got ||
			fail "$WHEN: $3 x $1 from $2 differ"
	done
	[ "$(dmsetup message $DEV 0 lost)" = "blocks 4096 pending 1 unrecorded 0
1600" ] || fail "$WHEN: lost '$(dmsetup message $DEV 0 lost)'"
	[ "$(dmsetup message $DEV 0 count)" = 3 ] || fail "$WHEN: count $(dmsetup message $DEV 0 count), want 3"
}
DEV=t WHEN=before
same

# Grown to 32 MiB under the live device: a reload picks it up.
pool=$(dm_field t 7)
old=${pool#*/}
dmsetup suspend sv && dmsetup reload sv --table "0 65536 linear $S0 0" && dmsetup resume sv ||
	fail "growing the spare failed"
mark
dmsetup reload t --table "$T" && dmsetup resume t || fail "reload over the grown spare failed: $(since_mark | grep dm-remap)"
new=$(dm_field t 7)
new=${new#*/}
[ "$new" -gt "$old" ] || fail "the pool did not grow: $old -> $new blocks"
since_mark | grep -q "spare grew from 32768 to 65536 sectors: metadata updated; pool $old -> $new blocks" ||
	fail "no growth line: $(since_mark | grep dm-remap)"
WHEN=grown
same
dm_remove t

# Moved offline to a new 4Kn spare; not to a 512-byte one.
dm-remap-tool migrate /dev/mapper/sv $S512 >/tmp/out 2>&1 && fail "migrate to a 512-byte spare succeeded"
grep -q "512-byte logical blocks" /tmp/out || fail "migrate to a 512-byte spare: $(cat /tmp/out)"
dm-remap-tool migrate /dev/mapper/sv $S2 >/tmp/out 2>&1 || fail "migrate failed: $(cat /tmp/out)"
grep -q "^migrated 3 remapped blocks .* and 1 pending blocks" /tmp/out || fail "migrate said: $(cat /tmp/out)"
rc=0
dm-remap-tool lost $S2 >/tmp/out || rc=$?
[ $rc = 1 ] || fail "lost $S2: exit status $rc, want 1"
grep -qx "main sector 1600" /tmp/out || fail "lost $S2: $(cat /tmp/out)"
dm-remap-tool check $S2 >/tmp/out 2>&1 || fail "check $S2: $(cat /tmp/out)"
dm_create t2 "0 65536 remap /dev/mapper/mw $S2 2 block_size 4096" || fail "create over the new spare failed"
DEV=t2 WHEN=migrated
same
