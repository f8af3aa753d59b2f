# dm-remap-tool export, the way out without the module: a dm-linear table
# made from the spare's metadata alone reads the same bytes as the remap
# device (main's first and last blocks remapped, a run of three, one
# alone), also once main cannot read its remapped blocks at all; the block
# lists in each format (sectors, badblocks in two units, md) name exactly
# the remapped and the pending blocks; a blank spare, and a spare given
# with a main smaller than the one it records, are refused.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S=$(new_loop 16M)
dm_wrap w $M0 || fail "wrapper over main refused"
dm_create t "0 131072 remap /dev/mapper/w $S 2 block_size 4096" || fail "create failed"
for r in "0 auto 8" "800 auto 24" "4096 auto 8" "131064 auto 8"; do
	dmsetup message t 0 add_remap $r >/dev/null || fail "add_remap $r"
done
# Data where it matters: the first 8 MiB and the last 1 MiB.
dd if=/dev/urandom of=/tmp/d bs=1M count=8 2>/dev/null
dd if=/tmp/d of=/dev/mapper/t bs=1M oflag=direct 2>/dev/null || fail "write failed"
dd if=/dev/urandom of=/tmp/d bs=1M count=1 2>/dev/null
dd if=/tmp/d of=/dev/mapper/t bs=1M seek=63 oflag=direct 2>/dev/null || fail "write failed"
dd if=/dev/mapper/t of=/tmp/want bs=1M iflag=direct conv=sparse 2>/dev/null || fail "read of t failed"

# export_ok ARGS...: the export's output, into /tmp/out.
export_ok() {
	blockdev --flushbufs $S
	dm-remap-tool export "$@" >/tmp/out 2>/tmp/err || fail "export $*: $(cat /tmp/err)"
}
export_ok --dm-linear /dev/mapper/w $S
cp /tmp/out /tmp/table
# Segments end to end over all of main; the spare's cover the 48 remapped
# sectors, main's map each sector to itself.
at=0 spare=0
while read -r start len tgt dev off; do
	[ "$start" = $at ] && [ "$tgt" = linear ] || fail "segment '$start $len $tgt' out of place"
	case $dev in
	"$S") spare=$((spare + len)) ;;
	/dev/mapper/w) [ "$off" = "$start" ] || fail "main segment at $start maps to $off" ;;
	*) fail "segment on $dev" ;;
	esac
	at=$((at + len))
done </tmp/table
[ $at = 131072 ] && [ $spare = 48 ] || fail "table covers $at sectors, $spare on the spare: $(cat /tmp/table)"
dmsetup create lin /tmp/table || fail "the exported table was refused: $(cat /tmp/table)"
echo lin >>$_STATE/devs
dd if=/dev/mapper/lin of=/tmp/got bs=1M iflag=direct conv=sparse 2>/dev/null || fail "read through dm-linear failed"
cmp /tmp/got /tmp/want || fail "dm-linear reads other bytes than the remap device"
dm_remove lin

# Main loses its remapped blocks: the table still reads everything (from the
# spare there), while the remap device is gone.
dm_remove t
dm_rewrap w $M0 0:8 800:24 4096:8 131064:8
dmsetup create lin /tmp/table || fail "the exported table was refused"
echo lin >>$_STATE/devs
dd if=/dev/mapper/lin of=/tmp/got bs=1M iflag=direct conv=sparse 2>/dev/null ||
	fail "read through dm-linear failed with main's remapped blocks unreadable"
cmp /tmp/got /tmp/want || fail "dm-linear reads other bytes with main's remapped blocks unreadable"
dm_remove lin

# A pending block (a read of main that failed), then the lists.
dm_rewrap w $M0 2048:8
dm_create t "0 131072 remap /dev/mapper/w $S 2 block_size 4096" || fail "create again failed"
dd if=/dev/mapper/t of=/dev/null bs=4096 skip=256 count=1 iflag=direct 2>/dev/null &&
	fail "read of main's failing block succeeded"
[ "$(dm_field t 10)" = 1 ] || fail "pending $(dm_field t 10), want 1"
check_list() {
	export_ok "$@"
	got=$(echo $(cat /tmp/out))
	[ "$got" = "$want" ] || fail "export $*: '$got', want '$want'"
}
want="0 800 808 816 2048 4096 131064" check_list --format sectors $S
want="2048" check_list --format sectors --pending $S
want="0 800 808 816 4096 131064" check_list --format sectors --remapped $S
want="0 100 101 102 256 512 16383" check_list --format badblocks $S
want="1024 1025 1026 1027" check_list --format badblocks --block-size 1024 --pending $S
want="0 8 800 24 2048 8 4096 8 131064 8" check_list --format md $S
want="0 8 800 24 4096 8 131064 8" check_list --format md --remapped $S

# Refused: a blank spare; a main smaller than the one the spare records; a
# bad block size. Nothing is printed on stdout.
B=$(new_loop 16M)
small=$(new_loop 32M)
for args in "--dm-linear /dev/mapper/w $B" "--format sectors $B" "--dm-linear $small $S" \
	"--format badblocks --block-size 1000 $S" "--format md --block-size 4096 $S" "--format nope $S"; do
	# shellcheck disable=SC2086
	dm-remap-tool export $args >/tmp/out 2>/tmp/err && fail "export $args succeeded"
	[ -s /tmp/out ] && fail "export $args printed: $(cat /tmp/out)"
	[ -s /tmp/err ] || fail "export $args failed without a word"
done
dm-remap-tool export --dm-linear $small $S 2>&1 | grep -q "not the main of this spare" ||
	fail "a smaller main was not refused as another pair's"
dm-remap-tool export --format sectors $B 2>&1 | grep -q "holds no valid dm-remap metadata" ||
	fail "a blank spare was not refused with the reason"
rm -f /tmp/d /tmp/want /tmp/got /tmp/table
