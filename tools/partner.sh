# partner.sh — acts as a trading partner with independent tools only: the
# `openssl cms` command line builds the AS2 message, `curl` posts it over HTTPS
# with a client certificate, and `openssl cms -verify` checks the MDN. Sourced
# by ./mft demo, the black-box and interop tests, and the benchmarks. None of
# our own code is used to build or check what goes on the wire.
#
# as2_build DIR PAYLOAD  — builds DIR/body and DIR/ctype (+ DIR/cte) from
#   PAYLOAD, per these variables:
#     AS2_SIGN_MD    sha1|sha256|sha384|sha512 or "" (unsigned)
#     AS2_SIGNER     partner signing cert (PEM);  AS2_SIGNER_KEY its key
#     AS2_CIPHER     aes128|aes192|aes256|des3 or "" (unencrypted); AS2_RECIP station enc cert
#     AS2_CTE        binary|base64  (payload part and outer body)
#     AS2_FILENAME   file name in Content-Disposition (default: payload's name)
#   DIR/mic.expected — base64 MIC computed by `openssl dgst` with AS2_MIC_MD
#   (default: the signing digest or sha256) over the exact signed entity, the
#   encrypted entity when unsigned, or the content alone when neither (RFC 4130 7.3.1)
# as2_post DIR URL       — posts DIR/body; response in DIR/resp.headers, DIR/resp.body
#   AS2_FROM AS2_TO AS2_TLS_CERT AS2_TLS_KEY AS2_CA AS2_MDN (signed|unsigned|none)
# mdn_check DIR CERT     — verifies a signed MDN with openssl; writes DIR/mdn.txt
#   (the report), and sets MDN_DISPOSITION, MDN_MIC, MDN_SIGNED

as2_build() {
  local dir=$1 payload=$2 name
  name=${AS2_FILENAME:-$(basename "$payload")}
  mkdir -p "$dir"
  printf '%s' "$name" >"$dir/filename"
  local entity=$dir/entity cte=${AS2_CTE:-binary} md=${AS2_SIGN_MD:-}
  # AS2_STREAM=1: openssl streams (-stream; the envelope in indefinite-length
  # BER) instead of holding the whole message in memory, which fails at 4 GB
  local stream=(); [ -n "${AS2_STREAM:-}" ] && stream=(-stream)
  local mic_md=${AS2_MIC_MD:-${md:-sha256}}
  {
    printf 'Content-Type: application/edi-x12\r\n'
    printf 'Content-Disposition: attachment; filename="%s"\r\n' "$name"
    if [ "$cte" = base64 ]; then
      printf 'Content-Transfer-Encoding: base64\r\n\r\n'
      base64 -w 76 "$payload" | sed 's/$/\r/'
    else
      printf 'Content-Transfer-Encoding: binary\r\n\r\n'
      cat "$payload"
    fi
  } >"$entity"
  local inner=$entity
  if [ -n "$md" ]; then
    openssl cms -sign -binary -crlfeol "${stream[@]}" -md "$md" -in "$entity" \
      -signer "$AS2_SIGNER" -inkey "$AS2_SIGNER_KEY" -out "$dir/signed.eml" || return 1
    inner=$dir/signed.eml
  fi
  # the MIC, independently: a digest of the exact entity that was signed
  openssl dgst -"$mic_md" -binary "$entity" | base64 -w0 >"$dir/mic.expected"
  if [ -n "${AS2_CIPHER:-}" ]; then
    local c; case $AS2_CIPHER in des3) c=-des3 ;; aes*) c=-aes-${AS2_CIPHER#aes}-cbc ;; esac
    openssl cms -encrypt -binary "${stream[@]}" "$c" -in "$inner" -outform DER \
      -out "$dir/enc.der" "$AS2_RECIP" || return 1
    printf 'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"' >"$dir/ctype"
    if [ "$cte" = base64 ]; then
      base64 -w 76 "$dir/enc.der" | sed 's/$/\r/' >"$dir/body"; echo base64 >"$dir/cte"
    else
      cp "$dir/enc.der" "$dir/body"; echo binary >"$dir/cte"
    fi
  elif [ -n "$md" ]; then
    # split openssl's S/MIME output: its top headers become HTTP headers
    python3 - "$dir/signed.eml" "$dir" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
head, _, body = data.partition(b'\r\n\r\n')
ctype = b''
for line in head.replace(b'\r\n\t', b' ').replace(b'\r\n ', b' ').split(b'\r\n'):
    if line.lower().startswith(b'content-type:'):
        ctype = line.split(b':', 1)[1].strip()
open(sys.argv[2] + '/ctype', 'wb').write(ctype)
open(sys.argv[2] + '/body', 'wb').write(body)
PY
    echo binary >"$dir/cte"
  else
    python3 - "$entity" "$dir" <<'PY'
import sys
data = open(sys.argv[1], 'rb').read()
head, _, body = data.partition(b'\r\n\r\n')
hdr = {}
for line in head.split(b'\r\n'):
    k, _, v = line.partition(b':')
    hdr[k.strip().lower()] = v.strip()
open(sys.argv[2] + '/ctype', 'wb').write(hdr[b'content-type'])
open(sys.argv[2] + '/body', 'wb').write(body)
open(sys.argv[2] + '/cte', 'wb').write(hdr.get(b'content-transfer-encoding', b'binary') + b'\n')
PY
    # RFC 4130 7.3.1: neither signed nor encrypted, the MIC is over the content alone
    openssl dgst -"$mic_md" -binary "$dir/body" | base64 -w0 >"$dir/mic.expected"
  fi
}

as2_post() {
  local dir=$1 url=$2 mdn=${AS2_MDN:-signed} mic=${AS2_MIC_MD:-${AS2_SIGN_MD:-sha256}}
  local id; id="<$(openssl rand -hex 12)@partner.example>"
  echo "$id" >"$dir/message-id"
  local args=(-sS --http1.1 -o "$dir/resp.body" -D "$dir/resp.headers" -w '%{http_code}'
    -H "AS2-Version: 1.2" -H "AS2-From: $AS2_FROM" -H "AS2-To: $AS2_TO"
    -H "Message-ID: $id" -H "Content-Type: $(cat "$dir/ctype")" -H "MIME-Version: 1.0"
    -H "Content-Transfer-Encoding: $(cat "$dir/cte")" -H "Expect:"
    -H "Content-Disposition: attachment; filename=\"$(cat "$dir/filename" 2>/dev/null || echo smime.p7m)\"")
  # curl holds a --data-binary file in memory and refuses ~1 GB: stream big ones
  if (($(stat -c %s "$dir/body") > 268435456)); then
    args+=(-X POST -T "$dir/body")
  else
    args+=(--data-binary "@$dir/body")
  fi
  [ -n "${AS2_TLS_CERT:-}" ] && args+=(--cert "$AS2_TLS_CERT" --key "$AS2_TLS_KEY")
  [ -n "${AS2_CA:-}" ] && args+=(--cacert "$AS2_CA")
  case $mdn in
    signed) args+=(-H "Disposition-Notification-To: mailto:as2@partner.example"
      -H "Disposition-Notification-Options: signed-receipt-protocol=optional, pkcs7-signature; signed-receipt-micalg=optional, $mic") ;;
    unsigned) args+=(-H "Disposition-Notification-To: mailto:as2@partner.example") ;;
  esac
  curl "${args[@]}" "${@:3}" "$url" >"$dir/http_code"
}

# mime_field FILE NAME: the value of the first header line NAME: (any case)
mime_field() {
  tr -d '\r' <"$1" | awk -v f="$2" 'tolower($0) ~ "^"f":" {sub(/^[^:]*: */, ""); print; exit}'
}

# mdn_check DIR STATION_SIGNING_CERT: verifies (if signed) and parses the MDN
mdn_check() {
  local dir=$1 cert=$2 ctype
  ctype=$(mime_field "$dir/resp.headers" content-type)
  MDN_SIGNED=no
  { printf 'Content-Type: %s\r\n\r\n' "$ctype"; cat "$dir/resp.body"; } >"$dir/mdn.eml"
  if [[ ${ctype,,} == multipart/signed* ]]; then
    openssl cms -verify -in "$dir/mdn.eml" -CAfile "$cert" -purpose any -out "$dir/mdn.txt" \
      2>"$dir/mdn.verify" || { cat "$dir/mdn.verify" >&2; return 1; }
    MDN_SIGNED=yes
  else
    cp "$dir/mdn.eml" "$dir/mdn.txt"
  fi
  MDN_DISPOSITION=$(mime_field "$dir/mdn.txt" disposition)
  MDN_MIC=$(mime_field "$dir/mdn.txt" received-content-mic)
  export MDN_DISPOSITION MDN_MIC MDN_SIGNED
}
