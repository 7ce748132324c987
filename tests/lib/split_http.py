#!/usr/bin/env python3
"""Splits a captured HTTP request (headers, blank line, body) into what curl
needs: OUT/headers (one "Name: value" per line, folded lines unfolded) and
OUT/body (the exact body bytes). Header block lines may end in LF or CRLF.

  split_http.py FILE OUT
"""
import os
import sys

data = open(sys.argv[1], 'rb').read()
out = sys.argv[2]
os.makedirs(out, exist_ok=True)
# The header block ends at the first empty line, whatever mix of LF and CRLF
# the capture uses (some have LF header lines and a CRLF blank line).
pos = 0
while True:
    nl = data.find(b'\n', pos)
    if nl < 0:
        sys.exit('no header block in ' + sys.argv[1])
    if data[pos:nl].rstrip(b'\r') == b'':
        head, body = data[:pos], data[nl + 1:]
        break
    pos = nl + 1
lines = []
for raw in head.replace(b'\r\n', b'\n').split(b'\n'):
    if raw[:1] in (b' ', b'\t') and lines:
        lines[-1] += b' ' + raw.strip()
    else:
        lines.append(raw)
skip = {b'content-length', b'host', b'connection', b'expect', b'transfer-encoding'}
with open(os.path.join(out, 'headers'), 'wb') as f:
    for line in lines:
        name = line.split(b':', 1)[0].strip().lower()
        if name and name not in skip:
            f.write(line + b'\n')
open(os.path.join(out, 'body'), 'wb').write(body)
