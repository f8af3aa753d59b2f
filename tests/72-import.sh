# dm-remap-tool import: a badblocks list of ~400 scattered 1 KiB blocks goes
# in with --carry, a few blocks per message, while a writer rewrites some of
# the listed blocks. Every readable block keeps its data (the writer's where
# it wrote), the one main cannot read becomes pending, and all of it
# survives a reload. A second import adds nothing. Without --carry an md
# list's blocks read what the spare holds. Spare blocks that fail the
# carried writes are retired and others taken. Refused without a change:
# `carry` on a device that is not suspended, a list past the device's end,
# a list with a bad line.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 32M)
# 4 KiB block 3000 (sectors 24000..24007) cannot be read from main.
dm_wrap mw $M 24000:8 || fail "wrapper over main refused"
dm_wrap sw $S || fail "wrapper over the spare refused"
dd if=/dev/urandom of=/tmp/expect bs=1M count=32 2>/dev/null
dd if=/tmp/expect of=$M bs=1M oflag=direct 2>/dev/null || fail "writing main failed"
TABLE="0 65536 remap /dev/mapper/mw /dev/mapper/sw 2 block_size 4096"
dm_create t "$TABLE" || fail "create failed"

# ~400 pseudo-random 1 KiB blocks, and 12000 (in 4 KiB block 3000).
awk 'BEGIN { x = 12345; for (i = 0; i < 400; i++) {
	x = (x * 1103515245 + 12345) % 2147483648; print int(x / 65536) % 32768 }
	print 12000 }' >/tmp/list
awk '{ print int($1 / 4) }' /tmp/list | sort -un >/tmp/blocks
_lines /tmp/blocks
nblocks=$_ln
# The writer's blocks: 40 of the listed ones, not block 3000.
grep -vx 3000 /tmp/blocks | head -n 40 >/tmp/wblocks
dd if=/dev/urandom of=/tmp/new bs=1M count=32 2>/dev/null

(
	while read -r b; do
		dd if=/tmp/new of=/dev/mapper/t bs=4096 skip=$b seek=$b count=1 oflag=direct conv=notrunc 2>/dev/null ||
			echo "write of block $b failed" >>/tmp/werr
		sleep 0.1
	done </tmp/wblocks
) &
writer=$!
dm-remap-tool import --carry --batch 8 t /tmp/list >/tmp/out 2>&1 || fail "import failed: $(cat /tmp/out)"
wait $writer
[ -s /tmp/werr ] && fail "the writer failed: $(cat /tmp/werr)"
grep -q "^t: added $((nblocks - 1)), pending 1, skipped 0 (already remapped or pending) in [0-9]* messages$" /tmp/out ||
	fail "import said: $(cat /tmp/out)"
grep -q "1 blocks could not be read from main" /tmp/out || fail "no word of the unreadable block: $(cat /tmp/out)"
[ "$(dmsetup message t 0 count)" = $((nblocks - 1)) ] || fail "count $(dmsetup message t 0 count), want $((nblocks - 1))"
[ "$(dmsetup message t 0 pending)" = 24000 ] || fail "pending: $(dmsetup message t 0 pending)"
note "$(head -n 1 /tmp/out)"

# What the device must read: main's data, the writer's blocks rewritten,
# and block 3000 (unreadable) as zeros below.
while read -r b; do
	dd if=/tmp/new of=/tmp/expect bs=4096 skip=$b seek=$b count=1 conv=notrunc 2>/dev/null
done </tmp/wblocks
dd if=/dev/zero of=/tmp/expect bs=4096 seek=3000 count=1 conv=notrunc 2>/dev/null
check() {
	dd if=/dev/mapper/t of=/tmp/got bs=4096 iflag=direct conv=noerror,sync 2>/dev/null
	cmp -s /tmp/got /tmp/expect || fail "the device reads other data ($1): $(cmp /tmp/got /tmp/expect | head -n 1)"
}
check "after the import"
dmsetup suspend t && dmsetup reload t --table "$TABLE" && dmsetup resume t || fail "reload failed"
[ "$(dmsetup message t 0 count)" = $((nblocks - 1)) ] || fail "count after the reload: $(dmsetup message t 0 count)"
[ "$(dmsetup message t 0 pending)" = 24000 ] || fail "pending after the reload: $(dmsetup message t 0 pending)"
check "after a reload"

# Again: nothing to add, nothing written.
blockdev --flushbufs $S
gen=$(dm-remap-tool dump $S | awk '/^generation/ { print $2; exit }')
dm-remap-tool import --carry t /tmp/list >/tmp/out 2>&1 || fail "second import failed: $(cat /tmp/out)"
grep -q "^t: added 0, pending 0, skipped $nblocks " /tmp/out || fail "second import said: $(cat /tmp/out)"
blockdev --flushbufs $S
[ "$(dm-remap-tool dump $S | awk '/^generation/ { print $2; exit }')" = "$gen" ] || fail "the second import committed"

# Refusals change nothing.
before=$(dmsetup message t 0 list 0 10000 | md5sum)
mark
dmsetup message t 0 add_remaps carry 40000 2>/dev/null && fail "carry accepted on a running device"
since_mark | grep -q "carry copies data only while the device is suspended" ||
	fail "no reason for the refused carry: $(since_mark | grep 'remap:')"
printf '1\n70000\n' >/tmp/far
dm-remap-tool import t /tmp/far >/tmp/out 2>&1 && fail "a list past the end was imported"
grep -q "beyond the device's end" /tmp/out || fail "past the end said: $(cat /tmp/out)"
printf '1\nseven\n' >/tmp/junk
dm-remap-tool import --format sectors t /tmp/junk >/tmp/out 2>&1 && fail "a bad list was imported"
grep -q "line 2: not a decimal number" /tmp/out || fail "bad list said: $(cat /tmp/out)"
[ "$(dmsetup message t 0 list 0 10000 | md5sum)" = "$before" ] || fail "a refusal changed the remaps"

# Without --carry (md's format: two blocks the list does not name) the
# blocks read what their spare blocks hold, zeros on this fresh spare.
nb=$(awk 'NR == FNR { s[$1] = 1; next }
	END { for (b = 5000; ; b++) if (!(b in s) && !((b + 1) in s)) { print b; exit } }' /tmp/blocks /dev/null)
printf '%s 16\n' $((nb * 8)) | dm-remap-tool import --format md t - >/tmp/out 2>&1 ||
	fail "md import failed: $(cat /tmp/out)"
grep -q "^t: added 2, pending 0, skipped 0 " /tmp/out || fail "md import said: $(cat /tmp/out)"
dd if=/dev/zero of=/tmp/expect bs=4096 seek=$nb count=2 conv=notrunc 2>/dev/null
check "after the import without carry"

# The next 4 pool blocks fail writes: a --carry import of 20 more blocks
# retires them and puts the blocks on the ones after, data intact.
blockdev --flushbufs $S
pool=$(dm-remap-tool dump $S | awk '/^pool start/ { print $3 }')
used=$(dm_field t 7 | cut -d/ -f1)
dm_rewrap sw $S $((pool + used * 8)):32
awk 'NR == FNR { s[$1] = 1; next }
	END { n = 0; for (b = 7000; n < 20; b += 3) if (!(b in s)) { print b * 4; n++ } }' /tmp/blocks /dev/null >/tmp/more
dm-remap-tool import --carry t /tmp/more >/tmp/out 2>&1 || fail "import over failing spare blocks failed: $(cat /tmp/out)"
grep -q "^t: added 20, pending 0, skipped 0 " /tmp/out || fail "import over failing spare blocks said: $(cat /tmp/out)"
[ "$(dm_field t 11)" = 4 ] || fail "retired $(dm_field t 11), want 4"
check "after spare blocks failed the carried writes"
