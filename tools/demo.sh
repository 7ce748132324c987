#!/usr/bin/env bash
# ./mft demo — the gateway's main job on real input, end to end. Starts the
# local stack (redis-server, the embedded Kafka broker, mft-ingress), declares
# the demo station ACME and its partners with `mftctl apply`, then acts as the
# partners using independent tools only — `openssl cms` builds each AS2
# message, curl posts it over HTTPS with the partner's client certificate,
# `openssl cms -verify` checks the signed MDN — and shows, for each message,
# the MDN disposition, the MIC (ours and openssl's) and the event that landed
# on Kafka. Then it adds a second station, GLOBEX, starts mft-egress, and has
# ACME send to GLOBEX over AS2 with mutual TLS (sync and async MDN, each
# message followed from queued to delivered) and to a partner whose server
# certificate it does not trust (failed, with the reason). Stops what it
# started; exits 0 only if every step behaved.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export MFT_BIN=${MFT_BIN:-$ROOT/build/bin}
export STACK_DIR=${STACK_DIR:-$ROOT/.run/demo}
source "$ROOT/tools/stack.sh"; source "$ROOT/tools/partner.sh"
rm -rf "$STACK_DIR"; mkdir -p "$STACK_DIR"
trap stack_stop EXIT
FAILED=0
bold() { printf '\n\033[1m%s\033[0m\n' "$*"; }
good() { printf '  \033[32m✔\033[0m %s\n' "$*"; }
bad() { printf '  \033[31m✘\033[0m %s\n' "$*"; FAILED=$((FAILED + 1)); }

bold "1. Local stack: redis-server, embedded Kafka broker"
stack_start || exit 1
good "redis $MFT_REDIS_URL, kafka $MFT_KAFKA_BROKERS"

bold "2. Demo keys (openssl) and configuration (mftctl apply -f examples/acme.json)"
sh "$ROOT/examples/make-demo-keys.sh" "$STACK_DIR/keys" >/dev/null || exit 1
cp "$ROOT/examples/acme.json" "$STACK_DIR/acme.json"
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/acme.json" 2>&1 | sed 's/^/  /'
"$MFT_BIN/mftctl" get partners | sed 's/^/  /'

bold "3. mft-ingress (HTTPS with required client certificates)"
stack_ingress || exit 1
URL=https://localhost:${MFT_INGRESS_HTTPS_ADDR#*:}/as2
good "listening on $URL; ops on http://$MFT_INGRESS_OPS_ADDR"

K=$STACK_DIR/keys
export AS2_TO=ACME AS2_CA=$K/ca.crt AS2_RECIP=$K/acme-encryption.crt
cat >"$STACK_DIR/order.edi" <<'EDI'
ISA*00*          *00*          *ZZ*GLOBEX         *ZZ*ACME           *261203*1200*U*00401*000000001*0*P*>~
GS*PO*GLOBEX*ACME*20261203*1200*1*X*004010~
ST*850*0001~
BEG*00*SA*PO-4711**20261203~
PO1*1*120*EA*9.95**VP*WIDGET-42~
CTT*1~
SE*6*0001~
GE*1*1~
IEA*1*000000001~
EDI

show_event() { # show_event MESSAGE-ID
  "$MFT_BIN/mftctl" events mft.inbound.v1 | python3 -c '
import json, sys
want = sys.argv[1]
for line in sys.stdin.readlines():
    r = json.loads(line)
    e = r.get("event") or {}
    if e.get("as2_message_id") == want:
        p = (e.get("payloads") or [{}])[0]
        print("  event on %s (partition %s, offset %s), ce_type %s, key %s" % (r["topic"], r["partition"], r["offset"], r["headers"].get("ce_type"), r["key"]))
        print("    message %s from %s to %s: %s, %d bytes, sha256 %s..." % (e["message_id"], e["as2_from"], e["as2_to"], p.get("filename"), p.get("size", 0), p.get("sha256", "")[:16]))
        print("    signed=%s (%s) encrypted=%s (%s) mic=%s %s; TLS client %s" % (e["signed"], e["sign_alg"], e["encrypted"], e["encryption_alg"], e["mic"], e["mic_alg"], e.get("tls_peer", {}).get("subject")))
        sys.exit(0)
sys.exit(1)' "$1"
}

# send TITLE EXPECT(processed|negative) VAR=VALUE... — one message as a partner
send() {
  local title=$1 expect=$2 d; shift 2
  d=$STACK_DIR/msg$((++N))
  bold "$title"
  if ! env "$@" bash -c "source '$ROOT/tools/partner.sh'; as2_build '$d' '$STACK_DIR/order.edi' && as2_post '$d' '$URL'"; then
    bad "could not send (see $d)"; return
  fi
  local code; code=$(cat "$d/http_code")
  if ! mdn_check "$d" "$K/acme-signing.crt"; then bad "HTTP $code, MDN did not verify"; return; fi
  echo "  HTTP $code; MDN signed: $MDN_SIGNED (verified by openssl cms -verify)"
  echo "  Disposition: $MDN_DISPOSITION"
  echo "  Received-Content-MIC: $MDN_MIC   (openssl dgst: $(cat "$d/mic.expected"))"
  local id; id=$(tr -d '<>' <"$d/message-id")
  if [ "$expect" = processed ]; then
    [[ $MDN_DISPOSITION == *"; processed" ]] && good "processed" || bad "expected processed"
    [ "${MDN_MIC%%,*}" = "$(cat "$d/mic.expected")" ] && good "MIC matches openssl's" || bad "MIC differs"
    show_event "$id" && good "MessageReceived acknowledged by Kafka" || bad "no MessageReceived event"
  else
    [[ $MDN_DISPOSITION == *"processed/error"* ]] && good "negative MDN, as expected" || bad "expected a negative MDN"
    local kind; kind=$("$MFT_BIN/mftctl" events mft.status.v1 | python3 "$ROOT/tests/lib/events.py" get event.error.kind event.as2_message_id="$id")
    [ -n "$kind" ] && good "failure event on mft.status.v1: $kind" || bad "no failure event"
  fi
}
N=0
GLOBEX=(AS2_FROM=GLOBEX AS2_TLS_CERT=$K/globex-client.crt AS2_TLS_KEY=$K/globex-client.key
  AS2_SIGNER=$K/globex-signing.crt AS2_SIGNER_KEY=$K/globex-signing.key)
send "4. GLOBEX → ACME: signed (SHA-256) + encrypted (AES-256-CBC), signed MDN" processed \
  "${GLOBEX[@]}" AS2_SIGN_MD=sha256 AS2_CIPHER=aes256
send "5. GLOBEX → ACME: signed (SHA-1) + encrypted (3DES), base64, signed MDN" processed \
  "${GLOBEX[@]}" AS2_SIGN_MD=sha1 AS2_CIPHER=des3 AS2_CTE=base64
send "6. INITECH → ACME: plain (no signature, no encryption); INITECH always gets signed MDNs" processed \
  AS2_FROM=INITECH AS2_TLS_CERT="$K/initech-client.crt" AS2_TLS_KEY="$K/initech-client.key"
send "7. GLOBEX → ACME unsigned, but GLOBEX's policy requires signatures" negative \
  "${GLOBEX[@]}" AS2_CIPHER=aes256

bold "8. A partner connecting with an expired TLS client certificate"
if curl -sS -o /dev/null --cacert "$K/ca.crt" --cert "$K/globex-client-expired.crt" \
  --key "$K/globex-client-expired.key" --data-binary x "$URL" 2>"$STACK_DIR/curl.err"; then
  bad "the connection was accepted"
else
  echo "  partner side: $(head -1 "$STACK_DIR/curl.err")"
  sleep 0.3
  ev=$("$MFT_BIN/mftctl" events mft.status.v1 | python3 "$ROOT/tests/lib/events.py" json event.stage=tls_handshake)
  kind=$(python3 -c 'import json,sys; e=json.load(sys.stdin)["event"]["error"]; print(e["kind"]); print("  message: "+e["message"], file=sys.stderr); print("  remedy:  "+e["remedy"], file=sys.stderr); print("  detail:  "+e["detail"][:200], file=sys.stderr)' <<<"$ev")
  [ "$kind" = TLS_CLIENT_CERT_EXPIRED ] && good "refused and recorded as $kind" || bad "expected TLS_CLIENT_CERT_EXPIRED, got [$kind]"
fi

bold "9. A second station, GLOBEX, on the same gateway (examples/globex.json), and mft-egress"
# ACME and GLOBEX are each other's partner; their AS2 URLs point at this
# gateway's ingress. UMBRELLA is a partner whose TLS server certificate ACME
# does not trust (it registers a CA that did not issue the server's).
python3 - "$STACK_DIR" "$URL" "$ROOT/examples/globex.json" <<'PY'
import json, sys
d, url, globex = sys.argv[1:4]
acme = json.load(open(f"{d}/acme.json"))
acme["stations"][0]["async_mdn_url"] = url
for p in acme["partners"]:
    if p["id"] == "globex":
        p["send"]["url"] = url
acme["partners"].append({"id": "umbrella", "station": "acme", "as2_id": "UMBRELLA",
    "signing_cert": "keys/initech-signing.crt", "encryption_cert": "keys/initech-encryption.crt",
    "tls_client_certs": ["keys/initech-client.crt"],
    "send": {"url": url, "tls_server_cas": ["keys/unknown-ca.crt"], "max_attempts": 1}})
g = json.load(open(globex))
g["partners"][0]["send"]["url"] = url
json.dump(acme, open(f"{d}/acme.json", "w"), indent=1)
json.dump(g, open(f"{d}/globex.json", "w"), indent=1)
PY
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/acme.json" 2>&1 | sed 's/^/  /'
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/globex.json" 2>&1 | sed 's/^/  /'
stack_egress || exit 1
good "mft-egress consuming mft.outbound.v1; ops on http://$MFT_EGRESS_OPS_ADDR"
sleep 1.5 # ingress and egress pick up the new configuration version

# egress_send TITLE EXPECT(delivered|KIND) MFTCTL-SEND-ARGS... — ACME sends with mftctl send
egress_send() {
  local title=$1 expect=$2 out; shift 2
  bold "$title"
  out=$STACK_DIR/send$((++N)).jsonl
  "$MFT_BIN/mftctl" send "$@" --wait 60 >"$out" 2>"$out.err"
  python3 - "$out" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if "state" not in e:
        continue
    extra = ""
    if e["state"] == "sending":
        extra = f"attempt {e['attempt']}, expecting MIC {e['mic']} ({e['mic_alg']})"
    elif e["state"] in ("delivered", "sent"):
        t = e.get("tls_server") or {}
        extra = (f"HTTP {e['http_status']}" if e["http_status"] else "by async MDN") + (f", server {t.get('subject')} ({t.get('protocol')})" if t else "")
        if e["mdn_disposition"]:
            extra += f"; MDN {e['mdn_disposition']} (signature verified: {e['mdn_signed']})"
    elif e.get("error"):
        err = e["error"]
        extra = f"{err['kind']}: {err['message']}\n      detail: {err['detail'][:300]}\n      remedy: {err['remedy']}"
    print(f"  {e['time']}  {e['state']:<9} {extra}")
PY
  local kind mid # the final state (or error kind) and Message-ID from the last update
  read -r kind mid < <(python3 -c '
import json, sys
last = {}
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("state") in ("delivered", "failed"):
        last = e
k = last.get("state", "none") if last.get("state") != "failed" else (last.get("error") or {}).get("kind", "none")
print(k, last.get("as2_message_id", "-"))' "$out")
  if [ "$expect" = delivered ]; then
    [ "$kind" = delivered ] && good "delivered" || bad "expected delivered, got $kind"
    show_event "$mid" && good "GLOBEX's ingress received it: MessageReceived on mft.inbound.v1" ||
      bad "no MessageReceived for $mid"
  else
    [ "$kind" = "$expect" ] && good "failed as expected: $kind" || bad "expected $expect, got $kind"
  fi
}
egress_send "10. ACME → GLOBEX through mft-egress: signed (SHA-256) + encrypted (AES-256-CBC), signed sync MDN" \
  delivered --partner globex "$STACK_DIR/order.edi"
egress_send "11. ACME → GLOBEX with an asynchronous MDN (GLOBEX posts it back to ACME's ingress)" \
  delivered --partner globex --mdn async --as order-async.edi "$STACK_DIR/order.edi"
egress_send "12. ACME → UMBRELLA, whose TLS server certificate ACME does not trust" \
  TLS_SERVER_UNTRUSTED --partner umbrella "$STACK_DIR/order.edi"

# pre_flight PARTNER EXPECTED-VERDICT — mftctl test-connection: the TLS handshake
# egress would make, without a message, and its verdict with the raw facts
pre_flight() {
  local out=$STACK_DIR/preflight-$1.json verdict
  "$MFT_BIN/mftctl" test-connection "$1" -o json >"$out" 2>"$out.err"
  python3 - "$out" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
t = r.get("tls") or {}
pc = t.get("peer_certificate") or {}
print(f"  {r['partner']} at {r['url']}: {r['verdict']} — {r.get('message', '')}")
if r.get("remedy"):
    print(f"    remedy: {r['remedy']}")
print(f"    facts: offered {t.get('versions_offered')}, negotiated {t.get('version') or 'none'}, "
      f"x509 {t.get('verify_code')} {t.get('verify_result', '')[:120]}")
print(f"    server certificate: {pc.get('subject')} issued by {pc.get('issuer')}, names {pc.get('names')}")
PY
  verdict=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$out" 2>/dev/null)
  [ "$verdict" = "$2" ] && good "test-connection $1: $verdict, as expected" ||
    bad "test-connection $1: expected $2, got ${verdict:-nothing} ($(head -c 200 "$out.err"))"
}
bold "12b. Pre-flight checks of the outbound TLS connection (mftctl test-connection, no message sent)"
pre_flight globex OK
pre_flight umbrella TLS_SERVER_UNTRUSTED

bold "13. What the gateway recorded: received (mftctl get messages) and sent (mftctl get sent)"
"$MFT_BIN/mftctl" get messages | sed 's/^/  /'
echo
"$MFT_BIN/mftctl" get sent | sed 's/^/  /'

if ((FAILED)); then bold "demo: $FAILED step(s) failed — logs in $STACK_DIR/logs"; exit 1; fi
bold "demo: every step behaved as expected"
