#!/usr/bin/python3
# SPDX-License-Identifier: GPL-2.0
"""Plots `cargo xtask bench`'s data path rows (format "dm-remap bench 2",
see scripts/guest/bench.sh) as a PNG: IOPS against remap count.

    plot-bench.py ROWS.txt OUT.png

One panel per workload; lines for dm-remap over the whole device (mostly
misses) and inside remapped blocks only (hits), with dm-linear on the same
regions as dashed reference lines. The remap axis is symlog, so 0 fits.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

WORKLOADS = {
    "randread": "4 KiB random read",
    "randwrite": "4 KiB random write",
    "read": "128 KiB sequential read",
    "write": "128 KiB sequential write",
}
REGIONS = (
    ("all", "whole device (misses)", "tab:blue"),
    ("hits", "remapped blocks (hits)", "tab:red"),
)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rows = []
    for line in open(sys.argv[1]):
        w = line.split()
        if len(w) == 7 and w[0] in WORKLOADS:
            rows.append(w)
    if not rows:
        sys.exit("no data path rows")
    present = [w for w in WORKLOADS if any(r[0] == w for r in rows)]
    top = max([int(r[3]) for r in rows if r[3] != "-"] + [1])
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), squeeze=False)
    fig.suptitle("dm-remap: IOPS against remap count (guest time, -icount shift=0)")
    for ax, wl in zip(axes.flat, present):
        for region, label, colour in REGIONS:
            mine = [r for r in rows if r[0] == wl and r[1] == region]
            pts = sorted((int(r[3]), float(r[4])) for r in mine if r[2] == "remap")
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", color=colour, label=f"dm-remap, {label}")
            lin = [float(r[4]) for r in mine if r[2] == "linear"]
            if lin:
                ax.axhline(lin[0], color=colour, linestyle="--", alpha=0.6, label=f"dm-linear, {label}")
        ax.set_xscale("symlog", linthresh=10000)
        ax.set_xlim(0, top * 1.5)
        ax.set_ylim(bottom=0)
        ax.set_title(WORKLOADS[wl])
        ax.set_xlabel("remaps")
        ax.set_ylabel("IOPS")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
    for ax in list(axes.flat)[len(present):]:
        ax.set_visible(False)
    fig.tight_layout()
    fig.savefig(sys.argv[2], dpi=80)


if __name__ == "__main__":
    main()
