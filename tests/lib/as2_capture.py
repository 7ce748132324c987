#!/usr/bin/env python3
"""A capturing AS2 partner for the interop tests (plain HTTP, loopback only).

  as2_capture.py PORTFILE DIR

Listens on a free 127.0.0.1 port (written to PORTFILE once listening) and
answers every POST with HTTP 200 and an empty body: a partner that was asked
for no MDN. Each request is saved as DIR/NNNN/ with

  headers      the request headers, one "Name: value" line each, in order (CRLF)
  body         the exact body bytes (chunked transfer coding undone)
  message-id   the Message-ID header without angle brackets

A request directory is written under a temporary name and renamed when
complete, so a reader never sees half of one. Stops on SIGTERM. Test tooling
only; python3 standard library only.
"""
import itertools
import os
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpbody  # noqa: E402

PORTFILE, DIR = sys.argv[1], sys.argv[2]
counter = itertools.count(1)
lock = threading.Lock()


class Handler(httpbody.QuietHandler):

    def do_POST(self):
        body = self.read_body()
        with lock:
            n = next(counter)
        tmp = os.path.join(DIR, f'.tmp-{n:04d}')
        os.makedirs(tmp)
        with open(os.path.join(tmp, 'headers'), 'wb') as f:
            for k, v in self.headers.items():
                f.write(f'{k}: {v}\r\n'.encode('latin-1'))
        with open(os.path.join(tmp, 'body'), 'wb') as f:
            f.write(body)
        with open(os.path.join(tmp, 'message-id'), 'w') as f:
            f.write(self.headers.get('Message-ID', '').strip().strip('<>') + '\n')
        os.rename(tmp, os.path.join(DIR, f'{n:04d}'))
        self.send_response(200)
        self.send_header('Content-Length', '0')
        self.end_headers()

    def do_GET(self):  # liveness probe
        self.send_response(200)
        self.send_header('Content-Length', '2')
        self.end_headers()
        self.wfile.write(b'ok')


def main():
    os.makedirs(DIR, exist_ok=True)
    httpbody.serve(Handler, PORTFILE)


if __name__ == '__main__':
    main()
