# migrate_to moves every remap, its data and the pending list to a new,
# larger spare while the device stays in use: a table reload names the new
# spare, and after the resume the worker moves 10,002 remapped blocks (512
# bytes each) while a writer keeps rewriting remapped blocks. The device then reads exactly
# what it was given, runs on the new spare with a larger pool, shows the
# new spare in its table line, and the old spare is refused by a table.
# A new spare that fails a write stops the move: the device stays on the
# old spare with nothing lost, and a later reload finishes the move.
# Refused without a change: the spare or main itself, a smaller device,
# another logical block size, a device holding data or another spare's
# metadata. (Over a minute on the debug kernels: the 10,000 remaps, whose
# move time the log reports, and ten reloads, seven of them refused.)
. /tests/lib.sh
load_module

ten_thousand_remaps
same() {
	snap now
	cmp -s /tmp/$1.a /tmp/now.a && cmp -s /tmp/$1.b /tmp/now.b ||
		fail "the device reads other data ($2)"
}
snap before
pool=$(dm_field t 7)
table=$(dmsetup table t)
# devno DEV: major:minor of a loop device or of /dev/mapper/NAME.
devno() {
	case $1 in
	/dev/mapper/*) dm_devt "${1#/dev/mapper/}" ;;
	*) read -r _d </sys/block/"${1#/dev/}"/dev && echo "$_d" ;;
	esac
}

# refused LINE MESSAGE: a reload of t with LINE fails with MESSAGE in the
# kernel log and leaves t as it was.
refused() {
	mark
	dmsetup reload t --table "$1" 2>/dev/null && fail "reload accepted: $1"
	since_mark | grep -qF "remap: $2" ||
		fail "no '$2' in the kernel log for: $1 (got: $(since_mark | grep 'remap:'))"
	dmsetup info t | grep -q "Tables present: *LIVE$" || fail "an inactive table is left by: $1"
	[ "$(dmsetup table t)" = "$table" ] || fail "table changed by: $1"
}
refused "0 32768 $T $S 2 migrate_to $S" "migrate_to names the main or the spare device"
refused "0 32768 $T $S 2 migrate_to /dev/mapper/mw" "migrate_to names the main or the spare device"
refused "0 32768 $T $S 1 migrate_to" "Feature migrate_to needs a device"
SMALL=$(new_loop 8M)
refused "0 32768 $T $S 2 migrate_to $SMALL" "migrate_to device is smaller than the spare"
N4=$(new_loop 24M -b 4096)
refused "0 32768 $T $S 2 migrate_to $N4" "migrate_to device's logical block size differs from the spare's"
JUNK=$(new_loop 24M)
printf 'a file system' | dd of=$JUNK bs=1 seek=1024 conv=notrunc 2>/dev/null
refused "0 32768 $T $S 2 migrate_to $JUNK" "The migrate_to spare's metadata area is not blank"
OTHER=$(new_loop 24M)
dm_create o "0 32768 remap $(new_loop 16M) $OTHER" || fail "create of another pair failed"
dm_remove o
refused "0 32768 $T $S 2 migrate_to $OTHER" "The migrate_to spare holds dm-remap metadata of its own"
same before "after the refused reloads"

# A new spare that fails writes in its pool: the move stops, the device
# stays on the old spare with every block, and it takes changes again.
NW=$(new_loop 24M)
dm_wrap nw $NW 10000:8 || fail "wrapper over the failing new spare refused"
mark
dmsetup reload t --table "0 32768 $T $S 2 migrate_to /dev/mapper/nw" || fail "reload with a failing new spare refused"
dmsetup resume t || fail "resume with a failing new spare failed"
move_ended
since_mark | grep -q "moving to spare .* stopped: write error on the new spare at sector .*; the device stays on spare $(devno $S)" ||
	fail "no word of the stopped move: $(since_mark | grep 'remap:')"
dmsetup table t | grep -q "migrate_to $(devno /dev/mapper/nw)$" || fail "table after the stopped move: $(dmsetup table t)"
[ "$(dmsetup message t 0 count)" = 10002 ] || fail "count $(dmsetup message t 0 count) after the stopped move"
same before "after the stopped move"
dmsetup message t 0 add_remap 30000 auto 8 >/dev/null || fail "add_remap after the stopped move failed"
dmsetup message t 0 remove_remap 30000 8 >/dev/null || fail "remove_remap after the stopped move failed"

# The move proper, timed, with a writer rewriting 1 MiB of remapped blocks
# (main sectors 10240-12287) all along; and the failing spare's leftovers
# are taken again once it works (a reload retries).
dd if=/dev/urandom of=/tmp/p2 bs=1M count=1 2>/dev/null
rm -f /tmp/stop
: >/tmp/writes
(
	while [ ! -e /tmp/stop ]; do
		dd if=/tmp/p2 of=/dev/mapper/t bs=64k seek=80 oflag=direct 2>/dev/null || exit 1
		echo >>/tmp/writes
	done
) &
W=$!
dm_rewrap nw $NW
mark
dmsetup reload t --table "0 32768 $T $S 2 migrate_to /dev/mapper/nw" || fail "reload with migrate_to refused"
read -r u0 _ </proc/uptime
_lines /tmp/writes
w0=$_ln
dmsetup resume t || fail "resume with migrate_to failed"
read -r u1 _ </proc/uptime
move_ended
read -r u2 _ </proc/uptime
_lines /tmp/writes
w1=$_ln
: >/tmp/stop
wait $W || fail "the writer failed"
note "$(since_mark | grep -o 'moved .*')"
note "online move of 10,002 remaps (5 MiB of data): resume took $(echo "$u0 $u1" | awk '{ printf "%.2f", $2 - $1 }') s, the move ended $(echo "$u0 $u2" | awk '{ printf "%.2f", $2 - $1 }') s after it began (guest time); the writer rewrote its 1 MiB $((w1 - w0)) times meanwhile"
since_mark | grep -q "moved 10002 remapped blocks from spare $(devno $S) to $(devno /dev/mapper/nw) in [0-9]* ms" ||
	fail "no word of the move: $(since_mark | grep 'remap:')"
since_mark | grep -q "spare pool grown from" || fail "the pool did not grow: $(since_mark | grep 'remap:')"
[ "$(dmsetup table t)" = "0 32768 remap $(devno /dev/mapper/mw) $(devno /dev/mapper/nw)" ] ||
	fail "table after the move: $(dmsetup table t)"
new=$(dm_field t 7)
[ "${new%/*}" = 10002 ] && [ "${new#*/}" -gt "${pool#*/}" ] || fail "pool $new, was $pool"
[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "pending '$(dmsetup message t 0 pending)' after the move"
cp /tmp/before.b /tmp/want.b
dd if=/tmp/p2 of=/tmp/want.b bs=1M seek=4 conv=notrunc 2>/dev/null
cp /tmp/before.a /tmp/want.a
same want "after the move"
since_mark | grep -E "WARNING|BUG" && fail "kernel warnings during the move"

# The device runs on the new spare: what it writes from now on is there
# when the table names the new spare alone, and the old spare is refused.
dd if=/dev/urandom of=/dev/mapper/t bs=64k seek=90 count=4 oflag=direct 2>/dev/null || fail "write after the move failed"
snap want
dmsetup reload t --table "0 32768 $T /dev/mapper/nw" || fail "reload over the new spare alone refused"
dmsetup resume t || fail "resume over the new spare alone failed"
same want "over the new spare alone"
dm_remove t
expect_bad_table t2 "0 32768 $T $S" "Spare's remaps moved to another spare"
dm_create t "0 32768 $T /dev/mapper/nw" || fail "create over the new spare failed"
[ "$(dmsetup message t 0 count)" = 10002 ] || fail "count $(dmsetup message t 0 count) over the new spare"
same want "after remove and create"
# And it works on: a write to the pending block remaps it.
dd if=/dev/zero of=/dev/mapper/t bs=512 seek=1600 count=1 oflag=direct 2>/dev/null ||
	fail "write to the pending block failed"
[ "$(dmsetup message t 0 count)" = 10003 ] || fail "count $(dmsetup message t 0 count) after the write, want 10003"
dm_remove t
rm -f /tmp/before.* /tmp/want.* /tmp/now.* /tmp/p2 /tmp/stop /tmp/writes
