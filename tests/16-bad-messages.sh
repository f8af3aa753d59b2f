# Every bad message is refused with a reason in the kernel log and changes
# nothing; help lists every message.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop $((2 * 1048576 + 8 * 4096)))
dm_create t "0 65536 remap $M $S 2 block_size 4096" || fail "create failed"
dmsetup message t 0 add_remap 8 auto 16 >/dev/null || fail "setup add failed"
before="$(dmsetup status t) $(dmsetup message t 0 list)"

bad() { # REASON MESSAGE...
	_r=$1
	shift
	mark
	dmsetup message t 0 "$@" >/dev/null 2>&1 && fail "accepted: $*"
	since_mark | grep -qF "$_r" || fail "no '$_r' in the log for: $* ($(since_mark | grep dm-remap))"
	[ "$(dmsetup status t) $(dmsetup message t 0 list)" = "$before" ] || fail "state changed by: $*"
}
bad "unknown message; try 'help'" frobnicate
bad "add_remap: usage: add_remap" add_remap
bad "add_remap: invalid main sector: not a decimal number" add_remap 1x auto
bad "add_remap: invalid spare sector" add_remap 0 spare
bad "add_remap: invalid nr_sectors" add_remap 0 auto 0
bad "add_remap: main sector and length must be multiples of the block size" add_remap 4 auto
bad "add_remap: overlaps an existing remap (sector 8)" add_remap 0 auto 24
bad "add_remap: range extends beyond the end of the device" add_remap 65528 auto 16
bad "add_remap: spare range lies in the metadata area (sector 8)" add_remap 64 8
bad "add_remap: spare range is already in use (sector 4096)" add_remap 64 4096
bad "add_remap: spare range extends beyond the spare's data pool" add_remap 64 4152 16
bad "add_remap: spare pool full: 7 blocks needed, 6 free" add_remap 64 auto 56
bad "remove_remap: not remapped (sector 0)" remove_remap 0 16
bad "remove_remap: usage" remove_remap
bad "query: sector beyond the end of the device" query 65536
bad "list: invalid max" list 0 0
bad "count: count takes no arguments" count 1

h=$(dmsetup message t 0 help)
for verb in add_remap remove_remap clear_remaps query list count help; do
	echo "$h" | grep -q "^$verb" || fail "help does not list $verb"
done
