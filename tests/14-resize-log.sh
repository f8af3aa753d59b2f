# The monitoring guide's loop of 200 add_remap messages works as written and
# resizes the table with the documented log lines, which the guide's own
# analysis script parses. Its spare sectors (5010-7009) are in the pool of a
# spare whose metadata area is the least, 2 MiB: 16 MiB with 512-byte blocks
# (28,672 pool blocks).
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 16M)
dm_create t "0 131072 remap $M $S" || fail "create failed"
dev=$(dmsetup info -c --noheadings -o major,minor t | tr -d ' ')
mark
for i in $(seq 1 200); do
	dmsetup message t 0 "add_remap $((1000 + i * 10)) $((5000 + i * 10)) 10" >/dev/null ||
		fail "add_remap $i failed"
done
[ "$(dmsetup message t 0 count)" = 2000 ] || fail "count $(dmsetup message t 0 count)"
log=$(since_mark)
for t in "64 256 100" "256 1024 390" "1024 4096 1540"; do
	set -- $t
	echo "$log" | grep -q "dm-remap: $dev: Adaptive hash table resize: $1 -> $2 buckets (count=$3)\$" ||
		fail "no resize line $1 -> $2 (count=$3)"
	echo "$log" | grep -q "dm-remap: $dev: Hash table resize complete: $1 -> $2 buckets\$" ||
		fail "no completion line $1 -> $2"
done
[ "$(echo "$log" | grep -c 'Adaptive hash table resize')" = 3 ] || fail "not exactly 3 resizes"
st=$(dmsetup status t)
[ "$st" = "0 131072 remap ok 512 2000 2000/28672 4096 3 0 0 ok on idle 0 0" ] || fail "status '$st'"

bash /tests/data/analyze_resizes.sh >/tmp/analysis || fail "the analysis script failed"
cat /tmp/analysis
grep -q "64 -> 256 buckets (count=100)" /tmp/analysis || fail "analysis missed 64 -> 256"
grep -q "1024 -> 4096 buckets (count=1540)" /tmp/analysis || fail "analysis missed 1024 -> 4096"

# Removing them all shrinks the table back, with the same lines.
mark
dmsetup message t 0 remove_remap 1010 2000 >/dev/null || fail "remove failed"
since_mark | grep -q "Adaptive hash table resize: 4096 -> 64 buckets (count=0)" || fail "no shrink line"
[ "$(dmsetup status t)" = "0 131072 remap ok 512 0 0/28672 64 4 0 0 ok on idle 0 0" ] || fail "status after remove: $(dmsetup status t)"
