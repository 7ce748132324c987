# stack.sh — the local stack, as a bash library sourced by ./mft demo, ./mft up,
# the black-box tests and the benchmarks: a real redis-server on a free
# loopback port with its own data directory, the embedded Kafka broker
# (mft-devbroker), mft-ingress and mft-egress. Everything lives under $STACK_DIR; every
# process started is recorded and stopped by stack_stop.
#
#   STACK_DIR=... MFT_BIN=... ; source tools/stack.sh
#   stack_start            redis + broker; writes $STACK_DIR/env
#   stack_ingress          starts mft-ingress (after mftctl apply), waits for /readyz
#   stack_egress           starts mft-egress (after mftctl apply), waits for /readyz
#   stack_stop             SIGTERM everything, then SIGKILL what is left

: "${MFT_BIN:?MFT_BIN must point at the bin/ directory of a build}"
: "${STACK_DIR:?STACK_DIR must name a working directory}"
STACK_PIDS=()

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

wait_for() { # wait_for SECONDS CMD... — retries CMD until it succeeds
  local deadline=$((SECONDS + $1)); shift
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.1
  done
}

stack_start() {
  mkdir -p "$STACK_DIR"/{redis,payloads,logs}
  local rport; rport=$(free_port)
  redis-server --port "$rport" --bind 127.0.0.1 --dir "$STACK_DIR/redis" --save '' \
    --appendonly no --daemonize no >"$STACK_DIR/logs/redis.log" 2>&1 &
  STACK_PIDS+=($!)
  wait_for 10 redis-cli -p "$rport" ping || { echo "redis-server did not start" >&2; return 1; }

  MFT_DEVBROKER_FILE="$STACK_DIR/devbroker.addr" "$MFT_BIN/mft-devbroker" \
    >"$STACK_DIR/logs/devbroker.log" 2>&1 &
  STACK_PIDS+=($!)
  wait_for 10 test -s "$STACK_DIR/devbroker.addr" || { echo "mft-devbroker did not start" >&2; return 1; }

  local master; master=$(openssl rand -hex 32)
  cat >"$STACK_DIR/env" <<ENV
export MFT_REDIS_URL=redis://127.0.0.1:$rport/0
export MFT_KAFKA_BROKERS=$(cat "$STACK_DIR/devbroker.addr")
export MFT_MASTER_KEY=$master
export MFT_PAYLOAD_DIR=$STACK_DIR/payloads
export MFT_INGRESS_HTTPS_ADDR=127.0.0.1:$(free_port)
export MFT_INGRESS_OPS_ADDR=127.0.0.1:$(free_port)
export MFT_EGRESS_OPS_ADDR=127.0.0.1:$(free_port)
export MFT_KAFKA_TIMEOUT_MS=5000
ENV
  # shellcheck disable=SC1091
  source "$STACK_DIR/env"
}

stack_ingress() { # extra environment may be given as NAME=VALUE arguments
  env "$@" "$MFT_BIN/mft-ingress" >>"$STACK_DIR/logs/ingress.log" 2>&1 &
  STACK_PIDS+=($!)
  INGRESS_PID=$!
  if ! wait_for 20 curl -sf "http://$MFT_INGRESS_OPS_ADDR/readyz"; then
    echo "mft-ingress did not become ready; its log:" >&2
    tail -n 20 "$STACK_DIR/logs/ingress.log" >&2
    return 1
  fi
}

stack_egress() { # extra environment may be given as NAME=VALUE arguments
  env "$@" "$MFT_BIN/mft-egress" >>"$STACK_DIR/logs/egress.log" 2>&1 &
  STACK_PIDS+=($!)
  EGRESS_PID=$!
  if ! wait_for 20 curl -sf "http://$MFT_EGRESS_OPS_ADDR/readyz"; then
    echo "mft-egress did not become ready; its log:" >&2
    tail -n 20 "$STACK_DIR/logs/egress.log" >&2
    return 1
  fi
}

stack_stop() {
  local pid
  for pid in "${STACK_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${STACK_PIDS[@]}"; do
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  STACK_PIDS=()
}
