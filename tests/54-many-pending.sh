# More pending blocks than a version-2 spare could list (60): the scanner
# finds 200 bad blocks of main (one run of `error` segment, 800 KiB, more
# than a scanner step records), every one becomes pending and stays so
# through remove + create; `map` finds each of them (a write to one goes to a
# spare block and ends its pending state, a write next to them does not).
. /tests/lib.sh
load_module

M0=$(new_loop 16M)
S=$(new_loop 16M)
# Blocks 1000-1199 (sectors 8000-9599) fail.
dm_wrap w $M0 8000:1600 || fail "wrapper over main refused"
T="0 32768 remap /dev/mapper/w $S 6 block_size 4096 read_retries 0 scan_rate 64"
dm_create t "$T" || fail "create failed"

dmsetup message t 0 scan start >/dev/null || fail "scan start failed"
cs
t0=$cs
while scan_now t && [ "$passes" = 0 ]; do
	cs
	[ $((cs - t0)) -lt 12000 ] || fail "no full pass in 120 s: $(dmsetup message t 0 scan status)"
	sleep 0.3
done
dmsetup message t 0 scan stop >/dev/null
[ "$found" = 200 ] || fail "found $found, want 200"

want=$(sector_list 8000 9592)
[ "$(dmsetup message t 0 pending)" = "$want" ] || fail "pending after the scan: $(dmsetup message t 0 pending | wc -w) blocks, want 200"
[ "$(dm_field t 10)" = 200 ] || fail "status pending $(dm_field t 10), want 200"
dm_remove t
dm_create t "$T" || fail "re-create failed"
[ "$(dmsetup message t 0 pending)" = "$want" ] || fail "pending after re-create: $(dmsetup message t 0 pending | wc -w) blocks, want 200"

# A write to the last one, and to the block after it (good, on main).
dd if=/dev/urandom of=/tmp/w bs=4096 count=2 2>/dev/null
dd if=/tmp/w of=/dev/mapper/t bs=4096 seek=1199 count=2 oflag=direct conv=notrunc 2>/dev/null ||
	fail "write over the last pending block failed"
case $(dmsetup message t 0 query 9592) in
spare*) ;;
*) fail "pending block 1199 not remapped by a write: $(dmsetup message t 0 query 9592)" ;;
esac
[ "$(dmsetup message t 0 query 9600)" = "main 9600" ] || fail "block 1200 moved: $(dmsetup message t 0 query 9600)"
dd if=/dev/mapper/t of=/tmp/r bs=4096 skip=1199 count=2 iflag=direct 2>/dev/null || fail "read back failed"
cmp -s /tmp/w /tmp/r || fail "blocks 1199-1200 read back different data"
[ "$(dm_field t 10)" = 199 ] || fail "status pending $(dm_field t 10) after the write, want 199"
