# tap.sh — assertions for the script suites: each check prints "ok - ..." or
# "not ok - ..." and the suite ends with the plain closing line
# "N passed, M failed" (exit 1 on any failure).
PASS=0; FAIL=0
ok() { PASS=$((PASS + 1)); echo "ok - $*"; }
not_ok() { FAIL=$((FAIL + 1)); echo "not ok - $*"; }
# check DESCRIPTION CMD... — passes when CMD succeeds
check() { local d=$1; shift; if "$@"; then ok "$d"; else not_ok "$d"; fi; }
# check_eq DESCRIPTION EXPECTED ACTUAL
check_eq() {
  if [ "$2" = "$3" ]; then ok "$1"; else not_ok "$1: expected [$2], got [$3]"; fi
}
# check_match DESCRIPTION REGEX ACTUAL
check_match() {
  if [[ $3 =~ $2 ]]; then ok "$1"; else not_ok "$1: [$3] does not match [$2]"; fi
}
finish() {
  echo "$PASS passed, $FAIL failed"
  ((FAIL == 0))
}
# keep_on_failure: on failure, show the service logs and keep $STACK_DIR;
# otherwise remove it.
keep_on_failure() {
  if ((FAIL)) && [ -n "${STACK_DIR:-}" ]; then
    for log in "$STACK_DIR"/logs/*.log; do
      echo "# --- last lines of $log"; tail -n 15 "$log" | sed 's/^/# /'
    done
    echo "# files kept in $STACK_DIR"
  elif [ -n "${STACK_DIR:-}" ]; then
    rm -rf "$STACK_DIR"
  fi
}
