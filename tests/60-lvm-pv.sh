# A remap device as an LVM physical volume (Debian 12's LVM, static): a
# volume group and a logical volume on it, a block of main that starts
# failing under the active volume while fio writes and verifies through it:
# each write there is remapped, fio reads back what it wrote, and the data
# is the same after the volume and the remap device are taken down and
# brought up again. Without a filter LVM finds the PV's label on the raw
# main too (the duplicate-device hazard docs/usage.md describes), and a
# filter that rejects the raw main by one of its names does not keep LVM
# off it; with the documented global_filter (accept the mapped device,
# reject the rest), or a devices file that lists the mapped device alone,
# LVM sees the PV on the remap device alone.
. /tests/lib.sh
load_module
export LVM_SUPPRESS_FD_WARNINGS=1

M=$(new_loop 64M)
S=$(new_loop 16M)
dm_wrap w $M || fail "wrapper over main refused"
dm_create t "0 131072 remap /dev/mapper/w $S 2 block_size 4096" || fail "create failed"
mkdir -p /etc/lvm /run/lock/lvm
at_exit rm -f /etc/lvm/lvm.conf
# No udev in the guest: LVM makes the device nodes itself.
conf() {
	cat >/etc/lvm/lvm.conf <<-CONF
		devices { $1 }
		activation { udev_sync = 0 udev_rules = 0 }
		backup { backup = 0 archive = 0 }
	CONF
}
conf ""
pvcreate -q /dev/mapper/t >/tmp/out 2>&1 || fail "pvcreate: $(cat /tmp/out)"

# The hazard: the raw main carries the same PV label.
pvs --noheadings -o pv_name >/tmp/out 2>&1
grep -Eq "$M|/dev/mapper/w" /tmp/out ||
	fail "without a filter LVM did not see the PV on the raw main: $(cat /tmp/out)"

# The filter docs/usage.md gives: accept the devices LVM is to use, by
# name, and reject the rest (a device is rejected only when every name it
# has, /dev/dm-N included, is; so a filter that rejects the raw main by one
# name and accepts everything else keeps it).
conf "global_filter = [ \"r|^/dev/mapper/w\$|\", \"a|.*|\" ]"
pvs --noheadings -o pv_name >/tmp/out 2>&1
grep -Eq "Not using device|$M|/dev/dm-" /tmp/out ||
	fail "a reject-one-name filter kept LVM off the raw main after all: $(cat /tmp/out)"
conf "global_filter = [ \"a|^/dev/mapper/t\$|\", \"r|.*|\" ]"
pvs --noheadings -o pv_name >/tmp/out 2>&1 || fail "pvs: $(cat /tmp/out)"
set -- $(cat /tmp/out)
[ "$*" = /dev/mapper/t ] || fail "with the filter pvs shows '$*', want /dev/mapper/t alone"
# Or a devices file (use_devicesfile = 1, the default on some distributions) with
# the mapped device alone in it.
conf "use_devicesfile = 1"
mkdir -p /etc/lvm/devices
at_exit rm -rf /etc/lvm/devices
lvmdevices -y --adddev /dev/mapper/t >/tmp/out 2>&1 || fail "lvmdevices --adddev: $(cat /tmp/out)"
pvs --noheadings -o pv_name >/tmp/out 2>&1 || fail "pvs: $(cat /tmp/out)"
set -- $(cat /tmp/out)
[ "$*" = /dev/mapper/t ] || fail "with the devices file pvs shows '$*', want /dev/mapper/t alone"
conf "global_filter = [ \"a|^/dev/mapper/t\$|\", \"r|.*|\" ]"

vgcreate -q vg /dev/mapper/t >/tmp/out 2>&1 || fail "vgcreate: $(cat /tmp/out)"
at_exit dmsetup remove vg-lv
at_exit vgchange -an vg
lvcreate -q -y -n lv -L 32M vg >/tmp/out 2>&1 || fail "lvcreate: $(cat /tmp/out)"
[ -b /dev/mapper/vg-lv ] || fail "no /dev/mapper/vg-lv"
set -- $(pvs --noheadings --units s -o pe_start /dev/mapper/t)
pe=${1%S}
[ "$pe" -gt 0 ] 2>/dev/null || fail "pe_start '$1'"

# Three 4 KiB blocks of main under the volume start failing (first, one
# inside, last), while the volume and the remap device are live.
B1=$pe B2=$((pe + 20000)) B3=$((pe + 65528))
dm_rewrap w $M $B1:8 $B2:8 $B3:8
fio --name=lv --filename=/dev/mapper/vg-lv --size=32M --rw=randwrite --bs=64k \
	--direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--randrepeat=0 --output=/tmp/fio.out || { cat /tmp/fio.out; fail "fio failed"; }
grep -q "err= 0" /tmp/fio.out || { cat /tmp/fio.out; fail "fio reported errors"; }
set -- $(dmsetup status t)
[ "$4" = ok ] || fail "state $4, want ok"
[ "$6" = 3 ] || fail "$6 remaps, want the 3 failing blocks"
[ "${10}" = 0 ] || fail "pending ${10}, want 0"
for b in $B1 $B2 $B3; do
	case $(dmsetup message t 0 query $b) in
	spare*) ;;
	*) fail "block at main sector $b not remapped: $(dmsetup message t 0 query $b)" ;;
	esac
done
dd if=/dev/mapper/vg-lv of=/tmp/a bs=1M iflag=direct 2>/dev/null || fail "read of the volume failed"

# Down and up again: the volume reads the same, over the same PV.
vgchange -an vg >/tmp/out 2>&1 || fail "vgchange -an: $(cat /tmp/out)"
dm_remove t
dm_create t "0 131072 remap /dev/mapper/w $S 2 block_size 4096" || fail "create again failed"
[ "$(dmsetup message t 0 count)" = 3 ] || fail "count after create $(dmsetup message t 0 count)"
vgchange -ay vg >/tmp/out 2>&1 || fail "vgchange -ay: $(cat /tmp/out)"
grep -Eiq "duplicate|not using" /tmp/out && fail "LVM warned with the filter: $(cat /tmp/out)"
set -- $(lvs --noheadings -o devices vg/lv)
[ "${1%%(*}" = /dev/mapper/t ] || fail "the volume is on '$1', want /dev/mapper/t"
dd if=/dev/mapper/vg-lv of=/tmp/b bs=1M iflag=direct 2>/dev/null || fail "read again failed"
cmp /tmp/a /tmp/b || fail "the volume reads differently after vgchange -an/-ay and a new remap device"
vgchange -an vg >/dev/null 2>&1 || fail "vgchange -an"
rm -f /tmp/a /tmp/b
