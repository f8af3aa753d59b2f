# dm-remap-tool migrate moves every remap, its data and the pending list to
# a new, larger spare while no table uses either: 10,000 remapped blocks
# (512 bytes each) plus a run and a pending block; the device over the new spare reads
# exactly what it read over the old one, with a larger pool, and the old
# spare is unchanged. A migration whose new spare fails a write leaves a
# spare a table refuses; --force then finishes it, and a block the old
# spare cannot read becomes pending there. Refused: a spare in use,
# the same spare, a new spare that holds metadata or other data, or another
# logical block size.
. /tests/lib.sh
load_module

ten_thousand_remaps
N=$(new_loop 24M)
snap before
pool=$(dm_field t 7)
q=$(dmsetup message t 0 query 801)
[ "${q%% *}" = spare ] || fail "main sector 801 is at '$q'"

# In use: refused.
out=$(dm-remap-tool migrate $S $N 2>&1) && fail "migrate of a spare in use succeeded: $out"
echo "$out" | grep -q "is in use" || fail "migrate of a spare in use: $out"
dm_remove t
sum=$(meta_sum $S)

# Refused: the same spare (usage, 2); another logical block size.
dm-remap-tool migrate $S $S >/dev/null 2>&1
[ $? = 2 ] || fail "migrate onto itself was not refused with 2"
N4=$(new_loop 16M -b 4096)
out=$(dm-remap-tool migrate $S $N4 2>&1) && fail "migrate to a 4Kn spare succeeded: $out"
echo "$out" | grep -q "logical blocks" || fail "migrate to a 4Kn spare: $out"

# A new spare that fails writes in its data area (sectors 10000-10007)
# stops the migration; what it left is refused by a table, and --force
# finishes the job once the device works.
N2=$(new_loop 16M)
dm_wrap nw $N2 10000:8 || fail "wrapper over the second new spare refused"
out=$(dm-remap-tool migrate $S /dev/mapper/nw 2>&1) && fail "migrate onto a failing spare succeeded: $out"
echo "$out" | grep -q "is not usable yet" || fail "failed migrate: $out"
expect_bad_table t2 "0 32768 $T /dev/mapper/nw" "Spare has no valid metadata and is not blank"
dm_rewrap nw $N2
out=$(dm-remap-tool migrate $S /dev/mapper/nw 2>&1) && fail "migrate over a stopped one succeeded without --force: $out"
echo "$out" | grep -q -- "--force" || fail "migrate over a stopped one: $out"
# This time the old spare cannot read main sector 801's spare block.
dm_wrap sw $S "${q#* }:1" || fail "wrapper over the old spare refused"
dm-remap-tool migrate --force /dev/mapper/sw /dev/mapper/nw >/tmp/out 2>/tmp/err ||
	fail "migrate --force failed: $(cat /tmp/out /tmp/err)"
grep -q "; 1 blocks the old spare could not read are pending now" /tmp/out || fail "migrate --force said: $(cat /tmp/out)"
grep -q "main block 801 (main sector 801): its data is lost" /tmp/err || fail "no word of the lost block: $(cat /tmp/err)"
dm_remove sw
dm_create t2 "0 32768 $T /dev/mapper/nw" || fail "create over the second new spare failed"
[ "$(dmsetup message t2 0 count)" = 10001 ] || fail "count $(dmsetup message t2 0 count) over nw, want 10001"
[ "$(dmsetup message t2 0 pending)" = "801 1600" ] || fail "pending '$(dmsetup message t2 0 pending)' over nw, want '801 1600'"
dd if=/dev/mapper/t2 bs=4k skip=1024 count=1250 iflag=direct 2>/dev/null |
	cmp -s - /tmp/before.b -i 0:$(((8192 - 2048) * 512)) -n $((10000 * 512)) ||
	fail "the 10,000 blocks read otherwise over nw"
dm_remove t2
dm_remove nw

# The migration proper, timed.
read -r u0 _ </proc/uptime
dm-remap-tool migrate $S $N >/tmp/out 2>&1 || fail "migrate failed: $(cat /tmp/out)"
read -r u1 _ </proc/uptime
note "$(head -1 /tmp/out)"
note "migrate of 10,002 remaps (5 MiB of data), guest clock: $(echo "$u0 $u1" | awk '{ printf "%.2f", $2 - $1 }') s"
grep -q "^migrated 10002 remapped blocks (2 runs, 5001 KiB of data) and 1 pending blocks from $S to $N" /tmp/out ||
	fail "migrate said: $(cat /tmp/out)"
[ "$(meta_sum $S)" = "$sum" ] || fail "the old spare's metadata changed"
out=$(dm-remap-tool migrate $S $N 2>&1) && fail "migrate onto a spare with metadata succeeded: $out"
echo "$out" | grep -q "holds dm-remap metadata" || fail "migrate onto a spare with metadata: $out"

dm_create t "0 32768 $T $N" || fail "create over the new spare failed"
[ "$(dmsetup message t 0 count)" = 10002 ] || fail "count $(dmsetup message t 0 count), want 10002"
[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "pending '$(dmsetup message t 0 pending)', want 1600"
new=$(dm_field t 7)
[ "${new%/*}" = 10002 ] && [ "${new#*/}" -gt "${pool#*/}" ] || fail "pool $new, was $pool"
snap after
cmp -s /tmp/before.a /tmp/after.a && cmp -s /tmp/before.b /tmp/after.b ||
	fail "the device reads other data over the new spare"
rm -f /tmp/before.* /tmp/after.*
# And it works on: a write to the pending block remaps it.
dd if=/dev/zero of=/dev/mapper/t bs=512 seek=1600 count=1 oflag=direct 2>/dev/null ||
	fail "write to the pending block failed"
[ "$(dmsetup message t 0 count)" = 10003 ] || fail "count $(dmsetup message t 0 count) after the write, want 10003"
