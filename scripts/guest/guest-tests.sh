#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job that runs guest tests. The host hands them out one at a time:
# several guests share one queue, and a guest asks for its next test when it
# is done with the last. Each test runs in its own shell with a time limit. A
# test fails when it exits non-zero, when the kernel log written during it
# shows a problem (BUG, WARNING, Oops, lockdep, suspicious RCU usage, KASAN,
# UBSAN, hung task), or when it leaves dm devices, loop devices or the module
# behind. When the queue is empty, kmemleak is asked for leaks.
#
# Protocol, on the control port /dev/ttyS1 (the kernel command line has
# dmr.ctl): the guest writes "NEXT", the host answers with a test name
# (NN-name, a file /tests/NN-name.sh) or "DONE". Without dmr.ctl the guest
# runs every test in order. Results go to the console: one
# "DMR-RESULT PASS|FAIL NAME SECONDS [REASON]" line per test, followed by the
# test's notes or, on failure, its output and kernel log; "DMR-SUMMARY PASS
# FAIL" at the end.
#
# /run/files/dmr-test.conf may set TEST_TIMEOUT (seconds per test) and
# KMEMLEAK=0 (skip the leak check).

TEST_TIMEOUT=600
KMEMLEAK=1
[ -f /run/files/dmr-test.conf ] && . /run/files/dmr-test.conf

PROBLEMS='BUG:|WARNING:|Oops|UBSAN:|KASAN:|suspicious RCU usage|possible recursive locking|circular locking|inconsistent lock state|general protection fault|Call Trace:|blocked for more than|kmemleak: .*leak'

pass=0
failed=0
kmemleak=/sys/kernel/debug/kmemleak
[ -w $kmemleak ] && echo clear >$kmemleak
# The boot log is not any test's.
dmesg -c >/dev/null

# now_s: whole seconds since boot, into $now_s (a builtin read, without the
# fork of a `$(...)`: under the debug kernel a process start costs 50 to 80
# ms, and the runner's own steps add up over a suite).
now_s() {
	read -r _up _ </proc/uptime
	now_s=${_up%.*}
}

result() { # PASS|FAIL NAME SECONDS [REASON]
	echo "DMR-RESULT $*"
}

# next_test: prints the name of the next test to run; fails when none is left.
if grep -qw dmr.ctl /proc/cmdline; then
	stty -F /dev/ttyS1 raw -echo || exit 1
	exec 3<>/dev/ttyS1
	next_test() {
		echo NEXT >&3
		read -r _next <&3 || return 1
		[ "$_next" != DONE ] && echo "$_next"
	}
else
	ls /tests | sed -n 's/^\([0-9].*\)\.sh$/\1/p' >/tmp/.queue
	next_test() {
		_next=$(sed -n 1p /tmp/.queue)
		sed -i 1d /tmp/.queue
		[ -n "$_next" ] && echo "$_next"
	}
fi

run_test() { # NAME
	name=$1
	t=/tests/$name.sh
	# Each test starts with an empty /tmp (but the runner's own files): tests
	# use fixed names there (/tmp/expect, ...), and a file left by an earlier
	# test must not stand in for one this test forgot to write.
	mounts=
	while read -r m; do
		mounts="$mounts $m
"
	done </proc/mounts
	stale=
	for f in /tmp/* /tmp/.[!.]*; do
		case $f in
		/tmp/out.* | /tmp/dmesg.* | /tmp/.queue | '/tmp/*' | '/tmp/.[!.]*') ;;
		*) case $mounts in
			*" $f "*) [ -d "$f" ] || stale="$stale $f" ;;
			*) stale="$stale $f" ;;
			esac ;;
		esac
	done
	[ -z "$stale" ] || rm -rf $stale 2>/dev/null
	if [ ! -f "$t" ]; then
		failed=$((failed + 1))
		result FAIL "$name" 0 "no such test"
		return
	fi
	echo "dmr-test-start $name" >/dev/kmsg
	now_s
	start=$now_s
	timeout "$TEST_TIMEOUT" /bin/sh -c ". /etc/dmr-env.sh; cd /tmp; . $t" >/tmp/out.$name 2>&1
	rc=$?
	now_s
	secs=$((now_s - start))
	# Read and clear: the next test's log (and the `dmesg` its since_mark
	# reads) starts empty, and a late message lands in the next test's log
	# rather than in nobody's.
	dmesg -c >/tmp/dmesg.$name

	reason=
	[ $rc -eq 0 ] || reason="exit status $rc"
	[ $rc -eq 143 ] && reason="timed out after $TEST_TIMEOUT s"
	if grep -Eq "$PROBLEMS" /tmp/dmesg.$name; then
		reason="${reason:+$reason; }kernel log reports a problem"
	fi
	# What a test left behind (`dmsetup ls` also sees a device whose table
	# never loaded, which has no block device in sysfs).
	case $(dmsetup ls 2>&1) in
	*"No devices found"*) ;;
	*)
		reason="${reason:+$reason; }left dm devices behind"
		dmsetup remove_all --force >/dev/null 2>&1
		;;
	esac
	# Bound loop devices, as `losetup -a` finds them, without its process.
	for d in /sys/block/loop*/loop; do
		[ -e "$d" ] || continue
		reason="${reason:+$reason; }left loop devices behind"
		losetup -D
		break
	done
	if [ -d /sys/module/dm_remap ]; then
		rmmod dm_remap 2>/dev/null || reason="${reason:+$reason; }module cannot be unloaded"
	fi

	if [ -z "$reason" ]; then
		pass=$((pass + 1))
		result PASS "$name" "$secs"
		# Figures a passing test reports (`note`).
		while IFS= read -r l; do
			case $l in "# "*) echo "| $l" ;; esac
		done </tmp/out.$name
	else
		failed=$((failed + 1))
		result FAIL "$name" "$secs" "$reason"
		echo "---- output of $name"
		sed 's/^/| /' /tmp/out.$name
		echo "---- kernel log during $name"
		grep -v '^$' /tmp/dmesg.$name | sed 's/^/| /' | tail -150
		echo "----"
	fi
	rm -f /tmp/out.$name /tmp/dmesg.$name /tmp/loop.* 2>/dev/null
}

while name=$(next_test); do
	run_test "$name"
done

# Leaks: kmemleak reports objects older than 5 s that a scan finds
# unreferenced. What one scan reports is confirmed by a second (a pointer
# that was in flight during the first, in a register or being copied, is
# seen by the next), and the second's list is the verdict; a first scan that
# finds nothing is the verdict on its own: the tests are over, so a second
# scan would look at the same objects and could only clear a report, never
# add one of theirs. That saves a scan of the whole memory per guest.
if [ -w $kmemleak ] && [ "$KMEMLEAK" = 1 ]; then
	now_s
	start=$now_s
	sleep 6
	echo scan >$kmemleak
	[ -s $kmemleak ] && echo scan >$kmemleak
	now_s
	secs=$((now_s - start))
	if [ -s $kmemleak ]; then
		failed=$((failed + 1))
		result FAIL kmemleak "$secs" "kmemleak reports leaks"
		sed 's/^/| /' $kmemleak | head -100
	else
		pass=$((pass + 1))
		result PASS kmemleak "$secs"
	fi
fi

echo "DMR-SUMMARY $pass $failed"
[ $failed -eq 0 ]
