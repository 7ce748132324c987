#!/usr/bin/env bash
# Static analysis of our C code with cppcheck (warnings, portability,
# performance); any finding fails the suite.
set -uo pipefail
cd "${MFT_SRC:?}"
out=$(cppcheck --quiet --error-exitcode=1 --std=c11 --inline-suppr \
  --enable=warning,portability,performance --suppress=missingIncludeSystem \
  --include=/usr/include/jansson.h -I lib -D__GNUC__ lib ingress tools 2>&1)
rc=$?
[ -n "$out" ] && echo "$out"
if ((rc)); then echo "0 passed, 1 failed"; exit 1; fi
echo "1 passed, 0 failed"
