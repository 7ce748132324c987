#!/usr/bin/env node
// libas2_check.js — reads one AS2 request captured by as2_capture.py with the
// npm package libas2 (an independent AS2 implementation), for the interop
// tests:
//
//   node [--security-revert=CVE-2023-46809] libas2_check.js CAPTURE_DIR OUT_FILE \
//        SIGNER_CERT RECIP_CERT RECIP_KEY
//
// The HTTP headers and body go to libas2's AS2Parser, as a server built on
// libas2 would hand them over. Then, layer by layer: an enveloped-data
// message is decrypted with AS2MimeNode.decrypt (RECIP_CERT / RECIP_KEY), a
// multipart/signed one verified with AS2Crypto.verify against SIGNER_CERT
// only (its digest is libas2's own MIC over the signed part), and the payload
// (the first non-S/MIME entity) is written to OUT_FILE. libas2 0.8.2 cannot
// uncompress (RFC 3274: "not implemented"), so a compressed-data entity ends
// the walk without a payload.
//
// Prints one JSON line: {"layers": [...], "mic": ..., "mic_alg": ..., "payload": bool}.
// Exit 1 with the error on stderr when libas2 rejects a layer (a signature that
// does not verify included).
'use strict'
const fs = require('fs')
const path = require('path')
const { AS2Parser, AS2Crypto } = require('libas2')

async function main () {
  const [dir, outFile, signerPath, recipCertPath, recipKeyPath] = process.argv.slice(2)
  const signerCert = fs.readFileSync(signerPath, 'utf8')
  const recipCert = fs.readFileSync(recipCertPath, 'utf8')
  const recipKey = fs.readFileSync(recipKeyPath, 'utf8')
  const headers = {}
  const hop = new Set(['host', 'transfer-encoding', 'content-length', 'expect', 'connection'])
  for (const line of fs.readFileSync(path.join(dir, 'headers'), 'latin1').split('\r\n')) {
    const i = line.indexOf(':')
    if (i > 0 && !hop.has(line.slice(0, i).trim().toLowerCase())) {
      headers[line.slice(0, i).trim()] = line.slice(i + 1).trim()
    }
  }
  const body = fs.readFileSync(path.join(dir, 'body'))
  let node = await AS2Parser.parse({ headers, content: body })
  const out = { layers: [], mic: null, mic_alg: null, payload: false }
  for (let depth = 0; depth < 8; depth++) {
    const ctype = String(node.contentType || '').toLowerCase()
    if (node.smimeType === 'enveloped-data' || node.smimeType === 'authenveloped-data') {
      out.layers.push(node.smimeType === 'authenveloped-data' ? 'authEnveloped' : 'enveloped')
      node = await node.decrypt({ cert: recipCert, key: recipKey })
    } else if (ctype.startsWith('multipart/signed')) {
      const digest = await AS2Crypto.verify(node, { cert: signerCert }, true)
      if (!digest) throw new Error('libas2: the signature does not verify with ' + signerPath)
      out.mic = digest.digest.toString('base64')
      out.mic_alg = digest.algorithm
      out.layers.push('signed ' + digest.algorithm)
      node = node.childNodes[0]
    } else if (node.smimeType === 'compressed-data') {
      out.layers.push('compressed')
      break
    } else {
      const c = node.content
      fs.writeFileSync(outFile, Buffer.isBuffer(c) ? c : Buffer.from(c))
      out.layers.push('data')
      out.payload = true
      break
    }
  }
  console.log(JSON.stringify(out))
}

main().catch(e => {
  console.error('libas2_check: ' + (e && e.stack ? e.stack : e))
  process.exit(1)
})
