#!/usr/bin/env bash
# Black-box: AS2 sending. The real mft-egress sends to the real mft-ingress
# (both against a real redis-server and the embedded Kafka broker): station
# acme sends, stations globex, hooli, ... on the same gateway receive and
# answer with their MDNs. Requests are made with `mftctl send` (SendRequested
# on mft.outbound.v1, as an application would); outcomes are read back from
# mft.status.v1 (sender) and mft.inbound.v1 (receiver).
#
#   1. the settings matrix: sign x encrypt x compress, over binary and base64
#      partners, with sync, async and no MDN; payload bytes and MIC checked on
#      both sides
#   2. failures, each with its error kind and retry behaviour: connection
#      refused, timeout, HTTP 500 (retried then given up), HTTP 500 then
#      success, HTTP 400 (not retried), not an MDN, negative MDN, MIC
#      mismatch, MDN signature invalid, async MDN never arrives, untrusted
#      server certificate, unknown partner, repeated request id
#   3. egress killed with SIGKILL mid-send: delivered once on the receiver
# A misbehaving partner is tests/lib/mock_partner.py (plain HTTP, loopback).
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-egress.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tests/lib/tap.sh"
MOCK_PID=
trap '[ -n "$MOCK_PID" ] && kill "$MOCK_PID" 2>/dev/null; stack_stop; keep_on_failure' EXIT
OB="python3 $ROOT/tests/lib/outbound.py"
CTL=$MFT_BIN/mftctl

stack_start || exit 1
K=$STACK_DIR/keys
sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || exit 1
HTTP_PORT=$(free_port)
export MFT_INGRESS_HTTP_ADDR=127.0.0.1:$HTTP_PORT
HTTPS=https://localhost:${MFT_INGRESS_HTTPS_ADDR#*:}/as2
DEAD_PORT=$(free_port)
mkdir -p "$STACK_DIR/mock"
python3 "$ROOT/tests/lib/mock_partner.py" "$STACK_DIR/mock/port" "http://127.0.0.1:$HTTP_PORT/as2" \
  "$STACK_DIR/mock" 2>"$STACK_DIR/logs/mock.log" &
MOCK_PID=$!
wait_for 10 test -s "$STACK_DIR/mock/port" || { echo "mock partner did not start"; exit 1; }
MOCK=http://127.0.0.1:$(cat "$STACK_DIR/mock/port")

# The gateway: acme sends; every other station receives from acme. acme's
# partners point at those stations directly (https), through the mock
# partner (http), or at nothing.
python3 - "$K" "$HTTPS" "$MOCK" "$DEAD_PORT" >"$STACK_DIR/gw.json" <<'PY'
import json, sys
K, HTTPS, MOCK, DEAD = sys.argv[1:5]
def kp(name):
    return {"cert": f"{K}/{name}.crt", "key": f"{K}/{name}.key"}
stations = [{"id": "acme", "as2_id": "ACME", "signing": kp("acme-signing"),
             "encryption": [{"pkcs12": f"{K}/acme-encryption.p12", "password": "demo"}],
             "tls": kp("acme-tls"), "tls_client": kp("acme-client"),
             "async_mdn_url": HTTPS}]
partners = []
receivers = {"globex": {}, "hooli": {}, "flaky": {}, "micmm": {}, "slowpoke": {},
             "wrongsig": {}, "strict": {"require_encryption": True}, "multi": {}}
for sid, policy in receivers.items():
    stations.append({"id": sid, "as2_id": sid.upper(), "signing": kp("globex-signing"),
                     "encryption": [kp("globex-encryption")], "tls": kp("globex-tls"),
                     "tls_client": kp("globex-client")})
    partners.append({"id": f"acme-at-{sid}", "station": sid, "as2_id": "ACME",
                     "signing_cert": f"{K}/acme-signing.crt",
                     "encryption_cert": f"{K}/acme-encryption.crt",
                     "tls_client_certs": [f"{K}/acme-client.crt"],
                     "require_signature": False,
                     "require_encryption": policy.get("require_encryption", False),
                     "send": {"url": HTTPS, "tls_server_cas": [f"{K}/ca.crt"]}})
def out(pid, url, **send):
    s = {"url": url, "retry_base_s": 1, "retry_max_s": 2, "max_attempts": 3, "timeout_s": 10}
    if url.startswith("https"):
        s["tls_server_cas"] = [f"{K}/ca.crt"]
    s.update(send)
    signing = s.pop("signing_cert", f"{K}/globex-signing.crt")
    partners.append({"id": pid, "station": "acme", "as2_id": pid.upper(),
                     "signing_cert": signing,
                     "encryption_cert": f"{K}/globex-encryption.crt",
                     "tls_client_certs": [f"{K}/globex-client.crt"], "send": s})
out("globex", HTTPS)
out("hooli", HTTPS, transfer_encoding="base64")
out("flaky", MOCK + "/flaky")
out("micmm", MOCK + "/micmismatch", mdn_signed=False)
out("slowpoke", MOCK + "/slow", timeout_s=5)
out("wrongsig", HTTPS, signing_cert=f"{K}/initech-signing.crt")
out("strict", HTTPS)
out("multi", HTTPS, multiple_attachments=True)
out("down", f"https://localhost:{DEAD}/as2", max_attempts=2)
out("hang", MOCK + "/hang", timeout_s=2, max_attempts=1)
out("reject400", MOCK + "/400")
out("err500", MOCK + "/500", max_attempts=2)
out("notmdn", MOCK + "/notmdn")
out("silent", MOCK + "/ok-empty", mdn="async", mdn_timeout_s=2)
out("untrusted", HTTPS, tls_server_cas=[f"{K}/unknown-ca.crt"])
out("latemdn", MOCK + "/ok-empty", mdn="async", mdn_signed=False, mdn_timeout_s=120)
print(json.dumps({"stations": stations, "partners": partners}, indent=1))
PY
"$CTL" apply -f "$STACK_DIR/gw.json" >"$STACK_DIR/apply.log" 2>&1 || { cat "$STACK_DIR/apply.log"; exit 1; }
stack_ingress || exit 1
stack_egress MFT_EGRESS_LEASE_MS=1000 || exit 1

status() { "$CTL" events mft.status.v1 >"$STACK_DIR/status.jsonl"; }
inbound() { "$CTL" events mft.inbound.v1 >"$STACK_DIR/inbound.jsonl"; }
# wait_final SECONDS RID... — until every request has a final state
wait_final() {
  local deadline=$((SECONDS + $1)); shift
  while ((SECONDS < deadline)); do
    status
    local missing=0 r
    for r in "$@"; do
      [ -n "$($OB final "$STACK_DIR/status.jsonl" "$r")" ] || { missing=1; break; }
    done
    ((missing)) || return 0
    sleep 1
  done
  return 1
}
field() { # field RID PATH — a field of the request's final DeliveryUpdated
  $OB final "$STACK_DIR/status.jsonl" "$1" |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read() or "{}"); p=sys.argv[1].split(".")
for k in p: d=(d or {}).get(k) if isinstance(d, dict) else None
print("" if d is None else str(d).lower() if isinstance(d,bool) else d)' "$2"
}
send() { # send RID PARTNER FILE [mftctl send options]
  local rid=$1 p=$2 f=$3; shift 3
  "$CTL" send --partner "$p" --request-id "$rid" "$f" "$@" >/dev/null 2>>"$STACK_DIR/send.err"
}

printf 'UNB+UNOC:3+ACME+GLOBEX+%s:1200+1\nUNH+1+ORDERS:D:96A:UN\nUNT+2+1\nUNZ+1+1\n' \
  "$(date +%y%m%d)" >"$STACK_DIR/order.edi"
head -c 20000 /dev/urandom >"$STACK_DIR/blob.bin"

# --- 1. the settings matrix -------------------------------------------------
: >"$STACK_DIR/manifest"
n=0; rids=()
for sign in sha1 sha256 sha384 sha512 none; do
  for enc in none aes-128-cbc aes-192-cbc aes-256-cbc des-ede3-cbc aes-128-gcm aes-256-gcm; do
    for cmp in none before-signing after-signing; do
      n=$((n + 1))
      # periods 2, 3 (shifted every 3) and 4 against compress's 3: every pair of
      # settings meets
      partner=$([ $((n % 2)) = 0 ] && echo hooli || echo globex)
      mdn=$(case $(((n + n / 3) % 3)) in 0) echo sync ;; 1) echo async ;; *) echo none ;; esac)
      file=$STACK_DIR/order.edi; [ $((n % 4)) = 1 ] && file=$STACK_DIR/blob.bin
      rid=mx-$n
      cte=$([ $partner = hooli ] && echo base64 || echo binary)
      echo "$rid $(sha256sum "$file" | cut -c1-64) $mdn sign=$sign encrypt=$enc compress=$cmp cte=$cte mdn=$mdn $(basename "$file")" >>"$STACK_DIR/manifest"
      echo "--partner $partner --request-id $rid --sign $sign --encrypt $enc --compress $cmp --mdn $mdn $file"
      rids+=("$rid")
    done
  done
done >"$STACK_DIR/matrix.args"
xargs -P 4 -L 1 "$CTL" send <"$STACK_DIR/matrix.args" >/dev/null 2>>"$STACK_DIR/send.err"
if wait_final 240 "${rids[@]}"; then ok "matrix: all ${#rids[@]} requests reached a final state"
else not_ok "matrix: not every request reached a final state in 240 s"; fi
inbound
$OB matrix "$STACK_DIR/status.jsonl" "$STACK_DIR/inbound.jsonl" "$STACK_DIR/manifest" >"$STACK_DIR/matrix.tap"
mx_ok=$(grep -c '^ok - ' "$STACK_DIR/matrix.tap"); mx_bad=$(grep -c '^not ok - ' "$STACK_DIR/matrix.tap")
grep '^not ok' "$STACK_DIR/matrix.tap" | head -20
check_eq "matrix: every combination delivered, once, same bytes and MIC on both sides" \
  "${#rids[@]} 0" "$mx_ok $mx_bad"
check_eq "matrix: states of a sync request" "queued sending delivered" \
  "$($OB states "$STACK_DIR/status.jsonl" mx-5)"
# The async MDN comes from this same gateway within milliseconds; ingress gives
# egress up to 2 s to record "sent" first, but the two events come from two
# producers, so Kafka may still append "delivered" just before "sent" (what a
# consumer must handle, docs/events.md): both orders are accepted, nothing else.
check_match "matrix: states of an async request" '^queued sending (sent delivered|delivered sent)$' \
  "$($OB states "$STACK_DIR/status.jsonl" mx-1)"
check_match "matrix: the server certificate is reported" "CN=localhost" "$(field mx-5 tls_server.subject)"

# --- several documents in one message (EDIINT multiple-attachments) --------
printf '<invoice id="1"/>\n' >"$STACK_DIR/invoice.xml"
send m-multi multi "$STACK_DIR/order.edi" "$STACK_DIR/blob.bin" "$STACK_DIR/invoice.xml"
send m-refused globex "$STACK_DIR/order.edi" "$STACK_DIR/invoice.xml"
wait_final 60 m-multi m-refused || not_ok "attachments: no final state in 60 s"
check_eq "attachments: delivered as one message" delivered "$(field m-multi state)"
inbound
m_mid=$(field m-multi as2_message_id); m_mid=${m_mid#<}; m_mid=${m_mid%>}
EVQ="python3 $ROOT/tests/lib/events.py"
i=0
for f in order.edi blob.bin invoice.xml; do
  check_eq "attachments: the receiver got $f as payload $i, same bytes" \
    "$f $(sha256sum "$STACK_DIR/$f" | cut -c1-64)" \
    "$($EVQ get "event.payloads.$i.filename" event.as2_message_id="$m_mid" <"$STACK_DIR/inbound.jsonl") $($EVQ get "event.payloads.$i.sha256" event.as2_message_id="$m_mid" <"$STACK_DIR/inbound.jsonl")"
  i=$((i + 1))
done
check_eq "attachments: one MessageReceived for the three" 1 \
  "$($EVQ count event.as2_message_id="$m_mid" <"$STACK_DIR/inbound.jsonl")"
# a partner without multiple_attachments: refused at once, saying why
check_eq "attachments to a partner that does not take them: failed" failed "$(field m-refused state)"
check_eq "... with CONFIG" CONFIG "$(field m-refused error.kind)"
check_match "... naming the setting" multiple_attachments "$(field m-refused error.remedy)"

# --- 2. failures ------------------------------------------------------------
send f-flaky flaky "$STACK_DIR/order.edi"
send f-down down "$STACK_DIR/order.edi"
send f-hang hang "$STACK_DIR/order.edi"
send f-400 reject400 "$STACK_DIR/order.edi"
send f-500 err500 "$STACK_DIR/order.edi"
send f-notmdn notmdn "$STACK_DIR/order.edi"
send f-strict strict "$STACK_DIR/order.edi" --encrypt none
send f-micmm micmm "$STACK_DIR/order.edi"
send f-wrongsig wrongsig "$STACK_DIR/order.edi"
send f-silent silent "$STACK_DIR/order.edi"
send f-untrusted untrusted "$STACK_DIR/order.edi"
send f-unknown nosuchpartner "$STACK_DIR/order.edi"
fails=(f-flaky f-down f-hang f-400 f-500 f-notmdn f-strict f-micmm f-wrongsig f-silent f-untrusted f-unknown)
wait_final 60 "${fails[@]}" || not_ok "failures: not all reached a final state in 60 s"
# expect RID STATE KIND ATTEMPT STATES-REGEX
expect() {
  check_eq "$1: final state" "$2" "$(field "$1" state)"
  check_eq "$1: error kind" "$3" "$(field "$1" error.kind)"
  [ -n "$4" ] && check_eq "$1: attempts" "$4" "$(field "$1" attempt)"
  [ -n "$5" ] && check_match "$1: states" "$5" "$($OB states "$STACK_DIR/status.jsonl" "$1")"
}
expect f-flaky delivered "" 2 '^queued sending retrying sending delivered$'
expect f-down failed CONNECT 2 '^queued sending retrying sending failed$'
expect f-hang failed TIMEOUT 1 '^queued sending failed$'
expect f-400 failed HTTP_STATUS 1 '^queued sending failed$'
check_eq "f-400: HTTP status recorded" 400 "$(field f-400 http_status)"
expect f-500 failed HTTP_STATUS 2 '^queued sending retrying sending failed$'
check_match "f-500: the detail says it gave up" "gave up after 2 attempts" "$(field f-500 error.detail)"
expect f-notmdn failed MDN_INVALID 1 ""
check_match "f-notmdn: the detail quotes the answer" "nginx" "$(field f-notmdn error.detail)"
expect f-strict failed MDN_NEGATIVE 1 ""
check_match "f-strict: the partner's disposition" "insufficient-message-security" "$(field f-strict mdn_disposition)"
expect f-micmm failed MIC_MISMATCH 1 ""
expect f-wrongsig failed MDN_SIGNATURE_INVALID 1 ""
expect f-silent failed MDN_TIMEOUT 1 '^queued sending sent failed$'
expect f-untrusted failed TLS_SERVER_UNTRUSTED 1 '^queued sending failed$'
expect f-unknown failed UNKNOWN_PARTNER "" '^failed$'
inbound
check_eq "f-strict: the receiver delivered nothing" 0 \
  "$($OB count-received "$STACK_DIR/inbound.jsonl" "$(field f-strict as2_message_id)")"

# A repeated request id is accepted once.
send f-flaky flaky "$STACK_DIR/order.edi"
sleep 2; status
check_eq "repeat of a request id: no second message" "queued sending retrying sending delivered" \
  "$($OB states "$STACK_DIR/status.jsonl" f-flaky)"

# The outgoing record keeps the raw MDN for non-repudiation.
mid=$(field mx-5 message_id)
check_match "record: final state and MDN kept in Redis" "delivered" \
  "$(redis-cli -u "$MFT_REDIS_URL" HGET "mft:out:$mid" state)"
# The raw MDN is in the record (base64 of the bytes received): with its
# Content-Type, openssl verifies the partner's signature over the kept bytes.
{ printf 'Content-Type: %s\r\n\r\n' "$(redis-cli -u "$MFT_REDIS_URL" HGET "mft:out:$mid" mdn_content_type)"
  redis-cli -u "$MFT_REDIS_URL" HGET "mft:out:$mid" mdn_raw | base64 -d; } >"$STACK_DIR/kept-mdn.eml"
check "record: the raw MDN kept is an MDN" grep -q "disposition-notification" "$STACK_DIR/kept-mdn.eml"
check "record: the kept MDN's signature verifies (openssl smime)" \
  openssl smime -verify -noverify -in "$STACK_DIR/kept-mdn.eml" -out /dev/null

# Ids an application may use: any request id; a bad station id fails that
# request alone (the partition goes on).
send "order 42: resend/2" globex "$STACK_DIR/order.edi"
send b-station globex "$STACK_DIR/order.edi" --station "no such:station"
send b-after globex "$STACK_DIR/order.edi"
wait_final 60 "order 42: resend/2" b-station b-after || not_ok "ids: no final state in 60 s"
check_eq "a request id with spaces, ':' and '/': delivered" delivered "$(field "order 42: resend/2" state)"
check_eq "an invalid station id: failed" UNKNOWN_STATION "$(field b-station error.kind)"
check_eq "the request after it: delivered" delivered "$(field b-after state)"

# --- async MDN posted by someone else (curl) --------------------------------
send l-1 latemdn "$STACK_DIR/order.edi"
for _ in $(seq 50); do status; [[ $($OB states "$STACK_DIR/status.jsonl" l-1) == *sent ]] && break; sleep 0.2; done
check_eq "async: waiting for the MDN" "queued sending sent" "$($OB states "$STACK_DIR/status.jsonl" l-1)"
read -r l1_mid l1_mic l1_alg < <(python3 -c '
import json, sys
for line in open(sys.argv[1]):
    r = json.loads(line); e = r.get("event") or {}
    if e.get("request_id") == "l-1" and e.get("state") == "sending":
        print(e["as2_message_id"], e["mic"], e["mic_alg"])' "$STACK_DIR/status.jsonl")
mdn_post() { # mdn_post AS2-FROM MIC — an unsigned MDN for l-1, as a partner would post it
  printf -- '--b1\r\nContent-Type: text/plain\r\n\r\nYour message was received.\r\n--b1\r\nContent-Type: message/disposition-notification\r\n\r\nReporting-UA: curl\r\nOriginal-Recipient: rfc822; LATEMDN\r\nFinal-Recipient: rfc822; LATEMDN\r\nOriginal-Message-ID: <%s>\r\nReceived-Content-MIC: %s, %s\r\nDisposition: automatic-action/MDN-sent-automatically; processed\r\n\r\n--b1--\r\n' \
    "$l1_mid" "$2" "$l1_alg" >"$STACK_DIR/late.mdn"
  curl -s -o "$STACK_DIR/late.out" -w '%{http_code}' --cacert "$K/ca.crt" \
    --cert "$K/globex-client.crt" --key "$K/globex-client.key" \
    -H "AS2-Version: 1.2" -H "AS2-From: $1" -H "AS2-To: ACME" -H "Message-ID: <late-$RANDOM@curl>" \
    -H 'Content-Type: multipart/report; report-type=disposition-notification; boundary="b1"' \
    --data-binary @"$STACK_DIR/late.mdn" "$HTTPS"
}
check_eq "async: an MDN for it from another partner is refused" 400 "$(mdn_post HOOLI "$l1_mic")"
sleep 0.5; status
check_eq "async: ... and changes nothing" "queued sending sent" "$($OB states "$STACK_DIR/status.jsonl" l-1)"
check_eq "async: the partner's MDN (curl) is taken" 200 "$(mdn_post LATEMDN "$l1_mic")"
wait_final 20 l-1
check_eq "async: delivered by the MDN" delivered "$(field l-1 state)"
check_eq "async: a repeat of the MDN is answered 200" 200 "$(mdn_post LATEMDN "$l1_mic")"
sleep 0.5; status
check_eq "async: ... and publishes nothing new" "queued sending sent delivered" \
  "$($OB states "$STACK_DIR/status.jsonl" l-1)"

# --- 3. kill -9 mid-send ----------------------------------------------------
send k-1 slowpoke "$STACK_DIR/order.edi"
for _ in $(seq 50); do
  status; [[ $($OB states "$STACK_DIR/status.jsonl" k-1) == *sending* ]] && break; sleep 0.2
done
kill -KILL "$EGRESS_PID"; wait "$EGRESS_PID" 2>/dev/null
stack_egress MFT_EGRESS_LEASE_MS=1000 || not_ok "egress did not restart"
wait_final 60 k-1 || not_ok "k-1: no final state after the restart"
check_eq "kill -9: delivered after the restart" delivered "$(field k-1 state)"
check_match "kill -9: a second attempt was made" '^[2-9]$' "$(field k-1 attempt)"
sleep 1; inbound
check_eq "kill -9: the receiver delivered it exactly once" 1 \
  "$($OB count-received "$STACK_DIR/inbound.jsonl" "$(field k-1 as2_message_id)")"
check_match "kill -9: the resend was answered as a duplicate" "duplicate-document" \
  "$(field k-1 mdn_disposition)"

finish
