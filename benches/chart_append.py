#!/usr/bin/env python3
"""Chart `cargo bench --bench append` as an SVG: durable append events/s per
workload, one bar per system, on a log scale.

Reads criterion's output like summarize.py (through criterion_results.py)
and draws the 256-byte workloads of WORKLOADS, each a group of bars for
evstore (`evstore_sync`), the raw file, tephra and SQLite. Events/s =
elements per iteration / median time per iteration, as in summarize.py.

The SVG is written by hand (no plotting package needed). A workload or a
system without results on disk is left out: a missing bar leaves its slot
empty, a workload with no bar at all is not drawn.

Usage: python3 benches/chart_append.py [CRITERION_DIR] [OUT_SVG]
       (defaults: target/criterion and docs/append-chart.svg)
"""

import math
import os
import re
import sys
import textwrap
from xml.sax.saxutils import escape

import criterion_results
from criterion_results import fmt_rate

# (criterion group, legend label, colour), in the order of the bars.
SYSTEMS = (
    ("evstore_sync", "evstore", "#2b6cb0"),
    ("raw_file", "raw file (pwrite + fdatasync)", "#8a8a8a"),
    ("tephra", "tephra", "#dd7a1f"),
    ("sqlite", "SQLite (WAL, synchronous=FULL)", "#3a9a5b"),
)
SIZE = 256
# (threads, events per append), top to bottom.
WORKLOADS = ((1, 1), (16, 1), (64, 1), (16, 10), (4, 100), (16, 100))
ID_RE = re.compile(r"^threads=(\d+)/size=(\d+)/batch=(\d+)$")

TITLE = "Durable appends: events per second, 256-byte events"
CAPTION = (
    "Measured: events/s acknowledged only once durable (fdatasync), median of "
    "criterion samples of `cargo bench --bench append`; each thread appends "
    "to its own 16 streams, every append guarded (an exact expected version "
    "for evstore and SQLite, a tag condition for tephra; the raw file has no "
    "check). Log scale."
)

# Layout, in pixels.
WIDTH = 960
LEFT = 130  # row labels
RIGHT = 70  # room for the value printed after the longest bar
TOP = 84  # title and legend
BAR = 14
BAR_GAP = 3
GROUP_GAP = 20
FONT = "font-family=\"Helvetica, Arial, sans-serif\""


def load(root):
    """{(group, threads, batch): events_per_second} for SIZE-byte events."""
    groups = tuple(group for group, _, _ in SYSTEMS)
    results = {}
    for (group, value), (nanos, elements) in criterion_results.load(root, groups).items():
        match = ID_RE.match(value)
        if not match:
            continue
        threads, size, batch = (int(x) for x in match.groups())
        if size == SIZE:
            results[(group, threads, batch)] = elements / (nanos / 1e9)
    return results


def fmt_decade(x):
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if x >= scale:
            return f"{x / scale:g}{suffix}"
    return f"{x:g}"


def text(x, y, s, size=12, anchor="start", weight="normal", fill="#222"):
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" {FONT} font-size="{size}" '
        f'text-anchor="{anchor}" font-weight="{weight}" fill="{fill}">{escape(s)}</text>'
    )


def chart(results):
    rows = [
        (threads, batch)
        for threads, batch in WORKLOADS
        if any((group, threads, batch) in results for group, _, _ in SYSTEMS)
    ]
    values = [results[key] for key in results if (key[1], key[2]) in rows]
    # Whole decades around the data, so every gridline is a power of ten.
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    plot_w = WIDTH - LEFT - RIGHT

    def x_of(v):
        return LEFT + plot_w * (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))

    group_h = len(SYSTEMS) * BAR + (len(SYSTEMS) - 1) * BAR_GAP
    plot_h = len(rows) * group_h + (len(rows) + 1) * GROUP_GAP
    caption = textwrap.wrap(CAPTION, 140)
    height = TOP + plot_h + 48 + 16 * len(caption) + 10
    bottom = TOP + plot_h

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        text(WIDTH / 2, 26, TITLE, size=17, anchor="middle", weight="bold"),
    ]

    # Legend, one row under the title.
    lx = LEFT
    for _, label, colour in SYSTEMS:
        out.append(f'<rect x="{lx}" y="44" width="12" height="12" fill="{colour}"/>')
        out.append(text(lx + 17, 54, label))
        lx += 17 + 6 * len(label) + 28

    # Gridlines: every decade, lighter ones at 2..9 times it.
    decade = lo
    while decade <= hi * 1.0001:
        x = x_of(decade)
        out.append(
            f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" stroke="#bbb"/>'
        )
        out.append(text(x, bottom + 16, fmt_decade(decade), size=11, anchor="middle"))
        if decade < hi:
            for m in range(2, 10):
                x = x_of(decade * m)
                out.append(
                    f'<line x1="{x:.1f}" y1="{TOP}" x2="{x:.1f}" y2="{bottom}" '
                    f'stroke="#eee"/>'
                )
        decade *= 10

    # Bars, a group per workload.
    y = TOP + GROUP_GAP
    for threads, batch in rows:
        out.append(
            text(LEFT - 10, y + group_h / 2 + 5, f"{threads} x {batch}", size=13, anchor="end")
        )
        for i, (group, label, colour) in enumerate(SYSTEMS):
            v = results.get((group, threads, batch))
            by = y + i * (BAR + BAR_GAP)
            if v is None:
                continue
            x = x_of(max(v, lo))
            out.append(
                f'<rect x="{LEFT}" y="{by}" width="{x - LEFT:.1f}" height="{BAR}" '
                f'fill="{colour}"><title>{escape(label)}: {fmt_rate(v)} events/s</title></rect>'
            )
            out.append(text(x + 4, by + BAR - 3, fmt_rate(v), size=10, fill="#444"))
        y += group_h + GROUP_GAP

    # Axes and their labels.
    out.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}" stroke="#444"/>')
    out.append(
        f'<line x1="{LEFT}" y1="{bottom}" x2="{LEFT + plot_w}" y2="{bottom}" stroke="#444"/>'
    )
    out.append(
        text(LEFT + plot_w / 2, bottom + 36, "events per second (log scale)", anchor="middle")
    )
    # Above the row labels rather than rotated beside them, so it fits a
    # chart of a single workload too.
    out.append(text(12, TOP - 10, "threads x events per append"))

    for i, line in enumerate(caption):
        out.append(text(LEFT - 110, bottom + 62 + 16 * i, line, size=11, fill="#555"))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    path = sys.argv[2] if len(sys.argv) > 2 else os.path.join("docs", "append-chart.svg")
    results = load(root)
    if not any((t, b) == (key[1], key[2]) for key in results for t, b in WORKLOADS):
        names = ", ".join(group for group, _, _ in SYSTEMS)
        sys.exit(f"no criterion results for {names} ({SIZE}-byte workloads) under {root}")
    svg = chart(results)
    with open(path, "w") as f:
        f.write(svg)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
