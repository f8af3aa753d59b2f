# An unreadable sector in the first 2 MiB of the spare, where the module
# reads once to find the metadata copies: the copies are still found, place
# by place, and loaded. The spare sits under dm-dust, whose bad 4 KiB blocks
# fail reads until they are written (as a disk reassigns a pending sector on
# a write). A spare formatted with 2 copies and a remap, then:
# - block 500 (sectors 4000-4007, in the metadata area, in no copy)
#   unreadable: loads from copy 0;
# - block 0 (copy 0's header) unreadable: loads from copy 1 and repairs copy
#   0, with or without `format` on the table line, and does not format over
#   copy 1.
# A blank spare with block 500 unreadable is formatted as usual.
# dmr-needs: CONFIG_DM_DUST
. /tests/lib.sh
load_module

two_copy_spare
dm-remap-tool dump $S | grep -q "^copy 1 at sector [0-9]*: valid" || fail "no copy 1: $(dm-remap-tool dump $S)"
ps=$(dm-remap-tool dump $S | sed -n 's/^pool start *//p')
[ "$ps" -ge 4096 ] || fail "pool starts at $ps, before block 500"

dm_dust d $S || fail "dm-dust over the spare refused"
dust d enable

dust d addbadblock 500
dd if=/dev/mapper/d of=/dev/null bs=4096 skip=500 count=1 iflag=direct 2>/dev/null &&
	fail "block 500 of the spare reads"
loads_copy "block 500 unreadable" 0 "0 131072 remap $M /dev/mapper/d"
for feat in "" " 1 format"; do
	dust d addbadblock 0
	loads_copy "block 0 unreadable, '$feat'" 1 "0 131072 remap $M /dev/mapper/d$feat"
	since_mark | grep -q "metadata copy 0 repaired" || fail "'$feat': copy 0 not repaired: $(since_mark | grep dm-remap)"
done
dust d clearbadblocks
dm_remove d

# A blank spare with block 500 unreadable.
B=$(new_loop 16M)
dm_dust b $B || fail "dm-dust over the blank spare refused"
dust b addbadblock 500
dust b enable
mark
dm_create t "0 131072 remap $M /dev/mapper/b" ||
	fail "blank spare with block 500 unreadable: refused: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -q "spare formatted" || fail "blank spare not formatted: $(since_mark | grep dm-remap)"
[ "$(dmsetup message t 0 count)" = 0 ] || fail "count $(dmsetup message t 0 count) on a new spare"
dm_remove t
dm_remove b
