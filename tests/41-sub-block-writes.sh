# With block_size 4096 over 512-byte devices, a write that covers part of a
# bad block is merged into the rest of the block: the rest is read from main,
# the merged block goes to the spare, and every other sector keeps its data.
# If the rest cannot be read either, the block becomes pending and the write
# fails (a read would fail too); a whole-block write then remaps it. Writes
# to the other sectors of a block, issued together with the failing one (main
# and spare slowed down by dm-delay), all complete and all read back: none is
# left behind on main once the block has moved.
# dmr-needs: CONFIG_DM_FLAKEY
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
len=$(sectors $M0)
# Main: block 100 (sectors 800-807) fails writes only (dm-flakey, always
# down, error_writes); block 200 (1600-1607) fails everything (error);
# sector 2401 of block 300 fails writes only. Writes to main take 300 ms,
# to the spare 100 ms.
printf '%s\n' "0 800 linear $M0 0" \
	"800 8 flakey $M0 800 0 1 1 error_writes" \
	"808 792 linear $M0 808" \
	"1600 8 error" \
	"1608 793 linear $M0 1608" \
	"2401 1 flakey $M0 2401 0 1 1 error_writes" \
	"2402 $((len - 2402)) linear $M0 2402" | dmsetup create mw || fail "main wrapper refused"
echo mw >>$_STATE/devs
dmsetup create md --table "0 $len delay /dev/mapper/mw 0 0 /dev/mapper/mw 0 300" || fail "dm-delay over main refused"
echo md >>$_STATE/devs
dmsetup create sd --table "0 $(sectors $S0) delay $S0 0 0 $S0 0 100" || fail "dm-delay over the spare refused"
echo sd >>$_STATE/devs
T="0 131072 remap /dev/mapper/md /dev/mapper/sd 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)

# Old contents of blocks 100 and 300, written to main underneath.
dd if=/dev/urandom of=/tmp/old bs=4k count=1 2>/dev/null
dd if=/tmp/old of=$M0 bs=4k seek=100 oflag=direct conv=notrunc 2>/dev/null || fail "seeding main failed"
dd if=/tmp/old of=$M0 bs=4k seek=300 oflag=direct conv=notrunc 2>/dev/null || fail "seeding main failed"
dd if=/dev/urandom of=/tmp/s1 bs=512 count=1 2>/dev/null

# (1) 512 bytes at sector 801: main refuses the write; the block is merged
# and remapped.
mark
dd if=/tmp/s1 of=/dev/mapper/t bs=512 seek=801 oflag=direct 2>/tmp/err ||
	fail "512-byte write into a write-failing block failed: $(cat /tmp/err)"
since_mark | grep -q "dm-remap: $DT: write error on main sector 800: remapped to spare sector" ||
	fail "no remap line: $(since_mark | grep dm-remap)"
cp /tmp/old /tmp/want
dd if=/tmp/s1 of=/tmp/want bs=512 seek=1 conv=notrunc 2>/dev/null
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=100 count=1 iflag=direct 2>/dev/null || fail "read of block 100 failed"
cmp -s /tmp/got /tmp/want || fail "block 100 is not its old contents with sector 801 replaced"
sp=$(dmsetup message t 0 query 800 | awk '{ print $2 }')
dd if=$S0 bs=512 skip=$sp count=8 iflag=direct 2>/dev/null | cmp -s - /tmp/want ||
	fail "the spare block at $sp does not hold the merged block"
# Reads of single sectors of it come from the spare.
dd if=/dev/mapper/t of=/tmp/got bs=512 skip=801 count=1 iflag=direct 2>/dev/null || fail "512-byte read failed"
cmp -s /tmp/got /tmp/s1 || fail "sector 801 does not read back"

# (2) Sectors 2401-2407 written at once: 2401 fails on main, the others land
# there while its block is being moved. All seven must read back.
# Sector i's data is sector i - 1 of /tmp/p.
dd if=/dev/urandom of=/tmp/p bs=512 count=7 2>/dev/null
cp /tmp/old /tmp/want3
dd if=/tmp/p of=/tmp/want3 bs=512 seek=1 conv=notrunc 2>/dev/null
for i in 1 2 3 4 5 6 7; do
	(dd if=/tmp/p of=/dev/mapper/t bs=512 skip=$((i - 1)) count=1 seek=$((2400 + i)) oflag=direct 2>/tmp/e$i || echo failed >>/tmp/e$i) &
done
wait
for i in 1 2 3 4 5 6 7; do
	grep -q '^failed$' /tmp/e$i && fail "write of sector $((2400 + i)) failed: $(cat /tmp/e$i)"
done
[ "$(dmsetup message t 0 query 2400 | awk '{ print $1 }')" = spare ] || fail "block 300 was not remapped"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=300 count=1 iflag=direct 2>/dev/null || fail "read of block 300 failed"
cmp -s /tmp/got /tmp/want3 || fail "block 300 lost a write issued together with the failing one"

# (3) Block 200 fails reads too: a 512-byte write cannot be merged. It fails,
# the block becomes pending; a whole-block write then remaps it.
dd if=/tmp/s1 of=/dev/mapper/t bs=512 seek=1603 oflag=direct 2>/dev/null &&
	fail "512-byte write into an unreadable block succeeded"
[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "pending '$(dmsetup message t 0 pending)', want 1600"
dd if=/dev/urandom of=/tmp/whole bs=4k count=1 2>/dev/null
dd if=/tmp/whole of=/dev/mapper/t bs=4k seek=200 oflag=direct 2>/dev/null || fail "whole-block write to pending block 200 failed"
[ "$(dmsetup message t 0 pending)" = none ] || fail "block 200 still pending"
dd if=/tmp/s1 of=/dev/mapper/t bs=512 seek=1603 oflag=direct 2>/dev/null || fail "512-byte write into remapped block 200 failed"
dd if=/tmp/s1 of=/tmp/whole bs=512 seek=3 conv=notrunc 2>/dev/null
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=200 count=1 iflag=direct 2>/dev/null || fail "read of block 200 failed"
cmp -s /tmp/got /tmp/whole || fail "block 200 does not read back as written"

# (4) All of it survives remove + create.
dm_remove t
dm_create t "$T" || fail "re-create failed"
for b in "100 want" "200 whole" "300 want3"; do
	set -- $b
	dd if=/dev/mapper/t of=/tmp/got bs=4k skip=$1 count=1 iflag=direct 2>/dev/null || fail "read of block $1 after re-create failed"
	cmp -s /tmp/got /tmp/$2 || fail "block $1 differs after re-create"
done
