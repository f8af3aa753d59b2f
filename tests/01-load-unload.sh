# The module, built for this kernel (its vermagic names the running release),
# loads, registers target "remap" 0.4.0, and unloads cleanly.
. /tests/lib.sh

# Built for the running kernel: its vermagic names this release.
vermagic=$(modinfo -F vermagic $MODULE) || fail "modinfo $MODULE failed"
[ "${vermagic%% *}" = "$(uname -r)" ] || fail "vermagic '$vermagic', kernel $(uname -r)"
note "kernel $(uname -r), module vermagic $vermagic"
mark
insmod $MODULE || fail "insmod failed"
lsmod | grep -q '^dm_remap ' || fail "dm_remap not in lsmod"
dmsetup targets | grep -Eq '^remap +v0\.4\.0$' || fail "target remap v0.4.0 not registered: $(dmsetup targets)"
since_mark | grep -q 'dm-remap: target remap 0.4.0 registered' || fail "no registration line in the kernel log"
rmmod dm_remap || fail "rmmod failed"
lsmod | grep -q '^dm_remap ' && fail "module still loaded after rmmod"
dmsetup targets | grep -q '^remap ' && fail "target still registered after rmmod"
# And again: a second load/unload cycle works the same.
insmod $MODULE || fail "second insmod failed"
rmmod dm_remap || fail "second rmmod failed"
