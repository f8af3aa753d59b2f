# Growing the spare (lvextend of the LV it is) keeps every remap, the
# pending blocks and the remapped data, and the pool takes in the new space
# as far as its metadata copies have room: the next table over the larger
# spare loads the remaps, logs the new size and pool, and records them in
# every copy; the new pool blocks hold data. Grown again under a live
# device, a reload picks it up (the copies now full: the pool stays). A
# spare smaller than recorded is another pair, refused without a write.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S0=$(new_loop 64M)
# The spare: a linear "LV" over the start of S0, 16 MiB at first.
lv() {
	dmsetup suspend sv && dmsetup reload sv --table "0 $1 linear $S0 0" && dmsetup resume sv ||
		fail "resizing the spare to $1 sectors failed"
}
dmsetup create sv --table "0 32768 linear $S0 0" || fail "sv create failed"
echo sv >>$_STATE/devs
# Main block 200 (sectors 1600-1607) fails every read and write.
dm_wrap mw $M 1600:8 || fail "wrapper over main refused"
T="0 65536 remap /dev/mapper/mw /dev/mapper/sv 2 block_size 4096"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 800 auto 16 >/dev/null || fail "add_remap failed"
dd if=/dev/urandom of=/tmp/pat bs=4k count=4 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=4k seek=99 oflag=direct 2>/dev/null || fail "write failed"
dd if=/dev/mapper/t of=/dev/null bs=4k skip=200 count=1 iflag=direct 2>/dev/null &&
	fail "a read of failing main block 200 passed"
[ "$(dm_field t 10)" = 1 ] || fail "pending $(dm_field t 10), want 1"
pool=$(dm_field t 7)
old=${pool#*/}
dm_remove t

# same WHEN N: the remaps (N of them), the pending block and the data are as
# they were.
same() {
	[ "$(dmsetup message t 0 count)" = $2 ] || fail "$1: count $(dmsetup message t 0 count), want $2"
	[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "$1: pending '$(dmsetup message t 0 pending)', want 1600"
	dd if=/dev/mapper/t of=/tmp/got bs=4k skip=99 count=4 iflag=direct 2>/dev/null || fail "$1: read failed"
	cmp -s /tmp/got /tmp/pat || fail "$1: data differs"
}

# 16 MiB -> 32 MiB while no table holds it.
lv 65536
mark
dm_create t "$T" || fail "create over the grown spare refused: $(since_mark | grep -E 'remap|device-mapper')"
DT=$(dm_devt t)
new=$(dm_field t 7)
new=${new#*/}
[ "$new" -gt "$old" ] || fail "the pool did not grow: $old -> $new blocks"
since_mark | grep -qF "dm-remap: $DT: spare grew from 32768 to 65536 sectors: metadata updated; pool $old -> $new blocks" ||
	fail "no growth line: $(since_mark | grep dm-remap)"
same "grown" 2
dm-remap-tool dump /dev/mapper/sv >/tmp/dump
grep -qx "spare sectors  65536" /tmp/dump && grep -qx "slots          $new" /tmp/dump ||
	fail "the copies do not record the new size and pool: $(grep -E 'spare sectors|slots' /tmp/dump)"
# The pool's last block, in the new space, holds data: a remap to it by hand
# puts main block 5000's data there, on the spare.
start=$(dm-remap-tool dump --json /dev/mapper/sv | grep -o '"pool_start":[0-9]*' | cut -d: -f2)
last=$((start + (new - 1) * 8))
dmsetup message t 0 add_remap 40000 $last 8 >/dev/null || fail "add_remap to the pool's last block ($last) failed"
dd if=/dev/urandom of=/tmp/b bs=4k count=1 2>/dev/null
dd if=/tmp/b of=/dev/mapper/t bs=4k seek=5000 oflag=direct 2>/dev/null || fail "write to block 5000 failed"
dd if=/dev/mapper/sv bs=512 skip=$last count=8 iflag=direct 2>/dev/null | cmp -s - /tmp/b ||
	fail "block 5000's data is not at spare sector $last"
# Every new block can be handed out, and no more.
# (Main blocks 1024-4999, then from 5001 on.)
free=$((new - 3))
dmsetup message t 0 add_remap 8192 auto $((3976 * 8)) >/dev/null &&
	dmsetup message t 0 add_remap 40008 auto $(((free - 3976) * 8)) >/dev/null ||
	fail "add_remap of the $free free blocks failed"
dmsetup message t 0 add_remap 0 auto 8 >/dev/null 2>&1 && fail "add_remap succeeded in a full pool"
dmsetup message t 0 remove_remap 8192 $((3976 * 8)) >/dev/null &&
	dmsetup message t 0 remove_remap 40008 $(((free - 3976) * 8)) >/dev/null || fail "remove_remap failed"
dm_remove t
mark
dm_create t "$T" || fail "re-create failed"
since_mark | grep -q "spare grew" && fail "growth logged twice"
same "re-created" 3
[ "$(dm_field t 7)" = "3/$new" ] || fail "pool $(dm_field t 7) after re-create, want 3/$new"

# 32 MiB -> 48 MiB under the live device, then a reload of the same table:
# the copies have no room for more slots, so the pool stays.
lv 98304
dm-remap-tool check /dev/mapper/sv >/tmp/check || fail "check of a grown spare not yet recorded: $(cat /tmp/check)"
dm-remap-tool dump /dev/mapper/sv | grep -qx "spare sectors  65536 (the device has grown to 98304; recorded at the next load)" ||
	fail "dump of a grown spare: $(dm-remap-tool dump /dev/mapper/sv | grep 'spare sectors')"
mark
dmsetup reload t --table "$T" && dmsetup resume t || fail "reload over the grown spare failed: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -qF "spare grew from 65536 to 98304 sectors: metadata updated; the pool keeps its $new blocks" ||
	fail "no growth line after the reload: $(since_mark | grep dm-remap)"
same "reloaded" 3
[ "$(dm_field t 7)" = "3/$new" ] || fail "pool $(dm_field t 7) after the reload, want 3/$new"
dm_remove t

# Shrunk below what the copies record: refused, the spare untouched.
lv 65536
sum=$(meta_sum /dev/mapper/sv)
expect_bad_table t "$T" "Spare belongs to a different device pair (main or spare smaller"
[ "$(meta_sum /dev/mapper/sv)" = "$sum" ] || fail "the refused table wrote the spare"
dm-remap-tool check /dev/mapper/sv >/dev/null && fail "check passed a spare smaller than recorded"
lv 98304
