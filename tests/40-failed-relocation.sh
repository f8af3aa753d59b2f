# A relocation whose every new spare block fails its data write retires
# those blocks on disk as well as in memory: a later commit that does not
# touch their entry sector (an add_remap elsewhere) still leaves every
# metadata copy valid, the table loads again after remove + create, and no
# remap or acknowledged write is lost.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
# Main: a bad block at sector 800 (block 100). Spare: pool blocks 0-15
# (sectors 4096-4223, entry sector 0 of the metadata) fail every I/O, more
# than one relocation tries (8).
dm_wrap mw $M0 800:8 || fail "wrapper over main refused"
dm_wrap sw $S0 4096:128 || fail "wrapper over the spare refused"
T="0 131072 remap /dev/mapper/mw /dev/mapper/sw 2 block_size 4096"
dm_create t "$T" || fail "create failed"
DT=$(dm_devt t)

dd if=/dev/urandom of=/tmp/good bs=4k count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/bad bs=4k count=1 2>/dev/null
dd if=/tmp/good of=/dev/mapper/t bs=4k seek=5 oflag=direct 2>/dev/null || fail "write to block 5 failed"

mark
dd if=/tmp/bad of=/dev/mapper/t bs=4k seek=100 oflag=direct 2>/dev/null &&
	fail "write to main block 100 succeeded although main and 8 spare blocks fail"
[ "$(dm_field t 11)" = 8 ] || fail "status retired $(dm_field t 11), want 8"
[ "$(since_mark | grep -c "dm-remap: $DT: spare sector [0-9]* failed: retired\$")" = 8 ] ||
	fail "want 8 retire lines: $(since_mark | grep dm-remap)"
[ "$(dm_field t 6)" = 0 ] || fail "status remaps $(dm_field t 6), want 0"

# A commit elsewhere: pool block 64 (entry sector 1).
dmsetup message t 0 add_remap 1600 4608 >/dev/null || fail "add_remap 1600 4608 failed"

# The metadata on the spare is whole: it loads again.
dm_remove t
mark
dm_create t "$T" || fail "create after the failed relocation refused: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -q "metadata loaded from copy 0 (generation [0-9]*, 1 remaps)" ||
	fail "no load line: $(since_mark | grep dm-remap)"
[ "$(dm_field t 6)" = 1 ] || fail "status remaps $(dm_field t 6) after reload, want 1"
[ "$(dm_field t 11)" = 8 ] || fail "status retired $(dm_field t 11) after reload, want 8"
q=$(dmsetup message t 0 query 1600)
[ "$q" = "spare 4608" ] || fail "main sector 1600 is at '$q' after reload, want 'spare 4608'"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=5 count=1 iflag=direct 2>/dev/null || fail "read of block 5 failed"
cmp -s /tmp/got /tmp/good || fail "block 5 does not read back as written"

# The next relocation skips the retired blocks: 8-15 fail too, then 16 works.
dd if=/tmp/bad of=/dev/mapper/t bs=4k seek=100 oflag=direct 2>/dev/null &&
	fail "second write to block 100 succeeded with spare blocks 8-15 failing"
[ "$(dm_field t 11)" = 16 ] || fail "status retired $(dm_field t 11), want 16"
dd if=/tmp/bad of=/dev/mapper/t bs=4k seek=100 oflag=direct 2>/dev/null ||
	fail "third write to block 100 failed; pool block 16 works"
q=$(dmsetup message t 0 query 800)
[ "$q" = "spare 4224" ] || fail "main sector 800 is at '$q', want 'spare 4224' (pool block 16)"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=100 count=1 iflag=direct 2>/dev/null || fail "read of block 100 failed"
cmp -s /tmp/got /tmp/bad || fail "block 100 does not read back as written"
dm_remove t
dm_create t "$T" || fail "create after the relocation refused"
[ "$(dm_field t 6)" = 2 ] || fail "status remaps $(dm_field t 6) after the second reload, want 2"
[ "$(dm_field t 11)" = 16 ] || fail "status retired $(dm_field t 11) after the second reload, want 16"
