# dm-remap-tool status shows each remap device in words and as JSON with the
# numbers `dmsetup status` and the statistics tree have: healthy, with a
# pending block, suspended, and in fail mode after the spare's metadata area
# failed. Names that are not remap devices exit 1 (the others are still
# shown); bad usage exits 2 with nothing on stdout. `stats --prometheus
# --textfile` replaces its file whole while a reader reads it in a loop.
. /tests/lib.sh
load_module

M0=$(new_loop 32M)
S0=$(new_loop 16M)
# Main block 100 (sectors 800-807) fails every read and write.
dm_wrap mw $M0 800:8 || fail "wrapper over main refused"
dm_wrap sw $S0 || fail "wrapper over the spare refused"
dm_create t "0 65536 remap /dev/mapper/mw /dev/mapper/sw 2 block_size 4096" || fail "create failed"
M2=$(new_loop 8M)
S2=$(new_loop 8M)
dm_create u "0 16384 remap $M2 $S2" || fail "create u failed"
L=$(new_loop 1M)
dm_create lin "0 2048 linear $L 0" || fail "create lin failed"
kn=$(dm_kname t)
dmsetup message t 0 add_remap 0 auto 24 >/dev/null || fail "add_remap failed"
dd if=/dev/mapper/t of=/dev/null bs=4k skip=100 count=1 iflag=direct 2>/dev/null &&
	fail "a read of failing main block 100 passed"
[ "$(dm_field t 10)" = 1 ] || fail "pending $(dm_field t 10) after the failed read, want 1"

# want TEXT LINE...: every LINE is a whole line of TEXT.
want() {
	_t=$1
	shift
	for _w; do
		printf '%s\n' "$_t" | grep -qxF -- "$_w" || fail "no line '$_w' in:
$_t"
	done
}

st=/sys/module/dm_remap/stat/$kn
pool=$(dm_field t 7)
out=$(dm-remap-tool status t) || fail "status t failed: $out"
want "$out" "t ($kn): ok" \
	"  main        /dev/$(dm_kname mw) ($(dm_devt mw)), 65536 sectors" \
	"  spare       /dev/$(dm_kname sw) ($(dm_devt sw))" \
	"  options     block_size 4096" \
	"  remaps      3 blocks of 4096 bytes" \
	"  pending     1 main block unreadable: its data is lost unless a write replaces it" \
	"  retired     0 spare blocks (write errors)" \
	"  auto remap  on: I/O errors on main are remapped" \
	"  scanner     idle; 0 full passes completed"
printf '%s\n' "$out" | grep -q "^  spare pool  ${pool%/*} of ${pool#*/} blocks used (.*%), ok\$" ||
	fail "spare pool line, want $pool: $out"
printf '%s\n' "$out" | grep -q "^  I/O         $(cat $st/read_cnt) reads\? (0 remapped), $(cat $st/write_cnt) writes\? (" ||
	fail "I/O line, want $(cat $st/read_cnt) reads: $out"
printf '%s\n' "$out" | grep -q "^  errors      $(cat $st/main_errors) on main, 0 on the spare; " ||
	fail "errors line, want $(cat $st/main_errors) on main: $out"
[ "$(cat $st/main_errors)" -ge 1 ] || fail "main_errors $(cat $st/main_errors) after a failed read"

json=$(dm-remap-tool status --json t) || fail "status --json t failed"
for f in "\"devices\":[{\"name\":\"t\",\"kernel_name\":\"$kn\",\"sectors\":65536," \
	"\"main\":{\"dev\":\"$(dm_devt mw)\",\"path\":\"/dev/$(dm_kname mw)\"}" \
	'"options":["block_size","4096"],"state":"ok","block_size":4096,"remaps":3,' \
	"\"spare_used\":${pool%/*},\"spare_total\":${pool#*/},\"spare_level\":\"ok\",\"pending\":1,\"retired\":0," \
	'"auto_remap":true,"scan":{"state":"idle","position":0,"passes":0},' \
	"\"io\":{\"reads\":$(cat $st/read_cnt),"; do
	printf '%s' "$json" | grep -qF -- "$f" || fail "no '$f' in $json"
done

# Every remap device, and only those.
out=$(dm-remap-tool status) || fail "status failed: $out"
[ "$(printf '%s\n' "$out" | grep -c '^[^ ]')" = 2 ] || fail "status lists other than t and u: $out"
want "$out" "t ($kn): ok" "u ($(dm_kname u)): ok"
[ "$(dm-remap-tool status --json | grep -o '"name":"[a-z]*"' | sort | tr '\n' ' ')" = '"name":"t" "name":"u" ' ] ||
	fail "status --json lists $(dm-remap-tool status --json)"

# Refused: a linear device, a missing one (the others still shown), bad usage.
dm-remap-tool status lin >/tmp/out 2>/tmp/err
rc=$?
[ $rc = 1 ] || fail "status lin: exit $rc, want 1"
grep -q "lin is not a remap device" /tmp/err || fail "status lin: $(cat /tmp/err)"
[ -s /tmp/out ] && fail "status lin printed: $(cat /tmp/out)"
dm-remap-tool status nosuch u >/tmp/out 2>/tmp/err
rc=$?
[ $rc = 1 ] || fail "status nosuch u: exit $rc, want 1"
grep -q "^dm-remap-tool: nosuch: " /tmp/err || fail "status nosuch: $(cat /tmp/err)"
grep -q "^u (" /tmp/out || fail "u not shown beside a missing name: $(cat /tmp/out)"
for args in "--bogus" "--json --json t" "-x" "t --interval-ms 5"; do
	# shellcheck disable=SC2086
	dm-remap-tool status $args >/tmp/out 2>/tmp/err
	rc=$?
	[ $rc = 2 ] || fail "status $args: exit $rc, want 2"
	[ -s /tmp/out ] && fail "status $args printed: $(cat /tmp/out)"
	[ -s /tmp/err ] || fail "status $args failed without a word"
done
dm-remap-tool status --help | grep -q '^Usage: dm-remap-tool status \[OPTIONS\] \[NAMES\]\.\.\.' ||
	fail "status --help: $(dm-remap-tool status --help)"

# Suspended: status reads no data, so it answers at once.
dmsetup suspend t || fail "suspend failed"
out=$(timeout 20 dm-remap-tool status t) || { dmsetup resume t; fail "status of a suspended device failed: $out"; }
dmsetup resume t || fail "resume failed"
want "$out" "t ($kn): ok"

# Fail mode: the spare's metadata area fails, a commit fails.
dm_rewrap sw $S0 0:4096
dmsetup message t 0 add_remap 4000 auto >/dev/null 2>&1 && fail "add_remap committed on a failing metadata area"
[ "$(dm_field t 4)" = fail ] || fail "state $(dm_field t 4) after a failed commit, want fail"
out=$(dm-remap-tool status t) || fail "status in fail mode failed: $out"
want "$out" "t ($kn): FAIL: a metadata commit failed; writes are refused until \`dmsetup message t 0 clear_fail\` (reads are served)"
dm-remap-tool status --json t | grep -qF '"state":"fail"' || fail "JSON state in fail mode"
dm_rewrap sw $S0
dmsetup message t 0 clear_fail >/dev/null || fail "clear_fail failed"
want "$(dm-remap-tool status t)" "t ($kn): ok"

# The textfile: the same text as stdout, nothing else left in the directory.
mkdir -p /tmp/tf
dm-remap-tool stats --prometheus --textfile /tmp/tf/dm_remap.prom >/tmp/out || fail "textfile write failed"
[ -s /tmp/out ] && fail "--textfile also printed: $(head -3 /tmp/out)"
dm-remap-tool stats --prometheus >/tmp/p || fail "stats --prometheus failed"
cmp -s /tmp/p /tmp/tf/dm_remap.prom || fail "textfile and stdout differ"
[ "$(ls -A /tmp/tf)" = dm_remap.prom ] || fail "left in the textfile directory: $(ls -A /tmp/tf)"
grep -qx "dm_remap_pending_blocks{device=\"$kn\",name=\"t\"} 1" /tmp/tf/dm_remap.prom ||
	fail "textfile: no pending_blocks line for t"
# A reader in a loop never sees a part of the file while it is rewritten.
last=$(tail -1 /tmp/p | cut -d'{' -f1)
(
	i=0
	while [ $i -lt 8 ]; do
		dm-remap-tool stats --prometheus --textfile /tmp/tf/dm_remap.prom || exit 1
		i=$((i + 1))
	done
) &
w=$!
reads=0
while kill -0 $w 2>/dev/null; do
	head -1 /tmp/tf/dm_remap.prom | grep -q '^# HELP dm_remap_' || fail "a reader saw a file without its head"
	tail -1 /tmp/tf/dm_remap.prom | grep -q "^$last{.*} [0-9]*\$" || fail "a reader saw a file without its tail"
	reads=$((reads + 1))
done
wait $w || fail "a textfile rewrite failed"
note "textfile reads during 8 rewrites: $reads"
[ "$(ls -A /tmp/tf)" = dm_remap.prom ] || fail "left in the textfile directory: $(ls -A /tmp/tf)"
dm-remap-tool stats --prometheus --textfile /nonexistent/dm_remap.prom >/tmp/out 2>/tmp/err
rc=$?
[ $rc = 1 ] || fail "textfile in a missing directory: exit $rc, want 1"
grep -q '^dm-remap-tool: /nonexistent/dm_remap.prom: ' /tmp/err || fail "textfile error: $(cat /tmp/err)"
dm-remap-tool stats --textfile /tmp/tf/x.prom >/dev/null 2>&1
[ $? = 2 ] || fail "--textfile without --prometheus was not a usage error"
rm -rf /tmp/tf
