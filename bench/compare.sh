#!/usr/bin/env bash
# The figures a change must not make worse: bench/usage.py, bench/gateway.py and
# bench/batch.py, each RUNS times (2 by default), each with its own local services (any
# service address in the environment is ignored, so both sides run alike). One JSON
# object a line, labelled with the bench, the run and the source measured.
#
#   bench/compare.sh [RUNS]         this checkout
#   bench/compare.sh RUNS REV       the source of REV, driven by this checkout's bench/
#                                   (before and after a change, with the same scripts)
#
# Run both sides on a machine nothing else is using, one after the other, e.g.
#   bench/compare.sh 2 main > before.jsonl && bench/compare.sh 2 > after.jsonl
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
runs="${1:-2}"
rev="${2:-}"
python="$(cd "$root" && uv run python -c 'import sys; print(sys.executable)')"
source_dir="$root"
label="$(git -C "$root" rev-parse --short HEAD)$(git -C "$root" diff --quiet HEAD || echo +changes)"
if [ -n "$rev" ]; then
  source_dir="$(mktemp -d -t ayush-compare-XXXXXX)"
  trap 'rm -rf "$source_dir"' EXIT
  git -C "$root" archive "$rev" | tar -x -C "$source_dir"
  rm -rf "$source_dir/bench"
  cp -r "$root/bench" "$source_dir/bench"
  label="$(git -C "$root" rev-parse --short "$rev") with bench/ of $label"
fi
cd "$source_dir"
for bench in usage gateway batch; do
  for run in $(seq 1 "$runs"); do
    log="${TMPDIR:-/tmp}/ayush-compare-$bench-$run.log"
    env -u KAFKA_BOOTSTRAP_SERVERS -u DATABASE_URL -u REDIS_URL -u S3_ENDPOINT_URL \
      PYTHONPATH="$source_dir" "$python" "bench/$bench.py" 2>"$log" |
      "$python" -c 'import json, sys
figures = json.load(sys.stdin)
print(json.dumps({"bench": sys.argv[1], "run": int(sys.argv[2]), "source": sys.argv[3], **figures}))' \
        "$bench" "$run" "$label" || { echo "bench/$bench.py failed: see $log" >&2; exit 1; }
  done
done
