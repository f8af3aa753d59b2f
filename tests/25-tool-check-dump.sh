# dm-remap-tool reads what the module wrote: `check` is clean after normal
# use and names a damaged copy; `dump` shows the same remaps as `list`.
. /tests/lib.sh
load_module

M=$(new_loop 16M)
S=$(new_loop 16M)
T="0 32768 remap $M $S"
dm_create t "$T" || fail "create failed"
dmsetup message t 0 add_remap 64 auto 16 >/dev/null || fail "add 1"
dmsetup message t 0 add_remap 1000 6000 8 >/dev/null || fail "add 2"
list=$(remaps t)
dm_remove t

dm-remap-tool check $S || fail "check of a clean spare failed"
dm-remap-tool dump $S >/tmp/dump || fail "dump failed"
grep -q "^generation     3$" /tmp/dump || fail "dump: $(cat /tmp/dump)"
[ "$(grep -E '^[0-9]+ [0-9]+ [0-9]+$' /tmp/dump)" = "$list" ] || fail "dump and list disagree"
dm-remap-tool dump --json $S >/tmp/json || fail "dump --json failed"
grep -q '"extents":\[{"main_sector":64,"spare_sector":4096,"nr_sectors":16},{"main_sector":1000,"spare_sector":6000,"nr_sectors":8}\]' /tmp/json ||
	fail "json: $(cat /tmp/json)"

# Damage copy 1's first entry unit; check names it and fails; a load
# repairs it.
at=$(copy_at 1 $S)
printf '\377' | dd of=$S bs=1 seek=$(((at + 8) * 512 + 100)) conv=notrunc 2>/dev/null
dm-remap-tool check $S >/tmp/check && fail "check passed a damaged spare"
grep -q "copy 1 (sector $at): bad CRC" /tmp/check || fail "check output: $(cat /tmp/check)"
dm_create t "$T" || fail "recreate failed"
dm_remove t
dm-remap-tool check $S || fail "not clean after repair"
