#!/usr/bin/env bash
# Docs checked by tests (STYLE.md §13): every MFT_* variable, metric, event
# type, Redis key pattern and error kind named in the code has its line in docs/.
set -uo pipefail
cd "${MFT_SRC:?}"
fail=0; checked=0
check() { # check DOC NAME...
  local doc=$1; shift
  for name in "$@"; do
    checked=$((checked + 1))
    grep -qF -- "$name" "$doc" || { echo "missing in $doc: $name"; fail=$((fail + 1)); }
  done
}
src_files=$(git ls-files 2>/dev/null | grep -E '^(lib|ingress|egress|sftp|certd|admin|tools)/.*\.[ch]$' || ls lib/*.[ch] ingress/*.[ch] egress/*.[ch] tools/*.[ch])
check docs/config.md $(grep -ohE '"MFT_[A-Z0-9_]+"' $src_files | tr -d '"' | sort -u)
check docs/metrics.md $(grep -ohE '"mft_[a-z0-9_]+_(total|inflight|version|seconds|bytes)"' $src_files | tr -d '"' | sort -u)
check docs/events.md $(grep -ohE '"mft\.[a-z.]+\.v1"' $src_files | tr -d '"' | sort -u)
# Redis keys: every literal key prefix written by the store module ("mft:out:due:")
check docs/redis-keys.md $(grep -ohE '"mft:[a-z0-9:-]+' lib/mft_store.c | tr -d '"' | sed 's/:$//' | sort -u)
check docs/errors.md $(sed -n 's/^ *X(\([A-Z0-9_]*\),.*/\1/p' lib/mft_err.h)
echo "docs: $checked names checked"
if ((fail)); then echo "0 passed, $fail failed"; exit 1; fi
echo "$checked passed, 0 failed"
