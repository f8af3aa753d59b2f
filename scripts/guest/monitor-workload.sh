#!/bin/sh
# SPDX-License-Identifier: GPL-2.0
# Guest job of `cargo xtask monitor`: a remap device under a 60/40 random
# read/write fio load for 24 s while remaps are added every 2 s in the region
# fio works on, sampled by `dm-remap-tool monitor` every 500 ms. The series is
# printed between DMR-SERIES-BEGIN and DMR-SERIES-END for the host to plot.
set -e
insmod /lib/dm-remap/dm_remap.ko
truncate -s 64M /tmp/main /tmp/spare
M=$(losetup --show -f /tmp/main)
S=$(losetup --show -f /tmp/spare)
dmsetup create mon --table "0 131072 remap $M $S"
dm-remap-tool monitor --interval-ms 500 >/tmp/series.csv &
sampler=$!
fio --name=load --filename=/dev/mapper/mon --size=32M --rw=randrw --rwmixread=60 \
	--bs=4k --direct=1 --ioengine=psync --time_based --runtime=24 --eta=never \
	--output=/tmp/fio.out &
load=$!
i=1
while [ $i -le 10 ]; do
	sleep 2
	dmsetup message mon 0 add_remap $((i * 6144)) auto 2048 >/dev/null
	i=$((i + 1))
done
wait $load
sleep 1
kill $sampler
dmsetup status mon
dmsetup remove mon
losetup -d $M $S
echo DMR-SERIES-BEGIN
cat /tmp/series.csv
echo DMR-SERIES-END
