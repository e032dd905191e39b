"""A raw client of tmem's page wire protocol (docs/wire.md), for tests: every byte is chosen by
the test, so that bad input, other tenants' pools and clients that misbehave can be tried."""
import socket
import ssl
import struct

REQUEST_MAGIC = 0x71526D74
REPLY_MAGIC = 0x70526D74
HELLO, PUT, GET, FLUSH_PAGES, FLUSH_OBJECT, FLUSH_POOL = 1, 2, 3, 4, 5, 6
CLOSING = 1
# google.rpc.Code values the tests look for
OK, INVALID_ARGUMENT, NOT_FOUND, PERMISSION_DENIED, FAILED_PRECONDITION, UNAUTHENTICATED = 0, 3, 5, 7, 9, 16


def header(verb, rid, pool=0, count=0, body=0, page_bytes=0):
    return struct.pack("<IBBHIIQII", REQUEST_MAGIC, verb, 0, count, pool, body, rid, page_bytes, 0)


def entry(obj, index):
    obj = obj.encode() if isinstance(obj, str) else obj
    return struct.pack("<QB7x", index, len(obj)) + obj.ljust(24, b"\0")[:24]


def hello(rid=0, lo=1, hi=1):
    return header(HELLO, rid, body=16) + struct.pack("<HHIQ", lo, hi, 0, 0)


def put(rid, pool, pages):
    """pages: [(object, index, bytes)]"""
    size = len(pages[0][2]) if pages else 0
    body = b"".join(entry(o, i) + p for o, i, p in pages)
    return header(PUT, rid, pool, len(pages), len(body), size) + body


def handles(verb, rid, pool, hs):
    body = b"".join(entry(o, i) for o, i in hs)
    return header(verb, rid, pool, len(hs), len(body)) + body


def flush_pool(rid, pool):
    return header(FLUSH_POOL, rid, pool)


class Reply:
    def __init__(self, h, body):
        (self.magic, self.verb, self.flags, self.count, self.status, self.body_bytes, self.request_id,
         self.instance) = h
        self.body = body

    @property
    def message(self):
        return self.body.decode(errors="replace") if self.status else ""

    def hits(self, page_bytes):
        """A GET reply's pages: a list with None for each miss."""
        head = (self.count + 7) & ~7
        out, at = [], head
        for i in range(self.count):
            if self.body[i]:
                out.append(self.body[at:at + page_bytes])
                at += page_bytes
            else:
                out.append(None)
        return out


class Conn:
    def __init__(self, port, tls=None, timeout=5.0):
        """tls: None (plaintext) or (ca, cert, key); cert and key may be None."""
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        if tls is not None:
            ca, cert, key = tls
            ctx = ssl.create_default_context(cafile=ca)
            if cert:
                ctx.load_cert_chain(cert, key)
            s = ctx.wrap_socket(s, server_hostname="127.0.0.1")
        self.s = s
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def _read(self, n):
        while len(self.buf) < n:
            d = self.s.recv(1 << 20)
            if not d:
                raise EOFError("the server closed the connection")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def reply(self):
        h = struct.unpack("<IBBHIIQQ", self._read(32))
        r = Reply(h, self._read(h[5]))
        assert r.magic == REPLY_MAGIC, hex(r.magic)
        return r

    def call(self, data):
        self.send(data)
        return self.reply()

    def hello(self):
        r = self.call(hello())
        if r.status != OK:
            raise RuntimeError(f"HELLO refused: {r.status} {r.message}")
        return r.body[32:].decode()

    def closed(self):
        """True if the server closed the connection (reads end)."""
        try:
            return self.s.recv(1) == b""
        except (ConnectionError, ssl.SSLError):
            return True

    def close(self):
        self.s.close()
