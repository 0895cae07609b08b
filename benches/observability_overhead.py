#!/usr/bin/env python3
"""What the `metrics` and `tracing` features cost when on: builds
`examples/append_cpu.rs` without features and with `metrics,tracing` (a
Prometheus recorder and an INFO subscriber installed), runs them
interleaved ROUNDS times (default 10) at 16 threads, and prints the median
events/s and CPU microseconds per append of each, and their ratio.

    python3 benches/observability_overhead.py [ROUNDS]
"""

import re
import statistics
import subprocess
import sys

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 10
VARIANTS = {"off": [], "on": ["--features", "metrics,tracing"]}


def build(flags):
    out = subprocess.run(
        ["cargo", "build", "--release", "--example", "append_cpu", "--message-format=json", *flags],
        check=True, capture_output=True, text=True).stdout
    for line in out.splitlines():
        if '"executable":"' in line and "append_cpu" in line:
            return re.search(r'"executable":"([^"]+)"', line).group(1)
    sys.exit("no executable built")


binaries = {name: build(flags) for name, flags in VARIANTS.items()}
runs = {name: [] for name in VARIANTS}
for _ in range(ROUNDS):
    for name, binary in binaries.items():
        text = subprocess.run([binary, "16", "4000"], check=True, capture_output=True, text=True).stdout
        rate, cpu = re.search(r"([\d.]+) events/s, ([\d.]+) us CPU", text).groups()
        runs[name].append((float(rate), float(cpu)))

medians = {}
for name, values in runs.items():
    rate = statistics.median(v[0] for v in values)
    cpu = statistics.median(v[1] for v in values)
    medians[name] = (rate, cpu)
    print(f"{name:>4}: {rate:9.0f} events/s  {cpu:6.2f} us CPU per append  (median of {ROUNDS})")
(off_rate, off_cpu), (on_rate, on_cpu) = medians["off"], medians["on"]
print(f"on/off: throughput {on_rate / off_rate:.3f}x, CPU per append {on_cpu / off_cpu:.3f}x")
