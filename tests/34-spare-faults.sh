# Faults on the spare. A data-pool block that fails a write is retired (for
# good) and the data goes to the next block, both when a write error on main
# is being remapped and when a remapped block is written. A metadata commit
# that fails puts the target in fail mode: the write whose remap it was fails,
# every later write fails, reads still work, clear_fail fails until the
# metadata area works again and then clears it; nothing a write reported as
# written is lost.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
# Main: a bad block at sector 800 (block 100); the spare: the first
# data-pool block (sector 4096), where the first allocation goes.
dm_wrap mw $M0 800:8 || fail "wrapper over main refused"
dm_wrap sw $S0 4096:8 || fail "wrapper over the spare refused"
T="0 131072 remap /dev/mapper/mw /dev/mapper/sw 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)

# wr BLOCK FILE / rd BLOCK: O_DIRECT 4 KiB write and read through t.
wr() {
	dd if=$2 of=/dev/mapper/t bs=4k seek=$1 oflag=direct 2>/dev/null
}
rd() {
	dd if=/dev/mapper/t of=/tmp/got bs=4k skip=$1 count=1 iflag=direct 2>/dev/null
}
# same BLOCK FILE: block BLOCK of t reads back as FILE.
same() {
	rd $1 || fail "read of block $1 failed"
	cmp -s /tmp/got $2 || fail "block $1 does not read back as written"
}
# on_spare SECTOR FILE: the spare holds FILE at SECTOR.
on_spare() {
	dd if=$S0 bs=512 skip=$1 count=8 iflag=direct 2>/dev/null | cmp -s - $2 ||
		fail "spare sector $1 does not hold the data"
}
for f in a b c d; do dd if=/dev/urandom of=/tmp/$f bs=4k count=1 2>/dev/null; done

# (a) Write error on main; the spare block it gets fails too.
mark
wr 100 /tmp/a || fail "write to bad main block 100 failed; the spare block should have been retired and the next one used"
[ "$(dm_field t 11)" = 1 ] || fail "status retired $(dm_field t 11), want 1"
[ "$(dm_stat t retired)" = 1 ] || fail "sysfs retired $(dm_stat t retired), want 1"
[ "$(dm_field t 6)" = 1 ] || fail "status remaps $(dm_field t 6), want 1"
q=$(dmsetup message t 0 query 800)
[ "$q" = "spare 4104" ] || fail "main sector 800 is at '$q', want 'spare 4104' (the block after the failed one)"
# A new spare block that fails its first write is retired and the next one
# taken, within the same remap.
since_mark | grep -q "dm-remap: $DT: spare sector 4096 failed: retired\$" ||
	fail "no retire line: $(since_mark | grep dm-remap)"
since_mark | grep -q "dm-remap: $DT: write error on main sector 800: remapped to spare sector 4104\$" ||
	fail "no remap line: $(since_mark | grep dm-remap)"
since_mark | grep -q "dm-remap: $DT: write error on main sector 800: remapped to spare sector" ||
	fail "no write-error line: $(since_mark | grep dm-remap)"
same 100 /tmp/a
on_spare 4104 /tmp/a

# (a) A remapped block whose spare block fails on the next write.
dmsetup message t 0 add_remap 1600 auto >/dev/null || fail "add_remap 1600 failed"
p=$(dmsetup message t 0 query 1600)
p=${p#spare }
[ "$p" -gt 4104 ] || fail "add_remap 1600 went to spare sector $p"
dm_rewrap sw $S0 4096:8 $p:8
mark
wr 200 /tmp/b || fail "write to remapped block 200 over a failing spare block failed"
q=$(dmsetup message t 0 query 1600)
case $q in
"spare "*) q=${q#spare } ;;
*) fail "main sector 1600 is at '$q' after its spare block failed" ;;
esac
[ "$q" != "$p" ] && [ "$q" != 4096 ] || fail "main sector 1600 still at spare sector $q, a failed block"
since_mark | grep -q "dm-remap: $DT: spare sector $p failed: retired; main sector 1600 now at spare sector $q\$" ||
	fail "no retire line for spare sector $p: $(since_mark | grep dm-remap)"
[ "$(dm_field t 11)" = 2 ] || fail "status retired $(dm_field t 11), want 2"
same 200 /tmp/b
on_spare $q /tmp/b
same 100 /tmp/a

dm_remove t
dm_create t "$T" || fail "re-create failed"
[ "$(dm_field t 11)" = 2 ] || fail "retired $(dm_field t 11) after re-create, want 2"
same 100 /tmp/a
same 200 /tmp/b
# Retired blocks are never handed out again: the pool's 3584 blocks less two
# remaps and two retired ones all fit, one more does not, and none of the new
# remaps is on a retired block.
free=$((3584 - 4))
dmsetup message t 0 add_remap 8192 auto $((free * 8)) >/dev/null || fail "add_remap of the $free free blocks failed"
dmsetup message t 0 add_remap 65536 auto >/dev/null 2>&1 && fail "add_remap succeeded in a full pool"
remaps t | awk -v a=4096 -v b=$p '($2 <= a && a < $2 + $3) || ($2 <= b && b < $2 + $3)' >/tmp/reused
[ -s /tmp/reused ] && fail "retired spare blocks handed out again: $(cat /tmp/reused)"
dmsetup message t 0 remove_remap 8192 $((free * 8)) >/dev/null || fail "remove_remap failed"

# (b) Fail mode. 2 MiB of data first, at blocks 1024-1535.
dd if=/dev/urandom of=/tmp/expect bs=1M count=2 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=1M seek=4 oflag=direct 2>/dev/null || fail "pattern write failed"
# region WHEN FIRST LAST: blocks FIRST..LAST (within 1024-1535) read back as written.
region() {
	dd if=/dev/mapper/t bs=4k skip=$2 count=$(($3 - $2 + 1)) iflag=direct 2>/dev/null >/tmp/got ||
		fail "$1: read of blocks $2-$3 failed"
	dd if=/tmp/expect bs=4k skip=$(($2 - 1024)) count=$(($3 - $2 + 1)) 2>/dev/null | cmp -s - /tmp/got ||
		fail "$1: blocks $2-$3 do not read back as written"
}
# The metadata area (spare sectors 0-4095) fails; main block 1250 goes bad.
dm_rewrap sw $S0 0:4096 4096:8 $p:8
dm_rewrap mw $M0 800:8 10000:8
mark
wr 1250 /tmp/c && fail "write to bad main block 1250 succeeded although its remap could not be committed"
[ "$(dm_field t 4)" = fail ] || fail "state $(dm_field t 4) after a failed commit, want fail"
[ "$(dm_stat t fail_mode)" = 1 ] || fail "sysfs fail_mode $(dm_stat t fail_mode), want 1"
since_mark | grep -qF "dm-remap: $DT: metadata commit failed: fail mode, writes are refused until 'clear_fail'" ||
	fail "no fail-mode line: $(since_mark | grep dm-remap)"
wr 1100 /tmp/c && fail "write to good block 1100 succeeded in fail mode"
wr 100 /tmp/c && fail "write to remapped block 100 succeeded in fail mode"
dmsetup message t 0 add_remap 20000 auto >/dev/null 2>/tmp/err && fail "add_remap succeeded in fail mode"
grep -q "Input/output error" /tmp/err || fail "add_remap in fail mode: $(cat /tmp/err), want Input/output error"
# Reads are served, and the refused writes changed nothing (block 1250 is
# left out: main cannot read it and whether its uncommitted remap is kept
# is not specified).
region "fail mode" 1024 1249
region "fail mode" 1251 1535
same 100 /tmp/a
same 200 /tmp/b
dmsetup message t 0 clear_fail >/dev/null 2>&1 && fail "clear_fail succeeded while the metadata area fails"
[ "$(dm_field t 4)" = fail ] || fail "state $(dm_field t 4) after a failed clear_fail, want fail"

# The metadata area works again.
dm_rewrap sw $S0 4096:8 $p:8
mark
r=$(dmsetup message t 0 clear_fail) || fail "clear_fail failed with a working metadata area"
[ "$r" = ok ] || fail "clear_fail replied '$r', want 'ok'"
[ "$(dm_field t 4)" = ok ] || fail "state $(dm_field t 4) after clear_fail, want ok"
[ "$(dm_stat t fail_mode)" = 0 ] || fail "sysfs fail_mode $(dm_stat t fail_mode) after clear_fail"
since_mark | grep -q "dm-remap: $DT: metadata written: fail mode cleared" || fail "no fail-mode-cleared line"
wr 1250 /tmp/c || fail "write to bad main block 1250 failed after clear_fail"
wr 1100 /tmp/d || fail "write to good block 1100 failed after clear_fail"
dd if=/tmp/c of=/tmp/expect bs=4k seek=226 conv=notrunc 2>/dev/null
dd if=/tmp/d of=/tmp/expect bs=4k seek=76 conv=notrunc 2>/dev/null
region "after clear_fail" 1024 1535
same 100 /tmp/a
same 200 /tmp/b

dm_remove t
dm_create t "$T" || fail "re-create after fail mode failed"
[ "$(dm_field t 4)" = ok ] || fail "state $(dm_field t 4) after re-create, want ok"
region "after re-create" 1024 1535
same 100 /tmp/a
same 200 /tmp/b
