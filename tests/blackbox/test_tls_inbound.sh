#!/usr/bin/env bash
# Black-box: every way an inbound TLS handshake fails, against the real
# mft-ingress (redis-server and the embedded Kafka broker behind it), driven by
# independent clients only — `openssl s_client` and curl. The certificates are
# made here with the openssl CLI: a throwaway client root and intermediate,
# client certificates (good RSA, good ECDSA, expired, not yet valid,
# serverAuth only, issued by the intermediate, self-signed, from an unknown
# CA, another partner's). Each case runs with TLS 1.2 and TLS 1.3 and asserts
# the ConnectionRejected event (error kind, message facts, the raw facts in
# .tls: alerts with their direction, versions, the client certificate's
# fingerprint) and the alert the client itself printed. Then: plain HTTP on
# the TLS port, a TLS 1.1-only client, suites we do not allow, the partners'
# TLS policies (minimum version, cipher list, client certificate optional).
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-tlsin.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tools/partner.sh"; source "$ROOT/tests/lib/tap.sh"
trap 'stack_stop; keep_on_failure' EXIT
EVQ="python3 $ROOT/tests/lib/events.py"

stack_start || exit 1
K=$STACK_DIR/keys C=$STACK_DIR/certs
sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || exit 1
mkdir -p "$C/ca" && : >"$C/ca/index.txt" && openssl rand -hex 8 >"$C/ca/serial"

# --- certificates ------------------------------------------------------------
cat >"$C/x509.cnf" <<EOF
[ req ]
distinguished_name = dn
[ dn ]
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ server_only_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
[ ca ]
default_ca = t
[ t ]
dir = $C/ca
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
default_md = sha256
policy = any
unique_subject = no
[ any ]
commonName = supplied
organizationName = optional
EOF
key() { # key NAME rsa|ec
  if [ "$2" = rsa ]; then openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$C/$1.key"
  else openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$C/$1.key"; fi
}
self_signed() { # self_signed NAME SUBJECT EXT ALG
  key "$1" "$4"
  openssl req -new -x509 -config "$C/x509.cnf" -extensions "$3" -key "$C/$1.key" -subj "$2" \
    -days 30 -set_serial "0x$(openssl rand -hex 8)" -out "$C/$1.crt"
}
issued() { # issued NAME SUBJECT EXT CA ALG [STARTDATE ENDDATE]
  key "$1" "$5"
  openssl req -new -config "$C/x509.cnf" -key "$C/$1.key" -subj "$2" -out "$C/$1.csr"
  local dates=(-days 30); [ $# -ge 7 ] && dates=(-startdate "$6" -enddate "$7")
  openssl ca -batch -notext -config "$C/x509.cnf" -cert "$C/$4.crt" -keyfile "$C/$4.key" \
    -extensions "$3" "${dates[@]}" -in "$C/$1.csr" -out "$C/$1.crt" 2>/dev/null
}
self_signed root "/O=Globex Corporation/CN=Globex TLS Root" ca_ext ec
issued inter "/O=Globex Corporation/CN=Globex TLS Issuing" ca_ext root ec
self_signed other-root "/O=Nobody Known/CN=Other Root" ca_ext ec
issued good-rsa "/O=Globex Corporation/CN=globex rsa" client_ext root rsa
issued good-ec "/O=Globex Corporation/CN=globex ec" client_ext root ec
issued expired "/O=Globex Corporation/CN=globex expired" client_ext root ec 20200101000000Z 20200102000000Z
issued notyet "/O=Globex Corporation/CN=globex not yet" client_ext root ec 20990101000000Z 20991231000000Z
issued serveronly "/O=Globex Corporation/CN=globex server only" server_only_ext root ec
issued via-inter "/O=Globex Corporation/CN=globex via intermediate" client_ext inter rsa
cat "$C/via-inter.crt" "$C/inter.crt" >"$C/via-inter-chain.crt"
issued unknown "/O=Nobody Known/CN=unknown client" client_ext other-root rsa
cat "$C/unknown.crt" "$C/other-root.crt" >"$C/unknown-chain.crt"
self_signed self "/O=Globex Corporation/CN=globex self-signed" client_ext ec
self_signed initech "/O=Initech/CN=initech" client_ext ec
self_signed umbrella "/O=Umbrella/CN=umbrella" client_ext rsa
for c in good-rsa good-ec expired notyet serveronly via-inter unknown self initech umbrella; do
  test -s "$C/$c.crt" || { echo "certificate $c not made"; exit 1; }
done

partners() { # partners [EXTRA-PARTNER-JSON]
  cat <<JSON
{"stations": [{"id": "acme", "as2_id": "ACME",
   "signing": {"cert": "$K/acme-signing.crt", "key": "$K/acme-signing.key"},
   "encryption": [{"pkcs12": "$K/acme-encryption.p12", "password": "demo"}],
   "tls": {"cert": "$K/acme-tls.crt", "key": "$K/acme-tls.key"}}],
 "partners": [
  {"id": "globex", "station": "acme", "as2_id": "GLOBEX", "tls_client_cas": ["$C/root.crt"],
   "require_signature": false, "require_encryption": false},
  {"id": "initech", "station": "acme", "as2_id": "INITECH", "tls_client_certs": ["$C/initech.crt"],
   "tls_policy": {"min_version": "TLSv1.3"},
   "require_signature": false, "require_encryption": false},
  {"id": "umbrella", "station": "acme", "as2_id": "UMBRELLA", "tls_client_certs": ["$C/umbrella.crt"],
   "tls_policy": {"ciphers": ["TLS_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"]},
   "require_signature": false, "require_encryption": false}$1]}
JSON
}
partners "" >"$STACK_DIR/test.json"
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/test.json" >/dev/null 2>&1 || { echo "apply failed"; exit 1; }
stack_ingress || exit 1
PORT=${MFT_INGRESS_HTTPS_ADDR#*:}
URL=https://localhost:$PORT/as2
status() { "$MFT_BIN/mftctl" events mft.status.v1; }
fp() { openssl x509 -in "$1" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d : | tr 'A-F' 'a-f'; }

# Events come back in partition order, not in time order: each case's event
# is found by what only it carries — the SNI of its ClientHello (s_client
# cases, a name per case) or its source port (curl cases).
EVENTS=$STACK_DIR/events.json EVF=
wait_event() { # wait_event FILTER — until a ConnectionRejected matching FILTER is there
  EVF=$1
  for _ in $(seq 40); do
    status >"$EVENTS"
    (($($EVQ count headers.ce_type=mft.connection.rejected.v1 "$EVF" <"$EVENTS") > 0)) && return 0
    sleep 0.2
  done
  return 1
}
ev() { $EVQ get "$1" headers.ce_type=mft.connection.rejected.v1 "$EVF" <"$EVENTS"; }
n_events() { status | $EVQ count headers.ce_type=mft.connection.rejected.v1; }
CASE=0
kind_stage() { # kind_stage EVENT-JSON — "KIND STAGE" of a ConnectionRejected
  python3 -c 'import json,sys; e=json.load(sys.stdin)["event"]; print(e["error"]["kind"], e["stage"])' <<<"$1"
}
next_sni() { CASE=$((CASE + 1)); SNI=case$CASE.localhost; }

# OpenSSL's names of the alerts we send, and their numbers.
declare -A ALERT_NO=([unknown_ca]=48 [certificate_expired]=45 [unsupported_certificate]=43
  [certificate_required]=116 [protocol_version]=70 [handshake_failure]=40)

# tls_case NAME VERSION KIND ALERT MESSAGE-REGEX CERT-FILE S_CLIENT-ARGS...
# VERSION 1.2|1.3; ALERT is the alert we must send ("" = none); CERT-FILE the
# certificate whose fingerprint .tls.peer_certificate must carry ("" = none).
tls_case() {
  local name="$1 (TLS $2)" v=$2 kind=$3 alert=$4 msg=$5 cert=$6; shift 6
  next_sni
  local out; out=$(sleep 1 | timeout 15 openssl s_client -connect "127.0.0.1:$PORT" \
    -servername "$SNI" -CAfile "$K/ca.crt" "-tls1_${v#1.}" "$@" 2>&1)
  echo "$out" >"$STACK_DIR/sclient.$CASE.txt"
  if ! wait_event "event.sni=$SNI"; then not_ok "$name: no ConnectionRejected event"; return; fi
  check_eq "$name: one event" 1 "$($EVQ count "event.sni=$SNI" <"$EVENTS")"
  check_eq "$name: kind" "$kind" "$(ev event.error.kind)"
  check_eq "$name: stage" tls_handshake "$(ev event.stage)"
  check_match "$name: message" "$msg" "$(ev event.error.message)"
  check_eq "$name: tls.direction" inbound "$(ev event.tls.direction)"
  check_match "$name: tls.versions_offered" "TLSv$v" "$(ev event.tls.versions_offered)"
  check_match "$name: detail carries the facts" "tls inbound at .*peer 127\.0\.0\.1:" "$(ev event.error.detail)"
  if [ -n "$cert" ]; then
    check_eq "$name: tls.peer_certificate fingerprint" "$(fp "$cert")" \
      "$(ev event.tls.peer_certificate.sha256_fingerprint)"
  fi
  if [ -n "$alert" ]; then
    check_eq "$name: alert sent (event)" "sent fatal $alert" \
      "$(ev event.tls.alerts.0.direction) $(ev event.tls.alerts.0.level) $(ev event.tls.alerts.0.name)"
    check_eq "$name: alerts_sent (flat field)" "$alert" "$(ev event.alerts_sent.0)"
    check_match "$name: s_client received alert $alert" "alert number ${ALERT_NO[$alert]}\b" "$out"
    echo "# $name: s_client: $(grep -o 'alert [a-z ]*' <<<"$out" | head -1)"
  fi
}

for v in 1.2 1.3; do
  tls_case "no client certificate" $v TLS_CLIENT_CERT_MISSING \
    "$([ $v = 1.3 ] && echo certificate_required || echo handshake_failure)" "no TLS certificate" ""
  tls_case "expired client certificate" $v TLS_CLIENT_CERT_EXPIRED certificate_expired "expired" \
    "$C/expired.crt" -cert "$C/expired.crt" -key "$C/expired.key"
  check_match "expired (TLS $v): detail names the validity" "valid 2020-01-01T00:00:00Z to 2020-01-02" "$(ev event.error.detail)"
  tls_case "not-yet-valid client certificate" $v TLS_CLIENT_CERT_NOT_YET_VALID certificate_expired \
    "not yet valid" "$C/notyet.crt" -cert "$C/notyet.crt" -key "$C/notyet.key"
  tls_case "serverAuth-only client certificate" $v TLS_CLIENT_CERT_NO_CLIENT_AUTH \
    unsupported_certificate "clientAuth" "$C/serveronly.crt" -cert "$C/serveronly.crt" -key "$C/serveronly.key"
  tls_case "intermediate not sent" $v TLS_CLIENT_CHAIN_INCOMPLETE unknown_ca \
    "issuer .*CN=Globex TLS Issuing.* was not sent" "$C/via-inter.crt" -cert "$C/via-inter.crt" -key "$C/via-inter.key"
  tls_case "unknown CA (chain with its root)" $v TLS_CLIENT_CERT_UNTRUSTED unknown_ca \
    "self-signed certificate that is not registered" "$C/unknown.crt" -cert "$C/unknown.crt" \
    -key "$C/unknown.key" -cert_chain "$C/other-root.crt"
  check_match "unknown CA (TLS $v): verify result in .tls" "signer|issuer" "$(ev event.tls.verify_result)"
  tls_case "self-signed client certificate" $v TLS_CLIENT_CERT_UNTRUSTED unknown_ca \
    "self-signed" "$C/self.crt" -cert "$C/self.crt" -key "$C/self.key"
  tls_case "no shared cipher suite" $v TLS_NO_SHARED_CIPHER handshake_failure \
    "no shared TLS cipher suite" "" \
    $([ $v = 1.3 ] && echo "-ciphersuites TLS_AES_128_CCM_8_SHA256" || echo "-cipher ECDHE-ECDSA-AES128-SHA256:AES128-SHA256")
  check_match "no shared cipher (TLS $v): detail names the client's suites" \
    "client suites: .*(CCM_8|0x1305|SHA256)" "$(ev event.error.detail)"
  tls_case "our certificate rejected by the client" $v TLS_OUR_CERT_REJECTED "" \
    "rejected|most likely it rejected ours" "" -verify_return_error -CAfile "$C/other-root.crt"
  check_match "our certificate rejected (TLS $v): self-check in the detail" "self-check: the chain we send" \
    "$(ev event.error.detail)"
  check_eq "our certificate rejected (TLS $v): station named" acme "$(ev event.tls.station_id)"
  check_match "our certificate rejected (TLS $v): our certificate in .tls" "CN=localhost" \
    "$(ev event.tls.local_certificate.subject)"
  echo "# our cert rejected (TLS $v): received alerts: $(ev event.alerts_received); $(ev event.error.message)"
done

# good certificates, RSA and ECDSA, both versions: no event
for v in 1.2 1.3; do
  for c in good-rsa good-ec via-inter+chain; do
    k=${c%+chain} chain=(); [ "$k" != "$c" ] && chain=(-cert_chain "$C/inter.crt")
    before=$(n_events)
    out=$(sleep 0.5 | openssl s_client -connect "127.0.0.1:$PORT" -servername localhost -CAfile "$K/ca.crt" \
      "-tls1_${v#1.}" -cert "$C/$k.crt" -key "$C/$k.key" "${chain[@]}" 2>&1)
    check_match "$c (TLS $v): handshake completes" "Verify return code: 0" "$out"
    check "$c (TLS $v): no alert" bash -c "! grep -q 'alert number' <<<\"\$1\"" _ "$out"
    sleep 0.3
    check_eq "$c (TLS $v): no ConnectionRejected" "$before" "$(n_events)"
  done
done

# a probe that says nothing is not reported
before=$(n_events)
python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT)).close()"
sleep 0.5
check_eq "silent probe: no event" "$before" "$(n_events)"

# plain HTTP on the TLS port
lp=$(free_port)
body=$(curl -sS --max-time 10 --local-port "$lp" -H "AS2-From: GLOBEX" --data-binary x "http://127.0.0.1:$PORT/as2" 2>&1)
check_match "plain HTTP: answered in HTTP" "plain HTTP was sent to a TLS port" "$body"
wait_event "event.peer_address=127.0.0.1:$lp" || not_ok "plain HTTP: no event"
check_eq "plain HTTP: kind" TLS_NOT_TLS "$(ev event.error.kind)"
check_match "plain HTTP: message shows the first bytes" 'first bytes are "POST /as2 HTTP/1.1' "$(ev event.error.message)"

# a TLS 1.1-only client
next_sni
out=$(sleep 1 | openssl s_client -connect "127.0.0.1:$PORT" -servername "$SNI" -tls1_1 -cipher DEFAULT@SECLEVEL=0 2>&1)
wait_event "event.sni=$SNI" || not_ok "TLS 1.1 client: no event"
check_eq "TLS 1.1 client: kind" TLS_NO_COMMON_PROTOCOL "$(ev event.error.kind)"
check_match "TLS 1.1 client: message names both ranges" "offered TLSv1.1, this gateway accepts TLSv1.2..TLSv1.3" \
  "$(ev event.error.message)"
check_eq "TLS 1.1 client: alert sent" "sent protocol_version" "$(ev event.tls.alerts.0.direction) $(ev event.tls.alerts.0.name)"
check_match "TLS 1.1 client: s_client received protocol_version" "alert number 70" "$out"
check_eq "TLS 1.1 client: flat tls_version_offered" TLSv1.1 "$(ev event.tls_version_offered)"

# curl sees the alerts too (-v prints each alert it reads: "(IN), TLS alert, ...")
for v in 1.2 1.3; do
  lp=$(free_port)
  out=$(curl -sSv --max-time 10 --local-port "$lp" --cacert "$K/ca.crt" --tlsv$v --tls-max $v \
    --cert "$C/expired.crt" --key "$C/expired.key" -H "AS2-From: GLOBEX" --data-binary x "$URL" 2>&1)
  check_match "curl, expired certificate (TLS $v): curl read the alert" "\(IN\), TLS alert, certificate expired" "$out"
  echo "# curl, expired certificate (TLS $v): $(grep -E '^curl:' <<<"$out")"
  wait_event "event.peer_address=127.0.0.1:$lp" &&
    check_eq "curl, expired (TLS $v): kind" TLS_CLIENT_CERT_EXPIRED "$(ev event.error.kind)"
  lp=$(free_port)
  out=$(curl -sS --max-time 10 --local-port "$lp" --tlsv$v --tls-max $v --cert "$C/good-ec.crt" \
    --key "$C/good-ec.key" "$URL" 2>&1)
  echo "# curl without our CA (TLS $v): $out"
  wait_event "event.peer_address=127.0.0.1:$lp" &&
    check_eq "curl rejects our certificate (TLS $v): kind" TLS_OUR_CERT_REJECTED "$(ev event.error.kind)"
  check_match "curl rejects our certificate (TLS $v): alert received from curl" "unknown_ca" "$(ev event.alerts_received)"
done

# --- partners' TLS policies ------------------------------------------------------
# initech: min_version TLSv1.3
tls_case "initech (min TLSv1.3) with TLS 1.2" 1.2 TLS_NO_COMMON_PROTOCOL protocol_version \
  "partner initech's TLS policy accepts TLSv1.3; the client negotiated TLSv1.2" "$C/initech.crt" \
  -cert "$C/initech.crt" -key "$C/initech.key"
check_eq "initech with TLS 1.2: partner named in .tls" "initech certificate" \
  "$(ev event.tls.partner_id) $(ev event.tls.partner_basis)"
out=$(sleep 0.5 | openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$K/ca.crt" -tls1_3 \
  -cert "$C/initech.crt" -key "$C/initech.key" 2>&1)
check_match "initech with TLS 1.3: handshake completes" "Verify return code: 0" "$out"
# umbrella: AES-256-GCM suites only
tls_case "umbrella (AES-256-GCM only) with TLS_AES_128_GCM_SHA256" 1.3 TLS_NO_SHARED_CIPHER handshake_failure \
  "partner umbrella's TLS policy does not allow the cipher suite TLS_AES_128_GCM_SHA256" "$C/umbrella.crt" \
  -ciphersuites TLS_AES_128_GCM_SHA256 -cert "$C/umbrella.crt" -key "$C/umbrella.key"
out=$(sleep 0.5 | openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$K/ca.crt" -tls1_3 \
  -ciphersuites TLS_AES_256_GCM_SHA384 -cert "$C/umbrella.crt" -key "$C/umbrella.key" 2>&1)
check_match "umbrella with TLS_AES_256_GCM_SHA384: handshake completes" "Verify return code: 0" "$out"
# TLS 1.2: the suite is known before the client's certificate is verified
out=$(sleep 0.5 | openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$K/ca.crt" -tls1_2 \
  -cipher ECDHE-ECDSA-AES256-GCM-SHA384 -cert "$C/umbrella.crt" -key "$C/umbrella.key" 2>&1)
check_match "umbrella with TLS 1.2 and a suite its policy lists: handshake completes" \
  "Cipher is ECDHE-ECDSA-AES256-GCM-SHA384" "$out"
tls_case "umbrella (AES-256-GCM only) with TLS 1.2 ECDHE-ECDSA-AES128-GCM-SHA256" 1.2 TLS_NO_SHARED_CIPHER \
  handshake_failure "does not allow the cipher suite TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256" \
  "$C/umbrella.crt" -cipher ECDHE-ECDSA-AES128-GCM-SHA256 -cert "$C/umbrella.crt" -key "$C/umbrella.key"

# another partner's certificate (valid, registered): HTTP 403 at the AS2 stage
D=$STACK_DIR/other; as2_build "$D" "$ROOT/README.md"
AS2_FROM=GLOBEX AS2_TO=ACME AS2_CA=$K/ca.crt AS2_TLS_CERT=$C/initech.crt AS2_TLS_KEY=$C/initech.key \
  AS2_MDN=none as2_post "$D" "$URL" --tlsv1.3
check_eq "another partner's certificate: HTTP 403" 403 "$(cat "$D/http_code")"
check_eq "another partner's certificate: kind" TLS_CLIENT_CERT_NOT_PARTNERS \
  "$(status | $EVQ get event.error.kind event.as2_message_id="$(tr -d '<>' <"$D/message-id")")"

# client_certificate optional: hooli may post without a certificate; globex may
# not; wayne may, with TLS 1.3 only
partners ', {"id": "hooli", "station": "acme", "as2_id": "HOOLI", "tls_policy": {"client_certificate": "optional"},
   "require_signature": false, "require_encryption": false},
  {"id": "wayne", "station": "acme", "as2_id": "WAYNE",
   "tls_policy": {"client_certificate": "optional", "min_version": "TLSv1.3"},
   "require_signature": false, "require_encryption": false}' >"$STACK_DIR/test.json"
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/test.json" >/dev/null 2>&1 || not_ok "apply with hooli"
sleep 2.5 # MFT_INGRESS_RELOAD_MS
# post_nocert FROM NAME [CURL-ARGS] — an AS2 post without a client certificate:
# the HTTP status in CODE, the ConnectionRejected it caused (if any) in EV_JSON
post_nocert() {
  local from=$1 d=$STACK_DIR/$2; shift 2
  as2_build "$d" "$ROOT/README.md"
  AS2_FROM=$from AS2_TO=ACME AS2_CA=$K/ca.crt AS2_TLS_CERT= AS2_MDN=none as2_post "$d" "$URL" "$@"
  CODE=$(cat "$d/http_code") EV_JSON=
  [ "$CODE" = 200 ] || EV_JSON=$(status | $EVQ json event.as2_message_id="$(tr -d '<>' <"$d/message-id")")
}
post_nocert HOOLI hooli
check_eq "optional certificate: hooli without one is accepted" 200 "$CODE"
post_nocert GLOBEX nocert
check_eq "required certificate: globex without one gets HTTP 403" 403 "$CODE"
check_eq "required certificate: TLS_CLIENT_CERT_MISSING at stage http" "TLS_CLIENT_CERT_MISSING http" \
  "$(kind_stage "$EV_JSON")"
check_match "required certificate: message names the partner" "globex's policy requires" "$EV_JSON"
# no certificate, so only AS2-From tells the partner: its policy is applied there
post_nocert WAYNE wayne12 --tls-max 1.2
check_eq "wayne (min TLSv1.3) over TLS 1.2 without a certificate: HTTP 403" 403 "$CODE"
check_eq "wayne over TLS 1.2: TLS_NO_COMMON_PROTOCOL at stage http" "TLS_NO_COMMON_PROTOCOL http" \
  "$(kind_stage "$EV_JSON")"
check_match "wayne over TLS 1.2: message names the partner's range" "partner wayne's TLS policy accepts TLSv1.3" "$EV_JSON"
post_nocert WAYNE wayne13 --tlsv1.3
check_eq "wayne over TLS 1.3 without a certificate: accepted" 200 "$CODE"
# with a certificate, globex still goes through the handshake and is checked as before
tls_case "with optional partners: expired certificate still refused" 1.3 TLS_CLIENT_CERT_EXPIRED \
  certificate_expired "expired" "$C/expired.crt" -cert "$C/expired.crt" -key "$C/expired.key"

# --- a station whose TLS key is not its certificate's -----------------------------
sed "s#\"key\": \"$K/acme-tls.key\"#\"key\": \"$K/acme-client.key\"#" "$STACK_DIR/test.json" >"$STACK_DIR/bad.json"
if "$MFT_BIN/mftctl" apply -f "$STACK_DIR/bad.json" >"$STACK_DIR/bad.out" 2>&1; then
  sleep 2.5
  check_match "own key mismatch: reload refused with TLS_OWN_KEY_MISMATCH" "TLS_OWN_KEY_MISMATCH" \
    "$(grep config.reload_failed "$STACK_DIR/logs/ingress.log" | tail -1)"
  out=$(sleep 0.5 | openssl s_client -connect "127.0.0.1:$PORT" -CAfile "$K/ca.crt" -tls1_3 \
    -cert "$C/good-ec.crt" -key "$C/good-ec.key" 2>&1)
  check_match "own key mismatch: the previous pair still serves" "Verify return code: 0" "$out"
else
  check_match "own key mismatch: mftctl apply refuses it" "key" "$(cat "$STACK_DIR/bad.out")"
fi

kill -TERM "$INGRESS_PID"; wait "$INGRESS_PID"
check_eq "ingress exits 0" 0 "$?"
finish
