# Every malformed table line is refused with a message that names the
# problem, and leaves no device and no reference behind.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
S=$(new_loop 16M)
TINY=$(new_loop 2M)
M4K=$(new_loop 16M -b 4096)

expect_bad_table t "0 65536 remap $M" "Invalid argument count"
expect_bad_table t "0 65536 remap" "Invalid argument count"
# Arguments are bytes to device-mapper: one that is not UTF-8 (0xff) is
# refused by name, on every kernel's C-string conversion (src/dm/compat.rs).
expect_bad_table t "0 65536 remap $M $(printf '\377')" "Arguments must be valid UTF-8"
expect_bad_table t "0 65536 remap $M $S 2 block_size $(printf '4\37796')" "Arguments must be valid UTF-8"
expect_bad_table t "0 65536 remap $M $M" "Main and spare are the same device"
expect_bad_table t "0 32768 remap $M4K $S" "Main and spare have different logical block sizes"
expect_bad_table t "0 65537 remap $M $S" "Target is longer than the main device"
expect_bad_table t "0 65536 remap $M $TINY" "Spare device too small"
expect_bad_table t "0 65536 remap $M $S 1x" "Invalid number of feature arguments"
expect_bad_table t "0 65536 remap $M $S -1" "Invalid number of feature arguments"
expect_bad_table t "0 65536 remap $M $S 3 block_size 4096" "Number of feature arguments does not match"
expect_bad_table t "0 65536 remap $M $S 1 block_size" "Feature block_size needs a value"
expect_bad_table t "0 65536 remap $M $S 2 block_size 4096x" "Invalid block_size: not a decimal number"
expect_bad_table t "0 65536 remap $M $S 2 block_size 99999999999999999999" "Invalid block_size: not a decimal number"
expect_bad_table t "0 65536 remap $M $S 2 block_size 3000" "Invalid block_size: must be a power of two"
expect_bad_table t "0 65536 remap $M $S 4 block_size 512 block_size 512" "Feature block_size given twice"
expect_bad_table t "0 65536 remap $M $S 1 frobnicate" "Unknown feature argument"
expect_bad_table t "0 65528 remap $M $S 2 block_size 65536" "Target length is not a multiple of the block size"
expect_bad_table t "0 65536 remap /dev/nonexistent $S" "Main device lookup failed"
expect_bad_table t "0 65536 remap $M /dev/nonexistent" "Spare device lookup failed"

for d in $M $S $TINY $M4K; do
	[ "$(holders $d)" = 0 ] || fail "$d still held after the refused tables"
done
[ "$(cat /sys/module/dm_remap/refcnt)" = 0 ] || fail "module references left: $(cat /sys/module/dm_remap/refcnt)"

# The boundary: a spare of exactly the metadata area plus one block works.
ONE=$(new_loop $((2 * 1048576 + 512)))
dm_create t "0 65536 remap $M $ONE" || fail "spare of 2 MiB + 1 block refused"
dmsetup status t | grep -q ' 0/1 14 0 0 0 ok on idle 0 0$' || fail "status: $(dmsetup status t)"
dm_remove t
