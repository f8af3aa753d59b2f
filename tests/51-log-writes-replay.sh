# Crash points from a real log: the spare sits behind dm-log-writes while fio
# writes and verifies through the remap device over bad blocks of main
# (automatic remaps) and a storm of add_remap / remove_remap messages runs;
# after every acknowledged message a mark in the log names it. The log is
# then replayed onto a zeroed image the size of the spare, and the image is
# checked at every flush and FUA point and every mark, as if the power had
# failed there:
# - the spare loads: a copy is valid, copies of one generation agree, and
#   the loaded generation never goes back (stale copies, interrupted commits
#   and blank copies are what a commit in progress leaves; nothing else is);
# - at each mark, every remap acknowledged so far is present and every
#   acknowledged removal absent; a write to a bad block outside fio's area,
#   made by dd during the storm, is marked when dd has its acknowledgment,
#   and from that mark on its automatic remap must be present; once fio is
#   done, every bad block it wrote is remapped (its writes were
#   acknowledged).
# dmr-needs: CONFIG_DM_LOG_WRITES
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
LOG=$(new_loop 64M)
# For the points inside the format: a scratch pair.
LM=$(new_loop 64M)
LS=$(new_loop 16M)
# Bad 4 KiB blocks of main inside fio's 2 MiB, by first sector.
BAD="24 800 808 4088"
# Bad blocks written one by one by dd during the storm.
LONE="40000 50000 60000"
ranges=""
for s in $BAD $LONE; do ranges="$ranges $s:8"; done
dm_wrap w $M0 $ranges || fail "wrapper over main refused"
dm_create lw "0 $(sectors $S) log-writes $S $LOG" || fail "log-writes over the spare refused"
T="0 131072 remap /dev/mapper/w /dev/mapper/lw 4 block_size 4096 copies 3"
dm_create t "$T" || fail "create failed"

# lw_mark TEXT: a mark in the log (one word).
lw_mark() {
	dmsetup message lw 0 mark "$1" || fail "mark $1 refused"
}

dd if=/dev/urandom of=/tmp/lone bs=4096 count=1 2>/dev/null
t0=$(now)
fio --name=v --filename=/dev/mapper/t --direct=1 --ioengine=psync --size=2M \
	--bs=4k --rw=randwrite --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--randseed=51 --output=/tmp/fio.out &
fio_pid=$!

# The storm, outside fio's area: 12 blocks added one by one, every third
# one followed by the removal of the block added before it.
adds=0 removes=0 autos=0 during=0
i=0
while [ $i -lt 12 ]; do
	m=$((65536 + i * 8))
	dmsetup message t 0 add_remap $m auto 8 >/dev/null || fail "add_remap $m failed"
	lw_mark add-$m
	adds=$((adds + 1))
	if [ $((i % 3)) = 2 ]; then
		r=$(dmsetup message t 0 remove_remap $((m - 8)) 8) || fail "remove_remap $((m - 8)) failed"
		[ "$r" = "removed 1" ] || fail "remove_remap $((m - 8)): '$r'"
		lw_mark remove-$((m - 8))
		removes=$((removes + 1))
	fi
	if [ $((i % 4)) = 1 ]; then
		# i = 1, 5, 9: the next lone bad block, written and acknowledged.
		set -- $LONE
		shift $((i / 4))
		dd if=/tmp/lone of=/dev/mapper/t bs=4096 seek=$(($1 / 8)) count=1 oflag=direct \
			conv=notrunc 2>/dev/null || fail "write to bad block $1 failed"
		lw_mark auto-$1
		autos=$((autos + 1))
	fi
	kill -0 $fio_pid 2>/dev/null && during=$((during + 1))
	i=$((i + 1))
done
wait $fio_pid
rc=$?
[ $during -ge 2 ] || fail "fio ended before the storm got going ($during rounds)"
[ $rc -eq 0 ] || { cat /tmp/fio.out; fail "fio failed (status $rc)"; }
grep -q "err= 0" /tmp/fio.out || { cat /tmp/fio.out; fail "fio reported errors"; }
lw_mark fio-done
for s in $LONE; do
	dd if=/dev/mapper/t of=/tmp/got bs=4096 skip=$((s / 8)) count=1 iflag=direct 2>/dev/null ||
		fail "read of bad block $s failed"
	cmp -s /tmp/got /tmp/lone || fail "bad block $s reads back different data"
done
nbad=$(echo $BAD $LONE | wc -w)
[ "$(dm_stat t auto_remaps)" = $nbad ] || fail "auto_remaps $(dm_stat t auto_remaps), want $nbad"
[ "$(dmsetup message t 0 count)" = $((adds - removes + nbad)) ] ||
	fail "count $(dmsetup message t 0 count), want $((adds - removes + nbad))"
dm_remove t
dm_remove lw

# The replay: dm-remap-tool dump's text at every point, made in the
# replayer's process (--dump: a process per point is dear on the debug
# kernel), judged afterwards in one pass.
IMG=/tmp/replay.img
truncate -s $(($(sectors $S) * 512)) $IMG
t1=$(now)
dmr-log-replay --log $LOG --replay $IMG --dump >/tmp/replay.out 2>&1 ||
	fail "replay: $(tail -5 /tmp/replay.out)"
t2=$(now)
sum=$(tail -1 /tmp/replay.out)
note "$sum"
# Per point: problems other than those a commit in progress leaves are
# invalid, and so is a generation below an earlier point's. A format that
# stopped before copy 0's header is blank to the tool ("formatting
# interrupted") and to the module (nothing was acknowledged yet): such points
# are listed as "unfinished ENTRY" and also loaded by the module below. At marks, the remaps
# acknowledged so far must be present and the acknowledged removals absent.
awk -v bad="$BAD" '
function fail(m) {
	print "FAIL point " n " (" kind ", entry " entry (mark != "" ? ", mark " mark : "") "): " m
	failed = 1
	exit 1
}
function judge(   i, j, k, found, a) {
	if (n == "")
		return
	if (blank || unfinished) {
		if (prev > 0)
			fail(blank ? "blank after generation " prev : "no valid header after generation " prev)
		if (mark != "")
			fail("not formatted at a mark")
		if (unfinished)
			print "unfinished " entry
		return
	}
	if (gen == "")
		fail("no generation")
	if (gen + 0 < prev)
		fail("generation " gen " loaded after generation " prev)
	prev = gen + 0
	if (mark == "")
		return
	marks++
	if (mark ~ /^add-/) {
		k = substr(mark, 5); acked[k] = 1; delete removed[k]
	} else if (mark ~ /^auto-/) {
		k = substr(mark, 6); acked[k] = 1
	} else if (mark ~ /^remove-/) {
		k = substr(mark, 8); delete acked[k]; removed[k] = 1
	} else if (mark == "fio-done") {
		split(bad, a, " ")
		for (i in a)
			acked[a[i]] = 1
	}
	for (k in acked) {
		found = 0
		for (j = 1; j <= nx; j++)
			if (k + 0 >= em[j] && k + 0 < em[j] + en[j])
				found = 1
		if (!found)
			fail("acknowledged remap of sector " k " missing (generation " gen ")")
	}
	for (k in removed)
		for (j = 1; j <= nx; j++)
			if (k + 0 >= em[j] && k + 0 < em[j] + en[j])
				fail("acknowledged removal of sector " k " not on disk (generation " gen ")")
}
$1 == "point" {
	judge()
	n = $2; kind = $3; entry = $4; mark = $5
	gen = ""; blank = 0; unfinished = 0; nx = 0
	points++
	next
}
/^blank metadata area \(formatting interrupted/ { unfinished = 1; next }
/^blank metadata area/ { blank = 1; next }
$1 == "generation" { gen = $2; next }
/^problem: copy [0-9]+ \(sector [0-9]+\): (stale \(generation|interrupted commit|blank$)/ { next }
/^problem: / { fail("invalid state: " substr($0, 10)) }
NF == 3 && $0 ~ /^[0-9]+ [0-9]+ [0-9]+$/ { nx++; em[nx] = $1; en[nx] = $3 }
END {
	if (!failed) {
		judge()
		print "judged " points " points, " marks " marks, last generation " prev
	}
}' /tmp/replay.out >/tmp/judge.out || {
	dmr-log-replay --log $LOG --replay $LS --limit 12 --verbose 2>&1 | grep -v "^point"
	head -60 /tmp/replay.out
	fail "$(grep FAIL /tmp/judge.out)"
}
rm -f $IMG
judged=$(tail -1 /tmp/judge.out)
note "$judged"
# The unfinished formats, replayed alone: the module formats them again.
unfinished=0
for e in $(sed -n 's/^unfinished //p' /tmp/judge.out); do
	# $LS starts zeroed; a second point needs it zeroed again.
	[ $unfinished = 0 ] || dd if=/dev/zero of=$LS bs=1M 2>/dev/null
	dmr-log-replay --log $LOG --replay $LS --limit $((e + 1)) >/tmp/limit.out 2>&1 ||
		fail "replay to entry $e: $(cat /tmp/limit.out)"
	dm_create pt-load "0 131072 remap $LM $LS 4 block_size 4096 copies 3" ||
		fail "the format stopped at entry $e does not load"
	dm_remove pt-load
	unfinished=$((unfinished + 1))
done
note "$(echo "$t0 $t1 $t2 $(now)" | awk '{ printf "storm %.0f s, replay %.0f s, judge %.0f s", $2 - $1, $3 - $2, $4 - $3 }')"
note "marks: $adds add_remap, $removes remove_remap ($during while fio ran), fio-done, log end; $nbad automatic remaps ($autos by lone dd writes, each checked from its own mark on); $unfinished points inside the format loaded by the module"
points=$(echo "$sum" | sed -n 's/.*checked \([0-9]*\) points.*/\1/p')
[ "${points:-0}" -ge $((3 * (adds + removes))) ] || fail "too few points: $sum"
[ "$judged" = "judged $points points, $((adds + removes + autos + 2)) marks, last generation ${judged##* }" ] ||
	fail "points judged: $judged, replayed: $sum"
