#!/usr/bin/env bash
# Every CPU benchmark, one after the other (about 30 min on 2 cores; run it on a quiet machine).
# Each table is also written to bench-results/<benchmark>.txt; docs/performance.md quotes one such run.
#   bench/run_all.sh            real-size ViT-B-32 with random weights
#   bench/run_all.sh --smoke    the tiny model, a few minutes
# The GPU check (bench/gpu_check.py) needs CUDA and runs on its own.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench-results
for benchmark in bench_engines bench_request bench_upload bench_concurrency bench_coldstart bench_openvino \
    bench_import bench_libraries bench_export load_test bench_powertools bench_priority bench_models bench_duplicates; do
    echo "== $benchmark $*"
    .venv/bin/python "bench/$benchmark.py" "$@" 2>&1 | grep -v "^WARNING:root" | tee "bench-results/$benchmark.txt"
done
