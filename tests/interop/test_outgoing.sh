#!/usr/bin/env bash
# Interop, outgoing: the AS2 messages our sender (the real mft-egress, driven
# by `mftctl send` against redis and the embedded Kafka broker) puts on the
# wire are read back by two INDEPENDENT implementations:
#
#   1. the openssl command line (tests/lib/as2_unwrap.py): `openssl cms
#      -decrypt` with the partner's key, `openssl cms -verify` with acme's
#      signing certificate only, `openssl asn1parse` + python's zlib for
#      RFC 3274 compressed-data, `openssl dgst` for the MIC; the payload bytes
#      must be the original file's, the MIC the one egress expects back
#      (DeliveryUpdated.mic of `mftctl send --wait`), the algorithms the ones
#      asked for (read back with `openssl cms -cmsout -print`);
#   2. the npm package libas2 0.8.2 (tests/lib/libas2_check.js): AS2Parser,
#      AS2MimeNode.decrypt, AS2Crypto.verify; payload bytes and libas2's own
#      MIC compared the same way. npm must reach its registry: no registry,
#      no pass.
#
# The partner is a capturing HTTP server (tests/lib/as2_capture.py, loopback)
# that answers 200 with no MDN ("mdn": "none"), so egress marks each message
# delivered and the exact request stays on disk. A last section proves the
# checks can fail: one byte of a signed payload is flipped and both readers
# must reject it.
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-interop-out.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tests/lib/tap.sh"
trap 'stack_stop; keep_on_failure' EXIT
CTL=$MFT_BIN/mftctl
W=$STACK_DIR/work CAP=$STACK_DIR/capture
mkdir -p "$W" "$CAP" "$STACK_DIR/logs"

# --- libas2 0.8.2, with its dependencies at the versions of its own lockfile --
# The published tarball carries no lockfile, so the versions below are those of
# package-lock.json in the libas2 repository at the 0.8.2 release (the runtime
# part of it), forced with npm "overrides". With today's newest dependencies
# libas2's crypto misbehaves. Installed in the background while the stack starts.
NODE_DIR=$STACK_DIR/node
mkdir -p "$NODE_DIR"
cat >"$NODE_DIR/package.json" <<'JSON'
{"name": "mft-interop-libas2", "private": true, "version": "0.0.0",
 "dependencies": {"libas2": "0.8.2"},
 "overrides": {
  "@nhs-llc/emailjs-mime-parser": "2.1.0", "@peculiar/asn1-schema": "2.0.17",
  "@peculiar/json-schema": "1.1.12", "@peculiar/webcrypto": "1.1.3", "@types/asn1js": "0.0.1",
  "@types/pvutils": "0.0.2", "asn1js": "2.0.26", "bytestreamjs": "1.0.29",
  "emailjs-addressparser": "2.0.2", "emailjs-base64": "1.1.4", "emailjs-mime-codec": "2.0.9",
  "nodemailer": "6.4.11", "pkijs": "2.1.90", "pvtsutils": "1.0.11", "pvutils": "1.0.17",
  "ramda": "0.26.1", "text-encoding": "0.7.0", "tslib": "2.0.1", "webcrypto-core": "1.1.6"}}
JSON
NPM_PID=
if command -v npm >/dev/null && command -v node >/dev/null; then
  (cd "$NODE_DIR" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error \
    --fetch-retries=1 --fetch-timeout=30000) >"$STACK_DIR/logs/npm.log" 2>&1 &
  NPM_PID=$!
  STACK_PIDS+=("$NPM_PID")
fi

# --- the stack, the keys, the capturing partner ------------------------------
stack_start || exit 1
K=$STACK_DIR/keys
sh "$ROOT/examples/make-demo-keys.sh" "$K" >/dev/null || exit 1
python3 "$ROOT/tests/lib/as2_capture.py" "$STACK_DIR/capture.port" "$CAP" \
  2>"$STACK_DIR/logs/capture.log" &
STACK_PIDS+=($!)
wait_for 10 test -s "$STACK_DIR/capture.port" || { echo "capture server did not start"; exit 1; }
URL=http://127.0.0.1:$(cat "$STACK_DIR/capture.port")/as2

# Station acme sends; four partner records differ in what only the partner
# settings choose (key transport, transfer encoding); all are globex's keys.
python3 - "$K" "$URL" >"$STACK_DIR/gw.json" <<'PY'
import json, sys
K, URL = sys.argv[1:3]
station = {"id": "acme", "as2_id": "ACME",
           "signing": {"cert": f"{K}/acme-signing.crt", "key": f"{K}/acme-signing.key"},
           "encryption": [{"pkcs12": f"{K}/acme-encryption.p12", "password": "demo"}]}
partners = []
for pid, kt, te in [("globex", "rsa-pkcs1", "binary"), ("globex-b64", "rsa-pkcs1", "base64"),
                    ("globex-oaep", "rsa-oaep", "binary"),
                    ("globex-oaep-b64", "rsa-oaep", "base64")]:
    partners.append({"id": pid, "station": "acme", "as2_id": pid.upper(),
                     "signing_cert": f"{K}/globex-signing.crt",
                     "encryption_cert": f"{K}/globex-encryption.crt",
                     "require_signature": False, "require_encryption": False,
                     "send": {"url": URL, "mdn": "none", "key_transport": kt,
                              "transfer_encoding": te, "max_attempts": 1, "timeout_s": 30}})
print(json.dumps({"stations": [station], "partners": partners}, indent=1))
PY
"$CTL" apply -f "$STACK_DIR/gw.json" >"$STACK_DIR/logs/apply.log" 2>&1 ||
  { cat "$STACK_DIR/logs/apply.log"; exit 1; }
stack_egress || exit 1

printf 'UNB+UNOC:3+ACME+GLOBEX+%s:1200+1\nUNH+1+ORDERS:D:96A:UN\nBGM+220+4711+9\nUNT+3+1\nUNZ+1+1\n' \
  "$(date +%y%m%d)" >"$W/order.edi"
head -c 20000 /dev/urandom >"$W/blob.bin"
head -c 300000 /dev/urandom >"$W/big.bin"

# --- the matrix ----------------------------------------------------------------
# id partner sign encrypt compress file. Every digest, every cipher, both key
# transports, both transfer encodings and the three compression modes appear,
# in many combinations.
MATRIX="
c01 globex          sha1   none         none           order.edi
c02 globex          sha256 aes-128-cbc  none           blob.bin
c03 globex          sha512 aes-256-cbc  before-signing order.edi
c04 globex          sha256 des-ede3-cbc after-signing  blob.bin
c05 globex          sha256 aes-256-gcm  none           order.edi
c06 globex          none   aes-256-cbc  none           blob.bin
c07 globex          none   none         none           order.edi
c08 globex          sha384 aes-192-cbc  after-signing  order.edi
c09 globex          sha224 aes-128-gcm  before-signing blob.bin
c10 globex          sha1   des-ede3-cbc before-signing blob.bin
c11 globex          none   des-ede3-cbc before-signing order.edi
c12 globex          sha512 none         after-signing  blob.bin
c13 globex-oaep     sha256 aes-128-cbc  none           order.edi
c14 globex-oaep     sha512 aes-256-gcm  after-signing  blob.bin
c15 globex-oaep     sha1   des-ede3-cbc none           order.edi
c16 globex-oaep     none   aes-256-cbc  before-signing blob.bin
c17 globex-oaep     sha256 aes-256-cbc  before-signing big.bin
c18 globex-b64      sha1   none         none           order.edi
c19 globex-b64      sha256 none         none           blob.bin
c20 globex-b64      sha512 aes-128-cbc  none           order.edi
c21 globex-b64      sha256 aes-256-cbc  none           blob.bin
c22 globex-b64      sha1   des-ede3-cbc none           blob.bin
c23 globex-b64      none   aes-256-cbc  none           order.edi
c24 globex-b64      none   none         none           blob.bin
c25 globex-b64      sha256 aes-256-gcm  none           order.edi
c26 globex-b64      sha256 aes-128-cbc  before-signing blob.bin
c27 globex-b64      sha512 des-ede3-cbc after-signing  order.edi
c28 globex-b64      sha256 none         after-signing  blob.bin
c29 globex-b64      none   none         before-signing order.edi
c30 globex-oaep-b64 sha256 aes-128-cbc  none           order.edi
c31 globex-oaep-b64 sha512 aes-256-cbc  none           blob.bin
c32 globex-oaep-b64 sha1   des-ede3-cbc none           order.edi
c33 globex-oaep-b64 none   aes-128-cbc  none           blob.bin
c34 globex-oaep-b64 sha256 aes-256-gcm  before-signing blob.bin
c35 globex-oaep-b64 sha384 aes-256-cbc  after-signing  order.edi
c36 globex-oaep-b64 sha256 aes-256-cbc  none           big.bin
c37 globex          none   aes-128-cbc  after-signing  blob.bin
c38 globex-b64      none   none         after-signing  order.edi
"

# Every request at once (at most 8 `mftctl send --wait` in flight).
t0=$SECONDS
SENDERS=()
while read -r id partner sign enc cmp file; do
  [ -n "$id" ] || continue
  while (($(jobs -rp | wc -l) >= 8 + ${#STACK_PIDS[@]})); do sleep 0.2; done
  "$CTL" send --partner "$partner" --request-id "$id-$RANDOM$RANDOM" "$W/$file" --sign "$sign" \
    --encrypt "$enc" --compress "$cmp" --mdn none --wait 90 >"$W/$id.send" 2>"$W/$id.send.err" &
  SENDERS+=($!)
done <<<"$MATRIX"
wait "${SENDERS[@]}"
echo "# $(grep -c . <<<"$MATRIX") requests sent and captured in $((SECONDS - t0)) s"

final() { # final ID FIELD — a field of the request's final DeliveryUpdated
  python3 -c 'import json, sys
ev = None
for line in open(sys.argv[1]):
    if line.startswith("{"):
        d = json.loads(line)
        if d.get("state") in ("delivered", "failed"):
            ev = d
v = (ev or {}).get(sys.argv[2])
print("" if v is None else v)' "$W/$1.send" "$2"
}
jget() { python3 -c 'import json, sys; v = json.load(open(sys.argv[1])).get(sys.argv[2]); print(
  "" if v is None else "|".join(v) if isinstance(v, list) else v)' "$1" "$2"; }
capture_of() { # the capture directory of an AS2 Message-ID
  grep -lxF "$1" "$CAP"/*/message-id 2>/dev/null | head -1 | xargs -r dirname
}
micalg_of() { case $1 in sha1) echo sha-1 ;; *) echo "sha-${1#sha}" ;; esac; }
# the layers as2_unwrap.py must find, outermost first
expected_layers() { # partner sign enc cmp
  local partner=$1 sign=$2 enc=$3 cmp=$4 kt=rsaEncryption l=()
  [[ $partner == *oaep* ]] && kt="rsaesOaep hash=sha256 mgf1=sha256"
  if [ "$enc" != none ]; then
    if [[ $enc == *gcm ]]; then l+=("authEnveloped $enc $kt"); else l+=("enveloped $enc $kt"); fi
  fi
  if [ "$sign" != none ]; then
    [ "$cmp" = after-signing ] && l+=("compressed zlib")
    l+=("signed $sign micalg=$(micalg_of "$sign")")
    [ "$cmp" = before-signing ] && l+=("compressed zlib")
  else # unsigned: before or after signing is the same place
    [ "$cmp" != none ] && l+=("compressed zlib")
  fi
  l+=(data)
  local IFS='|'; echo "${l[*]}"
}

SIGNER=$K/acme-signing.crt RCERT=$K/globex-encryption.crt RKEY=$K/globex-encryption.key
while read -r id partner sign enc cmp file; do
  [ -n "$id" ] || continue
  name="$id $partner sign=$sign encrypt=$enc compress=$cmp $file"
  state=$(final "$id" state)
  if [ "$state" != delivered ]; then
    not_ok "$name: not delivered (state [$state]): $(tail -c 300 "$W/$id.send") $(tail -c 300 "$W/$id.send.err")"
    continue
  fi
  mid=$(final "$id" as2_message_id); mic=$(final "$id" mic); mic_alg=$(final "$id" mic_alg)
  D=$(capture_of "$mid")
  if [ -z "$D" ]; then not_ok "$name: delivered but nothing captured for <$mid>"; continue; fi
  echo "$id $D $partner $sign $enc $cmp $file $mic" >>"$W/captured"

  # the HTTP request as a partner sees it
  te=binary; [[ $partner == *b64 ]] && te=base64
  h() { sed -n "s/^$1: //Ip" "$D/headers" | tr -d '\r' | head -1; }
  top_cte=$te; [ "$sign" != none ] && [ "$enc" = none ] && [ "$cmp" != after-signing ] && top_cte=binary
  got="$(h AS2-From) $(h AS2-To) $(h Message-ID) $(h MIME-Version) $(h Content-Transfer-Encoding)"
  check_eq "$name: AS2 headers" "ACME ${partner^^} <$mid> 1.0 $top_cte" "$got"

  # openssl: every layer undone, payload and MIC compared
  U=$W/$id.openssl
  if ! python3 "$ROOT/tests/lib/as2_unwrap.py" "$D" "$U" --key "$RKEY" --recip "$RCERT" \
    --signer "$SIGNER" --mic-alg "$mic_alg" >"$U.json" 2>"$U.err"; then
    not_ok "$name: openssl rejects it: $(head -c 600 "$U.err")"
    continue
  fi
  layers=$(jget "$U.json" layers)
  check_eq "$name: openssl undid the layers" "$(expected_layers "$partner" "$sign" "$enc" "$cmp")" \
    "${layers// smime-reader/}"
  if [ "$te" = base64 ] && [ "$sign" != none ]; then
    check_match "$name: openssl's S/MIME reader takes the multipart/signed as is" 'smime-reader' "$layers"
  fi
  check "$name: openssl: payload identical to the file sent" cmp -s "$W/$file" "$U/payload"
  check_eq "$name: openssl: file name and type" "$file application/octet-stream" \
    "$(jget "$U.json" filename) $(jget "$U.json" content_type)"
  exp_alg=$([ "$sign" = none ] && echo sha-1 || micalg_of "$sign")
  check_eq "$name: MIC and its algorithm = openssl dgst over what was signed (RFC 4130 7.3.1)" \
    "$mic $exp_alg" "$(jget "$U.json" mic) $mic_alg"
done <<<"$MATRIX"

# --- libas2 -------------------------------------------------------------------
# What libas2 0.8.2 can read (see ../shared/interop/README.md), and so what is
# asked of it:
#  - base64 transfer encoding only: its parser turns the body into a UTF-8
#    string, which destroys binary DER and binary payloads (and it keeps the
#    CRLF before a boundary in a binary part);
#  - no AES-GCM: AuthEnvelopedData does not parse as EnvelopedData in pkijs;
#  - no RFC 3274 compression ("not implemented"): with compression before
#    signing it verifies the signature over the compressed entity (MIC
#    included) and stops there; compression after signing leaves it nothing;
#  - PKCS#1 v1.5 key transport only under node --security-revert=CVE-2023-46809
#    (Node refuses RSA_PKCS1_PADDING decryption since the Marvin fix);
#    RSAES-OAEP needs nothing;
#  - small messages only (its parser fails above ~120 KB): not big.bin.
LIBAS2=0
if [ -z "$NPM_PID" ]; then
  not_ok "libas2: npm or node is not installed"
elif ! wait "$NPM_PID"; then
  not_ok "libas2: npm install libas2@0.8.2 failed (registry unreachable?): $(tail -c 600 "$STACK_DIR/logs/npm.log")"
else
  # every pinned dependency resolves, from libas2's own directory, to its pin
  pins=$(NODE_PATH="$NODE_DIR/node_modules" node -e '
const path = require("path"), fs = require("fs");
const root = process.argv[1], p = JSON.parse(fs.readFileSync(path.join(root, "package.json")));
const base = path.join(root, "node_modules", "libas2");
const bad = [];
const lib = require(path.join(base, "package.json")).version;
if (lib !== "0.8.2") bad.push("libas2@" + lib);
for (const [n, v] of Object.entries(p.overrides)) {
  let got;
  try { got = require(require.resolve(n + "/package.json", { paths: [base] })).version } catch (e) { got = "missing" }
  if (n.startsWith("@types/")) continue;
  if (got !== v) bad.push(n + "@" + got + " (want " + v + ")");
}
console.log(bad.join(", "));' "$NODE_DIR" 2>&1)
  if [ -z "$pins" ]; then ok "libas2: 0.8.2 installed with its lockfile's dependency versions"; LIBAS2=1
  else not_ok "libas2: wrong versions installed: $pins"; fi
fi

libas2() { # libas2 CAPTURE OUT [node options]
  local d=$1 o=$2; shift 2
  local rc=0
  NODE_PATH="$NODE_DIR/node_modules" node "$@" "$ROOT/tests/lib/libas2_check.js" "$d" "$o" \
    "$SIGNER" "$RCERT" "$RKEY" >"$o.stdout" || rc=$?
  grep '^{' "$o.stdout" | tail -1 # node prints its --security-revert warning on stdout
  return $rc
}
if ((LIBAS2)); then
  n_lib=0
  while read -r id D partner sign enc cmp file mic; do
    [[ $partner == *b64 ]] || continue
    [[ $enc == *gcm ]] && continue
    [ "$file" = big.bin ] && continue
    [ "$cmp" = after-signing ] && continue
    [ "$sign" = none ] && [ "$cmp" != none ] && continue
    name="$id $partner sign=$sign encrypt=$enc compress=$cmp $file"
    flags=()
    [[ $partner != *oaep* ]] && [ "$enc" != none ] && flags=(--security-revert=CVE-2023-46809)
    L=$W/$id.libas2
    n_lib=$((n_lib + 1))
    if ! libas2 "$D" "$L.payload" "${flags[@]}" >"$L.json" 2>"$L.err"; then
      not_ok "$name: libas2 rejects it: $(grep -v 'SECURITY WARNING' "$L.err" | head -c 600)"
      continue
    fi
    want=(); [ "$enc" != none ] && want+=(enveloped)
    [ "$sign" != none ] && want+=("signed SHA-${sign#sha}")
    if [ "$cmp" = before-signing ]; then want+=(compressed); else want+=(data); fi
    check_eq "$name: libas2 read the layers" "$(IFS='|'; echo "${want[*]}")" "$(jget "$L.json" layers)"
    if [ "$cmp" = none ]; then
      check "$name: libas2: payload identical to the file sent" cmp -s "$W/$file" "$L.payload"
    fi
    if [ "$sign" != none ]; then
      check_eq "$name: libas2 verified the signature with acme's certificate; its MIC = ours" \
        "$mic" "$(jget "$L.json" mic)"
    fi
  done <"$W/captured"
  check "libas2: at least 10 messages read" test "$n_lib" -ge 10
fi

# --- the checks can fail: a flipped byte in a signed payload is refused -------
# c19: signed sha256, not encrypted, base64 (both readers take it). One
# character of the payload's base64 inside the signed part is changed.
read -r _ D _ < <(grep '^c19 ' "$W/captured")
if [ -n "${D:-}" ]; then
  T=$W/tampered; mkdir -p "$T"; cp "$D/headers" "$T/"
  python3 - "$D/body" "$T/body" <<'PY'
import sys
b = bytearray(open(sys.argv[1], 'rb').read())
i = b.index(b'\r\n\r\n', b.index(b'Content-Disposition')) + 4 + 10  # inside the payload's base64
b[i] = ord('A') if b[i] != ord('A') else ord('B')
open(sys.argv[2], 'wb').write(bytes(b))
PY
  if python3 "$ROOT/tests/lib/as2_unwrap.py" "$T" "$T/openssl" --key "$RKEY" --recip "$RCERT" \
    --signer "$SIGNER" >/dev/null 2>"$T/openssl.err"; then
    not_ok "tampered c19: openssl accepted a payload with a changed byte"
  else
    check_match "tampered c19: openssl refuses it" 'Verification failure|verify' "$(cat "$T/openssl.err")"
  fi
  if ((LIBAS2)); then
    if libas2 "$T" "$T/libas2.payload" >/dev/null 2>"$T/libas2.err"; then
      not_ok "tampered c19: libas2 accepted a payload with a changed byte"
    else
      check_match "tampered c19: libas2 refuses it" 'does not verify' "$(cat "$T/libas2.err")"
    fi
  fi
  # a signature by another key (initech's) than acme's is refused too
  if python3 "$ROOT/tests/lib/as2_unwrap.py" "$D" "$T/other" --key "$RKEY" --recip "$RCERT" \
    --signer "$K/initech-signing.crt" >/dev/null 2>&1; then
    not_ok "c19 checked against initech's certificate: openssl accepted it"
  else
    ok "c19 checked against initech's certificate: openssl refuses it"
  fi
else
  not_ok "tampered c19: c19 was not captured"
fi

echo "# run time $SECONDS s"
finish
