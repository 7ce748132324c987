#!/usr/bin/env bash
# Interop: real AS2 messages made by other products (../shared/interop/as2,
# see its README) are posted as they were captured, headers and all, to a real
# mft-ingress (plain-HTTP listener; TLS is covered by the black-box suite).
# Each must be accepted with the expected payload bytes (SHA-256 of the stored
# payload, from the MessageReceived event) and the MIC the README lists.
set -uo pipefail
ROOT=${MFT_SRC:?}; SHARED=${MFT_SHARED:?}/interop/as2
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-interop.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tools/partner.sh"; source "$ROOT/tests/lib/tap.sh"
trap 'stack_stop; keep_on_failure' EXIT
stack_start || exit 1
K=$STACK_DIR/keys; mkdir -p "$K"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$K/tls.key" -out "$K/tls.pem" 2>/dev/null
cat >"$STACK_DIR/interop.json" <<JSON
{"stations": [
  {"id": "pyas2lib", "as2_id": "pyas2lib",
   "signing": {"pkcs12": "$SHARED/pyas2-lib/cert_test.p12", "password": "test"},
   "encryption": {"pkcs12": "$SHARED/pyas2-lib/cert_test.p12", "password": "test"},
   "tls": {"cert": "$K/tls.pem", "key": "$K/tls.key"}},
  {"id": "libas2rx", "as2_id": "libas2rx",
   "signing": {"cert": "$SHARED/node-libas2/libas2community.cer", "key": "$SHARED/node-libas2/libas2community.key"},
   "encryption": {"cert": "$SHARED/node-libas2/libas2community.cer", "key": "$SHARED/node-libas2/libas2community.key"},
   "tls": {"cert": "$K/tls.pem", "key": "$K/tls.key"}}],
 "partners": [
  {"id": "mecas2", "station": "pyas2lib", "as2_id": "mecas2",
   "signing_cert": "$SHARED/pyas2-lib/cert_mecas2_public.pem", "tls_client_certs": [],
   "require_signature": false, "require_encryption": false, "mdn_signing": "if-requested"},
  {"id": "libas2", "station": "libas2rx", "as2_id": "libas2",
   "signing_cert": "$SHARED/node-libas2/libas2community.cer", "tls_client_certs": [],
   "require_signature": false, "require_encryption": false, "mdn_signing": "if-requested"}]}
JSON
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/interop.json" >/dev/null || { echo "mftctl apply failed"; exit 1; }
HTTP_ADDR=127.0.0.1:$(free_port)
stack_ingress MFT_INGRESS_HTTP_ADDR="$HTTP_ADDR" || exit 1

sha() { sha256sum "$1" | cut -d' ' -f1; }
events() { "$MFT_BIN/mftctl" events "$1" --timeout-ms 2000; }

# post FILE [AS2-From AS2-To] — posts a captured request; sets CODE and DIR
post() {
  local file=$1; DIR=$STACK_DIR/case.$((++N)); mkdir -p "$DIR"
  python3 "$ROOT/tests/lib/split_http.py" "$file" "$DIR" || return 1
  local args=(-sS --http1.1 -o "$DIR/resp.body" -D "$DIR/resp.headers" -w '%{http_code}' -H "Expect:")
  while IFS= read -r h; do args+=(-H "$h"); done <"$DIR/headers"
  [ -n "${2:-}" ] && args+=(-H "AS2-From: $2" -H "AS2-To: $3" -H "Disposition-Notification-To: mailto:x@y")
  if ! grep -qi '^message-id:' "$DIR/headers"; then
    echo "Message-ID: <interop-$N-$RANDOM@test>" >>"$DIR/headers"
    args+=(-H "$(tail -1 "$DIR/headers")")
  fi
  CODE=$(curl "${args[@]}" --data-binary "@$DIR/body" "http://$HTTP_ADDR/as2")
}
N=0
mdn_field() { mime_field "$DIR/resp.body" "$1"; }
# expect NAME FILE PAYLOAD MIC [AS2-From AS2-To]
expect() {
  local name=$1 file=$2 payload=$3 mic=$4; shift 4
  post "$file" "$@" || { not_ok "$name: cannot split $file"; return; }
  check_eq "$name: HTTP status" 200 "$CODE"
  check_match "$name: MDN disposition processed" 'processed$' "$(mdn_field disposition)"
  local id; id=$(awk -F': ' 'tolower($1)=="message-id"{print $2}' "$DIR/headers" | tr -d '<>\r')
  local ev; ev=$(events mft.inbound.v1)
  check_eq "$name: one MessageReceived event" 1 \
    "$(python3 "$ROOT/tests/lib/events.py" count event.as2_message_id="$id" <<<"$ev")"
  check_eq "$name: stored payload bytes" "$(sha "$payload")" \
    "$(python3 "$ROOT/tests/lib/events.py" get event.payloads.0.sha256 event.as2_message_id="$id" <<<"$ev")"
  if [ -n "$mic" ]; then
    check_eq "$name: MIC" "$mic" \
      "$(python3 "$ROOT/tests/lib/events.py" get event.mic event.as2_message_id="$id" <<<"$ev")"
    check_match "$name: MDN Received-Content-MIC" "^$mic, *sha-?256" "$(mdn_field received-content-mic)"
  fi
}

P=$SHARED/pyas2-lib
expect "mendelson signed" "$SHARED/derived/mecas2_signed.wire.as2" "$P/payload.txt" \
  G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=
expect "mendelson signed+encrypted (3DES)" "$P/mecas2_signed_encrypted.as2" "$P/payload.txt" \
  G6PhshLOERWJEIfypIh6Q3sno6cBUWJBDky1igJvDMo=
expect "mendelson compressed+signed" "$P/mecas2_compressed.as2" "$P/payload.txt" \
  14SZThwSYUH4aPdkglDwdRFnKUFmgjKsJFZWcSXBTww=
expect "mendelson encrypted, headerless content" "$P/mecas2_encrypted.as2" "$P/payload.txt" ""
check_eq "mendelson encrypted: file name from the HTTP Content-Disposition" payload.txt \
  "$(events mft.inbound.v1 | python3 "$ROOT/tests/lib/events.py" get event.payloads.0.filename \
     event.as2_message_id=mendelson_opensource_AS2-1641304435917-54@mecas2_pyas2lib)"
expect "mendelson encrypted+signed+compressed" "$P/mecas2_compressed_signed_encrypted.as2" \
  "$P/payload.txt" ""
L=$SHARED/node-libas2
expect "libas2 signed (base64 X12)" "$SHARED/derived/libas2_content.signed.wire.txt" \
  "$L/sample_edi.edi" bIwxkbRLLtHWlniKxMReISQ/GvEve0LV/hxdl9OD0E8= libas2 libas2rx
expect "libas2 encrypted (RSAES-OAEP, AES-128)" "$L/content.encrypted.txt" "$L/sample_edi.edi" "" \
  libas2 libas2rx

# Negative: the Mendelson signed message with one payload byte changed.
python3 - "$SHARED/derived/mecas2_signed.wire.as2" "$STACK_DIR/tampered.as2" <<'PY'
import sys
d = bytearray(open(sys.argv[1], 'rb').read())
i = d.find(b'ORDERS:D:96A')
d[i] = ord('X')
d = d.replace(b'55@mecas2_pyas2lib', b'99@mecas2_pyas2lib')
open(sys.argv[2], 'wb').write(bytes(d))
PY
post "$STACK_DIR/tampered.as2"
check_eq "tampered Mendelson message: HTTP status" 200 "$CODE"
check_match "tampered Mendelson message: negative MDN" \
  'processed/error: *(authentication-failed|integrity-check-failed)' "$(mdn_field disposition)"
check_eq "tampered Mendelson message: no MessageReceived" 0 \
  "$(events mft.inbound.v1 | python3 "$ROOT/tests/lib/events.py" count \
     event.as2_message_id=mendelson_opensource_AS2-1641304626700-99@mecas2_pyas2lib)"
check_eq "tampered Mendelson message: SIGNATURE_INVALID event" SIGNATURE_INVALID \
  "$(events mft.status.v1 | python3 "$ROOT/tests/lib/events.py" get event.error.kind \
     event.as2_message_id=mendelson_opensource_AS2-1641304626700-99@mecas2_pyas2lib)"
finish
