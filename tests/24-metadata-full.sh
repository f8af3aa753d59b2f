# The metadata describes the whole pool by default (a 64 MiB spare of
# 512-byte blocks: 120,832 blocks, after a 5 MiB metadata area); the
# metadata_slots feature describes fewer, and past them add_remap is refused
# with a clear error.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 64M)
dm_create t "0 131072 remap $M $S" || fail "create failed"
dmsetup status t | grep -q ' 0/120832 ' || fail "status: $(dmsetup status t)"
dm_remove t
dd if=/dev/zero of=$S bs=1M count=8 conv=notrunc 2>/dev/null

T="0 131072 remap $M $S 2 metadata_slots 49837"
dm_create t "$T" || fail "create with metadata_slots failed"
dmsetup status t | grep -q ' 0/49837 ' || fail "status: $(dmsetup status t)"
dmsetup message t 0 add_remap 0 auto 49837 >/dev/null || fail "filling the metadata area failed"
mark
dmsetup message t 0 add_remap 49837 auto 2>/dev/null && fail "add beyond the metadata area accepted"
since_mark | grep -q "add_remap: metadata area full: it describes 49837 spare blocks and all are in use" ||
	fail "no clear error: $(since_mark | grep dm-remap)"
dm_remove t
# The spare keeps what it was formatted with, whatever the table line says.
dm_create t "0 131072 remap $M $S" || fail "recreate failed"
[ "$(dmsetup message t 0 count)" = 49837 ] || fail "count after reload"
dmsetup status t | grep -q ' 49837/49837 ' || fail "status after reload: $(dmsetup status t)"
