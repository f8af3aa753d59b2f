# The error path on a dying disk: every I/O to main takes 500 ms (dm-delay)
# and two blocks fail after it (`error` segments). With 8 retries, the
# worker spends about 4.5 s retrying a failed read, and as long retrying a
# failed write on main before it remaps the block. None of that is done
# under the target's lock: status and messages (`count`, `pending`, an
# `add_remap` of another block, which commits) answer within 1.5 s
# meanwhile. The read still fails (EIO, the block pending), the write
# still succeeds on a spare block, and the data reads back byte for byte.
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

# errors_at_least N: waits (up to 30 s) until end_io has counted N errors
# of main, that is until the worker has the failed bio.
errors_at_least() {
	cs
	_t0=$cs
	while :; do
		read -r _e </sys/module/dm_remap/stat/$K/main_errors
		[ "$_e" -ge "$1" ] && return
		cs
		[ $((cs - _t0)) -lt 3000 ] || fail "main_errors $_e after 30 s, want $1"
		sleep 0.1
	done
}

M0=$(new_loop 16M)
S=$(new_loop 16M)
# Blocks 16 and 24 (sectors 128-135 and 192-199) fail; every read and write
# of main takes 500 ms.
dm_wrap w $M0 128:8 192:8 || fail "wrapper over main refused"
dmsetup create md --table "0 32768 delay /dev/mapper/w 0 500 /dev/mapper/w 0 500" ||
	fail "dm-delay refused"
echo md >>$_STATE/devs
dm_create t "0 32768 remap /dev/mapper/md $S 6 block_size 4096 read_retries 8 write_retries 8" ||
	fail "create failed"
K=$(dm_kname t)

# A read of block 16: 9 reads of 500 ms, all failing.
dd if=/dev/mapper/t of=/tmp/r bs=4096 skip=16 count=1 iflag=direct 2>/tmp/dd.err &
reader=$!
errors_at_least 1
for i in 1 2; do
	quick "dmsetup status" dmsetup status t
	quick "count" dmsetup message t 0 count
	quick "pending" dmsetup message t 0 pending
	quick "add_remap" dmsetup message t 0 add_remap $((8000 + i * 8)) auto
	sleep 0.3
done
wait $reader && fail "read of a failing block succeeded"
[ "$(dmsetup message t 0 pending)" = 128 ] ||
	fail "pending '$(dmsetup message t 0 pending)', want 128"

# A write of block 24: 9 writes of 500 ms to main, then a spare block.
dd if=/dev/urandom of=/tmp/w bs=4096 count=1 2>/dev/null
dd if=/tmp/w of=/dev/mapper/t bs=4096 seek=24 count=1 oflag=direct conv=notrunc 2>/tmp/dd.err &
writer=$!
errors_at_least 2
for i in 1 2; do
	quick "dmsetup status" dmsetup status t
	quick "count" dmsetup message t 0 count
	quick "add_remap" dmsetup message t 0 add_remap $((8200 + i * 8)) auto
	sleep 0.3
done
wait $writer || fail "write of a failing block failed: $(cat /tmp/dd.err)"
case $(dmsetup message t 0 query 192) in
spare*) ;;
*) fail "block 24 not remapped: $(dmsetup message t 0 query 192)" ;;
esac
[ "$(dm_stat t auto_remaps)" = 1 ] || fail "auto_remaps $(dm_stat t auto_remaps), want 1"
dd if=/dev/mapper/t of=/tmp/r bs=4096 skip=24 count=1 iflag=direct 2>/dev/null ||
	fail "read back of the remapped block failed"
cmp -s /tmp/w /tmp/r || fail "the remapped block reads back different data"
[ "$(dmsetup message t 0 count)" = 5 ] || fail "count $(dmsetup message t 0 count), want 5"
