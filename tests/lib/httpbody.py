"""The request body of a BaseHTTPRequestHandler, chunked or Content-Length:
shared by the test servers (as2_capture.py, mock_partner.py)."""


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
