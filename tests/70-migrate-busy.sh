# migrate_to on 4Kn devices, with faults and with the device busy: an old
# spare that fails a read stops the move and keeps the device on it with
# nothing lost; while a slow new spare (writes delayed 100 ms) takes the
# remaps, messages that change nothing are answered and the others are
# refused with EBUSY; the finished move keeps every byte.
. /tests/lib.sh
load_module

M=$(new_loop 16M -b 4096)
S=$(new_loop 16M -b 4096)
N=$(new_loop 32M -b 4096)
dm_wrap sw $S || fail "wrapper over the spare refused"
T="remap $M"
dm_create t "0 32768 $T /dev/mapper/sw" || fail "create failed"
dmsetup message t 0 add_remap 8192 auto 2048 >/dev/null || fail "add_remap of 256 blocks failed"
dd if=/dev/urandom of=/dev/mapper/t bs=1M count=16 oflag=direct 2>/dev/null || fail "pattern write failed"
dd if=/dev/mapper/t of=/tmp/before bs=1M iflag=direct 2>/dev/null || fail "read failed"
same() {
	dd if=/dev/mapper/t of=/tmp/now bs=1M iflag=direct 2>/dev/null && cmp -s /tmp/before /tmp/now ||
		fail "the device reads other data ($1)"
}

# The spare block of main sector 9000 cannot be read: the move stops there.
q=$(dmsetup message t 0 query 9000)
[ "${q%% *}" = spare ] || fail "main sector 9000 is at '$q'"
p=${q#* }
dm_rewrap sw $S $((p - p % 8)):8
mark
dmsetup reload t --table "0 32768 $T /dev/mapper/sw 2 migrate_to $N" || fail "reload with migrate_to refused"
dmsetup resume t || fail "resume with migrate_to failed"
since_mark | grep -q "moving to spare .* stopped: read error on the old spare at sector [0-9]*; the device stays on spare" ||
	fail "no word of the stopped move: $(since_mark | grep 'remap:')"
dmsetup table t | grep -q " migrate_to " || fail "table after the stopped move: $(dmsetup table t)"
[ "$(dmsetup message t 0 count)" = 256 ] || fail "count $(dmsetup message t 0 count) after the stopped move"
dm_rewrap sw $S
same "after the stopped move"

# A slow new spare: the move takes seconds, and messages come in meanwhile.
dm_create nd "0 $(sectors $N) delay $N 0 0 $N 0 100" || fail "dm-delay over the new spare refused"
dmsetup reload t --table "0 32768 $T /dev/mapper/sw 2 migrate_to /dev/mapper/nd" ||
	fail "reload with a slow new spare refused"
rm -f /tmp/rc
mark
(
	dmsetup resume t
	echo $? >/tmp/rc
) &
answered=0 busy=0
while [ ! -e /tmp/rc ]; do
	dmsetup message t 0 count >/dev/null 2>&1 && answered=$((answered + 1))
	dmsetup message t 0 set auto_remap on >/dev/null 2>&1 || busy=$((busy + 1))
done
wait
[ "$(cat /tmp/rc)" = 0 ] || fail "resume with a slow new spare failed"
note "during the move: $answered count messages answered, $busy set messages refused"
since_mark | grep -q "moved 256 remapped blocks from spare" || fail "no word of the move: $(since_mark | grep 'remap:')"
[ $busy -gt 0 ] || fail "no message was refused during the move"
since_mark | grep -q "set: moving to the migrate_to spare; try again once it is done" ||
	fail "no word of the refused message: $(since_mark | grep 'remap:')"
dmsetup message t 0 set auto_remap on >/dev/null || fail "set after the move failed"
read -r md </sys/block/"${M#/dev/}"/dev
[ "$(dmsetup table t)" = "0 32768 remap $md $(dm_devt nd)" ] ||
	fail "table after the move: $(dmsetup table t)"
same "after the move"
dmsetup reload t --table "0 32768 $T /dev/mapper/nd" || fail "reload over the new spare alone refused"
dmsetup resume t || fail "resume over the new spare alone failed"
same "over the new spare alone"
[ "$(dmsetup message t 0 count)" = 256 ] || fail "count $(dmsetup message t 0 count) over the new spare"
dm_remove t
rm -f /tmp/before /tmp/now /tmp/rc
