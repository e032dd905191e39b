"""Hostile and broken NBD clients against tmemd: each gets the error the protocol names or a
clean disconnect, while a well-behaved client keeps working and no data is corrupted.

Run by nbd_robustness_test.sh: argv = tmemd path, work dir, short dir for the unix socket."""
import hashlib
import os
import socket
import struct
import subprocess
import sys
import time

import nbd

TMEMD, WORK = sys.argv[1], sys.argv[2]
NBD_MAGIC, OPT_MAGIC, REPLY_MAGIC = 0x4E42444D41474943, 0x49484156454F5054, 0x3E889045565A9
REQ_MAGIC, SIMPLE_MAGIC, STRUCT_MAGIC = 0x25609513, 0x67446698, 0x668E33EF
EINVAL, EPERM, ENOSPC, EOVERFLOW = 22, 1, 28, 75
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what, flush=True)
    if not cond:
        failures.append(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def closed(s, timeout=5.0):
    """True when the server closes the connection (EOF or reset) within the timeout."""
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    hello = recv_exact(s, 18)
    assert struct.unpack(">QQH", hello)[:2] == (NBD_MAGIC, OPT_MAGIC)
    return s


def option(s, opt, data=b""):
    s.sendall(struct.pack(">QII", OPT_MAGIC, opt, len(data)) + data)


def option_reply(s):
    magic, opt, rtype, length = struct.unpack(">QIII", recv_exact(s, 20))
    assert magic == REPLY_MAGIC, hex(magic)
    return opt, rtype, recv_exact(s, length)


def go(port, name=b"disk0", structured=False):
    """A raw client in the transmission phase."""
    s = connect(port)
    s.sendall(struct.pack(">I", 3))  # fixed newstyle + no zeroes
    if structured:
        option(s, 8)
        assert option_reply(s)[1] == 1
    option(s, 7, struct.pack(">I", len(name)) + name + struct.pack(">H", 0))
    while True:
        _, rtype, _ = option_reply(s)
        if rtype == 1:
            return s
        assert rtype == 3, hex(rtype)


def request(s, cmd, offset, length, cookie, flags=0, payload=b""):
    s.sendall(struct.pack(">IHHQQI", REQ_MAGIC, flags, cmd, cookie, offset, length) + payload)


def simple_reply(s):
    magic, err, cookie = struct.unpack(">IIQ", recv_exact(s, 16))
    assert magic == SIMPLE_MAGIC, hex(magic)
    return err, cookie


def structured_reply(s):
    magic, flags, rtype, cookie, length = struct.unpack(">IHHQI", recv_exact(s, 20))
    assert magic == STRUCT_MAGIC, hex(magic)
    payload = recv_exact(s, length)
    err = struct.unpack(">I", payload[:4])[0] if rtype & 0x8000 else 0
    return err, cookie, rtype, payload


tmp = os.path.join(WORK, "rb")
os.makedirs(tmp, exist_ok=True)
gport, nport = free_port(), free_port()
disk = os.path.join(tmp, "disk0.img")
ro = os.path.join(tmp, "ro.img")
with open(ro, "wb") as f:
    f.write(os.urandom(1 << 20))
proc = subprocess.Popen([TMEMD, "--device=" + os.path.join(tmp, "cache.img"), "--device-size=128M",
                         "--listen=127.0.0.1:%d" % gport, "--metrics-listen=",
                         "--export=disk0=%s:16M" % disk, "--nbd-listen=127.0.0.1:%d" % nport],
                        stderr=open(os.path.join(tmp, "tmemd.log"), "w"))
try:
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", nport), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)
    uri = "nbd://127.0.0.1:%d/disk0" % nport

    # A good client writes known data and stays connected through everything below.
    good = nbd.NBD()
    good.connect_uri(uri)
    golden = os.urandom(4 << 20)
    good.pwrite(golden, 0)
    good.flush()

    # --- handshake ---
    s = connect(nport)
    s.sendall(b"\xde\xad\xbe\xef" + os.urandom(64))
    check(closed(s), "garbage client flags: disconnected")
    s = connect(nport)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", 0x1234, 7, 0))
    check(closed(s), "bad option magic: disconnected")
    s = connect(nport)
    s.sendall(struct.pack(">I", 3))
    option(s, 99)
    check(option_reply(s)[1] == 0x80000001, "unknown option: NBD_REP_ERR_UNSUP")
    option(s, 5)
    check(option_reply(s)[1] & 0x80000000 != 0, "STARTTLS: refused with an error reply")
    option(s, 3, b"junk")
    check(option_reply(s)[1] == 0x80000003, "LIST with data: NBD_REP_ERR_INVALID")
    option(s, 7, struct.pack(">I", 1000) + b"x")
    check(option_reply(s)[1] == 0x80000003, "GO with a name longer than the option: NBD_REP_ERR_INVALID")
    option(s, 7, struct.pack(">I", 4) + b"nope" + struct.pack(">H", 0))
    check(option_reply(s)[1] == 0x80000006, "GO for an unknown export: NBD_REP_ERR_UNKNOWN")
    option(s, 2)
    check(option_reply(s)[1] == 1 and closed(s), "ABORT: acknowledged, then closed")
    s = connect(nport)
    s.sendall(struct.pack(">I", 3) + struct.pack(">QII", OPT_MAGIC, 7, 0x7FFFFFFF))
    check(closed(s), "option announcing 2 GiB of data: disconnected")
    s = connect(nport)
    s.sendall(struct.pack(">I", 3))
    option(s, 1, b"nope")
    check(closed(s), "EXPORT_NAME of an unknown export: disconnected")

    # --- transmission, simple replies ---
    s = go(nport)
    request(s, 9, 0, 0, 1)
    check(simple_reply(s) == (EINVAL, 1), "unknown command: EINVAL")
    request(s, 0, 0, 512, 2, flags=0x80)
    check(simple_reply(s) == (EINVAL, 2), "unknown command flag: EINVAL")
    request(s, 0, 16 << 20, 512, 3)
    check(simple_reply(s) == (EINVAL, 3), "read past the end: EINVAL")
    request(s, 0, (1 << 64) - 512, 1024, 4)
    check(simple_reply(s) == (EINVAL, 4), "read with offset+length overflowing: EINVAL")
    request(s, 1, (16 << 20) - 512, 1024, 5, payload=b"\x01" * 1024)
    check(simple_reply(s) == (ENOSPC, 5), "write past the end: ENOSPC (payload consumed)")
    request(s, 6, 16 << 20, 4096, 6)
    check(simple_reply(s) == (ENOSPC, 6), "write_zeroes past the end: ENOSPC")
    request(s, 0, 0, 64 << 20, 7)
    check(simple_reply(s)[0] in (EINVAL, EOVERFLOW), "oversize read: EOVERFLOW/EINVAL")
    request(s, 3, 4096, 0, 8)
    check(simple_reply(s) == (EINVAL, 8), "flush with an offset: EINVAL")
    request(s, 0, 8192, 512, 9)
    err, cookie = simple_reply(s)
    data = recv_exact(s, 512)
    check(err == 0 and cookie == 9 and data == golden[8192:8704], "a good read still works on that connection")
    request(s, 0x25, 0, 0, 10)
    check(simple_reply(s)[0] == EINVAL, "another unknown command: EINVAL")
    request(s, 2, 0, 0, 11)  # DISC
    check(closed(s), "DISC: closed")

    s = go(nport)
    s.sendall(struct.pack(">IHHQQI", 0xBADBAD, 0, 0, 1, 0, 512))
    check(closed(s), "bad request magic: disconnected")
    s = go(nport)
    request(s, 1, 0, 64 << 20, 1)
    check(closed(s), "write announcing 64 MiB (over the 32 MiB maximum): disconnected")
    s = go(nport)
    request(s, 1, 1 << 20, 65536, 1, payload=b"\xee" * 1000)  # announces more than it sends
    s.close()
    s = go(nport)
    s.sendall(os.urandom(4096))
    check(closed(s), "random bytes in the transmission phase: disconnected")

    # --- structured replies ---
    s = go(nport, structured=True)
    request(s, 0, 16 << 20, 512, 21)
    err, cookie, rtype, payload = structured_reply(s)
    check(err == EINVAL and cookie == 21 and rtype == 0x8001, "structured: read past the end is an error chunk")
    request(s, 0, 4096, 4096, 22)
    err, cookie, rtype, payload = structured_reply(s)
    check(err == 0 and rtype == 1 and payload[8:] == golden[4096:8192], "structured: read is an offset-data chunk")
    s.close()

    # --- many connections at once, each left half-way through a request ---
    socks = []
    for i in range(20):
        t = go(nport)
        request(t, 1, i * 4096, 4096, 1, payload=b"\x77" * 100)
        socks.append(t)
    for t in socks:
        t.close()

    # The good client never noticed, and the data is intact.
    check(good.pread(4 << 20, 0) == golden, "data written by the good client is intact")
    good.pwrite(b"\x42" * 4096, 1 << 20)
    check(good.pread(4096, 1 << 20) == b"\x42" * 4096, "the good client still reads and writes")
    fresh = nbd.NBD()
    fresh.connect_uri(uri)
    check(hashlib.sha256(fresh.pread(1 << 20, 0)).digest() == hashlib.sha256(golden[: 1 << 20]).digest(),
          "a new client sees the same data")
    fresh.shutdown()
    good.shutdown()
    check(proc.poll() is None, "tmemd is still running")
finally:
    proc.terminate()
    rc = proc.wait(timeout=30)
check(rc == 0, "tmemd stopped cleanly")
if failures:
    print(open(os.path.join(tmp, "tmemd.log")).read()[-3000:])
    print("%d checks failed" % len(failures))
    sys.exit(1)
print("all checks passed")
