# The scanner on a dying disk: every read of main takes 100 ms (dm-delay),
# and 16 blocks fail after it (`error` segments), so narrowing the failed
# chunk down block by block costs about 10 s of reads. None of it is done
# under the target's lock: status, messages (`scan status`, `scan stop`,
# `add_remap`), suspend and resume answer within 1.5 s meanwhile, and the
# scan still finds every bad block.
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

M0=$(new_loop 16M)
S=$(new_loop 16M)
# Blocks 16-31 (sectors 128-255) fail; every read of main takes 100 ms.
dm_wrap w $M0 128:128 || fail "wrapper over main refused"
dmsetup create md --table "0 32768 delay /dev/mapper/w 0 100" || fail "dm-delay refused"
echo md >>$_STATE/devs
dm_create t "0 32768 remap /dev/mapper/md $S 2 block_size 4096" || fail "create failed"
dmsetup message t 0 scan_rate 64 >/dev/null || fail "scan_rate failed"

dmsetup message t 0 scan start >/dev/null || fail "scan start failed"
sleep 2
for i in 1 2 3; do
	quick "dmsetup status" dmsetup status t
	quick "scan status" dmsetup message t 0 scan status
	quick "count" dmsetup message t 0 count
	quick "add_remap" dmsetup message t 0 add_remap $((8000 + i * 8)) auto
	sleep 0.5
done
quick "suspend" dmsetup suspend t
scan_now t
[ "$state" = paused ] || fail "scan state '$state' while suspended"
quick "resume" dmsetup resume t
sleep 1
quick "scan stop" dmsetup message t 0 scan stop
scan_now t
[ "$state" = idle ] || fail "scan state '$state' after scan stop"

# Started again, the scan goes through and finds all 16 blocks.
dmsetup message t 0 scan start >/dev/null || fail "second scan start failed"
cs
t0=$cs
while scan_now t && [ "$passes" = 0 ]; do
	quick "dmsetup status" dmsetup status t
	cs
	[ $((cs - t0)) -lt 12000 ] || fail "no full pass in 120 s: $(dmsetup message t 0 scan status)"
	sleep 0.3
done
[ "$found" = 16 ] || fail "found $found, want 16"
want=$(sector_list 128 248)
[ "$(dmsetup message t 0 pending)" = "$want" ] || fail "pending '$(dmsetup message t 0 pending)', want '$want'"
dmsetup message t 0 scan stop >/dev/null
