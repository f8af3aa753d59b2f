# A remap device as one leg of an md RAID1 (Debian 12's mdadm, static), the
# other leg write-mostly so that md reads from the remap device. Under the
# running array main starts failing: writes to two blocks are remapped and
# md never sees an error; a block written before it failed fails a read,
# md reads the other leg and writes the block back, which dm-remap remaps
# (the block was pending), and md corrects the error without failing the
# leg. The array reads back what was written, both legs hold the same data,
# and an mdadm.conf naming the mapped device (the filter docs/usage.md
# gives) assembles the array from it, not from the raw main that carries
# the same md superblock.
# dmr-needs: CONFIG_MD_RAID1
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 16M)
L=$(new_loop 64M)
dm_wrap w $M || fail "wrapper over main refused"
dm_create t "0 131072 remap /dev/mapper/w $S 2 block_size 4096" || fail "create failed"
mdadm --create /dev/md0 --run --quiet --level=1 --raid-devices=2 --metadata=1.2 \
	--assume-clean --bitmap=none /dev/mapper/t --write-mostly $L >/tmp/out 2>&1 ||
	fail "mdadm --create: $(cat /tmp/out)"
at_exit mdadm --stop /dev/md0
T=$(dm_kname t)
read -r off </sys/block/md0/md/dev-$T/offset || fail "no data offset for $T"
[ $((off % 8)) = 0 ] || fail "data offset $off is not 4 KiB aligned"
degraded() {
	read -r _dg </sys/block/md0/md/degraded
	[ "$_dg" = 0 ] || fail "$1: the array is degraded: $(cat /proc/mdstat)"
	read -r _st </sys/block/md0/md/dev-$T/state
	case $_st in *faulty*) fail "$1: the remap leg is $_st" ;; esac
}

# 8 MiB of data; the second 4 MiB goes on main while it is healthy.
dd if=/dev/urandom of=/tmp/expect bs=1M count=8 2>/dev/null
dd if=/tmp/expect of=/dev/md0 bs=1M skip=4 seek=4 count=4 oflag=direct 2>/dev/null ||
	fail "write to the array failed"

# Main fails two blocks of the first 4 MiB and one of the second.
W1=$((off + 1024)) W2=$((off + 4096)) R1=$((off + 10240))
dm_rewrap w $M $W1:8 $W2:8 $R1:8
mark
dd if=/tmp/expect of=/dev/md0 bs=1M count=4 oflag=direct 2>/dev/null ||
	fail "write over the failing blocks failed"
degraded "after the writes"
[ "$(dm_field t 6)" = 2 ] || fail "$(dm_field t 6) remaps after the writes, want 2"

# A read of the block that failed after it was written: md mends it.
dd if=/dev/md0 of=/tmp/got bs=4096 skip=$((10240 / 8)) count=1 iflag=direct 2>/tmp/err ||
	fail "read through md failed: $(cat /tmp/err)"
dd if=/tmp/expect of=/tmp/want bs=4096 skip=$((10240 / 8)) count=1 2>/dev/null
cmp /tmp/got /tmp/want || fail "md returned other data for the block that failed"
degraded "after the read error"
since_mark | grep -q "read error corrected" ||
	fail "md did not correct the read error: $(since_mark | grep -E 'md|raid1|remap')"
set -- $(dmsetup status t)
[ "$6" = 3 ] || fail "$6 remaps, want 3 (two writes, one rewrite by md)"
[ "${10}" = 0 ] || fail "pending ${10}, want 0: md's rewrite did not heal the block"
[ "$4" = ok ] || fail "state $4, want ok"

# Everything reads back, through the array and from each leg.
dd if=/dev/md0 of=/tmp/got bs=1M count=8 iflag=direct 2>/dev/null || fail "read back failed"
cmp /tmp/got /tmp/expect || fail "the array reads back other data"
cmp -n 8M -i $((off * 512)) /dev/mapper/t $L || fail "the legs differ"

# Assembly from an mdadm.conf that names the mapped device. The raw main
# carries the same superblock: that is what the DEVICE line keeps md off.
mdadm --examine --brief $M >/tmp/raw 2>&1
uuid=$(mdadm --detail --brief /dev/md0 | grep -o 'UUID=[^ ]*')
grep -q "$uuid" /tmp/raw || fail "the raw main does not show the array ($uuid): $(cat /tmp/raw)"
mdadm --stop /dev/md0 >/tmp/out 2>&1 || fail "mdadm --stop: $(cat /tmp/out)"
printf 'DEVICE /dev/mapper/t %s\nARRAY /dev/md0 %s\n' "$L" "$uuid" >/tmp/mdadm.conf
mdadm --assemble --scan --run -c /tmp/mdadm.conf >/tmp/out 2>&1 ||
	fail "mdadm --assemble: $(cat /tmp/out)"
[ -e /sys/block/md0/md/dev-$T ] || fail "assembled without the mapped device: $(ls -d /sys/block/md0/md/dev-*)"
for d in /sys/block/md0/md/dev-*; do
	case ${d##*/dev-} in
	"$T" | "${L#/dev/}") ;;
	*) fail "assembled from ${d##*/dev-}, not the mapped device or the other leg" ;;
	esac
done
degraded "after assembly"
dd if=/dev/md0 of=/tmp/got bs=1M count=8 iflag=direct 2>/dev/null || fail "read after assembly failed"
cmp /tmp/got /tmp/expect || fail "the array reads other data after assembly"
mdadm --stop /dev/md0 >/tmp/out 2>&1 || fail "mdadm --stop: $(cat /tmp/out)"
rm -f /tmp/got /tmp/want /tmp/expect /tmp/raw
