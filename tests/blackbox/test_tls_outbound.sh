#!/usr/bin/env bash
# Black-box: outbound TLS failures, each classified from the handshake's raw
# facts. `mftctl test-connection PARTNER -o json` (the registry in a real
# redis-server, the same request egress builds) against independent servers:
# `openssl s_server` configured per case, a plain TCP server, a closed port,
# and nginx with ssl_verify_client on. Certificates are made here with the
# openssl CLI: per key type (RSA-2048, ECDSA P-256) a throwaway root CA, an
# intermediate, and server certificates that are fine, expired, not yet
# valid, for another name, without serverAuth, issued by the intermediate
# (sent without it), self-signed, from another CA; and below OpenSSL's
# security level 2 (Debian's default): a server certificate with an RSA-1024
# key, a chain whose intermediate is signed with SHA-1 (s_server serves them
# at @SECLEVEL=0), a station whose client certificate has an RSA-1024 key.
# Each case runs with TLS 1.2 and TLS 1.3 servers where the version is not
# the point; every case asserts the error kind and the facts it was derived
# from (verify code, alert name and direction, versions, names). Three cases
# then go through mft-egress to check that a failed handshake ends "failed"
# (or "retrying" when the partner may still act) with the facts in
# DeliveryUpdated.tls, never "sent".
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-tlsout.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tests/lib/tap.sh"
SRV_PID=
trap '[ -n "$SRV_PID" ] && kill "$SRV_PID" 2>/dev/null; stack_stop; keep_on_failure' EXIT
CTL=$MFT_BIN/mftctl
NGINX=$(command -v nginx || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true)

stack_start || exit 1
K=$STACK_DIR/keys; C=$STACK_DIR/certs
sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || exit 1
mkdir -p "$C"

# --- certificates -------------------------------------------------------------
ossl() { openssl "$@" 2>>"$STACK_DIR/logs/openssl.log" >/dev/null || { echo "openssl $1 failed"; exit 1; }; }
genkey() { # genkey ALG FILE — ALG: rsa (2048 bits), rsaBITS (rsa1024), ec (P-256)
  case $1 in
    rsa*) local bits=${1#rsa}; ossl genpkey -algorithm RSA -pkeyopt "rsa_keygen_bits:${bits:-2048}" -out "$2" ;;
    *) ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2" ;;
  esac
}
mkca() { # mkca ALG NAME CN
  genkey "$1" "$C/$2.key"
  ossl req -x509 -new -key "$C/$2.key" -subj "/O=mft tls test/CN=$3" -days 30 \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
    -out "$C/$2.pem"
}
# issue ALG NAME ISSUER SUBJECT-CN EXTENSIONS [START END]; ISSUE_MD=sha1 signs with SHA-1
issue() {
  local alg=$1 name=$2 issuer=$3 cn=$4 ext=$5
  genkey "$alg" "$C/$name.key"
  printf '%b' "$ext" >"$C/$name.ext"
  ossl req -new -key "$C/$name.key" -subj "/CN=$cn" -out "$C/$name.csr"
  if [ $# -ge 7 ]; then # dated: `openssl ca` takes explicit dates
    mkdir -p "$C/db"; : >"$C/db/index"; echo 1000 >"$C/db/serial"
    printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s\nnew_certs_dir=%s\nserial=%s\ndefault_md=sha256\npolicy=p\nunique_subject=no\n[p]\ncommonName=supplied\n' \
      "$C/db/index" "$C/db" "$C/db/serial" >"$C/db/cnf"
    ossl ca -batch -config "$C/db/cnf" -cert "$C/$issuer.pem" -keyfile "$C/$issuer.key" \
      -in "$C/$name.csr" -out "$C/$name.pem" -notext -startdate "$6" -enddate "$7" -extfile "$C/$name.ext"
  else
    ossl x509 -req "-${ISSUE_MD:-sha256}" -in "$C/$name.csr" -CA "$C/$issuer.pem" -CAkey "$C/$issuer.key" -days 30 \
      -set_serial "0x$(openssl rand -hex 8)" -extfile "$C/$name.ext" -out "$C/$name.pem"
  fi
}
SAN='subjectAltName=DNS:localhost,IP:127.0.0.1\n'
SRV="basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n$SAN"
CAEXT='basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n'
for a in rsa ec; do
  mkca $a $a-ca "root $a"
  mkca $a $a-other "other root $a"
  issue $a $a-inter $a-ca "intermediate $a" "$CAEXT"
  issue $a $a-ok $a-ca localhost "$SRV"
  issue $a $a-expired $a-ca localhost "$SRV" 20200101000000Z 20210101000000Z
  issue $a $a-notyet $a-ca localhost "$SRV" 20990101000000Z 20991231000000Z
  issue $a $a-wrongsan $a-ca other.example 'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:other.example\n'
  issue $a $a-wrongeku $a-ca localhost "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n$SAN"
  issue $a $a-leaf-inter $a-inter localhost "${SRV}authorityInfoAccess=caIssuers;URI:http://ca.invalid/inter.crt\n"
  issue $a $a-stranger $a-other localhost "$SRV"
  genkey $a "$C/$a-self.key"
  ossl req -x509 -new -key "$C/$a-self.key" -subj /CN=localhost -days 30 -addext "subjectAltName=DNS:localhost" -out "$C/$a-self.pem"
  cat "$C/$a-stranger.pem" "$C/$a-other.pem" >"$C/$a-stranger-chain.pem"
done
# below security level 2: a 1024-bit RSA key (server, station), a SHA-1 signed intermediate
issue rsa1024 rsa-weak rsa-ca localhost "$SRV"
ISSUE_MD=sha1 issue rsa rsa-sha1inter rsa-ca "sha1 intermediate" "$CAEXT"
issue rsa rsa-sha1leaf rsa-sha1inter localhost "$SRV"
issue rsa1024 weak-client rsa-ca "weak station" 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n'
pin_of() { openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64; }

# --- the cases ------------------------------------------------------------------
# case_add ID EXPECT SERVER CHECK... — SERVER: "s_server ARGS" | "plain" | "closed";
# the partner's send (trust) and tls_policy come from SEND[ID] (default: trust
# $ca, the case's CA) and POLICY[ID] (default: {}). CHECKs are Python expressions over v (the JSON verdict), t (its
# tls facts) and alerts (["received fatal unknown_ca", ...]). The station that
# dials is STATION[ID] (default: acme).
CASES=(); declare -A SERVER EXPECT CHECKS SEND POLICY PORT STATION
case_add() {
  local id=$1; CASES+=("$id"); EXPECT[$id]=$2; SERVER[$id]=$3; shift 3
  local c; CHECKS[$id]=""; for c in "$@"; do CHECKS[$id]+="$c"$'\n'; done
  PORT[$id]=$(free_port)
  SEND[$id]="{\"tls_server_cas\": $ca}" # the case's CA; a case may change it
}
for a in rsa ec; do
  ca=[\"$C/$a-ca.pem\"]
  for v in 1.2 1.3; do
    sv="-tls${v/./_}"; s="$a-${v/./}"
    case_add "$s-ok" OK "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key" \
      "t['version'] == 'TLSv$v'" "t['verify_code'] == 0" "t['peer_certificate']['key'].startswith('${a^^}')"
    case_add "$s-expired" TLS_SERVER_EXPIRED "$sv -cert $C/$a-expired.pem -key $C/$a-expired.key" \
      "t['verify_code'] == 10" "'2021-01-01T00:00:00Z' in v['message']" "'sent fatal' in ' '.join(alerts)"
    case_add "$s-notyet" TLS_SERVER_NOT_YET_VALID "$sv -cert $C/$a-notyet.pem -key $C/$a-notyet.key" \
      "t['verify_code'] == 9" "'clock' in v['detail']"
    case_add "$s-wrongsan" TLS_SERVER_NAME_MISMATCH "$sv -cert $C/$a-wrongsan.pem -key $C/$a-wrongsan.key" \
      "t['verify_code'] == 62" "'DNS:other.example' in v['message']" "'not for localhost' in v['message']"
    case_add "$s-wrongeku" TLS_SERVER_UNTRUSTED "$sv -cert $C/$a-wrongeku.pem -key $C/$a-wrongeku.key" \
      "t['verify_code'] == 26" "'unsuitable certificate purpose' in t['verify_result']"
    case_add "$s-nointer" TLS_SERVER_CHAIN_INCOMPLETE "$sv -cert $C/$a-leaf-inter.pem -key $C/$a-leaf-inter.key" \
      "t['verify_code'] == 20" "'intermediate $a' in v['message']"
    case_add "$s-withinter" OK "$sv -cert $C/$a-leaf-inter.pem -key $C/$a-leaf-inter.key -cert_chain $C/$a-inter.pem" \
      "t['version'] == 'TLSv$v'"
    case_add "$s-self" TLS_SERVER_SELF_SIGNED "$sv -cert $C/$a-self.pem -key $C/$a-self.key" \
      "t['verify_code'] == 18" "t['peer_certificate']['subject'] == 'CN=localhost'"
    case_add "$s-otherca" TLS_SERVER_UNTRUSTED "$sv -cert $C/$a-stranger.pem -key $C/$a-stranger.key -cert_chain $C/$a-other.pem" \
      "t['verify_code'] == 19" "'other root $a' in v['detail']"
    case_add "$s-pin" TLS_PIN_CHANGED "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key" \
      "'$(pin_of "$C/$a-ok.pem")' in v['message']" "t['verify_code'] == 50"
    SEND[$s-pin]="{\"tls_server_pins\": [\"$(pin_of "$C/$a-self.pem")\"], \"tls_server_cas\": $ca}"
    POLICY[$s-pin]='{"server_trust": "pin"}'
    # our client certificate (acme-client, by the demo CA): accepted, refused
    case_add "$s-mtls" OK "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key -Verify 1 -verify_return_error -CAfile $K/ca.crt" \
      "t['local_certificate']['subject'].startswith('CN=')" "t['version'] == 'TLSv$v'"
    case_add "$s-mtls-unknownca" TLS_OUR_CERT_REJECTED "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key -Verify 1 -verify_return_error -CAfile $K/unknown-ca.crt" \
      "'received fatal unknown_ca' in alerts" "'does not know the CA' in v['message']"
    # cipher suites: the server has one AES-128 suite, our policy one AES-256 suite
    if [ $v = 1.2 ]; then
      kx=$([ $a = rsa ] && echo RSA || echo ECDSA)
      case_add "$s-cipher" TLS_NO_SHARED_CIPHER "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key -cipher ECDHE-$kx-AES128-GCM-SHA256" \
        "'received fatal handshake_failure' in alerts" "'TLS_ECDHE_${kx}_WITH_AES_256_GCM_SHA384' in v['message']" "t['version'] == ''"
      POLICY[$s-cipher]="{\"ciphers\": [\"TLS_ECDHE_${kx}_WITH_AES_256_GCM_SHA384\"]}"
    else
      case_add "$s-cipher" TLS_NO_SHARED_CIPHER "$sv -cert $C/$a-ok.pem -key $C/$a-ok.key -ciphersuites TLS_AES_128_GCM_SHA256" \
        "'received fatal handshake_failure' in alerts" "'TLS_AES_256_GCM_SHA384' in v['message']"
      POLICY[$s-cipher]='{"ciphers": ["TLS_AES_256_GCM_SHA384"]}'
    fi
  done
  # versions: a TLS 1.2-only server and our TLS 1.3-only policy, and the reverse
  case_add "$a-v12-vs-13" TLS_NO_COMMON_PROTOCOL "-tls1_2 -cert $C/$a-ok.pem -key $C/$a-ok.key" \
    "t['versions_offered'] == 'TLSv1.3'" "'received fatal protocol_version' in alerts" "'TLSv1.3' in v['message']"
  POLICY[$a-v12-vs-13]='{"min_version": "TLSv1.3"}'
  case_add "$a-v13-vs-12" TLS_NO_COMMON_PROTOCOL "-tls1_3 -cert $C/$a-ok.pem -key $C/$a-ok.key" \
    "t['versions_offered'] == 'TLSv1.2'" "'received fatal protocol_version' in alerts" "'TLSv1.2' in v['message']"
  POLICY[$a-v13-vs-12]='{"max_version": "TLSv1.2"}'
done
# our own certificate, judged by the partner: expired (station "late"), no
# clientAuth (station "server-only" presents a serverAuth-only certificate)
for v in 1.2 1.3; do
  s=${v/./}; STATION[late-$s]=late; STATION[serveronly-$s]=serveronly
  case_add "late-$s" TLS_OUR_CERT_REJECTED "-tls${v/./_} -cert $C/ec-ok.pem -key $C/ec-ok.key -Verify 1 -verify_return_error -CAfile $K/ca.crt" \
    "'received fatal certificate_expired' in alerts" "'HAS EXPIRED' in v['message']"
  case_add "serveronly-$s" TLS_OUR_CERT_REJECTED "-tls${v/./_} -cert $C/ec-ok.pem -key $C/ec-ok.key -Verify 1 -verify_return_error -CAfile $K/ca.crt" \
    "'received fatal unsupported_certificate' in alerts" "'client authentication' in v['message']"
done
# security level 2: the partner's weak certificate or chain (renewal is the
# partner's to do), our station's weak certificate (ours to replace: not a
# key mismatch)
ca=[\"$C/rsa-ca.pem\"]
for v in 1.2 1.3; do
  s=${v/./}; sv="-tls${v/./_} -cipher DEFAULT:@SECLEVEL=0"
  case_add "weakkey-$s" TLS_SERVER_UNTRUSTED "$sv -cert $C/rsa-weak.pem -key $C/rsa-weak.key" \
    "t['verify_code'] == 66" "t['peer_certificate']['key'] == 'RSA-1024'" \
    "'certificate \"CN=localhost\" uses a 1024-bit RSA key' in v['message']" \
    "'below the minimum of security level 2' in v['message']" "'partner must renew' in v['remedy']"
  case_add "sha1inter-$s" TLS_SERVER_UNTRUSTED "$sv -cert $C/rsa-sha1leaf.pem -key $C/rsa-sha1leaf.key -cert_chain $C/rsa-sha1inter.pem" \
    "t['verify_code'] == 68" "'CA certificate \"CN=sha1 intermediate\" is signed with SHA1 (sha1WithRSAEncryption' in v['message']" \
    "'partner must renew' in v['remedy']"
done
case_add weakclient TLS_OWN_CERT_TOO_WEAK "-cert $C/rsa-ok.pem -key $C/rsa-ok.key" \
  "'our TLS client certificate \"CN=weak station\" uses a 1024-bit RSA key' in v['message']" \
  "'security level 2' in v['message']" "'issue the station a new TLS certificate' in v['remedy']" \
  "'ee key too small' in v['detail']" "t['local_certificate']['key'] == 'RSA-1024'"
STATION[weakclient]=weak
case_add nottls TLS_NOT_TLS plain "t['version'] == ''" "'does not answer in TLS' in v['message']"
case_add refused CONNECT closed "'cannot connect' in v['message']"

# --- the registry: one partner per case -------------------------------------------
NGPORT=$(free_port)
{
  station() { # station ID TLS_CLIENT_CERT TLS_CLIENT_KEY
    printf '{"id": "%s", "as2_id": "%s", "signing": {"cert": "%s/acme-signing.crt", "key": "%s/acme-signing.key"}, "encryption": [{"cert": "%s/acme-encryption.crt", "key": "%s/acme-encryption.key"}], "tls": {"cert": "%s/acme-tls.crt", "key": "%s/acme-tls.key"}, "tls_client": {"cert": "%s", "key": "%s"}}' \
      "$1" "${1^^}" "$K" "$K" "$K" "$K" "$K" "$K" "$2" "$3"
  }
  printf '{"stations": [%s, %s, %s, %s],\n "partners": [\n' "$(station acme "$K/acme-client.crt" "$K/acme-client.key")" \
    "$(station late "$K/globex-client-expired.crt" "$K/globex-client-expired.key")" \
    "$(station serveronly "$K/acme-tls.crt" "$K/acme-tls.key")" "$(station weak "$C/weak-client.pem" "$C/weak-client.key")"
  sep=
  for id in "${CASES[@]}" ng-ok ng-unknownca; do
    st=${STATION[$id]:-acme}
    port=${PORT[$id]:-$NGPORT}
    send=${SEND[$id]:-"{\"tls_server_cas\": [\"$C/ec-ca.pem\"]}"}
    send="${send%\}}, \"url\": \"https://localhost:${port}/as2\", \"encrypt\": \"none\", \"mdn\": \"none\"}"
    printf '%s  {"id": "%s", "station": "%s", "as2_id": "%s", "signing_cert": "%s", "tls_client_certs": ["%s"], "send": %s, "tls_policy": %s}' \
      "$sep" "$id" "$st" "${id^^}" "$K/globex-signing.crt" "$K/globex-client.crt" "$send" "${POLICY[$id]:-{\}}"
    sep=$',\n'
  done
  printf '\n]}\n'
} >"$STACK_DIR/gw.json"
python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$STACK_DIR/gw.json" || { echo "bad apply file"; exit 1; }
"$CTL" apply -f "$STACK_DIR/gw.json" >"$STACK_DIR/apply.log" 2>&1 || { cat "$STACK_DIR/apply.log"; exit 1; }

# --- run --------------------------------------------------------------------------
listening() { python3 -c 'import socket,sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), 0.2).close()' "$1"; }
start_server() { # start_server ID
  local id=$1 port=${PORT[$1]}
  case ${SERVER[$id]} in
    closed) SRV_PID= ;;
    plain) # answers anything with an HTTP line, as a plain web server would
      python3 -c 'import socket,sys
s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(8)
while True:
    c,_=s.accept(); c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"); c.close()' "$port" &
      SRV_PID=$! ;;
    *) # shellcheck disable=SC2086
      openssl s_server -quiet -naccept 4 -accept "127.0.0.1:$port" ${SERVER[$id]} \
        </dev/null >>"$STACK_DIR/logs/s_server.log" 2>&1 &
      SRV_PID=$! ;;
  esac
  [ -z "$SRV_PID" ] || wait_for 10 listening "$port"
}
stop_server() { [ -n "$SRV_PID" ] && { kill "$SRV_PID" 2>/dev/null; wait "$SRV_PID" 2>/dev/null; }; SRV_PID=; }
CHECK_PY='
import json, sys
v = json.load(open(sys.argv[1])); t = v.get("tls") or {}
alerts = ["%s %s %s" % (a["direction"], a["level"], a["name"]) for a in t.get("alerts", [])]
for expr in sys.argv[2].split("\n"):
    if expr and not eval(expr):
        print("failed: %s" % expr)
'
# verdict ID JSON-FILE: checks the verdict and the facts of one case
verdict() {
  local id=$1 f=$2 got bad
  got=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["verdict"])' "$f" 2>/dev/null)
  if [ "$got" != "${EXPECT[$id]}" ]; then
    not_ok "$id: expected ${EXPECT[$id]}, got [$got]"; sed 's/^/# /' "$f" | head -40; return
  fi
  bad=$(python3 -c "$CHECK_PY" "$f" "${CHECKS[$id]}" 2>&1)
  if [ -z "$bad" ]; then ok "$id: ${EXPECT[$id]} and its facts"
  else not_ok "$id: ${EXPECT[$id]}, but $bad"; sed 's/^/# /' "$f" | head -40; fi
}
for id in "${CASES[@]}"; do
  start_server "$id" || { not_ok "$id: the server did not start"; continue; }
  "$CTL" test-connection "$id" -o json --timeout 5 >"$STACK_DIR/$id.json" 2>"$STACK_DIR/$id.err"
  rc=$?
  stop_server
  verdict "$id" "$STACK_DIR/$id.json"
  check_eq "$id: exit status" "$([ "${EXPECT[$id]}" = OK ] && echo 0 || echo 1)" "$rc"
done

# The text output carries the verdict, the remedy and the raw facts.
start_server ec-13-expired
"$CTL" test-connection ec-13-expired >"$STACK_DIR/text.out" 2>&1
stop_server
check "text output: verdict, remedy and facts" grep -q '^verdict: TLS_SERVER_EXPIRED' "$STACK_DIR/text.out"
check "text output: the remedy" grep -q '^remedy: .*renew' "$STACK_DIR/text.out"
check "text output: the alerts" grep -q 'name: certificate_expired' "$STACK_DIR/text.out"

# --- nginx with ssl_verify_client on ------------------------------------------------
# nginx 1.22 does not refuse a client certificate in the handshake: it answers
# HTTP 400 ("The SSL certificate error", "No required SSL certificate was
# sent"). --http sends an empty POST after the handshake to see it.
if [ -n "$NGINX" ]; then
  mkdir -p "$STACK_DIR/nginx/tmp"
  ngconf() { # ngconf CLIENT-CA
    cat >"$STACK_DIR/nginx/nginx.conf" <<CONF
daemon off;
pid $STACK_DIR/nginx/nginx.pid;
error_log $STACK_DIR/logs/nginx.log info;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path $STACK_DIR/nginx/tmp; proxy_temp_path $STACK_DIR/nginx/tmp;
  fastcgi_temp_path $STACK_DIR/nginx/tmp; uwsgi_temp_path $STACK_DIR/nginx/tmp; scgi_temp_path $STACK_DIR/nginx/tmp;
  server {
    listen 127.0.0.1:$NGPORT ssl;
    ssl_protocols TLSv1.2 TLSv1.3;
    ssl_certificate $C/ec-ok.pem;
    ssl_certificate_key $C/ec-ok.key;
    ssl_client_certificate $1;
    ssl_verify_client on;
    location / { return 200 "processed\n"; }
  }
}
CONF
    "$NGINX" -p "$STACK_DIR/nginx" -c "$STACK_DIR/nginx/nginx.conf" -e "$STACK_DIR/logs/nginx.log" \
      >>"$STACK_DIR/logs/nginx.out" 2>&1 &
    SRV_PID=$!
    wait_for 10 listening "$NGPORT"
  }
  ngconf "$K/ca.crt"
  "$CTL" test-connection ng-ok -o json --http >"$STACK_DIR/ng-ok.json" 2>&1
  check_eq "nginx, our certificate accepted: exit status" 0 $?
  EXPECT[ng-ok]=OK; CHECKS[ng-ok]=$'v.get("http_status") == 200\nt["version"] == "TLSv1.3"'
  verdict ng-ok "$STACK_DIR/ng-ok.json"
  stop_server
  ngconf "$K/unknown-ca.crt"
  "$CTL" test-connection ng-ok -o json >"$STACK_DIR/ng-hs.json" 2>&1
  check_eq "nginx, our certificate untrusted: the handshake alone succeeds" 0 $?
  "$CTL" test-connection ng-unknownca -o json --http >"$STACK_DIR/ng-unknownca.json" 2>&1
  check_eq "nginx, our certificate untrusted, --http: exit status" 1 $?
  EXPECT[ng-unknownca]=TLS_OUR_CERT_REJECTED
  CHECKS[ng-unknownca]=$'"The SSL certificate error" in v["message"]\nt["local_certificate"]["subject"] != ""'
  verdict ng-unknownca "$STACK_DIR/ng-unknownca.json"
  stop_server
else
  not_ok "nginx is not installed (./mft installs it)"
fi

# --- through egress: a failed handshake is an event with its facts -----------------
# egress_add REQUEST-ID CASE WAIT STATES FACTS WHAT — one message through
# mft-egress to the partner of CASE (its server up): not delivered, its
# DeliveryUpdated states match STATES (a regex), the last error's kind is the
# case's EXPECT, and FACTS (Python over t, that event's tls, and alerts) hold.
EG=(); declare -A EG_CASE EG_WAIT EG_STATES EG_FACTS EG_WHAT
egress_add() { EG+=("$1"); EG_CASE[$1]=$2; EG_WAIT[$1]=$3; EG_STATES[$1]=$4; EG_FACTS[$1]=$5; EG_WHAT[$1]=$6; }
egress_add e-expired ec-13-expired 30 '^queued sending failed$' \
  "t['verify_code'] == 10 and t['direction'] == 'outbound' and t['peer_certificate']['not_after'] == '2021-01-01T00:00:00Z'" \
  "expired server certificate fails at once"
egress_add e-unknownca ec-13-mtls-unknownca 10 '^queued sending retrying' \
  "'received fatal unknown_ca' in alerts and t['version'] == 'TLSv1.3'" "our certificate refused is retried"
egress_add e-weakclient weakclient 30 '^queued sending failed$' \
  "t['local_certificate']['key'] == 'RSA-1024' and t['local_certificate']['subject'] == 'CN=weak station'" \
  "our certificate below security level 2 fails at once"
stack_egress || exit 1
for rid in "${EG[@]}"; do
  start_server "${EG_CASE[$rid]}"
  "$CTL" send --partner "${EG_CASE[$rid]}" --request-id "$rid" "$K/ca.crt" --wait "${EG_WAIT[$rid]}" \
    >"$STACK_DIR/$rid.jsonl" 2>&1
  check_eq "egress: ${EG_WHAT[$rid]}: not delivered" 1 $?
  stop_server
done
"$CTL" events mft.status.v1 >"$STACK_DIR/status.jsonl"
EV_PY='
import json, sys
rid, want = sys.argv[2], sys.argv[3]
evs = [json.loads(l)["event"] for l in open(sys.argv[1]) if l.strip()]
evs = [e for e in evs if e.get("request_id") == rid]
states = [e["state"] for e in evs]
last = [e for e in evs if e["state"] in ("retrying", "failed")]
e = last[-1] if last else {}
t = e.get("tls") or {}
alerts = ["%s %s %s" % (a["direction"], a["level"], a["name"]) for a in t.get("alerts", [])]
print(" ".join(states))
print((e.get("error") or {}).get("kind", ""))
print(eval(want))
'
for rid in "${EG[@]}"; do
  mapfile -t r < <(python3 -c "$EV_PY" "$STACK_DIR/status.jsonl" "$rid" "${EG_FACTS[$rid]}")
  check_match "egress: ${EG_WHAT[$rid]}, never sent" "${EG_STATES[$rid]}" "${r[0]:-}"
  check_eq "egress: ... error kind" "${EXPECT[${EG_CASE[$rid]}]}" "${r[1]:-}"
  check_eq "egress: ... DeliveryUpdated.tls carries the facts" True "${r[2]:-}"
done

finish
