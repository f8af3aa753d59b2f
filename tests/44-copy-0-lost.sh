# A spare formatted with 2 metadata copies whose copy 0 header (sector 0) is
# later lost, zeroed or overwritten: a table line with the default 5 copies
# still finds copy 1 (at sector 2048) and loads it, repairs copy 0, and the
# `format` feature does not format over that valid copy.
. /tests/lib.sh
load_module

two_copy_spare

for how in zero garbage; do
	case $how in
	zero) dd if=/dev/zero of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
	garbage) dd if=/dev/urandom of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
	esac
	for feat in "" " 1 format"; do
		loads_copy "$how sector 0, '$feat'" 1 "0 131072 remap $M $S$feat"
		# Loading repaired copy 0; lose it again for the next round.
		case $how in
		zero) dd if=/dev/zero of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
		garbage) dd if=/dev/urandom of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
		esac
	done
done
# Leave the spare whole for the clean-up check.
dm_create t "0 131072 remap $M $S" || fail "final create failed"
dm_remove t
