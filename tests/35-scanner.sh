# The background scanner: a full pass over main finds every unreadable block
# (adjacent ones, the first and the last block included) and makes it
# pending, skips remapped blocks and leaves the data alone; it keeps to its
# rate limit; it repairs a damaged metadata copy at the end of a pass;
# `scan stop` resets it; it pauses while the device is suspended;
# removing the device or unloading the module while it runs is clean.
#
# The bad blocks are `error` segments of a linear wrapper, swapped in after
# the data is written, rather than dm-dust: dm-dust splits every bio into
# 4 KiB pieces, which makes reading 256 MiB take over 20 s in the test guest.
# dmr-needs: CONFIG_DM_DUST
. /tests/lib.sh
load_module

M0=$(new_loop 256M)
S=$(new_loop 16M)
dm_wrap w $M0 || fail "wrapper over main refused"
dm_create t "0 524288 remap /dev/mapper/w $S 2 block_size 4096" || fail "create failed"
st=$(dmsetup message t 0 scan status) || fail "scan status failed"
[ "$st" = "state idle position 0 total 524288 passes 0 found 0 rate 4 last_pass never" ] ||
	fail "scan status of a new device: '$st'"
dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "pattern write failed"
# Block 40000 is remapped before it goes bad: the scanner must skip it.
dmsetup message t 0 add_remap 320000 auto >/dev/null || fail "add_remap failed"
# Bad blocks: 0, 1, 77, 4096, 4097, 10000, 20001, 33333, 50000, 65535 (last).
BAD="0 8 616 32768 32776 80000 160008 266664 400000 524280"
dm_rewrap w $M0 0:16 616:8 32768:16 80000:8 160008:8 266664:8 320000:8 400000:8 524280:8

# Damage an entry unit of metadata copy 2 that no commit of this test
# rewrites (unit 5: slots 2545-3053; commits of pending blocks write only
# headers and pending units): the end of the pass must find and repair it.
at=$(copy_at 2 $S)
[ -n "$at" ] || fail "no copy 2"
dd if=/dev/urandom of=$S bs=512 seek=$((at + 8 * (1 + 5) + 3)) count=1 oflag=direct conv=notrunc 2>/dev/null ||
	fail "cannot damage the spare"
mark
r=$(dmsetup message t 0 scan_rate 64) || fail "scan_rate 64 failed"
[ -z "$r" ] || fail "scan_rate replied '$r'"
dmsetup message t 0 policy | grep -q " scan_rate 64 " || fail "policy: $(dmsetup message t 0 policy)"
dmsetup message t 0 scan start >/dev/null || fail "scan start failed"
[ "$(dm_field t 14)" = running ] || fail "status scan $(dm_field t 14) after scan start, want running"
cs
t0=$cs
while :; do
	scan_now t
	[ -n "$passes" ] || fail "no passes in scan status: '$(dmsetup message t 0 scan status)'"
	[ "$passes" -ge 1 ] && break
	cs
	[ $((cs - t0)) -le 6000 ] || fail "no full pass after 60 s at 64 MiB/s: $(dmsetup message t 0 scan status)"
	sleep 0.2
done
[ "$(dmsetup message t 0 pending)" = "$BAD" ] || fail "pending '$(dmsetup message t 0 pending)', want '$BAD'"
since_mark | grep -q "dm-remap: $(dm_devt t): metadata copy 2 repaired (bad CRC)\$" ||
	fail "the pass did not repair metadata copy 2: $(since_mark | grep dm-remap)"
since_mark | grep -q "dm-remap: $(dm_devt t): scan pass 1 complete: 10 bad blocks found\$" ||
	fail "no pass line: $(since_mark | grep dm-remap)"
scan_now t
[ "$found" -ge 10 ] || fail "scan found $found, want 10"
[ "$(dm_field t 10)" = 10 ] || fail "status pending $(dm_field t 10), want 10"
[ "$(dm_stat t pending)" = 10 ] || fail "sysfs pending $(dm_stat t pending), want 10"
[ "$(dm_stat t scan_found)" -ge 10 ] || fail "sysfs scan_found $(dm_stat t scan_found), want 10"
[ "$(dm_stat t scan_passes)" -ge 1 ] || fail "sysfs scan_passes $(dm_stat t scan_passes)"
[ "$(dm_field t 16)" -ge 1 ] || fail "status scan passes $(dm_field t 16)"
case $last_pass in
'' | never | *[!0-9]*) fail "last_pass '$last_pass' after a pass, want seconds" ;;
esac
[ "$(dmsetup message t 0 query 320000)" = "spare 4096" ] || fail "remap of 320000 changed"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=2 count=75 iflag=direct 2>/dev/null || fail "read of blocks 2-76 failed"
cmp -s -i $((2 * 4096)):0 -n $((75 * 4096)) /tmp/pat /tmp/got || fail "blocks 2-76 changed"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=78 count=946 iflag=direct 2>/dev/null || fail "read of blocks 78-1023 failed"
cmp -s -i $((78 * 4096)):0 -n $((946 * 4096)) /tmp/pat /tmp/got || fail "blocks 78-1023 changed"
# t keeps scanning, slowly, until it is removed below.
dmsetup message t 0 scan_rate 1 || fail "scan_rate 1 failed"

# Rate: a fresh device over a plain loop at 8 MiB/s; one second to get
# going, then the position over 4 s.
M1=$(new_loop 256M)
S1=$(new_loop 16M)
U="0 524288 remap $M1 $S1"
dm_create u "$U" || fail "create u failed"
dmsetup message u 0 scan_rate 8 || fail "scan_rate 8 failed"
dmsetup message u 0 scan start >/dev/null || fail "scan start on u failed"
sleep 1
t0=$(now)
scan_now u
p0=$position
sleep 4
t1=$(now)
scan_now u
p1=$position
rate=$(awk -v a=$p0 -v b=$p1 -v s=$t0 -v e=$t1 'BEGIN { printf "%.2f", (b - a) * 512 / 1048576 / (e - s) }')
note "scan rate measured $rate MiB/s, limit 8"
awk -v r=$rate 'BEGIN { exit !(r <= 8 * 1.15 && r >= 8 * 0.5) }' ||
	fail "scan rate $rate MiB/s (positions $p0 -> $p1 in $t0 -> $t1 s), want 4-9.2 MiB/s"

# scan stop resets the position; start begins again from 0.
dmsetup message u 0 scan stop >/dev/null || fail "scan stop failed"
scan_now u
[ "$state" = idle ] || fail "scan state $state after stop, want idle"
[ "$position" = 0 ] || fail "scan position $position after stop, want 0"
[ "$(dm_field u 14)" = idle ] && [ "$(dm_field u 15)" = 0 ] ||
	fail "status after scan stop: $(dmsetup status u)"
dmsetup message u 0 scan start >/dev/null || fail "scan start after stop failed"
sleep 1
scan_now u
p=$position
[ "$p" -lt "$p1" ] || fail "scan restarted at $p after stop, want it to start from 0 (stopped past $p1)"

# Suspended: paused, the position stands still; resumed: it moves on.
dmsetup suspend u || fail "suspend u failed"
scan_now u
[ "$state" = paused ] || fail "scan state $state while suspended, want paused"
[ "$(dm_field u 14)" = paused ] || fail "status scan $(dm_field u 14) while suspended, want paused"
p0=$position
sleep 2
scan_now u
p1=$position
[ "$p1" = "$p0" ] || fail "scan moved from $p0 to $p1 while suspended"
dmsetup resume u || fail "resume u failed"
scan_now u
[ "$state" = running ] || fail "scan state $state after resume, want running"
# Within 2 s it moves on; the first move seen ends the wait.
cs
t0=$cs
while :; do
	scan_now u
	p=$position
	[ "$p" -gt "$p1" ] && break
	cs
	[ $((cs - t0)) -lt 200 ] || fail "scan did not move on after resume: $p1 -> $p"
	sleep 0.1
done

# Removal while running (t at 1 MiB/s after its error-narrowing passes, u
# mid-pass).
scan_now t
[ "$state" = running ] || fail "scan on t state $state, want running"
dm_remove t
dm_remove u
# Module unload right after a scan started.
dm_create u "$U" || fail "re-create u failed"
dmsetup message u 0 scan start >/dev/null || fail "scan start on re-created u failed"
dm_remove u
rmmod dm_remap || fail "rmmod right after a scan started failed"
