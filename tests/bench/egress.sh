#!/usr/bin/env bash
# ./mft bench egress — the egress benchmark of issue 3 (docs/benchmarks.md).
#
# Starts the local stack (tools/stack.sh: redis-server, the embedded Kafka
# broker, mft-ingress, mft-egress) with two stations on the same gateway, as
# `./mft demo` does: ACME sends to GLOBEX, whose AS2 URL is this ingress, 10 KB
# payloads signed (sha256) + encrypted (aes-256-cbc) with a signed sync MDN over
# HTTPS with mutual TLS. mft-egressload publishes SendRequested events on
# mft.outbound.v1 and follows each request's DeliveryUpdated on mft.status.v1:
#   0. a sample of 20: every one delivered with a signed MDN, and the GLOBEX
#      side's MessageReceived events carry the payload's SHA-256, signed and
#      encrypted;
#   1. a burst (BENCH_EGRESS_COUNT requests, at most BENCH_EGRESS_WINDOW not yet
#      queued): round trips per second (delivered / s) and CPU ms per message
#      of every process;
#   2. paced at BENCH_EGRESS_RATE msgs/s for BENCH_EGRESS_PACED_SECONDS: p50 /
#      p99 latency from publish to `delivered`, split into its stages.
# Each run checks that every request was delivered and that the receiver's
# MessageReceived records on mft.inbound.v1 (end offsets, kcat) equal the
# deliveries. References in the same run: the receiving half alone (ingress
# fed the same kind of message by mft-as2load, with keep-alive connections and
# with a new TLS connection per request), the `openssl cms` CLI signing and
# encrypting the payload, and `openssl speed rsa2048`.
# Prints a readable report, then the same figures as a Markdown section.
# Everything runs on loopback; everything started is stopped. Knobs:
# BENCH_EGRESS_COUNT (3000), BENCH_EGRESS_WINDOW (400), BENCH_EGRESS_THREADS (8),
# BENCH_EGRESS_RATE (100), BENCH_EGRESS_PACED_SECONDS (30), BENCH_SECONDS (10,
# each ingress reference), BENCH_CLI_LOOPS (200), MFT_EGRESS_WORKERS (8).
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case ${1:-} in
  -h | --help) sed -n '2,29p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
  "") ;;
  *) echo "bench egress: no arguments expected (see --help)" >&2; exit 2 ;;
esac
export STACK_DIR=${STACK_DIR:-$ROOT/.run/bench-egress}
COUNT=${BENCH_EGRESS_COUNT:-3000}
WINDOW=${BENCH_EGRESS_WINDOW:-400}
LTHREADS=${BENCH_EGRESS_THREADS:-8}
RATE=${BENCH_EGRESS_RATE:-100}
PACED_SECS=${BENCH_EGRESS_PACED_SECONDS:-30}
REF_SECS=${BENCH_SECONDS:-10}
LOOPS=${BENCH_CLI_LOOPS:-200}
WORKERS=${MFT_EGRESS_WORKERS:-8}
# shellcheck source=tests/bench/lib.sh
source "$ROOT/tests/bench/lib.sh"
for b in mft-egressload mft-as2load mft-egress; do
  [ -x "$MFT_BIN/$b" ] || { echo "$MFT_BIN/$b not found: build first (./mft build)" >&2; exit 1; }
done
bench_init
bench_tools time kcat

# --- two stations on one gateway ------------------------------------------------
bench_stack
PORT=${MFT_INGRESS_HTTPS_ADDR#*:}
URL=https://localhost:$PORT/as2
python3 - "$STACK_DIR" "$URL" "$ROOT/examples/globex.json" <<'PY' || die "cannot write the stations"
import json, sys
d, url, globex = sys.argv[1:4]
acme = json.load(open(f"{d}/acme.json"))
acme["stations"][0]["async_mdn_url"] = url
acme["partners"] = [p for p in acme["partners"] if p["id"] == "globex"]
send = acme["partners"][0]["send"]
send.update(url=url, sign="sha256", encrypt="aes-256-cbc", mdn="sync", mdn_signed=True)
g = json.load(open(globex))
g["partners"][0]["send"]["url"] = url
json.dump(acme, open(f"{d}/acme.json", "w"), indent=1)
json.dump(g, open(f"{d}/globex.json", "w"), indent=1)
PY
for f in acme globex; do
  "$MFT_BIN/mftctl" apply -f "$STACK_DIR/$f.json" >>"$STACK_DIR/logs/apply.log" 2>&1 ||
    die "mftctl apply $f.json failed: $(cat "$STACK_DIR/logs/apply.log")"
done
stack_ingress || die "mft-ingress did not start"
stack_egress MFT_EGRESS_WORKERS="$WORKERS" MFT_LOG_LEVEL="${BENCH_EGRESS_LOG_LEVEL:-${MFT_LOG_LEVEL:-info}}" || die "mft-egress did not start"
REDIS_PID=${STACK_PIDS[0]} BROKER_PID=${STACK_PIDS[1]}
head -c 10240 /dev/urandom >"$STACK_DIR/payload-10k.bin"
SHA=$(sha256sum "$STACK_DIR/payload-10k.bin" | cut -d' ' -f1)

# egressload RESULT-VAR [args] — one mft-egressload run with CPU ms per delivered
# message of each process (CPU_<name>) and the MessageReceived records it caused
# (INBOUND). The JSON line goes into RESULT-VAR.
egressload() {
  local var=$1; shift
  local -A pids=([ingress]=$INGRESS_PID [egress]=$EGRESS_PID [redis]=$REDIS_PID [broker]=$BROKER_PID) c0
  local n in0 out
  for n in "${!pids[@]}"; do c0[$n]=$(cpu_ticks "${pids[$n]}"); done
  in0=$(kafka_offsets mft.inbound.v1 -1)
  out=$(/usr/bin/time -f '%U %S' -o "$STACK_DIR/time.load" "$MFT_BIN/mft-egressload" \
    --partner globex --station acme --payload "$STACK_DIR/payload-10k.bin" "$@" \
    2>>"$STACK_DIR/logs/egressload.log") || die "mft-egressload failed: $out"
  printf -v "$var" '%s' "$out"
  echo "   $out" >&2
  local ok; ok=$(jget "$out" delivered)
  for n in "${!pids[@]}"; do
    printf -v "CPU_$n" '%s' "$(calc "round(($(cpu_ticks "${pids[$n]}") - ${c0[$n]}) * 1000 / $HZ / max($ok, 1), 2)")"
  done
  CPU_load=$(calc "round(($(awk '{print $1 + $2}' "$STACK_DIR/time.load")) * 1000 / max($ok, 1), 2)")
  INBOUND=$(($(kafka_offsets mft.inbound.v1 -1) - in0))
}
cpu_all() { echo "$CPU_egress / $CPU_ingress / $CPU_redis / $CPU_broker / $CPU_load"; }
# all_delivered JSON INBOUND — every request delivered with a signed MDN, and
# as many MessageReceived records on the receiver's side as deliveries
all_delivered() {
  local j=$1
  [ "$(jget "$j" sent)" -gt 0 ] && [ "$(jget "$j" delivered)" = "$(jget "$j" sent)" ] &&
    [ "$(jget "$j" publish_failed)" = 0 ] && [ "$(jget "$j" mdn_signed)" = "$(jget "$j" delivered)" ] &&
    [ "$2" = "$(jget "$j" delivered)" ]
}

# --- 0. correctness sample ----------------------------------------------------------
say "sample: 20 requests ACME -> GLOBEX; delivered, signed MDNs, what GLOBEX received"
egressload S --count 20 --threads 4 --timeout 60
all_delivered "$S" "$INBOUND" || die "sample: not every request delivered and received: $S (MessageReceived: $INBOUND)"
"$MFT_BIN/mftctl" events mft.inbound.v1 >"$STACK_DIR/inbound.jsonl" 2>/dev/null
SAMPLE_OK=$(python3 - "$STACK_DIR/inbound.jsonl" "$SHA" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
ev = [r["event"] for r in recs if r["headers"].get("ce_type") == "mft.message.received.v1"]
good = [e for e in ev if e.get("as2_from") == "ACME" and e.get("as2_to") == "GLOBEX"
        and e.get("signed") and e.get("encrypted") and e.get("sign_alg", "").replace("-", "") == "sha256"
        and (e.get("payloads") or [{}])[0].get("sha256") == sys.argv[2]]
print(f"{len(good)}/{len(ev)}")
PY
)
[ "$SAMPLE_OK" = 20/20 ] || die "sample: MessageReceived on GLOBEX's side, good/all = $SAMPLE_OK"
say "  20/20 delivered with a signed MDN; 20/20 MessageReceived from ACME, signed, encrypted, same SHA-256"

# --- 1. burst ---------------------------------------------------------------------
say "burst: $COUNT requests, $LTHREADS publishing threads, window $WINDOW, $WORKERS egress workers"
egressload B --count "$COUNT" --threads "$LTHREADS" --window "$WINDOW" --timeout 120
B_OK=no; all_delivered "$B" "$INBOUND" && B_OK=yes
B_IN=$INBOUND B_CPU=$(cpu_all)
B_CPU_EG=$CPU_egress B_CPU_IN=$CPU_ingress

# --- 2. paced ---------------------------------------------------------------------
PCOUNT=$((RATE * PACED_SECS))
say "paced: $PCOUNT requests at $RATE msgs/s"
egressload P --count "$PCOUNT" --rate "$RATE" --threads 4 --timeout 120
P_OK=no; all_delivered "$P" "$INBOUND" && P_OK=yes
P_IN=$INBOUND P_CPU=$(cpu_all)
# what Redis did for all of it (commands, calls, CPU), for the CPU per message above
RPORT=${MFT_REDIS_URL##*:}; RPORT=${RPORT%%/*}
redis-cli -p "$RPORT" info commandstats >"$STACK_DIR/logs/redis-commandstats.txt" 2>&1 || true

# --- references -------------------------------------------------------------------
say "reference: the receiving half alone, mft-as2load -> mft-ingress, the same kind of message"
export AS2_FROM=ACME AS2_TO=GLOBEX AS2_CA=$K/ca.crt AS2_RECIP=$K/globex-encryption.crt
export AS2_TLS_CERT=$K/acme-client.crt AS2_TLS_KEY=$K/acme-client.key
export AS2_SIGNER=$K/acme-signing.crt AS2_SIGNER_KEY=$K/acme-signing.key
export AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 AS2_CTE=binary
bench_message "$STACK_DIR/m10k"
declare -A REF REF_CPU
for reuse in 1 0; do
  c0=$(cpu_ticks "$INGRESS_PID")
  REF[$reuse]=$(as2load "$URL" 8 "$REF_SECS" --reuse "$reuse") || die "mft-as2load failed: ${REF[$reuse]:-}"
  echo "   reuse=$reuse: ${REF[$reuse]}" >&2
  REF_CPU[$reuse]=$(calc "round(($(cpu_ticks "$INGRESS_PID") - $c0) * 1000 / $HZ / max($(jget "${REF[$reuse]}" successes), 1), 2)")
done

say "reference: openssl cms -sign + -encrypt (CLI), ${LOOPS} times on the same payload"
t0=$(now)
for ((i = 0; i < LOOPS; i++)); do
  openssl cms -sign -binary -md sha256 -in "$STACK_DIR/payload-10k.bin" -signer "$K/acme-signing.crt" \
    -inkey "$K/acme-signing.key" -outform DER -out "$STACK_DIR/cli.sig" 2>/dev/null ||
    die "openssl cms -sign failed on iteration $i"
  openssl cms -encrypt -binary -aes256 -in "$STACK_DIR/cli.sig" -outform DER \
    -out "$STACK_DIR/cli.enc" "$K/globex-encryption.crt" 2>/dev/null ||
    die "openssl cms -encrypt failed on iteration $i"
done
CLI_RATE=$(calc "round($LOOPS / ($(now) - $t0), 1)")

say "reference: openssl speed rsa2048 (private-key operations per second, 1 core)"
RSA_SIGNS=$(openssl speed -seconds 3 rsa2048 2>/dev/null | awk '/^rsa 2048 bits/ {print $6; exit}')
RSA_MS=$(calc "round(1000 / ${RSA_SIGNS:-0}, 3)" 2>/dev/null || echo n/a)

# --- report -----------------------------------------------------------------------
B_RATE=$(jget "$B" rate) P_P50=$(jget "$P" p50_ms) P_P99=$(jget "$P" p99_ms)
V_RATE=$(verdict "$B_RATE >= 500")
V_P99=$(verdict "$P_P99 < 50 and '$P_OK' == 'yes'")
BODY=$(stat -c %s "$M/body")
split() { echo "$(jget "$1" to_queued_p50_ms) / $(jget "$1" queued_to_sending_p50_ms) / $(jget "$1" sending_to_delivered_p50_ms)"; }
split99() { echo "$(jget "$1" to_queued_p99_ms) / $(jget "$1" queued_to_sending_p99_ms) / $(jget "$1" sending_to_delivered_p99_ms)"; }
row() { # row NAME JSON INBOUND CPU
  echo "| $1 | $(jget "$2" delivered) / $(jget "$2" sent) | $(jget "$2" rate) | $(jget "$2" p50_ms) | $(jget "$2" p99_ms) | $(jget "$2" max_ms) | $(split "$2") | $(split99 "$2") | $3 | $(jget "$2" resent) | $4 |"
}
{
  echo
  echo "mft egress benchmark — $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores ($(cpu_model)), loopback, load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "ACME -> GLOBEX on one gateway: 10 KB, signed sha256 + encrypted aes-256-cbc, signed sync MDN, HTTPS mTLS"
  echo "(each mft-egress worker keeps its TLS connection to the partner and reuses it)"
  echo
  echo "sample: $(jget "$S" delivered)/20 delivered with a signed MDN; GLOBEX's MessageReceived good/all: $SAMPLE_OK"
  for r in B P; do
    j=${!r}
    [ "$r" = B ] && echo "burst ($COUNT, window $WINDOW):" || echo "paced ($RATE msgs/s, $PCOUNT):"
    echo "   delivered $(jget "$j" delivered)/$(jget "$j" sent), failed $(jget "$j" failed), missing $(jget "$j" missing), signed MDNs $(jget "$j" mdn_signed), resent $(jget "$j" resent)"
    echo "   $(jget "$j" rate) delivered/s over $(jget "$j" seconds) s (published at $(jget "$j" publish_rate)/s)"
    echo "   publish -> delivered: p50 $(jget "$j" p50_ms) ms, p90 $(jget "$j" p90_ms), p99 $(jget "$j" p99_ms), max $(jget "$j" max_ms)"
    echo "   split p50 (p99), ms: publish->queued $(jget "$j" to_queued_p50_ms) ($(jget "$j" to_queued_p99_ms)), queued->sending $(jget "$j" queued_to_sending_p50_ms) ($(jget "$j" queued_to_sending_p99_ms)), sending->delivered $(jget "$j" sending_to_delivered_p50_ms) ($(jget "$j" sending_to_delivered_p99_ms))"
    fe=$(jget "$j" first_error); [ -n "$fe" ] && echo "   first error: $fe"
  done
  echo "   MessageReceived on mft.inbound.v1: burst $B_IN, paced $P_IN; = deliveries: burst $B_OK, paced $P_OK"
  echo "   CPU ms per delivered message, egress / ingress / redis / broker / load generator:"
  echo "   burst $B_CPU; paced $P_CPU"
  echo "references:"
  for reuse in 1 0; do
    j=${REF[$reuse]}
    echo "   mft-ingress alone, 8 conns, $([ "$reuse" = 1 ] && echo keep-alive || echo new TLS connection per request): $(jget "$j" msgs_per_s) msgs/s, p50 $(jget "$j" p50_ms) ms, p99 $(jget "$j" p99_ms) ms, failed $(jget "$j" failures)/$(jget "$j" requests), connections $(jget "$j" connections), ingress CPU ${REF_CPU[$reuse]} ms/msg"
  done
  echo "   openssl cms -sign + -encrypt (CLI, sequential): $CLI_RATE msgs/s; body $BODY bytes"
  echo "   openssl speed rsa2048: ${RSA_SIGNS:-?} private-key ops/s = $RSA_MS ms each"
  echo
  echo "Targets: >= 500 round trips/s: $V_RATE ($B_RATE/s); p99 < 50 ms at $RATE msgs/s: $V_P99 ($P_P99 ms)"
  echo
  echo "### Results ($(date -u '+%Y-%m-%d'), $(nproc) cores, $(cpu_model))"
  echo
  echo "| ACME → GLOBEX, 10 KB, sign+encrypt, signed sync MDN, mTLS | delivered | delivered/s | p50 ms | p99 ms | max ms | p50 ms: →queued / →sending / →delivered | p99 ms: same | MessageReceived | resent | CPU ms/msg egress / ingress / redis / broker / load |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
  row "burst, $COUNT, window $WINDOW" "$B" "$B_IN" "$B_CPU"
  row "paced, $RATE msgs/s × ${PACED_SECS} s" "$P" "$P_IN" "$P_CPU"
  echo
  echo "| Reference, same run | msgs/s | p50 ms | p99 ms | CPU ms/msg |"
  echo "|---|---:|---:|---:|---:|"
  for reuse in 1 0; do
    j=${REF[$reuse]}
    echo "| receiving half alone: mft-as2load → mft-ingress, 8 conns, $([ "$reuse" = 1 ] && echo keep-alive || echo "new TLS connection per request") | $(jget "$j" msgs_per_s) | $(jget "$j" p50_ms) | $(jget "$j" p99_ms) | ${REF_CPU[$reuse]} (ingress) |"
  done
  echo "| \`openssl cms -sign\` + \`-encrypt\` CLI, sequential | $CLI_RATE | | | |"
  echo "| \`openssl speed rsa2048\`, private-key ops, 1 core | ${RSA_SIGNS:-?} | | | $RSA_MS |"
  echo
  echo "| Target | Measured | |"
  echo "|---|---|---|"
  echo "| ≥ 500 round trips/s | $B_RATE/s (burst) | $V_RATE |"
  echo "| p99 < 50 ms at $RATE msgs/s | p99 $P_P99 ms, p50 $P_P50 ms | $V_P99 |"
} | tee "$STACK_DIR/report.txt"
[ "$B_OK" = yes ] && [ "$P_OK" = yes ] || exit 1
