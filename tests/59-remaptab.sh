# Activation from a remaptab: `dm-remap-tool activate` creates what the
# file says (comments, options, devices by path or by a /dev/disk/by-*
# name), again and again without change; `deactivate NAME` removes one.
# A file with a bad line activates nothing; a spare that holds another
# pair's metadata, and a name taken by another device, are refused with
# the reason, touching nothing; data written through a device is there
# after deactivate and activate.
. /tests/lib.sh
load_module

M1=$(new_loop 64M)
S1=$(new_loop 16M)
M2=$(new_loop 32M)
S2=$(new_loop 16M)
# A by-partlabel-style name for the second spare (no udev in the guest).
mkdir -p /dev/disk/by-partlabel
ln -sf $S2 /dev/disk/by-partlabel/dmr-spare2
cat >/tmp/remaptab <<EOF
# name  main  spare  options
r1  $M1  $S1  block_size=4096,spare_low=5   # the data disk

r2	$M2	PARTLABEL=dmr-spare2	-
EOF
act() {
	dm-remap-tool activate --tab /tmp/remaptab "$@" 2>&1
}
deact() {
	dm-remap-tool deactivate --tab /tmp/remaptab "$@" 2>&1
}

out=$(act) || fail "activate failed: $out"
echo "$out" | grep -q "^r1: activated: 0 131072 remap $M1 $S1 4 block_size 4096 spare_low 5\$" ||
	fail "r1 not activated as the file says: $out"
echo "$out" | grep -q "^r2: activated: 0 65536 remap $M2 $S2\$" || fail "r2 not activated: $out"
[ "$(dm_field r1 5)" = 4096 ] || fail "r1 block size $(dm_field r1 5)"
dmsetup table r1 | grep -q "spare_low 5" || fail "r1 table: $(dmsetup table r1)"

# Again: nothing changes.
t1=$(dmsetup table r1) t2=$(dmsetup table r2)
out=$(act) || fail "second activate failed: $out"
[ "$out" = "r1: already active
r2: already active" ] || fail "second activate said: $out"
[ "$(dmsetup table r1)" = "$t1" ] && [ "$(dmsetup table r2)" = "$t2" ] || fail "tables changed"

# Data through r1 survives deactivate + activate, with a remap in between.
dd if=/dev/urandom of=/tmp/pat bs=4k count=64 2>/dev/null
dd if=/tmp/pat of=/dev/mapper/r1 bs=4k seek=100 oflag=direct 2>/dev/null || fail "write to r1 failed"
dmsetup message r1 0 add_remap 8000 auto >/dev/null || fail "add_remap failed"
dd if=/tmp/pat of=/dev/mapper/r1 bs=4k seek=1000 count=1 oflag=direct 2>/dev/null || fail "write to remapped block failed"
out=$(deact r1) || fail "deactivate r1 failed: $out"
[ "$out" = "r1: deactivated" ] || fail "deactivate r1 said: $out"
dmsetup info r1 >/dev/null 2>&1 && fail "r1 still there"
dmsetup info r2 >/dev/null 2>&1 || fail "deactivate r1 removed r2"
out=$(act r1) || fail "activate r1 failed: $out"
[ "$(dmsetup message r1 0 count)" = 1 ] || fail "remaps of r1 after re-activation: $(dmsetup message r1 0 count)"
dd if=/dev/mapper/r1 of=/tmp/got bs=4k skip=100 count=64 iflag=direct 2>/dev/null
cmp -s /tmp/got /tmp/pat || fail "r1's data differs after deactivate + activate"
dd if=/dev/mapper/r1 of=/tmp/got bs=4k skip=1000 count=1 iflag=direct 2>/dev/null
dd if=/tmp/pat of=/tmp/want bs=4k count=1 2>/dev/null
cmp -s /tmp/got /tmp/want || fail "r1's remapped block differs after re-activation"
out=$(deact) || fail "deactivate failed: $out"
out=$(deact) || fail "second deactivate failed: $out"
[ "$out" = "r1: not active
r2: not active" ] || fail "second deactivate said: $out"

# Bad files activate nothing: each is refused with its line.
for bad in "r3 $M1" "r3 $M1 $S1 block_size=3000" "r3 $M1 $S1 frobnicate" "r/3 $M1 $S1" \
	"r3 sdq $S1" "r3 $M1 $S1 spare_low="; do
	printf 'r1 %s %s\n%s\n' $M1 $S1 "$bad" >/tmp/badtab
	out=$(dm-remap-tool activate --tab /tmp/badtab 2>&1) && fail "'$bad' accepted: $out"
	echo "$out" | grep -q "^dm-remap-tool: /tmp/badtab: line 2: " || fail "'$bad': $out"
	dmsetup info r1 >/dev/null 2>&1 && fail "'$bad' in line 2 still activated line 1"
done
out=$(dm-remap-tool activate --tab /tmp/remaptab r9 2>&1) && fail "unknown name accepted"
echo "$out" | grep -q "has no device named 'r9'" || fail "unknown name: $out"
dmsetup info r1 >/dev/null 2>&1 && fail "an unknown name still activated r1"

# A spare that holds another pair's metadata: S1 was formatted for the
# 64 MiB M1; given a 32 MiB main it is refused, and neither is written.
printf 'r4 %s %s\n' $M2 $S1 >/tmp/tab4
sum=$(meta_sum $S1)
out=$(dm-remap-tool activate --tab /tmp/tab4 2>&1) && fail "foreign spare accepted: $out"
echo "$out" | grep -q "r4: spare $S1 holds the metadata of another device pair (its main has 131072 sectors, $M2 has 65536); not activated" ||
	fail "foreign spare: $out"
dmsetup info r4 >/dev/null 2>&1 && fail "r4 exists"
[ "$(meta_sum $S1)" = "$sum" ] || fail "foreign spare was written"

# A name taken by another device is not touched.
dmsetup create r2 --table "0 8 error" || fail "error device refused"
out=$(act 2>&1) && fail "activate over a foreign r2 succeeded: $out"
echo "$out" | grep -q "r2: a device named r2 exists with another table (0 8 error); not touched" ||
	fail "foreign r2: $out"
echo "$out" | grep -q "^r1: activated" || fail "r1 not activated next to the refused r2: $out"
# shellcheck disable=SC2046
set -- $(dmsetup table r2)
[ "$*" = "0 8 error" ] || fail "r2 changed: $(dmsetup table r2)"
out=$(deact r2 2>&1) && fail "deactivate removed an error device: $out"
echo "$out" | grep -q "r2 is not a remap device" || fail "deactivate of an error device: $out"
dmsetup remove r2
out=$(deact) || fail "deactivate failed: $out"
rm -f /dev/disk/by-partlabel/dmr-spare2
