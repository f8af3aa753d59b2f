# dm-remap-tool stats renders the live tree as JSON and Prometheus text with
# the same numbers as the files.
. /tests/lib.sh
load_module
echo 1 >/sys/module/dm_remap/stat/all_devs/reset

M=$(new_loop 16M)
S=$(new_loop 16M)
dm_create exp "0 32768 remap $M $S" || fail "create failed"
kn=$(dm_kname exp)
echo 1 >/sys/module/dm_remap/stat/$kn/reset
dd if=/dev/zero of=/dev/mapper/exp bs=4k count=10 oflag=direct 2>/dev/null
dmsetup message exp 0 add_remap 0 auto 8 >/dev/null || fail "add"

dm-remap-tool stats --json >/tmp/j || fail "stats --json failed"
cat /tmp/j
grep -q "\"$kn\":{\"name\":\"exp\",\"dev\":\"$(cat /sys/block/$kn/dev)\",\"read_cnt\":0,\"write_cnt\":10," /tmp/j ||
	fail "json device entry"
grep -q '"all_devs":{"read_cnt":0,"write_cnt":10,' /tmp/j || fail "json all_devs"
grep -q '"remaps":8,' /tmp/j || fail "json remaps"

dm-remap-tool stats --prometheus >/tmp/p || fail "stats --prometheus failed"
grep -qx "dm_remap_requests_total{device=\"$kn\",name=\"exp\",direction=\"write\"} 10" /tmp/p || fail "prometheus requests"
grep -qx "dm_remap_bytes_total{device=\"$kn\",name=\"exp\",direction=\"write\"} 40960" /tmp/p || fail "prometheus bytes"
grep -qx "dm_remap_remaps{device=\"$kn\",name=\"exp\"} 8" /tmp/p || fail "prometheus remaps"
grep -qx "# TYPE dm_remap_metadata_commits_total counter" /tmp/p || fail "prometheus type line"

dm-remap-tool stats | grep -q "^$kn (exp, " || fail "plain summary"

# The monitor samples the tree as CSV: a header, then a line per device and
# all_devs per sample.
dm-remap-tool monitor --interval-ms 100 --count 3 >/tmp/series || fail "monitor failed"
head -1 /tmp/series | grep -q '^t_ms,device,name,read_cnt,write_cnt,read_bytes,write_bytes,' || fail "monitor header"
[ "$(grep -c ",$kn,exp,0,10,0,40960," /tmp/series)" = 3 ] || fail "monitor rows: $(cat /tmp/series)"
[ "$(grep -c ',all_devs,,' /tmp/series)" = 3 ] || fail "monitor all_devs rows"
