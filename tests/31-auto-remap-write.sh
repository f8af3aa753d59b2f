# Write errors on main are absorbed: every block main refuses to write is
# remapped to the spare and the write succeeds, for O_DIRECT writes of several
# sizes (bios of good and bad blocks included) and for buffered writeback.
# Everything reads back byte for byte; main holds the good blocks, the spare
# the bad ones; the remap count, auto_remaps, the status line and the kernel
# log agree; the remaps and their data survive dmsetup remove + create.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
# Bad 4 KiB blocks of main, by first sector: one alone (block 8), one inside
# a 64 KiB write (block 129), two adjacent ones and a third inside a 1 MiB
# write (blocks 261, 262, 381), one under buffered writeback (block 1061) and
# the device's last block (16383).
BAD="64 1032 2088 2096 3048 8488 131064"
N=7
dm_wrap w $M0 64:8 1032:8 2088:16 3048:8 8488:8 131064:8 || fail "wrapper over main refused"
T="0 131072 remap /dev/mapper/w $S 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)
[ "$(dm_field t 5)" = 4096 ] || fail "block size $(dm_field t 5), want 4096"

# put SECTOR BYTES BS direct|buffered: writes BYTES of fresh random data at
# SECTOR through t, BS bytes per write(2), and records them in /tmp/expect.
truncate -s 64M /tmp/expect
put() {
	dd if=/dev/urandom of=/tmp/chunk bs=$2 count=1 2>/dev/null
	if [ $4 = direct ]; then
		dd if=/tmp/chunk of=/dev/mapper/t bs=$3 seek=$(($1 * 512)) oflag=seek_bytes,direct 2>/tmp/err
	else
		dd if=/tmp/chunk of=/dev/mapper/t bs=$3 seek=$(($1 * 512)) oflag=seek_bytes conv=fsync 2>/tmp/err
	fi || fail "$4 write of $2 bytes at sector $1 failed, want it absorbed: $(cat /tmp/err)"
	dd if=/tmp/chunk of=/tmp/expect bs=$2 seek=$(($1 * 512)) oflag=seek_bytes conv=notrunc 2>/dev/null
}
# check WHEN: the whole device reads back as written. Read into a file and
# compared there, not through a pipe: cheaper in the guest; the mostly zero
# read is stored sparse.
check() {
	dd if=/dev/mapper/t of=/tmp/got bs=1M iflag=direct conv=sparse 2>/tmp/err
	cmp /tmp/got /tmp/expect >/tmp/cmp 2>&1 ||
		fail "$1: read back differs from what was written: $(cat /tmp/cmp) $(cat /tmp/err)"
}

mark
put 64 4096 4096 direct
put 1024 65536 65536 direct
put 2048 1048576 1048576 direct
put 8192 262144 65536 buffered
put 131048 12288 12288 direct
put 16384 65536 65536 direct # no bad block here
check "after the writes"

# The status line once, its fields as dm_field numbers them.
set -- $(dmsetup status t)
[ "$4" = ok ] || fail "state $4, want ok"
[ "$6" = $N ] || fail "status shows $6 remaps, want $N"
[ "${10}" = 0 ] || fail "pending ${10}, want 0 (no read failed)"
[ "${11}" = 0 ] || fail "retired ${11}, want 0"
[ "${12}" = ok ] || fail "spare state ${12}, want ok"
[ "${13}" = on ] || fail "auto_remap ${13}, want on"
[ "$(dmsetup message t 0 count)" = $N ] || fail "count $(dmsetup message t 0 count), want $N"
[ "$(dm_stat t remaps)" = $N ] || fail "sysfs remaps $(dm_stat t remaps), want $N"
[ "$(dm_stat t auto_remaps)" = $N ] || fail "sysfs auto_remaps $(dm_stat t auto_remaps), want $N"

# One log line per bad block, naming the spare block query reports.
since_mark | sed -n "s/.*dm-remap: $DT: write error on main sector \([0-9]*\): remapped to spare sector \([0-9]*\)\$/\1 \2/p" >/tmp/log
got=$(cut -d' ' -f1 /tmp/log | sort -n | tr '\n' ' ')
[ "$got" = "$BAD " ] || fail "write-error lines name main sectors '$got', want '$BAD' once each"
while read -r s p; do
	q=$(dmsetup message t 0 query $s)
	[ "$q" = "spare $p" ] || fail "log says sector $s went to spare sector $p, query says '$q'"
done </tmp/log

# Byte for byte on both devices: each bad block's data is on its spare
# block; main holds the rest (zeros where it refused the write).
dd if=/tmp/expect of=/tmp/main bs=1M conv=sparse 2>/dev/null
for s in $BAD; do
	p=$(dmsetup message t 0 query $s)
	dd if=$S bs=512 skip=${p#spare } count=8 iflag=direct 2>/dev/null >/tmp/got
	cmp -s -n 4096 -i $((s * 512)):0 /tmp/expect /tmp/got ||
		fail "spare block at $p does not hold main sector $s's data"
	dd if=/dev/zero of=/tmp/main bs=512 seek=$s count=8 conv=notrunc 2>/dev/null
done
dd if=$M0 of=/tmp/got bs=1M iflag=direct conv=sparse 2>/dev/null
cmp /tmp/got /tmp/main >/tmp/cmp 2>&1 ||
	fail "main does not hold the good blocks as written: $(cat /tmp/cmp)"

# A remapped block is written on the spare from now on: no new remap.
put 64 4096 4096 direct
put 2080 16384 16384 direct
[ "$(dm_stat t auto_remaps)" = $N ] || fail "rewriting remapped blocks remapped again: auto_remaps $(dm_stat t auto_remaps)"
check "after rewriting remapped blocks"

before=$(remaps t)
dm_remove t
dm_create t "$T" || fail "re-create failed"
[ "$(remaps t)" = "$before" ] || fail "remaps after re-create '$(remaps t)', want '$before'"
[ "$(dm_field t 6)" = $N ] || fail "status shows $(dm_field t 6) remaps after re-create, want $N"
check "after remove + create"
put 3048 4096 4096 direct
put 131064 4096 4096 direct
[ "$(dm_stat t auto_remaps)" = 0 ] || fail "persisted remaps not used: auto_remaps $(dm_stat t auto_remaps) after re-create"
check "after writes to the re-created device"
