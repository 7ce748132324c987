#!/usr/bin/env bash
# Black-box: the real mft-ingress against a real redis-server and the embedded
# Kafka broker, driven only by independent tools — messages built by the
# `openssl cms` command line, posted by curl over HTTPS with client
# certificates, MDNs checked by `openssl cms -verify`, events read back from
# Kafka. Covers the algorithm matrix, mutual-TLS rejections, AS2-level
# rejections (negative MDNs), duplicates (with or without angle brackets, a
# resend after a failure), HTTP framings (Content-Length, chunked, HTTP/1.0,
# Expect: 100-continue), a quoted AS2-From, oversize and unavailable
# dependencies (HTTP 503, never a positive MDN).
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-blackbox.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tools/partner.sh"; source "$ROOT/tests/lib/tap.sh"
trap 'stack_stop; keep_on_failure' EXIT
EVQ="python3 $ROOT/tests/lib/events.py"

stack_start || exit 1
K=$STACK_DIR/keys
sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || exit 1
cat >"$STACK_DIR/test.json" <<JSON
{"stations": [{"id": "acme", "as2_id": "ACME",
   "signing": {"cert": "$K/acme-signing.crt", "key": "$K/acme-signing.key"},
   "encryption": [{"pkcs12": "$K/acme-encryption.p12", "password": "demo"}],
   "tls": {"cert": "$K/acme-tls.crt", "key": "$K/acme-tls.key"}}],
 "partners": [
  {"id": "globex", "station": "acme", "as2_id": "GLOBEX",
   "signing_cert": "$K/globex-signing.crt", "encryption_cert": "$K/globex-encryption.crt",
   "tls_client_certs": ["$K/globex-client.crt", "$K/globex-client-expired.crt"],
   "send": {"url": "https://as2.globex.example:4443/as2", "tls_server_cas": ["$K/ca.crt"]},
   "require_signature": false, "require_encryption": false, "mdn_signing": "if-requested"},
  {"id": "initech", "station": "acme", "as2_id": "INITECH",
   "signing_cert": "$K/initech-signing.crt", "encryption_cert": "$K/initech-encryption.crt",
   "tls_client_cas": ["$K/ca.crt"],
   "require_signature": true, "require_encryption": true, "mdn_signing": "always"},
  {"id": "umbrella", "station": "acme", "as2_id": "UMBRELLA CORP",
   "signing_cert": "$K/globex-signing.crt", "tls_client_cas": ["$K/ca.crt"],
   "require_signature": false, "require_encryption": false}]}
JSON
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/test.json" >/dev/null 2>&1 || { echo "apply failed"; exit 1; }
stack_ingress MFT_INGRESS_MAX_BODY=4M || exit 1
URL=https://localhost:${MFT_INGRESS_HTTPS_ADDR#*:}/as2
printf 'ISA*00*          *00*          *ZZ*GLOBEX         *ZZ*ACME           *%s~\n' "$(date +%y%m%d)" >"$STACK_DIR/order.edi"
head -c 30000 /dev/urandom >"$STACK_DIR/binary.bin"

# The partner's defaults: globex, its own client certificate, our demo CA.
export AS2_FROM=GLOBEX AS2_TO=ACME AS2_CA=$K/ca.crt
export AS2_TLS_CERT=$K/globex-client.crt AS2_TLS_KEY=$K/globex-client.key
export AS2_SIGNER=$K/globex-signing.crt AS2_SIGNER_KEY=$K/globex-signing.key
export AS2_RECIP=$K/acme-encryption.crt
N=0
inbound() { "$MFT_BIN/mftctl" events mft.inbound.v1; }
status() { "$MFT_BIN/mftctl" events mft.status.v1; }
msgid() { tr -d '<>' <"$1/message-id"; }

# --- the matrix: signed x cipher x digest x CTE, each through mTLS ---------
for sign in yes no; do
  for cipher in aes128 aes192 aes256 des3 ""; do
    for md in sha1 sha256 sha384 sha512; do
      for cte in binary base64; do
        D=$STACK_DIR/m$((++N)); name="sign=$sign cipher=${cipher:-none} md=$md cte=$cte"
        payload=$STACK_DIR/order.edi; [ $((N % 2)) = 0 ] && payload=$STACK_DIR/binary.bin
        if ! AS2_SIGN_MD=$([ $sign = yes ] && echo $md) AS2_MIC_MD=$md AS2_CIPHER=$cipher \
          AS2_CTE=$cte as2_build "$D" "$payload" 2>"$D.err" || ! AS2_MIC_MD=$md as2_post "$D" "$URL"; then
          not_ok "$name: could not build or post ($(head -c 300 "$D.err" 2>/dev/null))"; continue
        fi
        code=$(cat "$D/http_code")
        if [ "$code" != 200 ] || ! mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null; then
          not_ok "$name: HTTP $code, MDN not verified: $(head -c 300 "$D/resp.body")"; continue
        fi
        exp_mic="$(cat "$D/mic.expected"), $md"
        if [ "$MDN_SIGNED" = yes ] && [[ $MDN_DISPOSITION == *"; processed" ]] && [ "$MDN_MIC" = "$exp_mic" ]; then
          ok "$name: signed MDN verified by openssl, processed, MIC matches openssl dgst"
        else
          not_ok "$name: MDN signed=$MDN_SIGNED disposition=[$MDN_DISPOSITION] mic=[$MDN_MIC] expected [$exp_mic]"
        fi
        echo "$(msgid "$D") $(sha256sum "$payload" | cut -d' ' -f1) $sign ${cipher:-none}" >>"$STACK_DIR/matrix.sent"
      done
    done
  done
done

# --- every matrix message landed once on Kafka with the payload's bytes ----
EV=$(inbound)
bad=0
while read -r id sha sign cipher; do
  n=$($EVQ count event.as2_message_id="$id" <<<"$EV")
  got=$($EVQ get event.payloads.0.sha256 event.as2_message_id="$id" <<<"$EV")
  s=$($EVQ get event.signed event.as2_message_id="$id" <<<"$EV")
  [ "$n" = 1 ] && [ "$got" = "$sha" ] && [ "$s" = "$([ "$sign" = yes ] && echo True || echo False)" ] || {
    bad=$((bad + 1)); echo "# $id: events=$n sha=$got signed=$s"; }
done <"$STACK_DIR/matrix.sent"
check_eq "matrix: each message has exactly one MessageReceived with the original SHA-256" 0 "$bad"

# --- one event, field by field ----------------------------------------------
D=$STACK_DIR/m1; id=$(msgid "$D")
q() { $EVQ get "$1" event.as2_message_id="$id" <<<"$EV"; }
check_eq "event: ce_type header" mft.message.received.v1 "$(q headers.ce_type)"
check_eq "event: content-type header" application/protobuf "$(q headers.content-type)"
check_eq "event: ce_specversion" 1.0 "$(q headers.ce_specversion)"
check_match "event: ce_id is a UUID" '^[0-9a-f-]{36}$' "$(q headers.ce_id)"
check_match "event: ce_time RFC 3339" '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$' "$(q headers.ce_time)"
check_eq "event: key = partner id" globex "$(q key)"
check_eq "event: as2_from" GLOBEX "$(q event.as2_from)"
check_eq "event: as2_to" ACME "$(q event.as2_to)"
check_eq "event: station" acme "$(q event.station_id)"
check_eq "event: partner" globex "$(q event.partner_id)"
check_eq "event: encrypted" True "$(q event.encrypted)"
check_eq "event: encryption_alg" aes-128-cbc "$(q event.encryption_alg)"
check_eq "event: sign_alg" sha-1 "$(q event.sign_alg)"
check_eq "event: mic" "$(cat "$D/mic.expected")" "$(q event.mic)"
check_eq "event: filename" order.edi "$(q event.payloads.0.filename)"
check_eq "event: content type" application/edi-x12 "$(q event.payloads.0.content_type)"
check_eq "event: mdn_mode" sync "$(q event.mdn_mode)"
check_eq "event: mdn_signed" True "$(q event.mdn_signed)"
check_eq "event: TLS client certificate fingerprint" \
  "$(openssl x509 -in "$K/globex-client.crt" -outform DER | sha256sum | cut -d' ' -f1)" \
  "$(q event.tls_peer.sha256_fingerprint)"
check_match "event: TLS client certificate subject" 'CN=globex' "$(q event.tls_peer.subject)"
uri=$(q event.payloads.0.uri)
check_eq "event: payload file at the claim-check URI has the original bytes" \
  "$(sha256sum "$STACK_DIR/order.edi" | cut -d' ' -f1)" "$(sha256sum "${uri#file://}" | cut -d' ' -f1)"
check_eq "redis: message state recorded" received \
  "$(redis-cli -u "$MFT_REDIS_URL" hget "mft:msg:$(q event.message_id)" state)"

# --- duplicates: same Message-ID again -> warning, nothing new published -----
D=$STACK_DIR/m1
AS2_MIC_MD=sha1 curl -sS --http1.1 -o "$D/dup.body" -D "$D/dup.headers" --cert "$AS2_TLS_CERT" \
  --key "$AS2_TLS_KEY" --cacert "$AS2_CA" -H "AS2-From: GLOBEX" -H "AS2-To: ACME" \
  -H "Message-ID: <$id>" -H "Content-Type: $(cat "$D/ctype")" -H "Expect:" \
  -H "Content-Transfer-Encoding: $(cat "$D/cte")" -H "Disposition-Notification-To: mailto:x@y" \
  --data-binary "@$D/body" "$URL" >/dev/null
check_match "duplicate: processed/warning: duplicate-document" 'processed/warning: *duplicate-document' \
  "$(mime_field "$D/dup.body" disposition)"
check_eq "duplicate: still one MessageReceived" 1 "$($EVQ count event.as2_message_id="$id" <<<"$(inbound)")"

# --- issue 4: HTTP framings, header spellings, duplicates done right --------
# post_raw DIR MESSAGE-ID AS2-FROM [curl args...] — posts DIR/body like
# as2_post, but with a given Message-ID (as written, brackets or not) and
# AS2-From, the request traced into DIR/trace
post_raw() {
  local d=$1 mid=$2 from=$3; shift 3
  curl -sS -o "$d/resp.body" -D "$d/resp.headers" -w '%{http_code}' --trace-ascii "$d/trace" \
    --cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY" --cacert "$AS2_CA" \
    -H "AS2-Version: 1.2" -H "AS2-From: $from" -H "AS2-To: ACME" -H "Message-ID: $mid" \
    -H "Content-Type: $(cat "$d/ctype")" -H "Content-Transfer-Encoding: $(cat "$d/cte")" \
    -H "Disposition-Notification-To: mailto:as2@partner.example" \
    -H "Disposition-Notification-Options: signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, sha-256" \
    --data-binary "@$d/body" "$@" "$URL" >"$d/http_code"
}
# positive NAME DIR MESSAGE-ID — a signed MDN that says processed with openssl's MIC, one event
positive() {
  local name=$1 d=$2 id=$3
  mdn_check "$d" "$K/acme-signing.crt" 2>/dev/null
  check_eq "$name: HTTP 200" 200 "$(cat "$d/http_code")"
  check_match "$name: signed MDN, processed" '; processed$' "${MDN_DISPOSITION:-}"
  check_eq "$name: MIC = openssl dgst" "$(cat "$d/mic.expected"), sha-256" "${MDN_MIC:-}"
  check_eq "$name: one MessageReceived" 1 "$($EVQ count event.as2_message_id="$id" <<<"$(inbound)")"
}
http_case() {
  local name=$1 trace_re=$2; shift 2
  local d=$STACK_DIR/h$((++N)) id; id="http-$N-$RANDOM@partner.example"
  AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 as2_build "$d" "$STACK_DIR/binary.bin"
  post_raw "$d" "<$id>" GLOBEX "$@"
  check "$name: the request really was sent that way" grep -qiE "$trace_re" "$d/trace"
  positive "$name" "$d" "$id"
}
http_case "HTTP/1.1 Content-Length" '^[0-9a-f]{4}: Content-Length: [0-9]+' -H "Expect:"
http_case "HTTP/1.1 Transfer-Encoding: chunked" '^[0-9a-f]{4}: Transfer-Encoding: chunked' \
  -H "Transfer-Encoding: chunked" -H "Expect:"
http_case "HTTP/1.0" '^[0-9a-f]{4}: POST /as2 HTTP/1.0' --http1.0
http_case "Expect: 100-continue" '^[0-9a-f]{4}: HTTP/1.1 100 Continue' -H "Expect: 100-continue"
check_match "Expect: 100-continue: the server said 100 Continue before the MDN" '^HTTP/1.1 100' \
  "$(head -1 "$STACK_DIR/h$N/resp.headers")"

# an AS2 id with a space (RFC 4130 6.2: sent as a quoted string) is one partner;
# the MDN answers it quoted in its AS2-To header
D=$STACK_DIR/sp1; QID="space-$RANDOM@partner.example"
AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"
AS2_TLS_CERT=$K/initech-client.crt AS2_TLS_KEY=$K/initech-client.key \
  post_raw "$D" "<$QID>" '"UMBRELLA CORP"' -H "Expect:"
positive "AS2-From with a space" "$D" "$QID"
check_match "AS2-From with a space: the MDN answers it quoted" '^AS2-To: "UMBRELLA CORP"$' \
  "$(tr -d '\r' <"$D/resp.headers" | grep -i '^AS2-To:')"
check_eq "AS2-From with a space: the event names the partner" umbrella \
  "$($EVQ get event.partner_id event.as2_message_id="$QID" <<<"$(inbound)")"

# AS2-From quoted by the sender, an id without spaces; the MDN's AS2-To is bare
D=$STACK_DIR/q1; QID="quoted-$RANDOM@partner.example"
AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"
post_raw "$D" "<$QID>" '"GLOBEX"' -H "Expect:"
positive "AS2-From quoted" "$D" "$QID"
check_match "AS2-From quoted: the MDN answers the bare id" '^AS2-To: GLOBEX$' \
  "$(tr -d '\r' <"$D/resp.headers" | grep -i '^AS2-To:')"
# the same Message-ID without its angle brackets is the same message
D=$STACK_DIR/q1
post_raw "$D" "$QID" GLOBEX -H "Expect:"
mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
check_match "duplicate without angle brackets: duplicate-document warning" \
  'processed/warning: *duplicate-document' "${MDN_DISPOSITION:-}"
check_eq "duplicate without angle brackets: still one MessageReceived" 1 \
  "$($EVQ count event.as2_message_id="$QID" <<<"$(inbound)")"

# a resend after a failure is processed normally: first encrypted for the
# wrong key (negative MDN), then the same Message-ID done right
id="resend-$RANDOM@partner.example"
D=$STACK_DIR/rs1
AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 AS2_RECIP="$K/globex-encryption.crt" as2_build "$D" "$STACK_DIR/order.edi"
post_raw "$D" "<$id>" GLOBEX -H "Expect:"
mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
check_match "resend: the first attempt fails" 'processed/error: *decryption-failed' "${MDN_DISPOSITION:-}"
D=$STACK_DIR/rs2
AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 as2_build "$D" "$STACK_DIR/order.edi"
post_raw "$D" "<$id>" GLOBEX -H "Expect:"
positive "resend after a failure: processed normally" "$D" "$id"
post_raw "$D" "$id" GLOBEX -H "Expect:"
mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
check_match "resend, then again: duplicate-document warning" \
  'processed/warning: *duplicate-document' "${MDN_DISPOSITION:-}"
check_eq "resend, then again: MIC of the message in the duplicate's MDN" \
  "$(cat "$D/mic.expected"), sha-256" "${MDN_MIC:-}"
check_eq "resend, then again: still one MessageReceived" 1 \
  "$($EVQ count event.as2_message_id="$id" <<<"$(inbound)")"

# copies of one message at the same time (a partner resending while the first
# copy is still being received): exactly one is kept; the others are answered
# 503 (retry) or, once the first is recorded, with the duplicate warning
id="race-$RANDOM@partner.example"
D=$STACK_DIR/race; AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 as2_build "$D" "$STACK_DIR/order.edi"
pids=()
for i in 1 2 3 4 5 6; do
  mkdir -p "$D/c$i"; cp "$D/body" "$D/ctype" "$D/cte" "$D/c$i/"
  post_raw "$D/c$i" "<$id>" GLOBEX -H "Expect:" &
  pids+=($!)
done
wait "${pids[@]}" # these alone: a bare wait would wait for the stack's servers too
n200=0 n503=0 nproc=0 ndup=0
for i in 1 2 3 4 5 6; do
  code=$(cat "$D/c$i/http_code")
  case $code in 200) n200=$((n200 + 1)) ;; 503) n503=$((n503 + 1)) ;; esac
  if [ "$code" = 200 ] && mdn_check "$D/c$i" "$K/acme-signing.crt" 2>/dev/null; then
    [[ ${MDN_DISPOSITION:-} == *"; processed" ]] && nproc=$((nproc + 1))
    [[ ${MDN_DISPOSITION:-} == *duplicate-document* ]] && ndup=$((ndup + 1))
  fi
done
check_eq "6 copies at once: each answered 200 or 503" 6 "$((n200 + n503))"
check_eq "6 copies at once: one positive MDN, the other 200s say duplicate" "1 $((n200 - 1))" "$nproc $ndup"
check_eq "6 copies at once: one MessageReceived" 1 "$($EVQ count event.as2_message_id="$id" <<<"$(inbound)")"

# a Message-ID an MDN could not repeat (over 998 bytes): refused before anything is kept
D=$STACK_DIR/longid; AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"
longid="<$(printf 'x%.0s' $(seq 1100))@partner.example>"
post_raw "$D" "$longid" GLOBEX -H "Expect:"
check_eq "a 1,100-byte Message-ID: HTTP 400" 400 "$(cat "$D/http_code")"
check_match "... saying which header" 'Message-ID' "$(cat "$D/resp.body")"

# an asynchronous MDN asked for at a URL not on the partner's registered host
# (server-side request forgery): never posted there, answered synchronously
D=$STACK_DIR/ssrf; id="ssrf-$RANDOM@partner.example"
AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"
post_raw "$D" "<$id>" GLOBEX -H "Expect:" -H "Receipt-Delivery-Option: http://127.0.0.1:9/internal/admin"
positive "async MDN to a foreign host: answered synchronously instead" "$D" "$id"
check "... and the refusal is logged" grep -q '"event":"mdn.async_refused"' "$STACK_DIR/logs/ingress.log"

# EDIINT multiple-attachments: two documents in one signed multipart/mixed
# message -> one MessageReceived with two payloads, each with its bytes and name
D=$STACK_DIR/multi; mkdir -p "$D"; id="multi-$RANDOM@partner.example"
{ printf 'Content-Type: multipart/mixed; boundary="=_two/docs"\r\n\r\n--=_two/docs\r\n'
  printf 'Content-Type: application/edi-x12\r\nContent-Disposition: attachment; filename="a.edi"\r\n\r\n'
  cat "$STACK_DIR/order.edi"
  printf '\r\n--=_two/docs\r\nContent-Type: application/octet-stream\r\n'
  printf 'Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename="b.bin"\r\n\r\n'
  base64 -w 76 "$STACK_DIR/binary.bin" | sed 's/$/\r/'
  printf -- '--=_two/docs--\r\n'; } >"$D/entity"
openssl cms -sign -binary -crlfeol -md sha256 -in "$D/entity" -signer "$AS2_SIGNER" \
  -inkey "$AS2_SIGNER_KEY" -out "$D/signed.eml"
openssl dgst -sha256 -binary "$D/entity" | base64 -w0 >"$D/mic.expected"
python3 -c "
import sys; d = open(sys.argv[1] + '/signed.eml', 'rb').read()
head, _, body = d.partition(b'\r\n\r\n')
ct = [l.split(b':', 1)[1].strip() for l in head.replace(b'\r\n\t', b' ').replace(b'\r\n ', b' ').split(b'\r\n') if l.lower().startswith(b'content-type:')][0]
open(sys.argv[1] + '/ctype', 'wb').write(ct); open(sys.argv[1] + '/body', 'wb').write(body)" "$D"
echo binary >"$D/cte"
post_raw "$D" "<$id>" GLOBEX -H "Expect:"
positive "multiple attachments" "$D" "$id"
EV=$(inbound)
check_eq "multiple attachments: payload 1 bytes" "$(sha256sum "$STACK_DIR/order.edi" | cut -d' ' -f1)" \
  "$($EVQ get event.payloads.0.sha256 event.as2_message_id="$id" <<<"$EV")"
check_eq "multiple attachments: payload 2 bytes" "$(sha256sum "$STACK_DIR/binary.bin" | cut -d' ' -f1)" \
  "$($EVQ get event.payloads.1.sha256 event.as2_message_id="$id" <<<"$EV")"
check_eq "multiple attachments: payload 2 name" b.bin \
  "$($EVQ get event.payloads.1.filename event.as2_message_id="$id" <<<"$EV")"
check_match "multiple attachments: the MDN announces EDIINT-Features multiple-attachments" \
  '^EDIINT-Features:.*multiple-attachments' "$(tr -d '\r' <"$D/resp.headers" | grep -i '^EDIINT-Features:')"

# --- AS2-level rejections: negative MDNs + a ConnectionRejected event each ----
# neg NAME EXPECTED_MODIFIER EXPECTED_KIND [var=value...] — builds, posts, checks
neg() {
  local name=$1 modifier=$2 kind=$3; shift 3
  D=$STACK_DIR/n$((++N))
  env "$@" bash -c "source '$ROOT/tools/partner.sh'; as2_build '$D' '$STACK_DIR/order.edi' && as2_post '$D' '$URL'" \
    >/dev/null 2>&1
  mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
  check_match "$name: negative MDN $modifier" "processed/error: *$modifier" "$MDN_DISPOSITION"
  local ev; ev=$(status)
  check_eq "$name: $kind event on mft.status.v1" "$kind" \
    "$($EVQ get event.error.kind event.as2_message_id="$(msgid "$D")" <<<"$ev")"
  check_eq "$name: no MessageReceived" 0 "$($EVQ count event.as2_message_id="$(msgid "$D")" <<<"$(inbound)")"
}
neg "wrong decryption key" decryption-failed DECRYPT_FAILED \
  AS2_SIGN_MD=sha256 AS2_CIPHER=aes256 AS2_RECIP="$K/globex-encryption.crt"
neg "signed by a key that is not the partner's" authentication-failed SIGNATURE_INVALID \
  AS2_SIGN_MD=sha256 AS2_SIGNER="$K/initech-signing.crt" AS2_SIGNER_KEY="$K/initech-signing.key"
neg "unknown AS2-To" unknown-trading-partner UNKNOWN_STATION AS2_SIGN_MD=sha256 AS2_TO=NOBODY
neg "unsigned from a partner that requires signatures" insufficient-message-security \
  SIGNATURE_REQUIRED AS2_FROM=INITECH AS2_TLS_CERT="$K/initech-client.crt" \
  AS2_TLS_KEY="$K/initech-client.key" AS2_CIPHER=aes256
neg "unencrypted from a partner that requires encryption" insufficient-message-security \
  ENCRYPTION_REQUIRED AS2_FROM=INITECH AS2_TLS_CERT="$K/initech-client.crt" \
  AS2_TLS_KEY="$K/initech-client.key" AS2_SIGN_MD=sha256 AS2_SIGNER="$K/initech-signing.crt" \
  AS2_SIGNER_KEY="$K/initech-signing.key"

# tampered: flip one byte inside the signed payload of a signed, unencrypted message
D=$STACK_DIR/t1
AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi" && \
  python3 -c "import sys;p=sys.argv[1];d=bytearray(open(p,'rb').read());i=d.find(b'ISA*00');d[i]=ord('J');open(p,'wb').write(bytes(d))" "$D/body" && \
  as2_post "$D" "$URL"
mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
check_match "tampered payload: negative MDN" 'processed/error: *(integrity-check-failed|authentication-failed)' "$MDN_DISPOSITION"

# malformed MIME: multipart/signed whose boundary never appears
D=$STACK_DIR/bad1; mkdir -p "$D"; printf 'no parts here\r\n' >"$D/body"; echo binary >"$D/cte"
printf 'multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256; boundary="nope"' >"$D/ctype"
as2_post "$D" "$URL"; mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
check_match "malformed MIME: negative MDN" 'processed/error: *unexpected-processing-error' "$MDN_DISPOSITION"
check_eq "malformed MIME: MALFORMED_MESSAGE event" MALFORMED_MESSAGE \
  "$($EVQ get event.error.kind event.as2_message_id="$(msgid "$D")" <<<"$(status)")"

# oversized body: limit is 4M in this test
D=$STACK_DIR/big; mkdir -p "$D"; head -c 5000000 /dev/zero >"$D/body"; echo binary >"$D/cte"
printf 'application/edi-x12' >"$D/ctype"
as2_post "$D" "$URL" 2>/dev/null
check_eq "oversized body: HTTP 413" 413 "$(cat "$D/http_code")"
check_eq "oversized body: HTTP_TOO_LARGE event" HTTP_TOO_LARGE \
  "$($EVQ get event.error.kind event.as2_message_id="$(msgid "$D")" <<<"$(status)")"

# missing AS2 headers
code=$(curl -sS -o /dev/null -w '%{http_code}' --cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY" \
  --cacert "$AS2_CA" -H "Content-Type: text/plain" --data-binary x "$URL")
check_eq "no AS2 headers: HTTP 400" 400 "$code"

# --- mutual TLS: each refusal recorded with its own kind --------------------
# tls_case NAME KIND CURL-ARGS... — the handshake must fail, and a
# ConnectionRejected event with KIND must appear
tls_case() {
  local name=$1 kind=$2; shift 2
  local before; before=$($EVQ count event.error.kind="$kind" <<<"$(status)")
  if curl -sS -o /dev/null --cacert "$AS2_CA" -H "AS2-From: GLOBEX" -H "AS2-To: ACME" \
    -H "Message-ID: <tls-$RANDOM@x>" -H "Content-Type: text/plain" --data-binary x "$@" "$URL" 2>/dev/null; then
    not_ok "$name: the request went through"
  else
    ok "$name: refused"
  fi
  sleep 0.3
  local after; after=$($EVQ count event.error.kind="$kind" event.stage=tls_handshake <<<"$(status)")
  check "$name: $kind event on mft.status.v1" test "$after" -gt 0 -a "$after" -gt "$before"
}
tls_case "no client certificate" TLS_CLIENT_CERT_MISSING
tls_case "client certificate from an unknown CA" TLS_CLIENT_CERT_UNTRUSTED \
  --cert "$K/unknown-client.crt" --key "$K/unknown-client.key"
tls_case "expired client certificate" TLS_CLIENT_CERT_EXPIRED \
  --cert "$K/globex-client-expired.crt" --key "$K/globex-client-expired.key"
tls_case "TLS 1.1-only client" TLS_NO_COMMON_PROTOCOL --tlsv1.1 --tls-max 1.1 \
  --ciphers DEFAULT@SECLEVEL=0 --cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY"

# another partner's (valid, trusted) certificate: HTTP 403, not the message
D=$STACK_DIR/other; AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"
AS2_TLS_CERT=$K/initech-client.crt AS2_TLS_KEY=$K/initech-client.key as2_post "$D" "$URL"
check_eq "another partner's certificate: HTTP 403" 403 "$(cat "$D/http_code")"
check_eq "another partner's certificate: TLS_CLIENT_CERT_NOT_PARTNERS event" TLS_CLIENT_CERT_NOT_PARTNERS \
  "$($EVQ get event.error.kind event.as2_message_id="$(msgid "$D")" <<<"$(status)")"
check_eq "another partner's certificate: no MessageReceived" 0 \
  "$($EVQ count event.as2_message_id="$(msgid "$D")" <<<"$(inbound)")"

# --- ops port ----------------------------------------------------------------
check_eq "ops: /livez" ok "$(curl -sf "http://$MFT_INGRESS_OPS_ADDR/livez")"
check_eq "ops: /readyz" ready "$(curl -sf "http://$MFT_INGRESS_OPS_ADDR/readyz")"
check_match "ops: /metrics counts received messages" 'mft_ingress_messages_total [1-9]' \
  "$(curl -sf "http://$MFT_INGRESS_OPS_ADDR/metrics")"

# --- a setting out of range: refused at start, named ---------------------------
timeout 30 env MFT_INGRESS_TLS_VERIFIED_CHAINS=65 "$MFT_BIN/mft-ingress" >"$STACK_DIR/bad-cfg.log" 2>&1
check_eq "MFT_INGRESS_TLS_VERIFIED_CHAINS=65: ingress exits 1 at start" 1 "$?"
check_match "MFT_INGRESS_TLS_VERIFIED_CHAINS=65: the log names the setting and its range" \
  'startup.failed.*MFT_INGRESS_TLS_VERIFIED_CHAINS must be 0\.\.64' "$(cat "$STACK_DIR/bad-cfg.log")"

# --- dependencies down: HTTP 503 and never a positive MDN --------------------
# Redis down
redis-cli -u "$MFT_REDIS_URL" shutdown nosave >/dev/null 2>&1
D=$STACK_DIR/r1; AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"; as2_post "$D" "$URL"
check_eq "redis down: HTTP 503" 503 "$(cat "$D/http_code")"
check "redis down: no MDN in the answer" bash -c "! grep -qi disposition '$D/resp.body'"
check_match "redis down: /readyz says why" 'not ready: redis' "$(curl -s "http://$MFT_INGRESS_OPS_ADDR/readyz")"
# Kafka down (and Redis back)
rport=${MFT_REDIS_URL##*:}; rport=${rport%%/*}
redis-server --port "$rport" --bind 127.0.0.1 --dir "$STACK_DIR/redis" --save '' --appendonly no \
  >>"$STACK_DIR/logs/redis.log" 2>&1 & STACK_PIDS+=($!)
wait_for 10 redis-cli -p "$rport" ping
# Redis came back empty (no persistence): ingress keeps the configuration in
# force and says why, instead of dropping every station and partner
ILOG=$STACK_DIR/logs/ingress.log
check "redis back empty: config.missing logged" wait_for 5 grep -q '"event":"config.missing"' "$ILOG"
check_eq "redis back empty: the configuration in force still serves" ready \
  "$(curl -s "http://$MFT_INGRESS_OPS_ADDR/readyz")"
loaded_more() { [ "$(grep -c '"event":"config.loaded"' "$ILOG")" -gt "$1" ]; }
n_loaded=$(grep -c '"event":"config.loaded"' "$ILOG")
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/test.json" >/dev/null 2>&1
check "redis back, configuration applied: loaded again" wait_for 5 loaded_more "$n_loaded"
check "redis back, configuration applied: /readyz" wait_for 10 curl -sfo /dev/null "http://$MFT_INGRESS_OPS_ADDR/readyz"
kill -TERM "${STACK_PIDS[1]}"; sleep 0.5
kept_before=$(find "$STACK_DIR/payloads" -name 'payload-*' | wc -l)
D=$STACK_DIR/k1; AS2_SIGN_MD=sha256 as2_build "$D" "$STACK_DIR/order.edi"; as2_post "$D" "$URL"
check_eq "kafka down: HTTP 503" 503 "$(cat "$D/http_code")"
check "kafka down: no MDN in the answer" bash -c "! grep -qi disposition '$D/resp.body'"
check_eq "kafka down: the payload is not kept" "$kept_before" \
  "$(find "$STACK_DIR/payloads" -name 'payload-*' | wc -l)"

# --- SIGTERM: clean exit ------------------------------------------------------
kill -TERM "$INGRESS_PID"; wait "$INGRESS_PID"; rc=$?
check_eq "SIGTERM: ingress exits 0" 0 "$rc"
finish
