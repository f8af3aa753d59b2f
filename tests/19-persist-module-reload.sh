# Remaps survive unloading and reloading the module, and the metadata
# generation keeps growing across loads.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
T="0 32768 remap $M $S"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 64 auto 16 >/dev/null || fail "add failed"
before=$(remaps t)
dm_remove t
rmmod dm_remap || fail "rmmod failed"
insmod $MODULE || fail "insmod failed"
mark
dm_create t "$T" || fail "recreate failed"
[ "$(remaps t)" = "$before" ] || fail "remaps lost across module reload"
since_mark | grep -q "(generation 2, 16 remaps)" || fail "unexpected generation: $(since_mark | grep loaded)"
dmsetup message t 0 add_remap 200 auto >/dev/null || fail "add after reload failed"
dm_remove t
mark
dm_create t "$T" || fail "recreate 2 failed"
since_mark | grep -q "(generation 3, 17 remaps)" || fail "generation did not grow: $(since_mark | grep loaded)"
