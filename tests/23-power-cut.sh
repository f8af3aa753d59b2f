# Power cut during a stream of add_remap: the spare sits on dm-flakey, which
# is switched to drop every write at a moment the stream does not know. After
# "reboot" (recreating on the raw spare) every remap acknowledged before the
# cut is there, and the remaps are exactly a prefix of the stream.
# dmr-needs: CONFIG_DM_FLAKEY
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
N=$(sectors $S)
dmsetup create flk --table "0 $N flakey $S 0 1000 0" || fail "flakey create failed"
echo flk >>$_STATE/devs
dm_create t "0 32768 remap $M /dev/mapper/flk" || fail "create failed"

: >/tmp/acked
(
	i=0
	while [ $i -lt 400 ]; do
		dmsetup message t 0 add_remap $((i * 8)) auto 8 >/dev/null 2>&1 || break
		echo $i >>/tmp/acked
		i=$((i + 1))
	done
) &
stream=$!
sleep 3
before=$(wc -l </tmp/acked)
# The cut: from here on the spare silently drops every write.
dmsetup suspend --nolockfs --noflush flk
dmsetup load flk --table "0 $N flakey $S 0 0 1 1 drop_writes"
dmsetup resume flk
after=$(wc -l </tmp/acked)
sleep 1
kill $stream 2>/dev/null
wait $stream 2>/dev/null
note "acknowledged before the cut: $before, by its end: $after, in all: $(wc -l </tmp/acked)"
[ "$before" -gt 0 ] || fail "the stream had not started"
dm_remove t
dm_remove flk

dm_create t "0 32768 remap $M $S" || fail "reload after the cut failed"
k=$(dmsetup message t 0 count)
k=$((k / 8))
note "remaps after the cut: $k"
[ $k -ge "$before" ] || fail "acknowledged remaps lost: $k < $before"
[ $k -le $((after + 1)) ] || fail "more remaps than were sent before the cut"
# Exactly the first k remaps of the stream: main sectors 0 .. 8k-1. (A line
# of the reply starts "spare " or "main ": matched by the shell, not grep, a
# process start less per query.)
nl='
'
i=0
while [ $i -lt $k ]; do
	case "$nl$(dmsetup message t 0 query $((i * 8)))" in
	*"${nl}spare "*) ;;
	*) fail "remap $i missing: not a prefix" ;;
	esac
	i=$((i + 1))
done
case "$nl$(dmsetup message t 0 query $((k * 8)))" in
*"${nl}main "*) ;;
*) fail "remap $k present: not a prefix" ;;
esac
