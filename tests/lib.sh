# SPDX-License-Identifier: GPL-2.0
# Helpers for the guest tests; every test sources this first.
#
# Devices made with these helpers are torn down when the test exits, whether
# it passes or fails, in reverse order of creation.
#
# Under the debug kernel every process start costs 50 to 80 ms, so the
# helpers that every test runs use shell builtins where a builtin does.

MODULE=/lib/dm-remap/dm_remap.ko
_STATE=/tmp/.dmr-test
mkdir -p $_STATE
: >$_STATE/devs
: >$_STATE/loops
: >$_STATE/mounts
: >$_STATE/atexit

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

note() {
	echo "# $*"
}

load_module() {
	[ -d /sys/module/dm_remap ] || insmod $MODULE || fail "insmod failed"
}

# _lines FILE: how many lines FILE has, into $_ln.
_lines() {
	_ln=0
	while IFS= read -r _l; do
		_ln=$((_ln + 1))
	done <"$1"
}

# _drop FILE LINE: removes every line equal to LINE from FILE.
_drop() {
	_keep=
	while IFS= read -r _l; do
		[ "$_l" = "$2" ] || _keep="$_keep$_l
"
	done <"$1"
	printf '%s' "$_keep" >"$1"
}

# new_loop SIZE [losetup options]: a loop device over a fresh tmpfs file.
# (It runs in a subshell, `$(new_loop ...)`: the file's name counts the
# loops made so far, which the state file remembers.)
new_loop() {
	_lines $_STATE/loops
	_f=/tmp/loop.$$.$_ln
	truncate -s "$1" "$_f" || fail "truncate $_f"
	shift
	losetup --show -f "$@" "$_f" >$_STATE/loop || fail "losetup $*"
	read -r _d <$_STATE/loop
	echo "$_d" >>$_STATE/loops
	echo "$_d"
}

# dm_create NAME TABLE...: creates a device and remembers it for clean-up.
dm_create() {
	_n=$1
	shift
	dmsetup create "$_n" --table "$*" || return 1
	echo "$_n" >>$_STATE/devs
}

# dm_remove NAME: removes a device made with dm_create.
dm_remove() {
	dmsetup remove "$1" || fail "dmsetup remove $1"
	_drop $_STATE/devs "$1"
}

# mark: starts a new section of the kernel log; since_mark prints it.
_MARK=0
mark() {
	_MARK=$((_MARK + 1))
	echo "dmr-mark $$-$_MARK" >/dev/kmsg
}
since_mark() {
	dmesg | sed -n "/dmr-mark $$-$_MARK\$/,\$p"
}

# expect_bad_table NAME "TABLE" "MESSAGE": the table must be refused, the
# kernel log must show "remap: MESSAGE", and no device may be left.
expect_bad_table() {
	mark
	if dmsetup create "$1" --table "$2" 2>/dev/null; then
		dmsetup remove "$1"
		fail "table accepted: $2"
	fi
	since_mark | grep -qF "remap: $3" ||
		fail "no '$3' in the kernel log for: $2 (got: $(since_mark | grep 'remap:'))"
	dmsetup info "$1" >/dev/null 2>&1 && fail "device $1 left behind by: $2"
	return 0
}

# holders DEV: how many devices hold DEV open (dm keeps one per open target).
holders() {
	ls /sys/block/"$(basename "$1")"/holders | wc -l
}

# dm_kname NAME: the kernel name (dm-N) of a dm device.
dm_kname() {
	set -- $(dmsetup info -c --noheadings -o minor "$1")
	echo "dm-$1"
}

sectors() {
	blockdev --getsz "$1"
}

# flushes DEV: completed flush requests of a block device.
flushes() {
	awk '{ print $16 }' /sys/block/"$(basename "$1")"/stat
}

# no_check DEV: a spare the test leaves damaged on purpose.
no_check() {
	echo "$1" >>$_STATE/nocheck
}

# at_exit CMD...: a command clean-up runs first (the last given first), for
# what is stacked on the test's devices: an md array to stop, LVM volumes to
# deactivate.
at_exit() {
	echo "$*" >>$_STATE/atexit
}

# On exit: run what at_exit gave, unmount what fs_mount mounted, remove the test's dm devices, run
# `dm-remap-tool check` on every loop device that holds dm-remap metadata (a
# test fails if it leaves an inconsistent spare), then detach the loops.
_cleanup() {
	_rc=$?
	_rev=
	while IFS= read -r _c; do
		_rev="$_c
$_rev"
	done <$_STATE/atexit
	printf '%s' "$_rev" >$_STATE/atexit
	while IFS= read -r _c; do
		eval "$_c" >/dev/null 2>&1
	done <$_STATE/atexit
	while read -r _m; do
		umount "$_m" 2>/dev/null
	done <$_STATE/mounts
	_rev=
	while read -r _n; do
		_rev="$_n $_rev"
	done <$_STATE/devs
	for _n in $_rev; do
		dmsetup remove --retry "$_n" >/dev/null 2>&1
	done
	_skip=" "
	[ -f $_STATE/nocheck ] && while read -r _d; do
		_skip="$_skip$_d "
	done <$_STATE/nocheck
	_rev=
	while read -r _d; do
		_rev="$_d $_rev"
		case $_skip in *" $_d "*) continue ;; esac
		# Copy 0's header starts with the magic "dmremap\0".
		head -c 7 "$_d" >$_STATE/magic 2>/dev/null
		read -r _mg <$_STATE/magic
		[ "$_mg" = dmremap ] || continue
		if ! dm-remap-tool check "$_d"; then
			echo "FAIL: dm-remap-tool check $_d found problems" >&2
			_rc=1
		fi
	done <$_STATE/loops
	for _d in $_rev; do
		losetup -d "$_d" 2>/dev/null
	done
	rm -rf /tmp/loop.* $_STATE
	exit $_rc
}
trap _cleanup EXIT

# copy_at I DEV: the first sector of metadata copy I on spare DEV, as
# dm-remap-tool finds it (docs/on-disk-format.md: version 3 puts copy i at
# i x stride, the stride chosen by the pool's size). Header and units are
# 4 KiB (8 sectors): unit k of the copy is at copy_at + 8k.
copy_at() {
	blockdev --flushbufs "$2" 2>/dev/null
	dm-remap-tool dump --json "$2" | grep -o "\"index\":$1,\"sector\":[0-9]*" | cut -d: -f3
}

# meta_sum DEV: checksum of a spare's 2 MiB metadata area.
meta_sum() {
	dd if="$1" bs=1M count=2 2>/dev/null | sha256sum
}

# remaps NAME: the device's remaps as `list` prints them.
remaps() {
	dmsetup message "$1" 0 list 0 10000
}

# dm_devt NAME: the device's major:minor, as its kernel log lines name it.
dm_devt() {
	set -- $(dmsetup info -c --noheadings -o major,minor "$1")
	_dv=
	for _w; do
		_dv=$_dv$_w
	done
	echo "$_dv"
}

# scan_now NAME: sets state, position, passes, found and last_pass from one
# `scan status` of NAME.
scan_now() {
	set -- $(dmsetup message $1 0 scan status)
	state= position= passes= found= last_pass=
	while [ $# -ge 2 ]; do
		case $1 in
		state) state=$2 ;;
		position) position=$2 ;;
		passes) passes=$2 ;;
		found) found=$2 ;;
		last_pass) last_pass=$2 ;;
		esac
		shift 2
	done
}

# now: seconds since boot, to 10 ms (the guest's clock).
now() {
	read -r _up _ </proc/uptime
	echo "$_up"
}

# cs: the same clock in 10 ms units, into $cs (for shell arithmetic).
cs() {
	read -r _up _ </proc/uptime
	cs=${_up%.*}${_up#*.}
}

# quick WHAT CMD...: CMD must succeed within 1.5 s (the guest's clock), as
# status and messages must while the target's background work waits for a
# slow or dying disk.
quick() {
	_what=$1
	shift
	cs
	_t0=$cs
	"$@" >/dev/null || fail "$_what failed"
	cs
	_dt=$((cs - _t0))
	[ $_dt -le 150 ] ||
		fail "$_what took $((_dt / 100)).$(printf %02d $((_dt % 100))) s, more than 1.5 s"
}

# sector_list FIRST LAST: the sectors of the 4 KiB blocks from sector FIRST
# to sector LAST, as `pending` lists them ("FIRST FIRST+8 ... LAST").
sector_list() {
	_sl=$1 _out=$1
	while [ $((_sl += 8)) -le "$2" ]; do
		_out="$_out $_sl"
	done
	echo "$_out"
}

# two_copy_spare: loop devices $M (64 MiB) and $S (16 MiB), $S formatted
# with 2 metadata copies (copy 1 after copy 0's units) holding one remap, of
# sector 800 (see loads_copy).
two_copy_spare() {
	M=$(new_loop 64M)
	S=$(new_loop 16M)
	dm_create t "0 131072 remap $M $S 2 copies 2" || fail "create with copies 2 failed"
	dmsetup message t 0 add_remap 800 auto >/dev/null || fail "add_remap failed"
	dm_remove t
}

# loads_copy LABEL COPY TABLE: a device made from TABLE loads metadata copy
# COPY with one remap, the one of sector 800, without formatting; it is
# removed again.
loads_copy() {
	mark
	dm_create t "$3" || fail "$1: refused: $(since_mark | grep -E 'remap|device-mapper')"
	since_mark | grep -q "metadata loaded from copy $2 (generation [0-9]*, 1 remaps)" ||
		fail "$1: not loaded from copy $2: $(since_mark | grep dm-remap)"
	since_mark | grep -q "spare formatted" && fail "$1: formatted over a valid copy"
	[ "$(dmsetup message t 0 count)" = 1 ] || fail "$1: count $(dmsetup message t 0 count)"
	case $(dmsetup message t 0 query 800) in
	spare*) ;;
	*) fail "$1: remap lost: $(dmsetup message t 0 query 800)" ;;
	esac
	dm_remove t
}

# dm_field NAME N: field N of `dmsetup status NAME` ($4 is the state).
dm_field() {
	_fn=$2
	set -- $(dmsetup status "$1")
	[ "$_fn" -le $# ] || { echo; return 0; }
	shift $((_fn - 1))
	echo "$1"
}

# dm_stat NAME FILE: a file of the device's statistics directory in sysfs.
dm_stat() {
	cat /sys/module/dm_remap/stat/"$(dm_kname "$1")"/"$2"
}

# Fault injection below dm-remap.
#
# error_table DEV LEN [START:NR]...: a table over DEV's first LEN sectors,
# linear except for the ranges START:NR (in any order, not overlapping),
# which are `error` segments: reads and writes there fail with EIO.
error_table() {
	_et_dev=$1 _et_len=$2 _et_at=0
	shift 2
	for _et_r in $(printf '%s\n' "$@" | sort -n); do
		_et_s=${_et_r%:*} _et_n=${_et_r#*:}
		if [ "$_et_s" -gt $_et_at ]; then
			echo "$_et_at $((_et_s - _et_at)) linear $_et_dev $_et_at"
		fi
		echo "$_et_s $_et_n error"
		_et_at=$((_et_s + _et_n))
	done
	if [ $_et_at -lt "$_et_len" ]; then
		echo "$_et_at $((_et_len - _et_at)) linear $_et_dev $_et_at"
	fi
}

# dm_wrap NAME DEV [START:NR]...: a wrapper device over all of DEV with
# `error` segments at the given sector ranges (none: plain linear).
dm_wrap() {
	_w=$1 _wd=$2
	shift 2
	error_table "$_wd" "$(sectors "$_wd")" "$@" | dmsetup create "$_w" || return 1
	echo "$_w" >>$_STATE/devs
}

# dm_rewrap NAME DEV [START:NR]...: gives a live wrapper a new set of error
# segments (suspend, load, resume), under whatever is stacked on it.
dm_rewrap() {
	_w=$1 _wd=$2
	shift 2
	error_table "$_wd" "$(sectors "$_wd")" "$@" >$_STATE/table
	dmsetup suspend "$_w" || fail "suspend $_w"
	if ! dmsetup load "$_w" $_STATE/table; then
		dmsetup resume "$_w"
		fail "wrapper table refused: $(tr '\n' ';' <$_STATE/table)"
	fi
	dmsetup resume "$_w" || fail "resume $_w"
}

# dm_dust NAME DEV: a dm-dust device over all of DEV with 4 KiB blocks.
# It starts disabled: reads pass even of listed blocks until `dust NAME enable`.
dm_dust() {
	dm_create "$1" "0 $(sectors "$2") dust $2 0 4096"
}

# dust NAME MESSAGE...: sends a message to a dm-dust device (addbadblock
# <block> [<wr_fail_cnt>], enable, disable, removebadblock, clearbadblocks).
dust() {
	_w=$1
	shift
	dmsetup message "$_w" 0 "$@" >/dev/null || fail "dm-dust message '$*' failed"
}

# fs_mount DEV DIR: mounts the ext4 file system on DEV at DIR; it is
# unmounted on exit unless fs_umount did it first.
fs_mount() {
	mkdir -p "$2"
	mount -t ext4 "$1" "$2" || return 1
	echo "$2" >>$_STATE/mounts
}
fs_umount() {
	umount "$1" || fail "umount $1"
	_drop $_STATE/mounts "$1"
}

# ten_thousand_remaps: the device the migration tests move. Main $M (16
# MiB; sector 1600 fails every read and write, behind wrapper mw) and spare
# $S (16 MiB) under device t ("0 32768 $T $S"), with 10,002 remapped
# 512-byte blocks (main sectors 800-801 and 8192-18191: 5 MiB to move),
# random data everywhere and sector 1600 pending.
ten_thousand_remaps() {
	M=$(new_loop 16M)
	S=$(new_loop 16M)
	dm_wrap mw $M 1600:1 || fail "wrapper over main refused"
	T="remap /dev/mapper/mw"
	dm_create t "0 32768 $T $S" || fail "create failed"
	dmsetup message t 0 add_remap 800 auto 2 >/dev/null || fail "add_remap 800 failed"
	dmsetup message t 0 add_remap 8192 auto 10000 >/dev/null || fail "add_remap of 10,000 blocks failed"
	dd if=/dev/urandom of=/dev/mapper/t bs=32k count=25 oflag=direct 2>/dev/null &&
		dd if=/dev/urandom of=/dev/mapper/t bs=1M count=15 seek=1 oflag=direct 2>/dev/null ||
		fail "pattern write failed"
	dd if=/dev/mapper/t of=/dev/null bs=512 skip=1600 count=1 iflag=direct 2>/dev/null &&
		fail "a read of failing main sector 1600 passed"
	[ "$(dmsetup message t 0 pending)" = 1600 ] || fail "pending '$(dmsetup message t 0 pending)', want 1600"
}

# snap NAME: what device t reads before and after the unreadable main
# sector 1600 of ten_thousand_remaps, into /tmp/NAME.a and /tmp/NAME.b.
snap() {
	dd if=/dev/mapper/t of=/tmp/$1.a bs=32k count=25 iflag=direct 2>/dev/null &&
		dd if=/dev/mapper/t of=/tmp/$1.b bs=1M skip=1 iflag=direct 2>/dev/null ||
		fail "reading the device ($1) failed"
}

# move_ended: waits (up to 5 minutes) until the kernel log since the last
# mark says a migrate_to move ended, moved or stopped.
move_ended() {
	_i=0
	until since_mark | grep -q "moved [0-9]* remapped blocks\|moving to spare .* stopped"; do
		_i=$((_i + 1))
		[ $_i -le 1500 ] || fail "the move did not end: $(since_mark | grep 'remap:')"
		sleep 0.2
	done
}
