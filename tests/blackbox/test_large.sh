#!/usr/bin/env bash
# Black-box: large messages through the real mft-ingress with bounded memory.
# Messages of tens of megabytes built by the `openssl cms` command line
# (signed + encrypted, binary and base64 transfer encodings, a streamed BER
# one with indefinite lengths), posted by curl over mutual TLS. Each must get
# a positive MDN with the MIC `openssl dgst` computes, the stored payload must
# be byte for byte the original (sha256sum), and the ingress's peak resident
# memory (VmHWM) must grow by less than half the message: layers are streamed
# through temporary files (MFT_INGRESS_SPILL_THRESHOLD), never held whole.
# The size is MFT_TEST_LARGE_MB (64 by default); ./mft bench ingress measures
# 100 MB and docs/benchmarks.md has the figures.
set -uo pipefail
ROOT=${MFT_SRC:?}
export MFT_BIN=${MFT_BIN:?}
export STACK_DIR; STACK_DIR=$(mktemp -d /tmp/mft-large.XXXXXX)
source "$ROOT/tools/stack.sh"; source "$ROOT/tools/partner.sh"; source "$ROOT/tests/lib/tap.sh"
trap 'stack_stop; keep_on_failure' EXIT
MB=${MFT_TEST_LARGE_MB:-64}

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
   "tls_client_certs": ["$K/globex-client.crt"],
   "require_signature": true, "require_encryption": true, "mdn_signing": "if-requested"}]}
JSON
"$MFT_BIN/mftctl" apply -f "$STACK_DIR/test.json" >/dev/null 2>&1 || { echo "apply failed"; exit 1; }
# Under AddressSanitizer (./mft test) freed memory is held in a quarantine of up
# to 256 MB by design (GnuTLS alone frees a buffer per TLS record): keep it
# small here so that what is measured is what the code holds.
stack_ingress MFT_INGRESS_MAX_BODY=1G \
  ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=256" || exit 1
URL=https://localhost:${MFT_INGRESS_HTTPS_ADDR#*:}/as2
export AS2_FROM=GLOBEX AS2_TO=ACME AS2_CA=$K/ca.crt
export AS2_TLS_CERT=$K/globex-client.crt AS2_TLS_KEY=$K/globex-client.key
export AS2_SIGNER=$K/globex-signing.crt AS2_SIGNER_KEY=$K/globex-signing.key
export AS2_RECIP=$K/acme-encryption.crt AS2_SIGN_MD=sha256 AS2_CIPHER=aes256
hwm_kb() { awk '/^VmHWM:/ {print $2}' "/proc/$INGRESS_PID/status"; }
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$INGRESS_PID/status"; }
# resets the peak (VmHWM) to the current RSS, so each message is measured alone
reset_peak() { echo 5 >"/proc/$INGRESS_PID/clear_refs"; }
stored_sha() { # the sha256 of the newest stored payload-1
  local f; f=$(find "$STACK_DIR/payloads" -name 'payload-1' -printf '%T@ %p\n' | sort -n | tail -1 | cut -d' ' -f2)
  [ -n "$f" ] && sha256sum "$f" | cut -d' ' -f1
}

# large_case NAME CTE [streamed] — one message of $MB MB through ingress
large_case() {
  local name=$1 cte=$2 streamed=${3:-} D=$STACK_DIR/$1
  head -c $((MB * 1024 * 1024)) /dev/urandom >"$STACK_DIR/$name.bin"
  local want; want=$(sha256sum "$STACK_DIR/$name.bin" | cut -d' ' -f1)
  AS2_CTE=$cte as2_build "$D" "$STACK_DIR/$name.bin" 2>"$D.err" || { not_ok "$name: as2_build failed"; return; }
  if [ -n "$streamed" ]; then # re-encrypt what was signed as BER with indefinite lengths
    openssl cms -encrypt -binary -stream -aes-256-cbc -in "$D/signed.eml" -outform DER \
      -out "$D/body" "$AS2_RECIP" || { not_ok "$name: openssl -stream failed"; return; }
    check_eq "$name: the body really is indefinite-length BER" "3080" "$(head -c 2 "$D/body" | od -An -tx1 | tr -d ' \n')"
  fi
  reset_peak
  local before; before=$(rss_kb)
  as2_post "$D" "$URL" || { not_ok "$name: curl failed"; return; }
  local after; after=$(hwm_kb)
  grep -E '^(Rss|Anon)' "/proc/$INGRESS_PID/smaps_rollup" | tr -s ' ' | paste -sd' ' | sed "s/^/# $name: /"
  check_eq "$name: HTTP 200" 200 "$(cat "$D/http_code")"
  mdn_check "$D" "$K/acme-signing.crt" 2>/dev/null
  check_match "$name: positive MDN" '; processed$' "${MDN_DISPOSITION:-}"
  check_eq "$name: MIC = openssl dgst" "$(cat "$D/mic.expected")" "${MDN_MIC%%,*}"
  check_match "$name: MIC algorithm sha-256 (in the spelling asked for)" ', ?sha-?256$' "${MDN_MIC:-}"
  check_eq "$name: stored payload = original (sha256)" "$want" "$(stored_sha)"
  local grew=$(((after - before) / 1024)) limit=$((MB / 2))
  if ((after - before < MB * 1024 / 2)); then
    ok "$name: ingress peak memory grew by ${grew} MB for a ${MB} MB message (< ${limit} MB)"
  else
    not_ok "$name: ingress peak memory grew by ${grew} MB for a ${MB} MB message (limit ${limit} MB)"
  fi
  rm -f "$STACK_DIR/$name.bin" "$D"/{entity,signed.eml,enc.der}
}

large_case binary binary
large_case base64 base64
large_case streamed binary streamed
finish
