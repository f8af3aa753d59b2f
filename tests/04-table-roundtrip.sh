# `dmsetup table` prints the canonical line (devices as major:minor, empty
# feature group omitted), and that line recreates an identical device.
# Each case gets a blank spare: a spare keeps the block size it was formatted
# with.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
mm=$(cat /sys/block/${M#/dev/}/dev)

check() { # TABLE-IN TABLE-OUT (with $S, $sm set)
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

spare() {
	S=$(new_loop 16M)
	sm=$(cat /sys/block/${S#/dev/}/dev)
}

spare
check "0 65536 remap $M $S" "0 65536 remap $mm $sm"
check "0 65536 remap $mm $sm 0" "0 65536 remap $mm $sm"
check "0 32768 remap $M $S" "0 32768 remap $mm $sm"
spare
check "0 65536 remap $M $S 2 block_size 4096" "0 65536 remap $mm $sm 2 block_size 4096"
spare
check "0 65536 remap $M $S 5 format copies 3 block_size 1024" "0 65536 remap $mm $sm 5 block_size 1024 copies 3 format"
