# A commit that fails part-way has the outcome the caller was told. Copy 2's
# header fails writes: `remove_remap` writes copies 0 and 1
# whole, so the removal is durable (a load takes the newest valid copy): it
# answers done, the target enters fail mode, and after the spare is restored,
# remove + create loads the removal, repairing copy 2 as torn and copies 3
# and 4 as stale (the commit never reached them). A commit that fails on
# copy 0 is undone and answers so; the old state is what loads.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S0=$(new_loop 16M)
dm_wrap sw $S0 || fail "wrapper over the spare refused"
T="0 131072 remap $M /dev/mapper/sw 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)
dmsetup message t 0 add_remap 800 auto >/dev/null || fail "add_remap 800 failed"
dmsetup message t 0 add_remap 1600 auto >/dev/null || fail "add_remap 1600 failed"

# (1) Copy 2's header fails: the change is kept.
AT2=$(copy_at 2 /dev/mapper/sw)
[ -n "$AT2" ] || fail "no copy 2"
dm_rewrap sw $S0 "$AT2:1"
mark
r=$(dmsetup message t 0 remove_remap 800) || fail "remove_remap failed although copies 0 and 1 hold it: $(since_mark | grep dm-remap)"
[ "$r" = "removed 1" ] || fail "reply '$r'"
since_mark | grep -q "dm-remap: $DT: metadata commit failed: fail mode" || fail "no fail mode: $(since_mark | grep dm-remap)"
[ "$(dmsetup message t 0 count)" = 1 ] || fail "count $(dmsetup message t 0 count), want 1"
dmsetup message t 0 clear_fail >/dev/null 2>&1 && fail "clear_fail succeeded while copy 2 cannot be written"
dm_rewrap sw $S0
dm_remove t
mark
dm_create t "$T" || fail "re-create failed: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -q "metadata loaded from copy 0 (generation [0-9]*, 1 remaps)" ||
	fail "the removal did not load: $(since_mark | grep dm-remap)"
since_mark | grep -q "metadata copy 2 repaired (interrupted commit" ||
	fail "copy 2 not repaired as torn: $(since_mark | grep dm-remap)"
for c in 3 4; do
	since_mark | grep -q "metadata copy $c repaired (stale: generation [0-9]*)" ||
		fail "copy $c not repaired as stale: $(since_mark | grep dm-remap)"
done
[ "$(dmsetup message t 0 query 800 | awk '{ print $1 }')" = main ] || fail "block 100 still remapped"

# (2) Copy 0's header fails: undone, and the old state is what loads.
dm_rewrap sw $S0 0:1
mark
dmsetup message t 0 remove_remap 1600 >/dev/null 2>&1 && fail "remove_remap succeeded although no copy holds it"
[ "$(dmsetup message t 0 count)" = 1 ] || fail "count $(dmsetup message t 0 count) after the undone removal, want 1"
dm_rewrap sw $S0
dm_remove t
dm_create t "$T" || fail "re-create after the undone removal failed"
[ "$(dmsetup message t 0 count)" = 1 ] || fail "count $(dmsetup message t 0 count) after reload, want 1"
[ "$(dmsetup message t 0 query 1600 | awk '{ print $1 }')" = spare ] || fail "the undone removal loaded"
