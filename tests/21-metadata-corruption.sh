# Corruption matrix: any mix of zeroed, bit-flipped, torn (header older than
# entries) and stale copies, up to all but one, loads every remap and repairs
# the damaged copies; with every copy bad the spare is refused and nothing on
# it is overwritten.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
T="0 32768 remap $M $S"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 64 auto 16 >/dev/null || fail "add 1"
dm_remove t
# Where each copy is, and every copy's header and first entry unit at this
# generation (for stale and torn copies).
# (copy_at's answers, from one dump.)
blockdev --flushbufs $S
dm-remap-tool dump --json $S >/tmp/dump
i=0
while [ $i -lt 5 ]; do
	at=$(grep -o "\"index\":$i,\"sector\":[0-9]*" /tmp/dump)
	at=${at##*:}
	[ -n "$at" ] || fail "no copy $i"
	eval AT$i=$at
	dd if=$S of=/tmp/old.$i bs=512 skip=$at count=16 2>/dev/null
	i=$((i + 1))
done
dm_create t "$T" || fail "recreate failed"
dmsetup message t 0 add_remap 300 auto 8 >/dev/null || fail "add 2"
want=$(remaps t)
dm_remove t

damage() { # KIND COPY
	eval at=\$AT$2
	case $1 in
	zero) dd if=/dev/zero of=$S bs=512 seek=$at count=1 conv=notrunc 2>/dev/null ;;
	flip) printf '\377' | dd of=$S bs=1 seek=$(((at + 8) * 512 + 40)) conv=notrunc 2>/dev/null ;;
	torn) dd if=/tmp/old.$2 of=$S bs=512 seek=$at count=1 conv=notrunc 2>/dev/null ;;
	stale) dd if=/tmp/old.$2 of=$S bs=512 seek=$at count=16 conv=notrunc 2>/dev/null ;;
	esac
}

check_load() { # EXPECTED-REPAIRS
	mark
	dm_create t "$T" || fail "create refused after damage ($case)"
	[ "$(remaps t)" = "$want" ] || fail "$case: remaps '$(remaps t)', want '$want'"
	n=$(since_mark | grep -c "metadata copy [0-9] repaired")
	[ "$n" = "$1" ] || fail "$case: $n copies repaired, want $1"
	dm_remove t
	mark
	dm_create t "$T" || fail "$case: create after repair failed"
	since_mark | grep -q repaired && fail "$case: still damaged after repair"
	dm_remove t
}

for kind in zero flip torn stale; do
	case="$kind x4"
	for c in 0 1 2 3; do damage $kind $c; done
	check_load 4
done
case="mixed, copy 2 intact"
damage zero 0
damage flip 1
damage torn 3
damage stale 4
check_load 4
case="single zeroed copy 4"
damage zero 4
check_load 1

# Every copy bad: refused, and the metadata area is left as it was.
for c in 0 1 2 3 4; do damage zero $c; done
no_check $S
sum=$(meta_sum $S)
expect_bad_table t "$T" "Spare has no valid metadata and is not blank"
[ "$(meta_sum $S)" = "$sum" ] || fail "a refused spare was written"
