#!/usr/bin/env python3
"""Summarize `cargo bench --bench append` as markdown tables.

Reads criterion's output (target/criterion/<group>/<bench>/new/benchmark.json
and estimates.json) and prints, per workload `threads=T/size=S/batch=B`:
evstore sync events/s and MB/s, raw file events/s, SQLite events/s, tephra
events/s and the ratios raw/evstore, evstore/SQLite and evstore/tephra; then
the buffered rows.

Events/s = elements per iteration / median time per iteration (the median is
less sensitive than the mean to a noisy neighbour). MB/s is payload bytes
(events/s x S, 1 MB = 10^6 bytes); "disk MB/s" also counts evstore's framing
(a 64-byte record header, the 12-byte stream name and 10-byte event type of
the benchmark, padding to 8, and a 32-byte batch header per append), which is
also what raw_file writes per event.

Then, if the interleaved comparison ran (it follows the criterion groups),
its table from <bench data dir>/append/interleaved.json: per workload the
median events/s of evstore, the raw file and tephra over the rounds, and the
medians of the per-round ratios raw/evstore and evstore/tephra, with the
range of the latter. Runs within a round are a fraction of a second apart,
so these ratios do not move with the disk's speed as the criterion ones can.

Usage: python3 benches/summarize.py [CRITERION_DIR [BENCH_DATA_DIR]]
(defaults target/criterion, and $EVSTORE_BENCH_DIR or target/bench-data)
Only results present on disk are shown; a workload missing from a group
(default subset, or filtered run) shows "-".
"""

import json
import os
import re
import sys

import criterion_results
from criterion_results import fmt_rate

GROUPS = ("evstore_sync", "raw_file", "sqlite", "tephra", "evstore_buffered")
ID_RE = re.compile(r"^threads=(\d+)/size=(\d+)/batch=(\d+)$")
RECORD_HEADER_LEN = 64
BATCH_HEADER_LEN = 32
STREAM_NAME_LEN = len("bench-00-00")
EVENT_TYPE_LEN = len("BenchEvent")


def disk_bytes_per_event(size, batch):
    record = RECORD_HEADER_LEN + STREAM_NAME_LEN + EVENT_TYPE_LEN + size
    record = (record + 7) // 8 * 8
    return record + BATCH_HEADER_LEN / batch


def load(root):
    """{group: {(threads, size, batch): events_per_second}}"""
    results = {}
    for (group, value), (nanos, elements) in criterion_results.load(root, GROUPS).items():
        match = ID_RE.match(value)
        if match:
            key = tuple(int(x) for x in match.groups())
            results.setdefault(group, {})[key] = elements / (nanos / 1e9)
    return results


def fmt_mb(x):
    return "-" if x is None else f"{x:.1f}"


def fmt_ratio(a, b):
    if a is None or b is None or b == 0:
        return "-"
    return f"{a / b:.2f}x"


def label(key):
    t, s, b = key
    return f"threads={t}/size={s}/batch={b}"


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join("target", "criterion")
    results = load(root)
    if not results:
        sys.exit(f"no criterion results for {', '.join(GROUPS)} under {root}")
    sync = results.get("evstore_sync", {})
    raw = results.get("raw_file", {})
    sqlite = results.get("sqlite", {})
    tephra = results.get("tephra", {})
    buffered = results.get("evstore_buffered", {})
    order = lambda k: (k[1], k[0], k[2])  # size, threads, batch

    keys = sorted(set(sync) | set(raw) | set(sqlite) | set(tephra), key=order)
    if keys:
        print("### Durable appends (events/s; MB/s = payload)\n")
        print(
            "| workload | evstore sync ev/s | evstore MB/s | evstore disk MB/s "
            "| raw ev/s | sqlite ev/s | tephra ev/s "
            "| raw/evstore | evstore/sqlite | evstore/tephra |"
        )
        print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
        for key in keys:
            t, s, b = key
            ev = sync.get(key)
            mb = None if ev is None else ev * s / 1e6
            disk = None if ev is None else ev * disk_bytes_per_event(s, b) / 1e6
            print(
                f"| {label(key)} | {fmt_rate(ev)} | {fmt_mb(mb)} | {fmt_mb(disk)} "
                f"| {fmt_rate(raw.get(key))} | {fmt_rate(sqlite.get(key))} "
                f"| {fmt_rate(tephra.get(key))} "
                f"| {fmt_ratio(raw.get(key), ev)} | {fmt_ratio(ev, sqlite.get(key))} "
                f"| {fmt_ratio(ev, tephra.get(key))} |"
            )
        print()

    keys = sorted(buffered, key=order)
    if keys:
        print("### Buffered appends (events/s; MB/s = payload)\n")
        print(
            "| workload | evstore buffered ev/s | MB/s | disk MB/s "
            "| buffered/sync | buffered/raw (durable) |"
        )
        print("|---|--:|--:|--:|--:|--:|")
        for key in keys:
            t, s, b = key
            ev = buffered[key]
            print(
                f"| {label(key)} | {fmt_rate(ev)} | {fmt_mb(ev * s / 1e6)} "
                f"| {fmt_mb(ev * disk_bytes_per_event(s, b) / 1e6)} "
                f"| {fmt_ratio(ev, sync.get(key))} | {fmt_ratio(ev, raw.get(key))} |"
            )
        print()

    interleaved_table(
        os.path.join(criterion_results.bench_data_root(), "append", "interleaved.json")
    )


def interleaved_table(path):
    try:
        with open(path) as f:
            found = json.load(f)
    except (OSError, ValueError):
        return
    median = lambda v: sorted(v)[len(v) // 2] if v else None
    print(
        f"### Durable appends, interleaved ({found['rounds']} rounds of "
        f"{found['run_ms']} ms per system; medians)\n"
    )
    print(
        "| workload | evstore ev/s | raw ev/s | tephra ev/s | raw/evstore "
        "| evstore/tephra | evstore/tephra per round |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|")
    rows = []
    for row in found["workloads"]:
        key = tuple(int(x) for x in ID_RE.match(row["workload"]).groups())
        rows.append((key, row))
    for key, row in sorted(rows, key=lambda kr: (kr[0][1], kr[0][0], kr[0][2])):
        print(
            f"| {row['workload']} | {fmt_rate(median(row['evstore']))} "
            f"| {fmt_rate(median(row['raw']))} | {fmt_rate(median(row['tephra']))} "
            f"| {row['raw_over_evstore']:.2f}x | {row['evstore_over_tephra']:.2f}x "
            f"| {row['evstore_over_tephra_low']:.2f}-{row['evstore_over_tephra_high']:.2f} |"
        )
    print()


if __name__ == "__main__":
    main()
