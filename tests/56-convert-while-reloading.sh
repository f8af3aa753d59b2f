# convert_metadata while the table is reloaded: the spare's metadata writes
# take 300 ms each (dm-delay), so the conversion runs for seconds; a new
# table for the device is loaded while it runs (its constructor reads the
# spare half converted) and made live by suspend + resume. The conversion
# answers, the live table serves the same remaps and takes new ones, and
# after remove + create the spare loads as version 3 with all of them; the
# data written before reads back byte for byte.
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
zcat /tests/data/v2-spare.img.gz | dd of=$S bs=1M conv=notrunc 2>/dev/null || fail "cannot write the image"
dmsetup create sd --table "0 32768 delay $S 0 0 $S 0 300" || fail "dm-delay over the spare refused"
echo sd >>$_STATE/devs
T="0 65536 remap $M /dev/mapper/sd 2 block_size 4096"
dm_create t "$T" || fail "the version-2 spare was refused"
LIST=$(remaps t)
dd if=/dev/urandom of=/tmp/expect bs=4096 count=200 2>/dev/null
dd if=/tmp/expect of=/dev/mapper/t bs=4096 seek=100 oflag=direct 2>/dev/null || fail "write failed"

mark
dmsetup message t 0 convert_metadata >/tmp/reply 2>&1 &
conv=$!
sleep 0.5
dmsetup load t --table "$T" || fail "reload while converting refused: $(since_mark | grep -E 'remap|device-mapper')"
dmsetup suspend t || fail "suspend while converting failed"
dmsetup resume t || fail "resume of the new table failed: $(since_mark | grep -E 'remap|device-mapper')"
wait $conv || fail "convert_metadata failed: $(cat /tmp/reply) $(since_mark | grep dm-remap)"
grep -q "converted to format version 3" /tmp/reply || fail "reply: $(cat /tmp/reply)"
[ "$(remaps t)" = "$LIST" ] || fail "remaps of the new table: $(remaps t)"
dmsetup message t 0 add_remap 16000 auto 8 >/dev/null || fail "add_remap after the reload failed: $(since_mark | grep dm-remap)"
LIST=$(remaps t)
dd if=/dev/mapper/t of=/tmp/got bs=4096 skip=100 count=200 iflag=direct 2>/dev/null || fail "read back failed"
cmp -s /tmp/got /tmp/expect || fail "data differs after the reload"
dm_remove t
dm-remap-tool dump /dev/mapper/sd | grep -q "^format version 3$" || fail "not version 3: $(dm-remap-tool dump /dev/mapper/sd)"
dm-remap-tool check /dev/mapper/sd || fail "check after the conversion found problems"
mark
dm_create t "$T" || fail "re-create after the conversion refused"
since_mark | grep -q repaired && fail "repairs after the conversion: $(since_mark | grep dm-remap)"
[ "$(remaps t)" = "$LIST" ] || fail "remaps after re-create: $(remaps t)"
dd if=/dev/mapper/t of=/tmp/got bs=4096 skip=100 count=200 iflag=direct 2>/dev/null || fail "read back failed"
cmp -s /tmp/got /tmp/expect || fail "data differs after re-create"
