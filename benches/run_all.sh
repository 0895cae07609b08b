#!/bin/bash
# Runs every benchmark suite the README reports, one after the other, then
# prints the README's tables. About 35 minutes on a 2-core machine, plus
# building the read and DCB stores the first time (about 18 GB under
# target/bench-data, or $EVSTORE_BENCH_DIR). Nothing else should run
# meanwhile: the suites measure the disk and both cores.
#
#   bash benches/run_all.sh 2>&1 | tee bench.log
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
data="${EVSTORE_BENCH_DIR:-target/bench-data}"

step() {
    echo "== $(date -u +%H:%M:%S) $*" >&2
    "$@"
}

git rev-parse HEAD
# Everything is built first, so no build runs beside a measurement.
step cargo bench --no-run --bench append --bench dcb --bench lifecycle --bench read --bench subscribe
step cargo bench --no-run --features json --bench aggregate
step cargo bench --no-run --features async --bench async_append
step cargo bench --no-run --manifest-path benches/frameworks/Cargo.toml

step cargo bench --bench append
EVSTORE_BENCH_EVENTS=10000000 step cargo bench --bench dcb -- 'dcb_read' --warm-up-time 2 --measurement-time 5
step cargo bench --bench dcb -- 'dcb_append|dcb_commit|dcb_contended' --warm-up-time 2 --measurement-time 5
step cargo bench --bench lifecycle -- --warm-up-time 1 --measurement-time 5
step cargo bench --bench read
step cargo bench --bench subscribe
step cargo bench --features json --bench aggregate
step cargo bench --features async --bench async_append
step cargo bench --manifest-path benches/frameworks/Cargo.toml
step cargo run --release --example open_rss -- "$data/read/evstore-10000000"

criterion="$target/criterion"
python3 benches/summarize.py "$criterion" "$data"
python3 benches/chart_append.py "$criterion"
python3 benches/summarize_dcb.py "$criterion" "$data"
python3 benches/summarize_lifecycle.py "$criterion"
python3 benches/summarize_read.py "$criterion"
python3 benches/summarize_subscribe.py "$criterion"
