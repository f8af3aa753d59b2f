# `scan start` and `scan stop` sent at the same time, many times over: after
# each round the scanner is either idle or really running (its position
# moves, or it completes passes), never "running" with no step queued.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 16M)
dm_create t "0 131072 remap $M $S 2 block_size 4096" || fail "create failed"
# Slow enough that a pass takes seconds: a position that stands still for
# a second means no step is queued.
dmsetup message t 0 scan_rate 4 >/dev/null || fail "scan_rate failed"
stuck=0
for round in $(seq 1 12); do
	dmsetup message t 0 scan start >/dev/null &
	dmsetup message t 0 scan stop >/dev/null &
	dmsetup message t 0 scan start >/dev/null &
	wait
	scan_now t
	[ "$state" = running ] || continue
	p0="$position $passes"
	# Stuck: no move for a whole second; the first move seen ends the wait.
	cs
	t0=$cs
	while :; do
		scan_now t
		p1="$position $passes"
		[ "$p0" = "$p1" ] || break
		cs
		[ $((cs - t0)) -lt 100 ] || break
		sleep 0.1
	done
	[ "$p0" != "$p1" ] || { stuck=$((stuck + 1)); note "round $round: running, but stuck at $p0"; }
done
[ $stuck = 0 ] || fail "$stuck rounds left the scanner 'running' with nothing queued"
dmsetup message t 0 scan stop >/dev/null
