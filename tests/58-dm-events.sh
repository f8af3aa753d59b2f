# Device-mapper events: the target raises a table event (the counter of
# `dmsetup info`, what `dmsetup wait` and dmeventd wait for) when a message
# changes the remaps, when the error path remaps a block or makes one
# pending, when the spare pool crosses spare_low or runs out, and when fail
# mode starts or ends. Messages that only read (query, count, list, pending,
# policy, status) and a settings change that crosses nothing raise none.
. /tests/lib.sh
load_module

M0=$(new_loop 64M)
S0=$(new_loop 16M)
# Main: block 100 (sector 800) fails writes and reads, block 200 (1600)
# too. The spare behind a wrapper, so that its metadata area can fail.
dm_wrap mw $M0 800:8 1600:8 || fail "wrapper over main refused"
dm_wrap sw $S0 || fail "wrapper over the spare refused"
T="0 131072 remap /dev/mapper/mw /dev/mapper/sw 2 block_size 4096"
dm_create t "$T" || fail "create failed"

# events: the device's event counter.
events() {
	set -- $(dmsetup info -c --noheadings -o events t)
	echo "$1"
}
# raised WHAT CMD...: after CMD (whatever its status), `dmsetup wait`
# returns for a counter above the one before.
raised() {
	_what=$1
	shift
	_e0=$(events)
	"$@" >/dev/null 2>&1
	timeout 30 dmsetup wait t "$_e0" >/dev/null 2>&1 ||
		fail "$_what: no event (the counter stayed at $_e0)"
	[ "$(events)" -gt "$_e0" ] || fail "$_what: counter $(events), was $_e0"
	# Let an event the same change queued a moment later land before the
	# next step reads the counter.
	sleep 0.5
}
# quiet WHAT CMD...: CMD succeeds and raises no event.
quiet() {
	_what=$1
	shift
	_e0=$(events)
	"$@" >/dev/null || fail "$_what failed"
	sleep 1
	[ "$(events)" = "$_e0" ] || fail "$_what raised an event (counter $_e0 -> $(events))"
}
msg() {
	dmsetup message t 0 "$@"
}
wr() { # BLOCK: a 4 KiB O_DIRECT write through t
	dd if=/dev/urandom of=/dev/mapper/t bs=4k seek=$1 count=1 oflag=direct 2>/dev/null
}
rd() { # BLOCK
	dd if=/dev/mapper/t of=/dev/null bs=4k skip=$1 count=1 iflag=direct 2>/dev/null
}

sleep 0.5
e_start=$(events)
quiet "query" msg query 8000
quiet "count" msg count
quiet "list" msg list 0 100
quiet "pending" msg pending
quiet "policy" msg policy
quiet "dmsetup status" dmsetup status t
quiet "set read_retries" msg set read_retries 2

raised "add_remap" msg add_remap 8000 auto 16
[ "$(dm_field t 6)" = 2 ] || fail "remaps $(dm_field t 6) after add_remap, want 2"
raised "remove_remap" msg remove_remap 8000 16
raised "add_remap again" msg add_remap 8000 auto 8
raised "clear_remaps" msg clear_remaps

# The error path: a write error remaps the block; a read error makes its
# block pending, and the write that follows remaps it.
raised "automatic remap" wr 100
[ "$(msg query 800)" != main ] || fail "block 100 not remapped after its write failed"
raised "read error (pending)" rd 200
[ "$(msg pending)" = 1600 ] || fail "pending '$(msg pending)', want 1600"
raised "write to the pending block" wr 200
[ "$(msg pending)" = none ] || fail "pending '$(msg pending)' after the write, want none"

# The spare pool: 3584 blocks, 2 in use. Crossing spare_low either way,
# then running out.
raised "set spare_low 100 (pool low)" msg set spare_low 100
[ "$(dm_field t 12)" = low ] || fail "spare level $(dm_field t 12), want low"
quiet "set read_retries 3 (still low)" msg set read_retries 3
raised "set spare_low 10 (pool ok)" msg set spare_low 10
free=$((3584 - 2))
raised "add_remap of every free block (pool exhausted)" msg add_remap 16000 auto $((free * 8))
[ "$(dm_field t 12)" = exhausted ] || fail "spare level $(dm_field t 12), want exhausted"
raised "remove_remap (pool ok again)" msg remove_remap 16000 $((free * 8))

# Fail mode: the spare's metadata area (sectors 0-4095) fails; a commit
# fails; clear_fail once it works again.
dm_rewrap sw $S0 0:4096
raised "fail mode" msg add_remap 8000 auto
[ "$(dm_field t 4)" = fail ] || fail "state $(dm_field t 4), want fail"
dm_rewrap sw $S0
raised "clear_fail" msg clear_fail
[ "$(dm_field t 4)" = ok ] || fail "state $(dm_field t 4) after clear_fail, want ok"
note "events: $e_start -> $(events)"
dm_remove t
