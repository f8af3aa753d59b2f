# Exact counters after known workloads, in agreement with the block layer's
# own statistics; remap counters follow messages and remapped I/O.
. /tests/lib.sh
load_module

M=$(new_loop 32M)
# 512-byte blocks: the metadata describes 60,062 pool blocks of this spare.
S=$(new_loop 32M)
dm_create t "0 65536 remap $M $S" || fail "create failed"
kn=$(dm_kname t)
D=/sys/module/dm_remap/stat/$kn
[ -d $D ] || fail "no $D"
[ "$(cat $D/name)" = t ] || fail "name: $(cat $D/name)"
[ "$(cat $D/dev)" = "$(dmsetup info -c --noheadings -o major,minor t | tr -d ' ')" ] || fail "dev: $(cat $D/dev)"
echo 1 >$D/reset
blk0=$(cat /sys/block/$kn/stat)

dd if=/dev/zero of=/dev/mapper/t bs=4k count=100 oflag=direct 2>/dev/null || fail "writes"
dd if=/dev/mapper/t of=/dev/null bs=8k count=50 iflag=direct 2>/dev/null || fail "reads"
v() { cat $D/$1; }
[ "$(v write_cnt)" = 100 ] || fail "write_cnt $(v write_cnt)"
[ "$(v write_avr_bs)" = 4096 ] || fail "write_avr_bs $(v write_avr_bs)"
[ "$(v read_cnt)" = 50 ] || fail "read_cnt $(v read_cnt)"
[ "$(v read_avr_bs)" = 8192 ] || fail "read_avr_bs $(v read_avr_bs)"
[ "$(v total_cnt)" = 150 ] || fail "total_cnt $(v total_cnt)"
[ "$(v total_avr_bs)" = 5461 ] || fail "total_avr_bs $(v total_avr_bs)"

# The block layer counted the same requests and sectors.
set -- $blk0
r0=$1 rs0=$3 w0=$5 ws0=$7
set -- $(cat /sys/block/$kn/stat)
[ $(($1 - r0)) = "$(v read_cnt)" ] || fail "block layer reads $(($1 - r0))"
[ $(($5 - w0)) = "$(v write_cnt)" ] || fail "block layer writes $(($5 - w0))"
[ $((($3 - rs0) * 512 / $(v read_cnt))) = "$(v read_avr_bs)" ] || fail "read sizes differ"
[ $((($7 - ws0) * 512 / $(v write_cnt))) = "$(v write_avr_bs)" ] || fail "write sizes differ"

cat >/tmp/want <<EOT
read:
	reqs: 50
	avg size: 8192
write:
	reqs: 100
	avg size: 4096
total:
	reqs: 150
	avg size: 5461
remap:
	remaps: 0
	remapped reads: 0
	remapped writes: 0
	spare used: 0/60062
	hash buckets: 14
	hash resizes: 0
	main errors: 0
	spare errors: 0
	auto remaps: 0
	metadata commits: 0
	metadata repairs: 0
	pending: 0
	pending marked: 0
	retired: 0
	spare free: 60062
	fail mode: 0
scan:
	position: 0
	passes: 0
	found: 0
	bytes: 0
EOT
cat $D/summary | cmp -s - /tmp/want || { cat $D/summary; fail "summary differs"; }

dmsetup message t 0 add_remap 0 auto 16 >/dev/null || fail "add failed"
[ "$(v remaps)" = 16 ] && [ "$(v spare_used)" = 16 ] || fail "remaps $(v remaps) spare_used $(v spare_used)"
[ "$(v metadata_commits)" = 1 ] || fail "commits $(v metadata_commits)"
dd if=/dev/zero of=/dev/mapper/t bs=4k count=1 oflag=direct 2>/dev/null || fail "remapped write"
dd if=/dev/mapper/t of=/dev/null bs=4k count=1 iflag=direct 2>/dev/null || fail "remapped read"
[ "$(v remapped_writes)" = 1 ] && [ "$(v remapped_reads)" = 1 ] ||
	fail "remapped r/w $(v remapped_reads)/$(v remapped_writes)"
echo 1 >$D/reset
[ "$(v total_cnt)" = 0 ] || fail "reset did not zero the counters"
[ "$(v remaps)" = 16 ] || fail "reset changed the remap count"
