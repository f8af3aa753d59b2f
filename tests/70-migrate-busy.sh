# migrate_to on 4Kn devices, with faults and with the device busy: an old
# spare that fails a read stops the move and keeps the device on it with
# nothing lost; while a slow new spare (writes delayed 100 ms) takes 2048
# remapped blocks, messages that change nothing are answered and the
# others are refused with EBUSY (a refused 'scan stop' leaves the copy
# going), writes to blocks copied and not yet copied
# land, and a suspend and resume pauses the copy; the finished move keeps
# every byte.
. /tests/lib.sh
load_module

M=$(new_loop 16M -b 4096)
S=$(new_loop 16M -b 4096)
N=$(new_loop 32M -b 4096)
dm_wrap sw $S || fail "wrapper over the spare refused"
T="remap $M"
dm_create t "0 32768 $T /dev/mapper/sw" || fail "create failed"
dmsetup message t 0 add_remap 8192 auto 16384 >/dev/null || fail "add_remap of 2048 blocks failed"
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
move_ended
since_mark | grep -q "moving to spare .* stopped: read error on the old spare at sector [0-9]*; the device stays on spare" ||
	fail "no word of the stopped move: $(since_mark | grep 'remap:')"
dmsetup table t | grep -q " migrate_to " || fail "table after the stopped move: $(dmsetup table t)"
[ "$(dmsetup message t 0 count)" = 2048 ] || fail "count $(dmsetup message t 0 count) after the stopped move"
dm_rewrap sw $S
same "after the stopped move"

# A slow new spare: the move takes seconds, and the device is used all
# along: messages come in, writes land on blocks copied and not yet
# copied, and the device is suspended and resumed once, which pauses the
# copy.
dm_create nd "0 $(sectors $N) delay $N 0 0 $N 0 100" || fail "dm-delay over the new spare refused"
dmsetup reload t --table "0 32768 $T /dev/mapper/sw 2 migrate_to /dev/mapper/nd" ||
	fail "reload with a slow new spare refused"
dd if=/dev/urandom of=/tmp/p bs=4k count=1 2>/dev/null
mark
dmsetup resume t || fail "resume with a slow new spare failed"
answered=0 busy=0 cycled=0 i=0
while ! since_mark | grep -q "moved 2048 remapped blocks\|moving to spare .* stopped"; do
	i=$((i + 1))
	[ $i -le 300 ] || fail "the move did not end: $(since_mark | grep 'remap:')"
	dmsetup message t 0 count >/dev/null 2>&1 && answered=$((answered + 1))
	dmsetup message t 0 set auto_remap on >/dev/null 2>&1 || busy=$((busy + 1))
	# Refused too; it must not cancel the copy's next step either.
	dmsetup message t 0 scan stop >/dev/null 2>&1
	# The first and the last remapped block.
	dd if=/tmp/p of=/dev/mapper/t bs=4k seek=1024 oflag=direct conv=notrunc 2>/dev/null &&
		dd if=/tmp/p of=/dev/mapper/t bs=4k seek=4095 oflag=direct conv=notrunc 2>/dev/null ||
		fail "write during the move failed"
	if [ $busy -gt 0 ] && [ $cycled = 0 ]; then
		dmsetup suspend t && dmsetup resume t || fail "suspend and resume during the move failed"
		cycled=1
	fi
done
note "during the move: $answered count messages answered, $busy set messages refused, $i rounds of writes"
since_mark | grep -q "moved 2048 remapped blocks from spare" || fail "the move stopped: $(since_mark | grep 'remap:')"
[ $busy -gt 0 ] || fail "no message was refused during the move"
[ $cycled = 1 ] || fail "the device was not suspended during the move"
since_mark | grep -q "set: moving to the migrate_to spare; try again once it is done" ||
	fail "no word of the refused message: $(since_mark | grep 'remap:')"
dd if=/tmp/p of=/tmp/before bs=4k seek=1024 conv=notrunc 2>/dev/null &&
	dd if=/tmp/p of=/tmp/before bs=4k seek=4095 conv=notrunc 2>/dev/null || fail "patching the expected data failed"
dmsetup message t 0 set auto_remap on >/dev/null || fail "set after the move failed"
read -r md </sys/block/"${M#/dev/}"/dev
[ "$(dmsetup table t)" = "0 32768 remap $md $(dm_devt nd)" ] ||
	fail "table after the move: $(dmsetup table t)"
same "after the move"
dmsetup reload t --table "0 32768 $T /dev/mapper/nd" || fail "reload over the new spare alone refused"
dmsetup resume t || fail "resume over the new spare alone failed"
same "over the new spare alone"
[ "$(dmsetup message t 0 count)" = 2048 ] || fail "count $(dmsetup message t 0 count) over the new spare"
dm_remove t
rm -f /tmp/before /tmp/now /tmp/p
