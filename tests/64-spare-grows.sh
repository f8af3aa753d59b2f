# Growing the spare (lvextend of the LV it is) keeps every remap, the
# pending blocks and the remapped data: the next table over the larger spare
# loads them, logs the new size and records it in every copy, and the pool
# keeps the blocks its metadata describes. Grown again under a live device,
# a reload picks it up. A spare smaller than recorded is another pair,
# refused without being written.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S0=$(new_loop 64M)
# The spare: a linear "LV" over the first 16 MiB of S0.
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
dm_remove t

# same WHEN: the remaps, the pending block, the pool and the data are as
# they were.
same() {
	[ "$(dmsetup message t 0 count)" = 2 ] || fail "$1: count $(dmsetup message t 0 count), want 2"
	[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "$1: pending '$(dmsetup message t 0 pending)', want 1600"
	[ "$(dm_field t 7)" = "$pool" ] || fail "$1: pool $(dm_field t 7), want $pool (unchanged)"
	dd if=/dev/mapper/t of=/tmp/got bs=4k skip=99 count=4 iflag=direct 2>/dev/null || fail "$1: read failed"
	cmp -s /tmp/got /tmp/pat || fail "$1: data differs"
}

# 16 MiB -> 32 MiB while no table holds it.
lv 65536
mark
dm_create t "$T" || fail "create over the grown spare refused: $(since_mark | grep -E 'remap|device-mapper')"
DT=$(dm_devt t)
since_mark | grep -qF "dm-remap: $DT: spare grew from 32768 to 65536 sectors: metadata updated; the pool keeps its ${pool#*/} blocks" ||
	fail "no growth line: $(since_mark | grep dm-remap)"
same "grown"
dm-remap-tool dump /dev/mapper/sv | grep -qx "spare sectors  65536" ||
	fail "the copies do not record the new size: $(dm-remap-tool dump /dev/mapper/sv | grep 'spare sectors')"
dm_remove t
mark
dm_create t "$T" || fail "re-create failed"
since_mark | grep -q "spare grew" && fail "growth logged twice"
same "re-created"

# 32 MiB -> 48 MiB under the live device, then a reload of the same table.
lv 98304
dm-remap-tool check /dev/mapper/sv >/tmp/check || fail "check of a grown spare not yet recorded: $(cat /tmp/check)"
dm-remap-tool dump /dev/mapper/sv | grep -qx "spare sectors  65536 (the device has grown to 98304; recorded at the next load)" ||
	fail "dump of a grown spare: $(dm-remap-tool dump /dev/mapper/sv | grep 'spare sectors')"
mark
dmsetup reload t --table "$T" && dmsetup resume t || fail "reload over the grown spare failed: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -qF "spare grew from 65536 to 98304 sectors" || fail "no growth line after the reload: $(since_mark | grep dm-remap)"
same "reloaded"
dm_remove t

# Shrunk below what the copies record: refused, the spare untouched.
lv 65536
sum=$(meta_sum /dev/mapper/sv)
expect_bad_table t "$T" "Spare belongs to a different device pair (main or spare smaller"
[ "$(meta_sum /dev/mapper/sv)" = "$sum" ] || fail "the refused table wrote the spare"
dm-remap-tool check /dev/mapper/sv >/dev/null && fail "check passed a spare smaller than recorded"
lv 98304
