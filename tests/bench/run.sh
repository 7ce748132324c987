#!/usr/bin/env bash
# ./mft bench [ingress|egress|tls] — the benchmarks (docs/benchmarks.md).
# `egress` runs tests/bench/egress.sh, `tls` tests/bench/tls.sh (see there);
# this script is the ingress one.
#
# Starts the local stack (tools/stack.sh: redis-server, the embedded Kafka
# broker, mft-ingress) with the demo station ACME and partner GLOBEX, builds the
# AS2 messages with the openssl CLI (tools/partner.sh), and measures, on
# loopback, with the load generator sharing the machine:
#   1. throughput of 10 KB signed (SHA-256) + encrypted (AES-256-CBC) messages
#      with a signed synchronous MDN over keep-alive mutual TLS (mft-as2load,
#      1/4/8/16 connections), after checking a sample of the MDNs with
#      `openssl cms -verify`, and the MessageReceived records on Kafka (end
#      offsets, kcat) against the successes; the `openssl cms` CLI and
#      nginx (`return 200` over TLS with client certificates) as references;
#   2. one 100 MB message: request wall time and peak RSS of a fresh ingress,
#      beside `openssl cms -decrypt` + `-verify` on the same file.
# Prints a readable report, then the same figures as a Markdown section.
# Installs nginx, GNU time and kcat with apt-get when missing. Stops everything it
# started. Knobs: BENCH_SECONDS (15), BENCH_THREADS ("1 4 8 16"),
# BENCH_NGINX_SECONDS (5), BENCH_CLI_LOOPS (200), BENCH_LARGE_MB (100).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
MODE=${1:-ingress}
case $MODE in
  ingress) ;;
  egress) exec "$ROOT/tests/bench/egress.sh" "${@:2}" ;;
  tls) exec "$ROOT/tests/bench/tls.sh" "${@:2}" ;;
  -h | --help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  *) echo "unknown benchmark: $MODE (known: ingress, egress, tls)" >&2; exit 2 ;;
esac
export STACK_DIR=${STACK_DIR:-$ROOT/.run/bench}
SECS=${BENCH_SECONDS:-15}
THREADS=${BENCH_THREADS:-"1 4 8 16"}
NGINX_SECS=${BENCH_NGINX_SECONDS:-5}
LOOPS=${BENCH_CLI_LOOPS:-200}
LARGE_MB=${BENCH_LARGE_MB:-100}
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
[ -x "$MFT_BIN/mft-as2load" ] || { echo "$MFT_BIN/mft-as2load not found: build first (./mft build)" >&2; exit 1; }
bench_init
bench_tools nginx time kcat

# --- the stack, the demo keys and configuration -----------------------------
bench_stack
stack_ingress || die "mft-ingress did not start"
PORT=${MFT_INGRESS_HTTPS_ADDR#*:}
URL=https://localhost:$PORT/as2

export AS2_FROM=GLOBEX AS2_TO=ACME AS2_CA=$K/ca.crt AS2_RECIP=$K/acme-encryption.crt
export AS2_TLS_CERT=$K/globex-client.crt AS2_TLS_KEY=$K/globex-client.key
export AS2_SIGNER=$K/globex-signing.crt AS2_SIGNER_KEY=$K/globex-signing.key
export AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 AS2_CTE=binary

# --- 1. throughput of 10 KB messages ----------------------------------------
say "building the 10 KB message (openssl cms -sign -md sha256, -encrypt -aes-256-cbc)"
bench_message "$STACK_DIR/m10k"
kafka_inbound() { kafka_offsets mft.inbound.v1 "$1"; }

say "correctness: 5 requests by mft-as2load, each MDN verified with openssl cms -verify"
V=$(as2load "$URL" 1 30 --count 5 --dump "$STACK_DIR/verify" --dump-count 5) || die "mft-as2load failed"
VERIFIED=0
for d in "$STACK_DIR"/verify/r*; do
  mdn_check "$d" "$K/acme-signing.crt" || die "MDN in $d did not verify"
  [ "$MDN_SIGNED" = yes ] || die "MDN in $d is not signed"
  [[ $MDN_DISPOSITION == *"; processed" ]] || die "MDN in $d: disposition [$MDN_DISPOSITION]"
  [ "$MDN_MIC" = "$(cat "$M/mic.expected"), sha-256" ] ||
    die "MDN in $d: MIC [$MDN_MIC], openssl dgst says [$(cat "$M/mic.expected")]"
  VERIFIED=$((VERIFIED + 1))
done
if [ "$VERIFIED" != 5 ] || [ "$(jget "$V" successes)" != 5 ]; then die "sample: $V"; fi
say "  5/5 MDNs signed, verified by openssl, processed, MIC = openssl dgst"

declare -A R EV CPU_IN CPU_RD
REDIS_PID=${STACK_PIDS[0]}
EV_BEFORE=$(kafka_inbound -1)
for t in $THREADS; do
  say "mft-ingress: $t connection(s), ${SECS} s"
  c0=$(cpu_ticks "$INGRESS_PID") r0=$(cpu_ticks "$REDIS_PID")
  R[$t]=$(as2load "$URL" "$t" "$SECS" --count 1000000) || die "mft-as2load failed: ${R[$t]:-}"
  echo "   ${R[$t]}" >&2
  ok=$(jget "${R[$t]}" successes)
  # CPU time per successful message, in ms: mft-ingress, redis-server
  CPU_IN[$t]=$(calc "round(($(cpu_ticks "$INGRESS_PID") - $c0) * 1000 / $HZ / max($ok, 1), 2)")
  CPU_RD[$t]=$(calc "round(($(cpu_ticks "$REDIS_PID") - $r0) * 1000 / $HZ / max($ok, 1), 2)")
  ev_after=$(kafka_inbound -1)
  EV[$t]=$((ev_after - EV_BEFORE))
  EV_BEFORE=$ev_after
done
RETAINED=$((EV_BEFORE - $(kafka_inbound -2)))
LISTED=$("$MFT_BIN/mftctl" events mft.inbound.v1 2>/dev/null | wc -l)
INGRESS_RSS_AFTER_LOAD=$(rss_kb "$INGRESS_PID")
INGRESS_HWM_AFTER_LOAD=$(hwm_kb "$INGRESS_PID")

say "reference: openssl cms -decrypt + -verify (CLI), ${LOOPS} times on the same message"
t0=$(now)
for ((i = 0; i < LOOPS; i++)); do
  openssl cms -decrypt -binary -inform DER -in "$M/body" -recip "$K/acme-encryption.crt" \
    -inkey "$K/acme-encryption.key" -out "$STACK_DIR/cli.dec" 2>/dev/null ||
    die "openssl cms -decrypt failed on iteration $i"
  openssl cms -verify -binary -crlfeol -in "$STACK_DIR/cli.dec" -CAfile "$K/globex-signing.crt" \
    -purpose any -out /dev/null 2>/dev/null || die "openssl cms -verify failed on iteration $i"
done
CLI_S=$(calc "$(now) - $t0")
CLI_RATE=$(calc "round($LOOPS / $CLI_S, 1)")

declare -A NG
NPORT=$(free_port)
if bench_nginx <<CONF; then
  server {
    listen 127.0.0.1:$NPORT ssl;
    server_name localhost;
    keepalive_requests 10000000;
    keepalive_timeout 120s;
    client_max_body_size 1m;
    client_body_buffer_size 64k;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $K/acme-tls.crt;
    ssl_certificate_key $K/acme-tls.key;
    ssl_client_certificate $K/ca.crt;
    ssl_verify_client on;
    location / { return 200 "processed\n"; }
  }
CONF
  say "reference: nginx, return 200 over TLS with ssl_verify_client on, keep-alive"
  if wait_for 10 curl -sf --cacert "$AS2_CA" --cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY" \
    "https://localhost:$NPORT/"; then
    for t in $THREADS; do
      NG[$t]=$(as2load "https://localhost:$NPORT/as2" "$t" "$NGINX_SECS" --count 10000000) ||
        die "mft-as2load against nginx failed"
      echo "   nginx $t: ${NG[$t]}" >&2
    done
  else
    echo "bench: nginx did not start (see $STACK_DIR/logs/nginx.log); no nginx reference" >&2
  fi
fi

# --- 2. one large message -----------------------------------------------------
say "building the ${LARGE_MB} MB message (random bytes; openssl cms -sign, -encrypt)"
L=$STACK_DIR/large
head -c $((LARGE_MB * 1024 * 1024)) /dev/urandom >"$STACK_DIR/payload-large.bin"
t0=$(now)
# from 1 GB on, openssl must stream to build the message at all
if ((LARGE_MB >= 1024)); then export AS2_STREAM=1; fi
as2_build "$L" "$STACK_DIR/payload-large.bin" || die "as2_build of the large message failed"
unset AS2_STREAM
rm -f "$L/enc.der" "$L/signed.eml" # only body and entity are needed from here
BUILD_S=$(calc "round($(now) - $t0, 2)")
BODY_BYTES=$(stat -c %s "$L/body")

MAX_BODY_MB=$((LARGE_MB * 2 > 1024 ? LARGE_MB * 2 : 1024)) # room for the envelope
say "fresh mft-ingress (MFT_INGRESS_MAX_BODY=${MAX_BODY_MB}M) for a clean peak-RSS baseline"
kill -TERM "$INGRESS_PID"
wait "$INGRESS_PID" 2>/dev/null
stack_ingress MFT_INGRESS_MAX_BODY=${MAX_BODY_MB}M MFT_INGRESS_MAX_INFLATED=${MAX_BODY_MB}M ||
  die "the second mft-ingress did not start"
sleep 0.5
BASE_HWM=$(hwm_kb "$INGRESS_PID")
BASE_RSS=$(rss_kb "$INGRESS_PID")
say "posting the ${LARGE_MB} MB message with curl"
t0=$(now)
as2_post "$L" "$URL" || die "curl failed posting the large message"
LARGE_S=$(calc "round($(now) - $t0, 3)")
PEAK_HWM=$(hwm_kb "$INGRESS_PID")
AFTER_RSS=$(rss_kb "$INGRESS_PID")
LARGE_CODE=$(cat "$L/http_code")
LARGE_OK=no
if [ "$LARGE_CODE" = 200 ] && mdn_check "$L" "$K/acme-signing.crt" &&
  [[ $MDN_DISPOSITION == *"; processed" ]] && [ "${MDN_MIC%%,*}" = "$(cat "$L/mic.expected")" ]; then
  LARGE_OK=yes
fi
LARGE_DISP=${MDN_DISPOSITION:-$(head -c 200 "$L/resp.body")}

say "floor: /usr/bin/time -v openssl cms -decrypt, then -verify, on the same file"
# The floor may fail at sizes the CLI cannot hold in memory: that is a
# finding, reported with its time and peak RSS until the failure.
FLOOR_FAILED=
timev() { # timev NAME CMD... — sets T_<NAME> (wall s) and RSS_<NAME> (max RSS kB)
  local name=$1; shift
  local t0; t0=$(now)
  if [ -x /usr/bin/time ]; then
    /usr/bin/time -v -o "$STACK_DIR/time.$name" "$@" 2>"$STACK_DIR/err.$name" ||
      FLOOR_FAILED+="$name: $(grep -m1 ':error:' "$STACK_DIR/err.$name" | awk -F: '{print $5 ": " $6}') "
    printf -v "RSS_$name" '%s' "$(awk -F': ' '/Maximum resident set size/ {print $2}' "$STACK_DIR/time.$name")"
  else
    "$@" 2>"$STACK_DIR/err.$name" || FLOOR_FAILED+="$name failed "
    printf -v "RSS_$name" '%s' 0
  fi
  printf -v "T_$name" '%s' "$(calc "round($(now) - $t0, 3)")"
}
timev dec openssl cms -decrypt -binary -inform DER -in "$L/body" -recip "$K/acme-encryption.crt" \
  -inkey "$K/acme-encryption.key" -out "$STACK_DIR/large.dec"
[ -n "$FLOOR_FAILED" ] && T_ver=0 RSS_ver=0 || timev ver openssl cms -verify -binary -crlfeol -in "$STACK_DIR/large.dec" -CAfile "$K/globex-signing.crt" \
  -purpose any -out "$STACK_DIR/large.out"
[ -n "$FLOOR_FAILED" ] || cmp -s "$STACK_DIR/large.out" "$L/entity" ||
  die "openssl's verified content differs from what was signed"
# shellcheck disable=SC2154
FLOOR_S=$(calc "round($T_dec + $T_ver, 3)")
# shellcheck disable=SC2154
FLOOR_RSS=$((RSS_dec > RSS_ver ? RSS_dec : RSS_ver))
rm -f "$STACK_DIR/large.dec" "$STACK_DIR/large.out" "$STACK_DIR/payload-large.bin"

# --- report ---------------------------------------------------------------------
mb() { calc "round($1 / 1024, 1)"; }
TIME_RATIO=$(calc "round($LARGE_S / $FLOOR_S, 2)")
RSS_RATIO=$(calc "round($PEAK_HWM / $FLOOR_RSS, 2)" 2>/dev/null || echo n/a)
[ -z "$FLOOR_FAILED" ] || TIME_RATIO="n/a (the openssl CLI failed)" RSS_RATIO=n/a
BEST=0 BEST_T=
for t in $THREADS; do
  r=$(jget "${R[$t]}" msgs_per_s)
  if python3 -c "import sys; sys.exit(0 if $r > $BEST else 1)"; then BEST=$r BEST_T=$t; fi
done
V_TPUT=$(verdict "$BEST >= 1000")
V_TIME=$(verdict "$LARGE_S <= 1.5 * $FLOOR_S")
[ -z "$FLOOR_FAILED" ] || V_TIME="n/a (no openssl floor)"
V_RSS=$(verdict "$PEAK_HWM <= 64 * 1024")
CPU=$(cpu_model)
KAFKA_OK=yes
for t in $THREADS; do [ "${EV[$t]}" = "$(jget "${R[$t]}" successes)" ] || KAFKA_OK=no; done
[ "$LISTED" = "$RETAINED" ] || KAFKA_OK=no

{
  echo
  echo "mft ingress benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($CPU), loopback"
  echo
  echo "1. 10 KB payload, signed sha256 + encrypted aes-256-cbc, signed sync MDN, keep-alive mTLS"
  echo "   body on the wire: $(stat -c %s "$M/body") bytes; MDN sample: $VERIFIED/5 verified by openssl cms -verify"
  printf '   %-6s %8s %8s %7s %8s %7s %7s %7s %8s %8s %8s\n' conns requests ok failed msgs/s \
    p50_ms p99_ms max_ms kafka cpu_ms cpu_ms
  printf '   %-6s %8s %8s %7s %8s %7s %7s %7s %8s %8s %8s\n' "" "" "" "" "" "" "" "" "records" \
    "ingress" "redis"
  for t in $THREADS; do
    j=${R[$t]}
    printf '   %-6s %8s %8s %7s %8s %7s %7s %7s %8s %8s %8s\n' "$t" "$(jget "$j" requests)" \
      "$(jget "$j" successes)" "$(jget "$j" failures)" "$(jget "$j" msgs_per_s)" \
      "$(jget "$j" p50_ms)" "$(jget "$j" p99_ms)" "$(jget "$j" max_ms)" "${EV[$t]}" \
      "${CPU_IN[$t]}" "${CPU_RD[$t]}"
    fe=$(jget "$j" first_error); [ -n "$fe" ] && echo "      first error: $fe"
  done
  echo "   (kafka records: MessageReceived records acknowledged on mft.inbound.v1 during the run,"
  echo "    from the end offsets; cpu_ms: CPU time of the process per successful message)"
  echo "   MessageReceived records = successes in every run: $KAFKA_OK;"
  echo "   mftctl events mft.inbound.v1 | wc -l = $LISTED = records the embedded broker still retains ($RETAINED, ~5 MB/partition)"
  echo "   mft-ingress after the load: VmRSS $(mb "$INGRESS_RSS_AFTER_LOAD") MB, VmHWM $(mb "$INGRESS_HWM_AFTER_LOAD") MB"
  echo "   reference, openssl cms -decrypt + -verify (CLI, 1 process each, sequential): $CLI_RATE msgs/s"
  if ((${#NG[@]})); then
    for t in $THREADS; do
      j=${NG[$t]}
      echo "   reference, nginx return 200 over mTLS, $t conns: $(jget "$j" msgs_per_s) req/s, p50 $(jget "$j" p50_ms) ms, p99 $(jget "$j" p99_ms) ms, failed $(jget "$j" failures)"
    done
  fi
  echo
  echo "2. ${LARGE_MB} MB payload (random), signed + encrypted, body $BODY_BYTES bytes (built in ${BUILD_S} s)"
  echo "   mft-ingress: HTTP $LARGE_CODE, positive MDN with the right MIC: $LARGE_OK ($LARGE_DISP)"
  echo "   mft-ingress: request ${LARGE_S} s; VmHWM $(mb "$BASE_HWM") MB before, $(mb "$PEAK_HWM") MB after (VmRSS $(mb "$BASE_RSS") -> $(mb "$AFTER_RSS") MB)"
  echo "   openssl floor: decrypt ${T_dec} s / $(mb "$RSS_dec") MB, verify ${T_ver} s / $(mb "$RSS_ver") MB; total ${FLOOR_S} s, max RSS $(mb "$FLOOR_RSS") MB"
  [ -z "$FLOOR_FAILED" ] || echo "   openssl floor FAILED: $FLOOR_FAILED"
  echo "   ratios (ours / openssl): time ${TIME_RATIO}x, peak RSS ${RSS_RATIO}x"
  echo
  echo "Targets: >= 1000 msgs/s of 10 KB: $V_TPUT (best $BEST msgs/s at $BEST_T conns);"
  echo "         100 MB in <= 1.5x the openssl floor: $V_TIME (${TIME_RATIO}x); peak RSS <= 64 MB: $V_RSS ($(mb "$PEAK_HWM") MB)"
  echo
  echo "### Results ($(date -u '+%Y-%m-%d'), $(nproc) cores, $CPU)"
  echo
  echo "| 10 KB, sign+encrypt, signed MDN | msgs/s | p50 ms | p99 ms | max ms | failed | Kafka records | CPU ms/msg ingress / redis |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  for t in $THREADS; do
    j=${R[$t]}
    echo "| mft-ingress, $t conn(s) | $(jget "$j" msgs_per_s) | $(jget "$j" p50_ms) | $(jget "$j" p99_ms) | $(jget "$j" max_ms) | $(jget "$j" failures) / $(jget "$j" requests) | ${EV[$t]} | ${CPU_IN[$t]} / ${CPU_RD[$t]} |"
  done
  for t in $THREADS; do
    [ -n "${NG[$t]:-}" ] || continue
    j=${NG[$t]}
    echo "| nginx \`return 200\` over mTLS, $t conn(s) | $(jget "$j" msgs_per_s) | $(jget "$j" p50_ms) | $(jget "$j" p99_ms) | $(jget "$j" max_ms) | $(jget "$j" failures) / $(jget "$j" requests) | – | – |"
  done
  echo "| \`openssl cms -decrypt\` + \`-verify\` CLI, sequential | $CLI_RATE | | | | | – | – |"
  echo
  echo "\`mftctl events mft.inbound.v1 | wc -l\` after the runs: $LISTED = the $RETAINED records the embedded broker retains; every run's end-offset delta = its successes: $KAFKA_OK."
  echo
  echo "| ${LARGE_MB} MB, sign+encrypt | wall s | peak RSS MB |"
  echo "|---|---:|---:|"
  echo "| mft-ingress (request, incl. upload, fsync, MDN) | $LARGE_S | $(mb "$PEAK_HWM") (baseline $(mb "$BASE_HWM")) |"
  echo "| \`openssl cms -decrypt\` + \`openssl cms -verify\`${FLOOR_FAILED:+ (failed: $FLOOR_FAILED)} | $FLOOR_S ($T_dec + $T_ver) | $(mb "$FLOOR_RSS") |"
  echo "| ratio ours / openssl | ${TIME_RATIO}x | ${RSS_RATIO}x |"
  echo
  echo "| Target | Measured | |"
  echo "|---|---|---|"
  echo "| >= 1,000 msgs/s (10 KB) | $BEST msgs/s ($BEST_T conns) | $V_TPUT |"
  echo "| 100 MB in <= 1.5x openssl | ${TIME_RATIO}x | $V_TIME |"
  echo "| 100 MB with peak RSS <= 64 MB | $(mb "$PEAK_HWM") MB | $V_RSS |"
} | tee "$STACK_DIR/report.txt"
[ "$LARGE_OK" = yes ] && [ "$KAFKA_OK" = yes ] || exit 1
