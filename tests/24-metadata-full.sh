# The metadata area describes a bounded number of spare blocks (5 copies in
# 2 MiB: 49837); past that, add_remap is refused with a clear error.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 64M)
dm_create t "0 131072 remap $M $S" || fail "create failed"
dmsetup status t | grep -q ' 0/49837 ' || fail "status: $(dmsetup status t)"
dmsetup message t 0 add_remap 0 auto 49837 >/dev/null || fail "filling the metadata area failed"
mark
dmsetup message t 0 add_remap 49837 auto 2>/dev/null && fail "add beyond the metadata area accepted"
since_mark | grep -q "add_remap: metadata area full: it describes 49837 spare blocks and all are in use" ||
	fail "no clear error: $(since_mark | grep dm-remap)"
dm_remove t
dm_create t "0 131072 remap $M $S" || fail "recreate failed"
[ "$(dmsetup message t 0 count)" = 49837 ] || fail "count after reload"
