# fio writes and verifies data through the device, across remapped blocks,
# while a storm of messages adds and removes remaps elsewhere and resizes the
# table up and down (the runner fails the test on any lockdep, RCU or KASAN
# report).
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 64M)
dm_create t "0 131072 remap $M $S" || fail "create failed"
# Remaps inside fio's region: one 4 KiB block in every 512 KiB.
i=0
while [ $i -lt 32 ]; do
	dmsetup message t 0 add_remap $((i * 1024 + 8)) auto 8 >/dev/null || fail "add $i"
	i=$((i + 1))
done

fio --name=verify --filename=/dev/mapper/t --offset=0 --size=16M --rw=randwrite \
	--bs=4k --direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 \
	--do_verify=1 --randrepeat=0 --output=/tmp/fio.out &
fio_pid=$!

rounds=0
while kill -0 $fio_pid 2>/dev/null; do
	# 600 blocks in and out: the table grows (its segment rebuilt from 382
	# to 1022 slots) and shrinks back every round.
	dmsetup message t 0 add_remap 65536 auto 600 >/dev/null || fail "storm add"
	dmsetup message t 0 query 65540 >/dev/null || fail "storm query"
	dmsetup message t 0 remove_remap 65536 600 >/dev/null || fail "storm remove"
	rounds=$((rounds + 1))
done
wait $fio_pid
rc=$?
note "message rounds during fio: $rounds"
[ $rc -eq 0 ] || { cat /tmp/fio.out; fail "fio failed (status $rc)"; }
grep -q "err= 0" /tmp/fio.out || { cat /tmp/fio.out; fail "fio reported errors"; }
[ $rounds -ge 2 ] || fail "fio ended before the storm got going ($rounds rounds)"
[ "$(dmsetup message t 0 count)" = 256 ] || fail "count $(dmsetup message t 0 count)"
