#!/usr/bin/env python3
"""Summarize `cargo bench --bench subscribe` as markdown tables.

Reads criterion's output (<criterion dir>/<group>/<bench>/new/benchmark.json
and estimates.json) for the `catch_up`, `live_latency` and `live_writer`
groups, and the files the benchmark writes beside its data
(<bench data dir>/subscribe/latency-subscribers=N.json and
writer-subscribers=N.json), and prints:

* catch-up: time per pass over the log and events/s, per filter, with the
  ratio to the plain `read_all` pass of the same run when it is there;
* live latency: acknowledgement to delivery p50/p99/p99.9, the time until
  the last subscriber had the event, and the append's own time;
* writer throughput with and without live subscribers, and their ratio,
  from criterion and from the interleaved rounds that follow it.

Times are criterion's median per iteration.

Usage: python3 benches/summarize_subscribe.py [CRITERION_DIR [BENCH_DATA_DIR]]
(defaults: $CARGO_TARGET_DIR/criterion or target/criterion, and
$EVSTORE_BENCH_DIR or target/bench-data). Only results present on disk are
shown.
"""

import json
import os
import sys

import criterion_results
from criterion_results import fmt_rate

GROUPS = ("catch_up", "live_latency", "live_writer")
CATCH_UP = (
    ("all", "every event (Filter::all)"),
    ("stream_prefix_1pct", "1% of the events (stream prefix)"),
    ("read_all", "read_all pages, no subscription"),
)


def load(root):
    """{(group, id): (median nanos per iteration, elements per iteration)}"""
    return criterion_results.load(root, GROUPS)


def load_json(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def fmt_time(nanos):
    if nanos == 0:
        return "0"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1)):
        if nanos >= scale or unit == "ns":
            x = nanos / scale
            digits = 2 if x < 10 else 1 if x < 100 else 0
            return f"{x:.{digits}f} {unit}"


def catch_up(results):
    rows = [(key, title, results[("catch_up", key)]) for key, title in CATCH_UP
            if ("catch_up", key) in results]
    if not rows:
        return
    floor = results.get(("catch_up", "read_all"))
    print("### Catch-up from position 0 (one pass over the log)\n")
    print("| subscriber delivers | events in log | time per pass | events/s | time / read_all |")
    print("|---|--:|--:|--:|--:|")
    for _key, title, (nanos, elements) in rows:
        ratio = f"{nanos / floor[0]:.2f}x" if floor else "-"
        print(
            f"| {title} | {elements:,} | {fmt_time(nanos)} "
            f"| {fmt_rate(elements / (nanos / 1e9))} | {ratio} |"
        )
    print()


def latency(results, data):
    rows = []
    for name in sorted(os.listdir(data)) if os.path.isdir(data) else []:
        if name.startswith("latency-") and name.endswith(".json"):
            found = load_json(os.path.join(data, name))
            if found:
                rows.append(found)
    if not rows:
        return
    rows.sort(key=lambda r: r["subscribers"])
    print("### Live delivery latency (Sync store, single-event appends back to back)\n")
    print(
        "| subscribers | events | ack→delivery p50 | p99 | p99.9 | call→delivery mean (criterion) "
        "| ack→last subscriber p99 | append p50 | append p99 | delivered before ack |"
    )
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        ack = r["ack_to_delivery"]
        last = r["ack_to_last_subscriber"]
        append = r.get("append") or {}
        found = results.get(("live_latency", f"subscribers={r['subscribers']}"))
        mean = fmt_time(found[0]) if found else "-"
        early = r["delivered_before_ack"] / max(r["deliveries"], 1) * 100
        print(
            f"| {r['subscribers']} | {r['events']:,} | {fmt_time(ack['p50'])} "
            f"| {fmt_time(ack['p99'])} | {fmt_time(ack['p999'])} | {mean} "
            f"| {fmt_time(last['p99'])} "
            f"| {fmt_time(append['p50']) if append else '-'} "
            f"| {fmt_time(append['p99']) if append else '-'} | {early:.1f}% |"
        )
    print()


def writer(results, data):
    rows = []
    for (group, value), (nanos, elements) in results.items():
        if group == "live_writer" and value.startswith("subscribers="):
            count, _, how = value.split("=")[1].partition("-")
            rows.append((int(count), how, value, nanos, elements))
    if not rows:
        return
    rows.sort()
    base = next((r for r in rows if r[0] == 0), None)
    print("### Durable appends (16 threads, 256 B, batch 10) with live subscribers\n")
    print("| subscribers | events/s | vs none | slowest subscriber behind at end of sample (mean / max) |")
    print("|--:|--:|--:|--:|")
    for subscribers, how, label, nanos, elements in rows:
        rate = elements / (nanos / 1e9)
        ratio = f"{rate / (base[4] / (base[3] / 1e9)):.2f}x" if base else "-"
        lag = load_json(os.path.join(data, f"writer-{label}.json"))
        behind = (
            f"{lag['mean_events_behind']:,} / {lag['max_events_behind']:,} events"
            if lag and subscribers
            else "-"
        )
        name = f"{subscribers} ({how})" if how else str(subscribers)
        print(f"| {name} | {fmt_rate(rate)} | {ratio} | {behind} |")
    print()
    inter = load_json(os.path.join(data, "writer-interleaved.json"))
    if inter and "labels" in inter:
        parts = [
            f"{label} {fmt_rate(rate)} events/s"
            + (f" ({ratio:.2f}x)" if i else "")
            for i, (label, rate, ratio) in enumerate(
                zip(inter["labels"], inter["median_rates"], inter["median_ratios"])
            )
        ]
        print(
            f"Interleaved, {inter['rounds']} rounds of {inter['events_per_round']:,} events "
            f"(medians; ratio = median per-round ratio to the first): " + ", ".join(parts) + ".\n"
        )


def main():
    target = os.environ.get("CARGO_TARGET_DIR", "target")
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(target, "criterion")
    data_root = (
        sys.argv[2]
        if len(sys.argv) > 2
        else os.environ.get("EVSTORE_BENCH_DIR", os.path.join("target", "bench-data"))
    )
    data = os.path.join(data_root, "subscribe")
    results = load(root)
    if not results and not os.path.isdir(data):
        sys.exit(f"no subscribe results under {root} or {data}")
    catch_up(results)
    latency(results, data)
    writer(results, data)


if __name__ == "__main__":
    main()
