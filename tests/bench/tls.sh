#!/usr/bin/env bash
# ./mft bench tls — inbound full mutual-TLS handshakes per second (issue 5),
# for ECDSA P-256 and RSA-2048 certificates, TLS 1.3 (docs/benchmarks.md).
#
# Three servers, measured in the same run with the same certificates and the
# same client (mft-tlsload: N threads, each connect → full TLS 1.3 handshake
# with the client certificate, no session resumption → one minimal HTTP
# request → the first answer line → close):
#   1. mft-ingress of the local stack (tools/stack.sh), station ACME with the
#      server certificate as its TLS keypair, partner GLOBEX registered by the
#      CA that issued the client certificate (tls_client_cas), so every
#      handshake verifies the chain as the other two do;
#   2. nginx with ssl_verify_client on and the CA as ssl_client_certificate;
#   3. mft-tlsplain: plain libmicrohttpd + GnuTLS, thread per connection and
#      ingress's GnuTLS priorities, verifying the client certificate itself.
# The certificates come from examples/make-demo-keys.sh: the stack's keys for
# ECDSA P-256, a second run with MFT_DEMO_TLS_KEY=rsa2048 for RSA-2048 (each a
# throwaway CA, a server certificate for localhost, a clientAuth certificate).
# Before measuring, each server must accept the client certificate and refuse
# a connection without one. Then BENCH_TLS_ROUNDS rounds of BENCH_TLS_SECONDS
# per server and thread count, the servers interleaved (A B C A B C ...); the
# report gives each server's median and the ratios mft/nginx, mft/plain.
# Prints a readable report, then the same figures as a Markdown section.
# Installs nginx when missing. Knobs: BENCH_TLS_SECONDS (10),
# BENCH_TLS_THREADS ("1 4"), BENCH_TLS_ROUNDS (3), BENCH_TLS_KEYS ("ecdsa rsa");
# MFT_INGRESS_TLS_VERIFIED_CHAINS=0 measures ingress path-checking every chain.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case ${1:-} in
  -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "bench tls: no arguments expected (see --help)" >&2; exit 2 ;;
esac
export STACK_DIR=${STACK_DIR:-$ROOT/.run/bench-tls}
SECS=${BENCH_TLS_SECONDS:-10}
THREADS=${BENCH_TLS_THREADS:-"1 4"}
ROUNDS=${BENCH_TLS_ROUNDS:-3}
KEYS=${BENCH_TLS_KEYS:-"ecdsa rsa"}
SERVERS="ingress nginx plain"
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
for b in mft-tlsload mft-tlsplain mft-ingress; do
  [ -x "$MFT_BIN/$b" ] || { echo "$MFT_BIN/$b not found: build first (./mft build)" >&2; exit 1; }
done
bench_init
bench_tools nginx

# --- certificates, the stack, nginx and the plain server -----------------------
bench_stack
declare -A KD=([ecdsa]=$K [rsa]=$STACK_DIR/keys-rsa) KNAME=([ecdsa]="ECDSA P-256" [rsa]="RSA-2048")
say "RSA-2048 CA and TLS certificates (make-demo-keys.sh, MFT_DEMO_TLS_KEY=rsa2048)"
MFT_DEMO_TLS_KEY=rsa2048 sh "$ROOT/examples/make-demo-keys.sh" "${KD[rsa]}" >/dev/null ||
  die "make-demo-keys.sh (rsa2048) failed"
stack_ingress || die "mft-ingress did not start"

declare -A PORT PID
for k in $KEYS; do
  PORT[nginx,$k]=$(free_port)
  PORT[plain,$k]=$(free_port)
  PORT[ingress,$k]=${MFT_INGRESS_HTTPS_ADDR#*:}
  "$MFT_BIN/mft-tlsplain" "${PORT[plain,$k]}" "${KD[$k]}/acme-tls.crt" "${KD[$k]}/acme-tls.key" \
    "${KD[$k]}/ca.crt" >>"$STACK_DIR/logs/tlsplain.log" 2>&1 &
  STACK_PIDS+=($!)
  PID[plain,$k]=$!
done
nginx_servers() {
  local k
  for k in $KEYS; do
    cat <<CONF
  server {
    listen 127.0.0.1:${PORT[nginx,$k]} ssl;
    server_name localhost;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate ${KD[$k]}/acme-tls.crt;
    ssl_certificate_key ${KD[$k]}/acme-tls.key;
    ssl_client_certificate ${KD[$k]}/ca.crt;
    ssl_verify_client on;
    ssl_session_cache off;
    ssl_session_tickets off;
    location / { return 200 "ok\n"; }
  }
CONF
  done
}
bench_nginx < <(nginx_servers) || die "nginx is not installed (bench_tools could not install it)"
# nginx's CPU time is its workers'
nginx_workers() { pgrep -P "$NGINX_PID" | tr '\n' ' '; }
cpu_of() { local p n=0; for p in "$@"; do n=$((n + $(cpu_ticks "$p"))); done; echo "$n"; }

# tlsload SERVER KEY [args] — one mft-tlsload run with the key type's CA and
# client certificate (unless --no-cert); prints the JSON line
tlsload() {
  local s=$1 k=$2 cert=(--cert "${KD[$2]}/globex-client.crt" --key "${KD[$2]}/globex-client.key")
  shift 2
  [ "${1:-}" = --no-cert ] && { cert=(); shift; }
  "$MFT_BIN/mft-tlsload" --port "${PORT[$s,$k]}" --cacert "${KD[$k]}/ca.crt" "${cert[@]}" "$@"
}
accepted() { [ "$(jget "$(tlsload "$1" "$2" --count 1 --seconds 5)" successes)" = 1 ]; }

# the station's TLS keypair and the partner's CA for key type $1
use_keys() {
  local d=${KD[$1]#"$STACK_DIR"/}
  python3 - "$STACK_DIR" "$d" <<'PY' || die "cannot write tls.json"
import json, sys
stack, d = sys.argv[1:3]
acme = json.load(open(f"{stack}/acme.json"))
acme["stations"][0]["tls"] = {"cert": f"{d}/acme-tls.crt", "key": f"{d}/acme-tls.key"}
acme["partners"] = [p for p in acme["partners"] if p["id"] == "globex"]
g = acme["partners"][0]
g.pop("tls_client_certs", None)
g["tls_client_cas"] = [f"{d}/ca.crt"]
json.dump(acme, open(f"{stack}/tls.json", "w"), indent=1)
PY
  "$MFT_BIN/mftctl" apply -f "$STACK_DIR/tls.json" >>"$STACK_DIR/logs/apply.log" 2>&1 ||
    die "mftctl apply tls.json failed: $(tail -5 "$STACK_DIR/logs/apply.log")"
  # ingress reloads its trust within MFT_INGRESS_RELOAD_MS: wait until it serves
  # the new server certificate and accepts the new client certificate
  wait_for 15 accepted ingress "$1" || die "mft-ingress did not take the ${KNAME[$1]} keypair"
}

# --- correctness: each server accepts the client certificate, refuses none ------
declare -A NEG REFUSED R CPU
for k in $KEYS; do
  say "${KNAME[$k]}: station keypair and partner CA applied; checking the three servers"
  use_keys "$k"
  for s in $SERVERS; do
    wait_for 10 accepted "$s" "$k" || die "$s (${KNAME[$k]}) does not accept the client certificate"
    j=$(tlsload "$s" "$k" --count 5 --seconds 10)
    [ "$(jget "$j" successes)" = 5 ] || die "$s (${KNAME[$k]}) with the client certificate: $j"
    NEG[$s,$k]=$(jget "$j" negotiated)
    j=$(tlsload "$s" "$k" --no-cert --count 5 --seconds 10)
    [ "$(jget "$j" successes)" = 0 ] && [ "$(jget "$j" failures)" = 5 ] ||
      die "$s (${KNAME[$k]}) answered a client without a certificate: $j"
    REFUSED[$s,$k]=$(jget "$j" first_error)
    echo "   $s: accepted (${NEG[$s,$k]}); without a certificate: ${REFUSED[$s,$k]}" >&2
  done

  # --- measurement, interleaved ---------------------------------------------------
  for ((r = 1; r <= ROUNDS; r++)); do
    for t in $THREADS; do
      for s in $SERVERS; do
        case $s in
          ingress) pids=$INGRESS_PID ;;
          nginx) pids=$(nginx_workers) ;;
          plain) pids=${PID[plain,$k]} ;;
        esac
        # shellcheck disable=SC2086
        c0=$(cpu_of $pids)
        j=$(tlsload "$s" "$k" --threads "$t" --seconds "$SECS") || die "mft-tlsload failed: $j"
        R[$s,$k,$t,$r]=$j
        # shellcheck disable=SC2086
        CPU[$s,$k,$t,$r]=$(calc "round(($(cpu_of $pids) - $c0) * 1000 / $HZ / max($(jget "$j" successes), 1), 3)")
        say "${KNAME[$k]}, round $r/$ROUNDS, $t thread(s), $s: $(jget "$j" handshakes_per_s)/s, failed $(jget "$j" failures), server CPU ${CPU[$s,$k,$t,$r]} ms each"
      done
    done
  done
done

# --- report -------------------------------------------------------------------------
# med SERVER KEY THREADS — the round with the median handshakes/s: sets M_RATE,
# M_P50, M_P99, M_CPU, M_FAIL (failures over all rounds) and M_ALL (every round's rate)
med() {
  local r rates=() fail=0
  for ((r = 1; r <= ROUNDS; r++)); do
    rates+=("$(jget "${R[$1,$2,$3,$r]}" handshakes_per_s) $r")
    fail=$((fail + $(jget "${R[$1,$2,$3,$r]}" failures)))
  done
  local pick; pick=$(printf '%s\n' "${rates[@]}" | sort -n | sed -n "$(((ROUNDS + 1) / 2))p" | cut -d' ' -f2)
  local j=${R[$1,$2,$3,$pick]}
  M_RATE=$(jget "$j" handshakes_per_s) M_P50=$(jget "$j" p50_ms) M_P99=$(jget "$j" p99_ms)
  M_CPU=${CPU[$1,$2,$3,$pick]} M_FAIL=$fail
  M_ALL=$(printf '%s\n' "${rates[@]}" | cut -d' ' -f1 | paste -sd/)
}
ratio() { calc "round($1 / $2, 2) if $2 else 0"; }
TMAX=$(echo "$THREADS" | tr ' ' '\n' | sort -n | tail -1)
declare -A RATE VERDICT
for k in $KEYS; do
  for t in $THREADS; do
    for s in $SERVERS; do med "$s" "$k" "$t"; RATE[$s,$k,$t]=$M_RATE; done
  done
done
for k in $KEYS; do
  a=${RATE[ingress,$k,$TMAX]}
  case $k in
    ecdsa) VERDICT[$k]=$(verdict "$a >= 1.1 * ${RATE[nginx,$k,$TMAX]}") ;;
    rsa) VERDICT[$k]=$(verdict "$a >= ${RATE[plain,$k,$TMAX]}") ;;
  esac
done
# what ingress's verified-chain memory did (MFT_INGRESS_TLS_VERIFIED_CHAINS):
# its hits against every handshake it accepted in the measured rounds
HITS=$(curl -s "http://$MFT_INGRESS_OPS_ADDR/metrics" |
  awk '$1 == "mft_ingress_tls_verify_cache_hits_total" { printf "%d", $2 }')
ACCEPTED=0
for k in $KEYS; do for t in $THREADS; do for ((r = 1; r <= ROUNDS; r++)); do
  ACCEPTED=$((ACCEPTED + $(jget "${R[ingress,$k,$t,$r]}" successes)))
done; done; done
MEMORY="mft-ingress remembers ${MFT_INGRESS_TLS_VERIFIED_CHAINS:-64} verified client chains (MFT_INGRESS_TLS_VERIFIED_CHAINS; 0 = path-check every handshake): ${HITS:-?} handshakes of the whole run took the remembered verdict (the client presents the same certificate every time), ${ACCEPTED} were accepted in the measured rounds; nginx and the plain server path-check every handshake"
declare -A NAME=([ingress]=mft-ingress [nginx]="nginx, ssl_verify_client on" [plain]="plain libmicrohttpd + GnuTLS")
{
  echo
  echo "mft TLS handshake benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(cpu_model)), loopback, client on the same machine"
  echo "full TLS 1.3 handshakes with a client certificate, no resumption; ${ROUNDS} rounds of ${SECS} s, servers interleaved; median round"
  echo "$MEMORY"
  for k in $KEYS; do
    echo
    echo "${KNAME[$k]}:"
    for s in $SERVERS; do echo "   $s: ${NEG[$s,$k]}; without a client certificate: ${REFUSED[$s,$k]}"; done
    printf '   %-30s %7s %10s %8s %8s %10s %7s  %s\n' server threads handshakes p50_ms p99_ms cpu_ms/hs failed "every round"
    for t in $THREADS; do
      for s in $SERVERS; do
        med "$s" "$k" "$t"
        printf '   %-30s %7s %10s %8s %8s %10s %7s  %s\n' "${NAME[$s]}" "$t" "$M_RATE" "$M_P50" "$M_P99" "$M_CPU" "$M_FAIL" "$M_ALL"
      done
      echo "   ratios at $t thread(s): mft/nginx $(ratio "${RATE[ingress,$k,$t]}" "${RATE[nginx,$k,$t]}"), mft/plain $(ratio "${RATE[ingress,$k,$t]}" "${RATE[plain,$k,$t]}"), plain/nginx $(ratio "${RATE[plain,$k,$t]}" "${RATE[nginx,$k,$t]}")"
    done
  done
  echo
  for k in $KEYS; do
    case $k in
      ecdsa) echo "Target ECDSA P-256, mft >= 1.1x nginx at $TMAX threads: ${VERDICT[$k]} ($(ratio "${RATE[ingress,$k,$TMAX]}" "${RATE[nginx,$k,$TMAX]}")x)" ;;
      rsa) echo "Target RSA-2048, mft >= plain libmicrohttpd at $TMAX threads: ${VERDICT[$k]} ($(ratio "${RATE[ingress,$k,$TMAX]}" "${RATE[plain,$k,$TMAX]}")x)" ;;
    esac
  done
  echo
  echo "### Results ($(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, $(cpu_model))"
  echo
  echo "$MEMORY."
  echo
  echo "| Key, threads | server | handshakes/s (median) | p50 ms | p99 ms | server CPU ms/handshake | failed | every round |"
  echo "|---|---|---:|---:|---:|---:|---:|---|"
  for k in $KEYS; do
    for t in $THREADS; do
      for s in $SERVERS; do
        med "$s" "$k" "$t"
        echo "| ${KNAME[$k]}, $t | ${NAME[$s]} | $M_RATE | $M_P50 | $M_P99 | $M_CPU | $M_FAIL | $M_ALL |"
      done
    done
  done
  echo
  echo "| Key, threads | mft / nginx | mft / plain libmicrohttpd | plain / nginx |"
  echo "|---|---:|---:|---:|"
  for k in $KEYS; do
    for t in $THREADS; do
      echo "| ${KNAME[$k]}, $t | $(ratio "${RATE[ingress,$k,$t]}" "${RATE[nginx,$k,$t]}") | $(ratio "${RATE[ingress,$k,$t]}" "${RATE[plain,$k,$t]}") | $(ratio "${RATE[plain,$k,$t]}" "${RATE[nginx,$k,$t]}") |"
    done
  done
  echo
  echo "| Target ($TMAX threads) | Measured | |"
  echo "|---|---|---|"
  for k in $KEYS; do
    case $k in
      ecdsa) echo "| ECDSA P-256: mft-ingress >= 1.1x nginx | $(ratio "${RATE[ingress,$k,$TMAX]}" "${RATE[nginx,$k,$TMAX]}")x | ${VERDICT[$k]} |" ;;
      rsa) echo "| RSA-2048: mft-ingress >= plain libmicrohttpd | $(ratio "${RATE[ingress,$k,$TMAX]}" "${RATE[plain,$k,$TMAX]}")x | ${VERDICT[$k]} |" ;;
    esac
  done
} | tee "$STACK_DIR/report.txt"
