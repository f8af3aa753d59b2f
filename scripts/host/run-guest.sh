#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boots the test kernel with an initramfs under QEMU (TCG) and relays the job's
# output; exits with the job's exit status.
#
#   scripts/host/run-guest.sh [--shell] [--icount[=SHIFT]] [--timeout SECONDS] [--log FILE]
#                        [--control SOCKET] KDIR INITRAMFS
#
# --shell    interactive shell on the console instead of the job
# --icount   -icount shift=0,sleep=off: guest time counts instructions, which
#            makes benchmark ratios repeatable; --icount=SHIFT counts 2^SHIFT ns
#            per instruction (a slower emulated CPU, so time-based runs end
#            after fewer instructions)
# --timeout  kill the guest after this many seconds (default 1800); exit 124
# --log      keep the raw console output here
# --control  a second serial port (the guest's /dev/ttyS1, announced by
#            dmr.ctl on the kernel command line) on a UNIX socket that QEMU
#            listens on; the guest starts once a client has connected
#
# Without a DMR-EXIT line (timeout, panic) the tail of the console is printed
# and the exit status is 124 (timeout) or 125.
set -euo pipefail
. "$(dirname "$0")/common.sh"

shell=0 icount=() limit=1800 log= control=()
while [ $# -gt 2 ]; do
	case $1 in
	--shell) shell=1 ;;
	--icount) icount=(-icount shift=0,sleep=off) ;;
	--icount=[0-9]) icount=(-icount "shift=${1#--icount=},sleep=off") ;;
	--timeout) limit=$2; shift ;;
	--log) log=$2; shift ;;
	--control) control=(-chardev "socket,id=ctl,path=$2,server=on,wait=on" -serial chardev:ctl); shift ;;
	*) die "unknown option $1" ;;
	esac
	shift
done
[ $# -eq 2 ] || die "usage: $0 [--shell] [--icount[=SHIFT]] [--timeout S] [--log FILE] [--control SOCKET] KDIR INITRAMFS"
kdir=$1 initrd=$2
# A kernel build directory, or a directory holding a distribution's vmlinuz.
kernel=$kdir/arch/x86/boot/bzImage
[ -f "$kernel" ] || [ ! -f "$kdir/vmlinuz" ] || kernel=$kdir/vmlinuz
[ -f "$kernel" ] || die "no kernel image at $kernel"

# 1 GiB: the largest test needs about a quarter of it (tmpfs files behind
# its loop devices), and kmemleak's scan walks every page of guest memory
# (4.2 s of guest time per scan at 1 GiB against 6.4 s at 2 GiB).
qemu=(qemu-system-x86_64 -accel tcg -cpu max -smp 2 -m 1024 -nodefaults
	-no-reboot -kernel "$kernel" -initrd "$initrd" "${icount[@]}")
# An NVMe namespace of 64 MiB (a sparse file of this guest's own): the debug
# kernel puts it behind a multipath head, /dev/nvme0n1
# (tests/57-spare-behind-nvme-multipath.sh).
nvme=$(mktemp "${TMPDIR:-/tmp}/dmr-nvme.XXXXXX")
trap 'rm -f "$nvme"' EXIT
truncate -s 64M "$nvme"
# In a subsystem (multi-controller capable) and shared: what makes Linux
# put a multipath head in front of it.
qemu+=(-drive "if=none,id=nvm,format=raw,file=$nvme"
	-device nvme-subsys,id=dmrsub,nqn=dmr-remap -device nvme,serial=dmr-nvme,subsys=dmrsub
	-device nvme-ns,drive=nvm,nsid=1,shared=on)
# loglevel=2: only panics reach the console; the runner reads everything else
# from the kernel log itself. mitigations=off: the guest runs only our own
# tests, and without page table isolation every system call no longer swaps
# CR3, which under TCG throws away the emulated TLB and the jump cache each
# time (about 9% of a test's host CPU time).
append="console=ttyS0 panic=-1 loglevel=2 mitigations=off"
[ ${#control[@]} -eq 0 ] || append+=" dmr.ctl"

if [ $shell -eq 1 ]; then
	"${qemu[@]}" -nographic -serial mon:stdio -append "$append dmr.shell"
	exit
fi

[ -n "$log" ] || log=$(mktemp "${TMPDIR:-/tmp}/dmr-console.XXXXXX")
# Line by line all the way (sed -u: mawk would block-buffer its input), so
# each test result shows as the test ends.
set +e
timeout --kill-after=10 "$limit" "${qemu[@]}" -display none -monitor none \
	-serial stdio "${control[@]}" -append "$append" </dev/null 2>"$log.qemu" |
	stdbuf -oL tr -d '\r' | tee "$log" |
	sed -un '/^DMR-BEGIN$/,/^DMR-EXIT /{/^DMR-BEGIN$/d;/^DMR-EXIT /d;p}'
qrc=${PIPESTATUS[0]}
set -e

rc=$(grep -a '^DMR-EXIT ' "$log" | tail -1 | cut -d' ' -f2 || true)
if [ -z "$rc" ]; then
	if [ "$qrc" -eq 124 ] || [ "$qrc" -eq 137 ]; then
		log "guest timed out after $limit s; console tail:"
		rc=124
	else
		log "guest ended without an exit status (qemu status $qrc); console tail:"
		rc=125
	fi
	tail -40 "$log" | tr -cd '\11\12\15\40-\176' >&2
	cat "$log.qemu" >&2
fi
exit "$rc"
