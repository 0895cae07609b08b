#!/usr/bin/env python3
"""Summarize `cargo bench --bench dcb` as markdown tables.

Reads criterion's output (target/criterion/<group>/<bench>/new/benchmark.json
and estimates.json), as benches/summarize.py does, and prints evstore,
tephra and SQLite side by side for each workload:

* `dcb_append`: conditional appends, each thread guarding its own tag
  (events/s per thread count, evstore/tephra and evstore/SQLite);
* `dcb_contended`: 16 threads guarding one tag (successful appends/s, the
  same ratios);
* `dcb_read`: the 1,000 events of one tag from a large log (time per read,
  events/s, tephra time / evstore time and SQLite time / evstore time;
  above 1: evstore is faster);
* `dcb_commit`: 10 events in one stream against 5 + 5 in a two-stream
  commit (events/s of each, two streams / one stream per system, and
  evstore against the others for each).

Rates are elements per iteration / criterion's median time per iteration
(less sensitive than the mean to a noisy neighbour).

Then, if the interleaved comparison ran (it follows the criterion groups),
its table from <bench data dir>/dcb/interleaved.json: per workload of
`dcb_append` and `dcb_commit`, the median events/s of each system over the
rounds and the medians of the per-round ratios. Runs within a round are a
fraction of a second apart, so these ratios do not move with the disk's
speed as the criterion ones can.

Usage: python3 benches/summarize_dcb.py [CRITERION_DIR [BENCH_DATA_DIR]]
(defaults target/criterion, and $EVSTORE_BENCH_DIR or target/bench-data)
Only results present on disk are shown; a missing one shows "-".
"""

import json
import os
import re
import sys

import criterion_results
from criterion_results import fmt_rate

GROUPS = ("dcb_append", "dcb_contended", "dcb_read", "dcb_commit")
SYSTEMS = ("evstore", "tephra", "sqlite")
ID_RE = re.compile(r"^(evstore_visit|evstore|tephra|sqlite)/(.+)$")


def load(root):
    """{group: {params: {system: (median nanos per iteration, elements)}}}"""
    results = {}
    for (group, value), found in criterion_results.load(root, GROUPS).items():
        match = ID_RE.match(value)
        if match:
            system, params = match.groups()
            results.setdefault(group, {}).setdefault(params, {})[system] = found
    return results


def rate(found):
    """Elements per second, or None."""
    if not found:
        return None
    nanos, elements = found
    return elements / (nanos / 1e9)


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def fmt_time(nanos):
    if nanos is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if nanos >= scale or unit == "ns":
            x = nanos / scale
            digits = 2 if x < 10 else 1 if x < 100 else 0
            return f"{x:.{digits}f} {unit}"


def number_in(params, key):
    """The number after `key=` in `params` (for sorting), else 0."""
    match = re.search(rf"{key}=(\d+)", params)
    return int(match.group(1)) if match else 0


def rate_table(title, unit, rows):
    """Systems side by side, with evstore against the others."""
    print(f"### {title}\n")
    print(
        f"| workload | evstore {unit} | tephra {unit} | sqlite {unit} "
        "| evstore/tephra | evstore/sqlite |"
    )
    print("|---|--:|--:|--:|--:|--:|")
    for params, per in rows:
        ev, te, sq = (rate(per.get(s)) for s in SYSTEMS)
        print(
            f"| {params} | {fmt_rate(ev)} | {fmt_rate(te)} | {fmt_rate(sq)} "
            f"| {fmt_ratio(ev, te)} | {fmt_ratio(ev, sq)} |"
        )
    print()


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    results = load(root)
    if not results:
        sys.exit(f"no criterion results for {', '.join(GROUPS)} under {root}")

    appends = results.get("dcb_append", {})
    if appends:
        rows = sorted(appends.items(), key=lambda kv: number_in(kv[0], "threads"))
        rate_table(
            "Conditional durable appends, each thread guarding its own tag (events/s)",
            "ev/s",
            rows,
        )

    contended = results.get("dcb_contended", {})
    if contended:
        rows = sorted(contended.items(), key=lambda kv: number_in(kv[0], "threads"))
        rate_table(
            "Contended: threads guarding one shared tag (successful appends/s)",
            "wins/s",
            rows,
        )

    reads = results.get("dcb_read", {})
    if reads:
        print("### Reading the events of one tag (time per read)\n")
        print(
            "| log | events read | evstore | evstore, visited | tephra | sqlite "
            "| evstore ev/s | tephra/evstore | sqlite/evstore "
            "| tephra/visited | sqlite/visited |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        readers = ("evstore", "evstore_visit", "tephra", "sqlite")
        for params, per in sorted(reads.items(), key=lambda kv: number_in(kv[0], "events")):
            nanos = {s: per[s][0] if s in per else None for s in readers}
            elements = next((found[1] for found in per.values()), None)
            print(
                f"| {params} | {elements:,} | "
                + " | ".join(fmt_time(nanos[s]) for s in readers)
                + f" | {fmt_rate(rate(per.get('evstore')))} "
                f"| {fmt_ratio(nanos['tephra'], nanos['evstore'])} "
                f"| {fmt_ratio(nanos['sqlite'], nanos['evstore'])} "
                f"| {fmt_ratio(nanos['tephra'], nanos['evstore_visit'])} "
                f"| {fmt_ratio(nanos['sqlite'], nanos['evstore_visit'])} |"
            )
        print()

    commits = results.get("dcb_commit", {})
    if commits:
        rows = sorted(
            commits.items(),
            key=lambda kv: (number_in(kv[0], "events"), number_in(kv[0], "streams")),
        )
        rate_table("Durable commits, one thread (events/s)", "ev/s", rows)

        print("### Two-stream commit against single-stream append (same events)\n")
        print("| events | system | one stream ev/s | two streams ev/s | two/one |")
        print("|--:|---|--:|--:|--:|")
        by_events = {}
        for params, per in commits.items():
            streams, events = number_in(params, "streams"), number_in(params, "events")
            by_events.setdefault(events, {})[streams] = per
        for events in sorted(by_events):
            one, two = by_events[events].get(1, {}), by_events[events].get(2, {})
            for system in SYSTEMS:
                r1, r2 = rate(one.get(system)), rate(two.get(system))
                if r1 is None and r2 is None:
                    continue
                print(
                    f"| {events} | {system} | {fmt_rate(r1)} | {fmt_rate(r2)} "
                    f"| {fmt_ratio(r2, r1)} |"
                )
        print()

    interleaved_table(
        os.path.join(criterion_results.bench_data_root(), "dcb", "interleaved.json")
    )


def interleaved_table(path):
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return
    median = lambda v: sorted(v)[len(v) // 2] if v else None
    print(f"### Interleaved ({found['rounds']} rounds per system; medians)\n")
    print(
        "| workload | evstore ev/s | tephra ev/s | sqlite ev/s | evstore/tephra "
        "| evstore/tephra per round | evstore/sqlite |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    for row in found["workloads"]:
        print(
            f"| {row['workload']} | {fmt_rate(median(row['evstore']))} "
            f"| {fmt_rate(median(row['tephra']))} | {fmt_rate(median(row['sqlite']))} "
            f"| {row['evstore_over_tephra']:.2f}x "
            f"| {row['evstore_over_tephra_low']:.2f}-{row['evstore_over_tephra_high']:.2f} "
            f"| {row['evstore_over_sqlite']:.2f}x |"
        )
    print()


if __name__ == "__main__":
    main()
