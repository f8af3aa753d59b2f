# With scattered remaps, data written through the device lands on the spare
# for remapped blocks and on main for the others, byte for byte, and reads
# (O_DIRECT 1 MiB, buffered, odd sizes) return exactly what was written.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 64M)
dm_create t "0 131072 remap $M $S" || fail "create failed"
msg() { dmsetup message t 0 "$@" >/dev/null || fail "message $* failed"; }
# The pool of this spare (64 MiB, 512-byte blocks: 120,832 blocks described)
# starts after a 5 MiB metadata area, at sector 10240.
msg add_remap 7 15000
msg add_remap 100 auto 8
msg add_remap 2048 16000 64
for s in 3001 3333 4095 4096 8191; do msg add_remap $s auto; done
[ "$(dmsetup message t 0 count)" = 78 ] || fail "count $(dmsetup message t 0 count)"

dd if=/dev/urandom of=/tmp/pat bs=1M count=4 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "direct write failed"

# Every remapped extent is on the spare; main holds the rest (and zeros where
# the data went to the spare instead).
cp /tmp/pat /tmp/expect
dmsetup message t 0 list 0 10000 >/tmp/list || fail "list failed"
note "remaps: $(wc -l </tmp/list) extents"
while read -r main spare nr; do
	dd if=$S bs=512 skip=$spare count=$nr 2>/dev/null >/tmp/got
	dd if=/tmp/pat bs=512 skip=$main count=$nr 2>/dev/null >/tmp/want
	cmp -s /tmp/got /tmp/want || fail "spare at $spare does not hold main sectors $main+$nr"
	dd if=/dev/zero of=/tmp/expect bs=512 seek=$main count=$nr conv=notrunc 2>/dev/null
done </tmp/list
dd if=$M bs=1M count=4 2>/dev/null | cmp - /tmp/expect || fail "main holds the wrong data"

dd if=/dev/mapper/t bs=1M count=4 iflag=direct 2>/dev/null | cmp - /tmp/pat ||
	fail "O_DIRECT read back differs"
echo 3 >/proc/sys/vm/drop_caches
dd if=/dev/mapper/t bs=3584 count=1170 2>/dev/null | cmp - /tmp/pat -n 4193280 ||
	fail "buffered read back (3584-byte reads) differs"
# A read that starts inside a remapped run and ends inside main.
dd if=/dev/mapper/t bs=512 skip=2100 count=200 iflag=direct 2>/dev/null >/tmp/got
dd if=/tmp/pat bs=512 skip=2100 count=200 2>/dev/null | cmp - /tmp/got || fail "straddling read differs"
[ "$(dmsetup message t 0 query 2050)" = "spare 16002" ] || fail "query 2050: $(dmsetup message t 0 query 2050)"
[ "$(dmsetup message t 0 query 2112)" = "main 2112" ] || fail "query 2112"
