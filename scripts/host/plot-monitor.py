#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Plots a `dm-remap-tool monitor` series (CSV) as a PNG.

    plot-monitor.py SERIES.csv OUT.png [DEVICE]

Panels: IOPS per direction, MB/s per direction, share of requests sent to the
spare, and remap count with spare use, over time. DEVICE is a kernel name
(dm-0); default: the first device in the series.
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    rows = list(csv.DictReader(open(sys.argv[1])))
    devices = [r["device"] for r in rows if r["device"] != "all_devs"]
    if not devices:
        sys.exit("no device in the series")
    dev = sys.argv[3] if len(sys.argv) == 4 else devices[0]
    rows = [r for r in rows if r["device"] == dev]
    name = rows[0]["name"]
    t = [int(r["t_ms"]) / 1000 for r in rows]
    col = {k: [int(r[k]) for r in rows] for k in rows[0] if k not in ("t_ms", "device", "name")}

    def rate(key, scale=1.0):
        return [
            (col[key][i] - col[key][i - 1]) / max(t[i] - t[i - 1], 1e-9) / scale
            for i in range(1, len(t))
        ]

    tm = t[1:]
    share = []
    for i in range(1, len(t)):
        reqs = (col["read_cnt"][i] + col["write_cnt"][i]) - (col["read_cnt"][i - 1] + col["write_cnt"][i - 1])
        remapped = (col["remapped_reads"][i] + col["remapped_writes"][i]) - (
            col["remapped_reads"][i - 1] + col["remapped_writes"][i - 1]
        )
        share.append(100.0 * remapped / reqs if reqs else 0.0)

    fig, ax = plt.subplots(4, 1, figsize=(9, 11), sharex=True)
    fig.suptitle(f"dm-remap {dev} ({name})")
    ax[0].plot(tm, rate("read_cnt"), label="read")
    ax[0].plot(tm, rate("write_cnt"), label="write")
    ax[0].set_ylabel("IOPS")
    ax[0].legend()
    ax[1].plot(tm, rate("read_bytes", 1e6), label="read")
    ax[1].plot(tm, rate("write_bytes", 1e6), label="write")
    ax[1].set_ylabel("MB/s")
    ax[1].legend()
    ax[2].plot(tm, share, color="tab:red")
    ax[2].set_ylabel("sent to spare (%)")
    ax[2].set_ylim(bottom=0)
    ax[3].plot(t, col["remaps"], label="remapped blocks")
    ax[3].plot(t, col["spare_used"], "--", label="spare blocks used")
    ax[3].set_ylabel("blocks")
    ax[3].set_xlabel("time (s)")
    ax[3].legend()
    for a in ax:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=80)


if __name__ == "__main__":
    main()
