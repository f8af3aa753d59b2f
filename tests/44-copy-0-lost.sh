# A spare formatted with 2 metadata copies whose copy 0 header (sector 0) is
# later lost, zeroed or overwritten: a table line with the default 5 copies
# still finds copy 1 (at sector 2048) and loads it, repairs copy 0, and the
# `format` feature does not format over that valid copy.
. /tests/lib.sh
load_module

M=$(new_loop 64M)
S=$(new_loop 16M)
dm_create t "0 131072 remap $M $S 2 copies 2" || fail "create with copies 2 failed"
dmsetup message t 0 add_remap 800 auto >/dev/null || fail "add_remap failed"
dm_remove t

for how in zero garbage; do
	case $how in
	zero) dd if=/dev/zero of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
	garbage) dd if=/dev/urandom of=$S bs=512 count=1 oflag=direct 2>/dev/null ;;
	esac
	for feat in "" " 1 format"; do
		mark
		dm_create t "0 131072 remap $M $S$feat" ||
			fail "$how sector 0, '$feat': refused: $(since_mark | grep -E 'remap|device-mapper')"
		since_mark | grep -q "metadata loaded from copy 1 (generation [0-9]*, 1 remaps)" ||
			fail "$how sector 0, '$feat': not loaded from copy 1: $(since_mark | grep dm-remap)"
		since_mark | grep -q "spare formatted" && fail "$how sector 0, '$feat': formatted over a valid copy"
		[ "$(dmsetup message t 0 count)" = 1 ] || fail "$how sector 0, '$feat': count $(dmsetup message t 0 count)"
		[ "$(dmsetup message t 0 query 800 | awk '{ print $1 }')" = spare ] || fail "$how sector 0, '$feat': remap lost"
		dm_remove t
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
