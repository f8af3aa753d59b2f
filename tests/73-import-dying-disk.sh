# add_remaps carry on a dying disk: every read of main takes 200 ms
# (dm-delay), so copying 40 blocks takes seconds. The copy runs without the
# target's lock: status and read-only messages answer within 1.5 s
# meanwhile, a message that would change the remaps is refused at once. A
# resume during the copy (I/O may write a block after its copy) makes the
# message fail with nothing changed; the next try, left suspended, adds
# all 40 blocks with their data.
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

M0=$(new_loop 16M)
S=$(new_loop 16M)
dd if=/dev/urandom of=/tmp/expect bs=1M count=16 2>/dev/null
dd if=/tmp/expect of=$M0 bs=1M oflag=direct 2>/dev/null || fail "writing main failed"
dmsetup create md --table "0 32768 delay $M0 0 200" || fail "dm-delay refused"
echo md >>$_STATE/devs
dm_create t "0 32768 remap /dev/mapper/md $S 2 block_size 4096" || fail "create failed"
# 40 scattered blocks, sectors 800, 1600, ...
ranges=$(awk 'BEGIN { for (i = 1; i <= 40; i++) printf "%d+8 ", i * 800 }')

# carry ARGS...: add_remaps carry in the background; its status goes to
# /tmp/rc, its reply or error to /tmp/reply.
carry() {
	rm -f /tmp/rc
	(
		dmsetup message t 0 add_remaps carry $ranges >/tmp/reply 2>&1
		echo $? >/tmp/rc
	) &
	sleep 1
}

dmsetup suspend t || fail "suspend failed"
carry
[ -f /tmp/rc ] && fail "the copy of 40 blocks ended within 1 s: $(cat /tmp/reply)"
for i in 1 2; do
	quick "dmsetup status" dmsetup status t
	quick "count" dmsetup message t 0 count
	quick "pending" dmsetup message t 0 pending
	mark
	quick "refused add_remap" sh -c "! dmsetup message t 0 add_remap $((24000 + i * 8)) auto"
	since_mark | grep -q "an add_remaps carry is copying" ||
		fail "no reason for the refused add_remap: $(since_mark | grep 'remap:')"
done
# A resume during the copy (8 s of reads): the message fails, nothing changed.
[ -f /tmp/rc ] && fail "the copy ended before the resume: $(cat /tmp/reply)"
dmsetup resume t || fail "resume during the copy failed"
wait
[ "$(cat /tmp/rc)" != 0 ] || fail "add_remaps carry succeeded across a resume: $(cat /tmp/reply)"
grep -q "Device or resource busy" /tmp/reply || fail "carry across a resume said: $(cat /tmp/reply)"
[ "$(dmsetup message t 0 count)" = 0 ] || fail "count $(dmsetup message t 0 count) after the failed carry"
[ "$(dm_field t 7 | cut -d/ -f1)" = 0 ] || fail "spare blocks in use after the failed carry: $(dmsetup status t)"

# Again, suspended throughout: all 40 blocks, with their data.
dmsetup suspend t || fail "second suspend failed"
carry
wait
dmsetup resume t || fail "resume failed"
[ "$(cat /tmp/rc)" = 0 ] || fail "add_remaps carry failed: $(cat /tmp/reply)"
[ "$(cat /tmp/reply)" = "added 40 pending 0 skipped 0" ] || fail "reply: $(cat /tmp/reply)"
dd if=/dev/mapper/t of=/tmp/got bs=1M iflag=direct 2>/dev/null || fail "reading the device failed"
cmp -s /tmp/got /tmp/expect || fail "the device reads other data: $(cmp /tmp/got /tmp/expect | head -n 1)"
