# Generated messages and table lines, valid and invalid mixed (a seeded
# generator; the seed is printed): a refused message changes nothing that
# can be observed (remaps, count, pending, policy, status); a refused table
# line leaves no device and does not write the spare; accepted ones work.
# The runner's kernel-log gate and kmemleak scan cover what the kernel does
# meanwhile. Time-boxed: 60 messages and 24 table lines.
. /tests/lib.sh
load_module

SEED=${DMR_SEED:-20261129}
note "seed $SEED"
M=$(new_loop 64M)
S=$(new_loop 16M)
T="0 131072 remap $M $S 2 block_size 4096"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 800 auto 16 >/dev/null || fail "add_remap failed"

# gen N SEED KIND: N generated lines of words (KIND msg or table).
gen() {
	awk -v n=$1 -v seed=$2 -v kind=$3 -v m=$M -v s=$S 'BEGIN {
		srand(seed)
		nv = split("add_remap remove_remap clear_remaps count list query help pending " \
			"clear_pending clear_fail set policy scan scan_rate start stop status auto all " \
			"auto_remap read_retries write_retries error_threshold spare_low scan_chunk on off " \
			"0 1 8 16 -1 4096 65536 131072 18446744073709551615 18446744073709551616 0x10 1e3 nan", v, " ")
		nf = split("block_size copies format auto_remap read_retries write_retries " \
			"error_threshold spare_low scan_rate scan_chunk on off 0 1 2 3 5 16 17 512 4096 " \
			"8192 65536 131072 -1 x", f, " ")
		nm = split("count|list 0 100|query 800|help|pending|policy|scan status|set read_retries 3|" \
			"set spare_low 20|scan_rate 8|add_remap %d auto|remove_remap %d|add_remap %d auto 16|" \
			"clear_pending|query %d", vm, "|")
		ng = split("2 block_size 4096|4 block_size 4096 read_retries 3|4 block_size 4096 auto_remap off|" \
			"3 block_size 4096 format|4 block_size 4096 copies 3|6 block_size 4096 spare_low 5 scan_chunk 64", vg, "|")
		for (i = 0; i < n; i++) {
			line = ""
			if (rand() < 0.4) {
				# Valid by construction (it may still be refused by the state).
				if (kind == "msg")
					line = sprintf(vm[1 + int(rand() * nm)], int(rand() * 16384) * 8)
				else
					line = "0 131072 remap " m " " s " " vg[1 + int(rand() * ng)]
			} else if (kind == "msg") {
				w = int(rand() * 5)
				for (j = 0; j < w; j++) {
					t = rand() < 0.3 ? int(rand() * 200000) * (rand() < 0.5 ? 8 : 1) : v[1 + int(rand() * nv)]
					line = line (j ? " " : "") t
				}
			} else {
				k = int(rand() * 5)
				line = "0 131072 remap " m " " s " " (rand() < 0.8 ? k : int(rand() * 9))
				for (j = 0; j < k; j++)
					line = line " " f[1 + int(rand() * nf)]
			}
			print line
		}
	}'
}
observe() {
	dmsetup message t 0 list 0 10000
	dmsetup message t 0 pending
	dmsetup message t 0 policy
	dmsetup status t
}

accepted=0 refused=0
observe >/tmp/before 2>&1
gen 60 $SEED msg >/tmp/msgs
while IFS= read -r line; do
	# shellcheck disable=SC2086
	if dmsetup message t 0 $line >/dev/null 2>&1; then
		accepted=$((accepted + 1))
		# Keep the device usable for what follows.
		dmsetup message t 0 clear_fail >/dev/null 2>&1
		dmsetup message t 0 scan stop >/dev/null 2>&1
		observe >/tmp/before 2>&1
	else
		refused=$((refused + 1))
		observe >/tmp/after 2>&1
		cmp -s /tmp/before /tmp/after || fail "refused message '$line' changed: $(diff /tmp/before /tmp/after)"
	fi
done </tmp/msgs
note "messages: $accepted accepted, $refused refused"
[ $refused -gt 0 ] || fail "no message was refused"
# The metadata still loads as the device last showed it.
dmsetup message t 0 list 0 10000 >/tmp/list
dm_remove t
dm_create t "$T" || fail "re-create failed"
dmsetup message t 0 list 0 10000 | cmp -s - /tmp/list || fail "remaps differ after re-create"
dm_remove t

accepted=0 refused=0
gen 24 $((SEED + 1)) table >/tmp/tables
while IFS= read -r line; do
	sum=$(meta_sum $S)
	if dmsetup create g --table "$line" >/dev/null 2>&1; then
		accepted=$((accepted + 1))
		dmsetup status g >/dev/null || fail "status of accepted table '$line' failed"
		dmsetup remove g || fail "remove of accepted table '$line' failed"
	else
		refused=$((refused + 1))
		dmsetup info g >/dev/null 2>&1 && fail "refused table '$line' left a device"
		[ "$(meta_sum $S)" = "$sum" ] || fail "refused table '$line' wrote the spare"
	fi
done </tmp/tables
note "table lines: $accepted accepted, $refused refused"
