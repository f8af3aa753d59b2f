# A spare of a newer format version (tests/data/v4-spare.img.gz: a
# version-3 spare relabelled 4, see src/logic/remaps.rs) is refused with a
# message that says so, and nothing is written to it; the `format` feature
# formats over it.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
zcat /tests/data/v4-spare.img.gz | dd of=$S bs=1M conv=notrunc 2>/dev/null || fail "cannot write the image"
sum=$(meta_sum $S)
T="0 65536 remap $M $S 2 block_size 4096"
mark
dmsetup create t --table "$T" 2>/tmp/err && { echo t >>$_STATE/devs; fail "a version-4 spare was accepted"; }
dmsetup remove t 2>/dev/null
since_mark | grep -q "spare metadata is format version 4; this module reads 2 and 3" ||
	fail "no log line naming version 4: $(since_mark | grep -E 'remap|device-mapper')"
since_mark | grep -q "newer format version than this module knows" ||
	fail "refused without saying why: $(since_mark | grep -E 'remap|device-mapper')"
[ "$(meta_sum $S)" = "$sum" ] || fail "the refused spare was written"
dm-remap-tool check $S >/tmp/check && fail "dm-remap-tool check passes a version-4 spare"
grep -q "format version 4 is newer than this tool knows" /tmp/check || fail "check: $(cat /tmp/check)"

mark
dm_create t "0 65536 remap $M $S 3 block_size 4096 format" || fail "format over version 4 refused"
since_mark | grep -q "spare formatted" || fail "not formatted: $(since_mark | grep dm-remap)"
[ "$(dmsetup message t 0 count)" = 0 ] || fail "count $(dmsetup message t 0 count) after format"
dm_remove t
