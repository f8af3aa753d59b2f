# The stat directory lives as long as the device: two tables alive during
# reload share it (counters kept), all_devs sums the devices, remove takes the
# directory away, unloading the module the whole tree.
. /tests/lib.sh
load_module
T=/sys/module/dm_remap/stat
[ -d $T/all_devs ] || fail "no all_devs"
echo 1 >$T/all_devs/reset

M1=$(new_loop 16M)
S1=$(new_loop 16M)
M2=$(new_loop 16M)
S2=$(new_loop 16M)
dm_create a "0 32768 remap $M1 $S1" || fail "create a"
dm_create b "0 32768 remap $M2 $S2" || fail "create b"
A=$T/$(dm_kname a)
B=$T/$(dm_kname b)
dd if=/dev/zero of=/dev/mapper/a bs=4k count=30 oflag=direct 2>/dev/null
dd if=/dev/zero of=/dev/mapper/b bs=8k count=12 oflag=direct 2>/dev/null
dd if=/dev/mapper/b of=/dev/null bs=4k count=7 iflag=direct 2>/dev/null
for f in read_cnt write_cnt total_cnt; do
	[ $(($(cat $A/$f) + $(cat $B/$f))) = "$(cat $T/all_devs/$f)" ] ||
		fail "all_devs/$f $(cat $T/all_devs/$f) != $(cat $A/$f) + $(cat $B/$f)"
done
[ "$(cat $T/all_devs/write_avr_bs)" = $(((30 * 4096 + 12 * 8192) / 42)) ] || fail "all_devs write_avr_bs"

before=$(cat $A/write_cnt)
dmsetup reload a --table "0 32768 remap $M1 $S1" || fail "reload"
[ "$(cat $A/write_cnt)" = "$before" ] || fail "reload reset the counters"
dmsetup resume a || fail "resume"
[ "$(cat $A/write_cnt)" = "$before" ] || fail "resume reset the counters"
dd if=/dev/zero of=/dev/mapper/a bs=4k count=1 oflag=direct 2>/dev/null
[ "$(cat $A/write_cnt)" = $((before + 1)) ] || fail "new table does not count into the same directory"

dm_remove b
[ -e $B ] && fail "$B still there after remove"
dm_remove a
[ -e $A ] && fail "$A still there after remove"
rmmod dm_remap || fail "rmmod"
[ -e /sys/module/dm_remap ] && fail "module sysfs still there"
insmod $MODULE || fail "insmod"
[ "$(cat $T/all_devs/total_cnt)" = 0 ] || fail "all_devs not fresh after reload"
