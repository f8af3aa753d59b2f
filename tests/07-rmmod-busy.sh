# The module cannot be unloaded while a remap device exists, and can be once
# the device is gone.
. /tests/lib.sh
load_module

M=$(new_loop 8M)
S=$(new_loop 8M)
dm_create t "0 16384 remap $M $S" || fail "create failed"
rmmod dm_remap 2>/dev/null && fail "rmmod succeeded with a device in use"
lsmod | grep -q '^dm_remap ' || fail "module gone while a device exists"
dd if=/dev/mapper/t of=/dev/null bs=4k count=1 2>/dev/null || fail "device unusable after the refused rmmod"
dm_remove t
rmmod dm_remap || fail "rmmod failed after the device was removed"
