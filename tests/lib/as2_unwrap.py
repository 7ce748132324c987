#!/usr/bin/env python3
"""Undoes a captured AS2 request layer by layer with the openssl command line,
for the interop tests (an independent check of what our sender emits).

  as2_unwrap.py CAPTURE_DIR OUT_DIR --key KEY --recip CERT --signer CERT [--mic-alg ALG]

CAPTURE_DIR is one request saved by as2_capture.py (headers, body). The MIME
entity is rebuilt from the HTTP Content-Type (+ Content-Transfer-Encoding)
header and the body, then each layer is undone:

  enveloped-data / authEnveloped-data   openssl cms -decrypt -inkey KEY -recip CERT
                                        (algorithms read back with openssl cms -cmsout -print)
  multipart/signed                      openssl cms -verify -binary -nointern -certfile SIGNER
                                        -CAfile SIGNER (only SIGNER's key is accepted);
                                        the MIC is openssl dgst over the first part as captured
  compressed-data (RFC 3274)            structure and OIDs read with openssl asn1parse; the
                                        zlib stream of its OCTET STRING inflated by python's
                                        zlib (Debian's openssl has no zlib)
  anything else                         the payload: base64 decoded when its CTE says so

Every intermediate entity is written to OUT_DIR (NN-<layer>.mime), the payload
to OUT_DIR/payload. Prints one JSON object: layers (a list such as
["enveloped aes-256-cbc rsaEncryption", "signed sha256", "compressed zlib",
"data"]), mic / mic_alg (signed: over the signed first part, with the digest of
micalg; unsigned: RFC 4130 7.3.1 with --mic-alg, over the payload entity, headers
included, as found under the encryption and/or compression layers, or over the
HTTP body when there is no layer), filename, content_type. Exit status 1 with
the failing command's output on stderr when a layer cannot be undone.
"""
import argparse
import base64
import json
import os
import re
import subprocess
import sys
import zlib

DIGESTS = {'sha1': 'sha1', 'sha-1': 'sha1', 'sha224': 'sha224', 'sha-224': 'sha224',
           'sha256': 'sha256', 'sha-256': 'sha256', 'sha384': 'sha384', 'sha-384': 'sha384',
           'sha512': 'sha512', 'sha-512': 'sha512', 'md5': 'md5'}


class Fail(Exception):
    pass


def run(cmd, data=None):
    p = subprocess.run(cmd, input=data, capture_output=True)
    if p.returncode != 0:
        raise Fail(f"{' '.join(cmd)}: exit {p.returncode}: "
                   f"{p.stderr.decode(errors='replace').strip()[:600]}")
    return p.stdout


def split_entity(raw):
    """(headers dict lower-case -> value, body bytes) of a MIME entity."""
    m = re.search(rb'\r?\n\r?\n', raw)
    if not m:
        raise Fail('no blank line after the MIME headers')
    head, body = raw[:m.start()], raw[m.end():]
    headers = {}
    for line in re.split(rb'\r?\n(?![ \t])', head):
        if b':' not in line:
            raise Fail(f'bad header line {line[:80]!r}')
        k, v = line.split(b':', 1)
        headers[k.strip().decode().lower()] = re.sub(r'\s+', ' ', v.decode('latin-1')).strip()
    return headers, body


def param(ctype, name):
    m = re.search(r';\s*' + name + r'\s*=\s*("([^"]*)"|[^;\s]+)', ctype, re.I)
    return None if not m else (m.group(2) if m.group(2) is not None else m.group(1))


def dgst(alg, data):
    return base64.b64encode(run(['openssl', 'dgst', '-' + DIGESTS[alg.lower()], '-binary'],
                                data)).decode()


def cms_print(der):
    return run(['openssl', 'cms', '-cmsout', '-print', '-inform', 'DER'], der).decode()


def alg_after(text, field):
    m = re.search(field + r':\s*\n?\s*algorithm:\s*(\S+)', text)
    return m.group(1) if m else '?'


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('capture')
    ap.add_argument('out')
    ap.add_argument('--key', required=True)
    ap.add_argument('--recip', required=True)
    ap.add_argument('--signer', required=True)
    ap.add_argument('--mic-alg', default='sha1')
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)

    http_headers, _ = split_entity(open(os.path.join(a.capture, 'headers'), 'rb').read() + b'\r\n')
    http_body = open(os.path.join(a.capture, 'body'), 'rb').read()
    head = 'Content-Type: ' + http_headers['content-type'] + '\r\n'
    for h in ('Content-Transfer-Encoding', 'Content-Disposition'):
        if h.lower() in http_headers:
            head += h + ': ' + http_headers[h.lower()] + '\r\n'
    entity = head.encode() + b'\r\n' + http_body

    layers, out = [], {}
    step = 0
    while True:
        step += 1
        hdrs, body = split_entity(entity)
        ctype = hdrs.get('content-type', 'text/plain')
        ctl = ctype.lower()
        cte = hdrs.get('content-transfer-encoding', '7bit').lower()
        smime_type = (param(ctype, 'smime-type') or '').lower()
        name = f'{step:02d}'
        open(os.path.join(a.out, name + '-entity.mime'), 'wb').write(entity)
        if ctl.startswith('application/pkcs7-mime') and smime_type in ('enveloped-data',
                                                                       'authenveloped-data'):
            der = base64.b64decode(body) if cte == 'base64' else body
            info = cms_print(der)
            cipher = alg_after(info, 'contentEncryptionAlgorithm')
            kt = alg_after(info, 'keyEncryptionAlgorithm')
            if kt == 'rsaesOaep':  # RSAES-OAEP-params: [0] hashFunc, [1] maskGenFunc
                seg = info[info.find('rsaesOaep'):info.find('encryptedKey:')]
                oids = re.findall(r'OBJECT\s+:(\S+)', seg)
                hash_alg = oids[0] if oids and oids[0] != 'mgf1' else 'sha1'
                mgf = oids[oids.index('mgf1') + 1] if 'mgf1' in oids[:-1] else 'sha1'
                kt += f' hash={hash_alg} mgf1={mgf}'
            kind = 'authEnveloped' if smime_type == 'authenveloped-data' else 'enveloped'
            layers.append(f'{kind} {cipher} {kt}')
            # -inform SMIME on the rebuilt entity when it is base64, DER otherwise
            # (openssl's S/MIME reader always expects base64)
            if cte == 'base64':
                entity = run(['openssl', 'cms', '-decrypt', '-binary', '-inform', 'SMIME',
                              '-inkey', a.key, '-recip', a.recip], entity)
            else:
                entity = run(['openssl', 'cms', '-decrypt', '-binary', '-inform', 'DER',
                              '-inkey', a.key, '-recip', a.recip], der)
        elif ctl.startswith('multipart/signed'):
            bnd = param(ctype, 'boundary')
            micalg = (param(ctype, 'micalg') or '').lower()
            if not bnd:
                raise Fail('multipart/signed without a boundary')
            delim = b'--' + bnd.encode()
            start = body.find(delim + b'\r\n')
            if start < 0:
                raise Fail('first boundary not found')
            first_start = start + len(delim) + 2
            end = body.find(b'\r\n' + delim, first_start)
            if end < 0:
                raise Fail('second boundary not found')
            first = body[first_start:end]
            sig_entity = body[end + 2 + len(delim):]
            sig_entity = sig_entity[sig_entity.find(b'\n') + 1:]
            sig_hdrs, sig_body = split_entity(sig_entity)
            sig_body = sig_body[:sig_body.find(b'\r\n' + delim)]
            sig_der = base64.b64decode(sig_body)
            md = alg_after(cms_print(sig_der), 'digestAlgorithm')
            layers.append(f'signed {md} micalg={micalg}')
            if micalg not in DIGESTS:
                raise Fail(f'unknown micalg {micalg!r}')
            out['mic'] = dgst(micalg, first)
            out['mic_alg'] = micalg
            # The signature over the exact bytes of the first part, detached:
            # OpenSSL 3.0's multipart reader in -binary mode keeps the CR of the
            # CRLF before the closing delimiter as content, so it cannot check
            # binary parts itself.
            first_path = os.path.join(a.out, name + '-signed-content')
            sig_path = os.path.join(a.out, name + '-signature.der')
            open(first_path, 'wb').write(first)
            open(sig_path, 'wb').write(sig_der)
            verify = ['openssl', 'cms', '-verify', '-nointern', '-certfile', a.signer,
                      '-CAfile', a.signer, '-purpose', 'any']
            content = run(verify + ['-binary', '-inform', 'DER', '-in', sig_path,
                                    '-content', first_path])
            if content != first:
                raise Fail('openssl cms -verify returned other bytes than the first part')
            # When the first part is plain CRLF text (base64 payloads), openssl's own
            # S/MIME reader must accept the whole multipart/signed entity as well.
            if not re.search(rb'(?<!\r)\n|\r(?!\n)', first):
                if run(verify + ['-inform', 'SMIME'], entity) != first:
                    raise Fail('openssl cms -verify -inform SMIME returned other bytes')
                layers[-1] += ' smime-reader'
            entity = content
        elif ctl.startswith('application/pkcs7-mime') and smime_type == 'compressed-data':
            der = base64.b64decode(body) if cte == 'base64' else body
            dump = run(['openssl', 'asn1parse', '-inform', 'DER'], der).decode()
            if ':id-smime-ct-compressedData' not in dump or ':zlib compression' not in dump:
                raise Fail('not a CompressedData with zlib: ' + dump[:400])
            octets = [m for m in re.finditer(
                r'^\s*(\d+):d=\d+\s+hl=(\d+)\s+l=\s*(\d+)\s+prim:\s+OCTET STRING', dump, re.M)]
            if len(octets) != 1:
                raise Fail(f'{len(octets)} OCTET STRINGs in the CompressedData (1 expected)')
            off, hl, ln = (int(x) for x in octets[0].groups())
            zs = der[off + hl:off + hl + ln]
            d = zlib.decompressobj()
            entity = d.decompress(zs) + d.flush()
            if not d.eof or d.unused_data:
                raise Fail('the zlib stream is truncated or followed by other bytes')
            layers.append('compressed zlib')
        else:
            if cte == 'base64':
                payload = base64.b64decode(body, validate=False)
            elif cte in ('binary', '7bit', '8bit'):
                payload = body
            else:
                raise Fail(f'unexpected Content-Transfer-Encoding {cte}')
            open(os.path.join(a.out, 'payload'), 'wb').write(payload)
            layers.append('data')
            leaf = entity
            out['content_type'] = ctype
            out['filename'] = param(hdrs.get('content-disposition', ''), 'filename')
            break
        if step > 8:
            raise Fail('too many layers')
    if 'mic' not in out:  # unsigned: RFC 4130 7.3.1, RFC 5402
        out['mic_alg'] = a.mic_alg
        out['mic'] = dgst(a.mic_alg, leaf if len(layers) > 1 else http_body)
    out['layers'] = layers
    print(json.dumps(out))


if __name__ == '__main__':
    try:
        main()
    except Fail as e:
        print(f'as2_unwrap: {e}', file=sys.stderr)
        sys.exit(1)
