# Concurrent writes over failing blocks lose nothing: fio writes the whole
# device with random sizes (4-64 KiB) at queue depth 16 from two jobs while
# 24 scattered blocks of main fail every write and read, then verifies every
# block (CRC-32C in each block's header); after dmsetup remove + create a
# second, verify-only pass reads the same data back. Every bad block ends up
# remapped, and the spare passes `dm-remap-tool check` (clean-up).
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
ranges=""
bad=0
for b in 3 17 18 300 301 302 999 1024 2047 2048 4000 5555 7000 8191 8192 9001 10000 11111 12000 13000 14000 15000 16000 16383; do
	ranges="$ranges $((b * 8)):8"
	bad=$((bad + 1))
done
dm_wrap w $M0 $ranges || fail "wrapper over main refused"
T="0 131072 remap /dev/mapper/w $S 2 block_size 4096"
dm_create t "$T" || fail "create failed"

job() { # extra fio options
	fio --name=v --filename=/dev/mapper/t --direct=1 --ioengine=io_uring --iodepth=16 \
		--numjobs=2 --size=32M --offset_increment=32M --bsrange=4k-64k \
		--blockalign=4k --rw=randwrite --verify=crc32c --verify_fatal=1 --randseed=7 \
		--group_reporting "$@" >/tmp/fio.out 2>&1
}
job || fail "fio write + verify failed: $(tail -20 /tmp/fio.out)"
[ "$(dm_field t 6)" = $bad ] || fail "remaps $(dm_field t 6), want $bad (one per bad block)"
[ "$(dm_stat t auto_remaps)" = $bad ] || fail "auto_remaps $(dm_stat t auto_remaps), want $bad"
[ "$(dm_field t 10)" = 0 ] || fail "pending $(dm_field t 10) after writes only"
dm_remove t
dm_create t "$T" || fail "re-create failed"
job --verify_only || fail "verify after re-create failed: $(tail -20 /tmp/fio.out)"
