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
