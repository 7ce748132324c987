#!/bin/sh
# make-demo-keys.sh DIR — generates every demo key and certificate that
# examples/acme.json refers to (as keys/...), with the openssl CLI only.
#
#   ca.{key,crt}                      demo CA (ECDSA P-256) — trusted by the demo
#   unknown-ca.{key,crt}              a second CA that no partner registers
#   acme-signing.{key,crt}            station acme: RSA-2048 signing, self-signed
#   acme-encryption.{key,crt,p12}     station acme: RSA-2048 encryption, self-signed
#                                     (.p12 password "demo", used by acme.json)
#   acme-tls.{key,crt}                ECDSA P-256 TLS server cert, CN=localhost,
#                                     SAN DNS:localhost IP:127.0.0.1, serverAuth, by ca
#   acme-client.{key,crt}             ECDSA P-256 TLS client cert of acme (its tls_client:
#                                     what egress presents to partners), clientAuth, by ca
#   globex-signing.{key,crt}          partner globex: RSA-2048 signing, self-signed
#   globex-encryption.{key,crt}       partner globex: RSA-2048 encryption, self-signed
#   globex-client.{key,crt}           ECDSA P-256 TLS client cert, clientAuth, by ca
#   globex-client-expired.{key,crt}   the same kind, valid 2020-01-01..2020-01-02 only
#   globex-tls.{key,crt}              ECDSA P-256 TLS server cert of globex's own AS2 server
#                                     (where acme sends), CN=localhost, serverAuth, by ca
#   initech-signing.{key,crt}         partner initech: RSA-2048 signing, self-signed
#   initech-encryption.{key,crt}      partner initech: RSA-2048 encryption, self-signed
#   initech-client.{key,crt}          ECDSA P-256 TLS client cert, clientAuth, by ca
#   unknown-client.{key,crt}          ECDSA P-256 client cert (CN=globex) by unknown-ca
#
# MFT_DEMO_TLS_KEY=rsa2048 makes the two CAs and every TLS certificate above
# RSA-2048 instead of ECDSA P-256 (./mft bench tls measures both).
# Keys are unencrypted PKCS#8 PEM, mode 0600. Existing files are overwritten.
# Demo material only: never use these keys for anything real.
set -eu

if [ $# -ne 1 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
    echo "usage: $0 DIR   (e.g. $0 examples/keys)" >&2
    exit 2
fi
command -v openssl >/dev/null || { echo "$0: openssl not found" >&2; exit 1; }

dir=$1
mkdir -p "$dir"
cd "$dir"
umask 077
work=$(mktemp -d "${TMPDIR:-/tmp}/mft-demo-keys.XXXXXX")
trap 'rm -rf "$work"' EXIT

cat >"$work/x509.cnf" <<'EOF'
[ req ]
distinguished_name = dn
prompt = no
[ dn ]
CN = unused
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[ sign_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, nonRepudiation
subjectKeyIdentifier = hash
[ enc_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, keyEncipherment, dataEncipherment
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[ client_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# `openssl ca` is the one CLI in OpenSSL 3.0 that takes explicit start and
# end dates: used for the expired certificate.
mkdir "$work/ca"
: >"$work/ca/index.txt"
cat >"$work/ca.cnf" <<EOF
[ ca ]
default_ca = demo
[ demo ]
dir = $work/ca
database = \$dir/index.txt
new_certs_dir = \$dir
serial = \$dir/serial
default_md = sha256
policy = any
unique_subject = no
copy_extensions = none
[ any ]
commonName = supplied
organizationName = optional
EOF
openssl rand -hex 8 >"$work/ca/serial"

serial() { echo "0x$(openssl rand -hex 8)"; }
rsa_key() { openssl genpkey -quiet -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1"; }
ec_key() { openssl genpkey -quiet -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1"; }
# the key of a CA or TLS certificate: ECDSA P-256 unless MFT_DEMO_TLS_KEY says otherwise
case ${MFT_DEMO_TLS_KEY:-ecdsa-p256} in
ecdsa-p256) tls_key() { ec_key "$1"; } ;;
rsa2048) tls_key() { rsa_key "$1"; } ;;
*) echo "$0: MFT_DEMO_TLS_KEY must be ecdsa-p256 or rsa2048" >&2; exit 2 ;;
esac

# self_signed NAME SUBJECT EXT
self_signed() {
    rsa_key "$1.key"
    openssl req -new -x509 -config "$work/x509.cnf" -extensions "$3" -key "$1.key" \
        -subj "$2" -days 825 -set_serial "$(serial)" -sha256 -out "$1.crt"
}

# issued NAME SUBJECT EXT CA
issued() {
    tls_key "$1.key"
    openssl req -new -config "$work/x509.cnf" -key "$1.key" -subj "$2" -out "$work/$1.csr"
    openssl x509 -req -in "$work/$1.csr" -CA "$4.crt" -CAkey "$4.key" -set_serial "$(serial)" \
        -days 825 -sha256 -extfile "$work/x509.cnf" -extensions "$3" -out "$1.crt" 2>/dev/null
}

# CAs
for ca in ca unknown-ca; do
    case $ca in
    ca) subj="/O=MFT Demo/CN=MFT Demo CA" ;;
    *) subj="/O=Nobody Known/CN=Unknown CA" ;;
    esac
    tls_key "$ca.key"
    openssl req -new -x509 -config "$work/x509.cnf" -extensions ca_ext -key "$ca.key" \
        -subj "$subj" -days 3650 -set_serial "$(serial)" -sha256 -out "$ca.crt"
done

# station acme (AS2 id ACME)
self_signed acme-signing "/O=ACME Corp/CN=ACME AS2 signing" sign_ext
self_signed acme-encryption "/O=ACME Corp/CN=ACME AS2 encryption" enc_ext
openssl pkcs12 -export -inkey acme-encryption.key -in acme-encryption.crt \
    -name acme-encryption -passout pass:demo -out acme-encryption.p12
issued acme-tls "/O=ACME Corp/CN=localhost" server_ext ca
issued acme-client "/O=ACME Corp/CN=ACME" client_ext ca

# partner globex (AS2 id GLOBEX)
self_signed globex-signing "/O=Globex Corporation/CN=GLOBEX AS2 signing" sign_ext
self_signed globex-encryption "/O=Globex Corporation/CN=GLOBEX AS2 encryption" enc_ext
issued globex-client "/O=Globex Corporation/CN=globex" client_ext ca
issued globex-tls "/O=Globex Corporation/CN=localhost" server_ext ca

tls_key globex-client-expired.key
openssl req -new -config "$work/x509.cnf" -key globex-client-expired.key \
    -subj "/O=Globex Corporation/CN=globex (expired)" -out "$work/expired.csr"
cat "$work/x509.cnf" >>"$work/ca.cnf"
openssl ca -batch -notext -config "$work/ca.cnf" -cert ca.crt -keyfile ca.key \
    -extensions client_ext -startdate 20200101000000Z -enddate 20200102000000Z \
    -in "$work/expired.csr" -out globex-client-expired.crt 2>/dev/null

# partner initech (AS2 id INITECH)
self_signed initech-signing "/O=Initech/CN=INITECH AS2 signing" sign_ext
self_signed initech-encryption "/O=Initech/CN=INITECH AS2 encryption" enc_ext
issued initech-client "/O=Initech/CN=initech" client_ext ca

# a client certificate from a CA nobody registered, claiming to be globex
issued unknown-client "/O=Globex Corporation/CN=globex" client_ext unknown-ca

chmod 600 ./*.key ./*.p12
chmod 644 ./*.crt
echo "demo keys and certificates written to $(pwd)"
