# Helpers of the scanner tests (35, 42, 43), sourced after /tests/lib.sh:
# the shell's own splitting and clock instead of an awk or cut per value,
# since a process start is dear in the guest.

# scan_now NAME: state, position, passes, found and last_pass from one
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

# cs: the guest's clock (seconds since boot, as now prints it) in 10 ms
# units, into $cs.
cs() {
	read _up _ </proc/uptime
	cs=${_up%.*}${_up#*.}
}
