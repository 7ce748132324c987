#!/usr/bin/env python3
"""A misbehaving AS2 partner for the egress tests (plain HTTP, loopback only).

  mock_partner.py PORTFILE UPSTREAM LOGDIR

Listens on a free 127.0.0.1 port (written to PORTFILE) and answers by path:

  /ok-empty       200 with an empty body (a partner asked for no MDN)
  /400            400 Bad Request, always
  /500            500, always
  /flaky          500 for the first request of each Message-ID, then proxies
  /hang           reads the request, then never answers (until the client gives up)
  /notmdn         200 with an HTML page instead of an MDN
  /proxy          forwards to UPSTREAM (mft-ingress's plain-HTTP listener) and relays
  /slow           waits 3 s, then proxies (the request is delivered even if the
                  sender has gone away meanwhile)
  /micmismatch    proxies, then alters the Received-Content-MIC of the (unsigned) MDN

Every request is logged as one JSON line in LOGDIR/requests.log (path,
Message-ID, answer status). Stops on SIGTERM. Test tooling only.
"""
import json
import os
import re
import sys
import threading
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import httpbody  # noqa: E402

PORTFILE, UPSTREAM, LOGDIR = sys.argv[1], sys.argv[2], sys.argv[3]
seen = set()
lock = threading.Lock()

HOP = {'connection', 'keep-alive', 'transfer-encoding', 'content-length', 'host', 'expect',
       'te', 'trailer', 'upgrade', 'proxy-connection'}


def log(entry):
    with lock, open(f'{LOGDIR}/requests.log', 'a') as f:
        f.write(json.dumps(entry) + '\n')


class Handler(httpbody.QuietHandler):

    def answer(self, status, body=b'', headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if not headers or 'Content-Type' not in headers:
            self.send_header('Content-Type', 'text/plain')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        log({'path': self.path, 'message_id': self.headers.get('Message-ID', ''),
             'status': status})

    def proxy(self, data, alter=None):
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        rq = urllib.request.Request(UPSTREAM, data=data, headers=hdrs, method='POST')
        try:
            with urllib.request.urlopen(rq, timeout=30) as r:
                status, rbody, rh = r.status, r.read(), dict(r.headers.items())
        except urllib.error.HTTPError as e:
            status, rbody, rh = e.code, e.read(), dict(e.headers.items())
        if alter:
            rbody = alter(rbody)
        keep = {k: v for k, v in rh.items() if k.lower() not in HOP}
        self.answer(status, rbody, keep)

    def do_POST(self):
        data = self.read_body()
        mid = self.headers.get('Message-ID', '')
        p = self.path.split('?')[0]
        if p == '/ok-empty':
            self.answer(200)
        elif p == '/400':
            self.answer(400, b'no such mailbox\n')
        elif p == '/500':
            self.answer(500, b'internal error\n')
        elif p == '/flaky':
            with lock:
                first = mid not in seen
                seen.add(mid)
            if first:
                self.answer(500, b'try again later\n')
            else:
                self.proxy(data)
        elif p == '/hang':
            log({'path': self.path, 'message_id': mid, 'status': 0})
            time.sleep(60)
        elif p == '/notmdn':
            self.answer(200, b'<html><body>Welcome to nginx!</body></html>\n',
                        {'Content-Type': 'text/html'})
        elif p == '/proxy':
            self.proxy(data)
        elif p == '/slow':
            time.sleep(3)
            self.proxy(data)
        elif p == '/micmismatch':
            self.proxy(data, lambda b: re.sub(
                rb'(Received-Content-MIC:\s*)([A-Za-z0-9+/=]+)', rb'\1AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=', b))
        else:
            self.answer(404, b'unknown path\n')


httpbody.serve(Handler, PORTFILE)
