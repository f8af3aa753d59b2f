#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job that runs the test suite: every /tests/NN-*.sh in order, each in
# its own shell with a time limit. A test fails when it exits non-zero, when
# the kernel log written during it shows a problem (BUG, WARNING, Oops,
# lockdep, suspicious RCU usage, KASAN, UBSAN, hung task), or when it leaves
# dm devices, loop devices or the module behind. A last check asks kmemleak
# for leaks. Prints one DMR-RESULT line per test and DMR-SUMMARY at the end.
#
# /run/files/dmr-test.conf may set FILTER (an egrep pattern on test names)
# and TEST_TIMEOUT (seconds per test).

FILTER=
TEST_TIMEOUT=600
[ -f /run/files/dmr-test.conf ] && . /run/files/dmr-test.conf

PROBLEMS='BUG:|WARNING:|Oops|UBSAN:|KASAN:|suspicious RCU usage|possible recursive locking|circular locking|inconsistent lock state|general protection fault|Call Trace:|blocked for more than|kmemleak: .*leak'

pass=0
failed=0
kmemleak=/sys/kernel/debug/kmemleak
[ -w $kmemleak ] && echo clear >$kmemleak

result() { # PASS|FAIL NAME SECONDS [REASON]
	echo "DMR-RESULT $*"
}

for t in /tests/[0-9]*.sh; do
	name=$(basename "$t" .sh)
	if [ -n "$FILTER" ] && ! echo "$name" | grep -Eq "$FILTER"; then
		continue
	fi
	# Each test starts with an empty /tmp (but the runner's own files): tests
	# use fixed names there (/tmp/expect, ...), and a file left by an earlier
	# test must not stand in for one this test forgot to write.
	for f in /tmp/* /tmp/.[!.]*; do
		case $f in
		/tmp/out.* | /tmp/dmesg.* | '/tmp/*' | '/tmp/.[!.]*') ;;
		*) if [ ! -d "$f" ]; then
			rm -f "$f"
		elif ! grep -q " $f " /proc/mounts; then
			rm -rf "$f" 2>/dev/null
		fi ;;
		esac
	done
	echo "dmr-test-start $name" >/dev/kmsg
	start=$(date +%s)
	timeout "$TEST_TIMEOUT" /bin/sh -c ". /etc/dmr-env.sh; cd /tmp; . $t" >/tmp/out.$name 2>&1
	rc=$?
	secs=$(($(date +%s) - start))
	dmesg | sed -n "/dmr-test-start $name\$/,\$p" >/tmp/dmesg.$name

	reason=
	[ $rc -eq 0 ] || reason="exit status $rc"
	[ $rc -eq 143 ] && reason="timed out after $TEST_TIMEOUT s"
	if grep -Eq "$PROBLEMS" /tmp/dmesg.$name; then
		reason="${reason:+$reason; }kernel log reports a problem"
	fi
	if ! dmsetup ls 2>&1 | grep -q 'No devices found'; then
		reason="${reason:+$reason; }left dm devices behind"
		dmsetup remove_all --force >/dev/null 2>&1
	fi
	if [ -n "$(losetup -a)" ]; then
		reason="${reason:+$reason; }left loop devices behind"
		losetup -D
	fi
	if lsmod | grep -q '^dm_remap '; then
		rmmod dm_remap 2>/dev/null || reason="${reason:+$reason; }module cannot be unloaded"
	fi
	rm -f /tmp/loop.* 2>/dev/null

	if [ -z "$reason" ]; then
		pass=$((pass + 1))
		result PASS "$name" "$secs"
		# Figures a passing test reports (`note`).
		grep '^# ' /tmp/out.$name | sed 's/^/| /'
	else
		failed=$((failed + 1))
		result FAIL "$name" "$secs" "$reason"
		echo "---- output of $name"
		sed 's/^/| /' /tmp/out.$name
		echo "---- kernel log during $name"
		grep -v '^$' /tmp/dmesg.$name | sed 's/^/| /' | tail -150
		echo "----"
	fi
done

# Leaks: kmemleak reports objects that stayed unreferenced over two scans and
# are older than 5 s.
if [ -w $kmemleak ] && { [ -z "$FILTER" ] || echo kmemleak | grep -Eq "$FILTER"; }; then
	start=$(date +%s)
	sleep 6
	echo scan >$kmemleak
	echo scan >$kmemleak
	secs=$(($(date +%s) - start))
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
