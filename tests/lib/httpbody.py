"""What the test servers (as2_capture.py, mock_partner.py) share: the request
body of a BaseHTTPRequestHandler, chunked or Content-Length, and a quiet
HTTP/1.1 handler base class."""
import http.server
import os
import signal
import socketserver
import threading


def read_body(handler):
    if handler.headers.get('Transfer-Encoding', '').lower() == 'chunked':
        out = bytearray()
        while True:
            size = int(handler.rfile.readline().split(b';')[0].strip(), 16)
            if size == 0:
                while handler.rfile.readline() not in (b'\r\n', b'\n', b''):
                    pass  # trailers
                return bytes(out)
            out += handler.rfile.read(size)
            handler.rfile.readline()  # CRLF after the chunk
    return handler.rfile.read(int(handler.headers.get('Content-Length') or 0))


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """HTTP/1.1 (keep-alive), no access log, read_body() for POSTs."""
    protocol_version = 'HTTP/1.1'

    def log_message(self, *args):
        pass

    def read_body(self):
        return read_body(self)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def serve(handler, portfile):
    """Serves on a free loopback port, written to portfile once listening
    (atomically: portfile.tmp renamed), until SIGTERM."""
    srv = Server(('127.0.0.1', 0), handler)
    signal.signal(signal.SIGTERM, lambda *a: threading.Thread(target=srv.shutdown).start())
    with open(portfile + '.tmp', 'w') as f:
        f.write(str(srv.server_address[1]))
    os.rename(portfile + '.tmp', portfile)
    srv.serve_forever()
