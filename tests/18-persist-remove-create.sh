# Remaps and the data on their spare blocks survive dmsetup remove + create;
# a blank spare is formatted on first use; removals and clears persist too.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 32M)
T="0 65536 remap $M $S"
mark
dm_create t "$T" || fail "create failed"
since_mark | grep -q "dm-remap: $(dm_devt t): spare formatted with 5 metadata copies" ||
	fail "blank spare not formatted"
for m in "add_remap 1000 auto 24" "add_remap 5000 6000 8" "add_remap 7 auto"; do
	dmsetup message t 0 $m >/dev/null || fail "$m failed"
done
dd if=/dev/urandom of=/tmp/pat bs=512 count=64 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=512 seek=990 oflag=direct 2>/dev/null || fail "write failed"
before=$(remaps t)
dm_remove t

mark
dm_create t "$T" || fail "recreate failed"
since_mark | grep -q "metadata loaded from copy 0 (generation 4, 33 remaps)" ||
	fail "no load line: $(since_mark | grep dm-remap)"
since_mark | grep -q "repaired" && fail "copies repaired after a clean remove"
[ "$(remaps t)" = "$before" ] || fail "remaps changed: '$(remaps t)' vs '$before'"
dd if=/dev/mapper/t bs=512 skip=990 count=64 iflag=direct 2>/dev/null | cmp -s - /tmp/pat ||
	fail "data on remapped blocks lost"

dmsetup message t 0 remove_remap 5000 8 >/dev/null || fail "remove failed"
after_remove=$(remaps t)
dm_remove t
dm_create t "$T" || fail "recreate 2 failed"
[ "$(remaps t)" = "$after_remove" ] || fail "removal not persistent"
dmsetup message t 0 clear_remaps >/dev/null || fail "clear failed"
dm_remove t
dm_create t "$T" || fail "recreate 3 failed"
[ "$(dmsetup message t 0 count)" = 0 ] || fail "clear not persistent"
