# One spare serves one remap target: a second device, or a second target of
# the same table, naming a spare that a remap target holds is refused (two
# targets writing one metadata area would destroy each other's remaps);
# reloading the device that holds it works; once it is removed, the spare is
# free for another device.
. /tests/lib.sh
load_module

M1=$(new_loop 32M)
M2=$(new_loop 32M)
S=$(new_loop 16M)
dm_create a "0 65536 remap $M1 $S" || fail "create a failed"
dmsetup message a 0 add_remap 800 auto >/dev/null || fail "add_remap failed"
sum=$(meta_sum $S)
expect_bad_table b "0 65536 remap $M2 $S" "Spare device is in use by another remap target"
[ "$(meta_sum $S)" = "$sum" ] || fail "the refused table changed the spare's metadata"
printf '%s\n' "0 65536 remap $M1 $S" "65536 65536 remap $M2 $S" >/tmp/two
mark
dmsetup create c /tmp/two 2>/dev/null && { dmsetup remove c; fail "a table with two targets on one spare was accepted"; }
since_mark | grep -qF "remap: Spare device is in use by another remap target" ||
	fail "no refusal line for two targets on one spare: $(since_mark | grep remap:)"

# A reload of the device that holds the spare keeps it.
dmsetup table a >/tmp/a.table
dmsetup reload a /tmp/a.table || fail "reload of a refused"
dmsetup resume a || fail "resume of a failed"
[ "$(dmsetup message a 0 count)" = 1 ] || fail "count after reload $(dmsetup message a 0 count)"
dmsetup suspend a && dmsetup reload a /tmp/a.table && dmsetup resume a || fail "suspend + reload + resume failed"

# Removed, the spare is free (another pair then needs 'format').
dm_remove a
dm_create b "0 65536 remap $M2 $S 1 format" || fail "create b after a's removal failed"
dm_remove b
