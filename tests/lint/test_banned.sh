#!/usr/bin/env bash
# Banned functions (STYLE.md §15): strcpy, sprintf, gets, atoi, strtok, system
# never appear in our C code.
set -uo pipefail
cd "${MFT_SRC:?}"
hits=$(grep -nE '\b(strcpy|strcat|sprintf|vsprintf|gets|atoi|atol|strtok|system)\s*\(' \
  lib/*.c ingress/*.c tools/*.c tests/unit/*.c 2>/dev/null | grep -v '^\s*//' || true)
if [ -n "$hits" ]; then echo "$hits"; echo "0 passed, 1 failed"; exit 1; fi
echo "1 passed, 0 failed"
