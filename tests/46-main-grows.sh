# Growing main (as lvextend does) keeps the remaps: the next table over the
# larger main loads them, logs the new size and records it in every copy;
# data written before reads back. A main smaller than recorded is another
# pair and is refused without being written.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
dmsetup create lv --table "0 65536 linear $M0 0" || fail "lv create failed"
echo lv >>$_STATE/devs
dm_create t "0 65536 remap /dev/mapper/lv $S 2 block_size 4096" || fail "create failed"
DT=$(dm_devt t)
dmsetup message t 0 add_remap 800 auto 16 >/dev/null || fail "add_remap failed"
dd if=/dev/urandom of=/tmp/pat bs=4k count=4 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=4k seek=99 oflag=direct 2>/dev/null || fail "write failed"
dm_remove t

# lvextend: 32 MiB -> 64 MiB.
dmsetup suspend lv && dmsetup reload lv --table "0 131072 linear $M0 0" && dmsetup resume lv ||
	fail "growing lv failed"
mark
dm_create t "0 131072 remap /dev/mapper/lv $S 2 block_size 4096" ||
	fail "create over the grown main refused: $(since_mark | grep -E 'remap|device-mapper')"
DT=$(dm_devt t)
since_mark | grep -q "dm-remap: $DT: main grew from 65536 to 131072 sectors: metadata updated" ||
	fail "no growth line: $(since_mark | grep dm-remap)"
[ "$(dmsetup message t 0 count)" = 2 ] || fail "count $(dmsetup message t 0 count) after growing, want 2"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=99 count=4 iflag=direct 2>/dev/null || fail "read failed"
cmp -s /tmp/got /tmp/pat || fail "data differs after growing"
dmsetup message t 0 add_remap 100000 auto >/dev/null || fail "add_remap in the grown part failed"
dm_remove t
mark
dm_create t "0 131072 remap /dev/mapper/lv $S 2 block_size 4096" || fail "re-create failed"
since_mark | grep -q "main grew" && fail "growth logged twice"
[ "$(dmsetup message t 0 count)" = 3 ] || fail "count $(dmsetup message t 0 count), want 3"
dm_remove t

# Shrunk back: refused, the spare untouched.
dmsetup suspend lv && dmsetup reload lv --table "0 65536 linear $M0 0" && dmsetup resume lv ||
	fail "shrinking lv failed"
sum=$(meta_sum $S)
expect_bad_table t "0 65536 remap /dev/mapper/lv $S 2 block_size 4096" "Spare belongs to a different device pair"
[ "$(meta_sum $S)" = "$sum" ] || fail "the refused table wrote the spare"
# The clean-up check of the spare must pass at the size it was left at.
dmsetup suspend lv && dmsetup reload lv --table "0 131072 linear $M0 0" && dmsetup resume lv ||
	fail "growing lv again failed"
