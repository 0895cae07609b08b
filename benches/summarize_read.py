#!/usr/bin/env python3
"""Summarize `cargo bench --bench read` as markdown tables.

Reads criterion's output (target/criterion/<group>/<bench>/new/benchmark.json
and estimates.json), as benches/summarize.py does, and prints:

* `open`: the time of `Store::open` + `close` per store size, and events
  recovered per second;
* `read_stream` and `lookup`: evstore and SQLite side by side, per event
  (read_stream: one read of 1,000 events; lookup: one single-event lookup),
  with events/s and the ratio SQLite time / evstore time (above 1: evstore
  is faster).

Times are criterion's median per iteration (less sensitive than the mean to
a noisy neighbour) divided by the elements of an iteration where noted.

Usage: python3 benches/summarize_read.py [CRITERION_DIR]   (default target/criterion)
Only results present on disk are shown.
"""

import os
import re
import sys

import criterion_results
from criterion_results import fmt_rate

OPEN_RE = re.compile(r"^events=(\d+)$")
READ_GROUPS = {
    "read_stream": "read_stream: all 1,000 events of one stream (time per read)",
    "lookup": "lookup: one event by (stream, version) (time per lookup)",
}
SYSTEMS = ("evstore", "sqlite", "sqlite_defaults")


def load(root):
    """{(group, id): (median nanos per iteration, elements per iteration)}"""
    return criterion_results.load(root, ("open",) + tuple(READ_GROUPS))


def fmt_time(nanos):
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if nanos >= scale or unit == "ns":
            x = nanos / scale
            digits = 2 if x < 10 else 1 if x < 100 else 0
            return f"{x:.{digits}f} {unit}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    results = load(root)
    if not results:
        sys.exit(f"no criterion results for open, read_stream or lookup under {root}")

    opens = sorted(
        (int(OPEN_RE.match(value).group(1)), results[(group, value)])
        for group, value in results
        if group == "open" and OPEN_RE.match(value)
    )
    if opens:
        print("### Open + close (evstore)\n")
        print("| events in store | open + close |")
        print("|--:|--:|")
        for events, (nanos, _elements) in opens:
            print(f"| {events:,} | {fmt_time(nanos)} |")
        print()

    rows = []
    for group, title in READ_GROUPS.items():
        per = {}
        for system in SYSTEMS:
            found = results.get((group, system))
            if found:
                nanos, elements = found
                per_op = nanos if group == "read_stream" else nanos / elements
                per[system] = (per_op, elements / (nanos / 1e9))
        if per:
            rows.append((title, per))
    if rows:
        print("### Reads from the 10M-event store (evstore vs SQLite)\n")
        print(
            "| benchmark | evstore | sqlite (tuned) | sqlite (defaults) "
            "| tuned/evstore | defaults/evstore |"
        )
        print("|---|--:|--:|--:|--:|--:|")
        for title, per in rows:
            cells = [fmt_time(per[system][0]) if system in per else "-" for system in SYSTEMS]
            ratios = [
                f"{per[system][0] / per['evstore'][0]:.2f}x"
                if "evstore" in per and system in per
                else "-"
                for system in SYSTEMS[1:]
            ]
            print(f"| {title} | " + " | ".join(cells + ratios) + " |")
        print()
        visit = results.get(("read_stream", "evstore_visit"))
        if visit:
            print(
                f"`visit_stream` of the same 1,000 events: {fmt_time(visit[0])}, "
                + ", ".join(
                    f"{system} {results[('read_stream', system)][0] / visit[0]:.2f}x"
                    for system in SYSTEMS[1:]
                    if ("read_stream", system) in results
                )
                + "\n"
            )


if __name__ == "__main__":
    main()
