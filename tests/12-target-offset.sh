# A remap target that starts inside a larger table maps its first sector to
# main's sector 0.
. /tests/lib.sh
load_module

X=$(new_loop 1M)
M=$(new_loop 16M)
S=$(new_loop 8M)
printf '0 2048 linear %s 0\n2048 32768 remap %s %s\n' $X $M $S | dmsetup create t ||
	fail "create failed"
echo t >>$_STATE/devs
dd if=/dev/urandom of=/tmp/pat bs=4k count=16 2>/dev/null
# Device sector 2048 + 80 is sector 80 of main.
dd if=/tmp/pat of=/dev/mapper/t bs=512 seek=2128 oflag=direct 2>/dev/null || fail "write failed"
dd if=$M bs=512 skip=80 count=128 2>/dev/null | cmp - /tmp/pat || fail "main differs"
dd if=/dev/mapper/t bs=512 skip=2128 count=128 iflag=direct 2>/dev/null | cmp - /tmp/pat ||
	fail "read back differs"
dm_remove t
