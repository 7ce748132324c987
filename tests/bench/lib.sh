# lib.sh — what the benchmarks of `./mft bench` share, as a bash library
# sourced by tests/bench/run.sh (ingress), tests/bench/egress.sh and
# tests/bench/tls.sh: the
# working directory and its clean-up, small helpers (arithmetic, JSON fields,
# CPU time and memory of a process), the tools the benchmarks install, the
# local stack with the demo keys and station ACME, the 10 KB AS2 message built
# by the openssl CLI, mft-as2load, and the end offsets of a Kafka topic.
#
#   ROOT=... STACK_DIR=... ; source tests/bench/lib.sh
#   bench_init             empties $STACK_DIR; on exit stops the stack and
#                          removes the payloads (logs and report.txt stay)
#   bench_tools PKG...     apt-get installs the missing ones (nginx, time, kcat)
#   bench_stack            redis + broker + keys in $K + `mftctl apply` of ACME
#   bench_nginx <<CONF     nginx with the server blocks on stdin (sets NGINX_PID)
#   bench_message DIR      the 10 KB signed + encrypted message (AS2_* variables)
#   as2load URL THREADS SECONDS [ARGS]   mft-as2load posting $M/body
#   kafka_offsets TOPIC -1|-2            end / first retained offsets, summed
export MFT_BIN=${MFT_BIN:-$ROOT/build/bin}
: "${STACK_DIR:?STACK_DIR must name the working directory of the benchmark}"
export STACK_DIR
# shellcheck disable=SC1091
source "$ROOT/tools/stack.sh"
# shellcheck disable=SC1091
source "$ROOT/tools/partner.sh"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }
now() { date +%s.%N; }
calc() { python3 -c "print($1)"; }
jget() { python3 -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)
verdict() { python3 -c "print('met' if $1 else 'NOT met')"; }
cpu_model() { awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo; }

bench_init() {
  rm -rf "$STACK_DIR"; mkdir -p "$STACK_DIR"
  # the received payloads go; logs and report.txt stay
  trap 'stack_stop; rm -rf "$STACK_DIR/payloads" "$STACK_DIR"/payload-*.bin "$STACK_DIR/large"' EXIT
  trap 'exit 130' INT TERM
}

bench_tools() {
  local need=() p
  for p in "$@"; do
    case $p in
      nginx) command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx) ;;
      time) [ -x /usr/bin/time ] || need+=(time) ;;
      *) command -v "$p" >/dev/null || need+=("$p") ;;
    esac
  done
  ((${#need[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    echo "bench: missing ${need[*]} (not root: skipping what needs them)" >&2
    return 0
  fi
  say "installing ${need[*]} (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need[@]}"; } \
    >"$STACK_DIR/apt.log" 2>&1 || echo "bench: could not install ${need[*]} (see $STACK_DIR/apt.log)" >&2
}

# Redis, the embedded broker, the demo keys in $K and station ACME
# ($STACK_DIR/acme.json, applied). The caller may edit acme.json and apply again.
bench_stack() {
  say "local stack: redis-server, embedded Kafka broker, demo keys, mftctl apply"
  stack_start || die "the stack did not start"
  K=$STACK_DIR/keys
  sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || die "make-demo-keys.sh failed"
  cp "$ROOT/examples/acme.json" "$STACK_DIR/acme.json"
  "$MFT_BIN/mftctl" apply -f "$STACK_DIR/acme.json" >"$STACK_DIR/logs/apply.log" 2>&1 ||
    die "mftctl apply failed: $(cat "$STACK_DIR/logs/apply.log")"
}

# bench_nginx — starts nginx in the foreground under $STACK_DIR/nginx, its http
# block made of access_log off, a body temp path and the server blocks read
# from stdin; sets NGINX_PID. Returns 1 when nginx is not installed. The caller
# waits for its ports.
bench_nginx() {
  local nginx
  nginx=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }) || return 1
  mkdir -p "$STACK_DIR/nginx/tmp"
  {
    cat <<CONF
worker_processes auto;
daemon off;
pid $STACK_DIR/nginx/nginx.pid;
error_log $STACK_DIR/logs/nginx.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $STACK_DIR/nginx/tmp;
CONF
    cat
    echo "}"
  } >"$STACK_DIR/nginx/nginx.conf"
  "$nginx" -p "$STACK_DIR/nginx" -c "$STACK_DIR/nginx/nginx.conf" -e "$STACK_DIR/logs/nginx.log" \
    >"$STACK_DIR/logs/nginx.out" 2>&1 &
  STACK_PIDS+=($!)
  NGINX_PID=$!
}

# bench_message DIR — 10 KB of random bytes as an AS2 message built by the
# openssl CLI per the AS2_* variables (tools/partner.sh); sets M and CTYPE.
bench_message() {
  M=$1
  head -c 10240 /dev/urandom >"$STACK_DIR/payload-10k.bin"
  as2_build "$M" "$STACK_DIR/payload-10k.bin" || die "as2_build failed"
  CTYPE=$(cat "$M/ctype")
}

as2load() { # as2load URL THREADS SECONDS [extra args] — prints the JSON line
  "$MFT_BIN/mft-as2load" --url "$1" --body "$M/body" --content-type "$CTYPE" \
    --cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY" --cacert "$AS2_CA" --from "$AS2_FROM" \
    --to "$AS2_TO" --threads "$2" --seconds "$3" "${@:4}"
}

# Kafka offsets of TOPIC summed over its partitions (kcat -Q): -1 = the end
# (every record ever acknowledged), -2 = the first still retained. The
# embedded broker (librdkafka's mock cluster) keeps only ~5 MB per partition,
# so `mftctl events | wc -l` sees the retained window only.
kafka_offsets() {
  local args=() p
  for p in $(kcat -b "$MFT_KAFKA_BROKERS" -L -t "$1" -J |
    python3 -c 'import json,sys; [print(p["partition"]) for p in json.load(sys.stdin)["topics"][0]["partitions"]]'); do
    args+=(-t "$1:$p:$2")
  done
  kcat -b "$MFT_KAFKA_BROKERS" -Q "${args[@]}" | awk '{n += $NF} END {print n + 0}'
}
