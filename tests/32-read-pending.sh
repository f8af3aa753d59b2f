# Read errors on main: a block that still fails after the retries fails the
# read with EIO and becomes pending, persistently; good blocks keep reading.
# A write to a pending block goes straight to a spare block (main, where
# dm-dust would forget the bad block on a write, never sees it) and ends its
# pending state. clear_pending forgets pending blocks; with auto_remap off
# read errors just pass through.
# dmr-needs: CONFIG_DM_DUST
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
dm_dust d $M0 || fail "dm-dust device refused"
T="0 131072 remap /dev/mapper/d $S 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)
dd if=/dev/urandom of=/tmp/pat bs=1M count=2 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "pattern write failed"
# Bad 4 KiB blocks (dm-dust counts in 4 KiB blocks): 10 and 11 (sectors 80,
# 88), 100 (800) and 300 (2400).
for b in 10 11 100 300; do dust d addbadblock $b; done
dust d enable

# rd FIRST [COUNT]: O_DIRECT read of 4 KiB blocks through t into /tmp/got.
rd() {
	dd if=/dev/mapper/t of=/tmp/got bs=4k skip=$1 count=${2:-1} iflag=direct 2>/dev/null
}
# good FIRST LAST: blocks FIRST..LAST read back as /tmp/pat has them.
good() {
	rd $1 $(($2 - $1 + 1)) || fail "read of good blocks $1-$2 failed"
	dd if=/tmp/pat bs=4k skip=$1 count=$(($2 - $1 + 1)) 2>/dev/null | cmp -s - /tmp/got ||
		fail "good blocks $1-$2 read back wrong"
}
pending() {
	dmsetup message t 0 pending
}
[ "$(pending)" = none ] || fail "pending before any error: '$(pending)', want 'none'"

mark
rd 10 && fail "read of bad block 10 succeeded"
rd 96 16 && fail "64 KiB read over bad block 100 succeeded"
[ "$(dm_stat t pending_marked)" = 2 ] || fail "pending_marked $(dm_stat t pending_marked), want 2"
# Blocks 8-15: 10 is pending already, 11 becomes pending.
# One 32 KiB bio (dd would stop at the first failing 4 KiB read).
dd if=/dev/mapper/t of=/tmp/got bs=32k skip=1 count=1 iflag=direct 2>/dev/null &&
	fail "32 KiB read over bad blocks 10 and 11 succeeded"
[ "$(pending)" = "80 88 800" ] || fail "pending '$(pending)', want '80 88 800'"
[ "$(dm_field t 10)" = 3 ] || fail "status pending $(dm_field t 10), want 3"
[ "$(dm_stat t pending)" = 3 ] || fail "sysfs pending $(dm_stat t pending), want 3"
[ "$(dm_stat t pending_marked)" = 3 ] || fail "pending_marked $(dm_stat t pending_marked), want 3"
[ "$(dm_field t 6)" = 0 ] || fail "a read error remapped a block: $(dm_field t 6) remaps"
got=$(since_mark | sed -n "s/.*dm-remap: $DT: read error on main sector \([0-9]*\): pending\$/\1/p" | sort -un | tr '\n' ' ')
[ "$got" = "80 88 800 " ] || fail "read-error lines name sectors '$got', want '80 88 800'"
# Everything else reads, including block 300: nothing has read it yet.
good 0 9
good 12 99
good 101 299
good 301 511
[ "$(pending)" = "80 88 800" ] || fail "good reads changed pending to '$(pending)'"

dm_remove t
dm_create t "$T" || fail "re-create failed"
[ "$(pending)" = "80 88 800" ] || fail "pending after re-create '$(pending)', want '80 88 800'"
[ "$(dm_field t 10)" = 3 ] || fail "status pending $(dm_field t 10) after re-create, want 3"

# A write to pending block 10 lands on the spare.
dd if=/dev/urandom of=/tmp/new bs=4k count=1 2>/dev/null
mark
dd if=/tmp/new of=/dev/mapper/t bs=4k seek=10 oflag=direct 2>/dev/null || fail "write to pending block 10 failed"
[ "$(dm_field t 6)" = 1 ] || fail "status remaps $(dm_field t 6) after the write, want 1"
[ "$(dm_field t 10)" = 2 ] || fail "status pending $(dm_field t 10) after the write, want 2"
[ "$(pending)" = "88 800" ] || fail "pending '$(pending)', want '88 800'"
q=$(dmsetup message t 0 query 80)
since_mark | grep -q "dm-remap: $DT: pending sector 80 rewritten: remapped to spare sector ${q#spare }\$" ||
	fail "no 'pending sector 80 rewritten' line for $q: $(since_mark | grep dm-remap)"
rd 10 || fail "read of rewritten pending block 10 failed"
cmp -s /tmp/got /tmp/new || fail "block 10 reads back wrong after the write"
dd if=/dev/mapper/d of=/dev/null bs=4k skip=10 count=1 iflag=direct 2>/dev/null &&
	fail "main block 10 reads again: the write to the pending block went to main"

# A 32 KiB write over blocks 8-15: pending block 11 goes to the spare, the
# good blocks to main, remapped block 10 to its spare block.
dd if=/dev/urandom of=/tmp/new8 bs=4k count=8 2>/dev/null
dd if=/tmp/new8 of=/dev/mapper/t bs=32k seek=1 oflag=direct 2>/dev/null || fail "write of blocks 8-15 failed"
[ "$(pending)" = 800 ] || fail "pending '$(pending)' after writing blocks 8-15, want '800'"
[ "$(dm_field t 6)" = 2 ] || fail "status remaps $(dm_field t 6), want 2"
rd 8 8 || fail "read of blocks 8-15 failed"
cmp -s /tmp/got /tmp/new8 || fail "blocks 8-15 read back wrong"
dd if=/dev/mapper/d of=/dev/null bs=4k skip=11 count=1 iflag=direct 2>/dev/null &&
	fail "main block 11 reads again: the write to the pending block went to main"
for b in 8 9 12 13 14 15; do
	dd if=/tmp/new8 of=/tmp/want bs=4k skip=$((b - 8)) count=1 2>/dev/null
	dd if=/dev/mapper/d bs=4k skip=$b count=1 iflag=direct 2>/dev/null | cmp -s - /tmp/want ||
		fail "main block $b does not hold the new data"
done

# clear_pending: one block, then all; committed.
[ "$(dmsetup message t 0 clear_pending 800)" = "cleared 1" ] || fail "clear_pending 800 did not reply 'cleared 1'"
[ "$(pending)" = none ] || fail "pending '$(pending)' after clear_pending 800"
rd 300 && fail "read of bad block 300 succeeded"
rd 100 && fail "read of bad block 100 succeeded"
[ "$(pending)" = "800 2400" ] || fail "pending '$(pending)', want '800 2400'"
[ "$(dmsetup message t 0 clear_pending)" = "cleared 2" ] || fail "clear_pending did not reply 'cleared 2'"
[ "$(pending)" = none ] || fail "pending '$(pending)' after clear_pending"
[ "$(dm_field t 10)" = 0 ] || fail "status pending $(dm_field t 10) after clear_pending"
[ "$(dm_stat t pending)" = 0 ] || fail "sysfs pending $(dm_stat t pending) after clear_pending"
dm_remove t
dm_create t "$T" || fail "re-create 2 failed"
[ "$(pending)" = none ] || fail "clear_pending not persistent: '$(pending)'"

# auto_remap off: the read fails and nothing becomes pending.
r=$(dmsetup message t 0 set auto_remap off) || fail "set auto_remap off failed"
[ -z "$r" ] || fail "set auto_remap off replied '$r'"
[ "$(dm_field t 13)" = off ] || fail "status auto_remap $(dm_field t 13), want off"
dmsetup message t 0 policy | grep -q "^auto_remap off " || fail "policy: $(dmsetup message t 0 policy)"
dmsetup table t | grep -q auto_remap && fail "set changed the table line: $(dmsetup table t)"
marked=$(dm_stat t pending_marked)
mark
rd 300 && fail "read of bad block 300 succeeded with auto_remap off"
[ "$(pending)" = none ] || fail "read error with auto_remap off made '$(pending)' pending"
[ "$(dm_stat t pending_marked)" = "$marked" ] || fail "pending_marked moved with auto_remap off"
since_mark | grep -q "read error on main" && fail "read-error line with auto_remap off"
good 301 511

dmsetup message t 0 set auto_remap on || fail "set auto_remap on failed"
rd 300 && fail "read of bad block 300 succeeded"
[ "$(pending)" = 2400 ] || fail "pending '$(pending)' with auto_remap back on, want '2400'"
