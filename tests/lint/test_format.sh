#!/usr/bin/env bash
# Style is enforced by machines (STYLE.md §15): every C file we own is
# formatted with the repository's .clang-format.
set -uo pipefail
cd "${MFT_SRC:?}"
pass=0; fail=0
for f in $(git ls-files '*.c' '*.h' 2>/dev/null || ls lib/*.[ch] ingress/*.[ch] tools/*.[ch]); do
  if clang-format --dry-run -Werror "$f" >/dev/null 2>&1; then pass=$((pass + 1))
  else echo "not formatted: $f (run: clang-format -i $f)"; fail=$((fail + 1)); fi
done
echo "$pass passed, $fail failed"
((fail == 0))
