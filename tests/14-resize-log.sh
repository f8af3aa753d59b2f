# The monitoring guide's loop of 200 add_remap messages works as written and
# resizes the table with the documented log lines, which the guide's own
# analysis script parses. The table has 14 buckets (slots) at first and
# rebuilds a segment for 75 % load when it would pass 85 %: one pair of lines
# for each message that changed the capacity. Its spare sectors (5010-7009) are in the pool of a
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
for t in "14 30 20" "30 62 30" "62 126 60" "126 254 110" "254 510 220" \
	"510 1022 440" "1022 1534 870" "1534 2046 1310" "2046 2558 1740"; do
	set -- $t
	echo "$log" | grep -q "dm-remap: $dev: Adaptive hash table resize: $1 -> $2 buckets (count=$3)\$" ||
		fail "no resize line $1 -> $2 (count=$3)"
	echo "$log" | grep -q "dm-remap: $dev: Hash table resize complete: $1 -> $2 buckets\$" ||
		fail "no completion line $1 -> $2"
done
[ "$(echo "$log" | grep -c 'Adaptive hash table resize')" = 9 ] || fail "not exactly 9 resizes"
st=$(dmsetup status t)
[ "$st" = "0 131072 remap ok 512 2000 2000/28672 2558 9 0 0 ok on idle 0 0" ] || fail "status '$st'"

bash /tests/data/analyze_resizes.sh >/tmp/analysis || fail "the analysis script failed"
cat /tmp/analysis
grep -q "14 -> 30 buckets (count=20)" /tmp/analysis || fail "analysis missed 14 -> 30"
grep -q "2046 -> 2558 buckets (count=1740)" /tmp/analysis || fail "analysis missed 2046 -> 2558"

# Removing them all shrinks the table back, with the same lines.
mark
dmsetup message t 0 remove_remap 1010 2000 >/dev/null || fail "remove failed"
since_mark | grep -q "Adaptive hash table resize: 2558 -> 14 buckets (count=0)" || fail "no shrink line"
[ "$(dmsetup status t)" = "0 131072 remap ok 512 0 0/28672 14 10 0 0 ok on idle 0 0" ] || fail "status after remove: $(dmsetup status t)"
