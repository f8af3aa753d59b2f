# A spare holding anything but blank space or this pair's metadata is refused
# without being written: random data, or another device pair's metadata. The
# format feature overrides that, never valid metadata of this pair.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
dd if=/dev/urandom of=$S bs=1M count=2 conv=notrunc 2>/dev/null
sum=$(meta_sum $S)
expect_bad_table t "0 65536 remap $M $S" "Spare has no valid metadata and is not blank"
[ "$(meta_sum $S)" = "$sum" ] || fail "refused spare was written"

mark
dm_create t "0 65536 remap $M $S 1 format" || fail "format refused"
since_mark | grep -q "spare formatted with 5 metadata copies" || fail "not formatted"
dmsetup message t 0 add_remap 8 auto >/dev/null || fail "add failed"
dm_remove t
# `format` does not wipe this pair's metadata.
dm_create t "0 65536 remap $M $S 1 format" || fail "recreate with format failed"
[ "$(dmsetup message t 0 count)" = 1 ] || fail "format wiped valid metadata"
dm_remove t

# Another pair: the same spare with a smaller main.
M2=$(new_loop 16M)
sum=$(meta_sum $S)
expect_bad_table t "0 32768 remap $M2 $S" "Spare belongs to a different device pair"
[ "$(meta_sum $S)" = "$sum" ] || fail "foreign spare was written"
