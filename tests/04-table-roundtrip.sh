# `dmsetup table` prints the canonical line (devices as major:minor, empty
# feature group omitted), and that line recreates an identical device.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
mm=$(cat /sys/block/${M#/dev/}/dev)
sm=$(cat /sys/block/${S#/dev/}/dev)

check() { # TABLE-IN TABLE-OUT
	dm_create t "$1" || fail "create failed: $1"
	got=$(dmsetup table t)
	[ "$got" = "$2" ] || fail "table of '$1' is '$got', want '$2'"
	dm_remove t
	dm_create t "$got" || fail "recreate from '$got' failed"
	again=$(dmsetup table t)
	[ "$again" = "$got" ] || fail "round trip changed '$got' into '$again'"
	# Reloading the same table keeps it.
	dmsetup reload t --table "$got" || fail "reload failed"
	dmsetup resume t || fail "resume failed"
	[ "$(dmsetup table t)" = "$got" ] || fail "reload changed the table"
	dm_remove t
}

check "0 65536 remap $M $S" "0 65536 remap $mm $sm"
check "0 65536 remap $mm $sm 0" "0 65536 remap $mm $sm"
check "0 65536 remap $M $S 2 block_size 4096" "0 65536 remap $mm $sm 2 block_size 4096"
check "0 32768 remap $M $S" "0 32768 remap $mm $sm"
