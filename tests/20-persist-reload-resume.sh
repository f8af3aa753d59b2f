# dmsetup reload + resume: remaps added between reload and resume (to the old,
# still live table) are in the new table; the inactive table refuses
# messages until it is resumed; suspend/resume keeps everything.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
T="0 32768 remap $M $S"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 100 auto 8 >/dev/null || fail "add 1 failed"
dmsetup reload t --table "$T" || fail "reload failed"
dmsetup status --inactive t | grep -q ' remap inactive ' || fail "inactive status: $(dmsetup status --inactive t)"
dmsetup message t 0 add_remap 200 auto 8 >/dev/null || fail "add between reload and resume failed"
want=$(remaps t)
mark
dmsetup resume t || fail "resume failed"
[ "$(remaps t)" = "$want" ] || fail "remaps after resume: '$(remaps t)', want '$want'"
since_mark | grep -q "(generation 3, 16 remaps)" || fail "new table did not load the latest metadata"
dmsetup suspend t || fail "suspend failed"
dmsetup resume t || fail "resume 2 failed"
[ "$(remaps t)" = "$want" ] || fail "suspend/resume changed the remaps"
dm_remove t
dm_create t "$T" || fail "recreate failed"
[ "$(remaps t)" = "$want" ] || fail "remaps lost after remove"
