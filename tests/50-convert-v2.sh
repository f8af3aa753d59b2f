# A version-2 spare (tests/data/v2-spare.img.gz, written by the version-2
# code; src/logic/remaps.rs checks it) loads with its remaps, retired and
# pending blocks, and keeps working; `convert_metadata` rewrites it as
# version 3 in place, with every remap and the data byte for byte, through
# remove + create. Converting twice is refused. The same version-2 spare on
# 4Kn devices is read, keeps working there as version 2 (a commit, and the
# repair of a lost copy, write 512-byte sectors inside 4 KiB blocks), and
# converts there.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
zcat /tests/data/v2-spare.img.gz | dd of=$S bs=1M conv=notrunc 2>/dev/null || fail "cannot write the image"
T="0 65536 remap $M $S 2 block_size 4096"
LIST="800 4096 64
8000 16384 8"
mark
dm_create t "$T" || fail "the version-2 spare was refused: $(since_mark | grep dm-remap)"
since_mark | grep -q "metadata loaded from copy 0 (generation 4, 9 remaps)" || fail "load: $(since_mark | grep dm-remap)"
[ "$(remaps t)" = "$LIST" ] || fail "remaps: $(remaps t)"
[ "$(dmsetup message t 0 pending)" = 24000 ] || fail "pending: $(dmsetup message t 0 pending)"
[ "$(dm_field t 11)" = 1 ] || fail "retired $(dm_field t 11), want 1"
dm-remap-tool dump $S | grep -q "^format version 2$" || fail "not version 2: $(dm-remap-tool dump $S)"
# It keeps working as version 2: a remap by message; data everywhere but
# the pending block (block 3000, which main still reads as zeros).
dmsetup message t 0 add_remap 16000 auto 8 >/dev/null || fail "add_remap on version 2 failed"
LIST="$(remaps t)"
# readback: the device's data, read O_DIRECT into /tmp/got (a file, not a
# pipe: cheaper in the guest), equals /tmp/expect.
readback() {
	dd if=/dev/mapper/t of=/tmp/got bs=1M iflag=direct 2>/dev/null
	cmp /tmp/got /tmp/expect
}
dd if=/dev/urandom of=/tmp/expect bs=1M count=32 2>/dev/null
dd if=/dev/zero of=/tmp/expect bs=4096 seek=3000 count=1 conv=notrunc 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=4096 count=3000 oflag=direct 2>/dev/null || fail "write failed"
dd if=/tmp/expect of=/dev/mapper/t bs=4096 skip=3001 seek=3001 oflag=direct 2>/dev/null || fail "write failed"
[ "$(dmsetup message t 0 pending)" = 24000 ] || fail "pending after the write: $(dmsetup message t 0 pending)"

mark
r=$(dmsetup message t 0 convert_metadata) || fail "convert_metadata failed: $(since_mark | grep dm-remap)"
[ "$r" = "converted to format version 3: 5 copies of 96 units" ] || fail "reply '$r'"
[ "$(remaps t)" = "$LIST" ] || fail "remaps after conversion: $(remaps t)"
readback || fail "data after conversion differs"
dmsetup message t 0 convert_metadata 2>/dev/null && fail "a second conversion was accepted"
dm_remove t
dm-remap-tool check $S || fail "check after conversion found problems"
dm-remap-tool dump $S | grep -q "^format version 3$" || fail "not version 3: $(dm-remap-tool dump $S)"

mark
dm_create t "$T" || fail "the converted spare was refused"
since_mark | grep -q repaired && fail "repairs after conversion: $(since_mark | grep dm-remap)"
[ "$(remaps t)" = "$LIST" ] || fail "remaps after re-create: $(remaps t)"
[ "$(dmsetup message t 0 pending)" = 24000 ] || fail "pending after re-create: $(dmsetup message t 0 pending)"
[ "$(dm_field t 11)" = 1 ] || fail "retired after re-create: $(dm_field t 11)"
readback || fail "data after re-create differs"
dmsetup message t 0 add_remap 24000 auto 8 >/dev/null || fail "add_remap on version 3 failed"
dm_remove t

# On 4Kn devices: version 2 is read through whole 4 KiB blocks.
M4=$(new_loop 32M -b 4096)
S4=$(new_loop 16M -b 4096)
zcat /tests/data/v2-spare.img.gz | dd of=$S4 bs=1M conv=notrunc 2>/dev/null || fail "cannot write the image"
mark
dm_create k "0 65536 remap $M4 $S4" || fail "the version-2 spare was refused on 4Kn: $(since_mark | grep dm-remap)"
[ "$(remaps k)" = "800 4096 64
8000 16384 8" ] || fail "remaps on 4Kn: $(remaps k)"
dmsetup message k 0 add_remap 12000 auto 8 >/dev/null || fail "add_remap on version 2 on 4Kn failed"
dmsetup message k 0 remove_remap 800 8 >/dev/null || fail "remove_remap on version 2 on 4Kn failed"
LIST4=$(remaps k)
dm_remove k
dm-remap-tool check $S4 || fail "check of version 2 after commits on 4Kn found problems"
# Copy 1's header lost: loading repairs it (a 512-byte write, not aligned
# to the device's blocks).
c1=$(dm-remap-tool dump $S4 | sed -n 's/^copy 1 at sector \([0-9]*\):.*/\1/p')
[ -n "$c1" ] && [ $((c1 % 8)) != 0 ] || fail "copy 1 of version 2 at sector '$c1'"
dd if=/dev/zero of=$S4 bs=512 seek=$c1 count=1 conv=notrunc 2>/dev/null || fail "cannot zero copy 1"
mark
dm_create k "0 65536 remap $M4 $S4" || fail "version 2 with copy 1 lost refused on 4Kn: $(since_mark | grep dm-remap)"
since_mark | grep -q "metadata copy 1 repaired" ||
	fail "copy 1 not repaired on 4Kn: $(since_mark | grep dm-remap)"
[ "$(remaps k)" = "$LIST4" ] || fail "remaps on 4Kn after the repair: $(remaps k)"
dm_remove k
dm-remap-tool check $S4 || fail "check of version 2 after the repair on 4Kn found problems"
dm_create k "0 65536 remap $M4 $S4" || fail "version 2 refused on 4Kn after the repair"
r=$(dmsetup message k 0 convert_metadata) || fail "convert_metadata on 4Kn failed: $(since_mark | grep dm-remap)"
dmsetup message k 0 add_remap 16000 auto 8 >/dev/null || fail "add_remap after conversion on 4Kn failed"
dm_remove k
dm-remap-tool check $S4 || fail "check after conversion on 4Kn found problems"
