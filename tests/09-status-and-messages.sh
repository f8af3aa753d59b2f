# `dmsetup status` prints the documented line; `help` answers through
# dmsetup; unknown messages are refused with a reason in the kernel log.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
dm_create t "0 65536 remap $M $S" || fail "create failed"
st=$(dmsetup status t)
[ "$st" = "0 65536 remap ok 512 0 0/28672 14 0 0 0 ok on idle 0 0" ] || fail "status is '$st'"
h=$(dmsetup message t 0 help) || fail "help failed"
echo "$h" | grep -qx "help" || fail "help printed '$h'"
mark
dmsetup message t 0 frobnicate 2>/dev/null && fail "unknown message accepted"
since_mark | grep -q "dm-remap: $(dm_devt t): frobnicate: unknown message; try 'help'" ||
	fail "no reason in the kernel log"
[ "$(dmsetup status t)" = "$st" ] || fail "status changed by a refused message"
