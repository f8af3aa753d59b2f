# Data written through the device lands at the same offsets of main, byte for
# byte, reads back equal (buffered and O_DIRECT), and the spare's data pool
# is never touched.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
dm_create t "0 65536 remap $M $S" || fail "create failed"

dd if=/dev/urandom of=/tmp/pat bs=1M count=6 2>/dev/null
# Buffered write at an odd sector offset, then O_DIRECT 1 MiB writes.
off=$((3 * 1048576 + 512))
dd if=/tmp/pat of=/dev/mapper/t bs=64k oflag=seek_bytes seek=$off conv=fsync 2>/dev/null ||
	fail "buffered write failed"
dd if=/tmp/pat of=/dev/mapper/t bs=1M count=2 seek=20 oflag=direct 2>/dev/null ||
	fail "direct write failed"

echo 3 >/proc/sys/vm/drop_caches
dd if=$M bs=64k iflag=skip_bytes skip=$off count=96 2>/dev/null | cmp - /tmp/pat ||
	fail "main does not hold the buffered write"
dd if=$M bs=1M skip=20 count=2 2>/dev/null | cmp - /tmp/pat -n 2097152 ||
	fail "main does not hold the direct write"
dd if=/dev/mapper/t bs=64k iflag=skip_bytes skip=$off count=96 2>/dev/null | cmp - /tmp/pat ||
	fail "buffered read back differs"
dd if=/dev/mapper/t bs=1M skip=20 count=2 iflag=direct 2>/dev/null | cmp - /tmp/pat -n 2097152 ||
	fail "direct read back differs"

# The whole device equals main (cmp, byte for byte: hashing 32 MiB twice is
# slow in the guest).
cmp -s /dev/mapper/t $M || fail "device and main differ"
# The spare's data pool (the 14 MiB after the 2 MiB metadata area) is still
# all zeros.
cmp -s -n $((14 * 1048576)) -i $((2 * 1048576)):0 $S /dev/zero || fail "the spare's data pool was written"
