#!/usr/bin/env bash
# Runs every libFuzzer harness in $MFT_FUZZ_BIN over its committed seed corpus
# for a bounded time (MFT_FUZZ_SECONDS each, default 20). A crash, a leak or a
# sanitizer report fails the test. The corpus is copied so CI never writes
# into the source tree.
set -euo pipefail
: "${MFT_FUZZ_BIN:?build the fuzz harnesses first (./mft test does)}"
src=$(cd "$(dirname "$0")" && pwd)
secs=${MFT_FUZZ_SECONDS:-20}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
n=0
for f in "$MFT_FUZZ_BIN"/fuzz_*; do
  name=$(basename "$f"); seeds="$src/corpus/${name#fuzz_}"
  [ -d "$seeds" ] || { echo "no seed corpus for $name in $seeds" >&2; exit 1; }
  mkdir -p "$work/$name"; cp -r "$seeds/." "$work/$name/"
  echo "== $name: ${secs}s"
  "$f" -max_total_time="$secs" -rss_limit_mb=2048 -artifact_prefix="$work/" "$work/$name" \
    >"$work/$name.log" 2>&1 || { tail -n 60 "$work/$name.log"; exit 1; }
  grep -E '^#[0-9]+.*DONE|Done [0-9]+ runs' "$work/$name.log" | tail -1
  n=$((n + 1))
done
((n > 0)) || { echo "no fuzz harnesses found in $MFT_FUZZ_BIN" >&2; exit 1; }
echo "$n passed, 0 failed"
