# dm-remap-tool retire: after a migration, the old spare is marked so that
# no table line can bring its old data back. A table over it is refused with
# the reason (even when a retire stopped after its first copy), `format`
# reuses it, and dump, check and lost still read what it recorded. A spare
# in use is not retired.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
N=$(new_loop 32M)
T="0 32768 remap $M"
dm_create t "$T $S 2 block_size 4096" || fail "create failed"
dmsetup message t 0 add_remap 800 auto 64 >/dev/null || fail "add_remap failed"
dd if=/dev/urandom of=/tmp/expect bs=1M count=16 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "write failed"
dm-remap-tool retire $S >/tmp/out 2>&1 && fail "retire of a spare in use succeeded"
grep -q "is in use" /tmp/out || fail "retire of a spare in use said: $(cat /tmp/out)"
dm_remove t
dm-remap-tool migrate $S $N >/tmp/out 2>&1 || fail "migrate failed: $(cat /tmp/out)"
grep -q "dm-remap-tool retire $S" /tmp/out || fail "migrate does not say to retire the old spare: $(cat /tmp/out)"
dm_create t "$T $N 2 block_size 4096" || fail "create over the new spare failed"
dd if=/dev/mapper/t of=/tmp/got bs=1M iflag=direct 2>/dev/null && cmp -s /tmp/got /tmp/expect ||
	fail "the new spare's device reads differently"

# The old spare still loads (the fallback) until it is retired. Copy 1's
# header as it was, to stage a retire that stopped after copy 0.
sum=$(meta_sum $S)
c1=$(copy_at 1 $S)
[ -n "$c1" ] || fail "no copy 1 in: $(dm-remap-tool dump $S)"
dd if=$S of=/tmp/h1 bs=512 skip=$c1 count=8 iflag=direct 2>/dev/null || fail "reading copy 1's header failed"
dm-remap-tool retire $S >/tmp/out 2>&1 || fail "retire failed: $(cat /tmp/out)"
grep -q "^$S: retired: a table refuses it" /tmp/out || fail "retire said: $(cat /tmp/out)"
[ "$(meta_sum $S)" != "$sum" ] || fail "retire wrote nothing"
dm-remap-tool retire $S | grep -q "retired already" || fail "a second retire did not say so"
dm-remap-tool check $S | grep -q "^$S: retired" || fail "check: $(dm-remap-tool check $S)"
dm-remap-tool dump $S | grep -q "^moved          yes" || fail "dump shows no moved line"
[ "$(dm-remap-tool export --format sectors --remapped $S | wc -l)" = 8 ] || fail "export lost the remaps"
dm_remove t
expect_bad_table x "$T $S 2 block_size 4096" "Spare's remaps moved to another spare"
# A retire that stopped after copy 0's header: copy 1 put back as it was
# (the older generation, unmarked) is not loaded; refused all the same.
dd if=/tmp/h1 of=$S bs=512 seek=$c1 count=8 oflag=direct conv=notrunc 2>/dev/null || fail "restoring copy 1 failed"
blockdev --flushbufs $S
dm-remap-tool dump $S | grep -q "copy 1 (sector $c1): stale" || fail "copy 1 not restored: $(dm-remap-tool dump $S)"
expect_bad_table x "$T $S 2 block_size 4096" "Spare's remaps moved to another spare"
# `format` reuses it: empty.
dm_create x "$T $S 3 block_size 4096 format" || fail "format over the retired spare refused"
[ "$(dmsetup message x 0 count)" = 0 ] || fail "the formatted spare has $(dmsetup message x 0 count) remaps"
blockdev --flushbufs $S
dm-remap-tool check $S | grep -q ": clean: " || fail "check after format: $(dm-remap-tool check $S)"
dm_remove x
