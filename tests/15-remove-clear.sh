# remove_remap and clear_remaps send I/O back to main; add_remap moves no
# data (a newly remapped block reads as its spare block until written).
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 32M)
dm_create t "0 65536 remap $M $S" || fail "create failed"
dd if=/dev/urandom of=/tmp/a bs=1M count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=1M count=1 2>/dev/null
dd if=/dev/zero of=/tmp/zero bs=1M count=1 2>/dev/null
rd() { dd if=/dev/mapper/t bs=512 skip=$1 count=$2 iflag=direct 2>/dev/null; }

dd if=/tmp/a of=/dev/mapper/t bs=1M seek=1 oflag=direct 2>/dev/null || fail "write a"
dmsetup message t 0 add_remap 2048 auto 2048 >/dev/null || fail "add failed"
rd 2048 2048 | cmp -s - /tmp/zero || fail "remapped range does not read from the (empty) spare"
dd if=/tmp/b of=/dev/mapper/t bs=1M seek=1 oflag=direct 2>/dev/null || fail "write b"
rd 2048 2048 | cmp -s - /tmp/b || fail "remapped range does not read back b"
cmp -s -n 1048576 -i 1048576:0 $M /tmp/a || fail "main changed under a remap"

dmsetup message t 0 remove_remap 2048 1024 >/dev/null || fail "remove failed"
rd 2048 1024 >/tmp/got1
cmp -s -n 524288 /tmp/a /tmp/got1 || fail "removed half does not read from main"
rd 3072 1024 >/tmp/got2
cmp -s -n 524288 -i 524288:0 /tmp/b /tmp/got2 || fail "remaining half does not read from the spare"
[ "$(dmsetup message t 0 count)" = 1024 ] || fail "count after remove"

[ "$(dmsetup message t 0 clear_remaps)" = "cleared 1024" ] || fail "clear reply"
rd 2048 2048 | cmp -s - /tmp/a || fail "after clear the range does not read from main"
dmsetup status t | grep -q ' ok 512 0 0/' || fail "status after clear: $(dmsetup status t)"
