"""Reading criterion's results, for the summarize_*.py scripts.

criterion writes target/criterion/<group>/<bench>/new/benchmark.json (ids,
throughput) and estimates.json (statistics) for every benchmark it ran.
"""

import json
import os
import sys


def load(root, groups):
    """{(group, id): (median nanos per iteration, elements per iteration)}
    for the benchmarks of `groups` under `root` that declared an element
    throughput. The median is less sensitive than the mean to a noisy
    neighbour."""
    results = {}
    for dirpath, _dirnames, filenames in os.walk(root):
        if os.path.basename(dirpath) != "new" or "benchmark.json" not in filenames:
            continue
        try:
            with open(os.path.join(dirpath, "benchmark.json")) as f:
                bench = json.load(f)
            with open(os.path.join(dirpath, "estimates.json")) as f:
                estimates = json.load(f)
        except (OSError, ValueError) as e:
            print(f"skipping {dirpath}: {e}", file=sys.stderr)
            continue
        group = bench.get("group_id")
        value = bench.get("value_str") or bench.get("function_id") or ""
        elements = (bench.get("throughput") or {}).get("Elements")
        nanos = estimates["median"]["point_estimate"]
        if group not in groups or not elements or nanos <= 0:
            continue
        results[(group, value)] = (nanos, elements)
    return results


def bench_data_root():
    """Where the benchmarks keep their data: the second argument, else
    $EVSTORE_BENCH_DIR, else target/bench-data."""
    if len(sys.argv) > 2:
        return sys.argv[2]
    return os.environ.get("EVSTORE_BENCH_DIR", os.path.join("target", "bench-data"))


def fmt_rate(x):
    """An events/s figure as the tables show it: 1.23 M, 456.7 k or 89;
    "-" for a missing one."""
    if x is None:
        return "-"
    if x >= 1e6:
        return f"{x / 1e6:.2f} M"
    if x >= 1e3:
        return f"{x / 1e3:.1f} k"
    return f"{x:.0f}"
