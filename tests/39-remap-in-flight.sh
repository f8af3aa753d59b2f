# I/O to a block whose remap is in flight is ordered behind it. The spare
# sits behind dm-delay (100 ms per write), so remapping a block takes over a
# second (data, then every metadata copy). While write A of a bad block is
# being remapped, a read R and then a write B of the same block, issued in
# that order, both fail on main and queue behind A in the worker: R must
# return A's data (not an error, not main's old contents), A must not
# complete before its remap is durable, and the block must end up holding B.
# dmr-needs: CONFIG_DM_DELAY
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
dm_wrap w $M0 400:8 || fail "wrapper over main refused"
dmsetup create sd --table "0 $(sectors $S0) delay $S0 0 0 $S0 0 100" || fail "dm-delay refused"
echo sd >>$_STATE/devs
dm_create t "0 131072 remap /dev/mapper/w /dev/mapper/sd 2 block_size 4096" || fail "create failed"

dd if=/dev/urandom of=/tmp/a bs=4k count=1 2>/dev/null
dd if=/dev/urandom of=/tmp/b bs=4k count=1 2>/dev/null
t0=$(cut -d' ' -f1 /proc/uptime)
(dd if=/tmp/a of=/dev/mapper/t bs=4k seek=50 oflag=direct 2>/tmp/a.err && cut -d' ' -f1 /proc/uptime >/tmp/a.done) &
pa=$!
sleep 0.3
[ -s /tmp/a.done ] && fail "write A completed before its remap could have been committed"
dd if=/dev/mapper/t of=/tmp/r bs=4k skip=50 count=1 iflag=direct 2>/tmp/r.err &
pr=$!
sleep 0.2
dd if=/tmp/b of=/dev/mapper/t bs=4k seek=50 oflag=direct 2>/tmp/b.err &
pb=$!
wait $pa || fail "write A failed: $(cat /tmp/a.err)"
wait $pr || fail "read R during the remap failed: $(cat /tmp/r.err)"
wait $pb || fail "write B during the remap failed: $(cat /tmp/b.err)"
took=$(awk -v s=$t0 -v e=$(cat /tmp/a.done) 'BEGIN { printf "%.2f", e - s }')
note "write A took $took s (its remap's data and metadata writes at 100 ms each)"
awk -v t=$took 'BEGIN { exit !(t >= 1.0) }' || fail "write A completed in $took s, before its commit could be durable"
cmp -s /tmp/r /tmp/a || fail "read R returned something other than A's data"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=50 count=1 iflag=direct 2>/dev/null || fail "final read failed"
cmp -s /tmp/got /tmp/b || fail "the block does not hold write B, issued last"
[ "$(dm_field t 6)" = 1 ] || fail "remaps $(dm_field t 6), want 1"
[ "$(dm_stat t auto_remaps)" = 1 ] || fail "auto_remaps $(dm_stat t auto_remaps), want 1 (B reuses A's spare block)"
# Durable: after remove + create, B is still there.
dm_remove t
dm_create t "0 131072 remap /dev/mapper/w /dev/mapper/sd 2 block_size 4096" || fail "re-create failed"
dd if=/dev/mapper/t of=/tmp/got bs=4k skip=50 count=1 iflag=direct 2>/dev/null || fail "read after re-create failed"
cmp -s /tmp/got /tmp/b || fail "write B lost after re-create"
