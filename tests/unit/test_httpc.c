/*
 * test_httpc — the outbound HTTP(S) client against a real, independent
 * server: a small Python 3 http.server + ssl script (written to a temp dir at
 * test time) that answers POSTs with the SHA-256 of the body it received, the
 * framing it saw (Content-Length or chunked), the client certificate subject,
 * the SNI and some request headers; or a chosen status, or a big body.
 * Certificates are made with the openssl CLI (a CA, another CA, server
 * certificates for localhost / 127.0.0.1, for other.example, an expired one
 * made with `openssl ca -startdate/-enddate`, a client certificate).
 * Cases: exact-certificate trust (with a rollover list), CA trust + host name
 * and IP, name mismatch, pins (right, changed), another CA, expired, mutual TLS
 * with and without our client certificate (TLS 1.3 and 1.2), refused port,
 * chunked vs Content-Length, 503, too-large answers, plain http, not-TLS,
 * timeout, configuration errors, several threads at once. The TLS failure
 * kinds, each from the handshake facts: self-signed, not yet valid, missing
 * intermediate, our certificate refused (unknown CA) in TLS 1.2 and 1.3, no
 * common version (policy TLS 1.3 against a TLS 1.2 server), no shared cipher
 * (policy suites the server lacks), trust mode, own key mismatch, nginx's
 * HTTP 400 for a missing client certificate, the facts of a success, and the
 * handshake-only pre-flight (mft_httpc_handshake). Security level 2: an
 * RSA-1024 server certificate, an RSA-1024 or SHA-1 signed intermediate in
 * the server's chain, and the same weaknesses in our own client certificate
 * and chain (served by listeners at @SECLEVEL=0).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "mft_httpc.h"
#include "mft_tls.h"
#include "mft_testkeys.h"
#include "mft_x509.h"

static const char server_py[] =
    "# Test HTTP(S) server for test_httpc: argv = ports_file, then listeners\n"
    "# \"name,mode,cert,key,cafile,maxver[,ciphers]\" (mode: plain | tls | mtls; maxver 12 or\n"
    "# 13; ciphers: an OpenSSL TLS 1.2 cipher list, which may set the security level).\n"
    "import hashlib, http.server, os, socketserver, ssl, sys, threading, time\n"
    "\n"
    "SNI = {}\n"
    "LOCK = threading.Lock()\n"
    "\n"
    "\n"
    "class Handler(http.server.BaseHTTPRequestHandler):\n"
    "    protocol_version = 'HTTP/1.1'\n"
    "\n"
    "    def log_message(self, *args):\n"
    "        pass\n"
    "\n"
    "    def read_body(self):\n"
    "        if self.headers.get('Transfer-Encoding', '').lower() == 'chunked':\n"
    "            data = b''\n"
    "            while True:\n"
    "                n = int(self.rfile.readline().split(b';')[0].strip(), 16)\n"
    "                if n == 0:\n"
    "                    while self.rfile.readline() not in (b'\\r\\n', b'\\n', b''):\n"
    "                        pass\n"
    "                    return 'chunked', data\n"
    "                data += self.rfile.read(n)\n"
    "                self.rfile.readline()\n"
    "        if 'Content-Length' in self.headers:\n"
    "            return 'length', self.rfile.read(int(self.headers['Content-Length']))\n"
    "        return 'none', b''\n"
    "\n"
    "    def answer(self, code, body, ctype, chunked=False, extra=()):\n"
    "        self.send_response(code)\n"
    "        self.send_header('Content-Type', ctype)\n"
    "        for k, v in extra:\n"
    "            self.send_header(k, v)\n"
    "        if chunked:\n"
    "            self.send_header('Transfer-Encoding', 'chunked')\n"
    "            self.end_headers()\n"
    "            for i in range(0, len(body), 1000):\n"
    "                part = body[i:i + 1000]\n"
    "                self.wfile.write(b'%x\\r\\n' % len(part) + part + b'\\r\\n')\n"
    "            self.wfile.write(b'0\\r\\n\\r\\n')\n"
    "        else:\n"
    "            self.send_header('Content-Length', str(len(body)))\n"
    "            self.end_headers()\n"
    "            self.wfile.write(body)\n"
    "\n"
    "    def do_POST(self):\n"
    "        framing, data = self.read_body()\n"
    "        p = self.path\n"
    "        if p.startswith('/status/'):\n"
    "            return self.answer(int(p[8:]), b'status\\n', 'text/plain', extra=[('Retry-After', "
    "'7')])\n"
    "        if p.startswith('/big/'):\n"
    "            n = int(p[5:].split('?')[0])\n"
    "            return self.answer(200, b'x' * n, 'application/octet-stream', "
    "p.endswith('?chunked'))\n"
    "        if p == '/nginx400':\n"
    "            return self.answer(400, b'<html><head><title>400 No required SSL certificate was "
    "sent</title></head><body><center><h1>400 Bad Request</h1></center><center>No required SSL "
    "certificate was sent</center><hr><center>nginx/1.22.1</center></body></html>\\n', "
    "'text/html')\n"
    "        if p == '/sleep':\n"
    "            time.sleep(3)\n"
    "        client = ''\n"
    "        if hasattr(self.connection, 'getpeercert'):\n"
    "            cert = self.connection.getpeercert()\n"
    "            if cert:\n"
    "                client = ','.join('%s=%s' % rdn[0] for rdn in cert['subject'])\n"
    "        with LOCK:\n"
    "            sni = SNI.get(id(self.connection), '')\n"
    "        h = self.headers\n"
    "        lines = ['sha256=' + hashlib.sha256(data).hexdigest(), 'framing=' + framing,\n"
    "                 'length=%d' % len(data), 'client=' + client, 'sni=' + sni,\n"
    "                 'ua=' + h.get('User-Agent', ''), 'expect=' + h.get('Expect', '-'),\n"
    "                 'ctype=' + h.get('Content-Type', ''), 'as2from=' + h.get('AS2-From', ''),\n"
    "                 'peer=%d' % self.client_address[1]]\n"
    "        self.answer(200, ('\\n'.join(lines) + '\\n').encode(), 'text/plain; charset=utf-8',\n"
    "                    extra=[('X-Echo', 'yes')])\n"
    "\n"
    "\n"
    "class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):\n"
    "    daemon_threads = True\n"
    "    ctx = None\n"
    "\n"
    "    def get_request(self):\n"
    "        sock, addr = self.socket.accept()\n"
    "        sock.settimeout(10)\n"
    "        if self.ctx:\n"
    "            sock = self.ctx.wrap_socket(sock, server_side=True, "
    "do_handshake_on_connect=False)\n"
    "        return sock, addr\n"
    "\n"
    "    def finish_request(self, request, client_address):\n"
    "        try:\n"
    "            if self.ctx:\n"
    "                request.do_handshake()\n"
    "            self.RequestHandlerClass(request, client_address, self)\n"
    "        except (OSError, ValueError):\n"
    "            pass\n"
    "        finally:\n"
    "            with LOCK:\n"
    "                SNI.pop(id(request), None)\n"
    "\n"
    "    def handle_error(self, request, client_address):\n"
    "        pass\n"
    "\n"
    "\n"
    "def on_sni(sock, name, ctx):\n"
    "    with LOCK:\n"
    "        SNI[id(sock)] = name or ''\n"
    "\n"
    "\n"
    "lines = []\n"
    "for spec in sys.argv[2:]:\n"
    "    name, mode, cert, key, cafile, maxver = spec.split(',')[:6]\n"
    "    srv = Server(('127.0.0.1', 0), Handler)\n"
    "    if mode != 'plain':\n"
    "        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)\n"
    "        if len(spec.split(',')) > 6:  # first: '@SECLEVEL=0' lets a weak cert load\n"
    "            ctx.set_ciphers(spec.split(',')[6])\n"
    "        ctx.load_cert_chain(cert, key)\n"
    "        if maxver == '12':\n"
    "            ctx.maximum_version = ssl.TLSVersion.TLSv1_2\n"
    "        if mode == 'mtls':\n"
    "            ctx.verify_mode = ssl.CERT_REQUIRED\n"
    "            ctx.load_verify_locations(cafile)\n"
    "        ctx.sni_callback = on_sni\n"
    "        srv.ctx = ctx\n"
    "    threading.Thread(target=srv.serve_forever, daemon=True).start()\n"
    "    lines.append('%s %d\\n' % (name, srv.server_address[1]))\n"
    "with open(sys.argv[1] + '.tmp', 'w') as f:\n"
    "    f.writelines(lines)\n"
    "os.rename(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "while True:\n"
    "    time.sleep(3600)\n";

static char dir[128];
static pid_t server_pid;
static int port_tls, port_other, port_expired, port_mtls, port_mtls12, port_tls12, port_plain,
    port_closed, port_self, port_notyet, port_inter, port_cipher, port_weak, port_weakca, port_sha1;
static X509 *ca, *ca2, *srv, *other;
static char srv_sha256[65], srv_pin[64];
static char *client_cert_pem, *client_key_pem, *srv_key_pem, *client2_cert_pem, *client2_key_pem;

/* ---- set-up: certificates ------------------------------------------------ */

static void path(char *buf, size_t len, const char *name, const char *ext)
{
    snprintf(buf, len, "%s/%s.%s", dir, name, ext);
}

/* A private key for <name>: EC P-256, or RSA of rsa_bits bits when given. */
static void make_key(const char *name, const char *rsa_bits)
{
    char key[256], opt[64];
    path(key, sizeof(key), name, "key");
    snprintf(opt, sizeof(opt), "rsa_keygen_bits:%s", rsa_bits ? rsa_bits : "");
    assert_int_equal(tk_run_rc("openssl", "genpkey", "-algorithm", rsa_bits ? "RSA" : "EC",
                               "-pkeyopt", rsa_bits ? opt : "ec_paramgen_curve:P-256", "-out", key,
                               NULL),
                     0);
}

static void make_ca(const char *name, const char *subj)
{
    char key[256], pem[256];
    make_key(name, NULL);
    path(key, sizeof(key), name, "key");
    path(pem, sizeof(pem), name, "pem");
    assert_int_equal(tk_run_rc("openssl", "req", "-x509", "-new", "-key", key, "-subj", subj,
                               "-days", "30", "-addext", "basicConstraints=critical,CA:TRUE",
                               "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-out", pem,
                               NULL),
                     0);
}

/* A CSR and extension file for <name> (key: see make_key). */
static void make_csr(const char *name, const char *subj, const char *ext, const char *rsa_bits)
{
    char key[256], csr[256], extf[256];
    make_key(name, rsa_bits);
    path(key, sizeof(key), name, "key");
    path(csr, sizeof(csr), name, "csr");
    path(extf, sizeof(extf), name, "ext");
    tk_write(extf, ext, strlen(ext));
    assert_int_equal(
        tk_run_rc("openssl", "req", "-new", "-key", key, "-subj", subj, "-out", csr, NULL), 0);
}

static char *pem_cat(const char *a, const char *b);

/* How a certificate is made beyond its names: its key (rsa_bits, see
 * make_key), the digest its issuer signs with (NULL = SHA-256), and whether
 * its .pem file also holds the issuer (the chain a server or client sends). */
struct how {
    const char *rsa_bits, *md;
    int with_issuer;
};

static void make_leaf_how(const char *issuer, const char *name, const char *subj,
                          const char *serial, const char *ext, const struct how *how)
{
    char csr[256], extf[256], pem[256], cakey[256], capem[256], md[16];
    make_csr(name, subj, ext, how->rsa_bits);
    path(csr, sizeof(csr), name, "csr");
    path(extf, sizeof(extf), name, "ext");
    path(pem, sizeof(pem), name, "pem");
    path(cakey, sizeof(cakey), issuer, "key");
    path(capem, sizeof(capem), issuer, "pem");
    snprintf(md, sizeof(md), "-%s", how->md ? how->md : "sha256");
    assert_int_equal(tk_run_rc("openssl", "x509", "-req", md, "-in", csr, "-CA", capem, "-CAkey",
                               cakey, "-days", "30", "-set_serial", serial, "-extfile", extf,
                               "-out", pem, NULL),
                     0);
    if (how->with_issuer) {
        char *both = pem_cat(name, issuer);
        tk_write(pem, both, strlen(both));
        free(both);
    }
}

static void make_leaf_by(const char *issuer, const char *name, const char *subj, const char *serial,
                         const char *ext)
{
    static const struct how plain = {NULL, NULL, 0};
    make_leaf_how(issuer, name, subj, serial, ext, &plain);
}

static void make_leaf(const char *name, const char *subj, const char *serial, const char *ext)
{
    make_leaf_by("ca", name, subj, serial, ext);
}

/* A certificate valid from start to end (YYYYMMDDHHMMSSZ), issued by ca with
 * `openssl ca`. */
static void make_dated(const char *name, const char *subj, const char *ext, const char *start,
                       const char *end)
{
    char cnf[256], db[256], ser[256], nd[256], csr[256], extf[256], pem[256], cakey[256],
        capem[256], text[1024];
    make_csr(name, subj, ext, NULL);
    path(cnf, sizeof(cnf), "ca", "cnf");
    path(db, sizeof(db), "ca", "index");
    path(ser, sizeof(ser), "ca", "serial");
    path(csr, sizeof(csr), name, "csr");
    path(extf, sizeof(extf), name, "ext");
    path(pem, sizeof(pem), name, "pem");
    path(cakey, sizeof(cakey), "ca", "key");
    path(capem, sizeof(capem), "ca", "pem");
    snprintf(nd, sizeof(nd), "%s/newcerts", dir);
    mkdir(nd, 0700);
    tk_write(db, "", 0);
    tk_write(ser, "1000\n", 5);
    snprintf(text, sizeof(text),
             "[ca]\ndefault_ca = d\n[d]\ndatabase = %s\nnew_certs_dir = %s\nserial = %s\n"
             "default_md = sha256\npolicy = p\nunique_subject = no\n[p]\ncommonName = supplied\n",
             db, nd, ser);
    tk_write(cnf, text, strlen(text));
    assert_int_equal(tk_run_rc("openssl", "ca", "-batch", "-config", cnf, "-cert", capem,
                               "-keyfile", cakey, "-in", csr, "-out", pem, "-notext", "-startdate",
                               start, "-enddate", end, "-extfile", extf, NULL),
                     0);
}

static X509 *load(const char *name)
{
    char p[256];
    path(p, sizeof(p), name, "pem");
    return tk_cert(p);
}

static char *read_text(const char *name, const char *ext)
{
    char p[256];
    path(p, sizeof(p), name, ext);
    return (char *)tk_read(p, NULL);
}

/* The PEM files of a and b, one after the other (malloc'd): a certificate and
 * its chain. */
static char *pem_cat(const char *a, const char *b)
{
    char *x = read_text(a, "pem"), *y = read_text(b, "pem"), *both;
    size_t xl = strlen(x), yl = strlen(y);
    both = malloc(xl + yl + 1);
    assert_non_null(both);
    memcpy(both, x, xl);
    memcpy(both + xl, y, yl + 1);
    free(x);
    free(y);
    return both;
}

/* `openssl x509 -fingerprint -sha256` as lowercase hex without colons. */
static void cli_fingerprint(const char *name, char hex[65])
{
    char pem[256], outp[256];
    char *argv[] = {"openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", pem, NULL};
    path(pem, sizeof(pem), name, "pem");
    path(outp, sizeof(outp), name, "fp");
    assert_int_equal(tk_run_io(NULL, outp, 1, argv), 0);
    char *txt = (char *)tk_read(outp, NULL), *p = strchr(txt, '=');
    size_t o = 0;
    assert_non_null(p);
    for (p++; *p && *p != '\n' && o < 64; p++)
        if (*p != ':')
            hex[o++] = (char)((*p >= 'A' && *p <= 'F') ? *p - 'A' + 'a' : *p);
    hex[o] = '\0';
    assert_int_equal(o, 64);
    free(txt);
}

/* The SPKI pin computed by the openssl CLI (pubkey -> DER -> sha256 -> base64). */
static void cli_pin(const char *name, char pin[64])
{
    char pem[256], pub[256], der[256], bin[256], b64[256];
    path(pem, sizeof(pem), name, "pem");
    path(pub, sizeof(pub), name, "pub");
    path(der, sizeof(der), name, "pubder");
    path(bin, sizeof(bin), name, "pinbin");
    path(b64, sizeof(b64), name, "pin");
    tk_run("openssl", "x509", "-noout", "-pubkey", "-in", pem, "-out", pub, NULL);
    tk_run("openssl", "pkey", "-pubin", "-in", pub, "-outform", "DER", "-out", der, NULL);
    tk_run("openssl", "dgst", "-sha256", "-binary", "-out", bin, der, NULL);
    tk_run("openssl", "base64", "-A", "-in", bin, "-out", b64, NULL);
    char *txt = (char *)tk_read(b64, NULL);
    txt[strcspn(txt, "\r\n")] = '\0';
    assert_int_equal(strlen(txt), 44);
    snprintf(pin, 64, "%s", txt);
    free(txt);
}

/* ---- set-up: the server ---------------------------------------------------- */

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0), port = -1;
    struct sockaddr_in sa;
    socklen_t sl = sizeof(sa);
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 &&
        getsockname(fd, (struct sockaddr *)&sa, &sl) == 0)
        port = ntohs(sa.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* A cipher list that lets a listener serve certificates below security level
 * 2 (Python's default level, and ours). */
#define SECLEVEL0 "DEFAULT:@SECLEVEL=0"

/* The test server's listeners: name, mode, certificate (<cert>.pem, its
 * chain included, and <cert>.key), TLS max version, OpenSSL cipher list (NULL
 * = the default) and where the port goes. */
static const struct {
    const char *name, *mode, *cert, *maxver, *ciphers;
    int *port;
} listeners[] = {
    {"tls", "tls", "srv", "13", NULL, &port_tls},
    {"other", "tls", "other", "13", NULL, &port_other},
    {"expired", "tls", "expired", "13", NULL, &port_expired},
    {"mtls", "mtls", "srv", "13", NULL, &port_mtls},
    {"mtls12", "mtls", "srv", "12", NULL, &port_mtls12},
    {"tls12", "tls", "srv", "12", NULL, &port_tls12},
    {"plain", "plain", "srv", "13", NULL, &port_plain},
    {"self", "tls", "self", "13", NULL, &port_self},
    {"notyet", "tls", "notyet", "13", NULL, &port_notyet},
    {"inter", "tls", "interleaf", "13", NULL, &port_inter},
    {"cipher", "tls", "srv", "12", "ECDHE-ECDSA-AES128-GCM-SHA256", &port_cipher},
    {"weak", "tls", "weaksrv", "13", SECLEVEL0, &port_weak},
    {"weakca", "tls", "weakcasrv", "13", SECLEVEL0, &port_weakca},
    {"sha1", "tls", "sha1srv", "12", SECLEVEL0, &port_sha1},
};
#define N_LISTENERS (sizeof(listeners) / sizeof(listeners[0]))

static int *port_of(const char *name)
{
    for (size_t i = 0; i < N_LISTENERS; i++)
        if (strcmp(listeners[i].name, name) == 0)
            return listeners[i].port;
    return NULL;
}

static int all_ports_known(void)
{
    for (size_t i = 0; i < N_LISTENERS; i++)
        if (*listeners[i].port == 0)
            return 0;
    return 1;
}

static void start_server(void)
{
    char script[256], ports[256], l[N_LISTENERS][1024];
    char *argv[N_LISTENERS + 4] = {"python3", script, ports};
    path(script, sizeof(script), "server", "py");
    path(ports, sizeof(ports), "server", "ports");
    tk_write(script, server_py, strlen(server_py));
    for (size_t i = 0; i < N_LISTENERS; i++) {
        snprintf(l[i], sizeof(l[i]), "%s,%s,%s/%s.pem,%s/%s.key,%s/ca.pem,%s%s%s",
                 listeners[i].name, listeners[i].mode, dir, listeners[i].cert, dir,
                 listeners[i].cert, dir, listeners[i].maxver, listeners[i].ciphers ? "," : "",
                 listeners[i].ciphers ? listeners[i].ciphers : "");
        argv[3 + i] = l[i];
    }
    server_pid = fork();
    assert_true(server_pid >= 0);
    if (server_pid == 0) {
        execvp(argv[0], argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) { /* up to 10 s */
        FILE *f = fopen(ports, "r");
        if (f) {
            char name[32];
            int port;
            while (fscanf(f, "%31s %d", name, &port) == 2) {
                int *dst = port_of(name);
                if (dst)
                    *dst = port;
            }
            fclose(f);
            if (all_ports_known())
                return;
        }
        struct timespec ts = {0, 20000000};
        nanosleep(&ts, NULL);
    }
    fail_msg("the test server did not start");
}

#define EXT_SERVER_LOCAL                                                                           \
    "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"                                     \
    "subjectAltName=DNS:localhost,IP:127.0.0.1\n"
#define EXT_CLIENT "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
#define EXT_CA "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n"

/* Certificates below security level 2 (112 bits): an RSA-1024 key, an
 * intermediate signed with SHA-1, an intermediate with an RSA-1024 key; for
 * the server and for our client identity (each .pem with its chain). */
static const struct {
    const char *issuer, *name, *subj, *serial, *ext;
    struct how how;
} weak_certs[] = {
    {"ca", "weaksrv", "/O=weak partner/CN=localhost", "0x61", EXT_SERVER_LOCAL, {"1024", NULL, 0}},
    {"ca", "sha1inter", "/CN=sha1 intermediate", "0x62", EXT_CA, {NULL, "sha1", 0}},
    {"sha1inter", "sha1srv", "/CN=localhost", "0x63", EXT_SERVER_LOCAL, {NULL, NULL, 1}},
    {"ca", "weakinter", "/CN=weak intermediate", "0x64", EXT_CA, {"1024", NULL, 0}},
    {"weakinter", "weakcasrv", "/CN=localhost", "0x65", EXT_SERVER_LOCAL, {NULL, NULL, 1}},
    {"ca", "weakclient", "/O=mft test/CN=weak station", "0x66", EXT_CLIENT, {"1024", NULL, 0}},
    {"sha1inter", "sha1client", "/CN=sha1 station", "0x67", EXT_CLIENT, {NULL, NULL, 1}},
    {"weakinter", "weakcaclient", "/CN=weak ca station", "0x68", EXT_CLIENT, {NULL, NULL, 1}},
};

static int setup(void **state)
{
    (void)state;
    tk_tmpdir(dir, sizeof(dir));
    make_ca("ca", "/O=mft test/CN=mft test CA");
    make_ca("ca2", "/O=elsewhere/CN=another CA");
    make_leaf("srv", "/O=Partner/CN=localhost", "0x1234ab", EXT_SERVER_LOCAL);
    make_leaf("other", "/CN=other.example", "0x51",
              "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
              "subjectAltName=DNS:other.example\n");
    make_leaf("client", "/O=mft test/CN=mft station", "0x77", EXT_CLIENT);
    make_dated("expired", "/CN=localhost", EXT_SERVER_LOCAL, "20200101000000Z", "20210101000000Z");
    make_dated("notyet", "/CN=localhost", EXT_SERVER_LOCAL, "20990101000000Z", "20991231000000Z");
    make_leaf_by("ca", "inter", "/O=mft test/CN=mft test intermediate", "0x31", EXT_CA);
    make_leaf_by("inter", "interleaf", "/CN=localhost", "0x32",
                 EXT_SERVER_LOCAL
                 "authorityInfoAccess=caIssuers;URI:http://ca.invalid/inter.crt\n");
    make_leaf_by("ca2", "client2", "/O=elsewhere/CN=stranger", "0x78", EXT_CLIENT);
    for (size_t i = 0; i < sizeof(weak_certs) / sizeof(weak_certs[0]); i++)
        make_leaf_how(weak_certs[i].issuer, weak_certs[i].name, weak_certs[i].subj,
                      weak_certs[i].serial, weak_certs[i].ext, &weak_certs[i].how);
    {
        char key[256], pem[256];
        make_key("self", NULL);
        path(key, sizeof(key), "self", "key");
        path(pem, sizeof(pem), "self", "pem");
        assert_int_equal(tk_run_rc("openssl", "req", "-x509", "-new", "-key", key, "-subj",
                                   "/CN=localhost", "-days", "30", "-addext",
                                   "subjectAltName=DNS:localhost,IP:127.0.0.1", "-out", pem, NULL),
                         0);
    }
    ca = load("ca");
    ca2 = load("ca2");
    srv = load("srv");
    other = load("other");
    cli_fingerprint("srv", srv_sha256);
    cli_pin("srv", srv_pin);
    client_cert_pem = pem_cat("client", "ca"); /* the certificate + its chain */
    client_key_pem = read_text("client", "key");
    client2_cert_pem = read_text("client2", "pem");
    client2_key_pem = read_text("client2", "key");
    srv_key_pem = read_text("srv", "key");
    port_closed = closed_port();
    assert_true(port_closed > 0);
    start_server();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGTERM);
        waitpid(server_pid, NULL, 0);
    }
    X509_free(ca);
    X509_free(ca2);
    X509_free(srv);
    X509_free(other);
    free(client_cert_pem);
    free(client_key_pem);
    free(srv_key_pem);
    free(client2_cert_pem);
    free(client2_key_pem);
    tk_rmdir(dir);
    return 0;
}

/* ---- helpers ------------------------------------------------------------------ */

static STACK_OF(X509) * stack(X509 *a, X509 *b)
{
    STACK_OF(X509) *sk = sk_X509_new_null();
    assert_non_null(sk);
    if (a) {
        X509_up_ref(a);
        sk_X509_push(sk, a);
    }
    if (b) {
        X509_up_ref(b);
        sk_X509_push(sk, b);
    }
    return sk;
}

static void sha256_hex(const unsigned char *d, size_t n, char hex[65])
{
    unsigned char md[32];
    unsigned int ml = 0;
    assert_int_equal(EVP_Digest(d, n, md, &ml, EVP_sha256(), NULL), 1);
    for (unsigned i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
}

/* The value of "name=" in the echo answer ("" when absent). */
static void field(const struct mft_httpc_response *r, const char *name, char *out, size_t len)
{
    size_t nl = strlen(name);
    const char *p = (const char *)r->body;
    out[0] = '\0';
    while (p && *p) {
        if (strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = strcspn(p + nl + 1, "\n");
            snprintf(out, len, "%.*s", (int)vl, p + nl + 1);
            return;
        }
        p = strchr(p, '\n');
        if (p)
            p++;
    }
}

static int has_header(const struct mft_httpc_response *r, const char *line)
{
    for (size_t i = 0; i < r->n_headers; i++)
        if (strcasecmp(r->headers[i], line) == 0)
            return 1;
    return 0;
}

static const char *const as2_headers[] = {"Content-Type: application/pkcs7-mime",
                                          "AS2-From: mft-test", "AS2-To: partner", NULL};

static struct mft_httpc_request req(const char *url, const struct mft_httpc_trust *t,
                                    const unsigned char *body, size_t len)
{
    struct mft_httpc_request rq;
    memset(&rq, 0, sizeof(rq));
    rq.url = url;
    rq.headers = as2_headers;
    rq.body = body;
    rq.len = len;
    rq.content_length = 1;
    rq.timeout_s = 10;
    rq.connect_timeout_s = 5;
    rq.trust = t;
    return rq;
}

static void url(char *buf, size_t len, const char *scheme, const char *host, int port,
                const char *p)
{
    snprintf(buf, len, "%s://%s:%d%s", scheme, host, port, p);
}

/* POSTs body and checks the server echoed its SHA-256 and the framing. */
static void post_echo(const struct mft_httpc_request *rq, const unsigned char *body, size_t len,
                      struct mft_httpc_response *r)
{
    struct mft_err err;
    char want[65], got[128];
    memset(&err, 0, sizeof(err));
    int rc = mft_httpc_post(rq, r, &err);
    if (rc != 0)
        fail_msg("%s: %s [%s]", mft_err_kind_name(err.kind), err.message, err.detail);
    assert_int_equal(r->status, 200);
    sha256_hex(body, len, want);
    field(r, "sha256", got, sizeof(got));
    assert_string_equal(got, want);
    field(r, "length", got, sizeof(got));
    assert_int_equal(strtol(got, NULL, 10), (long)len);
}

/* Expects a failure of kind; returns the error for more checks. */
static struct mft_err post_fail(const struct mft_httpc_request *rq, enum mft_err_kind kind)
{
    struct mft_httpc_response r;
    struct mft_err err;
    memset(&err, 0, sizeof(err));
    int rc = mft_httpc_post(rq, &r, &err);
    if (rc != -1 || err.kind != kind)
        fail_msg("expected %s, got rc %d %s: %s [%s]", mft_err_kind_name(kind), rc,
                 mft_err_kind_name(err.kind), err.message, err.detail);
    assert_null(r.body);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.n_headers, 0);
    mft_httpc_response_free(&r);
    return err;
}

static unsigned char *random_body(size_t n)
{
    unsigned char *b = malloc(n);
    assert_non_null(b);
    assert_int_equal(RAND_bytes(b, (int)n), 1);
    return b;
}

/* ---- cases ------------------------------------------------------------------------ */

static void test_exact_cert(void **state)
{
    (void)state;
    char u[256], v[128];
    size_t n = 10000;
    unsigned char *body = random_body(n);
    struct mft_httpc_trust t = {stack(other, srv), NULL, NULL, 0}; /* rollover: two certs */
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    rq = req(u, &t, body, n);
    post_echo(&rq, body, n, &r);
    field(&r, "framing", v, sizeof(v));
    assert_string_equal(v, "length");
    field(&r, "sni", v, sizeof(v));
    assert_string_equal(v, "localhost");
    field(&r, "ua", v, sizeof(v));
    assert_string_equal(v, "mft");
    field(&r, "expect", v, sizeof(v));
    assert_string_equal(v, "-");
    field(&r, "ctype", v, sizeof(v));
    assert_string_equal(v, "application/pkcs7-mime");
    field(&r, "as2from", v, sizeof(v));
    assert_string_equal(v, "mft-test");
    field(&r, "client", v, sizeof(v));
    assert_string_equal(v, "");
    assert_string_equal(r.content_type, "text/plain; charset=utf-8");
    assert_true(has_header(&r, "X-Echo: yes"));
    assert_true(has_header(&r, "Content-Type: text/plain; charset=utf-8"));
    assert_int_equal(r.body[r.len], '\0');
    /* the server's certificate facts, checked against the openssl CLI */
    assert_int_equal(r.has_tls, 1);
    assert_string_equal(r.tls_sha256, srv_sha256);
    assert_string_equal(r.tls_subject, "CN=localhost,O=Partner");
    assert_string_equal(r.tls_issuer, "CN=mft test CA,O=mft test");
    assert_string_equal(r.tls_serial, "1234ab");
    assert_string_equal(r.tls_protocol, "TLSv1.3");
    assert_true(strncmp(r.tls_cipher, "TLS_", 4) == 0);
    assert_int_equal(strlen(r.tls_not_after), 20);
    assert_int_equal(r.tls_not_after[10], 'T');
    assert_int_equal(r.tls_not_after[19], 'Z');
    mft_httpc_response_free(&r);
    assert_null(r.body);
    mft_httpc_response_free(&r); /* twice is fine */

    /* only the other certificate registered: refused, facts named */
    sk_X509_pop_free(t.certs, X509_free);
    t.certs = stack(other, NULL);
    struct mft_err e = post_fail(&rq, MFT_E_TLS_SERVER_UNTRUSTED);
    assert_non_null(strstr(e.detail, srv_sha256));
    assert_non_null(strstr(e.detail, "subject=CN=localhost,O=Partner"));
    assert_non_null(strstr(e.detail, "issuer=CN=mft test CA"));
    assert_non_null(strstr(e.detail, srv_pin));
    assert_false(mft_httpc_err_transient(&e));
    sk_X509_pop_free(t.certs, X509_free);
    free(body);
}

static void test_ca_trust(void **state)
{
    (void)state;
    char u[256];
    const unsigned char body[] = "hello over a CA-verified channel";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    rq = req(u, &t, body, sizeof(body) - 1);
    post_echo(&rq, body, sizeof(body) - 1, &r);
    mft_httpc_response_free(&r);
    /* by IP address: the certificate has IP:127.0.0.1 */
    url(u, sizeof(u), "https", "127.0.0.1", port_tls, "/as2");
    post_echo(&rq, body, sizeof(body) - 1, &r);
    mft_httpc_response_free(&r);
    /* TLS 1.2 server */
    url(u, sizeof(u), "https", "localhost", port_tls12, "/as2");
    post_echo(&rq, body, sizeof(body) - 1, &r);
    assert_string_equal(r.tls_protocol, "TLSv1.2");
    assert_true(r.tls_cipher[0] != '\0');
    mft_httpc_response_free(&r);

    /* a certificate for other.example reached as 127.0.0.1 and as localhost */
    url(u, sizeof(u), "https", "127.0.0.1", port_other, "/as2");
    struct mft_err e = post_fail(&rq, MFT_E_TLS_SERVER_NAME_MISMATCH);
    assert_non_null(strstr(e.message, "127.0.0.1"));
    assert_non_null(strstr(e.detail, "DNS:other.example"));
    assert_false(mft_httpc_err_transient(&e));
    url(u, sizeof(u), "https", "localhost", port_other, "/as2");
    e = post_fail(&rq, MFT_E_TLS_SERVER_NAME_MISMATCH);
    assert_non_null(strstr(e.message, "localhost"));
    /* the same certificate registered exactly: no host name needed */
    struct mft_httpc_trust exact = {stack(other, NULL), NULL, NULL, 0};
    rq.trust = &exact;
    post_echo(&rq, body, sizeof(body) - 1, &r);
    mft_httpc_response_free(&r);
    sk_X509_pop_free(exact.certs, X509_free);

    /* another CA; the server sends its certificate alone: its issuer is
     * neither sent nor registered, and nothing says it is an intermediate */
    struct mft_httpc_trust t2 = {NULL, stack(ca2, NULL), NULL, 0};
    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    rq.trust = &t2;
    e = post_fail(&rq, MFT_E_TLS_SERVER_UNTRUSTED);
    assert_non_null(strstr(e.message, "issued by \"CN=mft test CA"));
    assert_non_null(strstr(e.detail, srv_sha256));
    assert_non_null(strstr(e.detail, "no chain to the 1 registered CAs"));
    assert_non_null(strstr(e.detail, "x509 verify 20:"));
    sk_X509_pop_free(t2.certs, X509_free);
    sk_X509_pop_free(t2.cas, X509_free);
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_expired(void **state)
{
    (void)state;
    char u[256];
    const unsigned char body[] = "x";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;

    url(u, sizeof(u), "https", "localhost", port_expired, "/as2");
    rq = req(u, &t, body, 1);
    struct mft_err e = post_fail(&rq, MFT_E_TLS_SERVER_EXPIRED);
    assert_non_null(strstr(e.message, "has expired"));
    assert_non_null(strstr(e.detail, "2021-01-01T00:00:00Z"));
    assert_false(mft_httpc_err_transient(&e));
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_pins(void **state)
{
    (void)state;
    char u[256];
    const unsigned char body[] = "pinned";
    char pins[2][64] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", ""};
    struct mft_httpc_trust t = {NULL, NULL, (const char(*)[64])pins, 2};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    snprintf(pins[1], sizeof(pins[1]), "%s", srv_pin);
    url(u, sizeof(u), "https", "127.0.0.1", port_tls, "/as2");
    rq = req(u, &t, body, sizeof(body) - 1);
    post_echo(&rq, body, sizeof(body) - 1, &r);
    assert_string_equal(r.tls_sha256, srv_sha256);
    mft_httpc_response_free(&r);
    /* curl's "sha256//" notation is accepted too */
    snprintf(pins[1], sizeof(pins[1]), "sha256//%s", srv_pin);
    post_echo(&rq, body, sizeof(body) - 1, &r);
    mft_httpc_response_free(&r);

    t.n_pins = 1; /* the wrong pin only: the partner's key changed */
    struct mft_err e = post_fail(&rq, MFT_E_TLS_PIN_CHANGED);
    assert_non_null(strstr(e.message, srv_pin));
    assert_non_null(strstr(e.detail, "none of the 1 registered pins"));
    assert_false(mft_httpc_err_transient(&e));
}

static void test_mtls(void **state)
{
    (void)state;
    char u[256], v[256];
    const unsigned char body[] = "mutual";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_client_id id = {client_cert_pem, client_key_pem};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    rq = req(u, &t, body, sizeof(body) - 1);
    rq.client = &id;
    post_echo(&rq, body, sizeof(body) - 1, &r);
    field(&r, "client", v, sizeof(v));
    assert_string_equal(v, "organizationName=mft test,commonName=mft station");
    mft_httpc_response_free(&r);
    url(u, sizeof(u), "https", "localhost", port_mtls12, "/as2");
    post_echo(&rq, body, sizeof(body) - 1, &r);
    field(&r, "client", v, sizeof(v));
    assert_string_equal(v, "organizationName=mft test,commonName=mft station");
    mft_httpc_response_free(&r);

    /* no client certificate: TLS 1.3 (alert after the handshake) and 1.2 */
    rq.client = NULL;
    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    struct mft_err e = post_fail(&rq, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_non_null(strstr(e.message, "none is configured"));
    assert_non_null(strstr(e.message, "certificate_required"));
    assert_non_null(strstr(e.detail, "received fatal certificate_required(116)"));
    assert_true(mft_httpc_err_transient(&e));
    url(u, sizeof(u), "https", "localhost", port_mtls12, "/as2");
    e = post_fail(&rq, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_non_null(strstr(e.message, "none is configured"));
    assert_non_null(strstr(e.detail, "negotiated none"));

    /* a key that is not the certificate's, half an identity */
    struct mft_httpc_client_id wrong = {client_cert_pem, srv_key_pem},
                               half = {client_cert_pem, NULL};
    rq.client = &wrong;
    e = post_fail(&rq, MFT_E_TLS_OWN_KEY_MISMATCH);
    assert_non_null(strstr(e.detail, "CN=mft station"));
    assert_false(mft_httpc_err_transient(&e));
    rq.client = &half;
    post_fail(&rq, MFT_E_CONFIG);

    /* the identity already parsed by the caller (no PEM): referenced, not consumed */
    STACK_OF(X509) *certs = NULL;
    EVP_PKEY *key = NULL, *wrongkey = NULL;
    struct mft_err le;
    assert_int_equal(mft_x509_load_certs_mem(client_cert_pem, strlen(client_cert_pem), &certs, &le),
                     0);
    assert_int_equal(mft_x509_load_key_mem(client_key_pem, strlen(client_key_pem), NULL, &key, &le),
                     0);
    assert_int_equal(mft_x509_load_key_mem(srv_key_pem, strlen(srv_key_pem), NULL, &wrongkey, &le),
                     0);
    struct mft_httpc_client_keys parsed = {sk_X509_value(certs, 0), NULL, key};
    rq.client = NULL;
    rq.client_keys = &parsed;
    for (int i = 0; i < 2; i++) {
        post_echo(&rq, body, sizeof(body) - 1, &r);
        field(&r, "client", v, sizeof(v));
        assert_string_equal(v, "organizationName=mft test,commonName=mft station");
        mft_httpc_response_free(&r);
    }
    parsed.key = wrongkey; /* not the certificate's key */
    post_fail(&rq, MFT_E_TLS_OWN_KEY_MISMATCH);
    parsed.key = NULL; /* half an identity */
    post_fail(&rq, MFT_E_CONFIG);
    EVP_PKEY_free(wrongkey);
    EVP_PKEY_free(key);
    sk_X509_pop_free(certs, X509_free);
    sk_X509_pop_free(t.cas, X509_free);
}

/*
 * Connection reuse: two calls with the same key go over one TCP connection
 * (the server sees the same client port) and both answers carry the TLS facts
 * of its handshake; another key, or a failure, means a new connection, and a
 * new connection is verified with the trust of its own call.
 */
static void test_keepalive(void **state)
{
    (void)state;
    char u[256], p1[32], p2[32], p3[32], p4[32];
    const unsigned char body[] = "again";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_trust wrong = {stack(other, NULL), NULL, NULL, 0};
    struct mft_httpc_client_id id = {client_cert_pem, client_key_pem};
    struct mft_httpc_response r;
    struct mft_err e;
    struct mft_httpc_conn *k = mft_httpc_conn_new();
    assert_non_null(k);

    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    struct mft_httpc_request rq = req(u, &t, body, sizeof(body) - 1);
    rq.client = &id;
    mft_err_clear(&e);
    assert_int_equal(mft_httpc_post_on(k, "partner|1", &rq, &r, &e), 0);
    field(&r, "peer", p1, sizeof(p1));
    assert_true(r.has_tls);
    mft_httpc_response_free(&r);
    assert_int_equal(mft_httpc_post_on(k, "partner|1", &rq, &r, &e), 0);
    field(&r, "peer", p2, sizeof(p2));
    assert_string_equal(p1, p2); /* the same connection */
    assert_true(r.has_tls);      /* its handshake's facts */
    assert_non_null(strstr(r.tls_subject, "localhost"));
    mft_httpc_response_free(&r);

    assert_int_equal(mft_httpc_post_on(k, "partner|2", &rq, &r, &e), 0); /* new key */
    field(&r, "peer", p3, sizeof(p3));
    assert_string_not_equal(p2, p3);
    mft_httpc_response_free(&r);

    rq.trust = &wrong; /* a new key with a trust the server fails: verified again */
    assert_int_equal(mft_httpc_post_on(k, "partner|3", &rq, &r, &e), -1);
    assert_int_equal(e.kind, MFT_E_TLS_SERVER_UNTRUSTED);
    rq.trust = &t;
    mft_err_clear(&e);
    assert_int_equal(mft_httpc_post_on(k, "partner|3", &rq, &r, &e), 0);
    field(&r, "peer", p4, sizeof(p4));
    assert_string_not_equal(p3, p4);
    mft_httpc_response_free(&r);
    mft_httpc_conn_free(k);
    sk_X509_pop_free(t.cas, X509_free);
    sk_X509_pop_free(wrong.certs, X509_free);
}

static void test_chunked(void **state)
{
    (void)state;
    char u[256], v[64];
    size_t n = 300000;
    unsigned char *body = random_body(n);
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    rq = req(u, &t, body, n);
    rq.content_length = 0;
    post_echo(&rq, body, n, &r);
    field(&r, "framing", v, sizeof(v));
    assert_string_equal(v, "chunked");
    mft_httpc_response_free(&r);
    rq.content_length = 1;
    post_echo(&rq, body, n, &r);
    field(&r, "framing", v, sizeof(v));
    assert_string_equal(v, "length");
    mft_httpc_response_free(&r);
    /* empty bodies both ways */
    rq.body = (const unsigned char *)"";
    rq.len = 0;
    post_echo(&rq, (const unsigned char *)"", 0, &r);
    mft_httpc_response_free(&r);
    rq.body = NULL;
    rq.len = 0;
    rq.content_length = 0;
    post_echo(&rq, (const unsigned char *)"", 0, &r);
    field(&r, "framing", v, sizeof(v));
    assert_string_equal(v, "chunked");
    mft_httpc_response_free(&r);
    sk_X509_pop_free(t.cas, X509_free);
    free(body);
}

static void test_status(void **state)
{
    (void)state;
    char u[256];
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;
    struct mft_err err;

    url(u, sizeof(u), "https", "localhost", port_tls, "/status/503");
    rq = req(u, &t, (const unsigned char *)"x", 1);
    assert_int_equal(mft_httpc_post(&rq, &r, &err), 0);
    assert_int_equal(r.status, 503);
    assert_int_equal(r.len, 7);
    assert_string_equal((const char *)r.body, "status\n");
    assert_true(has_header(&r, "Retry-After: 7"));
    assert_true(mft_httpc_status_transient(r.status));
    mft_httpc_response_free(&r);
    url(u, sizeof(u), "https", "localhost", port_tls, "/status/404");
    assert_int_equal(mft_httpc_post(&rq, &r, &err), 0);
    assert_int_equal(r.status, 404);
    assert_false(mft_httpc_status_transient(r.status));
    mft_httpc_response_free(&r);
    assert_true(mft_httpc_status_transient(500));
    assert_true(mft_httpc_status_transient(408));
    assert_true(mft_httpc_status_transient(429));
    assert_false(mft_httpc_status_transient(200));
    assert_false(mft_httpc_status_transient(400));
    assert_false(mft_httpc_status_transient(403));
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_too_large(void **state)
{
    (void)state;
    char u[256];
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;
    struct mft_err err;

    rq = req(u, &t, (const unsigned char *)"x", 1);
    rq.max_response = 5000;
    url(u, sizeof(u), "https", "localhost", port_tls, "/big/5000"); /* exactly the limit */
    assert_int_equal(mft_httpc_post(&rq, &r, &err), 0);
    assert_int_equal(r.len, 5000);
    mft_httpc_response_free(&r);
    url(u, sizeof(u), "https", "localhost", port_tls, "/big/5000?chunked");
    assert_int_equal(mft_httpc_post(&rq, &r, &err), 0);
    assert_int_equal(r.len, 5000);
    assert_int_equal(r.body[4999], 'x');
    mft_httpc_response_free(&r);
    url(u, sizeof(u), "https", "localhost", port_tls, "/big/5001"); /* Content-Length */
    struct mft_err e = post_fail(&rq, MFT_E_HTTP_RESPONSE_TOO_LARGE);
    assert_false(mft_httpc_err_transient(&e));
    url(u, sizeof(u), "https", "localhost", port_tls, "/big/20000?chunked"); /* discovered late */
    post_fail(&rq, MFT_E_HTTP_RESPONSE_TOO_LARGE);
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_plain_http(void **state)
{
    (void)state;
    char u[256], v[64];
    const unsigned char body[] = "plain text body";
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "http", "127.0.0.1", port_plain, "/as2");
    rq = req(u, NULL, body, sizeof(body) - 1); /* no trust needed */
    post_echo(&rq, body, sizeof(body) - 1, &r);
    assert_int_equal(r.has_tls, 0);
    assert_string_equal(r.tls_sha256, "");
    mft_httpc_response_free(&r);
    rq.content_length = 0;
    post_echo(&rq, body, sizeof(body) - 1, &r);
    field(&r, "framing", v, sizeof(v));
    assert_string_equal(v, "chunked");
    mft_httpc_response_free(&r);

    /* https to the plain port */
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    url(u, sizeof(u), "https", "127.0.0.1", port_plain, "/as2");
    rq.trust = &t;
    struct mft_err e = post_fail(&rq, MFT_E_TLS_NOT_TLS);
    assert_false(mft_httpc_err_transient(&e));
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_network_errors(void **state)
{
    (void)state;
    char u[256], hp[64];
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;

    url(u, sizeof(u), "https", "127.0.0.1", port_closed, "/as2");
    rq = req(u, &t, (const unsigned char *)"x", 1);
    struct mft_err e = post_fail(&rq, MFT_E_CONNECT);
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", port_closed);
    assert_non_null(strstr(e.message, hp));
    assert_true(mft_httpc_err_transient(&e));

    /* the server takes 3 s, we wait 1 */
    url(u, sizeof(u), "https", "localhost", port_tls, "/sleep");
    rq.timeout_s = 1;
    e = post_fail(&rq, MFT_E_TIMEOUT);
    assert_true(mft_httpc_err_transient(&e));

    /* RFC 2606: .invalid never resolves */
    snprintf(u, sizeof(u), "https://mft-test.invalid/as2");
    rq.timeout_s = 10;
    e = post_fail(&rq, MFT_E_DNS);
    assert_non_null(strstr(e.message, "mft-test.invalid"));
    assert_true(mft_httpc_err_transient(&e));
    sk_X509_pop_free(t.cas, X509_free);
}

static void test_config_errors(void **state)
{
    (void)state;
    char u[256];
    struct mft_httpc_trust none = {NULL, NULL, NULL, 0};
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_request rq;
    struct mft_httpc_response r;

    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    rq = req(u, NULL, (const unsigned char *)"x", 1);
    struct mft_err e = post_fail(&rq, MFT_E_CONFIG); /* https without trust */
    assert_false(mft_httpc_err_transient(&e));
    rq.trust = &none;
    post_fail(&rq, MFT_E_CONFIG);
    rq.trust = &t;
    rq.url = "ftp://localhost/x";
    post_fail(&rq, MFT_E_CONFIG);
    rq.url = "not a url";
    post_fail(&rq, MFT_E_CONFIG);
    rq.url = u;
    const char *const injected[] = {"X-Evil: a\r\nX-More: b", NULL};
    rq.headers = injected;
    post_fail(&rq, MFT_E_CONFIG);
    const char *const framing[] = {"Content-Length: 5", NULL};
    rq.headers = framing;
    post_fail(&rq, MFT_E_CONFIG);
    const char *const noname[] = {": value", NULL};
    rq.headers = noname;
    post_fail(&rq, MFT_E_CONFIG);
    /* no Content-Type given: application/octet-stream, not curl's form default */
    rq.headers = NULL;
    post_echo(&rq, (const unsigned char *)"x", 1, &r);
    char v[64];
    field(&r, "ctype", v, sizeof(v));
    assert_string_equal(v, "application/octet-stream");
    mft_httpc_response_free(&r);
    assert_int_equal(mft_httpc_post(NULL, &r, NULL), -1);
    assert_false(mft_httpc_err_transient(NULL));
    mft_httpc_response_free(NULL);
    sk_X509_pop_free(t.cas, X509_free);
}

/*
 * The TLS failure kinds, each derived from the handshake's facts, with the
 * facts that decided it checked (verify code, alert and its direction,
 * versions).
 */
static void test_tls_kinds(void **state)
{
    (void)state;
    char u[256];
    const unsigned char body[] = "x";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_tls_facts f;
    struct mft_httpc_request rq = req(u, &t, body, 1);
    struct mft_err e;
    rq.facts_out = &f;

    /* self-signed, not registered */
    url(u, sizeof(u), "https", "localhost", port_self, "/as2");
    e = post_fail(&rq, MFT_E_TLS_SERVER_SELF_SIGNED);
    assert_int_equal(f.verify_code, 18);
    assert_true(f.peer_cert.present);
    assert_string_equal(f.peer_cert.x.subject, "CN=localhost");
    assert_non_null(strstr(e.detail, "sent fatal"));
    assert_false(mft_httpc_err_transient(&e));

    /* not yet valid: retried (the clock, or a certificate installed early) */
    url(u, sizeof(u), "https", "localhost", port_notyet, "/as2");
    e = post_fail(&rq, MFT_E_TLS_SERVER_NOT_YET_VALID);
    assert_non_null(strstr(e.message, "is not yet valid"));
    assert_non_null(strstr(e.message, "2099-01-01T00:00:00Z"));
    assert_int_equal(f.verify_code, 9);
    assert_true(mft_httpc_err_transient(&e));

    /* expired: the verify code says so */
    url(u, sizeof(u), "https", "localhost", port_expired, "/as2");
    post_fail(&rq, MFT_E_TLS_SERVER_EXPIRED);
    assert_int_equal(f.verify_code, 10);

    /* an intermediate the server does not send */
    url(u, sizeof(u), "https", "localhost", port_inter, "/as2");
    e = post_fail(&rq, MFT_E_TLS_SERVER_CHAIN_INCOMPLETE);
    assert_non_null(strstr(e.message, "mft test intermediate"));
    assert_int_equal(f.verify_code, 20);
    /* ... registered, the chain is complete */
    struct mft_httpc_trust ti = {NULL, stack(load("inter"), NULL), NULL, 0};
    X509_free(sk_X509_value(ti.cas, 0)); /* stack() took its own reference */
    rq.trust = &ti;
    struct mft_httpc_response r;
    post_echo(&rq, body, 1, &r);
    mft_httpc_response_free(&r);
    rq.trust = &t;

    /* the host: verify code 62 (a name) and 64 (an IP address); the message
     * names the certificate's names and the URL's host */
    url(u, sizeof(u), "https", "localhost", port_other, "/as2");
    e = post_fail(&rq, MFT_E_TLS_SERVER_NAME_MISMATCH);
    assert_int_equal(f.verify_code, 62);
    assert_non_null(strstr(e.message, "DNS:other.example"));
    assert_non_null(strstr(e.message, "not for localhost"));
    url(u, sizeof(u), "https", "127.0.0.1", port_other, "/as2");
    post_fail(&rq, MFT_E_TLS_SERVER_NAME_MISMATCH);
    assert_int_equal(f.verify_code, 64);

    /* our certificate from a CA the server does not trust: unknown_ca, from
     * the server, in TLS 1.3 (after curl's handshake) and TLS 1.2 */
    struct mft_httpc_client_id stranger = {client2_cert_pem, client2_key_pem};
    rq.client = &stranger;
    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    e = post_fail(&rq, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_non_null(strstr(e.message, "unknown_ca"));
    assert_non_null(strstr(e.message, "does not know the CA"));
    assert_string_equal(f.version, "TLSv1.3");
    assert_true(f.local_cert.present);
    assert_string_equal(f.local_cert.x.subject, "CN=stranger,O=elsewhere");
    const struct mft_tls_alert *a = mft_tls_facts_fatal(&f, 0);
    assert_non_null(a);
    assert_int_equal(a->code, 48);
    assert_true(mft_httpc_err_transient(&e));
    url(u, sizeof(u), "https", "localhost", port_mtls12, "/as2");
    e = post_fail(&rq, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_non_null(strstr(e.message, "unknown_ca"));
    assert_string_equal(f.version, "");
    assert_string_equal(f.versions_accepted, "TLSv1.2");
    rq.client = NULL;

    /* no common version: our policy TLS 1.3 only, the server TLS 1.2 only */
    rq.tls_min_version = 0x0304;
    url(u, sizeof(u), "https", "localhost", port_tls12, "/as2");
    e = post_fail(&rq, MFT_E_TLS_NO_COMMON_PROTOCOL);
    assert_non_null(strstr(e.message, "TLSv1.3"));
    assert_string_equal(f.versions_offered, "TLSv1.3");
    assert_non_null(mft_tls_facts_fatal(&f, 0));
    assert_int_equal(mft_tls_facts_fatal(&f, 0)->code, 70);
    assert_false(mft_httpc_err_transient(&e));
    rq.tls_min_version = 0;

    /* no shared cipher: the server (TLS 1.2) has one AES-128 suite, our
     * policy allows one AES-256 suite */
    const char suites[1][64] = {"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"};
    rq.tls_ciphers = suites;
    rq.n_tls_ciphers = 1;
    url(u, sizeof(u), "https", "localhost", port_cipher, "/as2");
    e = post_fail(&rq, MFT_E_TLS_NO_SHARED_CIPHER);
    assert_non_null(strstr(e.message, "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"));
    assert_int_equal(mft_tls_facts_fatal(&f, 0)->code, 40);
    assert_false(mft_httpc_err_transient(&e));
    /* a suite it has, in the GnuTLS spelling: accepted, and it is what was used */
    const char suites2[2][64] = {"TLS_AES_256_GCM_SHA384", "TLS_ECDHE_ECDSA_AES_128_GCM_SHA256"};
    rq.tls_ciphers = suites2;
    rq.n_tls_ciphers = 2;
    post_echo(&rq, body, 1, &r);
    assert_string_equal(f.cipher, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
    mft_httpc_response_free(&r);
    /* TLS 1.3 suites only, against a TLS 1.3 server: that suite */
    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    const char suites3[1][64] = {"TLS_CHACHA20_POLY1305_SHA256"};
    rq.tls_ciphers = suites3;
    rq.n_tls_ciphers = 1;
    post_echo(&rq, body, 1, &r);
    assert_string_equal(f.cipher, "TLS_CHACHA20_POLY1305_SHA256");
    mft_httpc_response_free(&r);
    /* ... and a policy that is TLS 1.2 only with only TLS 1.3 suites: nothing to offer */
    rq.tls_max_version = 0x0303;
    e = post_fail(&rq, MFT_E_CONFIG);
    assert_non_null(strstr(e.message, "no cipher suite"));
    rq.tls_max_version = 0;
    rq.tls_ciphers = NULL;
    rq.n_tls_ciphers = 0;

    /* the trust mode: the CA would accept, but only pins count */
    char pins[1][64] = {"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="};
    t.pins = (const char(*)[64])pins;
    t.n_pins = 1;
    post_echo(&rq, body, 1, &r); /* mode any: the CA matches */
    assert_non_null(strstr(f.verify_result, "registered CA"));
    mft_httpc_response_free(&r);
    rq.tls_trust = MFT_HTTPC_TRUST_PINS;
    e = post_fail(&rq, MFT_E_TLS_PIN_CHANGED);
    assert_non_null(strstr(e.detail, "allows only its registered pins"));
    rq.tls_trust = MFT_HTTPC_TRUST_CERTS; /* none registered: nothing matches */
    post_fail(&rq, MFT_E_TLS_SERVER_UNTRUSTED);
    rq.tls_trust = MFT_HTTPC_TRUST_ANY;

    sk_X509_pop_free(ti.cas, X509_free);
    sk_X509_pop_free(t.cas, X509_free);
}

/*
 * OpenSSL's security level 2 (Debian's default): keys and signatures below
 * 112 bits of security. The server's certificate, a CA certificate of its
 * chain, a SHA-1 signed intermediate: TLS_SERVER_UNTRUSTED naming the
 * certificate and why (the verify code says which). Our certificate, or a CA
 * certificate of our chain: TLS_OWN_CERT_TOO_WEAK naming it, not
 * TLS_OWN_KEY_MISMATCH (the key matches). Never retried.
 */
static void test_security_level(void **state)
{
    (void)state;
    static const struct {
        int *port;
        const char *client; /* our identity: <client>.pem (with its chain) and .key; or NULL */
        enum mft_err_kind kind;
        long verify_code;       /* 0: our verification did not run */
        const char *key;        /* in the facts: the server's key, or ours (client) */
        const char *message[3]; /* all in the message */
        const char *remedy;     /* in the remedy */
    } cases[] = {
        {&port_weak,
         NULL,
         MFT_E_TLS_SERVER_UNTRUSTED,
         66,
         "RSA-1024",
         {"the server's TLS certificate \"CN=localhost,O=weak partner\"",
          "uses a 1024-bit RSA key (80 bits of security)",
          "below the minimum of security level 2 (112 bits)"},
         "the partner must renew"},
        {&port_weakca,
         NULL,
         MFT_E_TLS_SERVER_UNTRUSTED,
         67,
         "EC-P-256",
         {"the server's TLS CA certificate \"CN=weak intermediate\"", "uses a 1024-bit RSA key",
          "security level 2"},
         "the partner must renew"},
        {&port_sha1,
         NULL,
         MFT_E_TLS_SERVER_UNTRUSTED,
         68,
         "EC-P-256",
         {"the server's TLS CA certificate \"CN=sha1 intermediate\"",
          "is signed with SHA1 (ecdsa-with-SHA1", "security level 2"},
         "the partner must renew"},
        {&port_tls,
         "weakclient",
         MFT_E_TLS_OWN_CERT_TOO_WEAK,
         0,
         "RSA-1024",
         {"our TLS client certificate \"CN=weak station,O=mft test\"",
          "uses a 1024-bit RSA key (80 bits of security)", "security level 2 (112 bits)"},
         "issue the station a new TLS certificate"},
        {&port_tls,
         "weakcaclient",
         MFT_E_TLS_OWN_CERT_TOO_WEAK,
         0,
         "EC-P-256",
         {"the CA certificate \"CN=weak intermediate\" in our TLS client chain",
          "uses a 1024-bit RSA key", "security level 2"},
         "current chain from its CA"},
        {&port_tls,
         "sha1client",
         MFT_E_TLS_OWN_CERT_TOO_WEAK,
         0,
         "EC-P-256",
         {"the CA certificate \"CN=sha1 intermediate\" in our TLS client chain",
          "is signed with SHA1", "security level 2"},
         "current chain from its CA"},
    };
    char u[256];
    const unsigned char body[] = "x";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_tls_facts f;
    struct mft_httpc_request rq = req(u, &t, body, 1);
    struct mft_httpc_response r;

    rq.facts_out = &f;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *pem = cases[i].client ? read_text(cases[i].client, "pem") : NULL;
        char *key = cases[i].client ? read_text(cases[i].client, "key") : NULL;
        struct mft_httpc_client_id id = {pem, key};
        rq.client = cases[i].client ? &id : NULL;
        url(u, sizeof(u), "https", "localhost", *cases[i].port, "/as2");
        struct mft_err e = post_fail(&rq, cases[i].kind);
        for (size_t k = 0; k < 3; k++)
            if (!strstr(e.message, cases[i].message[k]))
                fail_msg("case %zu: \"%s\" not in the message: %s", i, cases[i].message[k],
                         e.message);
        if (!strstr(e.remedy, cases[i].remedy))
            fail_msg("case %zu: \"%s\" not in the remedy: %s", i, cases[i].remedy, e.remedy);
        assert_int_equal(f.verify_code, cases[i].verify_code);
        assert_string_equal(cases[i].client ? f.local_cert.key : f.peer_cert.key, cases[i].key);
        assert_false(mft_httpc_err_transient(&e));
        if (cases[i].client) { /* the certificate refused and OpenSSL's reason */
            assert_non_null(strstr(e.detail, "refused certificate subject="));
            assert_non_null(strstr(e.detail, "openssl error:"));
        }
        free(pem);
        free(key);
    }
    /* a weak certificate registered exactly is the partner's registration:
     * only the CA rule judges strength */
    rq.client = NULL;
    url(u, sizeof(u), "https", "localhost", port_weak, "/as2");
    struct mft_httpc_trust exact = {stack(load("weaksrv"), NULL), NULL, NULL, 0};
    X509_free(sk_X509_value(exact.certs, 0)); /* stack() took its own reference */
    rq.trust = &exact;
    post_echo(&rq, body, 1, &r);
    mft_httpc_response_free(&r);
    sk_X509_pop_free(exact.certs, X509_free);
    sk_X509_pop_free(t.cas, X509_free);
}

/* The facts of a successful exchange, and nginx's HTTP 400 for a missing
 * client certificate. */
static void test_facts(void **state)
{
    (void)state;
    char u[256], pa[64];
    const unsigned char body[] = "facts";
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_client_id id = {client_cert_pem, client_key_pem};
    struct mft_tls_facts f;
    struct mft_httpc_request rq = req(u, &t, body, sizeof(body) - 1);
    struct mft_httpc_response r;

    rq.facts_out = &f;
    rq.client = &id;
    rq.partner_id = "globex";
    rq.station_id = "acme";
    url(u, sizeof(u), "https", "localhost", port_mtls12, "/as2");
    post_echo(&rq, body, sizeof(body) - 1, &r);
    mft_httpc_response_free(&r);
    snprintf(pa, sizeof(pa), "127.0.0.1:%d", port_mtls12);
    assert_string_equal(f.direction, "outbound");
    assert_string_equal(f.peer_address, pa);
    assert_string_equal(f.sni, "localhost");
    assert_string_equal(f.url_host, "localhost");
    assert_string_equal(f.partner_id, "globex");
    assert_string_equal(f.station_id, "acme");
    assert_string_equal(f.versions_offered, "TLSv1.2..TLSv1.3");
    assert_string_equal(f.versions_accepted, "TLSv1.2");
    assert_string_equal(f.version, "TLSv1.2");
    assert_true(strncmp(f.cipher, "TLS_ECDHE_", 10) == 0);
    assert_int_equal(f.verify_code, 0);
    assert_non_null(strstr(f.verify_result, "ok: chain to a registered CA, host localhost"));
    assert_string_equal(f.peer_cert.x.sha256, srv_sha256);
    assert_non_null(strstr(f.peer_cert.names, "DNS:localhost"));
    assert_string_equal(f.peer_cert.key, "EC-P-256");
    assert_string_equal(f.local_cert.x.subject, "CN=mft station,O=mft test");
    assert_null(mft_tls_facts_fatal(&f, 0)); /* (curl's close_notify is a warning) */
    assert_null(mft_tls_facts_fatal(&f, 1));
    assert_string_equal(f.library_error, "");
    assert_int_equal(strlen(f.time), 24);

    /* nginx (ssl_verify_client on) completes the handshake without a
     * client certificate and answers 400: that is our certificate missing */
    rq.client = NULL;
    url(u, sizeof(u), "https", "localhost", port_tls, "/nginx400");
    struct mft_err e = post_fail(&rq, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_non_null(strstr(e.message, "No required SSL certificate was sent"));
    assert_non_null(strstr(e.message, "none is configured"));
    assert_non_null(strstr(e.detail, "HTTP 400"));
    /* ... a plain 400 stays an answer */
    url(u, sizeof(u), "https", "localhost", port_tls, "/status/400");
    struct mft_err err;
    assert_int_equal(mft_httpc_post(&rq, &r, &err), 0);
    assert_int_equal(r.status, 400);
    mft_httpc_response_free(&r);
    sk_X509_pop_free(t.cas, X509_free);
}

/* The pre-flight: the handshake alone, with the same verdicts. */
static void test_handshake(void **state)
{
    (void)state;
    char u[256];
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    struct mft_httpc_client_id id = {client_cert_pem, client_key_pem};
    struct mft_tls_facts f;
    struct mft_httpc_request rq = req(u, &t, NULL, 0);
    struct mft_err e;
    struct timespec t0, t1;

    rq.facts_out = &f;
    url(u, sizeof(u), "https", "localhost", port_tls, "/as2");
    mft_err_clear(&e);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(mft_httpc_handshake(&rq, &e), 0);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    assert_true(t1.tv_sec - t0.tv_sec < 1); /* no CertificateRequest: no wait */
    assert_string_equal(f.version, "TLSv1.3");
    assert_string_equal(f.peer_cert.x.sha256, srv_sha256);

    /* TLS 1.3 mutual: accepted (after the settle time) */
    rq.client = &id;
    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    assert_int_equal(mft_httpc_handshake(&rq, &e), 0);
    assert_true(f.local_cert.present);
    /* ... without our certificate: the alert after the handshake is caught */
    rq.client = NULL;
    assert_int_equal(mft_httpc_handshake(&rq, &e), -1);
    assert_int_equal(e.kind, MFT_E_TLS_OUR_CERT_REJECTED);
    assert_int_equal(mft_tls_facts_fatal(&f, 0)->code, 116);
    /* TLS 1.2 without: refused during the handshake */
    url(u, sizeof(u), "https", "localhost", port_mtls12, "/as2");
    assert_int_equal(mft_httpc_handshake(&rq, &e), -1);
    assert_int_equal(e.kind, MFT_E_TLS_OUR_CERT_REJECTED);
    /* untrusted, not TLS, refused, not https */
    const struct {
        const char *scheme;
        int port;
        enum mft_err_kind kind;
    } fails[] = {{"https", port_self, MFT_E_TLS_SERVER_SELF_SIGNED},
                 {"https", port_plain, MFT_E_TLS_NOT_TLS},
                 {"https", port_closed, MFT_E_CONNECT},
                 {"http", port_plain, MFT_E_CONFIG}};
    for (size_t i = 0; i < sizeof(fails) / sizeof(fails[0]); i++) {
        url(u, sizeof(u), fails[i].scheme, "localhost", fails[i].port, "/as2");
        assert_int_equal(mft_httpc_handshake(&rq, &e), -1);
        if (e.kind != fails[i].kind)
            fail_msg("case %zu: expected %s, got %s: %s", i, mft_err_kind_name(fails[i].kind),
                     mft_err_kind_name(e.kind), e.message);
    }
    sk_X509_pop_free(t.cas, X509_free);
}

struct worker {
    pthread_t th;
    int ok;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char u[256], want[65], got[128];
    unsigned char body[4096];
    struct mft_httpc_trust t = {NULL, stack(ca, NULL), NULL, 0};
    url(u, sizeof(u), "https", "localhost", port_mtls, "/as2");
    struct mft_httpc_client_id id = {client_cert_pem, client_key_pem};
    for (int i = 0; i < 5; i++) {
        struct mft_httpc_request rq = req(u, &t, body, sizeof(body));
        struct mft_httpc_response r;
        struct mft_err err;
        RAND_bytes(body, sizeof(body));
        rq.client = &id;
        rq.content_length = i & 1;
        sha256_hex(body, sizeof(body), want);
        if (mft_httpc_post(&rq, &r, &err) == 0 && r.status == 200) {
            field(&r, "sha256", got, sizeof(got));
            w->ok += strcmp(got, want) == 0;
        }
        mft_httpc_response_free(&r);
    }
    sk_X509_pop_free(t.cas, X509_free);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    struct worker w[4];
    memset(w, 0, sizeof(w));
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&w[i].th, NULL, work, &w[i]), 0);
    for (int i = 0; i < 4; i++) {
        pthread_join(w[i].th, NULL);
        assert_int_equal(w[i].ok, 5);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exact_cert),     cmocka_unit_test(test_ca_trust),
        cmocka_unit_test(test_expired),        cmocka_unit_test(test_pins),
        cmocka_unit_test(test_mtls),           cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_chunked),        cmocka_unit_test(test_status),
        cmocka_unit_test(test_too_large),      cmocka_unit_test(test_plain_http),
        cmocka_unit_test(test_network_errors), cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_threads),        cmocka_unit_test(test_tls_kinds),
        cmocka_unit_test(test_facts),          cmocka_unit_test(test_handshake),
        cmocka_unit_test(test_security_level),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
