#!/usr/bin/env bash
# ./mft up — the local stack in the foreground: redis-server, the embedded
# Kafka broker, mft-ingress and mft-egress with the demo station and partners (keys made
# with the openssl CLI). Prints the endpoints and the environment a second
# terminal needs; Ctrl-C stops everything cleanly.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export MFT_BIN=${MFT_BIN:-$ROOT/build/bin}
export STACK_DIR=${STACK_DIR:-$ROOT/.run/up}
source "$ROOT/tools/stack.sh"
trap 'echo; echo "stopping..."; stack_stop; exit 0' INT TERM
rm -rf "$STACK_DIR"; mkdir -p "$STACK_DIR"
stack_start
"$ROOT/examples/make-demo-keys.sh" "$STACK_DIR/keys" >/dev/null
cp "$ROOT/examples/acme.json" "$STACK_DIR/acme.json"
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/acme.json"
stack_ingress
stack_egress
cat <<TXT

mft is up.
  AS2 endpoint (mTLS):  https://$MFT_INGRESS_HTTPS_ADDR/as2
  ops:                  http://$MFT_INGRESS_OPS_ADDR/readyz  /metrics  /livez
  egress ops:           http://$MFT_EGRESS_OPS_ADDR/readyz  /metrics
  redis:                $MFT_REDIS_URL
  kafka (embedded):     $MFT_KAFKA_BROKERS
  demo keys:            $STACK_DIR/keys
  logs:                 $STACK_DIR/logs/

In a second terminal:
  source $STACK_DIR/env
  $MFT_BIN/mftctl get partners
  $MFT_BIN/mftctl events mft.inbound.v1
  $MFT_BIN/mftctl send --partner globex FILE --wait 30   (globex's demo URL has no server: retried)
  kcat -C -b \$MFT_KAFKA_BROKERS -t mft.status.v1 -J -e

Ctrl-C stops the stack.
TXT
while true; do
  for pid in "${STACK_PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null || { echo "a process of the stack exited (pid $pid); see $STACK_DIR/logs" >&2; stack_stop; exit 1; }
  done
  sleep 1
done
