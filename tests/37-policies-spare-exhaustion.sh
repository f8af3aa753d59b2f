# Policies and the spare running out. Table-line policy features show in
# `dmsetup table` and `policy`; `set` changes them and refuses bad values
# without changing anything. A spare pool at or below spare_low is reported
# once (log, status, sysfs) and an exhausted one fails writes to further bad
# blocks with ENOSPC, keeping everything already stored. With auto_remap off,
# write errors reach the caller; error_threshold turns auto_remap off by
# itself after that many automatic remaps, and `set auto_remap on` turns it
# back on.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
# A spare with room for 10 data blocks of 4 KiB after the 2 MiB metadata.
S=$(new_loop $(((4096 + 80) * 512)))
# Bad blocks 100-111 (sectors 800-895), and 200-202 (1600-1623).
dm_wrap w $M0 800:96 1600:24 || fail "wrapper over main refused"
T="0 131072 remap /dev/mapper/w $S 4 block_size 4096 spare_low 50"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)
[ "$(dmsetup table t | cut -d' ' -f6-)" = "4 block_size 4096 spare_low 50" ] ||
	fail "table: $(dmsetup table t)"
want="auto_remap on read_retries 2 write_retries 1 error_threshold 0 spare_low 50 scan_rate 4 scan_chunk 256"
[ "$(dmsetup message t 0 policy)" = "$want" ] || fail "policy: '$(dmsetup message t 0 policy)'"
[ "$(dm_field t 7)" = 0/10 ] || fail "spare $(dm_field t 7), want 0/10"
[ "$(dm_field t 12)" = ok ] || fail "spare level $(dm_field t 12), want ok"

# Bad policy messages change nothing.
st=$(dmsetup status t)
for m in "set read_retries 17" "set spare_low 101" "set auto_remap maybe" "set colour blue" \
	"set scan_chunk 2" "set error_threshold -1" "set scan_rate 8" "scan_rate 0" "set auto_remap"; do
	dmsetup message t 0 $m 2>/dev/null && fail "'$m' accepted"
done
[ "$(dmsetup message t 0 policy)" = "$want" ] || fail "policy changed by refused messages: '$(dmsetup message t 0 policy)'"
[ "$(dmsetup status t)" = "$st" ] || fail "status changed by refused messages"

# wr BLOCK: writes a fresh 4 KiB block, recording it in /tmp/expect.
truncate -s 64M /tmp/expect
wr() {
	dd if=/dev/urandom of=/tmp/blk bs=4k count=1 2>/dev/null
	dd if=/tmp/blk of=/dev/mapper/t bs=4k seek=$1 oflag=direct 2>/tmp/err || return 1
	dd if=/tmp/blk of=/tmp/expect bs=4k seek=$1 conv=notrunc 2>/dev/null
}
mark
for b in 100 101 102 103 104; do
	wr $b || fail "write to bad block $b failed: $(cat /tmp/err)"
done
[ "$(dm_field t 12)" = low ] || fail "spare level $(dm_field t 12) with 5 of 10 free, want low"
[ "$(dm_stat t spare_free)" = 5 ] || fail "sysfs spare_free $(dm_stat t spare_free), want 5"
for b in 105 106 107 108 109; do
	wr $b || fail "write to bad block $b failed: $(cat /tmp/err)"
done
[ "$(dm_field t 12)" = exhausted ] || fail "spare level $(dm_field t 12) with 0 free, want exhausted"
wr 110 && fail "write to bad block 110 with no spare block left succeeded"
grep -q "No space left on device" /tmp/err || fail "write with no spare left: '$(cat /tmp/err)', want ENOSPC"
[ "$(since_mark | grep -c "dm-remap: $DT: spare pool low: 5 of 10 blocks free\$")" = 1 ] ||
	fail "spare-low line not logged once: $(since_mark | grep dm-remap)"
[ "$(since_mark | grep -c "dm-remap: $DT: spare pool exhausted\$")" = 1 ] ||
	fail "exhaustion line not logged once: $(since_mark | grep dm-remap)"
[ "$(dm_stat t auto_remaps)" = 10 ] || fail "auto_remaps $(dm_stat t auto_remaps), want 10"
# Good blocks still take writes, and everything stored reads back (blocks
# 0-109; 110 and 111 are bad and were never stored).
wr 5 || fail "write to a good block failed"
dd if=/tmp/expect bs=4k count=110 of=/tmp/expect.part 2>/dev/null
dd if=/dev/mapper/t bs=4k count=110 iflag=direct 2>/dev/null | cmp - /tmp/expect.part >/tmp/cmp 2>&1 ||
	fail "data differs after exhaustion: $(cat /tmp/cmp)"
dm_remove t

# auto_remap off: errors pass through; error_threshold.
S2=$(new_loop 16M)
dm_create u "0 131072 remap /dev/mapper/w $S2 4 block_size 4096 error_threshold 2" || fail "create u failed"
DU=$(dm_devt u)
[ "$(dmsetup table u | cut -d' ' -f6-)" = "4 block_size 4096 error_threshold 2" ] ||
	fail "table: $(dmsetup table u)"
dmsetup message u 0 set auto_remap off || fail "set auto_remap off failed"
[ "$(dm_field u 13)" = off ] || fail "status auto_remap $(dm_field u 13), want off"
e0=$(dm_stat u main_errors)
dd if=/dev/zero of=/dev/mapper/u bs=4k seek=200 count=1 oflag=direct 2>/tmp/err &&
	fail "write to a bad block with auto_remap off succeeded"
grep -q "Input/output error" /tmp/err || fail "auto_remap off: '$(cat /tmp/err)', want EIO"
[ "$(dm_stat u main_errors)" -gt "$e0" ] || fail "main_errors did not count the error"
[ "$(dm_field u 6)" = 0 ] || fail "a remap was made with auto_remap off"
# Reads of a bad block with auto_remap off fail without becoming pending.
dd if=/dev/mapper/u of=/dev/null bs=4k skip=201 count=1 iflag=direct 2>/dev/null &&
	fail "read of a bad block succeeded"
[ "$(dmsetup message u 0 pending)" = none ] || fail "pending with auto_remap off: $(dmsetup message u 0 pending)"

mark
dmsetup message u 0 set auto_remap on || fail "set auto_remap on failed"
for b in 200 201; do
	dd if=/dev/zero of=/dev/mapper/u bs=4k seek=$b count=1 oflag=direct 2>/tmp/err ||
		fail "write to bad block $b failed: $(cat /tmp/err)"
done
since_mark | grep -q "dm-remap: $DU: error threshold 2 reached; auto_remap off\$" ||
	fail "no threshold line: $(since_mark | grep dm-remap)"
[ "$(dm_field u 13)" = off ] || fail "status auto_remap $(dm_field u 13) after the threshold, want off"
dmsetup message u 0 policy | grep -q "^auto_remap off " || fail "policy: $(dmsetup message u 0 policy)"
dd if=/dev/zero of=/dev/mapper/u bs=4k seek=202 count=1 oflag=direct 2>/dev/null &&
	fail "write past the threshold succeeded"
dmsetup message u 0 set auto_remap on || fail "set auto_remap on failed"
dd if=/dev/zero of=/dev/mapper/u bs=4k seek=202 count=1 oflag=direct 2>/tmp/err ||
	fail "write after auto_remap on failed: $(cat /tmp/err)"
[ "$(dm_field u 6)" = 3 ] || fail "remaps $(dm_field u 6), want 3"
